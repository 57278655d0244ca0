"""The metrics table of a run, and its summary: one definition of the final return.

A table is a dict of equal-length columns, one row per (setting, seed, update), as written to
``metrics.csv`` (:func:`metrics_rows`, :func:`write_metrics_csv`, :func:`read_metrics_csv`).
:func:`member_curves` turns it back into ``values[K, S, U]`` (settings x seeds x updates), and
:func:`summarize` gives ``summary.json``'s figures.

"Final return" (:func:`final_return`) means: per member (seed, setting), the mean episode
return over the last 10% of its updates (at least one; updates where no episode ended are
ignored); a summary then gives its mean and standard deviation over the seeds.
"""

from __future__ import annotations

import csv
import io
import math
import operator
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxpg.files import atomic_write_text
from jaxpg.members import Members

FINAL_FRACTION = 0.1  # "final" return: the mean over the last 10% of updates

# The trainer's metrics, in the order the CSV shows them (others follow, sorted).
METRIC_ORDER = (
    "env_steps",
    "episode_return",
    "episode_length",
    "episodes",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_fraction",
    "loss",
    "grad_norm",
    "explained_variance",
    "learning_rate",
    "nonfinite",
)
INT_COLUMNS = {"setting", "seed", "update", "env_steps", "episodes", "nonfinite"}


