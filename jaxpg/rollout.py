"""Rollouts: a ``lax.scan`` over ``num_steps`` of a batch of environments.

Everything here is time-major: a :class:`Transition` batch has shape ``[T, N, ...]`` with
``T = num_steps`` and ``N = num_envs``. Each step runs the agent once and keeps the
log-probability and the value, so the update never redoes the rollout's forward pass.

The agent's carry (:mod:`jaxpg.agents`; empty for a feed-forward policy) moves with the
environments in :class:`EnvCarry`. Each step feeds the agent ``reset``, true where the
observation starts a new episode, and stores it in the batch: with the carry at the rollout's
start, that is all a loss needs to replay a recurrent agent over the batch.

Episode facts kept per step:

* ``terminated`` and ``truncated`` as separate flags;
* ``final_obs``: the (normalised) observation the transition really reached; for an episode
  that ended it is gymnax's ``info["final_observation"]``, not the reset observation;
* ``next_value``: ``V(final_obs)``, the bootstrap value of the true next state. For a
  recurrent agent it is computed from the carry that reached ``final_obs``, never a reset one;
* ``episode_return``/``episode_length`` of each episode that ended at that step (undiscounted,
  raw rewards), valid where ``episode_done`` is true and zero elsewhere, so no placeholder is
  ever averaged in before the first episode ends.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from jaxpg.agents import Agent, is_recurrent, unroll
from jaxpg.distributions import ActionDist
from jaxpg.envs import Env
from jaxpg.normalization import (
    RunningMeanStd,
    normalize,
    running_stats_init,
    running_stats_update,
    scale_reward,
)


class Transition(NamedTuple):
    obs: jax.Array  # [T, N, *obs_shape] the (normalised) observation acted on
    action: jax.Array  # [T, N] or [T, N, D]: the raw sample (before clipping to the bounds)
    log_prob: jax.Array  # [T, N]
    value: jax.Array  # [T, N] (zeros without a critic)
    reset: jax.Array  # [T, N] bool: obs is the first of an episode (the agent reset its carry)
    reward: jax.Array  # [T, N] the reward used for learning (scaled if normalize_rewards)
    terminated: jax.Array  # [T, N] bool
    truncated: jax.Array  # [T, N] bool
    final_obs: jax.Array  # [T, N, *obs_shape] (normalised) true next observation
    next_value: jax.Array  # [T, N] V(final_obs) (zeros without a critic)
    episode_return: jax.Array  # [T, N] raw undiscounted return of the episode ending here
    episode_length: jax.Array  # [T, N] int32
    episode_done: jax.Array  # [T, N] bool: an episode ended at this step


class EnvCarry(struct.PyTreeNode):
    """Everything that moves with the environments between steps (leading axis ``N``)."""

    env_state: Any
    obs: jax.Array  # raw observation to act on next
    episode_return: jax.Array  # running undiscounted return of the current episode
    episode_length: jax.Array
    discounted_return: jax.Array  # running discounted return, for reward scaling
    obs_stats: RunningMeanStd
    reward_stats: RunningMeanStd  # statistics of the discounted return (a scalar)
    agent_carry: Any  # the agent's recurrent state, leading axis N (() for a feed-forward agent)
    episode_start: jax.Array  # [N] bool: ``obs`` is the first observation of an episode


def env_carry_init(
    key: jax.Array,
    env: Env,
    num_envs: int,
    obs_stats: RunningMeanStd | None = None,
    reward_stats: RunningMeanStd | None = None,
    agent_carry: Any = (),
    group_size: int = 1,
) -> EnvCarry:
    """Resets ``num_envs`` environments. Statistics are fresh unless given; ``agent_carry`` is
    the agent's initial carry for ``num_envs`` (the agent resets it at the first step anyway).

    ``group_size > 1`` resets consecutive groups of ``group_size`` environments from one shared
    key each, so the members of a group start in the same state."""
    if group_size == 1:
        obs, env_state = env.reset(key, num_envs)
    else:
        group_keys = jax.random.split(key, num_envs // group_size)
        obs, env_state = env.reset_with_keys(jnp.repeat(group_keys, group_size, axis=0))
    zeros = jnp.zeros((num_envs,), jnp.float32)
    return EnvCarry(
        env_state=env_state,
        obs=obs,
        episode_return=zeros,
        episode_length=jnp.zeros((num_envs,), jnp.int32),
        discounted_return=zeros,
        obs_stats=running_stats_init(env.obs_shape) if obs_stats is None else obs_stats,
        reward_stats=running_stats_init(()) if reward_stats is None else reward_stats,
        agent_carry=agent_carry,
        episode_start=jnp.ones((num_envs,), jnp.bool_),
    )


class RolloutOptions(NamedTuple):
    """Static switches of a rollout (from the config)."""

    normalize_obs: bool
    normalize_rewards: bool
    clip_actions: bool
    reward_scale: float = 1.0  # the rewards learned from are multiplied by it


# Above this many action-noise numbers per rollout (T * N * num_actions), the noise is drawn
# step by step instead of in one call before the scan: a 32k-token vocabulary would otherwise
# need gigabytes. Measured on the 2-core CPU (benchmarks/results/rollout_noise_cpu.md, T = 128,
# N = 64): drawing per step costs 1.6-1.7x at 2^17-2^20 numbers, 1.08x at 2^23 (where the one
# call holds 128 MiB), and 0.7-0.85x from 2^26 on (1-4 GiB held).
PREDRAW_MAX_NOISE = 2**22


def rollout(
    key: jax.Array,
    params: Any,
    carry: EnvCarry,
    gamma: jax.Array,
    *,
    env: Env,
    agent: Agent,
    dist: ActionDist,
    num_steps: int,
    options: RolloutOptions,
) -> tuple[EnvCarry, Transition]:
    """Steps ``N`` environments ``num_steps`` times with the policy ``agent.apply(params, ...)``.

    Returns the carry to continue from and a time-major :class:`Transition` batch.
    ``gamma`` (traced) only drives the reward scaling's discounted return.
    """
    recurrent = is_recurrent(agent)
    num_envs = carry.episode_start.shape[0]
    noise_shape = (num_envs, env.action_dim)
    predraw = num_steps * num_envs * env.action_dim <= PREDRAW_MAX_NOISE

    def norm_obs(stats, obs):
        return normalize(stats, obs) if options.normalize_obs else obs

    def step(carry: EnvCarry, step_randomness):
        action_noise, env_keys = step_randomness
        if not predraw:
            action_noise = dist.noise(action_noise, noise_shape)
        obs = norm_obs(carry.obs_stats, carry.obs)
        # A feed-forward agent ignores the reset flags: they are not threaded through its scan
        # (each value carried costs a little per step on a CPU) but rebuilt after it.
        reset = carry.episode_start if recurrent else jnp.zeros_like(carry.episode_start)
        agent_carry, dist_params, value = agent.apply(params, carry.agent_carry, obs, reset)
        action = dist.sample_with_noise(dist_params, action_noise)
        log_prob = dist.log_prob(dist_params, action)
        env_action = action
        if options.clip_actions and not env.discrete:
            env_action = env.clip_action(action)
        out = env.step_with_keys(env_keys, carry.env_state, env_action)
        done = out.terminated | out.truncated

        obs_stats = carry.obs_stats
        if options.normalize_obs:
            # The final observations are merged in, not the reset ones: they are what the
            # policy will be asked to value. For envs that did not end they are the same.
            obs_stats = running_stats_update(obs_stats, out.final_obs)

        reward = out.reward if options.reward_scale == 1.0 else out.reward * options.reward_scale
        discounted_return = carry.discounted_return
        reward_stats = carry.reward_stats
        if options.normalize_rewards:
            discounted_return = discounted_return * gamma + reward
            reward_stats = running_stats_update(reward_stats, discounted_return)
            reward = scale_reward(reward_stats, reward)
            discounted_return = jnp.where(done, 0.0, discounted_return)

        final_obs = norm_obs(obs_stats, out.final_obs)
        next_value = None  # filled in after the scan, unless the agent has a carry
        if recurrent and value is not None:
            # V(final_obs) from the carry that reached it (no reset: the episode is the same).
            _, _, next_value = agent.apply(params, agent_carry, final_obs, jnp.zeros_like(done))
        episode_return = carry.episode_return + out.reward
        episode_length = carry.episode_length + 1
        transition = Transition(
            obs=obs,
            action=action,
            log_prob=log_prob,
            value=jnp.zeros_like(log_prob) if value is None else value,
            reset=None,  # after the scan: each scan output costs a write per step on a CPU
            reward=reward,
            terminated=out.terminated,
            truncated=out.truncated,
            final_obs=final_obs,
            next_value=next_value,
            episode_return=jnp.where(done, episode_return, 0.0),
            episode_length=jnp.where(done, episode_length, 0),
            episode_done=done,
        )
        carry = EnvCarry(
            env_state=out.env_state,
            obs=out.obs,
            episode_return=jnp.where(done, 0.0, episode_return),
            episode_length=jnp.where(done, 0, episode_length),
            discounted_return=discounted_return,
            obs_stats=obs_stats,
            reward_stats=reward_stats,
            agent_carry=agent_carry,
            episode_start=done if recurrent else carry.episode_start,
        )
        return carry, transition

    # The randomness of every step, drawn before the scan in two calls (each jax.random call
    # is a loop on a CPU; a few per step were most of a small rollout's time).
    noise_key, env_key = jax.random.split(key)
    if predraw:
        action_noise = dist.noise(noise_key, (num_steps, *noise_shape))
    else:
        action_noise = jax.random.split(noise_key, num_steps)
    randomness = (action_noise, env.split_keys(env_key, num_envs, leading=(num_steps,)))
    episode_start = carry.episode_start
    carry, batch = jax.lax.scan(step, carry, randomness)
    # The reset flags: the rollout's first step starts an episode where the carry said so, and
    # every later step where the step before it ended one.
    batch = batch._replace(
        reset=jnp.concatenate([episode_start[None], batch.episode_done[:-1]], axis=0)
    )
    carry = carry.replace(episode_start=batch.episode_done[-1])
    if batch.next_value is None:
        if agent.has_critic:
            # A feed-forward critic values every final observation in one batched pass.
            next_value = bootstrap_values(params, agent, batch.final_obs)
        else:
            next_value = jnp.zeros_like(batch.log_prob)
        batch = batch._replace(next_value=next_value)
    return carry, batch


def bootstrap_values(params: Any, agent: Agent, final_obs: jax.Array) -> jax.Array:
    """``V(final_obs)`` for every step ``[T, N]`` of a feed-forward agent, in one batched pass.

    This is ``next_values`` for ``gae``/``discounted_returns``: the value of the true next state,
    which for a truncated episode is V(final observation), never V(reset observation).
    """
    reset = jnp.zeros(jax.tree.leaves(final_obs)[0].shape[:2], jnp.bool_)
    _, _, values = unroll(agent, params, (), final_obs, reset)
    return values


def episode_stats(batch: Transition, first_only: bool = False) -> dict[str, jax.Array]:
    """Mean return and length of the episodes that ended in ``batch`` ``[T, N]``; NaN where none
    ended.

    ``first_only``: count only each environment's first episode, the one a fresh-reset
    algorithm learns from (trajectory mode, GRPO: every environment starts an episode at the
    update, and an environment whose first episode ends early goes on into a second one that
    ends inside the rollout only if it is short, so counting every episode reads low). Then
    ``episodes_cut`` is also given: the fraction of environments whose first episode did not end
    inside the rollout (masked out of the loss, and not counted here)."""
    done = batch.episode_done
    if first_only:
        done = done & (jnp.cumsum(done, axis=0) == 1)  # the first end of each environment
    count = jnp.sum(done)
    safe = jnp.maximum(count, 1)
    nan = jnp.asarray(jnp.nan, jnp.float32)
    mean_return = jnp.sum(jnp.where(done, batch.episode_return, 0.0)) / safe
    mean_length = jnp.sum(jnp.where(done, batch.episode_length, 0)).astype(jnp.float32) / safe
    stats = {
        "episode_return": jnp.where(count > 0, mean_return, nan),
        "episode_length": jnp.where(count > 0, mean_length, nan),
        "episodes": count.astype(jnp.int32),
    }
    if first_only:
        num_envs = math.prod(done.shape[1:])
        stats["episodes_cut"] = 1.0 - count.astype(jnp.float32) / num_envs
    return stats
