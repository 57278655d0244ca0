"""PPO (Schulman et al., 2017): its config and its builder.

GAE advantages and the clipped-ratio surrogate, epochs of shuffled minibatches; or, with
``mode="trajectory"``, ``R(tau) - b`` on whole episodes from a fresh reset.
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
    gae_targets,
    init_with_baseline,
    make_actor_critic_loss,
    ppo_surrogate,
    sgd_for,
    trajectory_targets,
)
from jaxpg.config import Config, _fail, field
from jaxpg.updates import optimizer_init


@dataclasses.dataclass(frozen=True)
class PPOConfig(Config):
    """PPO (Schulman et al., 2017): GAE advantages and the clipped-ratio surrogate.

    Defaults are the usual CartPole-scale ones (as in CleanRL and PureJaxRL).
    """

    num_epochs: int = field(4, "passes over each batch")
    num_minibatches: int = field(4, "minibatches per epoch; must divide num_envs * num_steps")
    gae_lambda: float = field(0.95, "GAE lambda", traced=True)
    clip_eps: float = field(0.2, "PPO ratio clip (and value clip)", traced=True)
    clip_value_loss: bool = field(True, "PPO2's clipped value loss, with clip_eps")
    mode: str = field(
        "intermediate",
        '"intermediate" (GAE on fixed-length rollouts) or "trajectory": R(tau) - b on every '
        "step of whole episodes",
    )
    baseline: str = field(
        "value", 'trajectory mode: "value" (a learned V(s_0)), "moving_average" or "none"'
    )
    baseline_decay: float = field(
        0.9, "moving-average baseline: b <- decay * b + (1 - decay) * mean(R)", traced=True
    )

    algorithm = "ppo"

    def __post_init__(self):
        if self.mode not in MODES:
            _fail("mode", self.mode, f"one of {list(MODES)}")
        if self.baseline not in BASELINES:
            _fail("baseline", self.baseline, f"one of {list(BASELINES)}")
        if self.mode == "intermediate" and self.baseline != "value":
            _fail(
                "baseline",
                self.baseline,
                "'value' in intermediate mode (GAE needs the critic); "
                "the others only with mode='trajectory'",
            )
        super().__post_init__()
        self._resolve_episode_steps(self.mode == "trajectory", "in trajectory mode")
        if self.mode == "trajectory":
            self._check_whole_episodes()
        self._check_range("baseline_decay", low=0.0, high=1.0)
        self._coerce_ints("num_epochs", "num_minibatches")
        self._check_positive_ints("num_epochs", "num_minibatches")
        self._check_bools("clip_value_loss")
        self._check_range("gae_lambda", low=0.0, high=1.0)
        self._check_range("clip_eps", low=0.0, low_open=True)
        self._check_divides_batch("num_minibatches")
        self._check_batch_fits_budget()

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def has_critic(self) -> bool:
        return self.baseline == "value"


def make_ppo(config: PPOConfig, agent: Agent) -> Algorithm:
    """PPO (Schulman et al., 2017): GAE + the clipped surrogate, epochs of minibatches.

    ``mode="trajectory"``: every update rolls out whole episodes from a fresh reset and gives
    every step of each environment's first episode ``R(tau) - b`` (``b``: the learned
    ``V(s_0)``, a moving average, or none), with the same clipped surrogate and epochs.
    """
    loss_fn = make_actor_critic_loss(
        config, agent, ppo_surrogate, clip_value_loss=config.clip_value_loss
    )
    update = sgd_for(config, agent, loss_fn, config.num_epochs, config.num_minibatches)
    if config.mode == "trajectory":
        return Algorithm(
            init=init_with_baseline(config.adam_eps),
            start=fresh_reset(config.env_spec, config.num_envs, agent),
            targets=trajectory_targets(config.baseline),
            update=update,
            first_episodes=True,
        )
    return Algorithm(
        init=optimizer_init(config.adam_eps),
        start=continue_rollout,
        targets=gae_targets,
        update=update,
    )
