"""Peer driver: Stable-Baselines3 PPO (PyTorch, CPU) with the shared settings of
benchmarks/peers.py.

Runs in the SB3 venv (``benchmarks/setup_peers.sh`` makes it):

    benchmarks/.venv-sb3/bin/python benchmarks/peer_sb3.py --spec SPEC.json --out RESULT.json

SB3 has no compile step: ``setup_s`` is building the vectorised env and the model, and each
seed's ``model.learn(total_timesteps)`` is one call. The first seed's call is ``first_call_s``;
later seeds' calls are the steady state (with one seed, the first call is also the steady one).

Each seed's final training return is ``jaxpg.metrics.final_return`` (the last 10% of updates)
of SB3's training returns in jaxpg's per-update form, rebuilt after training from each env's
``Monitor`` record (nothing is added to the timed ``learn``): see :func:`returns_per_update`.
jaxpg is not installed in this venv; ``jaxpg.metrics`` (numpy only) comes from the checkout.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from driver import driver_main  # noqa: E402
from timing import steady_record  # noqa: E402

from jaxpg.metrics import final_return  # noqa: E402

PACKAGES = ("stable-baselines3", "torch", "gymnasium", "numpy")


def returns_per_update(episodes, num_steps: int, num_updates: int):
    """SB3's training returns as jaxpg's ``episode_return`` metric: per update (one rollout of
    ``num_steps`` steps of every env), the mean return of the episodes that ended in it, NaN
    where none did. ``episodes`` holds, per env, its Monitor's episode returns and lengths; an
    episode that ends at the env's step ``s`` (counted from 1) ended in update
    ``(s - 1) // num_steps``."""
    import numpy as np

    sums, counts = np.zeros(num_updates), np.zeros(num_updates)
    for rewards, lengths in episodes:
        update = (np.cumsum(np.asarray(lengths, np.int64)) - 1) // num_steps
        np.add.at(sums, update, np.asarray(rewards, np.float64))
        np.add.at(counts, update, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def run(spec: dict) -> dict:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    if spec.get("torch_threads"):
        torch.set_num_threads(int(spec["torch_threads"]))
    batch = spec["num_envs"] * spec["num_steps"]
    activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[spec["activation"]]
    hidden = list(spec["hidden_sizes"])
    setup_times, times, cpu, evals, finals = [], [], [], [], []
    for seed in range(spec["seeds"]):
        start = time.perf_counter()
        env = make_vec_env(spec["env"], n_envs=spec["num_envs"], seed=seed)
        model = PPO(
            "MlpPolicy",
            env,
            learning_rate=spec["lr"],
            n_steps=spec["num_steps"],
            batch_size=batch // spec["num_minibatches"],
            n_epochs=spec["num_epochs"],
            gamma=spec["gamma"],
            gae_lambda=spec["gae_lambda"],
            clip_range=spec["clip_eps"],
            clip_range_vf=spec["clip_eps"],
            ent_coef=spec["ent_coef"],
            vf_coef=spec["vf_coef"],
            max_grad_norm=spec["max_grad_norm"],
            seed=seed,
            device="cpu",
            verbose=0,
            policy_kwargs=dict(net_arch=dict(pi=hidden, vf=hidden), activation_fn=activation),
        )
        setup_times.append(time.perf_counter() - start)
        start, cpu_start = time.perf_counter(), time.process_time()
        model.learn(total_timesteps=spec["total_timesteps"])
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
        episodes = zip(env.env_method("get_episode_rewards"), env.env_method("get_episode_lengths"))
        per_update = returns_per_update(episodes, spec["num_steps"], model.num_timesteps // batch)
        finals.append(float(final_return(per_update)))
        eval_env = make_vec_env(
            spec["env"], n_envs=min(8, spec["eval_episodes"]), seed=10_000 + seed
        )
        mean, _ = evaluate_policy(
            model, eval_env, n_eval_episodes=spec["eval_episodes"], deterministic=False
        )
        evals.append(float(mean))
        env.close()
        eval_env.close()
    env_steps = model.num_timesteps
    return {
        "peer": "sb3",
        "compile_s": None,
        "setup_s": setup_times[0],
        **steady_record(times, cpu, env_steps),
        "eval_return_per_seed": evals,
        "final_train_return_per_seed": finals,  # jaxpg.metrics.final_return, see above
        "torch_threads": torch.get_num_threads(),
        "notes": [
            "gymnasium CartPole (not gymnax); clip_range_vf clips the value prediction "
            "(SB3's form); one Adam (eps 1e-5), global-norm clipping, orthogonal init; "
            "Python-loop DummyVecEnv"
            + ("" if spec["seeds"] > 1 else "; one seed: steady = first call")
        ],
    }


if __name__ == "__main__":
    driver_main(run, PACKAGES)
