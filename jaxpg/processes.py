"""Many processes: joining a multi-host JAX job, and who does what in it.

Many hosts: call :func:`initialize_distributed` first, before any other JAX call, in every
process. The mesh then spans every device of every process, and every process runs the same
program with the same key; each one steps the environments on its own devices. Only process 0
should write files (:func:`is_main_process`), and host-local randomness (an evaluation rollout
that one process runs alone) takes :func:`process_key`.

This module imports nothing heavy (JAX itself, not gymnax), so the CLI can join the job
before anything starts a backend; :mod:`jaxpg.distributed` re-exports it with the sharded
programs of :mod:`jaxpg.sharding`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

# -- topology ----------------------------------------------------------------------------------


class Topology(NamedTuple):
    """Where this process sits: ``process_index`` of ``process_count``, with its devices."""

    process_index: int
    process_count: int
    local_device_count: int
    global_device_count: int
    platform: str  # "cpu", "gpu" or "tpu"


def topology() -> Topology:
    """This process's view of the (possibly multi-host) machine."""
    return Topology(
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        local_device_count=jax.local_device_count(),
        global_device_count=jax.device_count(),
        platform=jax.default_backend(),
    )


def _distributed_is_initialized() -> bool:
    is_initialized = getattr(jax.distributed, "is_initialized", None)
    if is_initialized is not None:
        return bool(is_initialized())
    return _INITIALIZED[0]


_INITIALIZED = [False]  # fallback flag for jax versions without jax.distributed.is_initialized


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: int | Sequence[int] | None = None,
) -> Topology:
    """Joins this process to a multi-host JAX job (``jax.distributed.initialize``).

    Call it once per process, before any other JAX computation. On a Cloud TPU pod slice (and
    under Slurm or Open MPI) every argument is optional: JAX detects the cluster. Elsewhere
    (GPU hosts, or several CPU processes) give all three: the ``host:port`` of process 0, the
    number of processes and this process's id. Calling it again is a no-op.

    Returns the :class:`Topology` after joining: ``jax.devices()`` now lists every process's
    devices, and :func:`make_mesh` spans them all.
    """
    if _distributed_is_initialized():
        return topology()
    for name, value in (("num_processes", num_processes), ("process_id", process_id)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 0):
            raise ValueError(f"initialize_distributed: {name}={value!r} must be a non-negative int")
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ValueError(
            f"initialize_distributed: process_id={process_id} must be < num_processes={num_processes}"
        )
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=local_device_ids,
        )
    except RuntimeError as err:
        if "before" in str(err):
            raise RuntimeError(
                "initialize_distributed must run before any other JAX computation in this "
                "process. Importing gymnax (and so jaxpg.config, jaxpg.envs or jaxpg.train) "
                "already computes with JAX: call it first, before those imports"
            ) from err
        raise
    except ValueError as err:
        raise ValueError(
            f"initialize_distributed: {err}. Outside a Cloud TPU pod, Slurm or Open MPI, pass "
            "coordinator_address='host0:1234', num_processes and process_id"
        ) from err
    _INITIALIZED[0] = True
    return topology()


def is_main_process(process_index: int | None = None) -> bool:
    """True in process 0, the one process that should write files: logs, tables, plots.

    Checkpoints of sharded state are different: orbax's save of arrays that span processes is
    collective (every process calls it and writes the shards it holds), and guarding it with
    this would hang the others. The run loop (:class:`jaxpg.callbacks.Checkpoints`) saves a
    spread state that way, and a state every process holds whole from process 0 alone (orbax
    ``active_processes={0}``)."""
    index = jax.process_index() if process_index is None else process_index
    return index == 0


