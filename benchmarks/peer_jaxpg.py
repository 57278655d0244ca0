"""Peer driver: jaxpg PPO with the shared settings of benchmarks/peers.py (run by peers.py).

python benchmarks/peer_jaxpg.py --spec SPEC.json --out RESULT.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


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
    schedule = common.seed_schedule(spec["seeds"])
    keys = [jax.random.key(s) for s in schedule]
    compiled, compile_s = common.compile_program(program, keys[0])
    times, cpu, evals, finals = [], [], {}, {}
    for seed, key in zip(schedule, keys):
        (metrics, state), seconds = common.time_call(compiled, key, cpu=cpu)
        times.append(seconds)
        if seed not in evals:
            params = jaxpg.train.policy_params(config, state)
            evals[seed] = float(np.mean(evaluate(params, jax.random.fold_in(key, 1))))
            finals[seed] = float(jp.final_train_return(metrics["episode_return"]))
    env_steps = config.num_updates * config.batch_size
    return {
        "peer": "jaxpg",
        "compile_s": compile_s,
        **common.steady_record(times, cpu, env_steps),
        "eval_return_per_seed": [evals[s] for s in sorted(evals)],
        "final_train_return_per_seed": [finals[s] for s in sorted(finals)],
        "memory": common.memory_stats(compiled),
        "config": config.to_dict(),
        "notes": [
            "global-norm gradient clipping; one Adam over actor and critic (eps 1e-5); "
            "orthogonal init; truncation bootstraps from V(final obs)"
        ],
    }


if __name__ == "__main__":
    common.driver_main(run, common.DEFAULT_PACKAGES)
