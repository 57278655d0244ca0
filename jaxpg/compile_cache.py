"""The persistent XLA compilation cache of the ``jaxpg`` command (on by default there)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["compile_cache_dir", "use_compile_cache"]


def compile_cache_dir() -> Path:
    """Where the CLI keeps compiled programs: ``$JAX_COMPILATION_CACHE_DIR`` if set, else
    ``$XDG_CACHE_HOME/jaxpg/xla`` (``~/.cache/jaxpg/xla``)."""
    import os

    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxpg" / "xla"


def use_compile_cache(enabled: bool) -> None:
    """Turns jax's persistent compilation cache on (in :func:`compile_cache_dir`) or off.

    A repeated run then loads its programs instead of compiling them (for the default CartPole
    job, compiling takes longer than training). jax caches only programs that took at least
    ``jax_persistent_cache_min_compile_time_secs`` (1 s by default) to compile.
    """
    import jax

    jax.config.update("jax_enable_compilation_cache", enabled)
    if enabled and not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(compile_cache_dir()))
