"""Throughput: env steps per second of jaxpg's training program against ``num_envs``.

For each algorithm, environment and ``num_envs`` it measures up to three programs (``--parts``):

* ``train``: the whole training program (``jaxpg.make_train``: rollout and update together);
* ``rollout``: the rollouts alone, with fixed parameters;
* ``update``: the update alone (advantages and the minibatch epochs) on one fixed batch;

each with its compile time (lower + compile) reported apart from the steady state (a later call
of the compiled program, up to ``block_until_ready``). Env steps per second = env steps of the
program / steady-state seconds. The rollout and update shares say where the time goes.

    python benchmarks/throughput.py            # full: 4..4096 envs, PPO and REINFORCE,
                                               # CartPole-v1 and Breakout-MinAtar
    python benchmarks/throughput.py --quick    # a small sweep, a minute or two on a CPU
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import loadavg, machine_info  # noqa: E402
from options import add_common_args, add_set_arg, parse_set  # noqa: E402
from report import log, payload, publish  # noqa: E402
from timing import time_program  # noqa: E402

from jaxpg import registry  # noqa: E402

FULL = dict(
    algos=["ppo", "reinforce"],
    envs=["CartPole-v1", "Breakout-MinAtar"],
    num_envs=[4, 16, 64, 256, 1024, 4096],
    steps_per_point=2**19,
    min_updates=2,
    repeats=2,
)
QUICK = dict(
    algos=["ppo", "reinforce"],
    envs=["CartPole-v1", "Breakout-MinAtar"],
    num_envs=[4, 256],
    steps_per_point=2**15,
    min_updates=2,
    repeats=1,
)
PARTS = ("train", "rollout", "update")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p, quick_help="small sweep (seconds per point) instead of the full one")
    p.add_argument(
        "--algos",
        nargs="+",
        choices=registry.names(),
        help=f"default {FULL['algos']}",
    )
    p.add_argument("--envs", nargs="+", help=f"gymnax env names (default {FULL['envs']})")
    p.add_argument("--num-envs", nargs="+", type=int, help=f"default {FULL['num_envs']}")
    p.add_argument("--num-steps", type=int, default=128, help="rollout length T (default 128)")
    p.add_argument(
        "--steps-per-point",
        type=int,
        help=f"env steps per measured program, rounded to whole updates "
        f"(default {FULL['steps_per_point']}, quick {QUICK['steps_per_point']})",
    )
    p.add_argument("--min-updates", type=int, help="at least this many updates per program")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    add_set_arg(p)
    return p.parse_args(argv)


def point_config(algo, env, num_envs, args):
    """The config of one point: ``max(min_updates, steps_per_point // batch)`` updates."""
    import jaxpg_parts as jp

    batch = num_envs * args.num_steps
    num_updates = max(args.min_updates, args.steps_per_point // batch)
    # The budget is set up front: the config's default (500k steps) is less than one update
    # at 4096 envs, which its validation refuses.
    return jp.make_config(
        algo,
        env,
        **{
            **parse_set(args.set),
            "num_envs": num_envs,
            "num_steps": args.num_steps,
            "total_timesteps": num_updates * batch,
        },
    )


def measure_point(algo, env, num_envs, args, parts):
    import jax
    import jaxpg_parts as jp

    config = point_config(algo, env, num_envs, args)
    num_updates = config.num_updates
    env_steps = num_updates * config.batch_size
    key = jax.random.key(0)
    out = []
    state = jp.init_state(config, key) if {"rollout", "update"} & set(parts) else None
    for part in parts:
        load_before = loadavg()
        if part == "train":
            t = time_program(jp.train_program(config), key, repeats=args.repeats)
        elif part == "rollout":
            t = time_program(jp.rollout_program(config, num_updates), state, repeats=args.repeats)
        else:
            batch = jp.one_batch(config, state)
            t = time_program(
                jp.update_program(config, num_updates), state, batch, repeats=args.repeats
            )
            del batch
        t.pop("output")
        rec = {
            "algorithm": algo,
            "env": env,
            "num_envs": num_envs,
            "num_steps": config.num_steps,
            "part": part,
            "num_updates": num_updates,
            "batch_size": config.batch_size,
            "env_steps": env_steps,
            **t,
            "steps_per_s": env_steps / t["steady_s"],
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
        }
        log(
            f"{algo:9s} {env:18s} N={num_envs:5d} {part:8s} compile {t['compile_s']:6.2f}s "
            f"steady {t['steady_s']:7.3f}s  {rec['steps_per_s']:12,.0f} steps/s"
        )
        out.append(rec)
    out[0]["config"] = config.to_dict()
    return out


def summarize(records):
    """One row per (algorithm, env, num_envs): the parts side by side, and the time split."""
    rows = {}
    for r in records:
        row = rows.setdefault(
            (r["algorithm"], r["env"], r["num_envs"]),
            {
                "algorithm": r["algorithm"],
                "env": r["env"],
                "num_envs": r["num_envs"],
                "env_steps": r["env_steps"],
            },
        )
        row[f"{r['part']}_sps"] = r["steps_per_s"]
        row[f"{r['part']}_s"] = r["steady_s"]
        row[f"{r['part']}_compile_s"] = r["compile_s"]
        row[f"{r['part']}_cores"] = r.get("cores_used")
        row[f"{r['part']}_cpu_us_per_step"] = 1e6 * r["steady_cpu_s"] / r["env_steps"]
    for row in rows.values():
        if "rollout_s" in row and "update_s" in row:
            both = row["rollout_s"] + row["update_s"]
            row["rollout_share"] = row["rollout_s"] / both
            row["update_share"] = row["update_s"] / both
            if "train_s" in row:
                row["parts_over_train"] = both / row["train_s"]
            cpu = row["rollout_cpu_us_per_step"] + row["update_cpu_us_per_step"]
            row["rollout_cpu_share"] = row["rollout_cpu_us_per_step"] / cpu
    return list(rows.values())


COLUMNS = [
    ("algorithm", "algo"),
    ("env", "env"),
    ("num_envs", "num_envs"),
    ("env_steps", "env steps"),
    ("train_compile_s", "compile s"),
    ("train_sps", "train steps/s"),
    ("rollout_sps", "rollout steps/s"),
    ("update_sps", "update steps/s"),
    ("rollout_share", "rollout share"),
    ("update_share", "update share"),
    ("parts_over_train", "(rollout+update)/train"),
    ("train_cores", "cores used (train)"),
    ("update_cores", "cores used (update)"),
    ("train_cpu_us_per_step", "train CPU µs/step"),
    ("rollout_cpu_share", "rollout share of CPU time"),
]


def draw(rows):
    def _draw(fig):
        envs = sorted({r["env"] for r in rows})
        for i, env in enumerate(envs):
            ax = fig.add_subplot(1, len(envs), i + 1)
            for algo in sorted({r["algorithm"] for r in rows}):
                sel = sorted(
                    (r for r in rows if r["env"] == env and r["algorithm"] == algo),
                    key=lambda r: r["num_envs"],
                )
                for part, style in (("train", "-o"), ("rollout", "--^"), ("update", ":v")):
                    pts = [(r["num_envs"], r[f"{part}_sps"]) for r in sel if f"{part}_sps" in r]
                    if pts:
                        ax.plot(*zip(*pts), style, label=f"{algo} {part}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("num_envs")
            ax.set_ylabel("env steps / s (steady state)")
            ax.set_title(env)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)

    return _draw


def resolve_args(argv=None):
    """The parsed arguments, with the full or quick preset filling what was not given."""
    args = parse_args(argv)
    preset = QUICK if args.quick else FULL
    for k in ("algos", "envs", "num_envs", "steps_per_point", "min_updates", "repeats"):
        if getattr(args, k, None) is None:
            setattr(args, k, preset[k])
    return args


def main(argv=None):
    args = resolve_args(argv)
    machine = machine_info()
    records = []
    for algo in args.algos:
        for env in args.envs:
            for n in args.num_envs:
                records.extend(measure_point(algo, env, n, args, args.parts))
    rows = summarize(records)
    settings = {
        k: getattr(args, k)
        for k in (
            "algos",
            "envs",
            "num_envs",
            "num_steps",
            "steps_per_point",
            "min_updates",
            "repeats",
            "parts",
            "set",
        )
    }
    notes = [
        "steps/s = env steps of the program / steady-state seconds (median of the timed calls "
        "after the first); compile = lower + compile.",
        "rollout: rollouts with fixed params; update: advantages + minibatch epochs on one fixed "
        "batch; shares are of rollout + update wall time (CPU-time share beside it: it is less "
        "disturbed by other load on the machine).",
    ]
    data = payload(
        "throughput",
        "quick" if args.quick else "full",
        settings,
        records,
        machine,
        argv=argv,
        summary=rows,
        notes=notes,
    )
    return publish(args, "throughput", data, rows, COLUMNS, draw(rows), figsize=(12, 4.5))


if __name__ == "__main__":
    main()
