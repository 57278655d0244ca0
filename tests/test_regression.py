"""PPO and REINFORCE stay bit-identical to the trainer before the algorithm and agent protocols
(commit c9c5aad): for a fixed key, every parameter and every per-update loss is the same float.

``tests/data/reference_runs.json`` was written by this file's ``fingerprint`` on that commit
(jax 0.10.2, CPU). The values depend on XLA's CPU code generation, so the check runs on the CPU
backend with the jax version that wrote them; elsewhere it is skipped, not loosened.
"""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxpg

REFERENCE = json.loads((Path(__file__).parent / "data" / "reference_runs.json").read_text())
WRITTEN_WITH = "0.10.2"

SMALL = dict(num_envs=4, num_steps=32, total_timesteps=4 * 32 * 3)
CASES = {
    "ppo_cartpole": (jaxpg.PPOConfig, dict(env="CartPole-v1", **SMALL)),
    "ppo_pendulum_norm": (
        jaxpg.PPOConfig,
        dict(
            env="Pendulum-v1",
            **SMALL,
            num_minibatches=2,
            normalize_obs=True,
            normalize_rewards=True,
            shared_network=True,
        ),
    ),
    "reinforce_value": (jaxpg.ReinforceConfig, dict(env="CartPole-v1", **SMALL)),
    "reinforce_ma": (
        jaxpg.ReinforceConfig,
        dict(env="CartPole-v1", **SMALL, baseline="moving_average"),
    ),
    "reinforce_none": (jaxpg.ReinforceConfig, dict(env="CartPole-v1", **SMALL, baseline="none")),
    "reinforce_traj": (
        jaxpg.ReinforceConfig,
        dict(
            env="CartPole-v1",
            num_envs=4,
            num_steps=None,
            mode="trajectory",
            total_timesteps=4 * 500 * 2,
            baseline="moving_average",
        ),
    ),
    "reinforce_traj_value": (
        jaxpg.ReinforceConfig,
        dict(
            env="CartPole-v1",
            num_envs=4,
            num_steps=None,
            mode="trajectory",
            total_timesteps=4 * 500 * 2,
            baseline="value",
        ),
    ),
}


def fingerprint(result) -> dict:
    """Per parameter leaf: the float64 sum and the first element; per update: five metrics."""
    flat, _ = jax.tree_util.tree_flatten_with_path(result.params)
    out = {
        "params": {
            jax.tree_util.keystr(p): [
                float(np.asarray(x, np.float64).sum()),
                float(np.asarray(x).ravel()[0]),
            ]
            for p, x in flat
        }
    }
    for k in ("policy_loss", "value_loss", "entropy", "episode_return", "grad_norm"):
        out[k] = [float(v) for v in np.asarray(result.metrics[k])]
    return out


@pytest.mark.skipif(
    jax.__version__ != WRITTEN_WITH or jax.default_backend() != "cpu",
    reason=f"reference values were written with jax {WRITTEN_WITH} on the CPU backend",
)
@pytest.mark.parametrize("name", sorted(CASES))
def test_runs_are_bit_identical_to_the_trainer_before_the_protocols(name):
    cls, kwargs = CASES[name]
    result = jax.jit(jaxpg.make_train(cls(**kwargs)))(jax.random.key(7))
    got = fingerprint(result)
    want = REFERENCE[name]
    assert got["params"] == want["params"]
    for k in ("policy_loss", "value_loss", "entropy", "episode_return", "grad_norm"):
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
