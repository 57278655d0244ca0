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

An algorithm is built from its config and the agent by a builder ``(config, agent) ->
Algorithm``; :mod:`jaxpg.registry` maps each name to its config class and builder:

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
from jaxpg import losses, trust_region
from jaxpg.agents import Agent, is_recurrent, unroll
from jaxpg.config import (
    A2CConfig,
    Config,
    GRPOConfig,
    HParams,
    PPOConfig,
    ReinforceConfig,
    TRPOConfig,
)
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
    as_minibatch,
    global_norm,
    learning_rate,
    optimize,
    optimizer_init,
    sgd_update,
)

__all__ = [
    "Algorithm",
    "Batch",
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
    "make_ppo",
    "make_a2c",
    "make_trpo",
    "make_reinforce",
    "make_grpo",
    "group_targets",
    "trpo_objectives",
    "natural_gradient_step",
    "rollout_cut_mask",
    "first_episode_mask",
]


# An algorithm's ``targets``: ``(rollout, hparams, algo_state) -> (targets, algo_state)``.
TargetsFn = Callable[[Transition, HParams, Any], tuple[Targets, Any]]


class Algorithm(NamedTuple):
    """Everything algorithm-specific, as pure functions (see the module docstring)."""

    init: Callable[[Any, HParams], tuple[Any, Any]]
    start: Callable[[jax.Array, EnvCarry], EnvCarry]
    targets: TargetsFn
    update: UpdateFn


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
                baseline_state = adv_lib.moving_average_baseline_update(
                    baseline_state, returns, hp.baseline_decay, mask
                )
                b = baseline_state.value
            else:
                b = jnp.zeros((), returns.dtype)
        advantages = adv_lib.per_step_advantages(returns, b) * mask
        return Targets(advantages, returns, mask, mask), baseline_state

    return targets


def trajectory_targets(baseline: str) -> TargetsFn:
    """Single-trajectory reward: every step of an episode gets ``R(tau) - b``.

    Only each environment's first episode of the rollout counts (steps after its end are
    masked). With a learned value the baseline is ``V(s_0)``, trained towards ``R(tau)``.
    """

    def targets(batch: Transition, hp: HParams, baseline_state):
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
        "clip_fraction": losses.clip_fraction(log_prob, mb.old_log_prob, hp.clip_eps, mb.mask),
    }
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


def _sgd(config, agent: Agent, loss_fn, num_epochs: int = 1, num_minibatches: int = 1) -> UpdateFn:
    sequences = is_recurrent(agent)
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


# -- jaxpg's algorithms ------------------------------------------------------------------------


def _with_baseline_state(adam_eps: float):
    """``init`` whose algorithm state is a moving-average baseline."""
    opt_init = optimizer_init(adam_eps)

    def init(params, hp):
        opt_state, _ = opt_init(params, hp)
        return opt_state, adv_lib.moving_average_baseline_init()

    return init


def make_ppo(config: PPOConfig, agent: Agent) -> Algorithm:
    """PPO (Schulman et al., 2017): GAE + the clipped surrogate, epochs of minibatches.

    ``mode="trajectory"``: every update rolls out whole episodes from a fresh reset and gives
    every step of each environment's first episode ``R(tau) - b`` (``b``: the learned
    ``V(s_0)``, a moving average, or none), with the same clipped surrogate and epochs.
    """
    loss_fn = make_actor_critic_loss(
        config, agent, ppo_surrogate, clip_value_loss=config.clip_value_loss
    )
    update = _sgd(config, agent, loss_fn, config.num_epochs, config.num_minibatches)
    if config.mode == "trajectory":
        return Algorithm(
            init=_with_baseline_state(config.adam_eps),
            start=fresh_reset(config.env_spec, config.num_envs, agent),
            targets=trajectory_targets(config.baseline),
            update=update,
        )
    return Algorithm(
        init=optimizer_init(config.adam_eps),
        start=continue_rollout,
        targets=gae_targets,
        update=update,
    )


