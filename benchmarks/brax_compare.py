"""jaxpg's PPO beside Brax's own PPO trainer: one Brax environment, the same settings, budget and
machine, in one run.

Each round runs both trainers, each in a fresh process, in alternating order (so load on the
machine hits both alike): Brax's ``ppo.train`` through ``brax_reference.py`` in its own venv
(``--brax-python``; Brax's trainer does not run on jax 0.10, see that script's docstring), and
jaxpg's PPO here. Both train ``num_evals - 1`` epochs of equal size and evaluate between them with
``num_eval_envs`` fresh episodes (sampled actions unless ``--deterministic-eval``), so the
returns are compared at the same env steps. Reported per side:

- ``train env steps/s``: training env steps / training seconds, the first epoch (which compiles)
  and every evaluation excluded: Brax's own ``training/walltime`` clock, and the same clock
  around jaxpg's compiled chunks;
- ``compile s``: first epoch's seconds minus a compile-free epoch's, for both sides alike
  (jaxpg's ahead-of-time compile of the chunk is recorded beside it as ``aot_compile_s``);
- the evaluation return at every progress point, and at the last.

The settings are Brax's ``ppo.train`` arguments (see ``brax_reference.py``); jaxpg gets them
as ``PPOConfig`` fields: one update collects ``batch_size * num_minibatches`` unrolls of
``unroll_length`` steps as one rollout of ``num_steps = unroll_length * batch_size *
num_minibatches / num_envs`` steps from ``num_envs`` envs, ``num_updates_per_batch`` epochs of
``num_minibatches`` minibatches, GAE 0.95, clip 0.3, no LR schedule, no gradient clipping
(Brax's default; ``max_grad_norm=1e10`` in jaxpg), the same layer sizes and swish. What stays each
trainer's own: Brax's tanh-squashed Gaussian policy with a learned scalar std against jaxpg's
Gaussian with a state-independent log-std (actions clipped to the bounds); Brax's GAE per unroll
against jaxpg's over the whole rollout; and the time limit: Brax zeroes the TD error of a
truncated step (``bootstrap_on_timeout=False``, its default), jaxpg bootstraps it from
V(final observation).

Each round trains the next seed (``--seed``, ``--seed + 1``, ...) on both sides, so the returns
are over seeds and the rates over rounds.

    python benchmarks/brax_compare.py                 # inverted_pendulum, spring, 600k steps
    python benchmarks/brax_compare.py --quick         # 100k steps, one round
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from machine import DEFAULT_PACKAGES, machine_info  # noqa: E402
from options import add_common_args  # noqa: E402
from report import fmt, log, payload, publish  # noqa: E402

HERE = Path(__file__).resolve().parent
BRAX_PYTHON = "/work/brax-ref-venv/bin/python"
# Brax's ppo.train arguments shared by both sides (the flag is the argument's name)
SHARED = {
    "env": "inverted_pendulum",
    "backend": "spring",
    "num_timesteps": 600_000,
    "num_envs": 64,
    "unroll_length": 20,
    "batch_size": 32,
    "num_minibatches": 4,
    "num_updates_per_batch": 4,
    "discounting": 0.99,
    "learning_rate": 3e-3,
    "entropy_cost": 1e-3,
    "reward_scaling": 1.0,
    "episode_length": 1000,
    "num_evals": 11,
    "num_eval_envs": 16,
    "hidden": "64,64",
}
QUICK = {"num_timesteps": 100_000, "num_evals": 3}
COLUMNS = [
    ("trainer", "trainer"),
    ("train_sps", "train env steps/s"),
    ("vs_brax", "vs Brax"),
    ("compile_s", "compile s"),
    ("final_return", "eval return at the end, per seed"),
    ("curve_mean", "eval return, mean over seeds and progress points"),
    ("env_steps", "env steps"),
    ("rounds", "rounds"),
]


def add_shared_args(p: argparse.ArgumentParser) -> None:
    for name, value in SHARED.items():
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=None)
    p.add_argument("--normalize-observations", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--deterministic-eval", action=argparse.BooleanOptionalAction, default=False)


def brax_step(args) -> int:
    """Env steps per Brax training step, and per jaxpg update."""
    return args.batch_size * args.num_minibatches * args.unroll_length


def schedule(args) -> tuple[int, int]:
    """``(epochs, updates per epoch)`` as Brax's trainer computes them."""
    epochs = max(args.num_evals - 1, 1)
    return epochs, math.ceil(args.num_timesteps / (epochs * brax_step(args)))


