"""Sequence tasks: learning curves of the exact-match rate, and generated tokens per second.

* ``curves``: REINFORCE, PPO and GRPO with the causal transformer, each for the same number of
  generated tokens; after every tenth of the run, the exact-match rate of 512 fresh prompts
  (sampled tokens, ``jaxpg.evaluate.evaluate_task``). ``--task reverse5``: ``seq:reverse`` (5
  tokens over a vocabulary of 5; the presets ``reinforce_copy_transformer``'s, ``ppo_reverse_
  transformer``'s and ``grpo_reverse_transformer``'s settings). ``--task copy16``: ``seq:copy``
  with 16-token prompts and completions over a vocabulary of 2, the preset
  ``grpo_copy16_transformer``'s transformer (rotary positions) and batch of 128 completions
  for every method: REINFORCE and PPO (one reward per completion, moving-average baseline), and
  two GRPO variants, ``bnpo`` (the preset) and ``dr_grpo`` (mean-centred rewards, a constant
  divisor).
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
        "--task",
        choices=["reverse5", "copy16"],
        default="reverse5",
        help="curves: seq:reverse with 5 tokens, or seq:copy with 16-token completions",
    )
    p.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="curves: generated tokens per method (default 128,000 for reverse5, 204,800 for "
        "copy16; quick 3,200)",
    )
    p.add_argument(
        "--num-envs",
        nargs="+",
        type=int,
        default=None,
        help="speed: sequences in parallel (default 1 64 1024)",
    )
    return p.parse_args(argv)


def method_configs(tokens: int, task: str = "reverse5"):
    import jaxpg
    from jaxpg import presets

    if task == "copy16":
        grpo = presets.grpo_copy16_transformer()
        fields = ("env", "env_kwargs", "network", "embed_dim", "num_layers", "num_heads")
        model = {k: getattr(grpo, k) for k in fields + ("positions",)}
        one_reward = dict(mode="trajectory", num_steps=None, baseline="moving_average")
        methods = (
            ("REINFORCE", jaxpg.ReinforceConfig(**model, **one_reward, num_envs=128, lr=1e-3)),
            (
                "PPO",
                jaxpg.PPOConfig(**model, **one_reward, num_envs=128, num_minibatches=2, lr=grpo.lr),
            ),
            ("GRPO (bnpo)", grpo),
            ("GRPO (dr_grpo)", grpo.replace(loss_type="dr_grpo", advantage="mean")),
        )
    else:
        # The copy preset's settings on reverse; num_steps=None again: the preset resolved it
        # to copy's 4-token episodes.
        reinforce = presets.reinforce_copy_transformer().replace(
            env="seq:reverse", env_kwargs={}, num_steps=None
        )
        methods = (
            ("REINFORCE", reinforce),
            ("PPO", presets.ppo_reverse_transformer()),
            ("GRPO", presets.grpo_reverse_transformer()),
        )
    out = {}
    for name, config in methods:
        updates = max(10, tokens // config.batch_size // 10 * 10)
        out[name] = config.replace(total_timesteps=updates * config.batch_size)
    return out


def curves(args):
    import jax

    import jaxpg
    from jaxpg.evaluate import evaluate_task

    out = []
    for name, config in method_configs(args.tokens, args.task).items():
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


def speed_point(num_envs: int, network: str, tokens: int, repeats: int = 2) -> dict:
    """Generated tokens per second of PPO's whole training program on ``seq:reverse`` (5
    tokens), ``num_envs`` sequences in parallel, about ``tokens`` tokens; compile apart."""
    import jax
    from jaxpg_parts import train_program

    import jaxpg

    base = jaxpg.PPOConfig(
        env="seq:reverse",
        network=network,
        mode="trajectory",
        num_steps=None,
        num_envs=num_envs,
        num_minibatches=1,
        total_timesteps=num_envs * 5,
    )
    updates = max(2, tokens // base.batch_size)
    config = base.replace(total_timesteps=updates * base.batch_size)
    t = time_program(train_program(config), jax.random.key(0), repeats=repeats)
    t.pop("output")
    generated = updates * config.batch_size
    rec = {"network": network, "num_envs": num_envs, "tokens": generated, **t}
    rec["tokens_per_s"] = generated / t["steady_s"]
    log(
        f"speed N={num_envs:5d} {network:11s} compile {t['compile_s']:.1f}s "
        f"{rec['tokens_per_s']:,.0f} tokens/s"
    )
    return rec


def speed(args):
    tokens = 2**10 if args.quick else 2**14
    return [
        speed_point(n, network, tokens, args.repeats or 2)
        for n in args.num_envs
        for network in ("transformer", "mlp")
    ]


TASK_TITLES = {
    "reverse5": "seq:reverse (5 tokens, vocabulary 5), causal transformer",
    "copy16": "seq:copy (16-token completions, vocabulary 2), causal transformer",
}


def draw(curve_records, task="reverse5"):
    def _draw(fig):
        ax = fig.add_subplot(1, 1, 1)
        for r in curve_records:
            ax.plot(r["tokens"], r["exact_match"], "-o", ms=3, label=r["method"])
        ax.set_xlabel("generated tokens")
        ax.set_ylabel("exact-match rate (512 fresh prompts)")
        ax.set_title(TASK_TITLES[task])
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend()

    return _draw


def main(argv=None):
    args = parse_args(argv)
    full = 204_800 if args.task == "copy16" else 128_000
    args.tokens = args.tokens or (3_200 if args.quick else full)
    args.num_envs = args.num_envs or ([1, 8] if args.quick else [1, 64, 1024])
    results = {}
    if "curves" in args.parts:
        results["curves"] = curves(args)
    if "speed" in args.parts:
        results["speed"] = speed(args)
    data = payload(
        "sequence",
        "quick" if args.quick else "full",
        {"parts": args.parts, "task": args.task, "tokens": args.tokens, "num_envs": args.num_envs},
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
    plot = None if args.no_plot or "curves" not in results else draw(results["curves"], args.task)
    paths = write_results(out_dir, args.name or "sequence", data, table, plot, figsize=(7, 4.5))
    print(table)
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return paths


if __name__ == "__main__":
    main()
