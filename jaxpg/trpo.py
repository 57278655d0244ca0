"""TRPO (Schulman et al., 2015): its config, its objectives and its builder.

GAE targets; the actor takes one natural-gradient step inside a KL trust region (conjugate
gradient on Fisher-vector products and a backtracking line search, :mod:`jaxpg.trust_region`),
and the critic is fitted apart with Adam.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxpg import advantages as adv_lib
from jaxpg import losses, trust_region
from jaxpg.agents import Agent, is_recurrent, parameters_read, unroll
from jaxpg.algorithms import Algorithm, continue_rollout, gae_targets
from jaxpg.config import Config, HParams, _fail, _redeclared, field
from jaxpg.distributions import ActionDist, action_dist
from jaxpg.updates import (
    Batch,
    Minibatch,
    UpdateResult,
    as_minibatch,
    global_norm,
    learning_rate,
    optimize,
    optimizer_init,
)


@dataclasses.dataclass(frozen=True)
class TRPOConfig(Config):
    """TRPO (Schulman et al., 2015): GAE advantages and the surrogate ``E[ratio * A]`` under a
    trust region ``mean KL(pi_old || pi) <= target_kl``, by a natural-gradient step (conjugate
    gradient on Fisher-vector products) and a backtracking line search; the critic is fitted
    apart with Adam.

    The trust-region defaults are Stable-Baselines3-contrib's; the batch shape and GAE lambda
    0.98 solve CartPole-v1 within 200k steps (the learning test). The actor and the critic must
    not share parameters: the policy step moves the actor, Adam moves the critic.
    """

    total_timesteps: int = _redeclared("total_timesteps", 200_000)
    num_envs: int = _redeclared("num_envs", 8)
    num_steps: int | None = _redeclared("num_steps", 128)
    lr: float = field(1e-3, "the critic's Adam learning rate", traced=True)
    anneal_lr: bool = field(False, "linear decay of the critic's learning rate to 0 over the run")
    ent_coef: float = field(0.0, "unused: TRPO's surrogate has no entropy bonus")
    # 0.98, not SB3-contrib's 0.95: at 0.95 one CartPole seed in eight on an Intel Xeon fell back
    # from 500 to 225 by 200k steps; at 0.98, 24 seeds end at 465-500 (README, learning results).
    gae_lambda: float = field(0.98, "GAE lambda", traced=True)
    target_kl: float = field(
        0.01, "the trust region: the largest mean KL of one policy step", traced=True
    )
    cg_iters: int = field(15, "conjugate-gradient iterations")
    cg_damping: float = field(
        0.1, "the conjugate gradient solves (F + cg_damping * I) s = g", traced=True
    )
    line_search_shrink: float = field(0.8, "each backtracking step multiplies the step by this")
    line_search_steps: int = field(10, "shrinks tried after the full step before giving up")
    critic_epochs: int = field(10, "passes of Adam over each batch for the critic")
    critic_minibatches: int = field(4, "minibatches per critic epoch; must divide the batch")

    algorithm = "trpo"

    def __post_init__(self):
        super().__post_init__()
        self._resolve_episode_steps(
            False, "for whole-episode rollouts: PPO and REINFORCE with mode='trajectory', GRPO"
        )
        self._coerce_ints("cg_iters", "line_search_steps", "critic_epochs", "critic_minibatches")
        self._check_positive_ints(
            "cg_iters", "line_search_steps", "critic_epochs", "critic_minibatches"
        )
        self._check_range("gae_lambda", low=0.0, high=1.0)
        self._check_range("target_kl", low=0.0, low_open=True)
        self._check_range("cg_damping", low=0.0)
        shrink = self.line_search_shrink
        if not (
            isinstance(shrink, (int, float)) and not isinstance(shrink, bool) and 0.0 < shrink < 1.0
        ):
            _fail("line_search_shrink", shrink, "a number in (0, 1)")
        if self.shared_network:
            _fail(
                "shared_network",
                True,
                "False for TRPO: the policy step and the critic's Adam "
                "must move separate parameters",
            )
        self._check_divides_batch("critic_minibatches")
        self._check_batch_fits_budget()

    @property
    def actor_critic_apart(self) -> bool:
        return True


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


def check_actor_critic_apart(agent: Agent, env: Any) -> None:
    """A ``ValueError`` unless ``agent``'s policy and value read disjoint parameters (from the
    program's data flow, :func:`jaxpg.agents.parameters_read`): the critic's Adam runs after
    the line search, and moving a parameter the policy reads would break the trust region."""
    policy, value = parameters_read(agent, env)
    shared = sorted(policy & value)
    if shared:
        listed = ", ".join(shared[:4]) + (f" and {len(shared) - 4} more" if len(shared) > 4 else "")
        raise ValueError(
            f"agent: TRPO needs an actor and a critic with parameters of their own, but the "
            f"policy and the value both read {listed}: the critic's Adam would move the actor "
            "after the line search and break the KL bound (give the critic its own torso)"
        )


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
    check_actor_critic_apart(agent, config.env_spec)
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