def jaxpg_config(args):
    from jaxpg import PPOConfig

    step = brax_step(args)
    if step % args.num_envs:
        raise ValueError(
            f"batch_size * num_minibatches * unroll_length = {step} is not a multiple of "
            f"num_envs={args.num_envs}"
        )
    epochs, per_epoch = schedule(args)
    hidden = tuple(int(x) for x in args.hidden.split(","))
    return PPOConfig(
        env=f"brax:{args.env}",
        env_kwargs={"backend": args.backend, "episode_length": args.episode_length},
        total_timesteps=epochs * per_epoch * step,
        num_envs=args.num_envs,
        num_steps=step // args.num_envs,
        num_minibatches=args.num_minibatches,
        num_epochs=args.num_updates_per_batch,
        lr=args.learning_rate,
        anneal_lr=False,
        gamma=args.discounting,
        gae_lambda=0.95,
        clip_eps=0.3,
        ent_coef=args.entropy_cost,
        vf_coef=0.5,
        max_grad_norm=1e10,  # no clipping (Brax's default): jaxpg needs a finite bound
        reward_scale=args.reward_scaling,
        normalize_obs=args.normalize_observations,
        hidden_sizes=hidden,
        activation="swish",
    )


def run_jaxpg(args) -> dict:
    """One jaxpg run in this process, timed like ``brax_reference.py`` times Brax's."""
    import jax
    import numpy as np

    import jaxpg
    from jaxpg.evaluate import make_evaluate

    t_setup = time.perf_counter()
    config = jaxpg_config(args)
    epochs, per_epoch = schedule(args)
    key = jax.random.key(args.seed)
    state = jax.jit(lambda k: jaxpg.init_state(config, k))(key)
    chunk = jax.jit(jaxpg.make_train_chunk(config, per_epoch))
    evaluate = jax.jit(
        make_evaluate(config, args.num_eval_envs, deterministic=args.deterministic_eval)
    )
    setup_s = time.perf_counter() - t_setup
    progress, train_walltime = [], 0.0
    t0 = time.perf_counter()

    def record(env_steps, state, metrics=None):
        params = jaxpg.policy_params(config, state)
        start = time.perf_counter()
        result = jax.block_until_ready(evaluate(params, jax.random.fold_in(key, env_steps)))
        returns = np.asarray(result.episode_return)
        entry = {
            "env_steps": int(env_steps),
            "eval_return": float(returns.mean()),
            "eval_return_std": float(returns.std()),
            "wall_s": time.perf_counter() - t0,
            "train_walltime_s": train_walltime,
            "eval_walltime_s": time.perf_counter() - start,
        }
        if metrics is not None:
            entry["train_episode_return"] = float(np.asarray(metrics["episode_return"])[-1])
        progress.append(entry)
        print(json.dumps(entry), flush=True)

    record(0, state)
    start = time.perf_counter()
    compiled = chunk.lower(state).compile()
    aot_compile_s = time.perf_counter() - start
    train_walltime += aot_compile_s  # the first epoch compiles, as Brax's does
    for epoch in range(epochs):
        start = time.perf_counter()
        state, metrics = jax.block_until_ready(compiled(state))
        train_walltime += time.perf_counter() - start
        record((epoch + 1) * per_epoch * config.batch_size, state, metrics)
    return summarize_progress(
        args,
        progress,
        setup_s=setup_s,
        total_wall_s=time.perf_counter() - t0,
        aot_compile_s=aot_compile_s,
    )


def summarize_progress(args, progress: list[dict], **extra) -> dict:
    """The figures both sides report, from their progress calls (the same formulas)."""
    first, second, last = progress[0], progress[1], progress[-1]
    epoch_steps = second["env_steps"] - first["env_steps"]
    out = {"progress": progress, "env_steps_total": last["env_steps"], **extra}
    if len(progress) >= 3:
        steady = (last["train_walltime_s"] - second["train_walltime_s"]) / (len(progress) - 2)
        out["train_sps_excl_compile"] = epoch_steps / steady
        out["compile_s"] = second["train_walltime_s"] - first["train_walltime_s"] - steady
    return out