def make_a2c(config: A2CConfig, agent: Agent) -> Algorithm:
    """A2C (Mnih et al., 2016, synchronous): GAE + the vanilla surrogate, one step per batch."""
    return Algorithm(
        init=optimizer_init(config.adam_eps),
        start=continue_rollout,
        targets=gae_targets,
        update=_sgd(config, agent, make_actor_critic_loss(config, agent, vanilla_surrogate)),
    )


def make_reinforce(config: ReinforceConfig, agent: Agent) -> Algorithm:
    """REINFORCE (Williams, 1992): returns-to-go or ``R(tau)``, minus a baseline; one step per
    batch. The moving-average baseline is the algorithm's state."""
    trajectory = config.mode == "trajectory"
    return Algorithm(
        init=_with_baseline_state(config.adam_eps),
        start=fresh_reset(config.env_spec, config.num_envs, agent)
        if trajectory
        else continue_rollout,
        targets=(trajectory_targets if trajectory else reinforce_targets)(config.baseline),
        update=_sgd(config, agent, make_actor_critic_loss(config, agent, vanilla_surrogate)),
    )


class TRPOObjectives(NamedTuple):
    """TRPO's functions of the actor's parameters ``theta`` on one batch."""

    surrogate: Callable  # theta -> mean(ratio * A)
    mean_kl: Callable  # theta -> mean KL(pi_old || pi_theta), analytic
    surrogate_and_kl: Callable  # theta -> (surrogate, mean_kl), one forward pass
    old_dist: Any  # pi_old's distribution parameters on the batch (gradient stopped)


def trpo_objectives(
    agent: Agent, dist: ActionDist, mb: Minibatch, advantages: jax.Array, params: Any
) -> TRPOObjectives:
    """The surrogate and the mean KL on the (time-major) batch ``mb``, replaying the agent (a
    recurrent one from its start carry); ``pi_old`` is the policy at ``params``."""

    def policy(theta):
        return unroll(agent, theta, mb.agent_carry, mb.obs, mb.reset)[1]

    old_dist = jax.lax.stop_gradient(policy(params))
    advantages = jax.lax.stop_gradient(advantages)

    def surrogate_of(dist_params):
        ratio = jnp.exp(dist.log_prob(dist_params, mb.action) - mb.old_log_prob)
        return losses.masked_mean(ratio * advantages, mb.mask)

    def kl_of(dist_params):
        return losses.masked_mean(dist.kl(old_dist, dist_params), mb.mask)

    def surrogate_and_kl(theta):
        dist_params = policy(theta)
        return surrogate_of(dist_params), kl_of(dist_params)

    return TRPOObjectives(
        lambda theta: surrogate_of(policy(theta)),
        lambda theta: kl_of(policy(theta)),
        surrogate_and_kl,
        old_dist,
    )


def natural_gradient_step(
    objectives: TRPOObjectives, params: Any, hp: HParams, *, cg_iters: int
) -> tuple[jax.Array, Any, Any, jax.Array, jax.Array]:
    """``(surrogate_old, g, full_step, step_size, finite)``: the surrogate's gradient ``g`` at
    ``params``, ``s = (F + cg_damping * I)^-1 g`` by conjugate gradient, and the step
    ``step_size * s``, ``step_size = sqrt(2 * target_kl / s^T (F + cg_damping * I) s)``, that
    the line search shrinks."""
    surrogate_old, g = jax.value_and_grad(objectives.surrogate)(params)
    fvp = trust_region.fisher_vector_product(objectives.mean_kl, params, hp.cg_damping)
    s = trust_region.conjugate_gradient(fvp, g, cg_iters)
    s_fs = trust_region.tree_vdot(s, fvp(s))
    step_size = jnp.sqrt(2.0 * hp.target_kl / jnp.maximum(s_fs, 1e-30))
    full_step = jax.tree.map(lambda x: step_size * x, s)
    finite = jnp.isfinite(surrogate_old) & jnp.isfinite(global_norm(g)) & jnp.isfinite(s_fs)
    return surrogate_old, g, full_step, step_size, finite


