"""When does critic-free pay? GRPO with each group advantage beside PPO and REINFORCE, at equal
budgets, on CartPole-v1 and Acrobot-v1.

Every method runs the same number of env steps with its preset's other settings (GRPO: 4 groups
of 8 whole episodes; PPO: the defaults; REINFORCE: the learned-baseline preset). The figure is
the final return (the mean training episode return over the last 10% of updates,
``jaxpg.metrics.final_return``), mean and std over seeds, all seeds vmapped in one program per
method, and the wall time of that program (compile included).

    python benchmarks/group_relative.py --seeds 3 --total-timesteps 1000000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402
from options import add_common_args  # noqa: E402
from report import fmt_mean_std, log, mean_std, payload, publish  # noqa: E402

from jaxpg.metrics import final_return  # noqa: E402

METHODS = ("grpo-std", "grpo-mean", "grpo-leave_one_out", "ppo", "reinforce")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p, quick_help="a tiny budget, one env", repeats=False)
    p.add_argument("--envs", nargs="+", default=["CartPole-v1", "Acrobot-v1"])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--total-timesteps", type=int, default=1_000_000)
    return p.parse_args(argv)


def method_config(method: str, env: str, budget: int):
    import jaxpg
    from jaxpg import presets

    if method.startswith("grpo-"):
        return jaxpg.GRPOConfig(env=env, advantage=method[5:], total_timesteps=budget)
    if method == "ppo":
        return presets.ppo_cartpole().replace(env=env, total_timesteps=budget)
    return presets.reinforce_cartpole().replace(env=env, total_timesteps=budget)


def main(argv=None):
    args = parse_args(argv)
    import jax

    import jaxpg

    envs = args.envs[:1] if args.quick else args.envs
    budget = 4 * 8 * 500 * 2 if args.quick else args.total_timesteps
    rows, results = [], []
    for env in envs:
        for method in args.methods:
            config = method_config(method, env, budget)
            keys = jax.random.split(jax.random.key(0), args.seeds)
            start = time.perf_counter()
            out = jax.block_until_ready(jax.jit(jax.vmap(jaxpg.make_train(config)))(keys))
            wall = time.perf_counter() - start
            per_seed = final_return(out.metrics["episode_return"])
            mean, std = mean_std(per_seed.tolist())
            row = {
                "env": env,
                "method": method,
                "budget": config.num_updates * config.batch_size,
                "final_return": fmt_mean_std(mean, std),
                "per_seed": ", ".join(f"{x:.1f}" for x in per_seed),
                "wall_s": wall,
            }
            rows.append(row)
            results.append(
                {
                    **row,
                    "mean": mean,
                    "std": std,
                    "per_seed_values": per_seed.tolist(),
                    "config": config.to_dict(),
                }
            )
            log(f"{env} {method}: {row['final_return']} ({wall:.1f} s)")
    data = payload(
        "group_relative",
        "quick" if args.quick else "full",
        vars(args),
        results,
        machine_info(),
    )
    columns = [
        ("env", "env"),
        ("method", "method"),
        ("budget", "env steps"),
        ("final_return", "final return (mean ± std over seeds)"),
        ("per_seed", "per seed"),
        ("wall_s", "wall s (compile included)"),
    ]
    publish(args, "group_relative", data, rows, columns)


if __name__ == "__main__":
    main()
