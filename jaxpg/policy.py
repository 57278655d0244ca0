"""The trained policy as pure functions of ``(params, obs)``.

``params`` is a :class:`PolicyParams`, as returned in ``TrainResult.params``: the network
parameters and, when the config normalises observations, the observation statistics the policy
was trained with. ``obs`` has shape ``[*batch, *obs_shape]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from jaxpg.agents import AgentLike, as_agent, is_recurrent, unroll
from jaxpg.distributions import action_dist
from jaxpg.normalization import RunningMeanStd, normalize

if TYPE_CHECKING:  # annotations only: importing the config module imports gymnax
    from jaxpg.config import Config


class PolicyParams(struct.PyTreeNode):
    network: Any
    obs_stats: RunningMeanStd | None = None


class Policy(NamedTuple):
    act: Callable  # (params, obs, key=None) -> action; key=None: the deterministic action
    value: Callable  # (params, obs) -> V(obs)
    log_prob: Callable  # (params, obs, action) -> log pi(action | obs)
    initial_carry: Callable  # num_envs -> the agent's carry (() for a feed-forward policy)
    step: Callable  # (params, carry, obs, reset, key=None) -> (carry, action)


def make_policy(config: Config, agent: AgentLike | None = None) -> Policy:
    """Pure ``act``, ``value`` and ``log_prob`` for policies trained with ``config`` (and
    ``agent``, when training had one of its own; see :func:`jaxpg.make_train`).

    ``act``, ``value`` and ``log_prob`` take single observations ``[*batch, *obs_shape]`` and
    suit a feed-forward agent; ``step`` threads a recurrent agent's carry through an episode
    (``reset`` ``[B]`` true at an episode's first observation).
    """
    env = config.env_spec
    agent = as_agent(agent, config)
    dist = action_dist(env.discrete)

    def check(params):
        if not isinstance(params, PolicyParams):
            raise ValueError(
                f"params: expected jaxpg.PolicyParams (TrainResult.params), got {type(params).__name__}"
            )

    def prepare(params: PolicyParams, obs):
        obs = jax.tree.map(jnp.asarray, obs)
        if params.obs_stats is not None:
            obs = normalize(params.obs_stats, obs)
        return obs

    def forward(params: PolicyParams, obs):
        check(params)
        if is_recurrent(agent):
            raise ValueError(
                "policy: this agent is recurrent; use policy.step(params, carry, obs, reset, key), "
                "starting from policy.initial_carry(num_envs)"
            )
        obs = prepare(params, obs)
        batch = env.batch_shape(obs)
        _, dist_params, value = unroll(agent, params.network, (), obs, jnp.ones(batch, jnp.bool_))
        return dist_params, value

    def select(dist_params, key):
        action = dist.mode(dist_params) if key is None else dist.sample(key, dist_params)
        if not env.discrete and config.clip_actions:
            action = env.clip_action(action)
        return action

    def act(params, obs, key=None):
        dist_params, _ = forward(params, obs)
        return select(dist_params, key)

    def value(params, obs):
        if not agent.has_critic:
            raise ValueError(
                f"policy.value: this {config.algorithm} agent has no critic "
                f"(baseline={getattr(config, 'baseline', None)!r}); use baseline='value'"
            )
        return forward(params, obs)[1]

    def log_prob(params, obs, action):
        dist_params, _ = forward(params, obs)
        return dist.log_prob(dist_params, action)

    def step(params, carry, obs, reset, key=None):
        check(params)
        carry, dist_params, _ = agent.apply(params.network, carry, prepare(params, obs), reset)
        return carry, select(dist_params, key)

    return Policy(act, value, log_prob, agent.initial_carry, step)