def make_trpo(config: TRPOConfig, agent: Agent) -> Algorithm:
    """TRPO (Schulman et al., 2015): GAE targets; the actor takes one natural-gradient step on
    the whole batch, inside the trust region ``mean KL <= target_kl`` (see
    :mod:`jaxpg.trust_region`); then the critic takes ``critic_epochs`` x
    ``critic_minibatches`` Adam steps on the GAE returns.

    The surrogate ``mean(ratio * A)`` and the analytic mean KL are computed by replaying the
    agent over the batch (a recurrent one from its start carry). The critic's Adam moves every
    parameter that the value loss depends on and nothing else, so the actor and the critic
    must not share parameters. A non-finite gradient, step or critic loss discards the whole
    update.
    """
    dist = action_dist(config.env_spec.discrete)
    sequences = is_recurrent(agent)
    num_shrinks = config.line_search_steps

    def critic_loss(params, mb, hp):
        _, _, value = unroll(agent, params, mb.agent_carry, mb.obs, mb.reset)
        v_loss = losses.value_loss(value, mb.returns, mask=mb.value_mask)
        return v_loss, {"value_loss": v_loss}

    def update(params, opt_state, algo_state, batch: Batch, hp, update_step, key, constrain=None):
        mb = as_minibatch(batch)  # the whole batch, time-major [T, N]
        advantages = mb.advantages
        if config.normalize_advantages:
            advantages = adv_lib.normalize_advantages(advantages, mb.mask)
        objectives = trpo_objectives(agent, dist, mb, advantages, params)
        surrogate_old, _, full_step, step_size, policy_finite = natural_gradient_step(
            objectives, params, hp, cg_iters=config.cg_iters
        )
        search = trust_region.backtracking_line_search(
            objectives.surrogate_and_kl,
            params,
            full_step,
            surrogate_old,
            hp.target_kl,
            config.line_search_shrink,
            num_shrinks,
        )
        actor_params = jax.tree.map(
            lambda n, o: jnp.where(policy_finite, n, o), search.params, params
        )

        lr = learning_rate(hp, update_step, num_updates=config.num_updates, anneal=config.anneal_lr)
        new_params, new_opt_state, critic_metrics, critic_finite = optimize(
            actor_params,
            opt_state,
            batch,
            hp,
            lr,
            key,
            loss_fn=critic_loss,
            num_epochs=config.critic_epochs,
            num_minibatches=config.critic_minibatches,
            adam_eps=config.adam_eps,
            sequences=sequences,
            constrain=constrain,
        )
        finite = policy_finite & critic_finite
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        accepted = search.accepted & finite
        metrics = {
            "policy_loss": -surrogate_old,
            "value_loss": critic_metrics["value_loss"],
            "entropy": losses.masked_mean(dist.entropy(objectives.old_dist), mb.mask),
            "kl": jnp.where(accepted, search.kl, 0.0),
            "line_search_steps": jnp.where(finite, search.shrinks, num_shrinks + 1),
            "step_accepted": accepted.astype(jnp.float32),
            "surrogate_improvement": jnp.where(accepted, search.improvement, 0.0),
            "natural_step_size": step_size,
            "grad_norm": critic_metrics["grad_norm"],
            "learning_rate": lr,
        }
        return UpdateResult(
            keep(new_params, params), keep(new_opt_state, opt_state), algo_state, metrics, finite
        )

    return Algorithm(
        init=optimizer_init(config.adam_eps),
        start=continue_rollout,
        targets=gae_targets,
        update=update,
    )


# -- group-relative advantages -----------------------------------------------------------------


def group_targets(group_size: int, kind: str) -> TargetsFn:
    """Every step of member i's first episode gets the advantage of its undiscounted return
    ``R_i`` relative to its group (:func:`jaxpg.advantages.group_advantages`); environments
    ``[g * group_size, (g + 1) * group_size)`` form group ``g``. Steps after the first
    episode's end are masked out. ``returns`` holds ``R_i`` (there is no critic to train)."""

    def targets(batch: Transition, hp: HParams, algo_state):
        mask = first_episode_mask(batch.terminated, batch.truncated)
        episode_return = adv_lib.episode_returns(batch.reward, mask)  # [N]
        relative = adv_lib.group_advantages(episode_return.reshape(-1, group_size), kind)
        advantages = jnp.where(mask > 0, relative.reshape(1, -1), 0.0)
        returns = jnp.broadcast_to(episode_return, mask.shape)
        return Targets(advantages, returns, mask, jnp.zeros_like(mask)), algo_state

    return targets


