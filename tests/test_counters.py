"""Counters that outgrow float32: the env steps in ``metrics.csv`` and ``summary.json``, and the
running count (and mean and variance) of the observation and reward normalisers.

A GPU run reaches 1e11 env steps in a day; float32 resolves integers only up to 2^24 (1.7e7)
and a float32 mean stops moving once a batch's share of it falls below half a float32 step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpg import metrics
from jaxpg.members import Members
from jaxpg.normalization import (
    PLAIN_RATIO,
    RunningMeanStd,
    running_stats_init,
    running_stats_update,
)

# -- env steps in the metrics table and the summary -------------------------------------------


def _trainer_env_steps(updates: np.ndarray, batch_size: int, num_members: int) -> np.ndarray:
    """``env_steps[M, n]`` as the trainer's jit gives it: float32(update) * float32(batch)."""
    steps = jnp.asarray(updates, jnp.int32).astype(jnp.float32) * jnp.float32(batch_size)
    return np.broadcast_to(np.asarray(steps), (num_members, len(updates)))


def _chunk(first_update: int, n: int, batch_size: int, num_members: int = 2) -> dict:
    updates = np.arange(first_update + 1, first_update + n + 1)
    return {
        "env_steps": _trainer_env_steps(updates, batch_size, num_members),
        "episode_return": np.ones((num_members, n), np.float32),
        "nonfinite": np.zeros((num_members, n), bool),
    }


# 12_345 env steps per update (not a power of two), about 8.1e6 updates in: 1e11 env steps.
BATCH = 12_345
FIRST = 8_100_000


@pytest.mark.parametrize("pass_batch_size", [True, False], ids=["given", "derived"])
def test_env_steps_in_csv_and_summary_are_exact_past_2_24(tmp_path, pass_batch_size):
    members = Members.of([0, 1], None)
    chunks = [_chunk(FIRST, 5, BATCH), _chunk(FIRST + 5, 5, BATCH)]
    extra = {"batch_size": BATCH} if pass_batch_size else {}
    table = metrics.concat_tables(
        [
            metrics.metrics_rows(c, first_update=f, members=members, sps=1.0, time=1.0, **extra)
            for c, f in zip(chunks, (FIRST, FIRST + 5))
        ]
    )
    exact = np.repeat(np.arange(FIRST + 1, FIRST + 11, dtype=np.int64) * BATCH, 2)
    # The float32 metric is off by up to half a float32 step (4096 at 1e11): the old table.
    float32_steps = np.concatenate([c["env_steps"].T.reshape(-1) for c in chunks])
    assert np.any(float32_steps.astype(np.int64) != exact)

    assert table["env_steps"].dtype == np.int64
    np.testing.assert_array_equal(table["env_steps"], exact)

    path = tmp_path / "metrics.csv"
    metrics.write_metrics_csv(path, table)
    lines = path.read_text().splitlines()
    column = lines[0].split(",").index("env_steps")
    assert [int(line.split(",")[column]) for line in lines[1:]] == exact.tolist()
    np.testing.assert_array_equal(metrics.read_metrics_csv(path)["env_steps"], exact)

    summary = metrics.summarize(table, extra={"env_steps_per_member": (FIRST + 10) * BATCH})
    assert summary["env_steps"] == (FIRST + 10) * BATCH == exact.max()
    assert summary["env_steps"] != int(float32_steps.max())
    assert summary["updates"] == FIRST + 10


def test_env_steps_small_runs_are_unchanged_and_column_order_kept():
    table = metrics.metrics_rows(
        _chunk(0, 4, 512, num_members=1),
        first_update=0,
        members=Members.of([3], None),
        sps=1.0,
        time=1.0,
    )
    assert list(table)[:3] == ["seed", "update", "env_steps"]
    np.testing.assert_array_equal(table["env_steps"], [512, 1024, 1536, 2048])


def test_env_steps_that_are_not_one_batch_size_stay_as_given():
    # Not products of one batch size (the batch size is not derived): the metric as it was.
    chunk = _chunk(0, 3, 100, num_members=1)
    chunk["env_steps"] = np.asarray([[100.0, 250.0, 300.0]], np.float32)
    table = metrics.metrics_rows(
        chunk, first_update=0, members=Members.of([0], None), sps=1.0, time=1.0
    )
    np.testing.assert_array_equal(table["env_steps"], [100, 250, 300])
    # A given batch size wins, and supplies the column where the metrics lack it.
    del chunk["env_steps"]
    table = metrics.metrics_rows(
        chunk, first_update=7, members=Members.of([0], None), sps=1.0, time=1.0, batch_size=2**40
    )
    np.testing.assert_array_equal(table["env_steps"], np.arange(8, 11) * 2**40)
    assert list(table)[:3] == ["seed", "update", "env_steps"]


