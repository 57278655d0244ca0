"""The ``jaxpg`` command line, run as a user runs it: in a subprocess, with a tiny budget.

The subprocesses share a persistent XLA compilation cache (a temporary directory), so the runs
of one tiny config compile their chunk program once. Checked: exit statuses, the files of a run
directory and their columns, one-line errors for bad flags, resume equivalence, corrupt and
incompatible checkpoints, the stop on NaN, ``eval`` and ``envs``.
"""

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from file_snapshots import snapshot
from flax import struct
from gymnax.environments import environment, spaces
from trees import assert_trees_equal

from jaxpg import cli, flags, registry, runner, runs
from jaxpg.checkpoint import restore_checkpoint

pytestmark = pytest.mark.timeout(300)

TESTS_DIR = Path(__file__).parent
# 8 updates of 4 envs x 32 steps; one epoch of one minibatch; a tiny network.
TINY = [
    "--total-timesteps",
    "1024",
    "--num-envs",
    "4",
    "--num-steps",
    "32",
    "--num-epochs",
    "1",
    "--num-minibatches",
    "1",
    "--hidden-sizes",
    "8",
]


@pytest.fixture(scope="module")
def env_vars(tmp_path_factory):
    env = dict(os.environ)
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("xla_cache"))
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PLATFORMS"] = env.get("JAX_PLATFORMS", "cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")])
    return env


