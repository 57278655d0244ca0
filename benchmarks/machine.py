"""The machine record: what a reader needs to trust (or discount) a number.

CPU, cores, memory, GPU, JAX backend and devices, package versions, the jaxpg commit, the XLA
flags and the load average. Standard library only (jax is imported where it is installed), so
every peer driver records its own machine from its own venv.
"""

from __future__ import annotations

import importlib
import importlib.metadata as _md
import importlib.util
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from typing import Any

from paths import REPO_DIR

DEFAULT_PACKAGES = ("jax", "jaxlib", "jaxpg", "flax", "optax", "gymnax", "numpy")


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
        # TF32 is the default for float32 matmuls on Hopper GPUs, and it can change learning
        "default_matmul_precision": str(jax.config.jax_default_matmul_precision),
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


def machine_line(machine: dict) -> str:
    """The record in one line, for the line under every table."""
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
