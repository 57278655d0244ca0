"""Env steps per second: jaxpg's PPO against PureJaxRL's ``ppo.py`` in one process, alternating.

Both programs are built in the same Python (so they compile with the same jax and XLA) at each
``--points`` entry ``NUM_ENVS:TOTAL_STEPS[:AGENTS[:ENV]]``:

* ``ENV`` ``CartPole-v1`` (the default): PureJaxRL's CartPole config (lr 2.5e-4 annealed, 128
  steps, 4 epochs x 4 minibatches, gamma 0.99, lambda 0.95, clip 0.2, entropy 0.01, value 0.5,
  max grad norm 0.5, 2x64 tanh actor and critic) against jaxpg's ``presets.ppo_cartpole()`` (the
  same settings);
* ``ENV`` a MinAtar game (``Breakout-MinAtar``, ...): PureJaxRL's MinAtar config (lr 5e-3
  annealed, 128 steps, 4 epochs x 8 minibatches, gamma 0.99, 2x64 ReLU) against
  ``presets.ppo_minatar(game, settings="purejaxrl")``;
* ``AGENTS`` (default 1): that many agents trained at once, ``jax.vmap`` over seeds.

Each program is compiled ahead of time (timed apart), then called ``--rounds`` times, the two
taking turns; the best round of each is reported, with the median beside it, and the ratio
jaxpg / PureJaxRL. Env steps/s counts every agent's steps. Each program also gives its training
return per update (the mean over the agents of the mean return of the episodes that ended in
the update, PureJaxRL's from its ``LogWrapper`` records), reduced inside the jit: the final
return (the mean of the last tenth of updates, as jaxpg's summary) and, with ``--threshold``,
on one CartPole agent's points, the time to reach it (compile plus the median round's seconds
up to the first update whose return reaches it): "one CartPole agent to 500" is ``--points
4:500000 --threshold 500``. Before its rounds each program is called once untimed (allocation,
warm caches); ``--no-warmup`` times that first call as the first round instead, for points
whose one run takes minutes.

The anchors of issue 25 (PureJaxRL on an A100: one CartPole agent to 500 in about 7-8 s, 2048
CartPole agents in about 98 s, one Breakout agent for 10M steps in about 35 s, 256 in about
325 s) are the points ``4:500000``, ``4:500000:2048``, ``64:10000000:1:Breakout-MinAtar`` and
``64:10000000:256:Breakout-MinAtar`` (see ``benchmarks/README.md``, "Peers on an accelerator").

PureJaxRL is not a package: pass a checkout's ``purejaxrl/`` folder with ``--purejaxrl`` and run
this script with a Python that has distrax (see ``benchmarks/README.md``, "Compile time against
PureJaxRL"); the loader is :func:`compile_time.purejaxrl_make_train`.

    benchmarks/.venv-purejaxrl/bin/python benchmarks/purejaxrl_speed.py \\
        --purejaxrl /tmp/purejaxrl/purejaxrl --name purejaxrl_speed_cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compile_time import (  # noqa: E402
    PUREJAXRL_CONFIG,
    PUREJAXRL_MINATAR_CONFIG,
    purejaxrl_make_train,
)
from machine import machine_info  # noqa: E402
from options import add_common_args  # noqa: E402
from report import log, payload, publish  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p, quick_help="two small points, two rounds", repeats=False)
    p.add_argument("--purejaxrl", type=Path, required=True, help="a checkout's purejaxrl/ folder")
    p.add_argument(
        "--points",
        nargs="+",
        default=["4:500000", "1024:2000000"],
        help="NUM_ENVS:TOTAL_STEPS[:AGENTS[:ENV]] entries (default: 4:500000 1024:2000000)",
    )
    p.add_argument("--rounds", type=int, default=None, help="default 5 (quick: 2)")
    p.add_argument(
        "--no-warmup",
        action="store_true",
        help="time the first call as the first round (for long points: no untimed run)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="also report the time to this training return on CartPole (compile included)",
    )
    return p.parse_args(argv)


class Point(NamedTuple):
    num_envs: int
    total_steps: int
    agents: int = 1
    env: str = "CartPole-v1"


def parse_point(text: str) -> Point:
    """``NUM_ENVS:TOTAL_STEPS[:AGENTS[:ENV]]``, e.g. ``4:500000:2048`` or
    ``64:1e7:1:Breakout-MinAtar``."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 4:
        raise ValueError(f"--points {text!r}: expected NUM_ENVS:TOTAL_STEPS[:AGENTS[:ENV]]")
    try:
        numbers = [float(x) for x in parts[:3]]
    except ValueError:
        raise ValueError(
            f"--points {text!r}: NUM_ENVS, TOTAL_STEPS and AGENTS are numbers"
        ) from None
    if any(x != int(x) or x < 1 for x in numbers):
        raise ValueError(f"--points {text!r}: NUM_ENVS, TOTAL_STEPS and AGENTS are integers >= 1")
    num_envs, total_steps, agents = (*(int(x) for x in numbers), 1)[:3]
    if total_steps < num_envs * 128:
        raise ValueError(
            f"--points {text!r}: TOTAL_STEPS must hold one update, NUM_ENVS x 128 = {num_envs * 128}"
        )
    env = parts[3] if len(parts) == 4 else "CartPole-v1"
    if env != "CartPole-v1" and not env.endswith("-MinAtar"):
        raise ValueError(f"--points {text!r}: ENV must be CartPole-v1 or a MinAtar game")
    return Point(num_envs, total_steps, agents, env)