def jaxpg(env_vars, *args, cwd=None):
    """Runs ``python -m jaxpg ARGS``; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "jaxpg", *map(str, args)],
        env=env_vars,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )


def params_of(run_dir):
    config, _ = runs.read_config(run_dir)
    state, meta = restore_checkpoint(Path(run_dir) / "checkpoints", config)
    return state, meta


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- a sweep x seeds run, the reference for several tests ----------------------------------

# TensorBoard logging is exercised too where the optional library is installed.
LOG = ["--log", "tensorboard"] if importlib.util.find_spec("tensorboardX") else []
SWEEP_RUN = [
    *TINY,
    "--sweep",
    "lr=1e-3,3e-3",
    "--seeds",
    "2",
    "--seed",
    "3",
    "--chunk-updates",
    "2",
    "--checkpoint-every",
    "4",
    "--no-progress",
    *LOG,
]


@pytest.fixture(scope="module")
def sweep_run(env_vars, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "sweep"
    proc = jaxpg(env_vars, "train", *SWEEP_RUN, "--run-dir", run_dir)
    assert proc.returncode == 0, proc.stderr
    return run_dir, proc


def test_train_writes_the_run_directory(sweep_run):
    run_dir, proc = sweep_run
    assert "compiled in" in proc.stdout and "final return per setting" in proc.stdout
    for name in ("config.json", "metrics.csv", "summary.json", "learning_curve.png", "sweep.png"):
        assert (run_dir / name).is_file(), name
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["4", "8"]

    rows = read_csv(run_dir / "metrics.csv")
    assert len(rows) == 2 * 2 * 8  # settings x seeds x updates
    for column in (
        "setting",
        "lr",
        "seed",
        "update",
        "env_steps",
        "episode_return",
        "policy_loss",
        "value_loss",
        "entropy",
        "approx_kl",
        "sps",
        "nonfinite",
    ):
        assert column in rows[0], column
    assert {(r["setting"], r["lr"], r["seed"]) for r in rows} == {
        ("0", "0.001", "3"),
        ("0", "0.001", "4"),
        ("1", "0.003", "3"),
        ("1", "0.003", "4"),
    }
    assert [int(r["env_steps"]) for r in rows[::4]] == [128 * u for u in range(1, 9)]

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["updates_done"] == 8
    assert [s["lr"] for s in summary["settings"]] == [1e-3, 3e-3]
    assert len(summary["settings"][0]["final_return_per_seed"]) == 2
    for key in (
        "wall_time_s",
        "compile_time_s",
        "env_steps_per_s",
        "jax_version",
        "jaxpg_version",
        "backend",
        "device",
    ):
        assert key in summary, key

    if LOG:
        assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    config, run = runs.read_config(run_dir)
    assert config.total_timesteps == 1024 and config.hidden_sizes == (8,)
    assert run["seeds"] == [3, 4] and run["sweep_settings"] == [{"lr": 1e-3}, {"lr": 3e-3}]


def test_sweep_members_train_with_their_own_hyperparameters(sweep_run):
    run_dir, _ = sweep_run
    state, meta = params_of(run_dir)
    assert meta["batch_shape"] == [4] and meta["step"] == 8
    np.testing.assert_allclose(np.asarray(state.hparams.lr), [1e-3, 1e-3, 3e-3, 3e-3], rtol=1e-6)


def test_stop_then_resume_equals_one_run(sweep_run, env_vars, tmp_path):
    reference, _ = sweep_run
    run_dir = tmp_path / "resumed"
    first = jaxpg(
        env_vars, "train", *SWEEP_RUN, "--run-dir", run_dir, "--stop-after", "4", "--no-plot"
    )
    assert first.returncode == 0, first.stderr
    assert "Continue with: jaxpg train --resume" in first.stdout
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "stopped"
    second = jaxpg(
        env_vars, "train", "--resume", run_dir, "--no-progress", "--chunk-updates", "2", "--no-plot"
    )
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stdout

    want, _ = params_of(reference)
    got, meta = params_of(run_dir)
    assert meta["step"] == 8
    assert_trees_equal(got.params, want.params)
    assert_trees_equal(got.opt_state, want.opt_state)
    # The metrics table continues where the checkpoint was: same rows as the one-go run.
    a, b = read_csv(reference / "metrics.csv"), read_csv(run_dir / "metrics.csv")
    drop = ("sps", "time")
    assert [{k: v for k, v in r.items() if k not in drop} for r in a] == [
        {k: v for k, v in r.items() if k not in drop} for r in b
    ]
    config, run = runs.read_config(run_dir)
    assert run["resumes"][0]["from_update"] == 4


def test_resume_refuses_changed_settings(sweep_run):
    run_dir, _ = sweep_run
    before = snapshot(run_dir)
    for given, name in ((["--lr", "0.1"], "--lr"), (["--seeds", "3"], "--seeds")):
        code, err = run_main(["train", "--resume", str(run_dir), *given])
        assert code == 2 and name in err and "cannot be changed when resuming" in err
    assert snapshot(run_dir) == before


def test_resume_from_an_older_checkpoint_would_overwrite_newer_ones(sweep_run):
    run_dir, _ = sweep_run
    before = snapshot(run_dir)
    code, err = run_main(["train", "--resume", str(run_dir), "--resume-step", "4"])
    assert code == 2 and "later checkpoints [8]" in err
    assert snapshot(run_dir) == before


def test_resume_nothing_left(sweep_run):
    run_dir, _ = sweep_run
    before = snapshot(run_dir)
    code, out = run_main(["train", "--resume", str(run_dir)], stream="out")
    assert code == 0 and "nothing to train: the run is at update 8 of 8" in out
    assert snapshot(run_dir) == before


def test_resume_from_corrupt_checkpoint_fails_and_destroys_nothing(sweep_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(sweep_run[0], run_dir)
    for root, _, files in os.walk(run_dir / "checkpoints" / "8" / "state"):
        for name in files:
            Path(root, name).write_bytes(b"not a checkpoint")
    before = snapshot(run_dir)
    code, err = run_main(["train", "--resume", str(run_dir), "--no-progress"])
    assert code == 1
    assert "cannot resume" in err and "may be corrupt" in err and "checkpoints/8" in err
    assert snapshot(run_dir) == before


def test_resume_without_checkpoint(tmp_path):
    runs.write_config(
        tmp_path,
        flags.build_config("ppo", {"total_timesteps": 1024}),
        {"seeds": [0], "env": "CartPole-v1"},
    )
    code, err = run_main(["train", "--resume", str(tmp_path)])
    assert code == 1 and "no checkpoint" in err


def test_eval_prints_return_statistics(sweep_run, env_vars):
    run_dir, _ = sweep_run
    proc = jaxpg(env_vars, "eval", run_dir, "--episodes", "4", "--deterministic")
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("return: mean") and all(w in last for w in ("std", "min", "max"))
    assert "16 episodes" in last  # 4 episodes x 4 members
    assert "setting 1 lr=0.003, seed 4:" in proc.stdout


def test_eval_render_of_an_env_gymnax_cannot_draw(tmp_path):
    runs.write_config(
        tmp_path,
        flags.build_config("ppo", {"env": "DeepSea-bsuite", "total_timesteps": 1024}),
        {"seeds": [0], "env": "DeepSea-bsuite"},
    )
    code, err = run_main(["eval", str(tmp_path), "--render", str(tmp_path / "x.gif")])
    assert code == 2 and "gymnax has no visualizer for DeepSea-bsuite" in err
    assert len(err.strip().splitlines()) == 1


def test_plot_command_redraws(sweep_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(sweep_run[0], run_dir)
    (run_dir / "learning_curve.png").unlink()
    code, out = run_main(["plot", str(run_dir)], stream="out")
    assert code == 0 and (run_dir / "learning_curve.png").is_file()


# --- bad flags -----------------------------------------------------------------------------


def run_main(argv, stream="err"):
    """``cli.main`` in this process (no compile happens before these exits)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, (err if stream == "err" else out).getvalue()


