"""Running statistics for observation normalisation and reward scaling, as pure functions.

The statistics live in the training state (not in the environment state), so they are
checkpointed with the agent and can be averaged across devices. Updates use the parallel
(Chan et al., 1979) merge of a batch's mean and variance into the running ones, so one update
with a batch of ``N`` rows equals ``N`` sequential single-row updates.

Precision. Everything is float32 (no x64), but a long run merges far more rows than float32
resolves: past ``2^24 * batch`` rows a float32 count stops growing, and long before that a
batch's share of the mean, ``delta * batch / count``, falls below half a float32 step of the
mean and is rounded away, so the mean and variance stop moving (about 1e9 rows for a batch of
64). So each of ``mean``, ``var`` and ``count`` is carried as an unevaluated float32 sum
``hi + lo`` (``mean`` + ``mean_lo``, ...; ``hi`` is the float32 rounding of the sum and is what
:func:`normalize` uses), which resolves about 48 bits: the count is exact up to 2^48 rows and
the statistics keep moving as a float64 reference does at 1e11 rows and beyond.

While a batch is at least ``1 / PLAIN_RATIO`` of all the rows merged, the plain float32 merge
is used, as before this two-part form (its rounding then costs at most ``PLAIN_RATIO``
half-steps of float32 in all), and the ``lo`` parts stay zero: runs shorter than that give
bit-identical results to the plain merge.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

PLAIN_RATIO = 1024  # the plain float32 merge while count < (PLAIN_RATIO - 1) * batch rows


class RunningMeanStd(struct.PyTreeNode):
    """Mean and (population) variance of everything seen so far, feature-wise.

    Each quantity is ``hi + lo`` in float32 (see the module docstring); ``mean``, ``var`` and
    ``count`` are the ``hi`` parts, the float32 values to use.
    """

    mean: jax.Array
    var: jax.Array
    count: jax.Array  # float32, number of rows merged in (starts at a tiny epsilon)
    mean_lo: jax.Array  # float32, the rest of the mean: mean + mean_lo, to ~48 bits
    var_lo: jax.Array
    count_lo: jax.Array


def running_stats_init(shape: tuple[int, ...]) -> RunningMeanStd:
    """Statistics of no rows: mean 0, variance 1, a tiny count.

    Args:
      shape: the shape of one row (``()`` for a scalar such as the return).

    Returns:
      The initial statistics.
    """
    # A tiny starting count keeps the first merge well defined; it weighs nothing after it.
    return RunningMeanStd(
        mean=jnp.zeros(shape, jnp.float32),
        var=jnp.ones(shape, jnp.float32),
        count=jnp.asarray(1e-4, jnp.float32),
        mean_lo=jnp.zeros(shape, jnp.float32),
        var_lo=jnp.zeros(shape, jnp.float32),
        count_lo=jnp.zeros((), jnp.float32),
    )


def _two_sum(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(s, e)`` with ``s = fl(a + b)`` and ``s + e == a + b`` exactly (Knuth's TwoSum)."""
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


def _add(hi: jax.Array, lo: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(hi, lo) + x`` as a renormalised pair: ``hi`` is the float32 rounding of the sum."""
    s, e = _two_sum(hi, x)
    return _two_sum(s, lo + e)


def running_stats_update(stats: RunningMeanStd, batch: jax.Array) -> RunningMeanStd:
    """Merges a batch of rows into the statistics.

    Args:
      stats: the statistics so far.
      batch: ``[B, *stats.mean.shape]``, ``B`` rows.

    Returns:
      The statistics of all rows: those of ``stats`` and the batch's.
    """
    batch = jnp.asarray(batch, jnp.float32)
    batch_count = jnp.asarray(batch.shape[0], jnp.float32)
    batch_mean = jnp.mean(batch, axis=0)
    batch_var = jnp.var(batch, axis=0)

    # The plain float32 merge (the lo parts are zero while it is used).
    delta = batch_mean - stats.mean
    total = stats.count + batch_count
    mean = stats.mean + delta * batch_count / total
    m2 = (
        stats.var * stats.count
        + batch_var * batch_count
        + delta**2 * stats.count * batch_count / total
    )
    plain = (mean, m2 / total, total)

    # The two-part merge: the same, as increments to hi + lo. With the batch's weight
    # w = B / (count + B) and, over the batch, diff = mean(x - mean) and sq = mean((x - mean)^2)
    # (the batch's own statistics around the running mean, which a long run has settled near):
    # mean += w * diff, var += w * (sq - var - w * diff^2).
    count_hi, count_lo = _add(stats.count, stats.count_lo, batch_count)
    w = batch_count / (count_hi + count_lo)
    centred = (batch - stats.mean[None]) - stats.mean_lo[None]
    diff = jnp.mean(centred, axis=0)
    sq = jnp.mean(centred * centred, axis=0)
    mean_hi, mean_lo = _add(stats.mean, stats.mean_lo, w * diff)
    var_step = w * (((sq - stats.var) - stats.var_lo) - w * diff * diff)
    var_hi, var_lo = _add(stats.var, stats.var_lo, var_step)

    use_plain = stats.count < (PLAIN_RATIO - 1) * batch_count

    def pick(plain_hi, hi, lo):
        zero = jnp.zeros_like(lo)
        return jnp.where(use_plain, plain_hi, hi), jnp.where(use_plain, zero, lo)

    mean, mean_lo = pick(plain[0], mean_hi, mean_lo)
    var, var_lo = pick(plain[1], var_hi, var_lo)
    count, count_lo = pick(plain[2], count_hi, count_lo)
    return RunningMeanStd(mean, var, count, mean_lo, var_lo, count_lo)


def normalize(
    stats: RunningMeanStd, x: jax.Array, clip: float = 10.0, eps: float = 1e-8
) -> jax.Array:
    """``clip((x - mean) / sqrt(var + eps), -clip, clip)``.

    Args:
      stats: the running statistics.
      x: ``[*batch, *stats.mean.shape]``.
      clip: the bound of the result's absolute value.
      eps: added to the variance.

    Returns:
      ``x`` normalised, of ``x``'s shape.
    """
    lead = (1,) * (jnp.ndim(x) - stats.mean.ndim)  # explicit broadcasting over the batch axes
    mean = stats.mean.reshape(lead + stats.mean.shape)
    var = stats.var.reshape(lead + stats.var.shape)
    return jnp.clip((x - mean) / jnp.sqrt(var + eps), -clip, clip)


def scale_reward(
    stats: RunningMeanStd, reward: jax.Array, clip: float = 10.0, eps: float = 1e-8
) -> jax.Array:
    """Divides by the running std of the discounted return (no centring), as SB3's VecNormalize.

    Args:
      stats: the running statistics of the discounted return.
      reward: rewards, of any shape.
      clip: the bound of the result's absolute value.
      eps: added to the variance.

    Returns:
      ``clip(reward / sqrt(var + eps), -clip, clip)``.
    """
    return jnp.clip(reward / jnp.sqrt(stats.var + eps), -clip, clip)