def main_process_only(fn: Callable) -> Callable:
    """Decorates a function that writes files so it runs only in process 0 (others get None)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if is_main_process():
            return fn(*args, **kwargs)
        return None

    return wrapper


def process_key(key: jax.Array, process_index: int | None = None) -> jax.Array:
    """A key for randomness that one process draws alone (``fold_in(key, process_index)``).

    Training itself takes the same key in every process: it is one global program, and the
    sharding decides which environments each process steps. Keys for host-local work (an
    evaluation each process runs on its own devices) must differ between processes, or every
    process repeats the same episodes.
    """
    index = jax.process_index() if process_index is None else process_index
    return jax.random.fold_in(key, index)


def global_seed(seed: int) -> int:
    """``seed`` as process 0 has it, in every process, so a seed drawn at random (from the
    clock, say) cannot differ between processes. A no-op with one process."""
    return int_from_process_0(int(seed) % 2**64)


def int_from_process_0(value: int) -> int:
    """Process 0's ``value`` (an int in ``[0, 2**64)``) in every process: a collective, so that
    processes whose own views differ (their disks, their clocks) decide alike. A no-op with
    one process."""
    if jax.process_count() == 1:
        return int(value)
    from jax.experimental import multihost_utils

    # As two uint32 words: without jax_enable_x64 an int64 would be cut to 32 bits.
    value = int(value)
    words = np.asarray([value >> 32, value & 0xFFFFFFFF], np.uint32)
    hi, lo = np.asarray(multihost_utils.broadcast_one_to_all(words)).tolist()
    return (hi << 32) | lo


# -- failing together --------------------------------------------------------------------------

MESSAGE_BYTES = 2048  # a longer message is cut


class ProcessFailed(RuntimeError):
    """Another process of the job raised; the message is its exception's, after
    ``process K failed:``."""


def gather_messages(message: str | None) -> list[str | None]:
    """Every process's ``message`` (``None``: nothing to say), in process order: a collective,
    so every process gets the same list. The messages travel as UTF-8 bytes, each cut at
    :data:`MESSAGE_BYTES`. With one process: ``[message]``."""
    if jax.process_count() == 1:
        return [message]
    from jax.experimental import multihost_utils

    row = np.zeros(MESSAGE_BYTES + 1, np.uint8)
    if message is not None:
        raw = message.encode("utf-8")[:MESSAGE_BYTES]
        row[0] = 1
        row[1 : 1 + len(raw)] = np.frombuffer(raw, np.uint8)
    rows = np.asarray(multihost_utils.process_allgather(row))
    return [
        bytes(r[1:]).rstrip(b"\0").decode("utf-8", errors="replace") if r[0] else None
        for r in rows.reshape(-1, MESSAGE_BYTES + 1)
    ]


def describe_error(error: BaseException) -> str:
    """``Type: message``, as a traceback's last line reads."""
    return f"{type(error).__name__}: {error}"


def mark_shared(error: BaseException) -> BaseException:
    """Marks ``error`` as known to every process (raised in all of them after an agreement), so
    :func:`fail_together` does not announce it."""
    with contextlib.suppress(AttributeError, TypeError):
        error._jaxpg_shared = True  # type: ignore[attr-defined]
    return error


_FAIL_TOGETHER_CALLS = [0]  # every process enters fail_together alike: the count names the block


@contextlib.contextmanager
def fail_together(poll_s: float = 0.5) -> Iterator[None]:
    """Runs the block so that an exception in any one process stops every process within
    about ``poll_s`` seconds, with the original message.

    Another process may be blocked in a collective (waiting for the failed one), where no Python
    runs and no exception can reach it. So the process that raises writes
    ``process K failed: Type: message`` into the job's coordination service (the key-value
    store of ``jax.distributed``) before the exception goes on, and a watcher thread in every
    process reads it: a process that finds another's failure prints the message to stderr,
    leaves the job (``jax.distributed.shutdown``, which the failed process also reaches on its
    way out, so neither waits out the shutdown barrier's timeout) and exits with status 1
    (``os._exit``: its main thread may never return from the collective). An exception every
    process raises together (:func:`mark_shared`) is not announced. With one process, or
    without a coordination service, the block just runs.
    """
    client = _coordination_client() if jax.process_count() > 1 else None
    if client is None:
        yield
        return
    _FAIL_TOGETHER_CALLS[0] += 1
    prefix = f"jaxpg/failed/{_FAIL_TOGETHER_CALLS[0]}/"
    me = jax.process_index()
    done = threading.Event()
    watcher = threading.Thread(
        target=_watch_failures, args=(client, prefix, me, done, poll_s), daemon=True
    )
    watcher.start()
    try:
        yield
    except BaseException as error:
        if not getattr(error, "_jaxpg_shared", False):
            with contextlib.suppress(Exception):
                client.key_value_set(prefix + str(me), f"process {me} failed: {describe_error(error)}")  # fmt: skip
        raise
    finally:
        done.set()


def _coordination_client() -> Any:
    try:
        from jax._src import distributed
    except ImportError:  # pragma: no cover - a JAX without it: no watcher
        return None
    return getattr(distributed.global_state, "client", None)


def _watch_failures(client: Any, prefix: str, me: int, done: threading.Event, poll_s: float) -> None:  # fmt: skip
    while not done.wait(poll_s):
        try:
            entries = client.key_value_dir_get(prefix)
        except Exception:  # noqa: BLE001 - the service is going away: nothing to watch
            return
        others = sorted((k, v) for k, v in entries if not k.endswith(f"/{me}"))
        if others and not done.is_set():
            sys.stderr.write(f"jaxpg: stopping: {others[0][1]}\n")
            sys.stderr.flush()
            with contextlib.suppress(Exception):
                jax.distributed.shutdown()
            os._exit(1)