@pytest.mark.parametrize(
    "argv, names",
    [
        (["train", "--lr", "-1"], ["lr=-1.0"]),
        (["train", "--lr", "fast"], ["--lr", "'fast'"]),
        (["train", "--num-envs", "2.5"], ["--num-envs"]),
        (["train", "--lrr", "3"], ["--lrr", "did you mean --lr?"]),
        (["train", "--hidden-sizes", "64,0"], ["hidden_sizes"]),
        (["train", "--activation", "sigmoidish"], ["activation"]),
        (["train", "--env", "NoSuchEnv-v0"], ["env", "NoSuchEnv-v0"]),
        (["train", "--env", "no_such_module:Env"], ["env", "no_such_module"]),
        (["train", "--env-params", '{"gravity_typo": 1}'], ["env_params", "gravity_typo"]),
        (
            ["train", "--env-params", '{"max_steps_in_episode": -5}'],
            ["env_params", "max_steps_in_episode=-5", "positive integer"],
        ),
        (
            ["train", "--env-params", '{"gravity": "strong"}'],
            ["env_params.gravity='strong'", "a number"],
        ),
        (["train", "--num-minibatches", "3"], ["num_minibatches"]),
        (["train", "--anneal-lr", "maybe"], ["--anneal-lr"]),
        (["train", "--sweep", "num_envs=4,8"], ["num_envs", "static"]),
        (["train", "--sweep", "lr=1e-3,-1"], ["lr=-1.0"]),
        (["train", "--seeds", "0"], ["--seeds=0"]),
        (["train", "reinforce", "--baseline", "mean"], ["baseline"]),
        (["train", "reinforce", "--clip-eps", "0.2"], ["--clip-eps"]),
        (["train", "--resume", "/no/such/run"], ["--resume", "config.json"]),
        (["train", "--resume", "gs://bucket/run"], ["--resume", "gs://bucket/run", "object-store"]),
        (["train", "--run-dir", "gs://bucket/run"], ["--run-dir", "gs://bucket/run", "mounted"]),
        (["train", "--runs-root", "s3://bucket"], ["--runs-root", "s3://bucket"]),
        (["eval", "/no/such/run"], ["config.json"]),
        (["frobnicate"], ["frobnicate"]),
    ],
)
def test_bad_flags_exit_2_with_one_line_naming_the_field(argv, names):
    code, err = run_main(argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], (name, lines[0])


def test_bad_flag_exit_status_through_the_console(env_vars):
    proc = jaxpg(env_vars, "train", "--gamma", "1.5")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "jaxpg train ppo: error: gamma=1.5 is invalid: a finite number >= 0.0 and <= 1.0"
    )
    assert proc.stdout == ""


