"""Env steps per second: jaxpg's PPO against PureJaxRL's ``ppo.py`` in one process, alternating.

Both programs are built in the same Python (so they compile with the same jax and XLA), with
PureJaxRL's CartPole config (lr 2.5e-4 annealed, 128 steps, 4 epochs x 4 minibatches, gamma
0.99, lambda 0.95, clip 0.2, entropy 0.01, value 0.5, max grad norm 0.5, 2x64 tanh actor and
critic) and jaxpg's ``presets.ppo_cartpole()`` (the same settings) at each ``--points`` entry
``NUM_ENVS:TOTAL_STEPS``. Each program is compiled ahead of time (timed apart), then called
``--rounds`` times, the two taking turns; the best round of each is reported, with the median
beside it, and the ratio jaxpg / PureJaxRL.

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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compile_time import PUREJAXRL_CONFIG, purejaxrl_make_train  # noqa: E402
from machine import machine_info  # noqa: E402
from options import add_common_args  # noqa: E402
from report import log, payload, publish  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p, quick_help="one small point, two rounds", repeats=False)
    p.add_argument("--purejaxrl", type=Path, required=True, help="a checkout's purejaxrl/ folder")
    p.add_argument(
        "--points",
        nargs="+",
        default=["4:500000", "1024:2000000"],
        help="NUM_ENVS:TOTAL_STEPS entries (default: 4:500000 1024:2000000)",
    )
    p.add_argument("--rounds", type=int, default=None, help="default 5 (quick: 2)")
    return p.parse_args(argv)


def _compiled(fn, key):
    import jax

    start = time.perf_counter()
    compiled = jax.jit(fn).lower(key).compile()
    return compiled, time.perf_counter() - start


def measure(folder: Path, num_envs: int, total: int, rounds: int) -> list[dict]:
    import jax

    import jaxpg
    from jaxpg import presets

    pj_config = dict(PUREJAXRL_CONFIG, NUM_ENVS=num_envs, TOTAL_TIMESTEPS=total)
    jx_config = dataclasses.replace(
        presets.ppo_cartpole(), num_envs=num_envs, total_timesteps=total
    )
    programs = {
        "purejaxrl": (purejaxrl_make_train(folder, pj_config), jax.random.PRNGKey(0)),
        "jaxpg": (jaxpg.make_train(jx_config), jax.random.key(0)),
    }
    steps = (total // (num_envs * 128)) * num_envs * 128  # whole updates, in both programs
    assert steps == jx_config.num_updates * jx_config.batch_size
    compiled, compile_s, seconds = {}, {}, {name: [] for name in programs}
    for name, (fn, key) in programs.items():
        compiled[name], compile_s[name] = _compiled(fn, key)
        jax.block_until_ready(compiled[name](key))  # first call: allocation, warm caches
    for r in range(rounds):
        order = list(programs) if r % 2 == 0 else list(programs)[::-1]
        for name in order:
            start = time.perf_counter()
            jax.block_until_ready(compiled[name](programs[name][1]))
            seconds[name].append(time.perf_counter() - start)
            log(f"{num_envs} envs, round {r}, {name}: {steps / seconds[name][-1]:,.0f} steps/s")
    rows = []
    for name in programs:
        best = steps / min(seconds[name])
        rows.append(
            {
                "impl": name,
                "num_envs": num_envs,
                "env_steps": steps,
                "steps_per_s": best,
                "median_steps_per_s": steps / statistics.median(seconds[name]),
                "compile_s": compile_s[name],
                "seconds": seconds[name],
            }
        )
    for row in rows:
        row["vs_purejaxrl"] = row["steps_per_s"] / rows[0]["steps_per_s"]
    return rows


def main(argv=None):
    args = parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    points = [tuple(int(float(x)) for x in p.split(":")) for p in args.points]
    if args.quick:
        points = [(4, 4 * 128 * 4)]
    rows = []
    for num_envs, total in points:
        rows += measure(args.purejaxrl, num_envs, total, rounds)
    columns = [
        ("impl", "impl"),
        ("num_envs", "envs"),
        ("env_steps", "env steps"),
        ("steps_per_s", "env steps/s (best round)"),
        ("vs_purejaxrl", "jaxpg / PureJaxRL"),
        ("median_steps_per_s", "env steps/s (median)"),
        ("compile_s", "compile s"),
    ]
    settings = {"points": points, "rounds": rounds, "purejaxrl": str(args.purejaxrl)}
    data = payload(
        "purejaxrl_speed",
        "quick" if args.quick else "full",
        settings,
        rows,
        machine_info(),
        argv=argv,
        notes=[
            "One process, one jax: both programs compiled ahead of time (compile s), then "
            "called in alternating rounds; env steps/s is the best round's, the median beside.",
            "PureJaxRL: ppo.py with its CartPole config (LogWrapper, FlattenObservationWrapper "
            "and a five-tuple step adapter around gymnax >= 1.0); jaxpg: presets.ppo_cartpole() "
            "with the same num_envs and budget (both rounded down to whole updates).",
        ],
    )
    return publish(args, "purejaxrl_speed", data, rows, columns)


if __name__ == "__main__":
    main()