def metrics_rows(
    metrics: Mapping[str, np.ndarray],
    *,
    first_update: int,
    members: Members,
    sps: float,
    time: float,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Flat columns, one row per (update, member), from one chunk's ``metrics[name][M, n]``.

    Members are in :class:`jaxpg.members.Members` order (setting-major). ``update`` is 1-based
    (the number of updates done), so ``env_steps`` is ``update * batch_size``, written as that
    exact integer (int64): the trainer's ``env_steps`` metric is float32, rounded past 2^24
    steps. Columns: ``setting`` and the swept values (sweeps only), ``seed``, ``update``,
    ``env_steps``, every trainer metric, ``sps`` (env steps per second of the whole run, over
    this chunk) and ``time`` (seconds of training so far).

    Args:
      metrics: the chunk's metrics, ``[M, n]`` each (``M`` members, ``n`` updates).
      first_update: the number of updates done before the chunk.
      members: the run's members, ``M`` of them.
      sps: env steps per second over the chunk.
      time: seconds of training so far.
      batch_size: env steps per update and member (``num_envs * num_steps``). Without it, it
        is read back from the trainer's float32 ``env_steps`` (exact for batches under 2^23
        steps, and checked against every row); if that fails, ``env_steps`` is the metric's
        own value, as the trainer gave it.

    Returns:
      The columns, equal-length arrays by name.
    """
    any_metric = np.asarray(next(iter(metrics.values())))
    num_members, n = any_metric.shape[:2]
    if num_members != len(members):
        raise ValueError(f"metrics_rows: metrics of {num_members} members for {len(members)}")
    member = np.tile(np.arange(num_members), n)  # update-major: every member of update 1, ...
    cols: dict[str, np.ndarray] = {}
    settings = members.settings
    if settings:
        cols["setting"] = members.setting_index(member)
        for name in settings[0]:
            values = np.asarray([s[name] for s in settings], np.float64)
            cols[name] = values[members.setting_index(member)]
    cols["seed"] = members.seed(member)
    updates = np.arange(first_update + 1, first_update + n + 1, dtype=np.int64)
    cols["update"] = np.repeat(updates, num_members)
    if batch_size is None and "env_steps" in metrics:
        batch_size = _batch_size_of(np.asarray(metrics["env_steps"]), updates)
    if batch_size is not None:
        cols["env_steps"] = cols["update"] * np.int64(operator.index(batch_size))
    names = [k for k in METRIC_ORDER if k in metrics] + sorted(set(metrics) - set(METRIC_ORDER))
    for name in names:
        if name == "env_steps" and batch_size is not None:
            continue
        value = np.asarray(metrics[name])
        flat = value.T.reshape(-1)  # [M, n] -> [n, M] -> update-major rows
        if value.dtype == bool or np.issubdtype(value.dtype, np.integer):
            cols[name] = flat.astype(np.int64)
        else:
            cols[name] = flat.astype(np.float32)
    cols["sps"] = np.full(n * num_members, round(float(sps), 1), np.float64)
    cols["time"] = np.full(n * num_members, round(float(time), 3), np.float64)
    return cols


def _batch_size_of(env_steps: np.ndarray, updates: np.ndarray) -> int | None:
    """The batch size that the trainer's ``env_steps[M, n]`` was computed from, or None.

    The trainer gives ``float32(update) * float32(batch_size)`` (or an integer product): the
    first update's value, divided by the update, is the batch size to within half a step for a
    batch under 2^23; it is then checked by recomputing every row as the trainer does.

    Args:
      env_steps: the trainer's metric, ``[M, n]``.
      updates: the 1-based update of each of the ``n`` columns, int64.

    Returns:
      The batch size, or None where the values are not such products of one batch size.
    """
    if env_steps.ndim != 2 or env_steps.shape[1] != len(updates) or not env_steps.size:
        return None
    if not (
        np.issubdtype(env_steps.dtype, np.integer) or np.issubdtype(env_steps.dtype, np.floating)
    ):
        return None
    first = env_steps[:, 0].astype(np.float64) / float(updates[0])
    if not np.all(np.isfinite(first)):
        return None
    guess = np.rint(first)
    if np.any(guess != guess[0]) or not 1 <= guess[0] < 2**23:
        return None
    batch_size = int(guess[0])
    if np.issubdtype(env_steps.dtype, np.integer):
        want = (updates * batch_size).astype(env_steps.dtype)  # wraps as the trainer's would
    else:
        dtype = env_steps.dtype.type
        want = updates.astype(dtype) * dtype(batch_size)  # IEEE: as the trainer computes it
    return batch_size if np.array_equal(env_steps, np.broadcast_to(want, env_steps.shape)) else None


def concat_tables(tables: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    tables = [t for t in tables if t and len(next(iter(t.values())))]
    if not tables:
        return {}
    names = list(tables[0])
    return {name: np.concatenate([np.asarray(t[name]) for t in tables]) for name in names}


def table_len(table: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(table.values()))) if table else 0


def _fmt(name: str, column: np.ndarray) -> list[str]:
    if name in INT_COLUMNS or np.issubdtype(column.dtype, np.integer):
        return [str(int(v)) for v in column]
    if column.dtype == np.float32:
        return [str(v) for v in column]  # numpy's shortest repr that round-trips a float32
    return [repr(v) for v in column.astype(np.float64).tolist()]


def write_metrics_csv(path: str | os.PathLike, table: Mapping[str, np.ndarray]) -> None:
    """Writes the columns of ``table`` as a CSV with a header row, atomically."""
    names = list(table)
    columns = [_fmt(name, np.asarray(table[name])) for name in names]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(zip(*columns))
    atomic_write_text(path, buf.getvalue())


def read_metrics_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The columns of a ``metrics.csv``: ints for id/count columns, float64 otherwise."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            names = next(reader)
        except StopIteration:
            return {}
        rows = [r for r in reader if len(r) == len(names)]
    # Trainer metrics are float32 (so they are written back exactly as they were read); swept
    # values, sps and time are float64.
    wide = {"sps", "time"}
    if "setting" in names and "seed" in names:
        wide |= set(names[names.index("setting") + 1 : names.index("seed")])
    table = {}
    for i, name in enumerate(names):
        values = [r[i] for r in rows]
        if name in INT_COLUMNS:
            table[name] = np.asarray([_int(v) for v in values], np.int64)
        else:
            table[name] = np.asarray(
                [float(v) for v in values], np.float64 if name in wide else np.float32
            )
    return table


def _int(text: str) -> int:
    """An integer cell: parsed as an integer (exact at any size), else as a float."""
    try:
        return int(text)
    except ValueError:
        return int(float(text))


def select_rows(table: Mapping[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[mask] for k, v in table.items()}


# -- summary -----------------------------------------------------------------------------


def member_curves(
    table: Mapping[str, np.ndarray], column: str = "episode_return"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(setting_ids, seeds, updates, env_steps, values[K, S, U])`` from a metrics table.

    Missing (setting, seed, update) cells are NaN.
    """
    setting = np.asarray(table.get("setting", np.zeros(table_len(table), np.int64)))
    seed, update = np.asarray(table["seed"]), np.asarray(table["update"])
    setting_ids, seeds, updates = np.unique(setting), np.unique(seed), np.unique(update)
    values = np.full((len(setting_ids), len(seeds), len(updates)), np.nan)
    k = np.searchsorted(setting_ids, setting)
    s = np.searchsorted(seeds, seed)
    u = np.searchsorted(updates, update)
    values[k, s, u] = np.asarray(table[column], np.float64)
    steps = np.full(len(updates), np.nan)
    steps[u] = np.asarray(table["env_steps"], np.float64)
    return setting_ids, seeds, updates, steps, values