def configs(point: Point):
    """PureJaxRL's config dict and jaxpg's config for ``point`` (the same settings)."""
    from jaxpg import presets

    if point.env == "CartPole-v1":
        pj, jx = dict(PUREJAXRL_CONFIG), presets.ppo_cartpole()
    else:
        pj = dict(PUREJAXRL_MINATAR_CONFIG, ENV_NAME=point.env)
        jx = presets.ppo_minatar(point.env.removesuffix("-MinAtar"), settings="purejaxrl")
    pj.update(NUM_ENVS=point.num_envs, TOTAL_TIMESTEPS=point.total_steps)
    jx = dataclasses.replace(jx, num_envs=point.num_envs, total_timesteps=point.total_steps)
    return pj, jx


def purejaxrl_curve(info) -> Any:
    """PureJaxRL's training return per update ``[U]`` from its ``LogWrapper`` records ``[U, T,
    N]``: the mean return of the episodes that ended in each update, NaN where none did, by
    jaxpg's own definition (:func:`jaxpg.rollout.episode_stats`)."""
    import types

    import jax
    import jax.numpy as jnp

    from jaxpg.rollout import episode_stats

    def per_update(done, returns):
        records = types.SimpleNamespace(
            episode_done=done,
            episode_return=returns,
            episode_length=jnp.zeros(done.shape, jnp.int32),  # not recorded alike; unused
        )
        return episode_stats(records)["episode_return"]

    return jax.vmap(per_update)(info["returned_episode"], info["returned_episode_returns"])


def _checksum(tree):
    import jax
    import jax.numpy as jnp

    return sum(jnp.sum(x.astype(jnp.float32)) for x in jax.tree.leaves(tree))


def programs(folder: Path, point: Point) -> dict:
    """``{impl: (fn(keys) -> (curve [U], checksum), keys)}``: each trains ``point.agents`` agents
    (vmapped when more than one) and reduces its outputs inside the jit to the training return
    per update (the mean over agents) and a checksum of the final parameters, so that no
    training work is dead code."""
    import jax
    import jax.numpy as jnp

    import jaxpg

    if point.agents > 1 and jax.default_backend() == "cpu":
        # flax's orthogonal init in PureJaxRL's network is LAPACK's batched QR under vmap,
        # which deadlocks on jax 0.10's CPU (jaxpg maps the unbatched QR instead)
        raise ValueError(
            f"--points {point}: AGENTS > 1 needs a GPU or TPU: PureJaxRL's vmapped init "
            "(a batched LAPACK QR) can hang on the CPU backend"
        )
    pj_config, jx_config = configs(point)
    pj_train = purejaxrl_make_train(folder, pj_config)
    jx_train = jaxpg.make_train(jx_config)

    def over_agents(train):
        if point.agents == 1:
            return lambda keys: jax.tree.map(lambda x: x[None], train(keys[0]))
        return jax.vmap(train)

    def pj(keys):
        out = over_agents(pj_train)(keys)
        curve = jax.vmap(purejaxrl_curve, in_axes=(0,))(out["metrics"])  # [A, U]
        return jnp.nanmean(curve, axis=0), _checksum(out["runner_state"][0].params)

    def jx(keys):
        result = over_agents(jx_train)(keys)
        return jnp.nanmean(result.metrics["episode_return"], axis=0), _checksum(result.params)

    return {
        "purejaxrl": (pj, jax.random.split(jax.random.PRNGKey(0), point.agents)),
        "jaxpg": (jx, jax.random.split(jax.random.key(0), point.agents)),
    }


def time_to_threshold(curve, threshold: float, compile_s: float, run_s: float) -> float | None:
    """Seconds until the training return ``curve [U]`` first reaches ``threshold``: the compile
    plus the share of the run's seconds up to and including that update (updates take equal
    time); ``None`` if it never does."""
    import numpy as np

    reached = np.flatnonzero(np.asarray(curve) >= threshold)
    if reached.size == 0:
        return None
    return compile_s + run_s * (int(reached[0]) + 1) / len(curve)


