"""Peer driver: rejax PPO with the shared settings of benchmarks/peers.py.

Runs in the rejax venv (``benchmarks/setup_peers.sh`` makes it: rejax needs gymnax < 1.0):

    benchmarks/.venv-rejax/bin/python benchmarks/peer_rejax.py --spec SPEC.json --out RESULT.json

The timed program is rejax's own ``jax.jit(algo.train)`` with its evaluation callback replaced
by a no-op, so only training is timed; the final policy is then evaluated with rejax's own
``evaluate`` (sampled actions), outside the timed program.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from driver import driver_main  # noqa: E402
from timing import compile_program, memory_stats, seed_schedule, steady_record, time_call  # noqa: E402

PACKAGES = ("rejax", "jax", "jaxlib", "flax", "optax", "gymnax", "distrax", "numpy")


def make_algo(spec: dict):
    from rejax import PPO

    total = spec["total_timesteps"]
    algo = PPO.create(
        env=spec["env"],
        total_timesteps=total,
        eval_freq=total,  # with the no-op callback below: one scan step, no evaluation
        skip_initial_evaluation=True,
        num_envs=spec["num_envs"],
        num_steps=spec["num_steps"],
        num_epochs=spec["num_epochs"],
        num_minibatches=spec["num_minibatches"],
        learning_rate=spec["lr"],
        gamma=spec["gamma"],
        gae_lambda=spec["gae_lambda"],
        clip_eps=spec["clip_eps"],
        ent_coef=spec["ent_coef"],
        vf_coef=spec["vf_coef"],
        max_grad_norm=spec["max_grad_norm"],
        agent_kwargs={
            "activation": spec["activation"],
            "hidden_layer_sizes": list(spec["hidden_sizes"]),
        },
    )
    return algo.replace(eval_callback=lambda algo, ts, rng: ())


def run(spec: dict) -> dict:
    import jax
    import numpy as np
    from rejax.evaluate import evaluate

    algo = make_algo(spec)
    batch = spec["num_envs"] * spec["num_steps"]
    iterations = -(-spec["total_timesteps"] // batch)  # rejax rounds up with eval_freq = total
    schedule = seed_schedule(spec["seeds"])
    keys = [jax.random.key(s) for s in schedule]
    compiled, compile_s = compile_program(algo.train, keys[0])
    max_steps = algo.env_params.max_steps_in_episode
    times, cpu, evals = [], [], {}
    for seed, key in zip(schedule, keys):
        (ts, _), seconds = time_call(compiled, key, cpu=cpu)
        times.append(seconds)
        if seed not in evals:
            _, returns = evaluate(
                algo.make_act(ts),
                jax.random.fold_in(key, 1),
                algo.env,
                algo.env_params,
                spec["eval_episodes"],
                max_steps,
            )
            evals[seed] = float(np.mean(returns))
    env_steps = iterations * batch
    return {
        "peer": "rejax",
        "compile_s": compile_s,
        **steady_record(times, cpu, env_steps),
        "eval_return_per_seed": [evals[s] for s in sorted(evals)],
        "final_train_return_per_seed": None,  # rejax logs no training returns
        "memory": memory_stats(compiled),
        "notes": [
            "max_grad_norm clips each gradient element (optax.clip), not the global norm; "
            "separate Adam (eps 1e-8) for actor and critic; lecun-normal init; "
            "truncation treated as termination"
        ],
    }


if __name__ == "__main__":
    driver_main(run, PACKAGES)
