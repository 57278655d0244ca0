"""GRPO (Shao et al., 2024) and its relatives for environments: its config and its builder.

Group-relative advantages of whole episodes from grouped resets (no critic), PPO's clipped
surrogate and a k3 KL penalty towards a reference policy.
"""

from __future__ import annotations

import dataclasses
import math
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
    first_episode_truncated,
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
    advantage: str = field(
        "std",
        '"std" (GRPO), "mean" (Dr. GRPO), "leave_one_out" (RLOO) or "batch_std" (the group\'s '
        "mean over the batch's std: TRL's scale_rewards=\"batch\")",
    )
    num_epochs: int = field(4, "passes over each batch")
    num_minibatches: int = field(4, "minibatches per epoch; must divide num_envs * num_steps")
    clip_eps: float = field(0.2, "PPO ratio clip", traced=True)
    kl_coef: float = field(
        0.0, "weight of the k3 KL penalty towards the reference policy", traced=True
    )
    reference_every: int = field(
        0, "copy the policy into the reference every this many updates (0: the initial policy)"
    )
    loss_type: str = field(
        "bnpo", f"how token losses are normalised (TRL's names): one of {list(losses.LOSS_TYPES)}"
    )
    epsilon_high: float | None = field(
        None, "upper ratio clip, DAPO's clip-higher (TRL's name); None: clip_eps"
    )
    mask_truncated_completions: bool = field(
        False, "leave episodes cut by the time limit out of the loss (TRL's name)"
    )
    importance_sampling_level: str = field(
        "token", '"token" ratios, or "sequence" ratios (GSPO) (TRL\'s name)'
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
        if self.advantage not in GRPO_ADVANTAGES:
            _fail("advantage", self.advantage, f"one of {list(GRPO_ADVANTAGES)}")
        if self.loss_type not in losses.LOSS_TYPES:
            _fail("loss_type", self.loss_type, f"one of {list(losses.LOSS_TYPES)}")
        if self.importance_sampling_level not in losses.IMPORTANCE_SAMPLING_LEVELS:
            _fail(
                "importance_sampling_level",
                self.importance_sampling_level,
                f"one of {list(losses.IMPORTANCE_SAMPLING_LEVELS)}",
            )
        if not isinstance(self.mask_truncated_completions, bool):
            _fail("mask_truncated_completions", self.mask_truncated_completions, "True or False")
        if self.epsilon_high is not None:
            if isinstance(self.epsilon_high, bool) or not isinstance(
                self.epsilon_high, int | float
            ):
                _fail("epsilon_high", self.epsilon_high, "a positive number or None")
            object.__setattr__(self, "epsilon_high", float(self.epsilon_high))
            if not (self.epsilon_high > 0 and math.isfinite(self.epsilon_high)):
                _fail("epsilon_high", self.epsilon_high, "a positive number or None")
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
        if self.whole_sequences and self.num_envs % self.num_minibatches:
            _fail(
                "num_minibatches",
                self.num_minibatches,
                f"a divisor of num_envs={self.num_envs}: loss_type={self.loss_type!r} and "
                f"importance_sampling_level={self.importance_sampling_level!r} take whole "
                "episodes per minibatch",
            )
        self._check_batch_fits_budget()

    @property
    def whole_sequences(self) -> bool:
        """Whether the loss needs whole episodes in each minibatch (a per-sequence mean, a
        constant per-sequence divisor, or sequence ratios)."""
        return self.loss_type in ("grpo", "dr_grpo") or self.importance_sampling_level == "sequence"

    @classmethod
    def from_trl(cls, **kwargs: Any) -> GRPOConfig:
        """A config from TRL's ``GRPOConfig`` names, so a TRL user's settings read across.

        ``num_generations`` -> ``group_size``; ``beta`` -> ``kl_coef``; ``epsilon`` ->
        ``clip_eps``; ``learning_rate`` -> ``lr``; ``num_iterations`` -> ``num_epochs``;
        ``adam_epsilon`` -> ``adam_eps``; ``scale_rewards`` -> ``advantage`` (``"group"`` or
        True: ``"std"``; ``"batch"``: ``"batch_std"``; ``"none"`` or False: ``"mean"``).
        ``epsilon_high``, ``loss_type``, ``mask_truncated_completions``,
        ``importance_sampling_level`` and ``max_grad_norm`` are jaxpg's names too. Any other
        keyword is a jaxpg field (``env``, ``num_groups``, ...). TRL's generation and logging
        options have no meaning here and are refused by name.
        """
        renamed = dict(kwargs)
        for trl, ours in TRL_NAMES.items():
            if trl in renamed:
                if ours in renamed:
                    _fail(trl, renamed[trl], f"given once: {trl} is TRL's name for {ours}")
                renamed[ours] = renamed.pop(trl)
        if "scale_rewards" in renamed:
            scale = renamed.pop("scale_rewards")
            key = scale if isinstance(scale, bool) else str(scale)
            if key not in TRL_SCALE_REWARDS:
                _fail("scale_rewards", scale, f"one of {list(TRL_SCALE_REWARDS)}")
            if "advantage" in renamed:
                _fail("scale_rewards", scale, "given without advantage (its jaxpg name)")
            renamed["advantage"] = TRL_SCALE_REWARDS[key]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(renamed) - known)
        if unknown:
            raise ValueError(
                f"GRPOConfig.from_trl: {unknown} are neither TRL names jaxpg maps "
                f"({sorted([*TRL_NAMES, 'scale_rewards'])}) nor jaxpg fields"
            )
        return cls(**renamed)

    @property
    def has_critic(self) -> bool:
        return False


