"""A user's own module, end to end, with nothing edited in jaxpg.

This file stands for ``my_module.py``: a config class of its own (its own fields, one of them a
traced hyperparameter), a flax policy with a carry of its own, and an algorithm built from
jaxpg's parts, registered by name. Then, as a user would: ``jaxpg.run`` with progress,
checkpoints, ``stop_after`` and a sweep over its own hyperparameter; ``jaxpg.resume`` of that
run directory in a second Python process, bit-identical to an uninterrupted run; ``jaxpg eval``
of it; and ``jaxpg train --import test_user_module prox-a2c ...`` on the command line, with the
module's fields as flags. The subprocesses find this module by its name (``tests/`` on the
path), as the run directory records it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpg
from jaxpg import losses
from jaxpg.algorithms import continue_rollout, gae_targets, make_actor_critic_loss, sgd_for
from jaxpg.checkpoint import restore_checkpoint
from jaxpg.updates import optimizer_init

HERE = Path(__file__).resolve().parent

# -- the user's module -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MyConfig(jaxpg.Config):
    """A2C with a proximal penalty: my_coef * mean((log pi - log pi_old)^2), over epochs."""

    num_envs: int = jaxpg.field(4, "parallel environments")
    num_steps: int = jaxpg.field(16, "rollout length per environment per update")
    total_timesteps: int = jaxpg.field(4 * 16 * 6, "env steps in all")
    anneal_lr: bool = jaxpg.field(False, "linear decay to 0 over the run")
    lr: float = jaxpg.field(3e-3, "Adam learning rate", traced=True)
    gae_lambda: float = jaxpg.field(0.95, "GAE lambda", traced=True)
    my_coef: float = jaxpg.field(0.5, "weight of the proximal penalty", traced=True)
    num_epochs: int = jaxpg.field(2, "passes over each batch")

    algorithm = "prox-a2c"

    def __post_init__(self):
        super().__post_init__()
        self.check_range("my_coef", low=0.0)
        self.check_range("gae_lambda", low=0.0, high=1.0)
        self.coerce_ints("num_epochs")
        self.check_positive_ints("num_epochs")
        self.check_batch_fits_budget()


class MyPolicy(nn.Module):
    """A policy with a carry of its own (a leaky trace of its features) and two heads."""

    action_dim: int = 2
    hidden: int = 16

    @nn.compact
    def __call__(self, carry, obs, reset):
        carry = jnp.where(reset[:, None], 0.0, carry)  # a new episode starts from zeros
        x = jnp.concatenate([obs.astype(jnp.float32), carry], axis=-1)
        h = nn.tanh(nn.Dense(self.hidden)(x))
        carry = 0.5 * carry + 0.5 * h
        return carry, nn.Dense(self.action_dim)(h), nn.Dense(1)(h)[:, 0]

    def initial_carry(self, num_envs):
        return jnp.zeros((num_envs, self.hidden), jnp.float32)


def proximal_surrogate(log_prob, old_log_prob, advantages, mask, hp):
    """The vanilla surrogate plus ``my_coef`` times the squared log-ratio."""
    penalty = losses.masked_mean(jnp.square(log_prob - old_log_prob), mask)
    return losses.reinforce_loss(log_prob, advantages, mask) + hp.my_coef * penalty


def make_my_a2c(config: MyConfig, agent) -> jaxpg.Algorithm:
    loss = make_actor_critic_loss(config, agent, proximal_surrogate)
    return jaxpg.Algorithm(
        init=optimizer_init(config.adam_eps),
        start=continue_rollout,
        targets=gae_targets,
        update=sgd_for(config, agent, loss, num_epochs=config.num_epochs),
    )


jaxpg.register_algorithm("prox-a2c", MyConfig, make_my_a2c)

# -- what the user does with it ----------------------------------------------------------------

POLICY = {"network": f"{__name__}:MyPolicy", "network_kwargs": {"hidden": 8}}
SWEEP = {"my_coef": [0.0, 0.5]}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return env


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _python(f"import sys; from jaxpg.cli import main; sys.exit(main({list(args)!r}))", cwd)


def test_the_config_is_validated_hashable_and_traces_its_own_hyperparameter():
    config = MyConfig(**POLICY)
    assert config.traced_fields() == ("lr", "max_grad_norm", "gamma", "ent_coef", "vf_coef",
                                      "gae_lambda", "my_coef")  # fmt: skip
    assert float(config.hparams().my_coef) == 0.5
    assert hash(config) == hash(MyConfig(**POLICY)) and config == MyConfig(**POLICY)
    with pytest.raises(ValueError, match=r"my_coef=-1 is invalid: a finite number >= 0"):
        MyConfig(my_coef=-1)
    with pytest.raises(ValueError, match="num_epochs=0 is invalid: a positive integer"):
        MyConfig(num_epochs=0)
    with pytest.raises(ValueError, match="network='no_such_module:Policy' is invalid"):
        MyConfig(network="no_such_module:Policy")
    # A hyperparameter this algorithm does not trace is an error, never a silent 0.0.
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['clip_eps'\]"):
        config.hparams(clip_eps=0.2)
    with pytest.raises(AttributeError, match="no traced hyperparameter 'clip_eps'"):
        _ = config.hparams().clip_eps
    with pytest.raises(ValueError, match="'num_epochs' is a static config field"):
        jaxpg.run(config, sweep={"num_epochs": [1, 2]}, progress=False, verbose=False)


def test_a_sweep_over_its_own_hyperparameter_is_one_program_equal_to_single_runs():
    config = MyConfig(**POLICY)
    hparams, settings = jaxpg.sweep.grid(config, **SWEEP)
    keys = jax.random.split(jax.random.key(0), 2)
    swept = jax.jit(jaxpg.make_sweep(config))(keys, hparams)
    # the single run from a config that holds the setting: no sweep machinery
    single = jax.jit(jaxpg.make_train(config.replace(my_coef=0.5)))(keys[1])
    for a, b in zip(jax.tree.leaves(swept.params), jax.tree.leaves(single.params), strict=True):
        np.testing.assert_allclose(a[1, 1], b, rtol=1e-5, atol=1e-6)
    # The coefficient changes the update: the two settings' members differ.
    final = jax.tree.leaves(swept.params)
    assert any(not np.allclose(x[0], x[1]) for x in final)
    assert settings == [{"my_coef": 0.0}, {"my_coef": 0.5}]


def test_run_resume_in_another_process_eval_and_the_command_line(tmp_path):
    config = MyConfig(**POLICY)
    run_dir = tmp_path / "run"
    stopped = jaxpg.run(
        config, seeds=2, sweep=SWEEP, run_dir=run_dir, checkpoint_every=2, stop_after=3,
        chunk_updates=1, progress=True, verbose=False,
    )  # fmt: skip
    assert stopped.status == "stopped" and stopped.updates_done == 3
    recorded = json.loads((run_dir / "config.json").read_text())["config"]
    assert recorded["config_class"] == f"{__name__}:MyConfig"
    assert recorded["network"] == f"{__name__}:MyPolicy" and recorded["network_kwargs"] == {
        "hidden": 8
    }

    # A second process resumes it: the run directory names the module, which registers the
    # algorithm and holds the policy.
    # Chunks of one update, as the uninterrupted run's below: the same compiled program (chunks
    # of other lengths compose bit for bit only at XLA's default emitters, see
    # tests/compile_options.py; test_train checks that there).
    code = f"import jaxpg; r = jaxpg.resume({str(run_dir)!r}, progress=False, chunk_updates=1)"
    resumed = _python(code + "; print(r.status)", tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.strip().splitlines()[-1] == "complete"

    whole = jaxpg.run(config, seeds=2, sweep=SWEEP, chunk_updates=1, progress=False, verbose=False)
    state, meta = restore_checkpoint(run_dir / "checkpoints", config)
    assert int(meta["step"]) == config.num_updates
    for a, b in zip(
        jax.tree.leaves(state.params), jax.tree.leaves(whole.state.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)  # bit for bit
    assert jax.tree.leaves(state.params)[0].shape[0] == 4  # 2 settings x 2 seeds

    evaluated = _cli("eval", str(run_dir), "--episodes", "4", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "return" in evaluated.stdout

    trained = _cli(
        "train", "--import", __name__, "prox-a2c", "--my-coef", "0.25", "--network",
        f"{__name__}:MyPolicy", "--run-dir", str(tmp_path / "cli"), "--no-progress",
        "--no-plot", cwd=tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    cli_config = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert cli_config["config"]["my_coef"] == 0.25
    assert cli_config["run"]["imports"] == [__name__]
    helped = _cli("train", "--import", __name__, "prox-a2c", "--help", cwd=tmp_path)
    assert "--my-coef" in helped.stdout and "traced, sweepable" in helped.stdout


def test_a_run_whose_module_is_gone_says_so_in_one_line(tmp_path):
    config = MyConfig(**POLICY)
    run_dir = tmp_path / "run"
    jaxpg.run(config, run_dir=run_dir, stop_after=1, progress=False, verbose=False, plot=False)
    path = run_dir / "config.json"
    data = json.loads(path.read_text())
    data["config"]["algorithm"] = "gone-a2c"
    data["config"]["config_class"] = "no_such_user_module:MyConfig"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as e:
        jaxpg.resume(run_dir, progress=False)
    message = str(e.value)
    assert "\n" not in message
    assert "no_such_user_module" in message and "cannot be imported" in message


def test_an_agent_given_as_an_object_is_recorded_or_asked_for_again(tmp_path):
    config = MyConfig()
    recorded = jaxpg.run(config, agent=MyPolicy(hidden=4), run_dir=tmp_path / "a", stop_after=1,
                         progress=False, verbose=False, plot=False)  # fmt: skip
    saved = json.loads((tmp_path / "a" / "config.json").read_text())["config"]
    # Every field of the instance is recorded, defaults too: the run does not depend on them.
    assert saved["network"] == f"{__name__}:MyPolicy"
    assert saved["network_kwargs"] == {"action_dim": 2, "hidden": 4}
    assert recorded.status == "stopped"

    policy = MyPolicy(hidden=4)
    agent = jaxpg.agents.agent_from_module(policy, env=config.env_spec)  # no import path
    jaxpg.run(config, agent=agent, run_dir=tmp_path / "b", stop_after=1, progress=False,
              verbose=False, plot=False)  # fmt: skip
    with pytest.raises(ValueError, match="pass it again"):
        jaxpg.resume(tmp_path / "b", progress=False)
    again = jaxpg.resume(tmp_path / "b", agent=agent, progress=False, verbose=False, plot=False)
    assert again.status == "complete"
    evaluated = jaxpg.evaluate.evaluate_run(tmp_path / "b", episodes=2, agent=agent)
    assert evaluated.returns.shape == (1, 2)
