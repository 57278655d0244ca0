"""jaxpg: JAX-accelerated, vectorized policy-gradient RL on gymnax environments.

    import jax, jaxpg
    config = jaxpg.PPOConfig(env="CartPole-v1", total_timesteps=500_000)
    train = jaxpg.make_train(config)          # pure: key -> TrainResult
    result = jax.jit(train)(jax.random.key(0))
"""

from jaxpg import advantages, losses
from jaxpg.algorithms import Algorithm, make_algorithm
from jaxpg.config import HParams, PPOConfig, ReinforceConfig
from jaxpg.envs import Env, make_env, registered_envs
from jaxpg.policy import Policy, PolicyParams, make_policy
from jaxpg.train import (
    TrainResult,
    TrainState,
    init_state,
    make_init,
    make_train,
    make_train_chunk,
    make_update,
)

__version__ = "0.1.0"

__all__ = [
    "Algorithm",
    "Env",
    "HParams",
    "PPOConfig",
    "Policy",
    "PolicyParams",
    "ReinforceConfig",
    "TrainResult",
    "TrainState",
    "advantages",
    "init_state",
    "losses",
    "make_algorithm",
    "make_env",
    "make_init",
    "make_policy",
    "make_train",
    "make_train_chunk",
    "make_update",
    "registered_envs",
]