GRPO_ADVANTAGES = (*adv_lib.GROUP_ADVANTAGES, "batch_std")

# TRL's GRPOConfig names -> jaxpg's fields (GRPOConfig.from_trl).
TRL_NAMES = {
    "num_generations": "group_size",
    "beta": "kl_coef",
    "epsilon": "clip_eps",
    "learning_rate": "lr",
    "num_iterations": "num_epochs",
    "adam_epsilon": "adam_eps",
}
TRL_SCALE_REWARDS = {"group": "std", True: "std", "batch": "batch_std", "none": "mean", False: "mean"}  # fmt: skip


def group_targets(group_size: int, kind: str, mask_truncated: bool = False) -> TargetsFn:
    """Every step of member i's first episode gets the advantage of its undiscounted return
    ``R_i`` relative to its group (:func:`jaxpg.advantages.group_advantages`); environments
    ``[g * group_size, (g + 1) * group_size)`` form group ``g``. Steps after the first
    episode's end are masked out, and so is a first episode that did not end inside the
    rollout (its return is unknown: it is left out of its group's statistics too).
    ``kind="batch_std"`` divides ``R_i`` minus its group's mean by the std of every known
    return of the batch (TRL's ``scale_rewards="batch"``). With ``mask_truncated``, a first
    episode cut by the time limit is left out of the loss (its return still counts in its
    group's statistics, as TRL's ``mask_truncated_completions`` does). ``returns`` holds
    ``R_i`` (there is no critic to train)."""

    def targets(batch: Transition, hp: HParams, algo_state):
        mask = finished_first_episode_mask(batch.terminated, batch.truncated)
        episode_return = adv_lib.episode_returns(batch.reward, mask)  # [N]
        known = mask[0]
        grouped, known_grouped = episode_return.reshape(-1, group_size), known.reshape(-1, group_size)  # fmt: skip
        if kind == "batch_std":
            relative = adv_lib.group_advantages(grouped, "mean", mask=known_grouped)
            std = jnp.sqrt(losses.masked_var(jnp.where(known > 0, episode_return, 0.0), known))
            relative = relative / (std + 1e-8)
        else:
            relative = adv_lib.group_advantages(grouped, kind, mask=known_grouped)
        advantages = jnp.where(mask > 0, relative.reshape(1, -1), 0.0)
        returns = jnp.broadcast_to(episode_return, mask.shape)
        loss_mask = mask
        if mask_truncated:
            loss_mask = mask * (1.0 - first_episode_truncated(batch.terminated, batch.truncated))
        return Targets(advantages, returns, loss_mask, jnp.zeros_like(mask)), algo_state

    return targets


