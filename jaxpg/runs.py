"""Run directories: what a training run leaves behind, written atomically.

A run directory (default ``runs/<env>-<algo>-<timestamp>/``) holds:

* ``config.json``: ``{"config": config.to_dict(), "run": {...}}``, enough to rebuild the config
  (:func:`config_from_dict`) and the run's seeds and sweep settings;
* ``metrics.csv``: one row per (setting, seed, update), see :func:`metrics_rows`;
* ``summary.json``: final return, timings, versions, backend and machine (:func:`summarize`);
* ``learning_curve.png`` (and ``sweep.png`` for a sweep), from :mod:`jaxpg.plotting`;
* ``checkpoints/<update>/``: orbax checkpoints, from :mod:`jaxpg.checkpoint`.

Every file is written to a temporary file in the same directory and moved into place with
``os.replace``, so a reader (or a crash) never sees half a file.

"Final return" means: per member (seed, setting), the mean episode return over the last 10% of
its updates (at least one update; updates where no episode ended are ignored), then the mean and
standard deviation of that over the seeds.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import importlib
import io
import json
import math
import os
import platform
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FINAL_FRACTION = 0.1  # "final" return: the mean over the last 10% of updates

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CURVE_FILE = "learning_curve.png"
SWEEP_FILE = "sweep.png"
CHECKPOINT_DIR = "checkpoints"


# -- atomic writes -----------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        # mkstemp makes the file private (0600); a result file gets open()'s usual mode.
        os.chmod(tmp, 0o666 & ~_umask())
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, allow_nan=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


# -- run directory -----------------------------------------------------------------------


def default_run_dir(config, root: str | os.PathLike = "runs") -> Path:
    """``<root>/<env>-<algo>-<YYYYmmdd-HHMMSS>``, with a numeric suffix if that exists."""
    env = config.env_spec.name.replace("/", "_")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{env}-{config.algorithm}-{stamp}"
    path, i = base, 1
    while path.exists():
        path = Path(f"{base}-{i}")
        i += 1
    return path


def environment_info() -> dict[str, Any]:
    """Versions, backend, devices and machine: what a result needs to be read later."""
    import jax

    import jaxpg

    devices = jax.devices()
    return {
        "jaxpg_version": getattr(jaxpg, "__version__", "unknown"),
        "jax_version": jax.__version__,
        "jaxlib_version": getattr(importlib.import_module("jaxlib"), "__version__", "unknown"),
        "backend": jax.default_backend(),
        "device": str(devices[0].device_kind) if devices else "none",
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def write_config(run_dir: str | os.PathLike, config, run: Mapping[str, Any]) -> None:
    """``config.json``: the config's fields and the run's settings (seeds, sweep, CLI)."""
    atomic_write_json(Path(run_dir) / CONFIG_FILE, {"config": config.to_dict(), "run": dict(run)})


def read_config(run_dir: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """Rebuilds ``(config, run)`` from ``run_dir/config.json``."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a jaxpg run directory?")
    try:
        data = read_json(path)
        config_dict, run = data["config"], data.get("run", {})
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a valid jaxpg config file ({e})") from None
    return config_from_dict(config_dict, env=run.get("env")), run


def config_from_dict(d: Mapping[str, Any], env: str | None = None):
    """The config that :meth:`to_dict` recorded.

    ``env`` (optional) is how the environment was given on the command line; it takes
    precedence over the recorded name. An environment given as a class is re-imported from its
    ``module.ClassName`` (or ``module:ClassName``) path and built with no arguments.
    ``env_params`` is rebuilt from the recorded overrides of the default params
    (``env_params_overrides``, as the CLI's ``--env-params`` JSON); a params object set from
    Python is recorded only by its repr and cannot be rebuilt.
    """
    from jaxpg import registry

    d = dict(d)
    algorithm = d.pop("algorithm", None)
    if algorithm not in registry.names():
        raise ValueError(
            f"config: unknown algorithm {algorithm!r}; expected one of {list(registry.names())}"
        )
    cls = registry.config_class(algorithm)
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    overrides = d.pop("env_params_overrides", None)
    fields = {k: v for k, v in d.items() if k in names}
    fields["env"] = resolve_env(env if env is not None else fields.get("env", "CartPole-v1"))
    if "hidden_sizes" in fields:
        fields["hidden_sizes"] = tuple(fields["hidden_sizes"])
    params_repr = fields.pop("env_params", None)
    fields["env_params"] = None
    if overrides:
        fields["env_params"] = env_params_with(
            fields["env"], overrides, fields.get("env_kwargs") or {}
        )
    elif params_repr is not None:
        raise ValueError(
            "config: env_params were set from Python (recorded only as "
            f"{str(params_repr)[:80]!r}...) and cannot be rebuilt from config.json"
        )
    return cls(**fields)


