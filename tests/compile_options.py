"""The suite compiles at XLA's backend optimisation level 0 (``tests/conftest.py``): about a
third less compile time for the many small programs of the unit tests, at 3x their run time.
Programs whose run time dominates (the learning runs) and whose floats are compared with
references written at the default level (the regression runs) compile at the default, level 3,
through :func:`jit`."""

import jax

DEFAULT_LEVEL = {"xla_backend_optimization_level": 3}  # XLA's default (DebugOptions)


def jit(fun, **kwargs):
    """``jax.jit`` at XLA's default optimisation level, whatever ``XLA_FLAGS`` says."""
    return jax.jit(fun, compiler_options=DEFAULT_LEVEL, **kwargs)
