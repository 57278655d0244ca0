"""Peer driver: jaxpg PPO with the shared settings of benchmarks/peers.py (run by peers.py).

python benchmarks/peer_jaxpg.py --spec SPEC.json --out RESULT.json

Each seed's final training return is ``jaxpg.metrics.final_return`` (the mean training episode
return over the last 10% of updates).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from driver import driver_main  # noqa: E402
from machine import DEFAULT_PACKAGES  # noqa: E402
from timing import compile_program, memory_stats, seed_schedule, steady_record, time_call  # noqa: E402

from jaxpg.metrics import final_return  # noqa: E402


def config_from_spec(spec: dict):
    import jaxpg

    return jaxpg.PPOConfig(
        env=spec["env"],
        total_timesteps=spec["total_timesteps"],
        num_envs=spec["num_envs"],
        num_steps=spec["num_steps"],
        num_epochs=spec["num_epochs"],
        num_minibatches=spec["num_minibatches"],
        lr=spec["lr"],
        anneal_lr=False,  # rejax and SB3 keep the learning rate constant
        gamma=spec["gamma"],
        gae_lambda=spec["gae_lambda"],
        clip_eps=spec["clip_eps"],
        ent_coef=spec["ent_coef"],
        vf_coef=spec["vf_coef"],
        max_grad_norm=spec["max_grad_norm"],
        hidden_sizes=tuple(spec["hidden_sizes"]),
        activation=spec["activation"],
        clip_value_loss=True,
    )


def run(spec: dict) -> dict:
    import jax
    import jaxpg_parts as jp
    import numpy as np

    import jaxpg

    config = config_from_spec(spec)
    program = jp.train_program(config)
    evaluate = jax.jit(jp.evaluate_program(config, spec["eval_episodes"]))
    schedule = seed_schedule(spec["seeds"])
    keys = [jax.random.key(s) for s in schedule]
    compiled, compile_s = compile_program(program, keys[0])
    times, cpu, evals, finals = [], [], {}, {}
    for seed, key in zip(schedule, keys):
        (metrics, state), seconds = time_call(compiled, key, cpu=cpu)
        times.append(seconds)
        if seed not in evals:
            params = jaxpg.train.policy_params(config, state)
            evals[seed] = float(np.mean(evaluate(params, jax.random.fold_in(key, 1))))
            finals[seed] = float(final_return(metrics["episode_return"]))
    env_steps = config.num_updates * config.batch_size
    return {
        "peer": "jaxpg",
        "compile_s": compile_s,
        **steady_record(times, cpu, env_steps),
        "eval_return_per_seed": [evals[s] for s in sorted(evals)],
        "final_train_return_per_seed": [finals[s] for s in sorted(finals)],
        "memory": memory_stats(compiled),
        "config": config.to_dict(),
        "notes": [
            "global-norm gradient clipping; one Adam over actor and critic (eps 1e-5); "
            "orthogonal init; truncation bootstraps from V(final obs)"
        ],
    }


if __name__ == "__main__":
    driver_main(run, DEFAULT_PACKAGES)
