"""Run directories: what a training run leaves behind, written atomically.

A run directory (default ``runs/<env>-<algo>-<timestamp>/``) holds:

* ``config.json``: ``{"config": config.to_dict(), "run": {...}}``, enough to rebuild the config
  (:func:`config_from_dict`) and the run's seeds and sweep settings;
* ``metrics.csv``: one row per (setting, seed, update), see :func:`jaxpg.metrics.metrics_rows`;
* ``summary.json``: final return, timings, versions, backend and machine
  (:func:`jaxpg.metrics.summarize`);
* ``learning_curve.png`` (and ``sweep.png`` for a sweep), from :mod:`jaxpg.plotting`;
* ``checkpoints/<update>/``: orbax checkpoints, from :mod:`jaxpg.checkpoint`.

Every file is written atomically (:mod:`jaxpg.files`), so a reader (or a crash) never sees half
a file.
"""

from __future__ import annotations

import datetime
import importlib
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxpg.files import atomic_write_json, read_json

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CURVE_FILE = "learning_curve.png"
SWEEP_FILE = "sweep.png"
CHECKPOINT_DIR = "checkpoints"


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
