"""Shared pieces of the benchmark suite: the machine record, timing, tables, atomic output.

This module imports only the standard library at the top, so the peer drivers can use it from
their own virtual environments (the rejax venv has jax but not jaxpg; the Stable-Baselines3 venv
has neither). jax, jaxpg and matplotlib are imported inside the functions that need them.

Timing protocol (every script follows it):

* compile time = ``jax.jit(fn).lower(*args).compile()``, timed with ``time.perf_counter``;
* the first call of the compiled program is timed and recorded, but it is not the steady state;
* steady state = a later call of the same compiled program, timed up to ``block_until_ready``.
  Nothing is subtracted: the figure is the wall time of the whole program.

Every result file is written atomically (a temporary file in the same folder, then
``os.replace``), so an interrupted run never leaves a half-written JSON, table or plot.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.metadata as _md
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
QUICK_RESULTS_DIR = RESULTS_DIR / "tmp"  # gitignored: --quick runs land here by default
SCHEMA_VERSION = 1

DEFAULT_PACKAGES = ("jax", "jaxlib", "jaxpg", "flax", "optax", "gymnax", "numpy")


# -- the machine ------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:  # imported from a checkout, not installed
            spec = importlib.util.find_spec(name)
            out[name] = (
                None
                if spec is None
                else getattr(importlib.import_module(name), "__version__", None)
            )
    return out


def _git_commit() -> dict[str, Any] | None:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(dirty)}


def _nvidia_smi() -> list[str]:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def jax_info() -> dict[str, Any] | None:
    """Backend and devices, or None where jax is not installed (the SB3 venv)."""
    try:
        import jax
    except ImportError:
        return None
    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "devices": [f"{d.platform}:{getattr(d, 'device_kind', '?')}" for d in devices],
        "device_count": len(devices),
        "x64": bool(jax.config.jax_enable_x64),
    }


def machine_info(packages: Sequence[str] = DEFAULT_PACKAGES) -> dict[str, Any]:
    """What a reader needs to trust (or discount) a number: CPU, cores, GPU, backend, versions,
    the jaxpg commit, XLA flags and the load average when the run started."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    jinfo = jax_info()
    gpus = _nvidia_smi()
    if not gpus and jinfo and jinfo["backend"] == "gpu":
        gpus = [d for d in jinfo["devices"] if d.startswith(("gpu", "cuda", "rocm"))]
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "mem_total_gib": _mem_total_gib(),
        "gpu": gpus or None,
        "backend": jinfo["backend"] if jinfo else None,
        "jax": jinfo,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": package_versions(packages),
        "git": _git_commit(),
        "env": {
            k: os.environ[k]
            for k in ("XLA_FLAGS", "JAX_PLATFORMS", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
            if k in os.environ
        },
        "loadavg_at_start": loadavg(),
    }


def loadavg() -> list[float] | None:
    """1, 5 and 15 minute load averages: a run on a busy machine says so in its record."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# -- timing -----------------------------------------------------------------------------------


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


# -- statistics -------------------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values (NaN where none)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan
    if len(vals) == 1:
        return vals[0], 0.0
    return statistics.fmean(vals), statistics.stdev(vals)


def fmt(x: Any, digits: int = 3) -> str:
    """A number for a table: ``1.23e+06`` style only when it must be."""
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return "yes" if x else "no"
    x = float(x)
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e6 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_mean_std(mean: float, std: float) -> str:
    if mean is None or not math.isfinite(mean):
        return "-"
    return f"{fmt(mean)} ± {fmt(std)}"


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """``columns`` are ``(key, header)`` pairs; values are formatted with :func:`fmt`."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    body = ["| " + " | ".join(fmt(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def machine_line(machine: dict) -> str:
    v = machine.get("versions", {})
    gpu = ", ".join(machine["gpu"]) if machine.get("gpu") else "none"
    git = machine.get("git") or {}
    commit = (git.get("commit") or "?")[:10] + (" (dirty)" if git.get("dirty") else "")
    return (
        f"{machine.get('cpu_model')} ({machine.get('usable_cores')} usable of "
        f"{machine.get('cpu_count')} cores), GPU: {gpu}, backend: {machine.get('backend')}; "
        f"jax {v.get('jax')}, jaxlib {v.get('jaxlib')}, jaxpg {v.get('jaxpg')} @ {commit}; "
        f"load at start {machine.get('loadavg_at_start')}"
    )


