"""Suite-wide settings: shape bugs between ``[T, N]`` and ``[N]`` arrays raise instead of
broadcasting silently; ``jaxpg.cli.main`` called in-process keeps its persistent compilation
cache in a temporary folder and leaves jax's cache settings as it found them; programs compile
at XLA's backend optimisation level 0 (set here, before jax starts its backend, and inherited
by the subprocesses), unless ``XLA_FLAGS`` already names a level: the unit tests' small
programs compile about a third faster. Learning and regression runs compile at the default
level through ``compile_options.jit``."""

import os

if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import jax  # noqa: E402
import pytest

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
