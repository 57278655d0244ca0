"""Optimistic resets: env steps per second of the rollouts with and without ``reset_pool``.

Under ``vmap`` every environment's reset is computed on every step and thrown away where the
episode went on. With ``reset_pool = K`` only ``K`` fresh starts are computed per step, shared
in order by the environments that finish (``jaxpg.envs.Env.step_with_keys``). This script times
the rollout program (``jaxpg.make_collect`` scanned over updates, fixed parameters: the part a
reset changes) and the whole training program, for each environment and pool size, taking turns
round by round so load on the machine hits every variant alike. Compile time is apart.

    python benchmarks/optimistic_reset.py            # Craftax (Classic and full) and
                                                     # XLand-MiniGrid, 256 envs, K = 0, 16
    python benchmarks/optimistic_reset.py --quick    # one env, fewer steps
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jaxpg_parts  # noqa: E402
from machine import DEFAULT_PACKAGES, machine_info  # noqa: E402
from options import add_common_args  # noqa: E402
from report import fmt, log, payload, publish  # noqa: E402
from timing import compile_program, time_call  # noqa: E402

FULL = dict(
    envs=[
        "craftax:Craftax-Classic-Symbolic-v1",
        "craftax:Craftax-Symbolic-v1",
        "xminigrid:XLand-MiniGrid-R1-9x9",
    ],
    num_envs=256,
    num_steps=32,
    updates=4,
    pools=[0, 16],
    rounds=3,
)
QUICK = dict(FULL, envs=["xminigrid:MiniGrid-Empty-8x8"], updates=2, rounds=2)
COLUMNS = [
    ("env", "env"),
    ("reset_pool", "reset_pool"),
    ("rollout_sps", "rollout env steps/s"),
    ("train_sps", "train env steps/s"),
    ("speedup_rollout", "rollout vs pool 0"),
    ("speedup_train", "train vs pool 0"),
    ("compile_s", "compile s (rollout / train)"),
]


def build(env: str, pool: int, args) -> dict:
    """The variant's two programs, compiled, with their arguments and compile times."""
    config = jaxpg_parts.make_config(
        "ppo", env, num_envs=args.num_envs, num_steps=args.num_steps, reset_pool=pool
    )
    config = jaxpg_parts.with_updates(config, args.updates)
    state = jaxpg_parts.init_state(config, jax.random.key(0))
    variant = {"env": env, "reset_pool": pool, "env_steps": args.updates * config.batch_size}
    for part, program, arg in (
        ("rollout", jaxpg_parts.rollout_program(config, args.updates), state),
        ("train", jaxpg_parts.train_program(config), jax.random.key(0)),
    ):
        compiled, seconds = compile_program(program, arg)
        time_call(compiled, arg)  # the first call, not timed
        variant[part] = (compiled, arg)
        variant[f"{part}_compile_s"] = seconds
    log(f"{env} pool={pool}: compiled")
    return variant


def measure(variant: dict) -> dict:
    out = {k: v for k, v in variant.items() if k not in ("rollout", "train")}
    for part in ("rollout", "train"):
        compiled, arg = variant[part]
        _, seconds = time_call(compiled, arg)
        out[f"{part}_s"] = seconds
        out[f"{part}_sps"] = variant["env_steps"] / seconds
    log(
        f"{out['env']} pool={out['reset_pool']}: rollout {fmt(out['rollout_sps'])}/s, "
        f"train {fmt(out['train_sps'])}/s"
    )
    return out


def summarize(records: list[dict]) -> list[dict]:
    rows = []
    keys = sorted({(r["env"], r["reset_pool"]) for r in records}, key=lambda k: (k[0], k[1]))
    best = {}
    for env, pool in keys:
        mine = [r for r in records if (r["env"], r["reset_pool"]) == (env, pool)]
        row = {"env": env, "reset_pool": pool}
        for part in ("rollout", "train"):
            row[f"{part}_sps"] = max(r[f"{part}_sps"] for r in mine)  # the least disturbed round
        row["compile_s"] = (
            f"{fmt(mine[0]['rollout_compile_s'])} / {fmt(mine[0]['train_compile_s'])}"
        )
        best[(env, pool)] = row
        rows.append(row)
    for row in rows:  # every ratio first, from the unformatted rates
        base = best[(row["env"], 0)]
        for part in ("rollout", "train"):
            row[f"speedup_{part}"] = f"{row[f'{part}_sps'] / base[f'{part}_sps']:.2f}x"
    for row in rows:
        for part in ("rollout", "train"):
            row[f"{part}_sps"] = fmt(row[f"{part}_sps"])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, quick_help="one small env, fewer updates", repeats=False)
    parser.add_argument("--envs", nargs="*", default=None)
    parser.add_argument("--num-envs", type=int, default=None)
    parser.add_argument("--pools", type=int, nargs="*", default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--updates", type=int, default=None, help="updates per timed program")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    machine = machine_info((*DEFAULT_PACKAGES, "craftax", "xminigrid"))
    variants = [build(env, pool, args) for env in args.envs for pool in args.pools]
    records = []
    for round_index in range(args.rounds):  # taking turns: every variant once per round
        for variant in variants:
            records.append({**measure(variant), "round": round_index})
    rows = summarize(records)
    settings = {
        k: getattr(args, k) for k in ("envs", "num_envs", "num_steps", "updates", "pools", "rounds")
    }
    notes = [
        "env steps/s = env steps of the program / its wall time (the best of the rounds, "
        "compile apart); rollout = make_collect scanned over the updates with fixed params; "
        "train = the whole make_train program (rollout and PPO update).",
        "A reset pool changes only how many resets are computed per step; with K below the "
        "number of environments finishing in a step, some of them start from the same state.",
    ]
    data = payload(
        "optimistic_reset",
        "quick" if args.quick else "full",
        settings,
        records,
        machine,
        argv=argv,
        summary=rows,
        notes=notes,
    )
    return publish(args, "optimistic_reset", data, rows, COLUMNS)


if __name__ == "__main__":
    main()
