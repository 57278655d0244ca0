"""The config that ``_multihost_worker.py`` trains and ``test_multidevice.py`` checks it with."""

import jaxpg

CONFIG = jaxpg.PPOConfig(
    env="CartPole-v1",
    num_envs=8,
    num_steps=16,
    num_minibatches=4,
    num_epochs=2,
    total_timesteps=8 * 16 * 3,
    normalize_obs=True,
)
SEED = 100

# What ``_multihost_run.py`` runs over 2 processes (one member each) and the test beside it in one.
RUN_CONFIG = jaxpg.PPOConfig(
    env="CartPole-v1", num_envs=4, num_steps=32, total_timesteps=4 * 32 * 8
)
RUN = dict(seeds=2, chunk_updates=2, progress=False, plot=False)
