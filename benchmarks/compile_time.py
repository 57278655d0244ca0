"""Compile time: jaxpg's PPO CartPole program against PureJaxRL's ``ppo.py``, timed ahead of time.

Each measurement runs in a fresh process that builds one program and times
``lowered = jax.jit(f).lower(keys)`` (trace and lower) and ``lowered.compile()`` (XLA) apart,
for one seed and for ``S`` vmapped seeds; both use PPO's CartPole defaults (4 envs x 128 steps,
500k steps, 4 epochs x 4 minibatches). The implementations take turns, round after round, and
the median over rounds is reported with the ratio jaxpg / PureJaxRL. The program size (lines of
its StableHLO text and of the optimised HLO) says where a difference comes from.

PureJaxRL is not a package: pass a checkout's ``purejaxrl/`` folder (``ppo.py`` and
``wrappers.py``) with ``--purejaxrl DIR``, and a Python that has distrax with ``--purejaxrl-python``
(the same jax, flax, optax and gymnax versions as jaxpg's, so both compile with the same XLA).
Its ``wrappers.py`` imports brax and navix, which ``ppo.py`` does not use: the child process
stubs them. gymnax >= 1.0 returns ``(obs, state, reward, terminated, truncated, info)`` from
``step``; PureJaxRL expects gymnax 0.0.x's ``(obs, state, reward, done, info)``: the child wraps
the env so that ``done = terminated or truncated`` (what PureJaxRL's code was written for).

    python benchmarks/compile_time.py --purejaxrl ~/purejaxrl/purejaxrl \\
        --purejaxrl-python benchmarks/.venv-purejaxrl/bin/python --rounds 3
    python benchmarks/compile_time.py --quick     # jaxpg alone, one round
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402
from options import add_common_args  # noqa: E402
from paths import REPO_DIR  # noqa: E402
from report import log, payload, publish  # noqa: E402

PUREJAXRL_CONFIG = {
    "LR": 2.5e-4,
    "NUM_ENVS": 4,
    "NUM_STEPS": 128,
    "TOTAL_TIMESTEPS": 5e5,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 0.01,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "tanh",
    "ENV_NAME": "CartPole-v1",
    "ANNEAL_LR": True,
    "DEBUG": False,
}

# PureJaxRL's MinAtar settings (its README's MinAtar results; ppo.py with ENV_NAME a MinAtar game)
PUREJAXRL_MINATAR_CONFIG = {
    **PUREJAXRL_CONFIG,
    "LR": 5e-3,
    "NUM_ENVS": 64,
    "TOTAL_TIMESTEPS": 1e7,
    "NUM_MINIBATCHES": 8,
    "ACTIVATION": "relu",
    "ENV_NAME": "Breakout-MinAtar",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p, quick_help="jaxpg alone, one round", repeats=False)
    p.add_argument(
        "--purejaxrl",
        type=Path,
        default=None,
        help="a checkout's purejaxrl/ folder (ppo.py, wrappers.py)",
    )
    p.add_argument(
        "--purejaxrl-python",
        default=sys.executable,
        help="a Python with distrax and jaxpg's jax/flax/optax/gymnax versions",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 8])
    p.add_argument("--rounds", type=int, default=None, help="default 3 (quick: 1)")
    p.add_argument("--child", nargs=2, metavar=("IMPL", "SEEDS"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- child processes: one program each ---------------------------------------------------------


def _hlo_lines(lowered, compiled) -> dict:
    out = {"stablehlo_lines": lowered.as_text().count("\n")}
    try:
        out["optimized_hlo_lines"] = compiled.as_text().count("\n")
    except Exception:  # noqa: BLE001 - not every backend gives the text
        out["optimized_hlo_lines"] = None
    return out


def _time_aot(fn, keys) -> dict:
    import jax

    start = time.perf_counter()
    lowered = jax.jit(fn).lower(keys)
    trace_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    return {"trace_s": trace_s, "compile_s": compile_s, **_hlo_lines(lowered, compiled)}


def _vmapped(train, seeds):
    import jax

    return (lambda keys: train(keys[0])) if seeds == 1 else jax.vmap(train)


def child_jaxpg(seeds: int) -> dict:
    import jax

    import jaxpg
    from jaxpg import presets

    train = jaxpg.make_train(presets.ppo_cartpole())
    return _time_aot(_vmapped(train, seeds), jax.random.split(jax.random.key(0), seeds))


def child_jaxpg_init(seeds: int) -> dict:
    """jaxpg's initial state alone (the orthogonal init, the env resets)."""
    import jax

    import jaxpg
    from jaxpg import presets

    config = presets.ppo_cartpole()
    init = lambda key: jaxpg.init_state(config, key)
    return _time_aot(_vmapped(init, seeds), jax.random.split(jax.random.key(0), seeds))


