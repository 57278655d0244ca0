"""The run loop: train a config's members in compiled chunks, with callbacks, from Python.

    import jaxpg

    result = jaxpg.run(jaxpg.PPOConfig(), seeds=4, run_dir="runs/ppo", checkpoint_every=50)
    result.summary["final_return_mean"]            # the mean over the last 10% of updates
    result = jaxpg.resume("runs/ppo")              # continues from the latest checkpoint

:func:`run` trains every member (sweep setting x seed, :class:`jaxpg.members.Members`) in one
program, ``make_train_chunk(config, n)`` vmapped over the members and compiled once, in a host
loop of chunks of ``n`` updates. Between chunks the loop appends the chunk's metrics to the
run's table (:mod:`jaxpg.metrics`), stops on a non-finite update, and calls the callbacks
(:mod:`jaxpg.callbacks`): progress (``ProgressBar``, tqdm), checkpoints (``Checkpoints``, one
orbax ``CheckpointManager`` for the run), the metrics file (``MetricsFile``), loggers
(``LoggerCallback``: W&B, TensorBoard) and your own (``Callback``). The next chunk is
dispatched before the host reads the previous chunk's metrics, so the device never waits for
the bookkeeping. ``n`` divides the number of updates (so no second program is compiled) and is
chosen so that a chunk takes about a second (:func:`choose_chunk`; on CPU, chunks of ~0.05 s
cost ~8% speed, chunks of 0.25 s and more nothing measurable).

With ``run_dir`` the run leaves a run directory (:mod:`jaxpg.runs`): ``config.json``,
``metrics.csv``, ``summary.json``, plots and ``checkpoints/``; :func:`resume` continues it, and a
resumed run gives bit-identical parameters to an uninterrupted one. ``spread=True`` spreads the
members over every device of every process (:func:`jaxpg.distributed.spread_members`, after
:func:`jaxpg.distributed.initialize_distributed`); process 0 writes the files. The processes
of such a job decide together: every chunk ends in one agreement, so a stop, a Ctrl-C or an
exception in any process stops them all at the same chunk (the exception's message in every
process), and a failure anywhere else stops them within about a second
(:func:`jaxpg.processes.fail_together`). :func:`resume` checks that every process sees the run
directory and restores the checkpoint process 0 names.

The ``jaxpg train`` command is a thin layer over this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxpg import metrics as metrics_lib
from jaxpg import runs
from jaxpg import sweep as sweep_lib
from jaxpg.agents import AgentLike, agent_spec, as_agent
from jaxpg.callbacks import (
    Callback,
    Checkpoints,
    Chunk,
    LoggerCallback,
    MetricsFile,
    ProgressBar,
    RunContext,
    RunResult,
)
from jaxpg.checkpoint import CheckpointError, checkpoint_steps, local_path, restore_checkpoint
from jaxpg.files import atomic_write_json
from jaxpg.members import Members
from jaxpg.plotting import plot_run_table
from jaxpg.processes import (
    ProcessFailed,
    describe_error,
    fail_together,
    gather_messages,
    int_from_process_0,
    mark_shared,
)
from jaxpg.sharding import member_sharding, spread_members, to_host
from jaxpg.train import init_state, make_train_chunk

__all__ = [
    "Callback",
    "Checkpoints",
    "Chunk",
    "LoggerCallback",
    "MetricsFile",
    "ProgressBar",
    "RunContext",
    "RunArgumentError",
    "RunOptions",
    "RunResult",
    "choose_chunk",
    "resume",
    "run",
]

TARGET_CHUNK_S = 1.0  # aim for a progress update about every second


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How :func:`run` and :func:`resume` run: one value, checked when built.

    Attributes:
      callbacks: your own :class:`Callback` objects, called after the built-in ones.
      progress: show a tqdm progress bar.
      checkpoint_every: with a run directory, checkpoint at the first chunk end at or after
        each multiple of this many updates (0: only at the end).
      keep_checkpoints: keep the newest this many checkpoints.
      chunk_updates: updates per compiled chunk (default: :func:`choose_chunk`, ~1 s each).
      stop_after: stop once this many updates are done (with a checkpoint); resume later.
      plot: with a run directory, write the learning-curve PNGs at the end.
      spread: spread the members over every device of every process (``len(members)`` must
        divide by the device count); after :func:`jaxpg.distributed.initialize_distributed`,
        every process calls :func:`run` alike and process 0 writes the files.
      verbose: print what the run does (compile time, final return) to stdout.
    """

    callbacks: Sequence[Callback] = ()
    progress: bool = True
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    chunk_updates: int | None = None
    stop_after: int | None = None
    plot: bool = True
    spread: bool = False
    verbose: bool = True

    def __post_init__(self):
        for name in ("chunk_updates", "stop_after"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise RunArgumentError(f"{name}={value!r} is invalid: a positive integer or None")
        try:
            Checkpoints(self.checkpoint_every, self.keep_checkpoints)
        except ValueError as e:
            raise RunArgumentError(str(e)) from None
        object.__setattr__(self, "callbacks", tuple(self.callbacks))


def _options(options: RunOptions | None, kwargs: Mapping[str, Any]) -> RunOptions:
    if options is not None and kwargs:
        raise RunArgumentError(f"give options= or the keywords {sorted(kwargs)}, not both")
    if options is not None:
        return options
    try:
        return RunOptions(**kwargs)
    except TypeError:
        names = [f.name for f in dataclasses.fields(RunOptions)]
        unknown = sorted(set(kwargs) - set(names))
        raise RunArgumentError(
            f"unknown run option(s) {unknown}; the options are {names}"
        ) from None


# -- the loop ----------------------------------------------------------------------------------


def _together(fn: Callable) -> Callable:
    """Runs ``fn`` under :func:`jaxpg.processes.fail_together`: an exception in one process of
    a multi-process job stops them all, with its message."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with fail_together():
            return fn(*args, **kwargs)

    return wrapper


@_together
def run(
    config: Any,
    *,
    seeds: int | Sequence[int] = 1,
    sweep: Mapping[str, Sequence[float]] | Sequence[Mapping[str, float]] | None = None,
    run_dir: str | Path | None = None,
    agent: AgentLike | None = None,
    run_info: Mapping[str, Any] | None = None,
    options: RunOptions | None = None,
    **option_kwargs: Any,
) -> RunResult:
    """Trains ``config`` for every (setting, seed) member; returns a :class:`RunResult`.

    Args:
      config: a config of any registered algorithm (jaxpg's or your own).
      seeds: the number of seeds (0, 1, ...) or the seeds themselves.
      sweep: traced hyperparameters to sweep: ``{"lr": [1e-4, 3e-4]}`` (the grid of all
        values, :func:`jaxpg.sweep.grid`) or a list of settings ``[{"lr": 1e-4}, ...]``.
      run_dir: where to write the run directory (config, metrics, summary, plots,
        checkpoints); ``None`` writes nothing (and cannot be resumed). It must not hold a
        run already: :func:`resume` continues one.
      agent: a policy of your own (anything :func:`jaxpg.make_train` takes). One with an
        import path (a module-level flax module class, an instance of one with plain fields,
        a function ``config -> agent``) is recorded in the config as ``network="module:attr"``
        (and ``network_kwargs``), so :func:`resume` and ``jaxpg eval`` rebuild it; any other
        must be given to :func:`resume` again.
      run_info: extra facts for ``config.json``'s ``"run"`` record (the CLI's command line).
      options: a :class:`RunOptions`, or its fields as keywords (``progress=False,
        checkpoint_every=50, stop_after=100, chunk_updates=10, callbacks=[...], plot=False,
        spread=False, verbose=True, keep_checkpoints=3``).
      **option_kwargs: the fields of :class:`RunOptions`.
    """
    options = _options(options, option_kwargs)
    try:
        members = Members.of(seeds, sweep_settings(config, sweep))
    except ValueError as e:
        raise RunArgumentError(str(e)) from None
    config, agent, recorded = _record_agent(config, agent)
    if run_dir is not None:
        run_dir = _run_dir(run_dir)
        if int_from_process_0((run_dir / runs.CONFIG_FILE).exists()):  # all decide alike
            raise mark_shared(RunArgumentError(
                f"run_dir={str(run_dir)!r} already holds a run; continue it with "
                f"jaxpg.resume (jaxpg train --resume {run_dir}), or give another run_dir"
            ))  # fmt: skip
    info = {"env": config.env if isinstance(config.env, str) else None, **members.to_dict()}
    if not recorded:
        info["agent"] = runs.UNRECORDED_AGENT
    info.update(run_info or {})
    return _train(config, members, agent, run_dir, None, 0, info, options)


def _record_agent(config: Any, agent: AgentLike | None) -> tuple[Any, AgentLike | None, bool]:
    """``(config, agent, recorded)``: an ``agent`` with an import path moves into the config
    (``network``, ``network_kwargs``), so the run directory names it."""
    if agent is None:
        return config, None, True
    spec = agent_spec(agent)
    if spec is None:
        return config, agent, False
    try:
        return config.replace(**spec), None, True
    except ValueError as e:
        raise RunArgumentError(f"agent: {e}") from None


@_together
def resume(
    run_dir: str | Path,
    *,
    total_timesteps: int | None = None,
    step: int | None = None,
    agent: AgentLike | None = None,
    options: RunOptions | None = None,
    **option_kwargs: Any,
) -> RunResult:
    """Continues the run in ``run_dir`` from its latest checkpoint (or ``step``).

    The config, seeds and sweep settings come from the run directory (which imports the
    modules it names: a config class of your own, a policy given as ``"module:attr"``, the
    CLI's ``--import``); ``total_timesteps`` may extend the run. The result equals an
    uninterrupted run's, bit for bit (the chunk program is the same function of the restored
    state). Raises ``ValueError`` for a directory that is not a run (or whose modules cannot
    be imported), :class:`RunArgumentError` for one that cannot be resumed as asked, and
    :class:`jaxpg.checkpoint.CheckpointError` for a missing, unreadable or incompatible
    checkpoint, all before anything is written.

    Args:
      run_dir: the run directory.
      total_timesteps: a new budget (to extend the run).
      step: the checkpoint to resume from (default: the latest).
      agent: the policy, for a run whose policy was given as an object without an import path
        (``config.json`` says so); otherwise the run's own.
      options: a :class:`RunOptions`, or its fields as keywords.
      **option_kwargs: the fields of :class:`RunOptions`.
    """
    options = _options(options, option_kwargs)
    run_dir = _run_dir(run_dir)
    step = _visible_everywhere(run_dir, step)
    config, info = runs.read_config(run_dir)
    if info.get("agent") == runs.UNRECORDED_AGENT and agent is None:
        raise RunArgumentError(
            f"{run_dir}'s policy was {runs.UNRECORDED_AGENT}: pass it again, resume(..., agent=...)"
        )
    if total_timesteps is not None:
        try:
            config = config.replace(total_timesteps=total_timesteps)
        except ValueError as e:
            raise RunArgumentError(str(e)) from None
    members = Members.from_dict(info)
    ckpt_dir = run_dir / runs.CHECKPOINT_DIR
    _check_spread(options.spread, members)
    # Spread: each process reads only the members its devices train.
    where = member_sharding() if options.spread else None
    state, meta = restore_checkpoint(ckpt_dir, config, step=step, agent=agent, sharding=where)
    if tuple(meta.get("batch_shape", ())) != (len(members),):
        raise CheckpointError(
            f"{ckpt_dir}: the checkpoint holds {meta.get('batch_shape')} members, the run's "
            f"config.json {len(members)}"
        )
    start = int(meta["step"])
    later = [s for s in checkpoint_steps(ckpt_dir) if s > start]
    if later:
        raise RunArgumentError(
            f"the checkpoint at update {start}: {run_dir} has later checkpoints {later} that "
            "resuming from it would overwrite; move them away first"
        )
    info = dict(info)
    info["resumes"] = [
        *info.get("resumes", []),
        {"from_update": start, "time": time.strftime("%Y-%m-%dT%H:%M:%S")},
    ]
    if options.verbose:
        _say(
            f"resuming {run_dir} from update {start} of {config.num_updates} "
            f"({start * config.batch_size:,} env steps)"
        )
    return _train(config, members, agent, run_dir, state, start, info, options)


class RunArgumentError(ValueError):
    """A bad argument to :func:`run` or :func:`resume`, found before anything is compiled or
    written (the CLI turns it into a usage error, exit status 2)."""


def _run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` as given, if it is local; an object-store URL is a :class:`RunArgumentError`
    (:func:`jaxpg.checkpoint.local_path`)."""
    try:
        local_path(run_dir, "run_dir")
    except ValueError as e:
        raise RunArgumentError(str(e)) from None
    return Path(run_dir)


def _train(
    config: Any,
    members: Members,
    agent: AgentLike | None,
    run_dir: Path | None,
    state: Any,
    start: int,
    info: Mapping[str, Any],
    options: RunOptions,
) -> RunResult:
    """The run: check, build the callbacks, compile, loop over the chunks, finish."""
    say = _say if options.verbose else (lambda *a, **k: None)
    _check_spread(options.spread, members)
    end = config.num_updates if options.stop_after is None else min(config.num_updates, options.stop_after)  # fmt: skip
    remaining = max(0, end - start)
    checkpoints, everyone = _callbacks(run_dir, options)
    tables = _previous_rows(run_dir, start)
    ctx = RunContext(config, members, run_dir, start, end, 0, jax.process_index() == 0, start, tables)  # fmt: skip
    if remaining == 0:
        return _nothing_to_train(ctx, state, checkpoints, options, say)

    t0 = time.perf_counter()
    if state is None:
        keys, hparams = members.inputs(config)
        init = _program(_init_fn(config, agent), options.spread)
        state = init.lower(keys, hparams).compile()(keys, hparams)
    plan = _plan(ctx, remaining, options)
    say(_describe(ctx, remaining))
    if run_dir is not None and options.spread and start == 0:
        _shared_everywhere(run_dir)  # every process will write its members' checkpoints
    if run_dir is not None and ctx.is_main:
        runs.write_config(run_dir, config, info)
    programs = {
        length: _program(_chunk_fn(config, length, agent), options.spread).lower(state).compile()
        for length in set(plan)
    }
    compile_time = time.perf_counter() - t0
    if len(set(plan)) > 1:
        say(
            f"note: chunks of {plan[0]} do not divide {remaining} updates; the last chunk of "
            f"{plan[-1]} updates needed a second program (a chunk_updates that divides it "
            "avoids that)"
        )
    say(f"compiled in {compile_time:.1f} s")

    try:
        for cb in everyone:
            cb.on_start(ctx)
        ctx.t_start = time.perf_counter()
        try:
            with _chunk_end_interrupts() as interrupts:
                state, status, message = _loop(ctx, state, programs, plan, everyone, checkpoints,
                                               options, interrupts)  # fmt: skip
        except KeyboardInterrupt:
            status, message = "interrupted", f"interrupted at update {ctx.done}"
        train_time = time.perf_counter() - ctx.t_start
        result = _finish(ctx, state, status, message, checkpoints, everyone, options,
                         train_time, compile_time)  # fmt: skip
    finally:
        for cb in everyone:
            cb.close()
    trained = (ctx.done - start) * config.batch_size * len(members)
    say(
        f"trained {trained:,} env steps in {train_time:.1f} s "
        f"({result.summary['env_steps_per_s']:,.0f} steps/s); compiled in {compile_time:.1f} s"
    )
    return result


def _check_spread(spread: bool, members: Members) -> None:
    if spread and len(members) % jax.device_count():
        raise RunArgumentError(
            f"spread: {len(members)} members ({members.num_settings} settings x "
            f"{members.num_seeds} seeds) must be divisible by the device count "
            f"{jax.device_count()}, so that every device trains whole members"
        )


def _callbacks(run_dir: Path | None, options: RunOptions) -> tuple[Checkpoints | None, list]:
    """The built-in callbacks (progress; with a run directory, checkpoints and the metrics
    file), then the user's."""
    builtins: list[Callback] = [ProgressBar()] if options.progress else []
    checkpoints = None
    if run_dir is not None:
        metrics_file = MetricsFile()
        checkpoints = Checkpoints(options.checkpoint_every, options.keep_checkpoints, metrics_file)
        builtins += [checkpoints, metrics_file]
    return checkpoints, [*builtins, *options.callbacks]


def _previous_rows(run_dir: Path | None, start: int) -> list[dict]:
    """A resumed run's metrics rows up to its checkpoint."""
    if not start or run_dir is None or not (run_dir / runs.METRICS_FILE).exists():
        return []
    previous = metrics_lib.read_metrics_csv(run_dir / runs.METRICS_FILE)
    if not metrics_lib.table_len(previous):
        return []
    return [metrics_lib.select_rows(previous, previous["update"] <= start)]


def _nothing_to_train(ctx, state, checkpoints, options, say) -> RunResult:
    num_updates = ctx.num_updates
    stopped = options.stop_after is not None and ctx.start < num_updates
    say(f"nothing to train: the run is at update {ctx.start} of {num_updates}"
        + (" (stop_after)" if stopped else ""))  # fmt: skip
    status = "complete" if ctx.start >= num_updates else "stopped"
    summary = _summary(ctx, status, None, {}, 0.0, 0.0, checkpoints)
    return RunResult(state, status, None, ctx.start, summary, ctx.metrics_table(), ctx.members,
                     ctx.run_dir)  # fmt: skip


def _plan(ctx: RunContext, remaining: int, options: RunOptions) -> list[int]:
    """The chunk lengths: ``n`` (about a second each, dividing ``remaining``), and a shorter
    last one when ``n`` does not divide it."""
    if options.chunk_updates is None:
        members = len(ctx.members)
        per_update = estimate_update_seconds(ctx.config, members, jax.default_backend())
        n = choose_chunk(remaining, round(TARGET_CHUNK_S / per_update))
    else:
        n = options.chunk_updates
    ctx.chunk_updates = n
    num_full, rest = divmod(remaining, n)
    return [n] * num_full + ([rest] if rest else [])


def _describe(ctx: RunContext, remaining: int) -> str:
    members = ctx.members
    what = (
        f"{members.num_settings} settings x {members.num_seeds} seeds"
        if members.settings
        else f"{members.num_seeds} seed{'s' if members.num_seeds > 1 else ''}"
    )
    where = f" -> {ctx.run_dir}" if ctx.run_dir is not None else ""
    config = ctx.config
    return (
        f"{config.env_spec.name} {config.algorithm}: {remaining} updates x "
        f"{config.batch_size} env steps, {what}, chunks of {ctx.chunk_updates} updates{where}"
    )


def _loop(ctx, state, programs, plan, everyone, checkpoints, options, interrupts):
    """Runs the chunks; returns ``(last good state, status, message)``. The next chunk is
    dispatched before the host reads the previous one's metrics. With many processes, every
    chunk ends in one agreement (:func:`_agree`): a stop, an interrupt or an exception in any
    process stops them all at the same chunk."""
    read = _reader(options.spread)
    members, batch = ctx.members, ctx.batch_size
    t_prev = ctx.t_start
    pending = programs[plan[0]](state)
    for i, length in enumerate(plan):
        reasons, error = [], None
        try:
            state_next, chunk_metrics, finite = pending
            # Queue the next chunk before reading this one's metrics: the device keeps
            # busy while the host does the bookkeeping below.
            pending = programs[plan[i + 1]](state_next) if i + 1 < len(plan) else None
            chunk_metrics, finite = read(chunk_metrics), np.asarray(read(finite))
            now = time.perf_counter()
            sps = len(members) * length * batch / max(now - t_prev, 1e-9)
            t_prev = now
            rows = metrics_lib.metrics_rows(
                chunk_metrics, first_update=ctx.done, members=members, sps=sps,
                time=now - ctx.t_start, batch_size=batch,
            )  # fmt: skip
            ctx.tables.append(rows)
            # The metrics are the same in every process (one global program): all stop here.
            bad = np.asarray(chunk_metrics["nonfinite"], bool)
            if bad.any() or not finite.all():
                last = checkpoints.path(ctx) if checkpoints else None
                return state, "nonfinite", _nonfinite_message(bad, finite, ctx.done, members, last)
            chunk = Chunk(ctx.done, length, chunk_metrics, state_next, sps)
            state, ctx.done = state_next, ctx.done + length
            reasons = [r for r in (cb.on_chunk(ctx, chunk) for cb in everyone) if r]
        except Exception as e:  # noqa: BLE001 - every process learns of it in _agree
            error = e
        status, message = _agree(reasons, error, interrupts.is_set())
        if status == "stopped" and checkpoints is not None and checkpoints.failed:
            return state, "checkpoint_failed", checkpoints.failed
        if status == "interrupted":
            message = f"interrupted at update {ctx.done}"
        if status is not None:
            return state, status, message
    return state, "complete", None


def _agree(reasons: list[str], error: Exception | None, interrupted: bool) -> tuple[str | None, str | None]:  # fmt: skip
    """How every process goes on after a chunk: ``(None, None)`` (the next chunk),
    ``("stopped", reason)`` or ``("interrupted", message)``; an exception in any process is
    raised in all of them (the original in its own process, :class:`ProcessFailed` with its
    message in the others). With many processes this is one collective, so every process leaves
    the loop at the same chunk (a process that went on would hang in the next collective)."""
    mine = None
    if error is not None:
        mine = "E" + describe_error(error)
    elif interrupted:
        mine = "I"
    elif reasons:
        mine = "S" + reasons[0]
    everyone = gather_messages(mine)
    failed = [(k, m[1:]) for k, m in enumerate(everyone) if m and m[0] == "E"]
    if error is not None:
        raise mark_shared(error)
    if failed:
        k, what = failed[0]
        raise mark_shared(ProcessFailed(f"process {k} failed: {what}"))
    if any(m and m[0] == "I" for m in everyone):
        return "interrupted", None
    stops = [m[1:] for m in everyone if m and m[0] == "S"]
    if stops:
        return "stopped", reasons[0] if reasons else f"stopped by another process: {stops[0]}"
    return None, None


def _finish(ctx, state, status, message, checkpoints, everyone, options, train_time,
            compile_time) -> RunResult:  # fmt: skip
    """The final checkpoint, the summary, the callbacks' ``on_end``, the files and plots."""
    if status == "complete" and ctx.done < ctx.num_updates:
        status = "stopped"
    if checkpoints is not None and status not in ("nonfinite", "checkpoint_failed"):
        try:
            checkpoints.save(ctx, state, ctx.done)
        except Exception as e:  # noqa: BLE001 - report it, keep the metrics
            status, message = "checkpoint_failed", f"checkpoint failed: {e}"
    extra = {"chunk_updates": ctx.chunk_updates}
    summary = _summary(ctx, status, message, extra, train_time, compile_time, checkpoints)
    table = ctx.metrics_table()
    result = RunResult(state, status, message, ctx.done, summary, table, ctx.members, ctx.run_dir)
    for cb in everyone:
        cb.on_end(ctx, result)  # the metrics file first: plots may fail, rows must not
    if ctx.run_dir is not None and ctx.is_main:
        atomic_write_json(ctx.run_dir / runs.SUMMARY_FILE, summary)
        if options.plot and metrics_lib.table_len(table):
            plot_run_table(ctx.run_dir, table, ctx.config, ctx.members)
    return result


def _summary(
    ctx: RunContext,
    status: str,
    message: str | None,
    extra: Mapping[str, Any],
    train_time: float,
    compile_time: float,
    checkpoints: Checkpoints | None,
) -> dict[str, Any]:
    """``summary.json``: the final return (:func:`jaxpg.metrics.summarize`), how the run
    ended, its timings and the machine."""
    config, members = ctx.config, ctx.members
    trained = (ctx.done - ctx.start) * config.batch_size * len(members)
    last = checkpoints.path(ctx) if checkpoints is not None else None
    facts = {
        "status": status,
        "message": message,
        "algorithm": config.algorithm,
        "env": config.env_spec.name,
        "num_updates": config.num_updates,
        "updates_done": ctx.done,
        "env_steps_per_member": ctx.done * config.batch_size,
        "members": len(members),
        "wall_time_s": round(train_time + compile_time, 3),
        "train_time_s": round(train_time, 3),
        "compile_time_s": round(compile_time, 3),
        "env_steps_per_s": round(trained / max(train_time, 1e-9), 1),
        **extra,
        "last_checkpoint": str(last) if last is not None else None,
        **runs.environment_info(),
    }
    return metrics_lib.summarize(ctx.metrics_table(), settings=members.settings, extra=facts)


@contextlib.contextmanager
def _chunk_end_interrupts() -> Iterator[threading.Event]:
    """With many processes, Ctrl-C (SIGINT) in any of them sets the event instead of raising:
    the loop stops every process at the next chunk end, which all then checkpoint together (a
    ``KeyboardInterrupt`` in one process alone would leave the others in a collective). A second
    Ctrl-C raises as usual. With one process nothing changes: ``KeyboardInterrupt`` stops the
    run at once, with the last finished chunk's state."""
    event = threading.Event()
    if jax.process_count() == 1 or threading.current_thread() is not threading.main_thread():
        yield event
        return

    def handler(signum, frame):
        if event.is_set():
            raise KeyboardInterrupt
        event.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)


