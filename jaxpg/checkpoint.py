"""Checkpoints of a :class:`jaxpg.TrainState` through orbax.

Layout: ``<directory>/<update>/{state, meta}``. ``state`` is the train state (batched or not:
a CLI run saves all its seeds and sweep members in one ``[M]``-batched state), ``meta`` is JSON
with the config (``config.to_dict()``), the update count, the batch shape and the jaxpg version.
Orbax writes each checkpoint to a temporary directory and renames it into place once complete,
so a crash never leaves a half-written checkpoint under a step's name.

Restoring needs the config: the target pytree is built by ``init_state`` for that config (and the
recorded batch shape), so the result has the right types (``TrainState``, typed PRNG keys,
optimiser states), and a checkpoint from another environment, algorithm or network is refused
with a message that says what differs. Restoring never writes or deletes anything.

    path = save_checkpoint("ckpt", state, config)          # -> ckpt/<update>
    state, meta = restore_checkpoint("ckpt", config)       # the latest one
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxpg.agents import AgentLike, as_agent
from jaxpg.config import Config, HParams, env_params_dict
from jaxpg.envs import make_env
from jaxpg.files import jsonable
from jaxpg.normalization import RunningMeanStd
from jaxpg.train import TrainState, init_state

# 3: the traced hyperparameters are the config's own (HParams holds exactly its traced fields),
# and running statistics are two-part float32 sums (RunningMeanStd's ``*_lo`` leaves);
# 2: TrainState.algo_state and the agent's carry, with the eleven hyperparameters of jaxpg 0.2's
# closed HParams and one-part statistics (still read: the config's own hyperparameters are
# taken from them, and the ``lo`` parts start at zero).
CHECKPOINT_FORMAT = 3
READABLE_FORMATS = (2, 3)
FORMAT_2_HPARAMS = (
    "lr", "gamma", "gae_lambda", "clip_eps", "ent_coef", "vf_coef", "max_grad_norm",
    "baseline_decay", "target_kl", "cg_damping", "kl_coef",
)  # fmt: skip

# Config fields that must match for a checkpoint's state to mean the same thing under a config:
# they fix the environment, the state's shapes, or what the network computes.
COMPATIBILITY_FIELDS = (
    "algorithm",
    "env",
    "env_kwargs",
    "env_params",
    "num_envs",
    "hidden_sizes",
    "activation",
    "shared_network",
    "network",
    "network_kwargs",
    "conv_channels",
    "recurrent_size",
    "embed_dim",
    "num_layers",
    "num_heads",
    "positions",
    "keep_obs",
    "baseline",
)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit the config."""


def _ocp():
    import orbax.checkpoint as ocp

    return ocp


@contextlib.contextmanager
def _quiet_absl():
    # orbax logs routine facts (a read-only manager, its options) as absl warnings.
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _batch_shape(state) -> tuple[int, ...]:
    return tuple(np.shape(state.update_step))


def _key_data(state):
    """Typed PRNG keys as their raw uint32 data (portable on disk)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _wrap_keys(restored, target, impl: str):
    return jax.tree.map(
        lambda r, t: jax.random.wrap_key_data(r, impl=impl) if _is_key(t) else r,
        restored,
        target,
    )


def key_impl_of(state: Any) -> str:
    """The PRNG implementation of ``state.key`` (``"threefry2x32"`` for raw key data)."""
    key = state.key
    return str(jax.random.key_impl(key)) if _is_key(key) else "threefry2x32"


def checkpoint_steps(directory: str | os.PathLike) -> list[int]:
    """The updates at which complete checkpoints exist under ``directory``, ascending."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    steps = []
    for child in directory.iterdir():
        if child.is_dir() and child.name.isdigit():
            steps.append(int(child.name))
    return sorted(steps)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    steps = checkpoint_steps(directory)
    return Path(directory).absolute() / str(steps[-1]) if steps else None


