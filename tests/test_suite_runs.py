"""Short learning runs and smoke runs on the env suites (jaxpg.suites); CI installs every suite.
Each is under a minute on the 2-core CPU, compile included."""

import compile_options
import jax
import numpy as np
import pytest

import jaxpg
from jaxpg.ppo import PPOConfig


def _need(module):
    return pytest.importorskip(module)


@pytest.mark.learning
def test_ppo_learns_to_balance_brax_inverted_pendulum():
    """Two seeds vmapped, their deterministic policies' mean return over 16 episodes each (1 per
    step balanced, 1000 at most). Measured for the preset: 963, 892, 955, 795, 1000, 1000, 799,
    934 (``split(key(0), 8)``) and 383 (``key(0)``); after one update, 25-82. The old
    single-seed check (>= 950) passed on its seed's luck: four other seeds reached 111-539."""
    _need("brax")
    from jaxpg.evaluate import evaluate
    from jaxpg.presets import ppo_brax_inverted_pendulum

    config = ppo_brax_inverted_pendulum()
    keys = jax.random.split(jax.random.key(0), 2)
    result = compile_options.jit(jax.vmap(jaxpg.make_train(config)))(keys)
    returns = [
        float(
            np.mean(
                evaluate(config, params, jax.random.key(5), 16, deterministic=True).episode_return
            )
        )
        for params in (jax.tree.map(lambda x, i=i: x[i], result.params) for i in range(2))
    ]
    assert np.mean(returns) >= 500, returns


@pytest.mark.learning
def test_ppo_solves_navix_empty():
    _need("navix")
    from jaxpg.evaluate import evaluate

    config = PPOConfig(
        env="navix:Navix-Empty-5x5-v0", num_envs=16, num_steps=32, total_timesteps=100_000,
        lr=3e-3, num_minibatches=4, num_epochs=4, gamma=0.99,
    )  # fmt: skip
    result = compile_options.jit(jaxpg.make_train(config))(jax.random.key(0))
    episodes = evaluate(config, result.params, jax.random.key(5), 16, deterministic=True)
    # from (1, 1) facing east the goal at (3, 3) is 5 actions away: forward, forward, turn,
    # forward, forward; Navix pays 1 there
    np.testing.assert_array_equal(episodes.episode_return, 1.0)
    np.testing.assert_array_equal(episodes.episode_length, 5)


@pytest.mark.parametrize(
    "env,kwargs",
    [
        ("craftax:Craftax-Classic-Symbolic-v1", {}),
        ("jumanji:Snake-v1", {}),
        ("xminigrid:MiniGrid-Empty-5x5", {}),
    ],
)
def test_smoke_run(env, kwargs):
    _need(env.partition(":")[0])
    config = PPOConfig(
        env=env, env_kwargs=kwargs, num_envs=8, num_steps=16, total_timesteps=8 * 16 * 3,
        num_minibatches=2, num_epochs=2,
    )  # fmt: skip
    result = jax.jit(jaxpg.make_train(config))(jax.random.key(0))
    for name in ("loss", "policy_loss", "value_loss", "entropy"):
        assert np.isfinite(np.asarray(result.metrics[name])).all(), name
