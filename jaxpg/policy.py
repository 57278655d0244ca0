"""The trained policy as pure functions of ``(params, obs)``.

``params`` is a :class:`PolicyParams`, as returned in ``TrainResult.params``: the network
parameters and, when the config normalises observations, the observation statistics the policy
was trained with. ``obs`` has shape ``[*batch, *obs_shape]``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from jaxpg.distributions import action_dist
from jaxpg.networks import Network, make_network
from jaxpg.normalization import RunningMeanStd, normalize


class PolicyParams(struct.PyTreeNode):
    network: Any
    obs_stats: RunningMeanStd | None = None


class Policy(NamedTuple):
    act: Callable  # (params, obs, key=None) -> action; key=None: the deterministic action
    value: Callable  # (params, obs) -> V(obs)
    log_prob: Callable  # (params, obs, action) -> log pi(action | obs)


def network_for(config) -> Network:
    env = config.env_spec
    return make_network(
        env.obs_shape,
        env.action_dim,
        env.discrete,
        hidden_sizes=config.hidden_sizes,
        activation=config.activation,
        shared=config.shared_network,
        critic=config.has_critic,
    )


def make_policy(config) -> Policy:
    """Pure ``act``, ``value`` and ``log_prob`` for policies trained with ``config``."""
    env = config.env_spec
    network = network_for(config)
    dist = action_dist(env.discrete)

    def forward(params: PolicyParams, obs):
        if not isinstance(params, PolicyParams):
            raise ValueError(
                f"params: expected jaxpg.PolicyParams (TrainResult.params), got {type(params).__name__}"
            )
        obs = jnp.asarray(obs, jnp.float32)
        if params.obs_stats is not None:
            obs = normalize(params.obs_stats, obs)
        return network.apply(params.network, obs)

    def act(params, obs, key=None):
        dist_params, _ = forward(params, obs)
        action = dist.mode(dist_params) if key is None else dist.sample(key, dist_params)
        if not env.discrete and config.clip_actions:
            action = jnp.clip(action, env.action_low, env.action_high)
        return action

    def value(params, obs):
        if not network.has_critic:
            raise ValueError(
                f"policy.value: this {config.algorithm} config has no critic "
                f"(baseline={getattr(config, 'baseline', None)!r}); use baseline='value'"
            )
        return forward(params, obs)[1]

    def log_prob(params, obs, action):
        dist_params, _ = forward(params, obs)
        return dist.log_prob(dist_params, action)

    return Policy(act, value, log_prob)
