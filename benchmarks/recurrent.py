"""Recurrent policies: what a GRU buys on partially observed tasks, and what it costs.

* ``learning``: the recurrent presets (``jaxpg.presets.ppo_cartpole_positions_gru``: CartPole-v1
  without velocities at 500k steps; ``ppo_memorychain_gru``: MemoryChain-bsuite at 200k) beside the
  same config with the feed-forward MLP (``network="mlp"``, ``hidden_sizes=(64, 64)``), at the
  same budget: final training return (mean over the last 10% of updates,
  ``jaxpg.metrics.final_return``) and the evaluation return of the final policy (64 episodes),
  per seed, ``--seeds`` seeds vmapped.
* ``speed``: env steps per second of the whole PPO training program on CartPole-v1 (full
  observations, 128 steps per rollout, 4 minibatches) for the GRU (64-unit encoder, 64-unit
  GRU) against the MLP (64, 64), at 4, 64 and 1024 envs; compile time apart.

    python benchmarks/recurrent.py             # full (about 10 min on a 2-core CPU)
    python benchmarks/recurrent.py --quick     # tiny budgets, to check that it runs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402
from options import add_common_args  # noqa: E402
from report import default_out_dir, log, markdown_table, payload, write_results  # noqa: E402
from timing import compile_program, time_call, time_program  # noqa: E402

from jaxpg.metrics import final_return  # noqa: E402

TASKS = ("ppo_cartpole_positions_gru", "ppo_memorychain_gru")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p, quick_help="tiny budgets (a few updates), 2 seeds")
    p.add_argument(
        "--parts", nargs="+", choices=["learning", "speed"], default=["learning", "speed"]
    )
    p.add_argument("--seeds", type=int, default=None, help="seeds per learning run (default 3)")
    p.add_argument(
        "--num-envs",
        nargs="+",
        type=int,
        default=None,
        help="speed: num_envs points (default 4 64 1024)",
    )
    return p.parse_args(argv)


def variants(task: str, quick: bool):
    from jaxpg import presets

    gru = getattr(presets, task)()
    if quick:
        gru = gru.replace(total_timesteps=gru.batch_size * 2)
    return {"gru": gru, "mlp": gru.replace(network="mlp", hidden_sizes=(64, 64))}


def learning(args):
    import jax
    import numpy as np

    import jaxpg
    from jaxpg.evaluate import make_evaluate

    out = []
    for task in TASKS:
        for network, config in variants(task, args.quick).items():
            keys = jax.random.split(jax.random.key(0), args.seeds)
            compiled, compile_s = compile_program(jax.vmap(jaxpg.make_train(config)), keys)
            result, run_s = time_call(compiled, keys)
            evaluate = jax.jit(jax.vmap(make_evaluate(config, 64)))
            ev = np.asarray(
                evaluate(
                    result.params, jax.random.split(jax.random.key(1), args.seeds)
                ).episode_return
            ).mean(axis=1)
            final = final_return(result.metrics["episode_return"])
            rec = {
                "task": task,
                "env": config.env_spec.name,
                "network": network,
                "total_timesteps": config.total_timesteps,
                "seeds": args.seeds,
                "final_train_return": final,
                "eval_return": ev,
                "final_train_return_mean": float(final.mean()),
                "eval_return_mean": float(ev.mean()),
                "compile_s": compile_s,
                "run_s": run_s,
                "config": config.to_dict(),
            }
            log(
                f"{rec['env']:26s} {network}: final {final.round(2)} eval {ev.round(2)} "
                f"({run_s:.1f}s)"
            )
            out.append(rec)
    return out


def speed(args):
    import jax
    from jaxpg_parts import train_program

    import jaxpg

    out = []
    for n in args.num_envs:
        for network in ("mlp", "gru"):
            net = (
                dict(network="gru", recurrent_size=64, hidden_sizes=(64,))
                if network == "gru"
                else dict(hidden_sizes=(64, 64))
            )
            batch = n * 128
            updates = max(2, (2**12 if args.quick else 2**18) // batch)
            config = jaxpg.PPOConfig(
                env="CartPole-v1",
                num_envs=n,
                num_steps=128,
                num_minibatches=4,
                total_timesteps=updates * batch,
                **net,
            )
            t = time_program(train_program(config), jax.random.key(0), repeats=args.repeats or 2)
            t.pop("output")
            steps = updates * batch
            rec = {
                "network": network,
                "num_envs": n,
                "env_steps": steps,
                **t,
                "steps_per_s": steps / t["steady_s"],
            }
            log(
                f"speed N={n:5d} {network}: compile {t['compile_s']:.1f}s "
                f"{rec['steps_per_s']:,.0f} steps/s"
            )
            out.append(rec)
    for rec in out:
        ff = next(r for r in out if r["num_envs"] == rec["num_envs"] and r["network"] == "mlp")
        rec["speed_vs_mlp"] = rec["steps_per_s"] / ff["steps_per_s"]
    return out


LEARNING_COLUMNS = [
    ("env", "env"),
    ("network", "policy"),
    ("total_timesteps", "env steps"),
    ("seeds", "seeds"),
    ("final_train_return_mean", "final train return"),
    ("eval_return_mean", "eval return"),
    ("run_s", "run s"),
]
SPEED_COLUMNS = [
    ("num_envs", "num_envs"),
    ("network", "policy"),
    ("compile_s", "compile s"),
    ("steps_per_s", "env steps/s"),
    ("speed_vs_mlp", "vs MLP"),
    ("cores_used", "cores used"),
]


def main(argv=None):
    args = parse_args(argv)
    args.seeds = args.seeds or (2 if args.quick else 3)
    args.num_envs = args.num_envs or ([4, 64] if args.quick else [4, 64, 1024])
    results = {}
    if "learning" in args.parts:
        results["learning"] = learning(args)
    if "speed" in args.parts:
        results["speed"] = speed(args)
    data = payload(
        "recurrent",
        "quick" if args.quick else "full",
        {"parts": args.parts, "seeds": args.seeds, "num_envs": args.num_envs},
        results,
        machine_info(),
        argv=argv,
        notes=[
            "learning: final train return = mean episode return over the last "
            "10% of updates (jaxpg.metrics.final_return); eval = 64 fresh episodes of the final policy, "
            "sampled actions; means over seeds (per seed in the JSON).",
            "speed: PPO CartPole-v1, 128 steps per rollout, 4 epochs x 4 "
            "minibatches; GRU = 64-unit encoder + 64-unit GRU + 64-unit heads, "
            "MLP = 64x64 actor and critic; steady = median of later calls.",
        ],
    )
    rows = []
    table = ""
    if "learning" in results:
        table += markdown_table(results["learning"], LEARNING_COLUMNS) + "\n\n"
        rows += results["learning"]
    if "speed" in results:
        table += markdown_table(results["speed"], SPEED_COLUMNS)
    out_dir = args.out_dir or default_out_dir(args.quick)
    paths = write_results(out_dir, args.name or "recurrent", data, table)
    print(table)
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return paths


if __name__ == "__main__":
    main()