class GRPOState(NamedTuple):
    reference: Any  # the reference policy's parameters (the KL penalty's anchor)


def make_grpo(config: GRPOConfig, agent: Agent) -> Algorithm:
    """GRPO for environments: group targets from grouped resets, then minibatch epochs.

    Each minibatch minimises

        L = agg(l_clip) + kl_coef * agg(k3) - ent_coef * entropy

    with ``l_clip`` the clipped surrogate per step (:func:`jaxpg.losses.clipped_surrogate`,
    clipped to ``[1 - clip_eps, 1 + epsilon_high]``) of token or sequence ratios
    (``importance_sampling_level``), ``k3`` the per-step KL estimate towards the reference,
    and ``agg`` the family's normalisation (``loss_type``,
    :func:`jaxpg.losses.aggregate_token_losses`): ``"bnpo"`` (the default) averages over the
    minibatch's valid steps, ``"dapo"`` divides by the minibatch's share of the batch's valid
    steps, ``"grpo"`` averages each episode over its own length and then the episodes, and
    ``"dr_grpo"`` divides the sum by ``episodes x num_steps``.

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
        ref_log_prob, num_tokens = mb.extra
        log_ratio = losses.importance_log_ratio(
            log_prob, mb.old_log_prob, mb.mask, config.importance_sampling_level
        )
        epsilon_high = hp.clip_eps if config.epsilon_high is None else config.epsilon_high

        def aggregate(per_token):
            return losses.aggregate_token_losses(
                per_token, mb.mask, config.loss_type, num_tokens=jnp.max(num_tokens)
            )

        policy_loss = aggregate(losses.clipped_surrogate(log_ratio, advantages, hp.clip_eps, epsilon_high))  # fmt: skip
        kl_ref = aggregate(losses.kl_k3_per_token(log_prob, ref_log_prob))
        entropy = losses.entropy_bonus(dist.entropy(dist_params), mb.mask)
        total = policy_loss + hp.kl_coef * kl_ref - hp.ent_coef * entropy
        ratio = jnp.exp(jax.lax.stop_gradient(log_ratio))
        clipped = (ratio < 1.0 - hp.clip_eps) | (ratio > 1.0 + epsilon_high)
        return total, {
            "policy_loss": policy_loss,
            "kl_ref": kl_ref,
            "entropy": entropy,
            "approx_kl": losses.approx_kl(log_prob, mb.old_log_prob, mb.mask),
            "clip_fraction": losses.masked_mean(clipped, mb.mask),
        }

    sgd = sgd_for(
        config, agent, loss, config.num_epochs, config.num_minibatches, config.whole_sequences
    )

    def update(
        params, opt_state, algo_state: GRPOState, batch: Batch, hp, update_step, key, constrain=None
    ):
        # The reference is fixed for the whole update: its log-probabilities of the taken
        # actions take one forward pass here, not one per minibatch step.
        tr = batch.transitions
        _, ref_dist, _ = unroll(agent, algo_state.reference, batch.agent_carry, tr.obs, tr.reset)
        ref_log_prob = jax.lax.stop_gradient(dist.log_prob(ref_dist, tr.action))
        # "dapo" divides each minibatch by its share of the whole batch's valid tokens.
        share = jnp.sum(batch.targets.mask) / config.num_minibatches
        num_tokens = jnp.full_like(ref_log_prob, share)
        out = sgd(
            params,
            opt_state,
            algo_state,
            batch._replace(extra=(ref_log_prob, num_tokens)),
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
        finished = finished_first_episode_mask(tr.terminated, tr.truncated)[0]
        known = finished.reshape(-1, config.group_size) > 0
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
        targets=group_targets(
            config.group_size, config.advantage, config.mask_truncated_completions
        ),
        update=update,
        first_episodes=True,
    )