def _visible_everywhere(run_dir: Path, step: int | None) -> int | None:
    """With many processes: checks that every process sees ``run_dir``'s ``config.json`` and
    the checkpoint to resume from (``step``, or process 0's latest), refusing in one line in
    every process otherwise; returns that step, so every process restores the same one. With
    one process: ``step``, unchanged."""
    if jax.process_count() == 1:
        return step
    ckpt_dir = run_dir / runs.CHECKPOINT_DIR
    steps = checkpoint_steps(ckpt_dir)
    wanted = step if step is not None else (steps[-1] if steps else -1)
    chosen = int_from_process_0(wanted + 1) - 1  # process 0's (an int broadcast; -1: it sees none)
    chosen = chosen if chosen >= 0 else None
    missing = None
    if not (run_dir / runs.CONFIG_FILE).is_file():
        missing = str(run_dir / runs.CONFIG_FILE)
    elif chosen is not None and chosen not in steps:
        missing = f"checkpoint {chosen} in {ckpt_dir}"
    _refuse_the_blind("resume", gather_messages(missing))
    # Nobody sees it: resume's own checks say what is wrong, alike in every process.
    return chosen if chosen is not None else step


def _refuse_the_blind(what: str, views: list[str | None]) -> None:
    """Refuses in every process (one line) when some processes, not all, miss what they should
    see of the run directory (``views``: each process's missing path, or ``None``)."""
    blind = [f"process {k} does not see {m}" for k, m in enumerate(views) if m is not None]
    if blind and len(blind) < len(views):
        raise mark_shared(RunArgumentError(
            f"{what}: {'; '.join(blind)}; every process of a multi-process job must see the "
            "run directory and its checkpoints (a filesystem they share)"
        ))  # fmt: skip


