"""Algorithms as data: an advantage estimator plus a surrogate loss.

Every algorithm in jaxpg follows the unified policy gradient

    grad J = E[ sum_t grad log pi(a_t | s_t) * A_t ]

and is one :class:`Algorithm`: a choice of ``estimate_advantages`` (what ``A_t`` is) and of
``surrogate`` (how ``log pi`` and ``A_t`` make a loss), plus whether the batch is reused for
several epochs. The trainer in :mod:`jaxpg.train` is shared by all of them:

* PPO = GAE + the clipped-ratio surrogate (several epochs of minibatches);
* REINFORCE = returns-to-go (or ``R(tau)``) minus a baseline + the vanilla surrogate
  (one gradient step per batch).

Arrays are time-major ``[T, N]``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxpg import advantages as adv_lib
from jaxpg import losses
from jaxpg.config import HParams, PPOConfig, ReinforceConfig
from jaxpg.distributions import ActionDist
from jaxpg.networks import Network
from jaxpg.rollout import Transition


class Targets(NamedTuple):
    """What the loss needs besides the rollout, all ``[T, N]``."""

    advantages: jax.Array
    returns: jax.Array  # regression target of the critic
    mask: jax.Array  # float: steps that enter the policy loss
    value_mask: jax.Array  # float: steps that enter the value loss


class Minibatch(NamedTuple):
    """A flat slice of a batch: every leaf has leading axis ``B``."""

    obs: jax.Array
    action: jax.Array
    old_log_prob: jax.Array
    old_value: jax.Array
    advantages: jax.Array
    returns: jax.Array
    mask: jax.Array
    value_mask: jax.Array


# (batch, next_values, hparams, baseline_state) -> (targets, baseline_state)
AdvantageFn = Callable[[Transition, jax.Array, HParams, Any], tuple[Targets, Any]]
# (log_prob, old_log_prob, advantages, clip_eps, mask) -> scalar
SurrogateFn = Callable[..., jax.Array]


class Algorithm(NamedTuple):
    estimate_advantages: AdvantageFn
    surrogate: SurrogateFn
    reuses_data: bool  # several epochs over minibatches (PPO) or one step per batch


# -- advantage estimators ----------------------------------------------------------------


def gae_advantages(batch: Transition, next_values, hp: HParams, baseline_state):
    """PPO/A2C: ``gae`` bootstrapped from V(true next state)."""
    advantages, returns = adv_lib.gae(
        batch.reward, batch.value, next_values, batch.terminated, batch.truncated,
        hp.gamma, hp.gae_lambda,
    )
    ones = jnp.ones_like(advantages)
    return Targets(advantages, returns, ones, ones), baseline_state


def rollout_cut_mask(terminated: jax.Array, truncated: jax.Array) -> jax.Array:
    """1.0 for steps whose episode ended inside the rollout, 0.0 for the tail that the end of
    the rollout cut off (its return-to-go is unknown without a critic). ``[T, N]``."""
    done = (terminated | truncated).astype(jnp.float32)

    def step(ended_later, done_t):
        ended = jnp.maximum(done_t, ended_later)  # an episode end at or after t, before a reset
        return ended, ended

    _, ended = jax.lax.scan(step, jnp.zeros_like(done[0]), done, reverse=True)
    return ended


def first_episode_mask(terminated: jax.Array, truncated: jax.Array) -> jax.Array:
    """1.0 for the steps of each environment's first episode (up to and including its end)."""
    done = (terminated | truncated).astype(jnp.float32)
    ended_before = jnp.cumsum(done, axis=0) - done
    return (ended_before == 0).astype(jnp.float32)


def reinforce_advantages(batch: Transition, next_values, hp: HParams, baseline_state, *, baseline: str):
    """Intermediate-reward REINFORCE: ``A_t = G_t - b_t`` with ``G_t`` the return-to-go.

    With a learned value the tail cut off by the end of the rollout bootstraps from
    V(final obs); without one those steps are masked out of the loss. A time-limit truncation
    bootstraps from ``next_values`` (zero without a critic: the truncated Monte Carlo return).
    """
    returns = adv_lib.discounted_returns(
        batch.reward, next_values, batch.terminated, batch.truncated, hp.gamma
    )
    if baseline == "value":
        mask = jnp.ones_like(returns)
    else:
        mask = rollout_cut_mask(batch.terminated, batch.truncated)
    if baseline == "value":
        b = batch.value
    elif baseline == "moving_average":
        baseline_state = adv_lib.moving_average_baseline_update(
            baseline_state, returns, hp.baseline_decay, mask
        )
        b = baseline_state.value
    else:
        b = jnp.zeros((), returns.dtype)
    advantages = adv_lib.per_step_advantages(returns, b) * mask
    return Targets(advantages, returns, mask, mask), baseline_state


