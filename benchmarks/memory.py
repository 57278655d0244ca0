"""Memory against the budget: does peak memory grow with ``total_timesteps``?

For each budget, the whole training program is compiled and XLA's memory analysis is recorded
(arguments, outputs, temporaries: bytes). With ``--run``, each budget also trains once in a fresh
process and that process's peak RSS is recorded. Only the per-update metrics (a few floats per
update) should grow with the budget.

    python benchmarks/memory.py                # PPO CartPole-v1, 2^16 .. 2^22 env steps, with --run
    python benchmarks/memory.py --quick        # two small budgets, compile only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from driver import run_child  # noqa: E402
from machine import machine_info  # noqa: E402
from options import add_common_args, add_set_arg, parse_set  # noqa: E402
from report import fmt, log, payload, publish  # noqa: E402
from timing import compile_program, memory_stats, time_call  # noqa: E402

from jaxpg import registry  # noqa: E402

FULL = dict(budgets=[2**16, 2**18, 2**20, 2**22], run=True)
QUICK = dict(budgets=[2**12, 2**14], run=False)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p, quick_help="two small budgets, compile only", repeats=False)
    p.add_argument("--algo", choices=registry.names(), default="ppo")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--budgets", nargs="+", type=int, help=f"default {FULL['budgets']}")
    p.add_argument(
        "--run",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also train each budget in a fresh process and record its peak RSS",
    )
    add_set_arg(p)
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _config(args, budget):
    import jaxpg_parts as jp

    return jp.make_config(args.algo, args.env, **parse_set(args.set)).replace(
        total_timesteps=budget
    )


def child(args) -> None:
    """Runs one budget and prints its timings (the parent reads the peak RSS from wait4)."""
    import jax
    import jaxpg_parts as jp

    config = _config(args, args.child)
    compiled, compile_s = compile_program(jp.train_program(config), jax.random.key(0))
    _, seconds = time_call(compiled, jax.random.key(0))
    print(json.dumps({"compile_s": compile_s, "run_s": seconds}))


def measure(args, budget) -> dict:
    import jax
    import jaxpg_parts as jp

    config = _config(args, budget)
    compiled, compile_s = compile_program(jp.train_program(config), jax.random.key(0))
    rec = {
        "budget": config.num_updates * config.batch_size,
        "num_updates": config.num_updates,
        "compile_s": compile_s,
        "memory": memory_stats(compiled),
    }
    for k, v in (rec["memory"] or {}).items():
        rec[k.replace("_size_in_bytes", "_mib")] = v / 2**20
    if args.run:
        argv = [
            str(Path(__file__).resolve()),
            "--child",
            str(budget),
            "--algo",
            args.algo,
            "--env",
            args.env,
            "--set",
            *args.set,
        ]
        rec.update(run_child(argv, timeout=3600))
    log(
        f"budget {rec['budget']:>10,d}: temp {rec.get('temp_mib', float('nan')):8.2f} MiB, "
        f"output {rec.get('output_mib', float('nan')):8.3f} MiB, "
        f"peak RSS {fmt(rec.get('peak_rss_mib'))} MiB"
    )
    return rec


COLUMNS = [
    ("budget", "env steps"),
    ("num_updates", "updates"),
    ("argument_mib", "args MiB"),
    ("output_mib", "outputs MiB"),
    ("temp_mib", "temporaries MiB"),
    ("peak_rss_mib", "peak RSS MiB (run)"),
    ("run_s", "run s"),
]


def draw(records):
    def _draw(fig):
        ax = fig.add_subplot(1, 1, 1)
        xs = [r["budget"] for r in records]
        for key, label in (
            ("temp_mib", "XLA temporaries"),
            ("output_mib", "XLA outputs"),
            ("peak_rss_mib", "process peak RSS"),
        ):
            ys = [r.get(key) for r in records]
            if all(y is not None for y in ys):
                ax.plot(xs, ys, "-o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("total_timesteps")
        ax.set_ylabel("MiB")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()

    return _draw


def main(argv=None):
    args = parse_args(argv)
    if args.child is not None:
        return child(args)
    preset = QUICK if args.quick else FULL
    if args.budgets is None:
        args.budgets = preset["budgets"]
    if args.run is None:
        args.run = preset["run"]
    machine = machine_info()
    records = [measure(args, b) for b in args.budgets]
    settings = {
        "algo": args.algo,
        "env": args.env,
        "budgets": args.budgets,
        "run": args.run,
        "set": args.set,
    }
    notes = [
        "XLA's memory analysis of the compiled whole-training program; peak RSS of a fresh "
        "process that compiles and runs it once (includes jax itself)."
    ]
    data = payload(
        "memory",
        "quick" if args.quick else "full",
        settings,
        records,
        machine,
        argv=argv,
        notes=notes,
    )
    return publish(args, "memory", data, records, COLUMNS, draw(records), figsize=(6, 4))


if __name__ == "__main__":
    main()