def resolve_env(spec: Any) -> Any:
    """A registry name stays a string; ``module:Class`` or ``module.Class`` is imported and
    instantiated with no arguments (a user's own gymnax ``Environment``)."""
    if not isinstance(spec, str):
        return spec
    import gymnax

    if spec in gymnax.registered_envs or spec.startswith("seq:"):  # seq:NAME: a sequence task
        return spec
    if ":" in spec:
        module, _, name = spec.partition(":")
    elif "." in spec:
        module, _, name = spec.rpartition(".")
    else:
        return spec  # make_env reports the unknown name with the registered ones
    try:
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"env: cannot import {spec!r} ({e})") from None
    return obj() if isinstance(obj, type) else obj


def env_params_with(env: Any, overrides: Mapping[str, Any], env_kwargs: Mapping[str, Any]):
    """The environment's default params with ``overrides`` applied (``params.replace``)."""
    from jaxpg.envs import make_env

    params = make_env(env, None, **dict(env_kwargs)).params
    known = set(getattr(params, "__dataclass_fields__", {}))
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"env_params: unknown field(s) {unknown} for {type(params).__name__}; "
            f"its fields are {sorted(known)}"
        )
    return params.replace(**dict(overrides))


# -- metrics table -----------------------------------------------------------------------

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
    seeds: Sequence[int],
    settings: Sequence[Mapping[str, float]] | None,
    sps: float,
    time: float,
) -> dict[str, np.ndarray]:
    """Flat columns, one row per (update, member), from one chunk's ``metrics[name][M, n]``.

    Members are ordered setting-major: member ``m`` is setting ``m // S``, seed ``seeds[m % S]``.
    ``update`` is 1-based (the number of updates done), so ``env_steps`` is
    ``update * batch_size``. Columns: ``setting`` and the swept values (sweeps only), ``seed``,
    ``update``, ``env_steps``, every trainer metric, ``sps`` (env steps per second of the whole
    run, over this chunk) and ``time`` (seconds of training so far).
    """
    any_metric = np.asarray(next(iter(metrics.values())))
    num_members, n = any_metric.shape[:2]
    num_seeds = len(seeds)
    member = np.tile(np.arange(num_members), n)  # update-major: every member of update 1, ...
    cols: dict[str, np.ndarray] = {}
    if settings:
        cols["setting"] = member // num_seeds
        for name in settings[0]:
            cols[name] = np.asarray([s[name] for s in settings], np.float64)[member // num_seeds]
    cols["seed"] = np.asarray(seeds, np.int64)[member % num_seeds]
    cols["update"] = np.repeat(np.arange(first_update + 1, first_update + n + 1), num_members)
    names = [k for k in METRIC_ORDER if k in metrics] + sorted(set(metrics) - set(METRIC_ORDER))
    for name in names:
        value = np.asarray(metrics[name])
        flat = value.T.reshape(-1)  # [M, n] -> [n, M] -> update-major rows
        if value.dtype == bool or np.issubdtype(value.dtype, np.integer):
            cols[name] = flat.astype(np.int64)
        else:
            cols[name] = flat.astype(np.float32)
    cols["sps"] = np.full(n * num_members, round(float(sps), 1), np.float64)
    cols["time"] = np.full(n * num_members, round(float(time), 3), np.float64)
    return cols


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
            table[name] = np.asarray([int(float(v)) for v in values], np.int64)
        else:
            table[name] = np.asarray(
                [float(v) for v in values], np.float64 if name in wide else np.float32
            )
    return table


def select_rows(table: Mapping[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[mask] for k, v in table.items()}


# -- summary -----------------------------------------------------------------------------


def member_curves(table: Mapping[str, np.ndarray], column: str = "episode_return"):
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


def final_returns(values: np.ndarray, fraction: float = FINAL_FRACTION) -> np.ndarray:
    """Per member, the NaN-ignoring mean of the last ``fraction`` of updates (at least one):
    ``[..., U] -> [...]``."""
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
        finals = final_returns(values)  # [K, S]
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
