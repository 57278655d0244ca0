"""Running statistics for observation normalisation and reward scaling, as pure functions.

The statistics live in the training state (not in the environment state), so they are
checkpointed with the agent and can be averaged across devices. Updates use the parallel
(Chan et al., 1979) merge of a batch's mean and variance into the running ones, so one update
with a batch of ``N`` rows equals ``N`` sequential single-row updates.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


class RunningMeanStd(struct.PyTreeNode):
    """Mean and (population) variance of everything seen so far, feature-wise."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array  # float32, number of rows merged in (starts at a tiny epsilon)


def running_stats_init(shape: tuple[int, ...]) -> RunningMeanStd:
    # A tiny starting count keeps the first merge well defined; it weighs nothing after it.
    return RunningMeanStd(
        mean=jnp.zeros(shape, jnp.float32),
        var=jnp.ones(shape, jnp.float32),
        count=jnp.asarray(1e-4, jnp.float32),
    )


def running_stats_update(stats: RunningMeanStd, batch: jax.Array) -> RunningMeanStd:
    """Merges ``batch`` of shape ``[B, *stats.mean.shape]`` into ``stats``."""
    batch = jnp.asarray(batch, jnp.float32)
    batch_count = jnp.asarray(batch.shape[0], jnp.float32)
    batch_mean = jnp.mean(batch, axis=0)
    batch_var = jnp.var(batch, axis=0)
    delta = batch_mean - stats.mean
    total = stats.count + batch_count
    mean = stats.mean + delta * batch_count / total
    m2 = (
        stats.var * stats.count
        + batch_var * batch_count
        + delta**2 * stats.count * batch_count / total
    )
    return RunningMeanStd(mean=mean, var=m2 / total, count=total)


def normalize(
    stats: RunningMeanStd, x: jax.Array, clip: float = 10.0, eps: float = 1e-8
) -> jax.Array:
    """``clip((x - mean) / sqrt(var + eps), -clip, clip)``; ``x`` is ``[*batch, *mean.shape]``."""
    lead = (1,) * (jnp.ndim(x) - stats.mean.ndim)  # explicit broadcasting over the batch axes
    mean = stats.mean.reshape(lead + stats.mean.shape)
    var = stats.var.reshape(lead + stats.var.shape)
    return jnp.clip((x - mean) / jnp.sqrt(var + eps), -clip, clip)


def scale_reward(
    stats: RunningMeanStd, reward: jax.Array, clip: float = 10.0, eps: float = 1e-8
) -> jax.Array:
    """Divides by the running std of the discounted return (no centring), as SB3's VecNormalize."""
    return jnp.clip(reward / jnp.sqrt(stats.var + eps), -clip, clip)