def purejaxrl_make_train(folder: Path, config: dict):
    """PureJaxRL's ``ppo.make_train(config)`` from a checkout's ``purejaxrl/`` folder, in this
    process: the brax and navix imports of ``wrappers.py`` stubbed, distrax's TensorFlow
    Probability given the alias jax 0.10 removed, and gymnax 0.0.x's five-tuple ``step`` given
    to PureJaxRL alone (``gymnax.make`` is restored once its env is made, so jaxpg in the same
    process gets gymnax's own)."""
    import types

    import gymnax
    import jax

    for name in (
        "brax",
        "brax.envs",
        "brax.envs.wrappers",
        "brax.envs.wrappers.training",
        "navix",
    ):  # imported by wrappers.py for other environments, unused by ppo.py
        module = types.ModuleType(name)
        module.envs = module
        module.EpisodeWrapper = module.AutoResetWrapper = object
        sys.modules.setdefault(name, module)

    class FiveTupleStep:
        """gymnax >= 1.0's env with gymnax 0.0.x's step: ``done = terminated | truncated``."""

        def __init__(self, env):
            self._env = env

        def __getattr__(self, name):
            return getattr(self._env, name)

        def step(self, key, state, action, params=None):
            obs, state, reward, terminated, truncated, info = self._env.step(
                key, state, action, params
            )
            return obs, state, reward, jax.numpy.logical_or(terminated, truncated), info

    # distrax's TensorFlow Probability backend (0.25) reads an alias jax 0.10 no longer has
    import jax.interpreters.xla

    if not hasattr(jax.interpreters.xla, "pytype_aval_mappings"):
        from jax._src import core

        jax.interpreters.xla.pytype_aval_mappings = core.pytype_aval_mappings

    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    import ppo

    make = gymnax.make
    gymnax.make = lambda name, **kw: (lambda e, p: (FiveTupleStep(e), p))(*make(name, **kw))
    try:
        return ppo.make_train(dict(config))
    finally:
        gymnax.make = make


def child_purejaxrl(seeds: int, folder: Path) -> dict:
    import jax

    train = purejaxrl_make_train(folder, PUREJAXRL_CONFIG)
    return _time_aot(_vmapped(train, seeds), jax.random.split(jax.random.PRNGKey(0), seeds))


def run_child(impl: str, seeds: int, args) -> dict:
    python = args.purejaxrl_python if impl == "purejaxrl" else sys.executable
    cmd = [python, str(Path(__file__).resolve()), "--child", impl, str(seeds)]
    if args.purejaxrl is not None:
        cmd += ["--purejaxrl", str(args.purejaxrl)]
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # every compile is a cold one
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_DIR), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} seeds={seeds} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        impl, seeds = args.child[0], int(args.child[1])
        rec = {"jaxpg": child_jaxpg, "jaxpg_init": child_jaxpg_init}.get(
            impl, lambda s: child_purejaxrl(s, args.purejaxrl)
        )(seeds)
        print(json.dumps(rec))
        return rec
    rounds = args.rounds or (1 if args.quick else 3)
    impls = ["jaxpg"] + ([] if args.quick or args.purejaxrl is None else ["purejaxrl"])
    impls += ["jaxpg_init"]  # the part of jaxpg's program that holds the orthogonal init
    runs = []
    for r in range(rounds):
        for seeds in args.seeds:
            for impl in impls if r % 2 == 0 else impls[::-1]:
                rec = {"round": r, "impl": impl, "seeds": seeds, **run_child(impl, seeds, args)}
                log(
                    f"round {r} {impl:9s} seeds={seeds}: trace {rec['trace_s']:.2f}s "
                    f"compile {rec['compile_s']:.2f}s"
                )
                runs.append(rec)
    rows = []
    for seeds in args.seeds:
        for impl in impls:
            sel = [x for x in runs if x["impl"] == impl and x["seeds"] == seeds]
            row = {"impl": impl, "seeds": seeds, "rounds": len(sel)}
            for k in ("trace_s", "compile_s", "stablehlo_lines", "optimized_hlo_lines"):
                vals = [x[k] for x in sel if x[k] is not None]
                row[k] = statistics.median(vals) if vals else None
            row["total_s"] = row["trace_s"] + row["compile_s"]
            rows.append(row)
    for row in rows:
        ref = next(
            (x for x in rows if x["impl"] == "purejaxrl" and x["seeds"] == row["seeds"]), None
        )
        if ref is not None:
            for k in ("trace_s", "compile_s", "total_s"):
                row[f"{k}_vs_purejaxrl"] = row[k] / ref[k]
    columns = [
        ("impl", "impl"),
        ("seeds", "seeds"),
        ("trace_s", "trace s"),
        ("compile_s", "compile s"),
        ("total_s", "total s"),
        ("total_s_vs_purejaxrl", "total / PureJaxRL"),
        ("trace_s_vs_purejaxrl", "trace / PureJaxRL"),
        ("compile_s_vs_purejaxrl", "compile / PureJaxRL"),
        ("stablehlo_lines", "StableHLO lines"),
        ("optimized_hlo_lines", "optimised HLO lines"),
    ]
    settings = {
        "seeds": args.seeds,
        "rounds": rounds,
        "purejaxrl": str(args.purejaxrl),
        "purejaxrl_config": PUREJAXRL_CONFIG,
    }
    data = payload(
        "compile_time",
        "quick" if args.quick else "full",
        settings,
        runs,
        machine_info(),
        argv=argv,
        summary=rows,
        notes=[
            "trace = jax.jit(f).lower(keys); compile = lowered.compile(); one "
            "program per fresh process, no persistent cache; median over "
            "rounds (the implementations alternate).",
            "Both: PPO CartPole-v1, 4 envs x 128 steps, 500k steps, 4 epochs x 4 "
            "minibatches, 2x64 tanh actor and critic.",
            "jaxpg_init: jaxpg's initial state alone (inside the jaxpg program "
            "too): its orthogonal init is one LAPACK QR per weight matrix, as "
            "PureJaxRL's; with up to 32 vmapped seeds its random draws are a "
            "lax.map of the one-seed draws (jaxpg.train.mapped_when_few).",
        ],
    )
    return publish(args, "compile_time", data, rows, columns)


if __name__ == "__main__":
    main()
