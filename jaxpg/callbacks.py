"""What the run loop (:mod:`jaxpg.runner`) shows its callbacks, and the built-in callbacks.

A :class:`Callback` has three hooks: ``on_start(run)`` after compiling, ``on_chunk(run, chunk)``
after each finite chunk (return a string to stop the run), ``on_end(run, result)`` once at the
end. ``run`` is the :class:`RunContext` (config, members, run directory, updates done, the
metrics table so far), ``chunk`` a :class:`Chunk` (its metrics on the host, the state after it)
and ``result`` the :class:`RunResult` that :func:`jaxpg.run` returns.

Built in: :class:`ProgressBar` (tqdm), :class:`Checkpoints` (one orbax ``CheckpointManager``
for the run), :class:`MetricsFile` (``metrics.csv``) and :class:`LoggerCallback` (W&B,
TensorBoard, through :mod:`jaxpg.logging_backends`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxpg import metrics as metrics_lib
from jaxpg import runs
from jaxpg.members import Members

__all__ = [
    "STATUSES",
    "Callback",
    "Checkpoints",
    "Chunk",
    "LoggerCallback",
    "MetricsFile",
    "ProgressBar",
    "RunContext",
    "RunResult",
]

METRICS_WRITE_INTERVAL_S = 30.0

# How a run ended (RunResult.status). "stopped": stop_after reached, or a callback stopped it.
STATUSES = ("complete", "stopped", "nonfinite", "interrupted", "checkpoint_failed")


# -- what the callbacks see --------------------------------------------------------------------


@dataclasses.dataclass
class RunContext:
    """The run, as the callbacks see it (read it; do not change it).

    ``start`` and ``end`` are the updates the run trains from and to in this call; ``done`` is
    the number of updates done so far (the last good chunk's end). ``table`` is the metrics
    table so far (a list of per-chunk tables; :meth:`metrics_table` joins them).
    """

    config: Any
    members: Members
    run_dir: Path | None
    start: int
    end: int
    chunk_updates: int
    is_main: bool
    done: int = 0
    tables: list = dataclasses.field(default_factory=list)
    t_start: float = 0.0

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    @property
    def num_updates(self) -> int:
        return self.config.num_updates

    def metrics_table(self) -> dict[str, np.ndarray]:
        return metrics_lib.concat_tables(self.tables)


class Chunk(NamedTuple):
    """One finished, finite chunk: updates ``first_update + 1 .. first_update + length``.

    ``metrics`` are the trainer's metrics on the host, ``[M, length]`` each; ``state`` is the
    (device) train state of every member after the chunk; ``sps`` the run's env steps per
    second over this chunk.
    """

    first_update: int
    length: int
    metrics: dict[str, np.ndarray]
    state: Any
    sps: float


class RunResult(NamedTuple):
    """What :func:`run` returns.

    ``state`` is every member's train state (leading axis ``[M]``) at ``updates_done``, the
    last good update: after a non-finite update it is the state before that chunk. ``status``
    is one of :data:`STATUSES` and ``message`` says why a run did not complete. ``summary`` is
    ``summary.json``'s content and ``table`` the metrics table (one row per member and update).
    """

    state: Any
    status: str
    message: str | None
    updates_done: int
    summary: dict[str, Any]
    table: dict[str, np.ndarray]
    members: Members
    run_dir: Path | None


class Callback:
    """Hooks of the run loop; subclass it and override what you need.

    ``on_chunk`` may return a string to stop the run after this chunk (it becomes the result's
    ``message``, with status ``"stopped"``).
    """

    def on_start(self, run: RunContext) -> None:
        """After compiling, before the first chunk."""

    def on_chunk(self, run: RunContext, chunk: Chunk) -> str | None:
        """After each finite chunk, with ``run.done`` already counting it."""
        return None

    def on_end(self, run: RunContext, result: RunResult) -> None:
        """Once, at the end (also after a non-finite stop or an interrupt)."""

    def close(self) -> None:
        """Releases what the callback holds (files, a progress bar, a logger). The run loop
        calls it last, also when the run ends with an exception; it may be called twice."""


# -- built-in callbacks ------------------------------------------------------------------------


class ProgressBar(Callback):
    """A tqdm bar over env steps (per member), with the recent return and env steps/s."""

    def __init__(self) -> None:
        self.bar = None

    def on_start(self, run: RunContext) -> None:
        if not run.is_main:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=run.end * run.batch_size,
            initial=run.start * run.batch_size,
            unit="step",
            unit_scale=True,
            dynamic_ncols=True,
            mininterval=1.0,
            desc="train",
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
            "env steps [{elapsed}<{remaining}{postfix}]",
        )

    def on_chunk(self, run: RunContext, chunk: Chunk) -> None:
        if self.bar is None:
            return
        returns = np.asarray(chunk.metrics["episode_return"])[:, -max(1, chunk.length // 4) :]
        recent = _nanmean(returns)
        text = f"{recent:.1f}" if math.isfinite(recent) else "n/a"
        self.bar.set_postfix_str(f"return={text}, {chunk.sps:,.0f} steps/s", refresh=False)
        self.bar.update(chunk.length * run.batch_size)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MetricsFile(Callback):
    """Writes ``run_dir/metrics.csv`` every ``interval_s`` seconds and at the end."""

    def __init__(self, interval_s: float = METRICS_WRITE_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last = 0.0

    def on_start(self, run: RunContext) -> None:
        self._last = time.perf_counter()

    def on_chunk(self, run: RunContext, chunk: Chunk) -> None:
        if time.perf_counter() - self._last > self.interval_s:
            self.write(run)

    def on_end(self, run: RunContext, result: RunResult) -> None:
        self.write(run)

    def write(self, run: RunContext) -> None:
        if run.is_main and run.run_dir is not None:
            path = run.run_dir / runs.METRICS_FILE
            metrics_lib.write_metrics_csv(path, run.metrics_table())
        self._last = time.perf_counter()


class Checkpoints(Callback):
    """Checkpoints in ``run_dir/checkpoints``: at the first chunk end at or after each multiple
    of ``every`` updates (0: only at the end), and at the end of the run (also after an
    interrupt; not after a non-finite stop, whose last good checkpoint stays the latest).
    One orbax ``CheckpointManager`` (:class:`jaxpg.checkpoint.Checkpointer`) serves the run;
    the newest ``keep`` checkpoints are kept. ``metrics_file`` (if given) is written with each
    checkpoint, so a resumed run's table has every row up to its checkpoint."""

    def __init__(self, every: int = 0, keep: int = 3, metrics_file: MetricsFile | None = None):
        if not isinstance(every, int) or every < 0:
            raise ValueError(
                f"checkpoint_every={every!r} is invalid: 0 (only at the end) or a positive integer"
            )
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep_checkpoints={keep!r} is invalid: a positive integer")
        self.every, self.keep, self.metrics_file = every, keep, metrics_file
        self.last_saved: int | None = None
        self.failed: str | None = None  # why a checkpoint failed, if one did
        self._checkpointer = None  # process 0's (a state every process holds whole)
        self._sharded = None  # every process's (members spread over the processes)

    def on_start(self, run: RunContext) -> None:
        from jaxpg.checkpoint import Checkpointer, checkpoint_steps
        from jaxpg.processes import int_from_process_0

        # Process 0's view, in every process: save() skips a step already saved before its
        # collective, so all processes must agree on it even where their disks differ.
        steps = checkpoint_steps(run.run_dir / runs.CHECKPOINT_DIR)
        last = int_from_process_0((steps[-1] if steps else -1) + 1) - 1
        self.last_saved = last if last >= 0 else None
        if not run.is_main:
            return
        self._checkpointer = Checkpointer(
            run.run_dir / runs.CHECKPOINT_DIR,
            run.config,
            keep=self.keep,
            metadata=run.members.to_dict(),
            multiprocessing_options=_primary_only(),
        )

    def on_chunk(self, run: RunContext, chunk: Chunk) -> str | None:
        done = chunk.first_update + chunk.length
        if self.every and done // self.every > chunk.first_update // self.every:
            try:
                self.save(run, chunk.state, done)
            except Exception as e:  # noqa: BLE001 - stop the run (status checkpoint_failed)
                self.failed = f"checkpoint at update {done} failed: {e}"
                return self.failed
        return None

    def save(self, run: RunContext, state: Any, step: int) -> None:
        """Saves ``state`` as checkpoint ``step`` (and the metrics file with it). With members
        spread over processes, every process must call it: orbax's save is then collective,
        each process writing the members it holds (no gather: a process's host memory grows by
        its own members' state, not everyone's; ``benchmarks/checkpoint_cost.py``)."""
        if step == self.last_saved:
            return
        from jaxpg.checkpoint import Checkpointer, key_impl_of

        key_impl, checkpointer = None, self._checkpointer
        if _across_processes(state):  # every process writes the members it holds, together
            if self._sharded is None:
                self._sharded = Checkpointer(
                    run.run_dir / runs.CHECKPOINT_DIR,
                    run.config,
                    keep=self.keep,
                    metadata=run.members.to_dict(),
                )
            key_impl, checkpointer = key_impl_of(state), self._sharded
        elif _spread(state) or _many_processes():
            from jaxpg.sharding import to_host

            # Members on several devices of this process, or the same state in every process
            # (not spread): read to the host, written by process 0. The keys are then raw data,
            # so the implementation is read from the device state.
            key_impl = key_impl_of(state)
            state = to_host(state)
        if checkpointer is not None:
            checkpointer.save(state, step=step, key_impl=key_impl)
            if run.is_main and self.metrics_file is not None:
                self.metrics_file.write(run)
        self.last_saved = step

    def path(self, run: RunContext) -> Path | None:
        if self.last_saved is None:
            return None
        return (run.run_dir / runs.CHECKPOINT_DIR).absolute() / str(self.last_saved)

    def close(self) -> None:
        for checkpointer in (self._checkpointer, self._sharded):
            if checkpointer is not None:
                checkpointer.close()
        self._checkpointer = self._sharded = None


class LoggerCallback(Callback):
    """Sends every update's metrics (mean over each setting's seeds) to a logger of
    :mod:`jaxpg.logging_backends` (``log(row, step)``, ``close()``), at step = env steps.

    ``logger`` is the logger, or a function ``run -> logger`` called in ``on_start`` (in
    process 0 only), once the run directory and its config exist.
    """

    def __init__(self, logger: Any) -> None:
        self._make = logger if callable(logger) and not hasattr(logger, "log") else None
        self.logger = None if self._make is not None else logger

    def on_start(self, run: RunContext) -> None:
        if self._make is not None and run.is_main:
            self.logger = self._make(run)

    def on_chunk(self, run: RunContext, chunk: Chunk) -> None:
        if self.logger is None:
            return
        names = [k for k in chunk.metrics if k != "env_steps"]
        groups = [
            (f"setting_{k}/" if run.members.settings else "", rows)
            for k, rows in run.members.setting_slices()
        ]
        for j in range(chunk.length):
            row = {}
            for prefix, rows in groups:
                for name in names:
                    values = np.asarray(chunk.metrics[name], np.float64)[rows, j]
                    row[prefix + name] = _nanmean(values)
            self.logger.log(row, step=(chunk.first_update + j + 1) * run.batch_size)

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
            self.logger = None


# -- pieces ------------------------------------------------------------------------------------


def _nanmean(x: Any) -> float:
    x = np.asarray(x, np.float64)
    finite = np.isfinite(x)
    return float(x[finite].mean()) if finite.any() else float("nan")


def _spread(state: Any) -> bool:
    import jax

    leaf = jax.tree.leaves(state)[0]
    return isinstance(leaf, jax.Array) and len(leaf.sharding.device_set) > 1


def _across_processes(state: Any) -> bool:
    """Whether ``state``'s members live on other processes' devices too (a spread run)."""
    import jax

    leaf = jax.tree.leaves(state)[0]
    return isinstance(leaf, jax.Array) and not leaf.is_fully_addressable


def _many_processes() -> bool:
    import jax

    return jax.process_count() > 1


def _primary_only() -> Any:
    import jax

    if jax.process_count() == 1:
        return None
    from orbax.checkpoint.options import MultiprocessingOptions

    return MultiprocessingOptions(primary_host=0, active_processes={0})
