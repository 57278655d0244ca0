"""Reference run: Brax's own PPO trainer (``brax.training.agents.ppo.train``), timed and logged.

Brax's trainer calls ``jax.device_put_replicated``, which jax 0.10 removed, so this script runs in
a venv of its own, outside the repository, and does not import jaxpg:

    python3 -m venv /work/brax-ref-venv
    /work/brax-ref-venv/bin/pip install brax==0.14.2 jax==0.7.2 jaxlib==0.7.2 flax==0.12.0 \
        optax==0.2.8 orbax-checkpoint==0.12.8 mujoco==4.0.1 mujoco-mjx==3.17.0

    /work/brax-ref-venv/bin/python benchmarks/brax_reference.py --env inverted_pendulum \
        --backend spring --num-timesteps 20000 --out /tmp/brax_ref.json

Every flag maps to the ``ppo.train`` argument of the same name (``--backend`` is Brax's physics
pipeline, passed to ``envs.get_environment``); learning settings default to ``ppo.train``'s own
defaults, sizes to a tiny CPU run. Brax's bookkeeping, which the JSON reflects:

- one training step is ``batch_size * num_minibatches * unroll_length * action_repeat`` env steps
  (``num_envs`` only sets how many unrolls of ``unroll_length`` each step takes), and the run is
  ``max(num_evals - 1, 1)`` epochs of ``ceil(num_timesteps / (epochs * step))`` training steps,
  so ``env_steps_total`` is ``num_timesteps`` rounded up;
- with ``num_evals > 1`` the first progress call is an evaluation at step 0 of the initial policy:
  it compiles only the evaluator; the training epoch compiles inside the first epoch, and the
  second evaluation compiles again (the replicated params arrive with another sharding). So the
  compile-free rates are ``sps_second_to_last`` (wall clock, evaluations included; needs
  ``num_evals >= 3``) and ``train_sps_excl_compile`` (Brax's own training clock, epochs after
  the first, evaluations excluded);
- each evaluation runs ``num_eval_envs`` episodes (sampled actions unless
  ``--deterministic-eval``) for the full ``episode_length``, whatever their length, so its cost
  on the CPU is ``num_eval_envs * episode_length`` env steps.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from importlib import metadata


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="inverted_pendulum", help="Brax environment name")
    p.add_argument("--backend", default="spring", help="Brax pipeline: spring, positional, ...")
    p.add_argument("--num-timesteps", type=int, default=20_000)
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--unroll-length", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-minibatches", type=int, default=4)
    p.add_argument("--num-updates-per-batch", type=int, default=2)
    p.add_argument("--discounting", type=float, default=0.9)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--entropy-cost", type=float, default=1e-4)
    p.add_argument("--reward-scaling", type=float, default=1.0)
    p.add_argument("--episode-length", type=int, default=1000)
    p.add_argument("--action-repeat", type=int, default=1)
    p.add_argument("--normalize-observations", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--num-evals", type=int, default=3)
    p.add_argument("--num-eval-envs", type=int, default=128)
    p.add_argument("--deterministic-eval", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument(
        "--policy-hidden",
        default="32,32,32,32",
        help="policy MLP layer sizes, comma-separated (Brax's default 4x32)",
    )
    p.add_argument(
        "--value-hidden",
        default="256,256,256,256,256",
        help="value MLP layer sizes, comma-separated (Brax's default 5x256)",
    )
    p.add_argument("--max-grad-norm", type=float, default=None, help="None: no clipping")
    p.add_argument(
        "--bootstrap-on-timeout",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Brax's own default is off: a truncated step's TD error is zeroed",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args(argv)
    if args.num_evals < 1:
        p.error("--num-evals must be at least 1 (the JSON is built from the progress calls)")
    return args


def sizes(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def rate(steps, seconds):
    return steps / seconds if seconds > 0 else None


def main(argv=None):
    args = parse_args(argv)
    t_setup = time.perf_counter()
    import jax
    from brax import envs
    from brax.training.agents.ppo import networks as ppo_networks
    from brax.training.agents.ppo import train as ppo

    env = envs.get_environment(args.env, backend=args.backend)
    calls = []

    def progress_fn(num_steps, metrics):
        calls.append(
            {
                "env_steps": int(num_steps),
                "eval_return": float(metrics["eval/episode_reward"]),
                "eval_return_std": float(metrics["eval/episode_reward_std"]),
                "wall_s": time.perf_counter() - t0,
                "train_walltime_s": float(metrics.get("training/walltime", 0.0)),
                "eval_walltime_s": float(metrics["eval/walltime"]),
            }
        )
        print(json.dumps(calls[-1]), flush=True)

    setup_s = time.perf_counter() - t_setup
    t0 = time.perf_counter()
    ppo.train(
        environment=env,
        num_timesteps=args.num_timesteps,
        episode_length=args.episode_length,
        action_repeat=args.action_repeat,
        num_envs=args.num_envs,
        num_eval_envs=args.num_eval_envs,
        deterministic_eval=args.deterministic_eval,
        learning_rate=args.learning_rate,
        entropy_cost=args.entropy_cost,
        discounting=args.discounting,
        seed=args.seed,
        unroll_length=args.unroll_length,
        batch_size=args.batch_size,
        num_minibatches=args.num_minibatches,
        num_updates_per_batch=args.num_updates_per_batch,
        num_evals=args.num_evals,
        normalize_observations=args.normalize_observations,
        reward_scaling=args.reward_scaling,
        max_grad_norm=args.max_grad_norm,
        bootstrap_on_timeout=args.bootstrap_on_timeout,
        network_factory=functools.partial(
            ppo_networks.make_ppo_networks,
            policy_hidden_layer_sizes=sizes(args.policy_hidden),
            value_hidden_layer_sizes=sizes(args.value_hidden),
        ),
        progress_fn=progress_fn,
    )
    total_s = time.perf_counter() - t0

    first, last = calls[0], calls[-1]
    second = calls[1] if len(calls) >= 3 else None
    result = {
        "versions": {
            "python": platform.python_version(),
            **{k: metadata.version(k) for k in ("jax", "jaxlib", "brax", "flax", "mujoco")},
        },
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
        },
        "settings": vars(args),
        "env_steps_per_training_step": args.batch_size
        * args.num_minibatches
        * args.unroll_length
        * args.action_repeat,
        "env_steps_total": last["env_steps"],
        "progress": calls,
        "setup_s": setup_s,  # imports and environment construction
        "time_to_first_progress_s": first["wall_s"],
        "sps_first_to_last": rate(
            last["env_steps"] - first["env_steps"], last["wall_s"] - first["wall_s"]
        ),
        "sps_second_to_last": second
        and rate(last["env_steps"] - second["env_steps"], last["wall_s"] - second["wall_s"]),
        "train_sps_excl_compile": second
        and rate(
            last["env_steps"] - second["env_steps"],
            last["train_walltime_s"] - second["train_walltime_s"],
        ),
        "total_wall_s": total_s,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