def test_every_config_field_is_a_flag_with_default_and_help():
    import argparse
    import dataclasses

    parser = cli.build_parser()
    code, text = run_main(["train", "--help"], stream="out")
    assert code == 0
    code, top = run_main(["--help"], stream="out")
    assert code == 0
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = subparsers.choices["train"]
    algos = next(a for a in train._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(algos.choices) == sorted(registry.names())
    for algo in registry.names():  # every registered algorithm is a subcommand, listed in help
        assert algo in text and algo in top, algo
        cls = registry.config_class(algo)
        code, text_algo = run_main(["train", algo, "--help"], stream="out")
        assert code == 0
        actions = {  # the --no-FIELD twin of a bool flag has no help of its own
            a.dest: a for a in algos.choices[algo]._actions if a.help != argparse.SUPPRESS
        }
        for f in dataclasses.fields(cls):
            assert flags.flag_name(f.name) in text_algo, f.name
            declared = f.metadata.get("help", "")
            assert declared, f"{cls.__name__}.{f.name} declares no help text"
            shown = actions[f.name].help
            assert "(default: " in shown, f.name
            # the field's own text (or the CLI's wording of it for env, env_params, env_kwargs)
            assert declared.replace("%", "%%") in shown or f.name.startswith("env"), f.name
        assert f"(default: {cls().total_timesteps})" in text_algo
    assert parser.prog == "jaxpg"


@pytest.mark.parametrize("algo", ["a2c", "trpo"])
def test_train_new_algorithms_from_the_command_line(tmp_path, algo):
    run_dir = tmp_path / algo
    code, err = run_main(
        [
            "train",
            algo,
            "--total-timesteps",
            "1024",
            "--num-envs",
            "4",
            "--num-steps",
            "32",
            "--hidden-sizes",
            "8",
            "--run-dir",
            str(run_dir),
            "--no-progress",
            "--no-plot",
        ]
    )
    assert code == 0, err
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert config["algorithm"] == algo
    assert config["gae_lambda"] == {"a2c": 0.95, "trpo": 0.98}[algo]  # each one's own default
    rows = read_csv(run_dir / "metrics.csv")
    assert len(rows) == 8 and all(r["nonfinite"] == "0" for r in rows)


def test_train_grpo_from_the_command_line(tmp_path):
    run_dir = tmp_path / "grpo"
    code, err = run_main(
        [
            "train",
            "grpo",
            "--group-size",
            "2",
            "--num-groups",
            "2",
            "--total-timesteps",
            "4000",
            "--num-minibatches",
            "1",
            "--hidden-sizes",
            "8",
            "--run-dir",
            str(run_dir),
            "--no-progress",
            "--no-plot",
        ]
    )
    assert code == 0, err
    rows = read_csv(run_dir / "metrics.csv")
    assert len(rows) == 2 and "group_return_std" in rows[0] and "kl_ref" in rows[0]


def test_flags_accept_underscores_and_reach_the_config():
    argv, explicit = flags.normalize_argv(["train", "--total_timesteps=2048", "--no-anneal-lr"])
    assert argv[:2] == ["train", "ppo"] and not explicit
    args, unknown = cli.build_parser().parse_known_args(argv)
    assert unknown == []
    config = flags.build_config("ppo", flags.config_fields(args, registry.config_class("ppo")))
    assert config.total_timesteps == 2048 and config.anneal_lr is False


def test_choose_chunk_prefers_a_divisor_near_the_target():
    assert runner.choose_chunk(976, 270) == 244  # the default job: 4 chunks of about 1 s on CPU
    assert runner.choose_chunk(8, 650) == 8
    assert runner.choose_chunk(1000, 30) == 25
    assert runner.choose_chunk(977, 270) == 977  # a prime, but one chunk is within 4x of the target
    assert runner.choose_chunk(977, 100) == 100  # a prime: a second, shorter program at the end
    assert runner.choose_chunk(977, 900) == 977
    assert runner.choose_chunk(12, 0) == 1
    config = flags.build_config("ppo", {})
    seconds = runner.estimate_update_seconds(config, 1, "cpu")
    assert 1e-3 < seconds < 1e-2


def test_envs_lists_spaces():
    code, out = run_main(["envs"], stream="out")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["environment", "observation", "action"]
    cartpole = next(line for line in lines if line.startswith("CartPole-v1"))
    assert "Box(4,)" in cartpole and "Discrete(2)" in cartpole
    assert any(line.startswith("Pendulum-v1") and "Box(-2, 2, (1,))" in line for line in lines)


# --- stopping on NaN -----------------------------------------------------------------------

NAN_AFTER = 160  # env steps per environment; with 32 steps per update: update 6 gets NaNs


@struct.dataclass
class CounterState(environment.EnvState):
    total: jax.Array  # steps since the first reset; survives the auto-resets


@struct.dataclass
class CounterParams(environment.EnvParams):
    max_steps_in_episode: int = 10


class NaNRewardEnv(environment.Environment):
    """Episodes of 10 steps with reward 1, until the environment has taken NAN_AFTER steps:
    then every reward is NaN. (Test-only; the CLI imports it as ``test_cli:NaNRewardEnv``.)"""

    @property
    def default_params(self):
        return CounterParams()

    def step(self, key, state, action, params=None):
        params = self.default_params if params is None else params
        total = state.total + 1
        time = state.time + 1
        truncated = time >= params.max_steps_in_episode
        reward = jnp.where(total > NAN_AFTER, jnp.nan, 1.0)
        final_obs = self._obs(time)
        new = CounterState(time=jnp.where(truncated, 0, time), total=total)
        obs = jnp.where(truncated, self._obs(0), final_obs)
        return obs, new, reward, jnp.bool_(False), truncated, {"final_observation": final_obs}

    def reset_env(self, key, params):
        return self._obs(0), CounterState(time=jnp.int32(0), total=jnp.int32(0))

    def reset(self, key, params=None):
        return self.reset_env(key, params)

    @staticmethod
    def _obs(time):
        return jnp.stack([jnp.asarray(time, jnp.float32) / 10.0, jnp.float32(1.0)])

    @property
    def name(self):
        return "NaNReward-v0"

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (2,), jnp.float32)


