"""Learning: the final return at a fixed budget, mean ± std over seeds, beside published references.

Each environment trains ``--seeds`` agents in one program (``jax.vmap`` over seeds) with the
config in ``SPECS``. Two final returns are reported per seed, then mean ± std, median and
interquartile mean over seeds:

* ``final train return``: the mean training ``episode_return`` over the last 10% of updates
  (``jaxpg.metrics.final_return``, jaxpg's one definition);
* ``eval return``: the mean return of ``--eval-episodes`` fresh episodes of the final policy,
  actions sampled as in training.

References (PPO): gymnax-blines (CartPole 500 at 150k steps, Acrobot -78.9 at 500k, Pendulum
-200.6 at 1M, Breakout-MinAtar 43.4 and SpaceInvaders-MinAtar 131.6 at 10M), gymnax's README
(MinAtar at 10M: Asterix 15, Breakout 28, Freeway 58, SpaceInvaders 131) and CleanRL (CartPole
490 ± 6, Acrobot -86 ± 1, both at 500k). A budget that differs from a reference's is shown beside
it: compare at equal budgets only. MinAtar runs the presets ``jaxpg.presets.ppo_minatar(game,
--network, --settings)`` (``--settings gymnax-blines``, the default, or ``purejaxrl``;
``--network cnn``: the MinAtar paper's conv torso).

    python benchmarks/learning.py              # full: CartPole, Acrobot, Pendulum, Breakout-MinAtar
    python benchmarks/learning.py --quick      # the same at a tenth of the budget, 2 seeds
    python benchmarks/learning.py --envs Asterix-MinAtar Breakout-MinAtar Freeway-MinAtar \
        SpaceInvaders-MinAtar --seeds 3 --total-timesteps 10000000 [--network cnn]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402
from options import add_common_args, add_set_arg, parse_set  # noqa: E402
from report import fmt, fmt_mean_std, log, mean_std, median_iqm, payload, publish  # noqa: E402
from timing import compile_program, time_call  # noqa: E402

from jaxpg.metrics import final_return  # noqa: E402

# Per environment: the PPO config's overrides and the budget (env steps). MinAtar's budget is
# 10M on a GPU (the references' budget) and smaller on a CPU, where 10M takes too long.
PENDULUM_OVERRIDES = dict(
    num_envs=16,
    num_steps=128,
    num_epochs=10,
    num_minibatches=8,
    lr=1e-3,
    gamma=0.95,
    ent_coef=0.0,
    normalize_rewards=True,
)
SPECS = {
    "CartPole-v1": dict(overrides={}, budget=500_000),
    "Acrobot-v1": dict(overrides={}, budget=500_000),
    # The CI-tested preset (jaxpg/presets.py), so the benchmark and the learning test agree.
    "Pendulum-v1": dict(overrides=PENDULUM_OVERRIDES, budget=1_000_000),
    **{
        f"{game}-MinAtar": dict(preset=game, budget=10_000_000, cpu_budget=2_000_000)
        for game in ("Asterix", "Breakout", "Freeway", "SpaceInvaders")
    },
}

REFERENCES = {
    "CartPole-v1": [
        dict(source="gymnax-blines", mean=500.0, steps=150_000),
        dict(source="CleanRL", mean=490.0, std=6.0, steps=500_000),
    ],
    "Acrobot-v1": [
        dict(source="gymnax-blines", mean=-78.9, steps=500_000),
        dict(source="CleanRL", mean=-86.0, std=1.0, steps=500_000),
    ],
    "Pendulum-v1": [dict(source="gymnax-blines", mean=-200.6, steps=1_000_000)],
    "Asterix-MinAtar": [dict(source="gymnax README", mean=15.0, steps=10_000_000)],
    "Breakout-MinAtar": [
        dict(source="gymnax-blines", mean=43.4, steps=10_000_000),
        dict(source="gymnax README", mean=28.0, steps=10_000_000),
    ],
    "Freeway-MinAtar": [dict(source="gymnax README", mean=58.0, steps=10_000_000)],
    "SpaceInvaders-MinAtar": [
        dict(source="gymnax-blines", mean=131.6, steps=10_000_000),
        dict(source="gymnax README", mean=131.0, steps=10_000_000),
    ],
}

FULL = dict(
    envs=["CartPole-v1", "Acrobot-v1", "Pendulum-v1", "Breakout-MinAtar"],
    seeds=5,
    budget_scale=1.0,
    eval_episodes=64,
)
QUICK = dict(envs=FULL["envs"], seeds=2, budget_scale=0.1, eval_episodes=16)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(
        p, quick_help="a tenth of each budget, 2 seeds, 16 eval episodes", repeats=False
    )
    p.add_argument("--envs", nargs="+", choices=sorted(SPECS), help=f"default {FULL['envs']}")
    p.add_argument("--seeds", type=int, help=f"seeds per env (default {FULL['seeds']})")
    p.add_argument(
        "--total-timesteps",
        type=int,
        default=None,
        help="one budget for every env (default: each env's own, see SPECS)",
    )
    p.add_argument("--budget-scale", type=float, help="multiply each env's budget")
    p.add_argument("--eval-episodes", type=int)
    p.add_argument(
        "--network",
        choices=["mlp", "cnn"],
        default="mlp",
        help="MinAtar presets' torso (default mlp: 2x256 relu, 2x64 with --settings purejaxrl)",
    )
    p.add_argument(
        "--settings",
        choices=["gymnax-blines", "purejaxrl"],
        default="gymnax-blines",
        help="MinAtar presets' PPO settings (jaxpg.presets.ppo_minatar)",
    )
    add_set_arg(p)
    return p.parse_args(argv)


def budget_for(env: str, args, backend: str) -> int:
    if args.total_timesteps is not None:
        return args.total_timesteps
    spec = SPECS[env]
    base = spec["budget"] if backend == "gpu" else spec.get("cpu_budget", spec["budget"])
    return int(base * args.budget_scale)


def run_env(env, args, backend):
    import jax
    import jax.numpy as jnp
    import jaxpg_parts as jp
    import numpy as np

    import jaxpg
    from jaxpg import presets

    spec = SPECS[env]
    overrides = dict(spec.get("overrides", {}))
    overrides.update(parse_set(args.set))
    budget = budget_for(env, args, backend)
    if "preset" in spec:
        probe = presets.ppo_minatar(spec["preset"], args.network, args.settings).replace(
            **overrides
        )
    else:
        probe = jp.make_config("ppo", env, **overrides)
    # Keep the budget a whole number of updates (and at least one).
    budget = max(probe.batch_size, budget // probe.batch_size * probe.batch_size)
    config = probe.replace(total_timesteps=budget)
    evaluate = jax.vmap(jp.evaluate_program(config, args.eval_episodes))
    keys = jax.random.split(jax.random.key(0), args.seeds)
    states = jp.init_states(config, keys)
    compiled, compile_s = compile_program(jp.seeds_program(config), states)
    (metrics, state), run_s = time_call(compiled, states)
    params = jaxpg.train.policy_params(config, state)
    eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    eval_compiled, eval_compile_s = compile_program(evaluate, params, eval_keys)
    eval_ret, eval_s = time_call(eval_compiled, params, eval_keys)
    ep_ret, env_steps, nonfinite = (
        metrics[k] for k in ("episode_return", "env_steps", "nonfinite")
    )
    env_steps = env_steps[0]
    final = final_return(ep_ret)
    eval_per_seed = np.asarray(jnp.mean(eval_ret, axis=-1))
    train_mean, train_std = mean_std(final)
    eval_mean, eval_std = mean_std(eval_per_seed)
    train_median, train_iqm = median_iqm(final)
    eval_median, eval_iqm = median_iqm(eval_per_seed)
    curve = np.asarray(ep_ret)
    stride = max(1, curve.shape[1] // 200)
    with warnings.catch_warnings():  # updates where no seed finished an episode are NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        curve_mean, curve_std = np.nanmean(curve, axis=0), np.nanstd(curve, axis=0)
    rec = {
        "env": env,
        "algorithm": "ppo",
        "budget": budget,
        "seeds": args.seeds,
        "config": config.to_dict(),
        "compile_s": compile_s,
        "run_s": run_s,
        "eval_compile_s": eval_compile_s,
        "eval_s": eval_s,
        "final_train_return": final,
        "eval_return": eval_per_seed,
        "final_train_return_mean": train_mean,
        "final_train_return_std": train_std,
        "eval_return_mean": eval_mean,
        "eval_return_std": eval_std,
        "final_train_return_median": train_median,
        "final_train_return_iqm": train_iqm,
        "eval_return_median": eval_median,
        "eval_return_iqm": eval_iqm,
        "nonfinite_updates": int(np.sum(np.asarray(nonfinite))),
        "curve_env_steps": np.asarray(env_steps)[::stride],
        "curve_return_mean": curve_mean[::stride],
        "curve_return_std": curve_std[::stride],
        "references": REFERENCES.get(env, []),
    }
    log(
        f"{env:22s} budget {budget:>10,d}  train {fmt_mean_std(train_mean, train_std)}"
        f"  eval {fmt_mean_std(eval_mean, eval_std)} (median {fmt(eval_median)}, IQM {fmt(eval_iqm)})"
        f"  compile {compile_s:.1f}s run {run_s:.1f}s"
    )
    return rec


def _ref_text(ref) -> str:
    std = f" ± {fmt(ref['std'])}" if ref.get("std") is not None else ""
    return f"{ref['source']}: {fmt(ref['mean'])}{std} @ {ref['steps'] / 1e6:g}M"


def table_rows(records):
    rows = []
    for r in records:
        rows.append(
            {
                "env": r["env"],
                "budget": f"{r['budget'] / 1e6:g}M",
                "seeds": r["seeds"],
                "train": fmt_mean_std(r["final_train_return_mean"], r["final_train_return_std"]),
                "eval": fmt_mean_std(r["eval_return_mean"], r["eval_return_std"]),
                "eval_median": r["eval_return_median"],
                "eval_iqm": r["eval_return_iqm"],
                "refs": "; ".join(_ref_text(x) for x in r["references"]) or "-",
                "run_s": r["run_s"],
                "compile_s": r["compile_s"],
            }
        )
    return rows


COLUMNS = [
    ("env", "env"),
    ("budget", "budget"),
    ("seeds", "seeds"),
    ("train", "final train return"),
    ("eval", "eval return"),
    ("eval_median", "eval median"),
    ("eval_iqm", "eval IQM"),
    ("refs", "published PPO references"),
    ("compile_s", "compile s"),
    ("run_s", "run s"),
]


def draw(records):
    def _draw(fig):
        for i, r in enumerate(records):
            ax = fig.add_subplot(1, len(records), i + 1)
            # Updates in which no episode ended have no return: drop them, join the rest.
            pts = [
                (float(a), float(b), float(c))
                for a, b, c in zip(
                    r["curve_env_steps"], r["curve_return_mean"], r["curve_return_std"]
                )
                if b is not None and b == b
            ]
            x, m, s = (list(v) for v in zip(*pts)) if pts else ([], [], [])
            ax.plot(x, m, label="jaxpg PPO")
            ax.fill_between(
                x, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], alpha=0.25
            )
            for ref in r["references"]:
                if ref["steps"] <= r["budget"] * 1.001:
                    ax.axhline(ref["mean"], ls="--", lw=0.8, color="gray")
                    ax.annotate(ref["source"], (x[0] if x else 0, ref["mean"]), fontsize=7)
            ax.set_title(f"{r['env']} ({r['seeds']} seeds)", fontsize=9)
            ax.set_xlabel("env steps")
            ax.set_ylabel("training episode return")
            ax.grid(True, alpha=0.3)

    return _draw


def main(argv=None):
    args = parse_args(argv)
    preset = QUICK if args.quick else FULL
    for k in ("envs", "seeds", "budget_scale", "eval_episodes"):
        if getattr(args, k, None) is None:
            setattr(args, k, preset.get(k))
    machine = machine_info()
    backend = machine["backend"] or "cpu"
    start = time.perf_counter()
    records = [run_env(env, args, backend) for env in args.envs]
    settings = {
        k: getattr(args, k)
        for k in (
            "envs",
            "seeds",
            "budget_scale",
            "eval_episodes",
            "total_timesteps",
            "set",
            "network",
            "settings",
        )
    }
    notes = [
        "final train return: mean training episode return over the last 10% of updates "
        "(jaxpg.metrics.final_return); eval return: mean over fresh episodes of the final policy "
        "(sampled actions); mean ± std over seeds, and the eval return's median and "
        "interquartile mean (report.median_iqm).",
        "A reference at another budget is not a like-for-like comparison.",
    ]
    short = [e for e in args.envs if budget_for(e, args, backend) < SPECS[e]["budget"]]
    if short:
        notes.append(
            f"{', '.join(short)} ran below the published budget (a CPU budget, --budget-scale "
            "or --total-timesteps): those references are not comparable; rerun at the full "
            "budget (on a GPU for MinAtar's 10M)."
        )
    data = payload(
        "learning",
        "quick" if args.quick else "full",
        settings,
        records,
        machine,
        argv=argv,
        notes=notes,
        wall_s=time.perf_counter() - start,
    )
    return publish(
        args,
        "learning",
        data,
        table_rows(records),
        COLUMNS,
        draw(records),
        figsize=(4 * max(len(records), 1), 3.8),
    )


if __name__ == "__main__":
    main()