def _compiled(fn, keys):
    import jax

    start = time.perf_counter()
    compiled = jax.jit(fn).lower(keys).compile()
    return compiled, time.perf_counter() - start


def measure(
    folder: Path, point: Point, rounds: int, threshold: float | None, warmup: bool = True
) -> list[dict]:
    import jax
    import numpy as np

    from jaxpg.metrics import final_return

    built = programs(folder, point)
    batch = point.num_envs * 128  # both use 128 steps per update
    updates = point.total_steps // batch
    steps = updates * batch  # whole updates, in both programs
    compiled, compile_s, seconds, curves = {}, {}, {name: [] for name in built}, {}
    for name, (fn, keys) in built.items():
        compiled[name], compile_s[name] = _compiled(fn, keys)
    for r in range(rounds):
        order = list(built) if r % 2 == 0 else list(built)[::-1]
        for name in order:
            if r == 0 and warmup:  # an untimed first call: allocation, warm caches
                jax.block_until_ready(compiled[name](built[name][1]))
            start = time.perf_counter()
            curve, _ = jax.block_until_ready(compiled[name](built[name][1]))
            seconds[name].append(time.perf_counter() - start)
            if r == 0:
                curves[name] = np.asarray(curve, np.float64)
                assert curves[name].shape == (updates,), (name, curves[name].shape, updates)
            rate = point.agents * steps / seconds[name][-1]
            log(f"{point}, round {r}, {name}: {rate:,.0f} env steps/s")
    rows = []
    for name in built:
        curve = curves[name]
        row = {
            "impl": name,
            "env": point.env,
            "num_envs": point.num_envs,
            "agents": point.agents,
            "env_steps": steps,
            "steps_per_s": point.agents * steps / min(seconds[name]),
            "median_steps_per_s": point.agents * steps / statistics.median(seconds[name]),
            "compile_s": compile_s[name],
            "seconds": seconds[name],
            "final_return": float(final_return(curve)),
            "returns": [None if np.isnan(x) else float(x) for x in curve],
        }
        if threshold is not None:  # one CartPole agent's points only (500: solved)
            row["time_to_threshold_s"] = (
                time_to_threshold(
                    curve, threshold, compile_s[name], statistics.median(seconds[name])
                )
                if point.env == "CartPole-v1" and point.agents == 1
                else None
            )
        rows.append(row)
    for row in rows:
        row["vs_purejaxrl"] = row["steps_per_s"] / rows[0]["steps_per_s"]
    return rows


def main(argv=None):
    args = parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    points = [parse_point(p) for p in args.points]
    if args.quick:  # several agents off the CPU only (see programs)
        import jax

        agents = 1 if jax.default_backend() == "cpu" else 2
        points = [Point(4, 4 * 128 * 4), Point(64, 64 * 128 * 2, agents, "Breakout-MinAtar")]
    rows = []
    for point in points:
        rows += measure(args.purejaxrl, point, rounds, args.threshold, not args.no_warmup)
    columns = [
        ("impl", "impl"),
        ("env", "env"),
        ("num_envs", "envs"),
        ("agents", "agents"),
        ("env_steps", "env steps per agent"),
        ("steps_per_s", "env steps/s (best round)"),
        ("vs_purejaxrl", "jaxpg / PureJaxRL"),
        ("median_steps_per_s", "env steps/s (median)"),
        ("compile_s", "compile s"),
        ("final_return", "final training return"),
    ]
    if args.threshold is not None:
        columns.append(("time_to_threshold_s", f"s to {args.threshold:g} (compile included)"))
    settings = {
        "points": [p._asdict() for p in points],
        "rounds": rounds,
        "threshold": args.threshold,
        "warmup": not args.no_warmup,
        "purejaxrl": str(args.purejaxrl),
    }
    data = payload(
        "purejaxrl_speed",
        "quick" if args.quick else "full",
        settings,
        rows,
        machine_info(),
        argv=argv,
        notes=[
            "One process, one jax: both programs compiled ahead of time (compile s), then "
            "called in alternating rounds; env steps/s (every agent's steps) is the best "
            "round's, the median beside.",
            "PureJaxRL: ppo.py with its CartPole or MinAtar config (LogWrapper, "
            "FlattenObservationWrapper and a five-tuple step adapter around gymnax >= 1.0); "
            "jaxpg: presets.ppo_cartpole() or presets.ppo_minatar(game, settings='purejaxrl') "
            "with the same num_envs and budget (both rounded down to whole updates); several "
            "agents: jax.vmap over seeds.",
            "Final training return: the mean over the agents of each update's mean episode "
            "return, averaged over the last tenth of updates; the time to a threshold is "
            "compile plus the median round's seconds up to the first update that reaches it "
            "(one CartPole agent's points only).",
        ],
    )
    return publish(args, "purejaxrl_speed", data, rows, columns)


if __name__ == "__main__":
    main()
