"""A2C (Mnih et al., 2016; the synchronous form): its config and its builder.

GAE advantages and the vanilla policy-gradient loss, one gradient step on the whole batch.
"""

from __future__ import annotations

import dataclasses

from jaxpg.agents import Agent
from jaxpg.algorithms import (
    Algorithm,
    continue_rollout,
    gae_targets,
    make_actor_critic_loss,
    sgd_for,
    vanilla_surrogate,
)
from jaxpg.config import Config, _redeclared, field
from jaxpg.updates import optimizer_init


@dataclasses.dataclass(frozen=True)
class A2CConfig(Config):
    """A2C (Mnih et al., 2016; the synchronous form): GAE advantages and the vanilla
    policy-gradient loss, one gradient step on the whole batch per update.

    The defaults solve CartPole-v1 (the learning test): 16 envs x 32 steps, lr 1e-3 annealed,
    reward scaling, 1M steps. Without reward scaling the critic's large value errors dominate
    the clipped global gradient norm and A2C's single step per batch often collapses.
    """

    total_timesteps: int = _redeclared("total_timesteps", 1_000_000)
    num_envs: int = _redeclared("num_envs", 16)
    num_steps: int = field(32, "rollout length per environment per update")
    lr: float = _redeclared("lr", 1e-3)
    normalize_rewards: bool = _redeclared("normalize_rewards", True)
    gae_lambda: float = field(0.95, "GAE lambda", traced=True)

    algorithm = "a2c"

    def __post_init__(self):
        super().__post_init__()
        self._resolve_episode_steps(
            False, "for whole-episode rollouts: PPO and REINFORCE with mode='trajectory', GRPO"
        )
        self._check_range("gae_lambda", low=0.0, high=1.0)
        self._check_batch_fits_budget()


def make_a2c(config: A2CConfig, agent: Agent) -> Algorithm:
    """A2C (Mnih et al., 2016, synchronous): GAE + the vanilla surrogate, one step per batch."""
    return Algorithm(
        init=optimizer_init(config.adam_eps),
        start=continue_rollout,
        targets=gae_targets,
        update=sgd_for(config, agent, make_actor_critic_loss(config, agent, vanilla_surrogate)),
    )
