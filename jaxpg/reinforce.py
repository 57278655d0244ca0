"""REINFORCE (Williams, 1992): its config and its builder.

``A_t = G_t - b_t`` (returns-to-go, or ``R(tau)`` on whole episodes) with no baseline, a moving
average or a learned value; the vanilla surrogate, one step per batch.
"""

from __future__ import annotations

import dataclasses

from jaxpg.agents import Agent
from jaxpg.algorithms import (
    BASELINES,
    MODES,
    Algorithm,
    continue_rollout,
    fresh_reset,
    init_with_baseline,
    make_actor_critic_loss,
    reinforce_targets,
    sgd_for,
    trajectory_targets,
    vanilla_surrogate,
)
from jaxpg.config import Config, _fail, _redeclared, field


@dataclasses.dataclass(frozen=True)
class ReinforceConfig(Config):
    """REINFORCE (Williams, 1992): ``A_t = G_t - b_t``, one gradient step per batch.

    ``mode="intermediate"`` uses fixed-length rollouts with per-step returns-to-go;
    ``mode="trajectory"`` rolls out whole episodes (``num_steps=None`` means the environment's
    ``max_steps_in_episode``) and gives every step of an episode the advantage ``R(tau) - b``.
    The defaults are the CartPole config that the learning test uses.
    """

    num_envs: int = _redeclared("num_envs", 16)
    num_steps: int | None = field(256, "rollout length; None in trajectory mode: the episode limit")
    lr: float = _redeclared("lr", 3e-3)
    anneal_lr: bool = _redeclared("anneal_lr", False)
    ent_coef: float = _redeclared("ent_coef", 0.0)
    baseline: str = field("value", '"none", "moving_average" or "value" (a learned critic)')
    baseline_decay: float = field(
        0.9, "moving-average baseline: b <- decay * b + (1 - decay) * mean(G)", traced=True
    )
    mode: str = field(
        "intermediate",
        '"intermediate" (returns-to-go on fixed-length rollouts) or "trajectory" (R(tau) - b on '
        "whole episodes)",
    )

    algorithm = "reinforce"

    def __post_init__(self):
        if self.baseline not in BASELINES:
            _fail("baseline", self.baseline, f"one of {list(BASELINES)}")
        if self.mode not in MODES:
            _fail("mode", self.mode, f"one of {list(MODES)}")
        super().__post_init__()
        self._check_range("baseline_decay", low=0.0, high=1.0)
        self._resolve_episode_steps(self.mode == "trajectory", "in trajectory mode")
        if self.mode == "trajectory":
            self._check_whole_episodes()
        self._check_batch_fits_budget()

    @property
    def has_critic(self) -> bool:
        return self.baseline == "value"


def make_reinforce(config: ReinforceConfig, agent: Agent) -> Algorithm:
    """REINFORCE (Williams, 1992): returns-to-go or ``R(tau)``, minus a baseline; one step per
    batch. The moving-average baseline is the algorithm's state."""
    trajectory = config.mode == "trajectory"
    return Algorithm(
        init=init_with_baseline(config.adam_eps),
        start=fresh_reset(config.env_spec, config.num_envs, agent)
        if trajectory
        else continue_rollout,
        targets=(trajectory_targets if trajectory else reinforce_targets)(config.baseline),
        update=sgd_for(config, agent, make_actor_critic_loss(config, agent, vanilla_surrogate)),
        first_episodes=trajectory,
    )
