"""Rollouts: a ``lax.scan`` over ``num_steps`` of a batch of environments.

Everything here is time-major: a :class:`Transition` batch has shape ``[T, N, ...]`` with
``T = num_steps`` and ``N = num_envs``. Each step runs the network once and keeps the
log-probability and the value, so the update never redoes the rollout's forward pass.

Episode facts kept per step:

* ``terminated`` and ``truncated`` as separate flags;
* ``final_obs``: the (normalised) observation the transition really reached; for an episode
  that ended it is gymnax's ``info["final_observation"]``, not the reset observation;
* ``episode_return``/``episode_length`` of each episode that ended at that step (undiscounted,
  raw rewards), valid where ``episode_done`` is true and zero elsewhere, so no placeholder is
  ever averaged in before the first episode ends.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from jaxpg.distributions import ActionDist
from jaxpg.envs import Env
from jaxpg.networks import Network
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
    reward: jax.Array  # [T, N] the reward used for learning (scaled if normalize_rewards)
    terminated: jax.Array  # [T, N] bool
    truncated: jax.Array  # [T, N] bool
    final_obs: jax.Array  # [T, N, *obs_shape] (normalised) true next observation
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


def env_carry_init(key: jax.Array, env: Env, num_envs: int, obs_stats=None, reward_stats=None) -> EnvCarry:
    """Resets ``num_envs`` environments. Statistics are fresh unless given."""
    obs, env_state = env.reset(key, num_envs)
    zeros = jnp.zeros((num_envs,), jnp.float32)
    return EnvCarry(
        env_state=env_state,
        obs=obs,
        episode_return=zeros,
        episode_length=jnp.zeros((num_envs,), jnp.int32),
        discounted_return=zeros,
        obs_stats=running_stats_init(env.obs_shape) if obs_stats is None else obs_stats,
        reward_stats=running_stats_init(()) if reward_stats is None else reward_stats,
    )


class RolloutOptions(NamedTuple):
    """Static switches of a rollout (from the config)."""

    normalize_obs: bool
    normalize_rewards: bool
    clip_actions: bool


def rollout(
    key: jax.Array,
    params: Any,
    carry: EnvCarry,
    gamma: jax.Array,
    *,
    env: Env,
    network: Network,
    dist: ActionDist,
    num_steps: int,
    options: RolloutOptions,
) -> tuple[EnvCarry, Transition]:
    """Steps ``N`` environments ``num_steps`` times with the policy ``network.apply(params, .)``.

    Returns the carry to continue from and a time-major :class:`Transition` batch.
    ``gamma`` (traced) only drives the reward scaling's discounted return.
    """

    def norm_obs(stats, obs):
        return normalize(stats, obs) if options.normalize_obs else obs

    def step(carry: EnvCarry, step_randomness):
        action_noise, env_keys = step_randomness
        obs = norm_obs(carry.obs_stats, carry.obs)
        dist_params, value = network.apply(params, obs)
        action = dist.sample_with_noise(dist_params, action_noise)
        log_prob = dist.log_prob(dist_params, action)
        env_action = action
        if options.clip_actions and not env.discrete:
            env_action = jnp.clip(action, env.action_low, env.action_high)
        out = env.step_with_keys(env_keys, carry.env_state, env_action)
        done = out.terminated | out.truncated

        obs_stats = carry.obs_stats
        if options.normalize_obs:
            # The final observations are merged in, not the reset ones: they are what the
            # policy will be asked to value. For envs that did not end they are the same.
            obs_stats = running_stats_update(obs_stats, out.final_obs)

        reward = out.reward
        discounted_return = carry.discounted_return
        reward_stats = carry.reward_stats
        if options.normalize_rewards:
            discounted_return = discounted_return * gamma + out.reward
            reward_stats = running_stats_update(reward_stats, discounted_return)
            reward = scale_reward(reward_stats, out.reward)
            discounted_return = jnp.where(done, 0.0, discounted_return)

        episode_return = carry.episode_return + out.reward
        episode_length = carry.episode_length + 1
        transition = Transition(
            obs=obs,
            action=action,
            log_prob=log_prob,
            value=jnp.zeros_like(log_prob) if value is None else value,
            reward=reward,
            terminated=out.terminated,
            truncated=out.truncated,
            final_obs=norm_obs(obs_stats, out.final_obs),
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
        )
        return carry, transition

    # The randomness of every step, drawn before the scan in two calls (each jax.random call
    # is a loop on a CPU; a few per step were most of a small rollout's time).
    num_envs = carry.obs.shape[0]
    noise_key, env_key = jax.random.split(key)
    randomness = (
        dist.noise(noise_key, (num_steps, num_envs, env.action_dim)),
        env.split_keys(env_key, num_envs, leading=(num_steps,)),
    )
    return jax.lax.scan(step, carry, randomness)


def bootstrap_values(params: Any, network: Network, final_obs: jax.Array) -> jax.Array:
    """``V(final_obs)`` for every step ``[T, N]``, in one batched forward pass of the critic.

    This is ``next_values`` for ``gae``/``discounted_returns``: the value of the true next state,
    which for a truncated episode is V(final observation), never V(reset observation).
    """
    _, values = network.apply(params, final_obs)
    return values


def episode_stats(batch: Transition) -> dict[str, jax.Array]:
    """Mean return and length of the episodes that ended in ``batch``; NaN where none ended."""
    count = jnp.sum(batch.episode_done)
    safe = jnp.maximum(count, 1)
    nan = jnp.asarray(jnp.nan, jnp.float32)
    mean_return = jnp.sum(batch.episode_return) / safe
    mean_length = jnp.sum(batch.episode_length).astype(jnp.float32) / safe
    return {
        "episode_return": jnp.where(count > 0, mean_return, nan),
        "episode_length": jnp.where(count > 0, mean_length, nan),
        "episodes": count.astype(jnp.int32),
    }
