"""Sequence tasks: learning curves of the exact-match rate, and generated tokens per second.

* ``curves``: REINFORCE, PPO and GRPO with the causal transformer on ``seq:reverse`` (5 tokens
  over a vocabulary of 5; the presets ``reinforce_copy_transformer``'s, ``ppo_reverse_
  transformer``'s and ``grpo_reverse_transformer``'s settings), each for the same number of
  generated tokens; after every tenth of the run, the exact-match rate of 512 fresh prompts
  (sampled tokens, ``jaxpg.evaluate.evaluate_task``).
* ``speed``: generated tokens per second (= env steps per second) of the whole PPO training
  program (generation and update, one minibatch, 4 epochs) at 1, 64 and 1024 sequences in
  parallel, for the transformer and for an MLP over the buffer; compile time apart.

    python benchmarks/sequence.py              # full (about 6 min on a 2-core CPU)
    python benchmarks/sequence.py --quick      # tiny, to check that it runs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402
from options import add_common_args  # noqa: E402
from report import default_out_dir, log, markdown_table, payload, write_results  # noqa: E402
from timing import time_program  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p, quick_help="tiny budgets")
    p.add_argument("--parts", nargs="+", choices=["curves", "speed"], default=["curves", "speed"])
    p.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="curves: generated tokens per method (default 128,000; quick 3,200)",
    )
    p.add_argument(
        "--num-envs",
        nargs="+",
        type=int,
        default=None,
        help="speed: sequences in parallel (default 1 64 1024)",
    )
    return p.parse_args(argv)


def method_configs(tokens: int):
    from jaxpg import presets

    # The copy preset's settings on reverse; num_steps=None again: the preset resolved it to
    # copy's 4-token episodes.
    reinforce = presets.reinforce_copy_transformer().replace(
        env="seq:reverse", env_kwargs={}, num_steps=None
    )
    ppo = presets.ppo_reverse_transformer()
    grpo = presets.grpo_reverse_transformer()
    out = {}
    for name, config in (("REINFORCE", reinforce), ("PPO", ppo), ("GRPO", grpo)):
        updates = max(10, tokens // config.batch_size // 10 * 10)
        out[name] = config.replace(total_timesteps=updates * config.batch_size)
    return out


def curves(args):
    import jax

    import jaxpg
    from jaxpg.evaluate import evaluate_task

    out = []
    for name, config in method_configs(args.tokens).items():
        chunk_updates = config.num_updates // 10
        init = jax.jit(jaxpg.make_init(config))
        chunk = jax.jit(jaxpg.make_train_chunk(config, chunk_updates))
        evaluate = jax.jit(lambda params, key, c=config: evaluate_task(c, params, key, 512))
        state = init(jax.random.key(0))
        points = [
            (
                0,
                float(
                    evaluate(jaxpg.train.policy_params(config, state), jax.random.key(1))[
                        "exact_match"
                    ]
                ),
            )
        ]
        for i in range(10):
            state, _ = chunk(state)
            stats = evaluate(jaxpg.train.policy_params(config, state), jax.random.key(i + 2))
            points.append(
                ((i + 1) * chunk_updates * config.batch_size, float(stats["exact_match"]))
            )
        log(f"{name:9s} exact match " + " ".join(f"{r:.2f}" for _, r in points))
        out.append(
            {
                "method": name,
                "algorithm": config.algorithm,
                "config": config.to_dict(),
                "tokens": [t for t, _ in points],
                "exact_match": [r for _, r in points],
                "final_exact_match": points[-1][1],
            }
        )
    return out


def speed(args):
    import jax
    from jaxpg_parts import train_program

    import jaxpg

    out = []
    for n in args.num_envs:
        for network in ("transformer", "mlp"):
            base = jaxpg.PPOConfig(
                env="seq:reverse",
                network=network,
                mode="trajectory",
                num_steps=None,
                num_envs=n,
                num_minibatches=1,
                total_timesteps=n * 5,
            )
            updates = max(2, (2**10 if args.quick else 2**14) // base.batch_size)
            config = base.replace(total_timesteps=updates * base.batch_size)
            t = time_program(train_program(config), jax.random.key(0), repeats=args.repeats or 2)
            t.pop("output")
            tokens = updates * config.batch_size
            rec = {
                "network": network,
                "num_envs": n,
                "tokens": tokens,
                **t,
                "tokens_per_s": tokens / t["steady_s"],
            }
            log(
                f"speed N={n:5d} {network:11s} compile {t['compile_s']:.1f}s "
                f"{rec['tokens_per_s']:,.0f} tokens/s"
            )
            out.append(rec)
    return out


def draw(curve_records):
    def _draw(fig):
        ax = fig.add_subplot(1, 1, 1)
        for r in curve_records:
            ax.plot(r["tokens"], r["exact_match"], "-o", ms=3, label=r["method"])
        ax.set_xlabel("generated tokens")
        ax.set_ylabel("exact-match rate (512 fresh prompts)")
        ax.set_title("seq:reverse (5 tokens, vocabulary 5), causal transformer")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend()

    return _draw


def main(argv=None):
    args = parse_args(argv)
    args.tokens = args.tokens or (3_200 if args.quick else 128_000)
    args.num_envs = args.num_envs or ([1, 8] if args.quick else [1, 64, 1024])
    results = {}
    if "curves" in args.parts:
        results["curves"] = curves(args)
    if "speed" in args.parts:
        results["speed"] = speed(args)
    data = payload(
        "sequence",
        "quick" if args.quick else "full",
        {"parts": args.parts, "tokens": args.tokens, "num_envs": args.num_envs},
        results,
        machine_info(),
        argv=argv,
        notes=[
            "curves: exact-match rate of 512 fresh prompts, sampled tokens, "
            "after every tenth of the run; seed 0.",
            "speed: PPO (mode='trajectory'), whole 5-token completions, 4 epochs "
            "of one minibatch; tokens/s = env steps / steady-state seconds.",
        ],
    )
    table = ""
    if "curves" in results:
        table += (
            markdown_table(
                results["curves"],
                [("method", "method"), ("final_exact_match", "final exact match")],
            )
            + "\n\n"
        )
    if "speed" in results:
        table += markdown_table(
            results["speed"],
            [
                ("num_envs", "sequences"),
                ("network", "policy"),
                ("compile_s", "compile s"),
                ("tokens_per_s", "tokens/s"),
                ("cores_used", "cores used"),
            ],
        )
    out_dir = args.out_dir or default_out_dir(args.quick)
    plot = None if args.no_plot or "curves" not in results else draw(results["curves"])
    paths = write_results(out_dir, args.name or "sequence", data, table, plot, figsize=(7, 4.5))
    print(table)
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return paths


if __name__ == "__main__":
    main()
