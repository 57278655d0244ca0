"""The suite compiles at XLA's backend optimisation level 0 and with XLA's older elemental
emitters instead of its MLIR fusion emitters (``tests/conftest.py``): the many small programs of
the unit tests compile in about a third of the time, at several times their run time. PPO's
CartPole program, XLA's compile alone (``python benchmarks/compile_time.py --quick --seeds 1
--rounds 3`` under each ``XLA_FLAGS``, 2-core AMD EPYC): 3.8 s at the defaults, 2.9 s at level
0, 1.3 s at level 0 with the elemental emitters. Programs whose run time dominates (the learning
runs) and whose floats are compared with references written at the defaults (the regression
runs) compile with XLA's defaults through :func:`jit`.

With the elemental emitters, two programs that compute the same floats in the same order can
still round differently (a scan of 4 updates and two scans of 2, measured on an AMD EPYC: a few
ulps); with the fusion emitters, XLA's default, they agree bit for bit, which jaxpg promises
(chunks compose exactly, a resumed run equals an uninterrupted one). A test of such a promise
compiles both programs through :func:`exact_jit`."""

import os

import jax

# XLA's default emitters, and XLA's defaults (DebugOptions): tests/conftest.py changes both
# (the emitters only where this jaxlib has the flag)
_ELEMENTAL = "xla_cpu_use_fusion_emitters=false" in os.environ.get("XLA_FLAGS", "")
DEFAULT_EMITTERS = {"xla_cpu_use_fusion_emitters": True} if _ELEMENTAL else {}
DEFAULT_LEVEL = {"xla_backend_optimization_level": 3, **DEFAULT_EMITTERS}


def exact_jit(fun, **kwargs):
    """``jax.jit`` with XLA's default emitters: for programs compared bit for bit with others."""
    return jax.jit(fun, compiler_options=DEFAULT_EMITTERS, **kwargs)


def jit(fun, **kwargs):
    """``jax.jit`` at XLA's default optimisation level, whatever ``XLA_FLAGS`` says."""
    return jax.jit(fun, compiler_options=DEFAULT_LEVEL, **kwargs)
