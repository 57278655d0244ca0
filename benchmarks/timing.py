"""Compile and timing helpers: the one timing protocol every script follows.

* compile time = ``jax.jit(fn).lower(*args).compile()``, timed with ``time.perf_counter``;
* the first call of the compiled program is timed and recorded, but it is not the steady state;
* steady state = a later call of the same compiled program, timed up to ``block_until_ready``.
  Nothing is subtracted: the figure is the wall time of the whole program.

Standard library only at the top (jax is imported inside the functions that need it), so the
peer drivers use it from their own venvs.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any


def block(tree):
    import jax

    return jax.block_until_ready(tree)


def compile_program(fn: Callable, *args, donate_argnums=()) -> tuple[Any, float]:
    """``(compiled, seconds)``: ``jax.jit(fn).lower(*args).compile()``, timed."""
    import jax

    start = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=donate_argnums).lower(*args).compile()
    return compiled, time.perf_counter() - start


def time_call(compiled: Callable, *args, cpu: list | None = None) -> tuple[Any, float]:
    """``(output, seconds)`` of one call, up to ``block_until_ready``. If ``cpu`` is a list, the
    call's process CPU seconds (all threads) are appended to it."""
    cpu_start = time.process_time()
    start = time.perf_counter()
    out = block(compiled(*args))
    seconds = time.perf_counter() - start
    if cpu is not None:
        cpu.append(time.process_time() - cpu_start)
    return out, seconds


def time_program(
    fn: Callable, *args, repeats: int = 1, args_for_call: Callable | None = None
) -> dict:
    """Compile ``fn`` for ``args``, call it once (recorded as ``first_call_s``), then time
    ``repeats`` more calls. ``steady_s`` is their median; every call is in ``steady_all_s``.

    ``args_for_call(i)`` may give fresh arguments for call ``i`` (0 is the first call); by
    default every call gets ``args``. Also records the compiled program's memory analysis.
    """
    compiled, compile_s = compile_program(fn, *args)
    get = args_for_call or (lambda i: args)
    out, first = time_call(compiled, *get(0))
    steady, cpu = [], []
    for i in range(max(repeats, 1)):
        out, seconds = time_call(compiled, *get(i + 1), cpu=cpu)
        steady.append(seconds)
    return {
        "compile_s": compile_s,
        "first_call_s": first,
        "steady_s": statistics.median(steady),
        "steady_all_s": steady,
        "steady_cpu_s": statistics.median(cpu),  # less sensitive than wall time to other load
        "cores_used": cores_used(cpu, steady),
        "memory": memory_stats(compiled),
        "output": out,
    }


def cores_used(cpu_s: Sequence[float], wall_s: Sequence[float]) -> float | None:
    """Process CPU seconds over wall seconds of the steady calls: how many cores the program
    kept busy (about 1.0 means single-threaded)."""
    wall = sum(wall_s)
    return sum(cpu_s) / wall if wall > 0 and cpu_s else None


def seed_schedule(seeds: int) -> list[int]:
    """Which seed each call trains: call 0 is the first call (after compile); the later calls
    are the steady state. With one seed, seed 0 runs twice so a steady call exists."""
    return [0, 0] if seeds == 1 else list(range(seeds))


def steady_record(times: Sequence[float], cpu: Sequence[float], env_steps: int) -> dict[str, Any]:
    """The timing fields every peer driver reports: ``times``/``cpu`` are the calls in order,
    the first (which may include warm-up) recorded apart, the median of the rest as the steady
    state (with one call only, that call)."""
    steady = list(times[1:]) or list(times[:1])
    steady_cpu = list(cpu[1:]) or list(cpu[:1])
    median = float(statistics.median(steady))
    return {
        "first_call_s": times[0],
        "steady_s": median,
        "steady_all_s": steady,
        "steady_cpu_s": float(statistics.median(steady_cpu)),
        "cores_used": cores_used(steady_cpu, steady),
        "env_steps": env_steps,
        "steps_per_s": env_steps / median,
    }


def memory_stats(compiled) -> dict[str, int] | None:
    """XLA's own account of a compiled program's buffers (bytes), where the backend gives one."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        return None
    if stats is None:
        return None
    fields = (
        "argument_size_in_bytes",
        "output_size_in_bytes",
        "temp_size_in_bytes",
        "alias_size_in_bytes",
        "generated_code_size_in_bytes",
    )
    return {f: int(getattr(stats, f)) for f in fields if hasattr(stats, f)}


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (MiB)."""
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)