def save_checkpoint(
    directory: str | os.PathLike,
    state: TrainState,
    config: Config,
    *,
    step: int | None = None,
    keep: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    multiprocessing_options: Any = None,
) -> Path:
    """Saves ``state`` as ``<directory>/<step>`` and returns that path.

    Args:
      directory: the checkpoints folder (created if needed).
      state: a :class:`jaxpg.TrainState`, optionally batched over leading axes (seeds).
      config: the config it was trained with (recorded, and checked on restore).
      step: the checkpoint's number; default: the state's ``update_step``.
      keep: keep only the newest ``keep`` checkpoints (older ones are deleted after this one
        is complete); ``None`` keeps all.
      metadata: extra JSON-able facts to store (seeds, sweep settings, ...).
      multiprocessing_options: an ``orbax.checkpoint.options.MultiprocessingOptions`` for
        multi-process runs (the CLI's ``--distributed`` hook).
    """
    with Checkpointer(
        directory,
        config,
        keep=keep,
        metadata=metadata,
        multiprocessing_options=multiprocessing_options,
    ) as checkpointer:
        return checkpointer.save(state, step=step)


class Checkpointer:
    """One long-lived orbax ``CheckpointManager`` for a run's checkpoints folder.

    ``save(state, step)`` writes ``<directory>/<step>`` (the state, and JSON metadata: the
    format, the step, the batch shape, the key implementation, ``config.to_dict()`` and
    ``metadata``), waits until it is complete, then deletes all but the newest ``keep``.
    :func:`save_checkpoint` is one save through one of these; the run loop
    (:mod:`jaxpg.runner`) keeps one open for the whole run. Use it as a context manager, or
    call :meth:`close`.

    Args:
      directory: the checkpoints folder (created if needed; made absolute, as orbax needs).
      config: the config the states are trained with (recorded, and checked on restore).
      keep: keep only the newest ``keep`` checkpoints; ``None`` keeps all.
      metadata: extra JSON-able facts stored with every checkpoint (seeds, sweep settings).
      multiprocessing_options: an ``orbax.checkpoint.options.MultiprocessingOptions`` for
        multi-process runs.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        config: Any,
        *,
        keep: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        multiprocessing_options: Any = None,
    ) -> None:
        if keep is not None and keep < 1:
            raise ValueError(f"keep={keep!r} is invalid: a positive number of checkpoints, or None")
        ocp = _ocp()
        self.directory = local_path(directory)  # orbax requires absolute paths
        self._config = config
        self._metadata = dict(metadata or {})
        # Made here, not by orbax: orbax refuses create=True with multiprocessing options.
        self.directory.mkdir(parents=True, exist_ok=True)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=False,
            enable_async_checkpointing=False,
            **(
                {"multiprocessing_options": multiprocessing_options}
                if multiprocessing_options
                else {}
            ),
        )
        with _quiet_absl():
            self._manager = ocp.CheckpointManager(
                self.directory, options=options, item_names=("state", "meta")
            )

    def save(self, state: Any, *, step: int | None = None, key_impl: str | None = None) -> Path:
        """Saves ``state`` (a :class:`jaxpg.TrainState`, optionally batched over members) as
        ``<directory>/<step>`` (default step: the state's ``update_step``); returns that path.
        ``key_impl`` names the PRNG implementation when ``state.key`` is raw key data."""
        ocp = _ocp()
        import jaxpg
        from jaxpg.files import jsonable

        if step is None:
            step = int(np.max(np.asarray(jax.device_get(state.update_step))))
        meta = {
            "format": CHECKPOINT_FORMAT,
            "jaxpg_version": getattr(jaxpg, "__version__", "unknown"),
            "step": int(step),
            "batch_shape": list(_batch_shape(state)),
            "key_impl": key_impl or key_impl_of(state),
            "config": self._config.to_dict(),
            **self._metadata,
        }
        with _quiet_absl():
            self._manager.save(
                int(step),
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(_key_data(state)),
                    meta=ocp.args.JsonSave(jsonable(meta)),
                ),
                force=True,
            )
            self._manager.wait_until_finished()
        return self.directory / str(int(step))

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        with _quiet_absl():
            self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of one checkpoint (``<directory>/<step>``)."""
    import json

    path = Path(path)
    meta_dir = path / "meta"
    files = sorted(meta_dir.glob("*")) if meta_dir.is_dir() else []
    for f in files:
        if f.is_file():
            try:
                with open(f, encoding="utf-8") as fh:
                    return json.load(fh)
            except (OSError, ValueError):
                continue
    raise CheckpointError(
        f"checkpoint {path} has no readable metadata (meta/ is missing or corrupt); "
        "it was not written by jaxpg, or it is damaged"
    )


def local_path(directory: str | os.PathLike, name: str = "directory") -> Path:
    """``directory`` as an absolute local path (orbax needs absolute paths). An object-store URL
    (``gs://...``, ``s3://...``) is refused with a ``ValueError``: jaxpg writes run and
    checkpoint folders through the local filesystem, where ``Path`` would mangle a URL into a
    local folder named ``gs:``."""
    text = str(os.fspath(directory))
    # "gs://b" (or Path("gs://b"), which collapses it to "gs:/b"): a scheme of two or more
    # letters, then ":/" (a Windows drive "C:/" has one letter)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:/", text):
        raise ValueError(
            f"{name}={str(text)!r} is an object-store URL, which jaxpg does not write to: give a "
            "local path, or the bucket mounted as a folder (gcsfuse, s3fs)"
        )
    return Path(directory).absolute()


def _resolve(directory: str | os.PathLike, step: int | None) -> tuple[Path, int]:
    directory = local_path(directory)
    if not directory.exists():
        raise CheckpointError(f"no checkpoint: {directory} does not exist")
    # A path to one checkpoint (".../checkpoints/40") is accepted too.
    if directory.name.isdigit() and (directory / "state").exists() and step is None:
        return directory.parent, int(directory.name)
    steps = checkpoint_steps(directory)
    if not steps:
        raise CheckpointError(f"no checkpoint found in {directory}")
    if step is None:
        return directory, steps[-1]
    if step not in steps:
        raise CheckpointError(f"no checkpoint for update {step} in {directory}; there are {steps}")
    return directory, int(step)


def check_compatible(meta: Mapping[str, Any], config: Config, where: str = "checkpoint") -> None:
    """Raises :class:`CheckpointError` if ``meta['config']`` differs from ``config`` in a field
    that fixes the environment, the state's shapes or the network."""
    saved = meta.get("config", {})
    current = jsonable(config.to_dict())  # as the saved one went through JSON
    diffs = []
    for name in COMPATIBILITY_FIELDS:
        if name not in saved and name not in current:
            continue
        # Fields added later read as their value before they existed.
        missing = {"network_kwargs": {}, "positions": "learned"}.get(name)
        a, b = saved.get(name, missing), current.get(name, missing)
        if name == "env_params":
            same = a == b or _env_params_entry(a, config) == _env_params_entry(b, config)
        else:
            same = _normalize(a) == _normalize(b)
        if not same:
            diffs.append(f"{name}: saved {a!r}, config {b!r}")
    if diffs:
        raise CheckpointError(f"{where} is incompatible with this config: " + "; ".join(diffs))


def _normalize(v):
    if isinstance(v, (list, tuple)):
        return [_normalize(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _normalize(x) for k, x in v.items()}
    return v


def _env_params_entry(recorded, config):
    """A recorded ``env_params`` (``config.to_dict()``'s) in one form for comparing: its fields.
    None (the environment's defaults) becomes the default params' fields; a repr string (what
    older checkpoints recorded) stands for ``config``'s params if it is their repr."""
    if recorded is None:
        recorded = env_params_dict(make_env(config.env, None, **config.env_kwargs).params)
    elif isinstance(recorded, str) and config.env_params is not None:
        if recorded == repr(config.env_params):
            recorded = env_params_dict(config.env_params)
    return _normalize(jsonable(recorded))


def abstract_state(
    config: Config,
    batch_shape: tuple[int, ...] = (),
    key_impl: str | None = None,
    *,
    agent: AgentLike | None = None,
) -> TrainState:
    """The ``TrainState`` structure (shapes and dtypes only) for ``config`` (and ``agent``, a
    policy of your own) and ``batch_shape``."""
    agent = as_agent(agent, config)

    def build():
        key = jax.random.key(0, impl=key_impl)
        keys = jax.random.split(key, int(np.prod(batch_shape, dtype=int)))
        state = jax.vmap(lambda k: init_state(config, k, agent=agent))(keys)
        return jax.tree.map(lambda x: x.reshape(*batch_shape, *x.shape[1:]), state)

    return jax.eval_shape(build)


class _Format2Stats(struct.PyTreeNode):
    """A format-2 :class:`~jaxpg.normalization.RunningMeanStd`: one float32 part each."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array


def _is_stats(x) -> bool:
    return isinstance(x, (RunningMeanStd, _Format2Stats))


def _format_2_target(target: TrainState) -> TrainState:
    """``target`` as a format-2 checkpoint holds it: the eleven hyperparameters of then, and
    running statistics without the ``lo`` parts."""
    like = jax.tree.leaves(target.hparams)[0]
    target = jax.tree.map(
        lambda x: _Format2Stats(x.mean, x.var, x.count) if isinstance(x, RunningMeanStd) else x,
        target,
        is_leaf=_is_stats,
    )
    return target.replace(hparams=HParams({name: like for name in FORMAT_2_HPARAMS}))


def _from_format_2(state: TrainState, config: Config) -> TrainState:
    """A restored format-2 state in today's form: the config's traced hyperparameters, and
    running statistics whose ``lo`` parts are zero (a format-2 sum was float32 alone)."""

    def stats(x):
        if not isinstance(x, _Format2Stats):
            return x
        zero = jnp.zeros_like
        return RunningMeanStd(x.mean, x.var, x.count, zero(x.mean), zero(x.var), zero(x.count))

    state = jax.tree.map(stats, state, is_leaf=_is_stats)
    return state.replace(hparams=HParams({k: state.hparams[k] for k in config.traced_fields()}))


def _flat_shapes(tree) -> dict[str, tuple]:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = ".".join(_key_name(p) for p in path)
        out[name] = tuple(getattr(leaf, "shape", ()))
    return out


def _key_name(p) -> str:
    for attr in ("name", "key", "idx"):
        if hasattr(p, attr):
            return str(getattr(p, attr))
    return str(p)


def _check_shapes(manager, step: int, target, where: str) -> None:
    try:
        tree = manager.item_metadata(step)["state"]
        tree = getattr(tree, "tree", tree)
    except Exception:  # noqa: BLE001 - a missing metadata file surfaces in restore
        return
    if tree is None:
        return
    stored = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: hasattr(x, "shape") and not isinstance(x, (dict, list))
    )[0]:
        stored[".".join(_key_name(p) for p in path)] = tuple(getattr(leaf, "shape", ()))
    wanted = _flat_shapes(target)
    missing = sorted(set(wanted) - set(stored))
    extra = sorted(set(stored) - set(wanted))
    wrong = [
        f"{k}: {where} {stored[k]}, config {wanted[k]}"
        for k in sorted(set(wanted) & set(stored))
        if stored[k] != wanted[k]
    ]
    problems = []
    if wrong:
        problems.append(
            "shape mismatch: " + "; ".join(wrong[:4]) + (" ..." if len(wrong) > 4 else "")
        )
    if missing:
        problems.append(f"missing arrays: {missing[:4]}" + (" ..." if len(missing) > 4 else ""))
    if extra:
        problems.append(f"unexpected arrays: {extra[:4]}" + (" ..." if len(extra) > 4 else ""))
    if problems:
        raise CheckpointError(
            f"{where} does not fit this config's train state: " + "; ".join(problems)
        )


def restore_checkpoint(
    directory: str | os.PathLike,
    config: Config,
    *,
    step: int | None = None,
    agent: AgentLike | None = None,
    sharding: jax.sharding.Sharding | None = None,
) -> tuple[TrainState, dict[str, Any]]:
    """Restores ``(state, metadata)`` from the latest (or the given) checkpoint in ``directory``.

    ``directory`` is a checkpoints folder or one checkpoint's folder. The state comes back with
    the structure and types that ``init_state(config, ..., agent=agent)`` builds, batched as it
    was saved (``agent``: a policy of your own given as an object; one the config names as
    ``network="module:attr"`` needs nothing here).
    By default the whole state is read onto this process's first device. ``sharding``, for a
    batched state, places every leaf so (its leading member axis split, as
    :func:`jaxpg.sharding.member_sharding` does): each process then reads only the members its
    own devices hold, and with many processes every process must call this together. An
    unbatched state is read whole whatever ``sharding`` says; a member count that ``sharding``
    cannot split evenly is a :class:`CheckpointError`.
    Raises :class:`CheckpointError` (and changes nothing on disk) when there is no checkpoint,
    when it cannot be read, or when it belongs to another environment, algorithm or network.
    """
    ocp = _ocp()
    directory, step = _resolve(directory, step)
    path = directory / str(step)
    where = f"checkpoint {path}"
    meta = read_checkpoint_metadata(path)
    fmt = meta.get("format")
    if fmt not in READABLE_FORMATS or "config" not in meta:
        raise CheckpointError(
            f"{where} is in checkpoint format {fmt!r}, which this jaxpg cannot read (it reads "
            f"formats {list(READABLE_FORMATS)}; format 1 was jaxpg 0.1's, before the agent's "
            "carry and the algorithm state)"
        )
    check_compatible(meta, config, where)
    batch_shape = tuple(meta.get("batch_shape", ()))
    key_impl = meta.get("key_impl", "threefry2x32")
    target = abstract_state(config, batch_shape, key_impl, agent=agent)
    on_disk = _format_2_target(target) if fmt == 2 else target
    # Onto this process's first device unless a sharding is given: a checkpoint written by
    # several processes (members spread over them) carries their shardings, which orbax refuses
    # to use elsewhere.
    if sharding is None or not batch_shape:
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    try:
        sharding.shard_shape(batch_shape)
    except ValueError:
        raise CheckpointError(
            f"{where} holds {batch_shape[0]} members, which the sharding asked for cannot split "
            f"evenly over its {len(sharding.device_set)} devices"
        ) from None
    target_on_disk = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
        jax.eval_shape(_key_data, on_disk),
    )
    try:
        with (
            _quiet_absl(),
            ocp.CheckpointManager(
                directory,
                options=ocp.CheckpointManagerOptions(read_only=True, create=False),
                item_handlers={
                    "state": ocp.StandardCheckpointHandler(),
                    "meta": ocp.JsonCheckpointHandler(),
                },
            ) as manager,
        ):
            _check_shapes(manager, step, target_on_disk, where)
            restored = manager.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(target_on_disk)),
            )
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many kinds; say which file
        message = " ".join(str(e).split())[:300]
        raise CheckpointError(
            f"{where} cannot be read, it may be corrupt ({type(e).__name__}: {message})"
        ) from e
    state = restored["state"]
    if fmt == 2:
        state = _from_format_2(state, config)
    state = _wrap_keys(state, target, key_impl)
    state = jax.tree.map(jnp.asarray, state)
    return state, meta
