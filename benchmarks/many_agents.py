"""Many agents: seconds per agent when N seeds train in one program (``jax.vmap`` over seeds).

For each N, one jitted program trains N agents with the same config and budget: every update
of all N runs under ``jax.vmap`` (the N initial states are built beforehand, one per seed; see
``jaxpg_parts.init_states``). Reported: compile time, steady-state seconds (a later call of the
compiled program), and seconds per agent = steady seconds / N; the speed-up is per-agent time
at N=1 over per-agent time at N. The final return is each agent's mean training episode return
over the last 10% of updates (``jaxpg.metrics.final_return``), averaged over the N agents.

    python benchmarks/many_agents.py           # full: N = 1, 2, 4, ..., 256, PPO CartPole-v1
    python benchmarks/many_agents.py --quick   # N = 1, 4, 16 at a small budget
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import loadavg, machine_info  # noqa: E402
from options import add_common_args, add_set_arg, parse_set  # noqa: E402
from report import log, mean_std, payload, publish  # noqa: E402
from timing import time_program  # noqa: E402

from jaxpg import registry  # noqa: E402
from jaxpg.metrics import final_return  # noqa: E402

FULL = dict(num_agents=[1, 2, 4, 8, 16, 32, 64, 128, 256], total_timesteps=2**17, repeats=1)
QUICK = dict(num_agents=[1, 4, 16], total_timesteps=2**12, repeats=1)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p, quick_help="N = 1, 4, 16 at a small budget")
    p.add_argument("--algo", choices=registry.names(), default="ppo")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--num-agents", nargs="+", type=int, help=f"default {FULL['num_agents']}")
    p.add_argument(
        "--total-timesteps",
        type=int,
        help=f"budget of each agent (default {FULL['total_timesteps']}, "
        f"quick {QUICK['total_timesteps']})",
    )
    p.add_argument("--num-envs", type=int, default=None, help="default: the algorithm's default")
    p.add_argument("--num-steps", type=int, default=None, help="default: the algorithm's default")
    add_set_arg(p)
    return p.parse_args(argv)


def measure(config, n, repeats):
    import jax
    import jaxpg_parts as jp

    states = jp.init_states(config, jax.random.split(jax.random.key(0), n))
    load_before = loadavg()
    t = time_program(jp.seeds_program(config), states, repeats=repeats)
    returns = t.pop("output")[0]["episode_return"]
    final = final_return(returns)  # per agent
    env_steps = config.num_updates * config.batch_size
    rec = {
        "num_agents": n,
        "env_steps_per_agent": env_steps,
        **t,
        "s_per_agent": t["steady_s"] / n,
        "steps_per_s": env_steps * n / t["steady_s"],
        "final_train_return_mean": mean_std(final)[0],
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }
    log(
        f"N={n:4d} compile {t['compile_s']:6.2f}s steady {t['steady_s']:8.3f}s "
        f"{rec['s_per_agent']:8.4f} s/agent  {rec['steps_per_s']:12,.0f} steps/s"
    )
    return rec


COLUMNS = [
    ("num_agents", "N"),
    ("compile_s", "compile s"),
    ("steady_s", "steady s"),
    ("s_per_agent", "s / agent"),
    ("speedup_per_agent", "per-agent speed-up vs N=1"),
    ("steps_per_s", "total env steps/s"),
    ("cores_used", "cores used"),
    ("final_train_return_mean", "final return"),
]


def draw(records):
    def _draw(fig):
        ax = fig.add_subplot(1, 2, 1)
        ns = [r["num_agents"] for r in records]
        ax.plot(ns, [r["s_per_agent"] for r in records], "-o")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("agents N (vmapped seeds)")
        ax.set_ylabel("seconds per agent (steady state)")
        ax.grid(True, which="both", alpha=0.3)
        ax = fig.add_subplot(1, 2, 2)
        ax.plot(ns, [r["compile_s"] for r in records], "-o")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("agents N")
        ax.set_ylabel("compile seconds")
        ax.grid(True, which="both", alpha=0.3)

    return _draw


def main(argv=None):
    args = parse_args(argv)
    preset = QUICK if args.quick else FULL
    for k in ("num_agents", "total_timesteps", "repeats"):
        if getattr(args, k) is None:
            setattr(args, k, preset[k])
    import jaxpg_parts as jp

    overrides = {
        k: v
        for k, v in (("num_envs", args.num_envs), ("num_steps", args.num_steps))
        if v is not None
    }
    overrides.update(parse_set(args.set))
    config = jp.make_config(args.algo, args.env, total_timesteps=args.total_timesteps, **overrides)
    machine = machine_info()
    records = [measure(config, n, args.repeats) for n in args.num_agents]
    base = next((r["s_per_agent"] for r in records if r["num_agents"] == 1), None)
    for r in records:
        r["speedup_per_agent"] = base / r["s_per_agent"] if base else None
    settings = {
        "algo": args.algo,
        "env": args.env,
        "num_agents": args.num_agents,
        "total_timesteps": args.total_timesteps,
        "repeats": args.repeats,
        "config": config.to_dict(),
    }
    notes = [
        f"{args.algo} on {args.env}, {config.num_updates} updates of {config.batch_size} "
        f"env steps per agent; s / agent = steady-state seconds of the vmapped program / N.",
        "final return: per agent, the mean training episode return over the last 10% of updates "
        "(jaxpg.metrics.final_return), then the mean over agents.",
    ]
    data = payload(
        "many_agents",
        "quick" if args.quick else "full",
        settings,
        records,
        machine,
        argv=argv,
        notes=notes,
    )
    return publish(args, "many_agents", data, records, COLUMNS, draw(records))


if __name__ == "__main__":
    main()
