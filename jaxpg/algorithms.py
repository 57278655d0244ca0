"""Algorithms as data: the protocol every policy-gradient method fits, and jaxpg's own.

Every algorithm follows the unified policy gradient

    grad J = E[ sum_t grad log pi(a_t | s_t) * A_t ]

and is one :class:`Algorithm`, a NamedTuple of pure functions in the optax style. It owns
everything algorithm-specific; the trainer (:mod:`jaxpg.train`) calls these four and nothing
else, and keeps the algorithm's state as one opaque pytree:

    init(params, hparams) -> (opt_state, algo_state)
    start(key, env_carry) -> env_carry                        # how an update's rollout begins
    targets(transitions, hparams, algo_state) -> (Targets, algo_state)   # A_t and the critic's
    update(params, opt_state, algo_state, batch, hparams, update_step, key[, constrain])
        -> UpdateResult(params, opt_state, algo_state, metrics, finite)

* ``start``: :func:`continue_rollout` (the environments go on where the last update left
  them) or :func:`fresh_reset` (every update starts new episodes);
* ``targets``: advantage estimators over the time-major ``[T, N]`` rollout (``gae_targets``,
  ``reinforce_targets``, ``trajectory_targets``);
* ``update``: :func:`jaxpg.updates.sgd_update` (epochs of minibatches of a loss; one step per
  batch for REINFORCE and A2C), or any step of your own (a trust region, a natural gradient).

This module holds the protocol and the parts the algorithms share; each algorithm is one
module holding its config and its builder ``(config, agent) -> Algorithm``
(:mod:`jaxpg.ppo`, :mod:`jaxpg.a2c`, :mod:`jaxpg.trpo`, :mod:`jaxpg.reinforce`,
:mod:`jaxpg.grpo`), and :mod:`jaxpg.registry` names them:

* PPO = GAE + the clipped-ratio surrogate, epochs of shuffled minibatches;
* A2C = GAE + the vanilla surrogate, one full-batch step per update;
* TRPO = GAE + the surrogate ``E[ratio * A]`` under a KL trust region: a natural-gradient step
  and a line search for the actor, Adam epochs for the critic;
* REINFORCE = returns-to-go (or ``R(tau)``) minus a baseline + the vanilla surrogate, one step;
* GRPO = group-relative ``R_i`` (groups of tries from one shared start, no critic) + the clipped
  surrogate and a k3 KL penalty towards a reference policy (the algorithm state).

The README's "Write your own algorithm" section builds A2C again from these parts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxpg import advantages as adv_lib
from jaxpg import losses
from jaxpg.agents import Agent, is_recurrent, unroll
from jaxpg.config import Config, HParams
from jaxpg.distributions import ActionDist, action_dist
from jaxpg.envs import Env
from jaxpg.rollout import EnvCarry, Transition, env_carry_init
from jaxpg.updates import (
    Batch,
    LossFn,
    Minibatch,
    Targets,
    UpdateFn,
    UpdateResult,
    optimizer_init,
    sgd_update,
)

__all__ = [
    "Algorithm",
    "BASELINES",
    "Batch",
    "MODES",
    "Minibatch",
    "Targets",
    "UpdateResult",
    "continue_rollout",
    "fresh_reset",
    "gae_targets",
    "reinforce_targets",
    "trajectory_targets",
    "ppo_surrogate",
    "vanilla_surrogate",
    "actor_critic_loss",
    "make_actor_critic_loss",
    "sgd_for",
    "init_with_baseline",
    "rollout_cut_mask",
    "first_episode_mask",
    "finished_first_episode_mask",
]

# The REINFORCE-style rollouts and baselines (PPO's and REINFORCE's ``mode`` and ``baseline``).
MODES = ("intermediate", "trajectory")
BASELINES = ("none", "moving_average", "value")


# An algorithm's ``targets``: ``(rollout, hparams, algo_state) -> (targets, algo_state)``.
TargetsFn = Callable[[Transition, HParams, Any], tuple[Targets, Any]]


class Algorithm(NamedTuple):
    """Everything algorithm-specific, as pure functions (see the module docstring)."""

    init: Callable[[Any, HParams], tuple[Any, Any]]
    start: Callable[[jax.Array, EnvCarry], EnvCarry]
    targets: TargetsFn
    update: UpdateFn
    # True where ``start`` resets every environment and ``targets`` learns from each one's
    # first episode only (PPO's and REINFORCE's trajectory mode, GRPO): the reported episode
    # statistics then count those first episodes (``jaxpg.rollout.episode_stats``).
    first_episodes: bool = False


# -- how a rollout begins ----------------------------------------------------------------------


def continue_rollout(key: jax.Array, env_carry: EnvCarry) -> EnvCarry:
    """The environments go on from where the previous update left them."""
    del key
    return env_carry


def fresh_reset(
    env: Env, num_envs: int, agent: Agent, group_size: int = 1
) -> Callable[[jax.Array, EnvCarry], EnvCarry]:
    """``start`` that resets every environment (and the agent's carry) at each update, keeping
    the normaliser statistics: whole episodes from their start, none spanning two updates.
    ``group_size > 1``: consecutive groups of environments share one reset key (one start)."""

    def start(key: jax.Array, env_carry: EnvCarry) -> EnvCarry:
        return env_carry_init(
            key,
            env,
            num_envs,
            env_carry.obs_stats,
            env_carry.reward_stats,
            agent.initial_carry(num_envs),
            group_size=group_size,
        )

    return start


# -- advantage estimators ----------------------------------------------------------------------


def gae_targets(batch: Transition, hp: HParams, algo_state: Any) -> tuple[Targets, Any]:
    """PPO/A2C: ``gae`` bootstrapped from V(true next state) (``batch.next_value``)."""
    advantages, returns = adv_lib.gae(
        batch.reward,
        batch.value,
        batch.next_value,
        batch.terminated,
        batch.truncated,
        hp.gamma,
        hp.gae_lambda,
    )
    ones = jnp.ones_like(advantages)
    return Targets(advantages, returns, ones, ones), algo_state


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


def finished_first_episode_mask(terminated: jax.Array, truncated: jax.Array) -> jax.Array:
    """1.0 for the steps of each environment's first episode where that episode ended inside
    the rollout (terminated or truncated), 0.0 elsewhere: an unfinished first episode, whose
    return is unknown, is masked out whole. ``[T, N]``."""
    return first_episode_mask(terminated, truncated) * rollout_cut_mask(terminated, truncated)


def first_episode_truncated(terminated: jax.Array, truncated: jax.Array) -> jax.Array:
    """1.0 for every step of an environment whose first episode was cut by the time limit
    (truncated, not terminated), 0.0 elsewhere. ``[T, N]``."""
    cut = (truncated & ~terminated).astype(jnp.float32)
    at_end = jnp.sum(first_episode_mask(terminated, truncated) * cut, axis=0, keepdims=True)
    return jnp.broadcast_to(jnp.minimum(at_end, 1.0), cut.shape)


def reinforce_targets(baseline: str) -> TargetsFn:
    """Intermediate-reward REINFORCE: ``A_t = G_t - b_t`` with ``G_t`` the return-to-go and
    ``b`` none, a moving average of the returns (the algorithm state), or the learned ``V(s_t)``.

    With a learned value the tail cut off by the end of the rollout bootstraps from
    V(final obs); without one those steps are masked out of the loss. A time-limit truncation
    bootstraps from ``next_value`` (zero without a critic: the truncated Monte Carlo return).
    """

    def targets(batch: Transition, hp: HParams, baseline_state):
        returns = adv_lib.discounted_returns(
            batch.reward, batch.next_value, batch.terminated, batch.truncated, hp.gamma
        )
        if baseline == "value":
            mask = jnp.ones_like(returns)
            b = batch.value
        else:
            mask = rollout_cut_mask(batch.terminated, batch.truncated)
            if baseline == "moving_average":
                b = baseline_state.value  # from before this batch: b does not depend on it
                baseline_state = adv_lib.moving_average_baseline_update(
                    baseline_state, returns, hp.baseline_decay, mask
                )
            else:
                b = jnp.zeros((), returns.dtype)
        advantages = adv_lib.per_step_advantages(returns, b) * mask
        return Targets(advantages, returns, mask, mask), baseline_state

    return targets


def trajectory_targets(baseline: str) -> TargetsFn:
    """Single-trajectory reward: every step of an episode gets ``R(tau) - b``.

    Only each environment's first episode of the rollout counts, and only if it ended inside
    the rollout (steps after its end, and an unfinished episode whole, are masked). With a
    learned value the baseline is ``V(s_0)``, trained towards ``R(tau)``; a moving average is
    the one from before this batch (so ``b`` does not depend on the batch it is subtracted from).
    """

    def targets(batch: Transition, hp: HParams, baseline_state):
        mask = finished_first_episode_mask(batch.terminated, batch.truncated)
        finished = mask[0]  # [N]: the first episode ended inside the rollout
        episode_return = adv_lib.episode_returns(batch.reward, mask)  # [N]
        if baseline == "value":
            b = batch.value[0]
        elif baseline == "moving_average":
            b = baseline_state.value
            baseline_state = adv_lib.moving_average_baseline_update(
                baseline_state, episode_return, hp.baseline_decay, finished
            )
        else:
            b = jnp.zeros((), episode_return.dtype)
        advantages = adv_lib.trajectory_advantages(batch.reward, mask, b)
        returns = jnp.broadcast_to(episode_return, mask.shape)
        value_mask = jnp.zeros_like(mask).at[0].set(finished)
        return Targets(advantages, returns, mask, value_mask), baseline_state

    return targets


# -- surrogates: (log_prob, old_log_prob, advantages, mask, hparams) -> scalar -------------------


def vanilla_surrogate(
    log_prob: jax.Array,
    old_log_prob: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    hp: HParams,
) -> jax.Array:
    """``-mean(log pi * A)``: REINFORCE's and A2C's score-function loss."""
    del old_log_prob, hp
    return losses.reinforce_loss(log_prob, advantages, mask)


def ppo_surrogate(
    log_prob: jax.Array,
    old_log_prob: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    hp: HParams,
) -> jax.Array:
    """PPO's clipped-ratio loss with ``hp.clip_eps``."""
    return losses.ppo_clip_loss(log_prob, old_log_prob, advantages, hp.clip_eps, mask)


# -- the loss shared by the actor-critic algorithms --------------------------------------------


def actor_critic_loss(
    params: Any,
    mb: Minibatch,
    hp: HParams,
    *,
    agent: Agent,
    dist: ActionDist,
    surrogate: Callable[..., jax.Array],
    normalize_advantages: bool,
    clip_value_loss: bool,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``surrogate + vf_coef * value_loss - ent_coef * entropy`` on one minibatch.

    The agent is replayed over the minibatch (:func:`jaxpg.agents.unroll`): single steps for a
    feed-forward agent, whole sequences from their start carry for a recurrent one. The value
    loss is PPO2's clipped one (with ``hp.clip_eps``) when ``clip_value_loss``, and is left out
    for an agent without a critic. ``normalize_advantages`` standardises the advantages over
    the minibatch's valid steps.
    """
    _, dist_params, value = unroll(agent, params, mb.agent_carry, mb.obs, mb.reset)
    log_prob = dist.log_prob(dist_params, mb.action)
    entropy = losses.entropy_bonus(dist.entropy(dist_params), mb.mask)
    advantages = mb.advantages
    if normalize_advantages:
        advantages = adv_lib.normalize_advantages(advantages, mb.mask)
    policy_loss = surrogate(log_prob, mb.old_log_prob, advantages, mb.mask, hp)
    total = policy_loss - hp.ent_coef * entropy
    if value is not None:
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
    }
    if "clip_eps" in hp:  # a clipped surrogate's figure; absent where nothing is clipped
        aux["clip_fraction"] = losses.clip_fraction(log_prob, mb.old_log_prob, hp.clip_eps, mb.mask)
    return total, aux


def make_actor_critic_loss(
    config: Config,
    agent: Agent,
    surrogate: Callable[..., jax.Array],
    *,
    clip_value_loss: bool = False,
) -> LossFn:
    """``loss_fn(params, minibatch, hparams) -> (loss, metrics)``: :func:`actor_critic_loss` for
    ``config``'s action space and advantage normalisation."""

    def loss_fn(params, mb, hp):
        return actor_critic_loss(
            params,
            mb,
            hp,
            agent=agent,
            dist=action_dist(config.env_spec.discrete),
            surrogate=surrogate,
            normalize_advantages=config.normalize_advantages,
            clip_value_loss=clip_value_loss,
        )

    return loss_fn


def sgd_for(
    config: Config,
    agent: Agent,
    loss_fn: LossFn,
    num_epochs: int = 1,
    num_minibatches: int = 1,
    whole_sequences: bool = False,
) -> UpdateFn:
    """:func:`jaxpg.updates.sgd_update` of ``loss_fn`` with ``config``'s optimiser settings
    (``adam_eps``, ``anneal_lr`` over ``num_updates``), in sequence minibatches for a recurrent
    ``agent``, or when the loss asks for ``whole_sequences`` (then the minibatches must divide
    ``num_envs``)."""
    sequences = is_recurrent(agent) or whole_sequences
    if sequences and config.num_envs % num_minibatches:
        raise ValueError(
            f"num_minibatches={num_minibatches} is invalid: a recurrent agent's minibatches are "
            f"whole environment sequences, so it must divide num_envs={config.num_envs}"
        )
    return sgd_update(
        loss_fn,
        num_epochs=num_epochs,
        num_minibatches=num_minibatches,
        adam_eps=config.adam_eps,
        num_updates=config.num_updates,
        anneal_lr=config.anneal_lr,
        sequences=sequences,
    )


def init_with_baseline(adam_eps: float) -> Callable[[Any, HParams], tuple[Any, Any]]:
    """``init`` whose algorithm state is a moving-average baseline (REINFORCE, PPO's
    trajectory mode)."""
    opt_init = optimizer_init(adam_eps)

    def init(params, hp):
        opt_state, _ = opt_init(params, hp)
        return opt_state, adv_lib.moving_average_baseline_init()

    return init