def _shared_everywhere(run_dir: Path) -> None:
    """With many processes: checks, before anything of the run is written, that every process
    sees ``run_dir`` as process 0 does (a spread run's checkpoints are written by every
    process, each its own members). Process 0 writes a probe file that every other process
    looks for, then removes it; the run directory itself may stay, empty. With one process:
    nothing."""
    if jax.process_count() == 1:
        return
    token = int_from_process_0(int.from_bytes(os.urandom(6), "big"))
    probe = run_dir / f".jaxpg-shared-{token:012x}"
    if jax.process_index() == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe.touch()
    int_from_process_0(0)  # a barrier: the probe exists before anyone looks
    views = gather_messages(None if probe.exists() else str(run_dir))
    if jax.process_index() == 0:
        probe.unlink()
    _refuse_the_blind("run", views)


# -- pieces ------------------------------------------------------------------------------------


def estimate_update_seconds(config: Any, members: int, backend: str) -> float:
    """A rough guess of one update's time, to size the chunks before anything has run.

    Calibrated on a 2-core CPU (PPO CartPole defaults: about 3.6 ms per update); on an
    accelerator an update of a small batch is mostly launch latency. Only the progress bar's
    cadence depends on it; ``chunk_updates`` overrides it.
    """
    passes = 1 + getattr(config, "num_epochs", 1)  # the rollout, then the gradient epochs
    work = members * config.batch_size * passes
    if backend == "cpu":
        return 1.4e-6 * work
    return 2e-4 + 2e-10 * work