# -- output -----------------------------------------------------------------------------------


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp's 0600 -> open()'s usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(x: Any) -> Any:
    """Plain JSON: arrays to lists, NaN/inf to None (JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return _jsonable(x.tolist())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    return str(x)


def write_json(path: Path, payload: dict) -> None:
    text = json.dumps(_jsonable(payload), indent=2, allow_nan=False) + "\n"
    _atomic_write_bytes(Path(path), text.encode())


def write_text(path: Path, text: str) -> None:
    _atomic_write_bytes(Path(path), text.encode())


def write_plot(path: Path, draw: Callable[[Any], None], figsize=(10, 4.5)) -> None:
    """``draw(fig)`` fills a matplotlib figure; it is saved as PNG atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=figsize)
    try:
        draw(fig)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
    finally:
        plt.close(fig)
    _atomic_write_bytes(Path(path), buf.getvalue())


def payload(
    name: str,
    mode: str,
    settings: dict,
    results: list,
    machine: dict,
    argv: Sequence[str] | None = None,
    **extra,
) -> dict:
    """The JSON record of a run. ``argv`` is what ``main`` was given (None: ``sys.argv``)."""
    return {
        "benchmark": name,
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command_line(name, argv),
        "mode": mode,
        "machine": machine,
        "settings": settings,
        "results": results,
        **extra,
        "loadavg_at_end": loadavg(),
    }


def command_line(name: str, argv: Sequence[str] | None = None) -> str:
    """The command that reruns this figure: ``python benchmarks/NAME.py ARGS``."""
    args = sys.argv[1:] if argv is None else list(argv)
    script = (BENCH_DIR / f"{name}.py").relative_to(REPO_DIR)
    return " ".join(["python", shlex.quote(str(script)), *map(shlex.quote, args)])


def write_results(
    out_dir: Path,
    name: str,
    data: dict,
    table: str,
    draw: Callable[[Any], None] | None = None,
    figsize=(10, 4.5),
) -> dict[str, Path]:
    """Writes ``NAME.json``, ``NAME.md`` (the table with its command and machine) and, if
    ``draw`` is given, ``NAME.png``. Returns the paths written."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"{name}.json", "md": out_dir / f"{name}.md"}
    write_json(paths["json"], data)
    md = (
        f"### {name}\n\n"
        f"Command: `{data['command']}`\n\n"
        f"Machine: {machine_line(data['machine'])}\n\n"
        f"{table}\n"
    )
    for note in data.get("notes", []):
        md += f"\n- {note}"
    write_text(paths["md"], md.rstrip() + "\n")
    if draw is not None:
        paths["png"] = out_dir / f"{name}.png"
        write_plot(paths["png"], draw, figsize)
    return paths


def publish(
    args, name: str, data: dict, rows, columns, draw=None, figsize=(10, 4.5)
) -> dict[str, Path]:
    """A script's last step: the table of ``rows``, written with ``data`` (and the plot that
    ``draw`` makes, unless ``--no-plot``) under ``--out-dir``/``--name``, and printed."""
    table = markdown_table(rows, columns)
    out_dir = args.out_dir or default_out_dir(args.quick)
    paths = write_results(
        out_dir, args.name or name, data, table, None if args.no_plot else draw, figsize
    )
    print(table)
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return paths


def default_out_dir(quick: bool) -> Path:
    return QUICK_RESULTS_DIR if quick else RESULTS_DIR


def add_common_args(parser, *, quick_help: str, repeats: bool = True) -> None:
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help=f"where results go (default: {RESULTS_DIR.relative_to(REPO_DIR)}, or "
        f"{QUICK_RESULTS_DIR.relative_to(REPO_DIR)} with --quick, which git ignores)",
    )
    parser.add_argument("--name", default=None, help="file name stem of the results")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    if repeats:
        parser.add_argument(
            "--repeats",
            type=int,
            default=None,
            help="timed steady-state calls after the first (median reported)",
        )


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["num_envs=8", "anneal_lr=false"]`` -> ``{"num_envs": 8, "anneal_lr": False}``:
    config overrides from the command line (ints, floats, booleans, strings)."""
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE, e.g. shared_network=true")
        out[name.strip().replace("-", "_")] = _parse_value(text.strip())
    return out


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if "," in text:
        return tuple(_parse_value(t) for t in text.split(",") if t)
    return text


