"""Run-directory files: atomic writes, config round trips, the metrics table, the summary's
"final return", the plots and the optional loggers. No training here (no compiles)."""

import json
import os
import stat

import numpy as np
import pytest

import jaxpg
from jaxpg import files, metrics, plotting, runs
from jaxpg.members import Members
from jaxpg.ppo import PPOConfig
from jaxpg.reinforce import ReinforceConfig

pytestmark = pytest.mark.timeout(120)


# --- atomic writes -----------------------------------------------------------------------


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "summary.json"
    files.atomic_write_json(path, {"a": 1, "x": np.float32(2.5), "n": np.int64(3)})
    files.atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert os.listdir(tmp_path) == ["summary.json"]


def test_atomic_write_gives_the_mode_open_would(tmp_path):
    # mkstemp's files are private (0600); a run directory's files must not be.
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    path = tmp_path / "config.json"
    files.atomic_write_json(path, {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with files.atomic_path(path) as tmp:
            tmp.write_text("half a fi")
            raise RuntimeError("crash while writing")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["metrics.csv"]


def test_json_writes_nan_and_infinity_as_null_and_arrays_as_lists(tmp_path):
    path = tmp_path / "summary.json"
    files.atomic_write_json(
        path,
        {"nan": float("nan"), "inf": np.float32(np.inf), "a": np.array([1.0, np.nan]), 3: True},
    )
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"nan": None, "inf": None, "a": [1.0, None], "3": True}


# --- config.json -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        PPOConfig(total_timesteps=4096, hidden_sizes=(16, 8), lr=1e-3, anneal_lr=False),
        ReinforceConfig(
            total_timesteps=8192, baseline="moving_average", mode="trajectory", num_steps=None
        ),
    ],
    ids=["ppo", "reinforce"],
)
def test_config_json_round_trip(tmp_path, config):
    runs.write_config(tmp_path, config, {"seeds": [0, 1]})
    rebuilt, run = runs.read_config(tmp_path)
    assert type(rebuilt) is type(config)
    assert rebuilt.to_dict() == config.to_dict()
    assert rebuilt == config and hash(rebuilt) == hash(config)
    assert run == {"seeds": [0, 1]}


@pytest.mark.parametrize(
    "env, overrides",
    [
        ("CartPole-v1", {"max_steps_in_episode": 200}),
        ("Acrobot-v1", {"available_torque": [-2.0, 0.5, 2.0], "dt": 0.1}),  # a float32 array
        ("DiscountingChain-bsuite", {"reward_timestep": [1, 3, 10, 30, 99]}),  # an int32 array
    ],
    ids=["cartpole", "acrobot", "discounting-chain"],
)
def test_config_json_rebuilds_env_params_exactly(tmp_path, env, overrides):
    params = runs.env_params_with(env, overrides, {})
    config = PPOConfig(env=env, env_params=params, total_timesteps=1024)
    runs.write_config(tmp_path, config, {})
    recorded = json.loads((tmp_path / runs.CONFIG_FILE).read_text())["config"]["env_params"]
    assert recorded == {**jaxpg.config.env_params_dict(params), **overrides}
    rebuilt, _ = runs.read_config(tmp_path)
    assert rebuilt == config and hash(rebuilt) == hash(config)
    for name, default in vars(params).items():  # the same kinds and dtypes of value
        value = getattr(rebuilt.env_params, name)
        assert type(value) is type(default)
        assert np.asarray(value).dtype == np.asarray(default).dtype
    assert rebuilt.env_spec.max_steps_in_episode == config.env_spec.max_steps_in_episode


def test_config_json_rebuilds_env_kwargs(tmp_path):
    config = PPOConfig(
        env="seq:reverse", env_kwargs={"prompt_length": 5}, total_timesteps=1024, num_steps=16
    )
    runs.write_config(tmp_path, config, {})
    rebuilt, _ = runs.read_config(tmp_path)
    assert rebuilt == config and hash(rebuilt) == hash(config)
    assert rebuilt.env_spec.obs_shape == config.env_spec.obs_shape


def _write_old_config(run_dir, config, run):
    """config.json as jaxpg wrote it before env_params were recorded by their fields."""
    d = config.to_dict()
    d["env_params"] = None if config.env_params is None else repr(config.env_params)
    (run_dir / runs.CONFIG_FILE).write_text(json.dumps({"config": d, "run": run}))


def test_old_config_json_rebuilds_from_the_cli_overrides_in_the_run_info(tmp_path):
    params = runs.env_params_with("CartPole-v1", {"max_steps_in_episode": 200}, {})
    config = PPOConfig(env_params=params, total_timesteps=1024)
    _write_old_config(tmp_path, config, {"env_params_overrides": {"max_steps_in_episode": 200}})
    rebuilt, run = runs.read_config(tmp_path)
    assert rebuilt == config
    assert run["env_params_overrides"] == {"max_steps_in_episode": 200}
    # config_from_dict takes them beside the config's fields too.
    data = json.loads((tmp_path / runs.CONFIG_FILE).read_text())
    assert runs.config_from_dict({**data["config"], **data["run"]}) == config