def final_return(episode_return: np.ndarray, fraction: float = FINAL_FRACTION) -> np.ndarray:
    """jaxpg's one definition of a run's final return: ``[..., U] -> [...]``.

    ``final[...] = mean(episode_return[..., u] for the last ceil(fraction * U) updates u
    (at least one) where the value is finite)``; NaN where no episode ended in that window.
    ``episode_return[..., u]`` is update u's mean return of the episodes that ended in it (NaN
    when none did), as the trainer's metrics give it. The summary, the sweep table, the plots,
    the tests and the benchmarks all call this function.

    Example: returns ``[1, 2, NaN, 4, ..., 20]`` over 20 updates -> mean of updates 19 and 20.
    """
    values = np.asarray(episode_return, np.float64)
    num = values.shape[-1]
    last = max(1, int(math.ceil(num * fraction)))
    tail = values[..., num - last :]
    count = np.sum(np.isfinite(tail), axis=-1)
    total = np.nansum(tail, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def summarize(
    table: Mapping[str, np.ndarray],
    *,
    settings: Sequence[Mapping[str, float]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``summary.json``'s content: final return mean/std over seeds (per setting for a sweep)."""
    out: dict[str, Any] = {
        "final_return_definition": (
            f"per seed, the mean episode_return over the last {FINAL_FRACTION:.0%} of updates "
            "(updates without a finished episode ignored); then mean and std over seeds"
        ),
    }
    if table_len(table):
        setting_ids, seeds, updates, _, values = member_curves(table)
        finals = final_return(values)  # [K, S]
        per_setting = []
        for i, k in enumerate(setting_ids):
            row = {
                "final_return_mean": _nanstat(np.nanmean, finals[i]),
                "final_return_std": _nanstat(np.nanstd, finals[i]),
                "final_return_per_seed": [_float(v) for v in finals[i]],
            }
            if settings:
                row = {"setting": int(k), **dict(settings[int(k)]), **row}
            per_setting.append(row)
        out["seeds"] = [int(s) for s in seeds]
        out["updates"] = int(updates.max())
        out["env_steps"] = int(np.max(table["env_steps"]))
        if settings:
            out["settings"] = per_setting
            best = int(
                np.nanargmax(
                    [
                        r["final_return_mean"] if r["final_return_mean"] is not None else -np.inf
                        for r in per_setting
                    ]
                )
            )
            out["best_setting"] = per_setting[best]
        else:
            out.update(per_setting[0])
    out.update(dict(extra or {}))
    return out


def _nanstat(fn, x) -> float | None:
    x = np.asarray(x, np.float64)
    if not np.any(np.isfinite(x)):
        return None
    return float(fn(x))


def _float(v) -> float | None:
    return float(v) if np.isfinite(v) else None