def test_env_steps_of_a_batch_too_large_to_derive_needs_the_batch_size():
    # float32 cannot tell 2^24 + 1 env steps per update from 2^24: only the caller can.
    batch = 2**24 + 1
    chunk = _chunk(0, 2, batch, num_members=1)
    members = Members.of([0], None)
    derived = metrics.metrics_rows(chunk, first_update=0, members=members, sps=1.0, time=1.0)
    given = metrics.metrics_rows(
        chunk, first_update=0, members=members, sps=1.0, time=1.0, batch_size=batch
    )
    np.testing.assert_array_equal(given["env_steps"], [batch, 2 * batch])
    assert int(derived["env_steps"][0]) == 2**24  # the float32 value, as before


def test_read_metrics_csv_reads_integers_exactly(tmp_path):
    big = 2**60 + 1  # float64 would read 2^60
    path = tmp_path / "metrics.csv"
    path.write_text(f"seed,update,env_steps\n0,1,{big}\n0,2,1e3\n")
    np.testing.assert_array_equal(metrics.read_metrics_csv(path)["env_steps"], [big, 1000])


# -- the normalisers' running statistics ------------------------------------------------------


def _float32_merge(stats, batch):
    """The merge before the two-part count: all float32, ``(mean, var, count)``."""
    mean, var, count = stats
    batch_count = jnp.asarray(batch.shape[0], jnp.float32)
    batch_mean, batch_var = jnp.mean(batch, axis=0), jnp.var(batch, axis=0)
    delta = batch_mean - mean
    total = count + batch_count
    new_mean = mean + delta * batch_count / total
    m2 = var * count + batch_var * batch_count + delta**2 * count * batch_count / total
    return new_mean, m2 / total, total


def _seen(count: float, mean: float, var: float, shape) -> RunningMeanStd:
    """Statistics that have already seen ``count`` rows (count as an exact float32 pair)."""
    hi = np.float32(count)
    lo = np.float32(count - float(hi))
    assert float(hi) + float(lo) == count
    full = lambda v: jnp.full(shape, v, jnp.float32)
    return RunningMeanStd(
        mean=full(mean),
        var=full(var),
        count=jnp.asarray(hi),
        mean_lo=full(0.0),
        var_lo=full(0.0),
        count_lo=jnp.asarray(lo),
    )


def _value(hi, lo) -> np.ndarray:
    return np.asarray(hi, np.float64) + np.asarray(lo, np.float64)