def trajectory_advantages(batch: Transition, next_values, hp: HParams, baseline_state, *, baseline: str):
    """Single-trajectory-reward REINFORCE: every step of an episode gets ``R(tau) - b``.

    Only each environment's first episode of the rollout counts (steps after its end are
    masked). With a learned value the baseline is ``V(s_0)``, trained towards ``R(tau)``.
    """
    del next_values
    mask = first_episode_mask(batch.terminated, batch.truncated)
    episode_return = adv_lib.episode_returns(batch.reward, mask)  # [N]
    if baseline == "value":
        b = batch.value[0]
    elif baseline == "moving_average":
        baseline_state = adv_lib.moving_average_baseline_update(
            baseline_state, episode_return, hp.baseline_decay
        )
        b = baseline_state.value
    else:
        b = jnp.zeros((), episode_return.dtype)
    advantages = adv_lib.trajectory_advantages(batch.reward, mask, b)
    returns = jnp.broadcast_to(episode_return, mask.shape)
    value_mask = jnp.zeros_like(mask).at[0].set(1.0)
    return Targets(advantages, returns, mask, value_mask), baseline_state


def _reinforce_surrogate(log_prob, old_log_prob, advantages, clip_eps, mask):
    del old_log_prob, clip_eps
    return losses.reinforce_loss(log_prob, advantages, mask)


def _ppo_surrogate(log_prob, old_log_prob, advantages, clip_eps, mask):
    return losses.ppo_clip_loss(log_prob, old_log_prob, advantages, clip_eps, mask)


PPO = Algorithm(gae_advantages, _ppo_surrogate, reuses_data=True)


def make_algorithm(config: PPOConfig | ReinforceConfig) -> Algorithm:
    if isinstance(config, PPOConfig):
        return PPO
    if isinstance(config, ReinforceConfig):
        estimator = reinforce_advantages if config.mode == "intermediate" else trajectory_advantages
        return Algorithm(
            lambda *a: estimator(*a, baseline=config.baseline),
            _reinforce_surrogate,
            reuses_data=False,
        )
    raise ValueError(f"config: expected PPOConfig or ReinforceConfig, got {type(config).__name__}")


# -- the loss shared by every algorithm -------------------------------------------------------


def actor_critic_loss(
    params: Any,
    mb: Minibatch,
    hp: HParams,
    *,
    network: Network,
    dist: ActionDist,
    surrogate: SurrogateFn,
    normalize_advantages: bool,
    clip_value_loss: bool,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``surrogate + vf_coef * value_loss - ent_coef * entropy`` on one minibatch."""
    dist_params, value = network.apply(params, mb.obs)
    log_prob = dist.log_prob(dist_params, mb.action)
    entropy = losses.entropy_bonus(dist.entropy(dist_params), mb.mask)
    advantages = mb.advantages
    if normalize_advantages:
        advantages = adv_lib.normalize_advantages(advantages, mb.mask)
    policy_loss = surrogate(log_prob, mb.old_log_prob, advantages, hp.clip_eps, mb.mask)
    total = policy_loss - hp.ent_coef * entropy
    if network.has_critic:
        if clip_value_loss:
            v_loss = losses.value_loss(value, mb.returns, mb.old_value, hp.clip_eps, mb.value_mask)
        else:
            v_loss = losses.value_loss(value, mb.returns, mask=mb.value_mask)
        total = total + hp.vf_coef * v_loss
    else:
        v_loss = jnp.zeros((), jnp.float32)
    aux = {
        "policy_loss": policy_loss,
        "value_loss": v_loss,
        "entropy": entropy,
        "approx_kl": losses.approx_kl(log_prob, mb.old_log_prob, mb.mask),
        "clip_fraction": losses.clip_fraction(log_prob, mb.old_log_prob, hp.clip_eps, mb.mask),
    }
    return total, aux
