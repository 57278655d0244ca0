"""Action distributions as pure functions of arrays (no distribution objects in the hot path).

A discrete policy's parameters are ``logits [..., A]``; a continuous policy's are the pair
``(mean [..., D], log_std [D])`` of a diagonal Gaussian whose log standard deviation is a
learned, state-independent vector. :class:`ActionDist` groups the functions the trainer
needs, chosen once from the action space.

Sampling is split in two: ``noise(key, shape)`` draws the randomness (Gumbel noise for a
categorical, standard normals for a Gaussian) and ``sample_with_noise`` turns it into an action
(``argmax(logits + g)``, ``mean + std * eps``). A rollout draws the noise of all its steps in
one call before its scan, since each ``jax.random`` call is a loop on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class ActionDist(NamedTuple):
    noise: Callable[[jax.Array, tuple[int, ...]], jax.Array]  # (key, [..., action_dim]) -> noise
    sample_with_noise: Callable[[Any, jax.Array], jax.Array]  # (dist_params, noise) -> action
    log_prob: Callable[[Any, jax.Array], jax.Array]  # (dist_params, action) -> [...]
    entropy: Callable[[Any], jax.Array]  # dist_params -> [...]
    mode: Callable[[Any], jax.Array]  # dist_params -> the deterministic action
    kl: Callable[[Any, Any], jax.Array]  # (p_params, q_params) -> KL(p || q) [...], analytic

    def sample(self, key: jax.Array, dist_params: Any) -> jax.Array:
        """One action per row of ``dist_params``, with fresh noise from ``key``."""
        shape = jax.tree.leaves(dist_params)[0].shape  # logits or mean: [..., action_dim]
        return self.sample_with_noise(dist_params, self.noise(key, shape))


def _categorical_noise(key, shape):
    return jax.random.gumbel(key, shape, jnp.float32)


def _categorical_sample_with_noise(logits, gumbel):
    # The Gumbel-max trick, as jax.random.categorical samples.
    return jnp.argmax(logits + gumbel, axis=-1).astype(jnp.int32)


def _categorical_log_prob(logits, action):
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(log_p, action[..., None].astype(jnp.int32), axis=-1)[..., 0]


def _categorical_entropy(logits):
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def _categorical_mode(logits):
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def _categorical_kl(p_logits, q_logits):
    """``KL(p || q) = sum_a p(a) (log p(a) - log q(a))``."""
    log_p = jax.nn.log_softmax(p_logits, axis=-1)
    log_q = jax.nn.log_softmax(q_logits, axis=-1)
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


CATEGORICAL = ActionDist(
    _categorical_noise,
    _categorical_sample_with_noise,
    _categorical_log_prob,
    _categorical_entropy,
    _categorical_mode,
    _categorical_kl,
)

_LOG_2PI = math.log(2.0 * math.pi)


def _gaussian_noise(key, shape):
    return jax.random.normal(key, shape, jnp.float32)


def _per_row(x, like):
    """``x`` (a state-independent ``[D]`` or a per-state ``[..., D]`` vector) broadcast to the
    shape of ``like`` explicitly, where the arithmetic would otherwise promote its rank."""
    return jnp.broadcast_to(x, like.shape)


def _gaussian_sample_with_noise(dist_params, eps):
    mean, log_std = dist_params
    return mean + _per_row(jnp.exp(log_std), mean) * eps


def _gaussian_log_prob(dist_params, action):
    mean, log_std = dist_params
    z = (action - mean) * _per_row(jnp.exp(-log_std), mean)
    return jnp.sum(-0.5 * z**2 - _per_row(log_std, mean) - 0.5 * _LOG_2PI, axis=-1)


def _gaussian_entropy(dist_params):
    mean, log_std = dist_params
    per_dim = jnp.broadcast_to(log_std + 0.5 * (1.0 + _LOG_2PI), mean.shape)
    return jnp.sum(per_dim, axis=-1)


def _gaussian_mode(dist_params):
    return dist_params[0]


def _gaussian_kl(p_params, q_params):
    """Diagonal Gaussians: ``sum_d log(s_q / s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2``."""
    m_p, log_s_p = p_params
    m_q, log_s_q = q_params
    log_s_p, log_s_q = _per_row(log_s_p, m_p), _per_row(log_s_q, m_q)
    var_ratio = jnp.exp(2.0 * (log_s_p - log_s_q))
    mean_term = jnp.square(m_p - m_q) * jnp.exp(-2.0 * log_s_q)
    return jnp.sum(log_s_q - log_s_p + 0.5 * (var_ratio + mean_term - 1.0), axis=-1)


DIAG_GAUSSIAN = ActionDist(
    _gaussian_noise,
    _gaussian_sample_with_noise,
    _gaussian_log_prob,
    _gaussian_entropy,
    _gaussian_mode,
    _gaussian_kl,
)


def action_dist(discrete: bool) -> ActionDist:
    return CATEGORICAL if discrete else DIAG_GAUSSIAN
