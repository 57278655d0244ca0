"""Child processes: the peer drivers' side and the parent's side of a run in a fresh process.

A peer driver is a small script run with its own venv's Python:

    PYTHON benchmarks/peer_X.py --spec SPEC.json --out RESULT.json

SPEC holds the shared hyperparameters and budget (see peers.py); RESULT is a flat dict. The
parent runs each child in a fresh process group and takes the child's wall time and peak RSS
from ``wait4``. Spec and result are JSON written with :mod:`jaxpg.files`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from machine import machine_info
from paths import REPO_DIR
from timing import peak_rss_mib

from jaxpg.files import atomic_write_json, read_json

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
    spec = read_json(args.spec)
    missing = [f for f in SPEC_FIELDS if f not in spec]
    if missing:
        raise SystemExit(f"{args.spec}: spec lacks {missing}")
    result = run(spec)
    result["machine"] = machine_info(packages)
    result["peak_rss_mib_self"] = peak_rss_mib()
    atomic_write_json(args.out, result)


def run_process(
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
    code, rusage, wall, output = run_process([sys.executable, *argv], timeout)
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
        atomic_write_json(spec_path, spec)
        code, rusage, wall, output = run_process(
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
        result = read_json(out_path)
    result["wall_s"] = wall
    result["peak_rss_mib"] = rusage.ru_maxrss / 1024
    return result