def run_brax(args, out: Path) -> dict:
    cmd = [args.brax_python, str(HERE / "brax_reference.py"), "--out", str(out)]
    for name in SHARED:
        if name == "hidden":
            cmd += ["--policy-hidden", args.hidden, "--value-hidden", args.hidden]
        else:
            cmd += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    for flag in ("normalize_observations", "deterministic_eval"):
        cmd.append(("--" if getattr(args, flag) else "--no-") + flag.replace("_", "-"))
    cmd += ["--seed", str(args.seed)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    ref = json.loads(out.read_text())
    return {**summarize_progress(args, ref["progress"]), "reference": ref}


def run_side(side: str, args, tmp: Path, seed: int) -> dict:
    """One side in a fresh process: its own compile, nothing cached from the other rounds."""
    args = argparse.Namespace(**{**vars(args), "seed": seed})
    out = tmp / f"{side}.json"
    if side == "brax":
        return run_brax(args, out)
    cmd = [sys.executable, __file__, "--side", "jaxpg", "--side-out", str(out)]
    cmd += [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in SHARED]
    for flag in ("normalize_observations", "deterministic_eval"):
        cmd.append(("--" if getattr(args, flag) else "--no-") + flag.replace("_", "-"))
    cmd += ["--seed", str(args.seed)]
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return json.loads(out.read_text())


def rows_of(records: list[dict]) -> list[dict]:
    rows = []
    best = {}
    for trainer in ("brax", "jaxpg"):
        mine = [r for r in records if r["trainer"] == trainer]
        best[trainer] = max(r["train_sps_excl_compile"] for r in mine)  # least disturbed round
        finals = [r["progress"][-1]["eval_return"] for r in mine]
        rows.append(
            {
                "trainer": {"brax": "Brax ppo.train", "jaxpg": "jaxpg PPO"}[trainer],
                "train_sps": fmt(best[trainer]),
                "compile_s": fmt(min(r["compile_s"] for r in mine)),
                "final_return": " / ".join(f"{x:.0f}" for x in finals),
                "curve_mean": f"{np.mean([[p['eval_return'] for p in r['progress']] for r in mine]):.0f}",
                "env_steps": fmt(mine[0]["env_steps_total"]),
                "rounds": len(mine),
            }
        )
    for row, trainer in zip(rows, ("brax", "jaxpg")):
        row["vs_brax"] = f"{best[trainer] / best['brax']:.2f}x"
    return rows


def curve_table(records: list[dict]) -> str:
    """The eval return of every round at each progress point, both trainers."""
    head = ["env steps"] + [f"{r['trainer']} seed {r['seed']}" for r in records]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, point in enumerate(records[0]["progress"]):
        cells = [fmt(point["env_steps"])]
        cells += [f"{r['progress'][i]['eval_return']:.0f}" for r in records]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, quick_help="100k steps, one round", repeats=False)
    add_shared_args(parser)
    parser.add_argument("--seed", type=int, default=0, help="round r trains seed + r")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (--quick: 1)")
    parser.add_argument("--brax-python", default=BRAX_PYTHON, help="the Brax reference venv")
    parser.add_argument("--side", choices=["jaxpg"], help=argparse.SUPPRESS)
    parser.add_argument("--side-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = {**SHARED, **(QUICK if args.quick else {})}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.side == "jaxpg":
        args.side_out.write_text(json.dumps(run_jaxpg(args)))
        return None
    if not Path(args.brax_python).exists():
        parser.error(f"--brax-python {args.brax_python} does not exist (brax_reference.py)")
    rounds = args.rounds or (1 if args.quick else 3)
    machine = machine_info((*DEFAULT_PACKAGES, "brax", "mujoco"))
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(rounds):
            order = ("brax", "jaxpg") if round_index % 2 == 0 else ("jaxpg", "brax")
            for side in order:
                log(f"round {round_index}: {side}")
                seed = args.seed + round_index  # each round a seed: returns over seeds
                record = {
                    "trainer": side,
                    "round": round_index,
                    "seed": seed,
                    **run_side(side, args, Path(tmp), seed),
                }
                log(
                    f"  {side}: {fmt(record.get('train_sps_excl_compile'))} env steps/s, "
                    f"compile {fmt(record.get('compile_s'))} s, "
                    f"final eval return {record['progress'][-1]['eval_return']:.1f}"
                )
                records.append(record)
    records.sort(key=lambda r: (r["trainer"], r["round"]))
    rows = rows_of(records)
    curves = curve_table(records)
    settings = {k: getattr(args, k) for k in SHARED} | {
        "normalize_observations": args.normalize_observations,
        "deterministic_eval": args.deterministic_eval,
        "seed": args.seed,
        "rounds": rounds,
        "jaxpg_config": jaxpg_config(args).to_dict(),
    }
    brax_versions = records[0].get("reference", {}).get("versions")
    notes = [
        "train env steps/s: training env steps over training seconds, the first epoch "
        "(compile) and the evaluations excluded, best round; compile s: first epoch minus a "
        "compile-free one; eval return: mean over num_eval_envs fresh episodes, every round.",
        f"Brax's trainer ran in its own venv: {brax_versions}.",
    ]
    data = payload(
        "brax_compare",
        "quick" if args.quick else "full",
        settings,
        records,
        machine,
        argv=argv,
        summary=rows,
        curves=curves,
        notes=notes,
    )
    paths = publish(args, "brax_compare", data, rows, COLUMNS)
    print(curves)
    return paths


if __name__ == "__main__":
    main()
