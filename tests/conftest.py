"""Suite-wide settings: shape bugs between ``[T, N]`` and ``[N]`` arrays raise instead of
broadcasting silently; ``jaxpg.cli.main`` called in-process keeps its persistent compilation
cache in a temporary folder and leaves jax's cache settings as it found them; programs compile
at XLA's backend optimisation level 0 (set here, before jax starts its backend, and inherited
by the subprocesses), unless ``XLA_FLAGS`` already names a level: the unit tests' small
programs compile about a third faster; and, where this jaxlib has the flag, with XLA's older
elemental emitters instead of its MLIR fusion emitters (``--xla_cpu_use_fusion_emitters=false``):
at level 0 a small program then compiles in half the time; each worker computes on one thread.
Learning and regression runs compile with XLA's defaults through ``compile_options.jit``, and
programs compared bit for bit with others through ``compile_options.exact_jit``. One persistent
compilation cache serves the whole run (workers and subprocesses), in a fresh folder removed at
the end, unless ``JAX_COMPILATION_CACHE_DIR`` is set."""

import os
import subprocess
import sys

import pytest

if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

_ELEMENTAL = "--xla_cpu_use_fusion_emitters=false"
if "xla_cpu_use_fusion_emitters" not in os.environ["XLA_FLAGS"]:
    # An unknown flag in XLA_FLAGS aborts the process: try it once (the xdist workers and the
    # tests' subprocesses inherit the result through the environment).
    _probe = subprocess.run(
        [sys.executable, "-c", "import jax; jax.numpy.zeros(1).block_until_ready()"],
        env={**os.environ, "XLA_FLAGS": f"{os.environ['XLA_FLAGS']} {_ELEMENTAL}"},
        capture_output=True,
    )
    if _probe.returncode == 0:
        os.environ["XLA_FLAGS"] += f" {_ELEMENTAL}"
# The suite runs a worker per core (pytest-xdist): each runs its operations on one thread rather
# than on an Eigen pool of a thread per core. Two PPO CartPole runs side by side on 2 cores: 12.3
# s each instead of 14.7 s, the floats unchanged (tests/test_regression.py stays bit for bit).
if "xla_cpu_multi_thread_eigen" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_cpu_multi_thread_eigen=false"

# One persistent compilation cache for the whole run, in a fresh folder: the xdist workers and
# the tests' subprocesses inherit it through the environment, so a program compiled once (a CLI
# run, a README snippet, a learning run repeated in another process) is loaded after that.
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import tempfile

    _OWN_CACHE = tempfile.mkdtemp(prefix="jaxpg-tests-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

_CACHE_OPTIONS = ("jax_enable_compilation_cache", "jax_compilation_cache_dir")


@pytest.fixture(autouse=True)
def _private_compile_cache(monkeypatch, tmp_path_factory):
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    saved = {name: getattr(jax.config, name) for name in _CACHE_OPTIONS}
    yield
    for name, value in saved.items():
        if getattr(jax.config, name) != value:
            jax.config.update(name, value)


# The slowest files first, slowest at the head (seconds of each at 0d9957e on the 2-core CPU:
# benchmarks/results/test_durations_emitters_cpu.md). pytest-xdist runs whole files
# (--dist loadfile) in the order collected (--no-loadscope-reorder): the longest file (the
# learning runs, ~10 min) then starts at once instead of late, when it would run on alone at the
# end while the other worker waits.
SLOWEST_FIRST = (
    "test_learning.py",
    "test_multidevice.py",
    "test_suite_runs.py",
    "test_benchmarks.py",
    "test_recurrent.py",
    "test_cli.py",
    "test_sequence.py",
    "test_readme.py",
    "test_user_module.py",
    "test_suites.py",
    "test_train.py",
    "test_trpo.py",
    "test_regression.py",
    "test_protocols.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOWEST_FIRST)))  # stable


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        import shutil

        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