def test_old_config_json_with_params_set_from_python_is_refused(tmp_path):
    config = PPOConfig(
        env_params=runs.env_params_with("CartPole-v1", {"tau": 0.01}, {}), total_timesteps=1024
    )
    _write_old_config(tmp_path, config, {})
    with pytest.raises(ValueError, match="env_params were set from Python"):
        runs.read_config(tmp_path)


def test_env_params_with_turns_json_lists_into_arrays_of_the_default_dtype():
    params = runs.env_params_with("Acrobot-v1", {"available_torque": [-1, 0, 1]}, {})
    assert params.available_torque.dtype == np.float32
    np.testing.assert_array_equal(params.available_torque, [-1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"env_params.available_torque=\['a'\] is invalid"):
        runs.env_params_with("Acrobot-v1", {"available_torque": ["a"]}, {})


@pytest.mark.parametrize(
    "env, field, value, wanted, good",
    [
        ("CartPole-v1", "gravity", "strong", "a number", 3),
        ("CartPole-v1", "gravity", None, "a number", 3.5),
        ("CartPole-v1", "gravity", [9.8], "a number", 3),
        ("CartPole-v1", "max_steps_in_episode", True, "a number", 7),
        ("Acrobot-v1", "available_torque", "x", "an array of float32", [-2, 0, 2]),
    ],
)
def test_env_params_with_refuses_values_of_another_kind(env, field, value, wanted, good):
    with pytest.raises(ValueError, match=rf"env_params.{field}=.* is invalid: {wanted}"):
        runs.env_params_with(env, {field: value}, {})
    # the same field takes a value of its kind (an int for a float field too)
    np.testing.assert_array_equal(
        getattr(runs.env_params_with(env, {field: good}, {}), field), good
    )


def test_env_params_with_names_unknown_fields():
    with pytest.raises(ValueError, match=r"env_params: unknown field\(s\) \['nope'\]"):
        runs.env_params_with("CartPole-v1", {"nope": 1}, {})


def test_read_config_of_a_non_run_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json does not exist"):
        runs.read_config(tmp_path)


def test_default_run_dir_is_unique(tmp_path):
    config = PPOConfig(total_timesteps=1024)
    first = runs.default_run_dir(config, tmp_path)
    assert first.name.startswith("CartPole-v1-ppo-")
    first.mkdir()
    second = runs.default_run_dir(config, tmp_path)
    assert second != first and not second.exists()


def test_environment_info_has_versions_and_backend():
    info = runs.environment_info()
    assert info["jaxpg_version"] == jaxpg.__version__
    assert info["backend"] in ("cpu", "gpu", "tpu", "cuda", "rocm")
    assert {"jax_version", "device", "python_version", "platform"} <= set(info)


# --- metrics table -----------------------------------------------------------------------


def _chunk_metrics(num_members, n, first_update, batch=10, offset=0.0):
    updates = np.arange(first_update + 1, first_update + n + 1)
    member = np.arange(num_members)[:, None]
    return {
        "episode_return": (member * 100 + updates[None] + offset).astype(np.float32),
        "env_steps": np.broadcast_to(updates * batch, (num_members, n)).astype(np.int32),
        "nonfinite": np.zeros((num_members, n), bool),
        "loss": np.full((num_members, n), 0.1, np.float32),
    }


def test_metrics_rows_layout_for_a_sweep():
    settings = [{"lr": 1e-3}, {"lr": 3e-4}]
    seeds = [5, 6]
    table = metrics.metrics_rows(
        _chunk_metrics(4, 3, first_update=2),
        first_update=2,
        members=Members.of(seeds, settings),
        sps=1234.5,
        time=1.0,
    )
    names = list(table)
    assert names[:4] == ["setting", "lr", "seed", "update"]
    assert names[4:6] == ["env_steps", "episode_return"]
    assert names[-2:] == ["sps", "time"]
    assert metrics.table_len(table) == 4 * 3
    # Member m is setting m // 2 with seed seeds[m % 2]; rows are update-major.
    row = 5  # update 4 (second of the chunk), member 1
    assert table["update"][row] == 4 and table["setting"][row] == 0 and table["seed"][row] == 6
    assert table["episode_return"][row] == 100 + 4
    assert table["lr"][7] == 3e-4 and table["env_steps"][7] == 40
    assert table["nonfinite"].dtype == np.int64


def test_metrics_csv_round_trip_keeps_float32_exactly(tmp_path):
    chunk = _chunk_metrics(2, 4, first_update=0)
    chunk["episode_return"][0, 0] = np.nan
    chunk["loss"][1, 2] = np.float32(1 / 3)
    table = metrics.metrics_rows(
        chunk, first_update=0, members=Members.of([0, 1], None), sps=10.0, time=0.5
    )
    path = tmp_path / runs.METRICS_FILE
    metrics.write_metrics_csv(path, table)
    back = metrics.read_metrics_csv(path)
    assert list(back) == list(table)
    for name in table:
        want = np.asarray(table[name])
        np.testing.assert_array_equal(back[name].astype(want.dtype), want)
    assert np.float32(back["loss"][5]) == np.float32(1 / 3)  # update 3 (row 2*2), member 1
    assert path.read_text().splitlines()[0].startswith("seed,update,env_steps,episode_return")


def test_final_return_is_the_mean_of_the_last_tenth_ignoring_nan():
    values = np.concatenate([np.zeros(18), [np.nan, 10.0]])  # last 10% of 20 = 2 updates
    assert metrics.final_return(values[None])[0] == 10.0
    assert np.isnan(metrics.final_return(np.full((1, 5), np.nan))[0])
    assert metrics.final_return(np.array([[1.0, 2.0, 3.0]]))[0] == 3.0  # at least one update


def test_summarize_reports_mean_and_std_over_seeds():
    blocks = []
    for first in (0, 10):
        m = _chunk_metrics(2, 10, first_update=first)
        m["episode_return"] = np.stack([np.full(10, 100.0), np.full(10, 200.0)]).astype(np.float32)
        blocks.append(
            metrics.metrics_rows(
                m, first_update=first, members=Members.of([0, 1], None), sps=1.0, time=1.0
            )
        )
    summary = metrics.summarize(metrics.concat_tables(blocks), extra={"backend": "cpu"})
    assert summary["final_return_mean"] == 150.0
    assert summary["final_return_std"] == 50.0
    assert summary["final_return_per_seed"] == [100.0, 200.0]
    assert summary["updates"] == 20 and summary["seeds"] == [0, 1]
    assert "last 10% of updates" in summary["final_return_definition"]


def test_summarize_sweep_picks_the_best_setting():
    m = _chunk_metrics(4, 10, first_update=0)
    table = metrics.metrics_rows(
        m, first_update=0, members=Members.of([0, 1], [{"lr": 1.0}, {"lr": 2.0}]), sps=1.0, time=1.0
    )
    summary = metrics.summarize(table, settings=[{"lr": 1.0}, {"lr": 2.0}])
    assert [s["lr"] for s in summary["settings"]] == [1.0, 2.0]
    assert summary["best_setting"]["lr"] == 2.0  # members 2, 3 have returns 200+ and 300+


# --- plots -------------------------------------------------------------------------------


def test_smooth_curve_ignores_nan_and_is_trailing():
    x = np.array([np.nan, 1.0, 3.0, np.nan, 5.0])
    np.testing.assert_allclose(plotting.smooth_curve(x, 2), [np.nan, 1.0, 2.0, 3.0, 5.0])
    np.testing.assert_array_equal(plotting.smooth_curve(x, 1), x)


def test_plots_are_written(tmp_path):
    settings = [{"lr": 1e-3}, {"lr": 3e-4}]
    blocks = [
        metrics.metrics_rows(
            _chunk_metrics(4, 5, first_update=f),
            first_update=f,
            members=Members.of([0, 1], settings),
            sps=1.0,
            time=1.0,
        )
        for f in (0, 5)
    ]
    table = metrics.concat_tables(blocks)
    plotting.plot_learning_curve(table, tmp_path / "curve.png", title="t")
    plotting.plot_sweep(table, tmp_path / "sweep.png")
    single = metrics.metrics_rows(
        _chunk_metrics(1, 5, 0), first_update=0, members=Members.of([3], None), sps=1.0, time=1.0
    )
    plotting.plot_learning_curve(single, tmp_path / "one.png")
    for name in ("curve.png", "sweep.png", "one.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["curve.png", "one.png", "sweep.png"]


# --- optional loggers --------------------------------------------------------------------


def test_tensorboard_logger_writes_events(tmp_path):
    pytest.importorskip("tensorboardX")
    from jaxpg.logging_backends import make_logger

    logger = make_logger("tensorboard", tmp_path, {"lr": 1e-3})
    logger.log({"episode_return": 10.0, "loss": float("nan")}, step=512)
    logger.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_wandb_logger_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from jaxpg.logging_backends import make_logger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = make_logger("wandb", tmp_path, {"lr": 1e-3}, project="jaxpg-test")
    logger.log({"episode_return": 10.0, "loss": float("nan")}, step=512)
    logger.close()
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


def test_unknown_logger():
    from jaxpg.logging_backends import make_logger

    with pytest.raises(ValueError, match="unknown logger"):
        make_logger("mlflow", ".", {})
