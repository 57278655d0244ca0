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

import dataclasses
import datetime
import importlib
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnax

from jaxpg import registry
from jaxpg.envs import env_families
from jaxpg.files import atomic_write_json, read_json

if TYPE_CHECKING:  # annotations only: importing the config module imports gymnax
    from jaxpg.config import Config

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CURVE_FILE = "learning_curve.png"
SWEEP_FILE = "sweep.png"
CHECKPOINT_DIR = "checkpoints"
# config.json's run.agent when the policy was given as an object without an import path (the
# run cannot rebuild it: resume and eval need it again).
UNRECORDED_AGENT = "given to jaxpg.run as an object without an import path"


# -- run directory -----------------------------------------------------------------------


def default_run_dir(config: Config, root: str | os.PathLike = "runs") -> Path:
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


def write_config(run_dir: str | os.PathLike, config: Config, run: Mapping[str, Any]) -> None:
    """``config.json``: the config's fields and the run's settings (seeds, sweep, CLI)."""
    atomic_write_json(Path(run_dir) / CONFIG_FILE, {"config": config.to_dict(), "run": dict(run)})


def read_config(run_dir: str | os.PathLike) -> tuple[Config, dict[str, Any]]:
    """Rebuilds ``(config, run)`` from ``run_dir/config.json``."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a jaxpg run directory?")
    try:
        data = read_json(path)
        config_dict, run = dict(data["config"]), data.get("run", {})
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a valid jaxpg config file ({e})") from None
    for module in run.get("imports") or ():
        import_recorded(module, "--import")
    if run.get("env_params_overrides") and "env_params_overrides" not in config_dict:
        # Older run directories kept the CLI's --env-params overrides here.
        config_dict["env_params_overrides"] = run["env_params_overrides"]
    return config_from_dict(config_dict, env=run.get("env")), run


def config_from_dict(d: Mapping[str, Any], env: str | None = None) -> Config:
    """The config that :meth:`to_dict` recorded.

    ``env`` (optional) is how the environment was given on the command line; it takes
    precedence over the recorded name. An environment given as a class is re-imported from its
    ``module.ClassName`` (or ``module:ClassName``) path and built with no arguments.
    ``env_params``, recorded as a dict of its fields, is rebuilt from the environment's default
    params (:func:`env_params_with`), so the config is equal to the one recorded. Older files
    recorded the CLI's ``--env-params`` overrides as ``env_params_overrides`` (used when
    ``env_params`` is not a dict), and params set from Python only by their repr, which cannot
    be rebuilt (a ``ValueError``).
    """
    d = dict(d)
    algorithm = d.pop("algorithm", None)
    class_path = d.pop("config_class", None)
    if algorithm not in registry.names() and class_path:
        # An algorithm of your own: importing its config's module registers it.
        import_recorded(class_path.partition(":")[0], f"algorithm {algorithm!r}")
    if algorithm not in registry.names():
        raise ValueError(
            f"config: unknown algorithm {algorithm!r}; expected one of {list(registry.names())}"
        )
    cls = registry.config_class(algorithm)
    names = {f.name for f in dataclasses.fields(cls)}
    overrides = d.pop("env_params_overrides", None)
    fields = {k: v for k, v in d.items() if k in names}
    fields["env"] = resolve_env(env if env is not None else fields.get("env", "CartPole-v1"))
    for name in ("hidden_sizes", "conv_channels", "keep_obs"):
        if isinstance(fields.get(name), list):
            fields[name] = tuple(fields[name])
    recorded = fields.pop("env_params", None)
    env_kwargs = fields.get("env_kwargs") or {}
    if isinstance(recorded, Mapping):
        fields["env_params"] = env_params_with(fields["env"], recorded, env_kwargs)
    elif overrides:
        fields["env_params"] = env_params_with(fields["env"], overrides, env_kwargs)
    elif recorded is not None:
        raise ValueError(
            "config: env_params were set from Python (recorded only as "
            f"{str(recorded)[:80]!r}...) and cannot be rebuilt from config.json"
        )
    return cls(**fields)


def import_recorded(module: str, what: str) -> None:
    """Imports ``module``, which a run directory names (a user's algorithm, policy or the CLI's
    ``--import``); a ``ValueError`` says in one line what could not be imported and why."""
    try:
        importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any failure of the user's module, in one line
        message = " ".join(str(e).split())[:200]
        raise ValueError(
            f"this run needs module {module!r} ({what}), which cannot be imported: "
            f"{type(e).__name__}: {message}"
        ) from None


def resolve_env(spec: Any) -> Any:
    """A registry name stays a string; ``module:Class`` or ``module.Class`` is imported and
    instantiated with no arguments (a user's own gymnax ``Environment``)."""
    if not isinstance(spec, str):
        return spec
    if spec in gymnax.registered_envs or spec.partition(":")[0] in env_families():
        return spec  # a gymnax name, or a family's PREFIX:NAME (seq:reverse)
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


def env_params_with(env: Any, overrides: Mapping[str, Any], env_kwargs: Mapping[str, Any]) -> Any:
    """The environment's default params with ``overrides`` applied (``params.replace``).

    A value given as a list or a number (JSON's) for a field whose default is an array becomes
    an array of the default's dtype (and kind: NumPy or JAX); a mapping for a field whose default
    is a dataclass overrides that dataclass's fields.
    """
    from jaxpg.envs import make_env

    params = make_env(env, None, **dict(env_kwargs)).params
    return _replace_fields(params, overrides, "env_params")


def _replace_fields(params: Any, overrides: Mapping[str, Any], where: str):
    known = (
        {f.name for f in dataclasses.fields(params)} if dataclasses.is_dataclass(params) else set()
    )
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {unknown} for {type(params).__name__}; "
            f"its fields are {sorted(known)}"
        )
    changes = {}
    for name, value in overrides.items():
        default = getattr(params, name)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(default):
            value = _replace_fields(default, value, f"{where}.{name}")
        elif _is_array(default):
            value = _as_array_like(value, default, f"{where}.{name}")
        else:
            _check_kind(value, default, f"{where}.{name}")
        changes[name] = value
    return params.replace(**changes)


def _check_kind(value: Any, default: Any, where: str) -> None:
    """Refuses a JSON value of another kind than the field's (non-array) default: a string, a
    list or ``null`` for a number, a number for a flag, a number for a string."""
    if isinstance(default, bool):
        ok, wanted = isinstance(value, bool), "true or false"
    elif isinstance(default, (int, float)):
        ok, wanted = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, wanted = isinstance(value, str), "a string"
    else:
        return
    if not ok:
        raise ValueError(f"{where}={value!r} is invalid: {wanted}, as the default {default!r}")


def _is_array(value: Any) -> bool:
    import jax
    import numpy as np

    return isinstance(value, (np.ndarray, np.generic, jax.Array))


def _as_array_like(value: Any, default: Any, where: str):
    """``value`` (a nested list or a number) as an array of ``default``'s dtype and kind."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    try:
        array = np.asarray(value, dtype=np.asarray(default).dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{where}={value!r} is invalid: an array of {np.asarray(default).dtype} ({e})"
        ) from None
    if isinstance(default, jax.Array):
        return jnp.asarray(array)
    if isinstance(default, np.generic):
        return array[()]
    return array