def test_stops_on_nan_with_update_and_last_checkpoint(env_vars, tmp_path):
    run_dir = tmp_path / "nan"
    proc = jaxpg(
        env_vars,
        "train",
        "--env",
        "test_cli:NaNRewardEnv",
        *TINY,
        "--chunk-updates",
        "2",
        "--checkpoint-every",
        "2",
        "--no-progress",
        "--run-dir",
        run_dir,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert "update 6 had a non-finite loss or gradient" in message
    assert f"last good checkpoint: {run_dir.absolute() / 'checkpoints' / '4'} (update 4)" in message
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["2", "4"]  # nothing after the NaN
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "nonfinite" and summary["updates_done"] == 4
    rows = read_csv(run_dir / "metrics.csv")
    assert [r["nonfinite"] for r in rows] == ["0"] * 5 + ["1"]  # the bad chunk is recorded
    # The environment class is recorded by its import path, so the run can be rebuilt.
    config, _ = runs.read_config(run_dir)
    assert type(config.env).__name__ == "NaNRewardEnv"


@pytest.mark.parametrize("flag", [[], ["--no-compile-cache"]])
def test_persistent_compile_cache_is_on_by_default(env_vars, tmp_path, flag):
    # Default: compiled programs land in $XDG_CACHE_HOME/jaxpg/xla (no JAX_COMPILATION_CACHE_DIR
    # set); --no-compile-cache writes nothing there.
    env = {k: v for k, v in env_vars.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    proc = jaxpg(
        env, "train", *TINY, "--no-progress", "--no-plot", "--run-dir", tmp_path / "run", *flag
    )
    assert proc.returncode == 0, proc.stderr
    cache = tmp_path / "cache" / "jaxpg" / "xla"
    entries = list(cache.iterdir()) if cache.exists() else []
    assert bool(entries) == (not flag), entries


def test_compile_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli.compile_cache_dir() == tmp_path / "jaxpg" / "xla"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cli.compile_cache_dir() == tmp_path / "home" / ".cache" / "jaxpg" / "xla"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
    assert cli.compile_cache_dir() == tmp_path / "mine"


def test_train_from_a_preset_with_overrides(tmp_path):
    run_dir = tmp_path / "preset"
    code, err = run_main(
        [
            "train",
            "--preset",
            "ppo-breakout-minatar-cnn",
            "--num-envs",
            "4",
            "--num-steps",
            "16",
            "--num-minibatches",
            "2",
            "--total-timesteps",
            "128",
            "--run-dir",
            str(run_dir),
            "--no-progress",
            "--no-plot",
        ]
    )
    assert code == 0, err
    config, run = runs.read_config(run_dir)  # the run directory rebuilds the preset's env
    assert (config.env, config.network, config.conv_channels, config.gamma) == (
        "Breakout-MinAtar",
        "cnn",
        (16,),
        0.999,
    )
    assert (config.num_envs, config.num_steps, config.total_timesteps) == (4, 16, 128)
    code, err = run_main(["train", "--preset", "trpo-cartpole"])
    assert code == 2 and "--preset" in err and "ppo-cartpole" in err


def test_a_preset_works_out_its_derived_fields_again():
    # GRPO's num_envs (groups x size) and a whole-episode num_steps follow the flags given.
    args, _ = cli.build_parser().parse_known_args(
        ["train", "grpo", "--preset", "grpo-cartpole", "--group-size", "4"]
    )
    config = flags.build_config(
        "grpo", flags.config_fields(args, registry.config_class("grpo")), args.preset
    )
    assert (config.num_groups, config.group_size, config.num_envs) == (4, 4, 16)
    args, _ = cli.build_parser().parse_known_args(
        [
            "train",
            "ppo",
            "--preset",
            "ppo-reverse-transformer",
            "--env-kwargs",
            '{"prompt_length": 7}',
        ]
    )
    config = flags.build_config(
        "ppo", flags.config_fields(args, registry.config_class("ppo")), args.preset
    )
    assert config.num_steps == 7 and config.network == "transformer"


def test_resume_with_nothing_left_to_train_changes_nothing(sweep_run):
    run_dir, _ = sweep_run
    before = snapshot(run_dir)
    code, out = run_main(["train", "--resume", str(run_dir), "--stop-after", "4"], stream="out")
    assert code == 0 and "nothing to train: the run is at update 8 of 8" in out
    assert snapshot(run_dir) == before


def test_a_run_dir_that_holds_a_run_is_refused(sweep_run):
    run_dir, _ = sweep_run
    before = snapshot(run_dir)
    code, err = run_main(["train", *TINY, "--run-dir", str(run_dir), "--no-progress"])
    assert code == 2 and f"--run-dir {run_dir} already holds a run" in err
    assert f"--resume {run_dir}" in err
    assert snapshot(run_dir) == before