@pytest.mark.parametrize(
    "shape, batch_size, num_batches",
    [((3,), 256, 40_960), ((), 4, 262_144)],
    ids=["obs-256-rows", "return-4-rows"],
)
def test_running_stats_move_as_float64_at_1e11_rows(shape, batch_size, num_batches):
    seen, mean0, var0 = 1e11, 1.0, 1.0
    # New data: mean 2 (one std of the old data away), variance 9; a few batches, cycled.
    rng = np.random.default_rng(0)
    batches = rng.normal(2.0, 3.0, (16, batch_size, *shape)).astype(np.float32)
    rows = num_batches * batch_size  # about 1e7 and 1e6 rows: 1e-4 and 1e-5 of those seen

    # Reference: the exact statistics of all rows, in float64 (the cycled batches repeat
    # num_batches / 16 times, which leaves their mean and variance as they are).
    data = batches.astype(np.float64).reshape(-1, *shape)
    new_mean, new_var = data.mean(0), data.var(0)
    total = seen + rows
    ref_mean = (seen * mean0 + rows * new_mean) / total
    ref_var = (seen * var0 + rows * new_var + seen * rows / total * (new_mean - mean0) ** 2) / total

    def run(update, stats):
        step = lambda i, s: update(s, jnp.asarray(batches)[i % 16])
        return jax.jit(lambda s: jax.lax.fori_loop(0, num_batches, step, s))(stats)

    stats = run(running_stats_update, _seen(seen, mean0, var0, shape))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(stats))
    assert _value(stats.count, stats.count_lo) == total  # the count is exact

    moved_mean, moved_var = ref_mean - mean0, ref_var - var0
    assert np.all(np.abs(moved_mean) > 50 * np.spacing(np.float32(mean0)))  # well resolvable
    got_mean = _value(stats.mean, stats.mean_lo)
    got_var = _value(stats.var, stats.var_lo)
    np.testing.assert_allclose(got_mean - mean0, moved_mean, rtol=1e-4)
    np.testing.assert_allclose(got_var - var0, moved_var, rtol=1e-4)
    # And the float32 parts, which normalisation uses, are float32 roundings of the reference.
    assert np.all(np.abs(np.asarray(stats.mean) - ref_mean) <= np.spacing(np.float32(ref_mean)))
    assert np.all(np.abs(np.asarray(stats.var) - ref_var) <= np.spacing(np.float32(ref_var)))

    # The all-float32 merge does not move at all here: its count stays at 1e11 and each batch's
    # share of the mean is rounded away.
    start = (jnp.full(shape, mean0), jnp.full(shape, var0), jnp.float32(seen))
    old_mean, old_var, old_count = run(_float32_merge, start)
    assert float(old_count) == float(np.float32(seen))
    assert np.all(np.abs(np.asarray(old_mean, np.float64) - mean0) < 0.1 * np.abs(moved_mean))
    assert np.all(np.abs(np.asarray(old_var, np.float64) - var0) < 0.1 * np.abs(moved_var))


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_running_stats_of_few_rows_are_the_float32_merge_bit_for_bit(batch_size):
    # Until the batch is less than 1 / PLAIN_RATIO of the rows, the merge is the plain float32
    # one (so short runs are unchanged), and the low parts stay zero.
    rng = np.random.default_rng(batch_size)
    stats = running_stats_init((2,))
    plain = (stats.mean, stats.var, stats.count)
    for _ in range(PLAIN_RATIO - 1):
        batch = jnp.asarray(rng.normal(3.0, 2.0, (batch_size, 2)), jnp.float32)
        stats, plain = running_stats_update(stats, batch), _float32_merge(plain, batch)
        for got, want in zip((stats.mean, stats.var, stats.count), plain):
            np.testing.assert_array_equal(got, want)
    assert not np.any(np.asarray(stats.mean_lo)) and not np.any(np.asarray(stats.var_lo))
    assert float(stats.count_lo) == 0.0
    # One more batch and the two-part merge takes over.
    batch = jnp.asarray(rng.normal(3.0, 2.0, (batch_size, 2)), jnp.float32)
    stats = running_stats_update(stats, batch)
    assert np.any(np.asarray(stats.mean_lo)) or np.any(np.asarray(stats.var_lo))


def test_running_stats_match_float64_across_the_switch_to_two_parts():
    # 20 * PLAIN_RATIO batches of 2 rows, the distribution drifting: the statistics stay those
    # of NumPy's float64 over all rows, before and after the two-part merge takes over.
    rng = np.random.default_rng(1)
    num = 20 * PLAIN_RATIO
    drift = np.linspace(0.0, 4.0, num)[:, None, None]
    data = (rng.normal(1.0, 0.5, (num, 2, 3)) * (1 + drift / 4) + drift).astype(np.float32)
    stats = jax.jit(
        lambda s: jax.lax.scan(lambda s, b: (running_stats_update(s, b), None), s, data)[0]
    )(running_stats_init((3,)))
    rows = data.astype(np.float64).reshape(-1, 3)
    assert _value(stats.count, stats.count_lo) == pytest.approx(len(rows) + 1e-4, abs=1e-3)
    assert np.any(np.asarray(stats.mean_lo))  # the two-part merge was used
    # Within 5e-7 of float64 (measured: 2.3e-8 on the mean, 1.4e-7 on the variance), which the
    # plain float32 merge of the same batches misses (1.2e-6 and 3.6e-6)
    np.testing.assert_allclose(_value(stats.mean, stats.mean_lo), rows.mean(0), rtol=5e-7)
    np.testing.assert_allclose(_value(stats.var, stats.var_lo), rows.var(0), rtol=5e-7)
    plain = jax.jit(lambda s: jax.lax.scan(lambda s, b: (_float32_merge(s, b), None), s, data)[0])(
        (jnp.zeros(3), jnp.ones(3), jnp.float32(1e-4))
    )
    plain_error = max(
        np.max(np.abs(np.asarray(plain[0], np.float64) / rows.mean(0) - 1)),
        np.max(np.abs(np.asarray(plain[1], np.float64) / rows.var(0) - 1)),
    )
    assert plain_error > 5e-7, plain_error
