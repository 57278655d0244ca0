"""GRPO (Shao et al., 2024) and its relatives for environments: its config and its builder.

Group-relative advantages of whole episodes from grouped resets (no critic), PPO's clipped
surrogate and a k3 KL penalty towards a reference policy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxpg import advantages as adv_lib
from jaxpg import losses
from jaxpg.agents import Agent, unroll
from jaxpg.algorithms import (
    Algorithm,
    TargetsFn,
    finished_first_episode_mask,
    fresh_reset,
    sgd_for,
)
from jaxpg.config import Config, HParams, _fail, _is_int, _redeclared, field
from jaxpg.distributions import action_dist
from jaxpg.rollout import Transition
from jaxpg.updates import Batch, Targets, optimizer_init


@dataclasses.dataclass(frozen=True)
class GRPOConfig(Config):
    """GRPO (Shao et al., 2024) and its relatives for environments: group-relative advantages,
    no critic. Each update resets ``num_groups`` groups of ``group_size`` environments, every
    group from one shared key (its members start in the same state), rolls out whole episodes,
    and gives every step of member i's first episode the advantage of its return ``R_i``
    relative to its group (``advantage``: ``"std"`` GRPO, ``"mean"`` Dr. GRPO,
    ``"leave_one_out"`` RLOO); the loss is PPO's clipped surrogate plus ``kl_coef`` times the k3
    KL estimate towards a reference policy.

    The defaults solve CartPole-v1 (the learning test): 4 groups of 8, whole 500-step episodes.
    """

    num_envs: int | None = field(None, "num_groups * group_size (None: computed from them)")
    num_steps: int | None = field(None, "rollout length; None: the environment's episode limit")
    lr: float = _redeclared("lr", 3e-3)
    anneal_lr: bool = _redeclared("anneal_lr", False)
    ent_coef: float = _redeclared("ent_coef", 0.0)
    normalize_advantages: bool = field(False, "the group advantage is already relative")
    num_groups: int = field(4, "groups per update, each from one shared reset")
    group_size: int = field(8, "tries per group (>= 2)")
    advantage: str = field("std", '"std" (GRPO), "mean" (Dr. GRPO) or "leave_one_out" (RLOO)')
    num_epochs: int = field(4, "passes over each batch")
    num_minibatches: int = field(4, "minibatches per epoch; must divide num_envs * num_steps")
    clip_eps: float = field(0.2, "PPO ratio clip", traced=True)
    kl_coef: float = field(
        0.0, "weight of the k3 KL penalty towards the reference policy", traced=True
    )
    reference_every: int = field(
        0, "copy the policy into the reference every this many updates (0: the initial policy)"
    )

    algorithm = "grpo"

    def __post_init__(self):
        self._coerce_ints("num_groups", "group_size", "reference_every")
        self._check_positive_ints("num_groups", "group_size")
        if self.group_size < 2:
            _fail("group_size", self.group_size, "at least 2: a group needs others to compare with")
        groups_envs = self.num_groups * self.group_size
        if self.num_envs is None:
            object.__setattr__(self, "num_envs", groups_envs)
        elif self.num_envs != groups_envs:
            _fail(
                "num_envs",
                self.num_envs,
                f"num_groups * group_size = {self.num_groups} * "
                f"{self.group_size} = {groups_envs} (or None)",
            )
        if self.advantage not in adv_lib.GROUP_ADVANTAGES:
            _fail("advantage", self.advantage, f"one of {list(adv_lib.GROUP_ADVANTAGES)}")
        if not _is_int(self.reference_every) or self.reference_every < 0:
            _fail("reference_every", self.reference_every, "a non-negative integer (0: never)")
        super().__post_init__()
        self._resolve_episode_steps(True, "")
        self._check_whole_episodes()
        self._coerce_ints("num_epochs", "num_minibatches")
        self._check_positive_ints("num_epochs", "num_minibatches")
        self._check_range("clip_eps", low=0.0, low_open=True)
        self._check_range("kl_coef", low=0.0)
        self._check_divides_batch("num_minibatches")
        self._check_batch_fits_budget()

    @property
    def has_critic(self) -> bool:
        return False


def group_targets(group_size: int, kind: str) -> TargetsFn:
    """Every step of member i's first episode gets the advantage of its undiscounted return
    ``R_i`` relative to its group (:func:`jaxpg.advantages.group_advantages`); environments
    ``[g * group_size, (g + 1) * group_size)`` form group ``g``. Steps after the first
    episode's end are masked out, and so is a first episode that did not end inside the
    rollout (its return is unknown: it is left out of its group's statistics too).
    ``returns`` holds ``R_i`` (there is no critic to train)."""

    def targets(batch: Transition, hp: HParams, algo_state):
        mask = finished_first_episode_mask(batch.terminated, batch.truncated)
        episode_return = adv_lib.episode_returns(batch.reward, mask)  # [N]
        relative = adv_lib.group_advantages(
            episode_return.reshape(-1, group_size), kind, mask=mask[0].reshape(-1, group_size)
        )
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

    sgd = sgd_for(config, agent, loss, config.num_epochs, config.num_minibatches)

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
        known = batch.targets.mask[0].reshape(-1, config.group_size) > 0  # finished episodes
        count = jnp.maximum(jnp.sum(known, axis=-1), 1)
        mean = (
            jnp.sum(jnp.where(known, group_returns, 0.0), axis=-1, keepdims=True) / count[:, None]
        )
        var = jnp.sum(jnp.where(known, (group_returns - mean) ** 2, 0.0), axis=-1) / count
        metrics = {**out.metrics, "group_return_std": jnp.mean(jnp.sqrt(var))}
        return out._replace(algo_state=GRPOState(reference), metrics=metrics)

    return Algorithm(
        init=init,
        start=fresh_reset(config.env_spec, config.num_envs, agent, group_size=config.group_size),
        targets=group_targets(config.group_size, config.advantage),
        update=update,
        first_episodes=True,
    )