def add_set_arg(parser) -> None:
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="jaxpg config overrides, e.g. --set shared_network=true "
        "hidden_sizes=64,64 anneal_lr=false",
    )


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# -- peer drivers -----------------------------------------------------------------------------
# A peer driver is a small script run with its own venv's Python:
#   PYTHON benchmarks/peer_X.py --spec SPEC.json --out RESULT.json
# SPEC holds the shared hyperparameters and budget (see peers.py); RESULT is a flat dict.

SPEC_FIELDS = (
    "env",
    "total_timesteps",
    "num_envs",
    "num_steps",
    "num_epochs",
    "num_minibatches",
    "lr",
    "gamma",
    "gae_lambda",
    "clip_eps",
    "ent_coef",
    "vf_coef",
    "max_grad_norm",
    "hidden_sizes",
    "activation",
    "seeds",
    "eval_episodes",
)


def driver_main(run: Callable[[dict], dict], packages: Sequence[str]) -> None:
    """The ``__main__`` of a peer driver: read the spec, run, write the result atomically."""
    import argparse

    p = argparse.ArgumentParser(description="Peer driver for benchmarks/peers.py")
    p.add_argument("--spec", type=Path, required=True, help="JSON file with the shared settings")
    p.add_argument("--out", type=Path, required=True, help="where to write the result JSON")
    args = p.parse_args()
    spec = json.loads(args.spec.read_text())
    missing = [f for f in SPEC_FIELDS if f not in spec]
    if missing:
        raise SystemExit(f"{args.spec}: spec lacks {missing}")
    result = run(spec)
    result["machine"] = machine_info(packages)
    result["peak_rss_mib_self"] = peak_rss_mib()
    write_json(args.out, result)


def seed_schedule(seeds: int) -> list[int]:
    """Which seed each call trains: call 0 is the first call (after compile); the later calls
    are the steady state. With one seed, seed 0 runs twice so a steady call exists."""
    return [0, 0] if seeds == 1 else list(range(seeds))


def _run_process(
    cmd: Sequence[str], timeout: float, cwd: Path = REPO_DIR, env: dict | None = None
) -> tuple[int | None, Any, float, str]:
    """Runs ``cmd`` in a fresh process group; ``(exit code or None on timeout, rusage, wall s,
    output)``. The rusage comes from ``wait4``, so its ``ru_maxrss`` is this child's peak RSS."""
    import signal

    with tempfile.TemporaryFile() as logf:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            cwd=cwd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        code = None
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                break
            if time.perf_counter() - start > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                _, _, rusage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = -1 if code is None else code  # reaped by wait4: Popen must not wait
        wall = time.perf_counter() - start
        logf.seek(0)
        output = logf.read().decode(errors="replace")
    return code, rusage, wall, output


def run_child(argv: Sequence[str], timeout: float) -> dict:
    """Runs ``python ARGV`` with this Python; returns the JSON of its last output line plus
    ``wall_s`` and ``peak_rss_mib`` (or an ``error``)."""
    code, rusage, wall, output = _run_process([sys.executable, *argv], timeout)
    if code != 0:
        why = "timed out" if code is None else f"exit code {code}"
        return {"error": why, "log_tail": output[-3000:], "wall_s": wall}
    lines = [line for line in output.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    result.update(wall_s=wall, peak_rss_mib=rusage.ru_maxrss / 1024)
    return result


def run_driver(
    python: str | Path,
    script: Path,
    spec: dict,
    timeout: float,
    cwd: Path = REPO_DIR,
    env: dict | None = None,
) -> dict:
    """Runs a peer driver in a fresh process; adds its wall time and peak RSS (from wait4)."""
    with tempfile.TemporaryDirectory(prefix="jaxpg-peer-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        write_json(spec_path, spec)
        code, rusage, wall, output = _run_process(
            [python, script, "--spec", spec_path, "--out", out_path], timeout, cwd, env
        )
        if code is None:
            return {
                "error": f"timed out after {timeout:.0f}s",
                "log_tail": output[-3000:],
                "wall_s": wall,
            }
        if code != 0 or not out_path.exists():
            return {"error": f"exit code {code}", "log_tail": output[-3000:], "wall_s": wall}
        result = json.loads(out_path.read_text())
    result["wall_s"] = wall
    result["peak_rss_mib"] = rusage.ru_maxrss / 1024
    return result