def choose_chunk(num_updates: int, target: int) -> int:
    """The chunk length: the divisor of ``num_updates`` closest (in ratio) to ``target``, so all
    chunks are one compiled program. When no divisor is within 4x of the target (a prime
    number of updates, say), ``target`` itself, and the shorter last chunk compiles a second
    program rather than leaving the progress bar still for a long run."""
    target = max(1, min(int(target), num_updates))
    divisors = set()
    for d in range(1, math.isqrt(num_updates) + 1):
        if num_updates % d == 0:
            divisors.update((d, num_updates // d))
    best = min(divisors, key=lambda d: (abs(math.log(d / target)), -d))
    if max(best / target, target / best) > 4 and num_updates > 4 * target:
        return target
    return best


def sweep_settings(config: Any, sweep: Any) -> list[dict] | None:
    """:func:`run`'s ``sweep`` argument as a list of settings, each checked against the config
    (a ``ValueError`` names a bad name or value)."""
    if not sweep:
        return None
    if isinstance(sweep, Mapping):
        _, settings = sweep_lib.grid(config, **{k: list(v) for k, v in sweep.items()})
    else:
        settings = [dict(s) for s in sweep]
        sweep_lib.stack_hparams(config, settings)  # checks the names
    names = {f.name for f in dataclasses.fields(config)}
    for setting in settings:  # each value must be one the config would accept
        config.replace(**{k: v for k, v in setting.items() if k in names})
    return settings


def _init_fn(config: Any, agent: AgentLike | None = None) -> Callable:
    return jax.vmap(functools.partial(init_state, config, agent=as_agent(agent, config)))


def _chunk_fn(config: Any, n: int, agent: AgentLike | None = None) -> Callable:
    """``state[M] -> (state, metrics[M, n], params_finite[M])``: ``n`` updates of every member."""
    chunk = make_train_chunk(config, n, agent=agent)

    def one(state):
        state, metrics = chunk(state)
        leaves = jax.tree.leaves(state.params)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
        return state, metrics, finite

    return jax.vmap(one)


def _program(fn: Callable, spread: bool) -> Any:
    if spread:
        return spread_members(fn)  # with jit's lower(...).compile()
    return jax.jit(fn)


def _reader(spread: bool) -> Callable:
    if spread:
        return to_host
    return jax.device_get


def _nonfinite_message(
    bad: np.ndarray, finite: np.ndarray, done: int, members: Members, last: Path | None
) -> str:
    """Names the first non-finite update and member, and the last good checkpoint."""
    if bad.any():
        rows, offsets = np.nonzero(bad)
        first = int(np.argmin(offsets))
        member, update = int(rows[first]), done + int(offsets[first]) + 1
        what = f"update {update} had a non-finite loss or gradient (the step was skipped)"
    else:
        member = int(np.argmin(finite))
        what = f"the parameters became non-finite in updates {done + 1}..{done + bad.shape[1]}"
    where = (
        f"last good checkpoint: {last} (update {last.name})"
        if last is not None
        else "no checkpoint was saved before it"
    )
    return (
        f"stopped: {what} ({members.describe(member)}); not training on NaNs. The result holds "
        f"update {done}, the last good one; {where}"
    )


def _say(*parts: Any, file: Any = None) -> None:
    """Prints what the run does; to stdout in process 0 alone (a multi-process run's other
    processes would repeat it), to another ``file`` (stderr) in every process."""
    if file is None and jax.process_index() != 0:
        return
    print(*parts, file=file or sys.stdout, flush=True)