class GRPOState(NamedTuple):
    reference: Any  # the reference policy's parameters (the KL penalty's anchor)


def make_grpo(config: GRPOConfig, agent: Agent) -> Algorithm:
    """GRPO for environments: group targets from grouped resets, then minibatch epochs.

    Each minibatch minimises

        L = ppo_clip_loss(A) + kl_coef * KL_k3(pi || pi_ref) - ent_coef * entropy

    averaged over the valid steps of the minibatch (every step of every member's episode weighs
    the same). GRPO (DeepSeekMath) instead averages each sequence over its own length and then
    the sequences, so a short episode's steps weigh more; Dr. GRPO sums each sequence's steps
    and divides by one constant. In a minibatch of steps from many episodes, the per-step mean
    here is Dr. GRPO's aggregation with the constant equal to the minibatch's valid step count.

    The reference is the initial policy, or the current one copied every ``reference_every``
    updates; its parameters are the algorithm state, applied with the same agent (no second
    network definition). There is no critic: the agent has no value head.
    """
    if agent.has_critic:
        raise ValueError("agent: GRPO has no critic; give an agent whose value is None")
    dist = action_dist(config.env_spec.discrete)
    base_init = optimizer_init(config.adam_eps)

    def init(params, hp):
        opt_state, _ = base_init(params, hp)
        return opt_state, GRPOState(reference=params)

    def loss(params, mb, hp):
        _, dist_params, _ = unroll(agent, params, mb.agent_carry, mb.obs, mb.reset)
        log_prob = dist.log_prob(dist_params, mb.action)
        advantages = mb.advantages
        if config.normalize_advantages:
            advantages = adv_lib.normalize_advantages(advantages, mb.mask)
        policy_loss = losses.ppo_clip_loss(
            log_prob, mb.old_log_prob, advantages, hp.clip_eps, mb.mask
        )
        kl_ref = losses.kl_k3(log_prob, mb.extra, mb.mask)  # extra: the reference log-probs
        entropy = losses.entropy_bonus(dist.entropy(dist_params), mb.mask)
        total = policy_loss + hp.kl_coef * kl_ref - hp.ent_coef * entropy
        return total, {
            "policy_loss": policy_loss,
            "kl_ref": kl_ref,
            "entropy": entropy,
            "approx_kl": losses.approx_kl(log_prob, mb.old_log_prob, mb.mask),
            "clip_fraction": losses.clip_fraction(log_prob, mb.old_log_prob, hp.clip_eps, mb.mask),
        }

    sgd = _sgd(config, agent, loss, config.num_epochs, config.num_minibatches)

    def update(
        params, opt_state, algo_state: GRPOState, batch: Batch, hp, update_step, key, constrain=None
    ):
        # The reference is fixed for the whole update: its log-probabilities of the taken
        # actions take one forward pass here, not one per minibatch step.
        tr = batch.transitions
        _, ref_dist, _ = unroll(agent, algo_state.reference, batch.agent_carry, tr.obs, tr.reset)
        ref_log_prob = jax.lax.stop_gradient(dist.log_prob(ref_dist, tr.action))
        out = sgd(
            params,
            opt_state,
            algo_state,
            batch._replace(extra=ref_log_prob),
            hp,
            update_step,
            key,
            constrain,
        )
        reference = algo_state.reference
        if config.reference_every:
            refresh = (update_step + 1) % config.reference_every == 0
            reference = jax.tree.map(lambda n, o: jnp.where(refresh, n, o), out.params, reference)
        group_returns = batch.targets.returns[0].reshape(-1, config.group_size)
        metrics = {**out.metrics, "group_return_std": jnp.mean(jnp.std(group_returns, axis=-1))}
        return out._replace(algo_state=GRPOState(reference), metrics=metrics)

    return Algorithm(
        init=init,
        start=fresh_reset(config.env_spec, config.num_envs, agent, group_size=config.group_size),
        targets=group_targets(config.group_size, config.advantage),
        update=update,
    )
