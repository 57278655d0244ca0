"""The run loop from Python (jaxpg.run / jaxpg.resume) and the member helper."""

import jax
import numpy as np
import pytest
from test_cli import NaNRewardEnv

import jaxpg
from jaxpg import runs
from jaxpg.callbacks import Callback, LoggerCallback
from jaxpg.members import Members
from jaxpg.runner import RunArgumentError

pytestmark = pytest.mark.timeout(300)

# 16 updates of 4 envs x 32 steps.
TINY = dict(total_timesteps=16 * 128, num_envs=4, num_steps=32, num_minibatches=2, num_epochs=1)


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_a_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path):
    config = jaxpg.PPOConfig(**TINY)
    common = dict(seeds=[3, 5], progress=False, chunk_updates=4, verbose=False)
    whole = jaxpg.run(config, **common)
    assert whole.status == "complete" and whole.updates_done == 16 and whole.run_dir is None

    run_dir = tmp_path / "run"
    first = jaxpg.run(
        config, run_dir=run_dir, checkpoint_every=4, keep_checkpoints=10, stop_after=8, **common
    )
    assert first.status == "stopped" and first.updates_done == 8
    # A checkpoint every chunk (k = 1 chunk of 4 updates) until the stop.
    assert sorted(int(p.name) for p in (run_dir / runs.CHECKPOINT_DIR).iterdir()) == [4, 8]
    second = jaxpg.resume(run_dir, progress=False, chunk_updates=4, verbose=False)
    assert second.status == "complete" and second.updates_done == 16

    for a, b in zip(leaves(whole.state.params), leaves(second.state.params), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(second.state.update_step), [16, 16])
    # The resumed table holds every update of both members, equal to the uninterrupted one's.
    assert len(second.table["update"]) == 2 * 16
    np.testing.assert_array_equal(second.table["loss"], whole.table["loss"])
    assert second.summary["final_return_per_seed"] == whole.summary["final_return_per_seed"]
    assert runs.read_config(run_dir)[1]["resumes"][0]["from_update"] == 8


def test_the_nonfinite_stop_returns_the_last_good_update():
    # NaN rewards from env step 160 on: update 6 of 32-step rollouts is the first bad one.
    config = jaxpg.PPOConfig(env=NaNRewardEnv(), **TINY)
    result = jaxpg.run(config, seeds=2, progress=False, chunk_updates=2, verbose=False)
    assert result.status == "nonfinite" and result.updates_done == 4
    assert "update 6 had a non-finite loss or gradient" in result.message
    assert "update 4, the last good one" in result.message
    np.testing.assert_array_equal(np.asarray(result.state.update_step), [4, 4])
    good = jaxpg.run(config, seeds=2, progress=False, chunk_updates=2, stop_after=4, verbose=False)
    for a, b in zip(leaves(result.state.params), leaves(good.state.params), strict=True):
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)
    assert result.table["nonfinite"].tolist() == [0] * 10 + [1, 1]  # the bad chunk is recorded


def test_callbacks_see_each_chunk_and_can_stop_the_run():
    class Recorder(Callback):
        def __init__(self):
            self.events = []

        def on_start(self, run):
            self.events.append(("start", run.start, run.end, run.chunk_updates))

        def on_chunk(self, run, chunk):
            self.events.append(("chunk", chunk.first_update, chunk.length, run.done))
            assert chunk.metrics["episode_return"].shape == (4, chunk.length)  # 2 settings x 2
            return "enough" if run.done >= 8 else None

        def on_end(self, run, result):
            self.events.append(("end", result.status, result.updates_done))

    recorder = Recorder()
    config = jaxpg.PPOConfig(**TINY)
    result = jaxpg.run(
        config,
        seeds=2,
        sweep={"lr": [1e-3, 3e-3]},
        callbacks=[recorder],
        progress=False,
        chunk_updates=4,
        verbose=False,
    )
    assert recorder.events == [
        ("start", 0, 16, 4),
        ("chunk", 0, 4, 4),
        ("chunk", 4, 4, 8),
        ("end", "stopped", 8),
    ]
    assert result.message == "enough"
    assert [s["lr"] for s in result.summary["settings"]] == [1e-3, 3e-3]


def test_run_refuses_bad_arguments_before_doing_anything(tmp_path):
    config = jaxpg.PPOConfig(**TINY)
    with pytest.raises(ValueError, match="checkpoint_every=-1"):
        jaxpg.run(config, run_dir=tmp_path / "a", checkpoint_every=-1, verbose=False)
    with pytest.raises(ValueError, match="unknown hyperparameter 'not_a_field'"):
        jaxpg.run(config, sweep={"not_a_field": [1.0]}, verbose=False)
    with pytest.raises(ValueError, match="seeds=0"):
        jaxpg.run(config, seeds=0, verbose=False)
    assert not (tmp_path / "a").exists()


def test_members_are_setting_major():
    members = Members.of([7, 9, 11], [{"lr": 1e-3}, {"lr": 3e-3}])
    assert len(members) == 6 and members.num_seeds == 3 and members.num_settings == 2
    assert [int(members.seed(m)) for m in range(6)] == [7, 9, 11, 7, 9, 11]
    assert [int(members.setting_index(m)) for m in range(6)] == [0, 0, 0, 1, 1, 1]
    assert members.describe(4) == "setting 1 lr=0.003, seed 9"
    assert Members.of(2).describe(1) == "seed 1"
    assert members.setting_slices() == [(0, slice(0, 3)), (1, slice(3, 6))]
    assert Members.from_dict(members.to_dict()).to_dict() == members.to_dict()

    config = jaxpg.PPOConfig(**TINY)
    keys, hp = members.inputs(config)
    for m in range(6):
        np.testing.assert_array_equal(
            jax.random.key_data(keys[m]), jax.random.key_data(jax.random.key(int(members.seed(m))))
        )
    np.testing.assert_allclose(np.asarray(hp.lr), [1e-3] * 3 + [3e-3] * 3)
    np.testing.assert_allclose(np.asarray(hp.gamma), [config.gamma] * 6)


def test_spread_members_must_divide_over_the_devices(tmp_path, monkeypatch):
    monkeypatch.setattr(jax, "device_count", lambda: 2)
    with pytest.raises(RunArgumentError, match="3 members .* divisible by the device count 2"):
        jaxpg.run(jaxpg.PPOConfig(**TINY), seeds=3, spread=True, run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_logger_built_by_the_run_gets_every_update_and_is_closed(tmp_path):
    class FakeLogger:
        def __init__(self, run):
            self.run_dir, self.rows, self.closed = run.run_dir, [], False

        def log(self, row, step):
            self.rows.append((step, row))

        def close(self):
            self.closed = True

    made = []
    callback = LoggerCallback(lambda run: made.append(FakeLogger(run)) or made[-1])
    config = jaxpg.PPOConfig(**TINY)
    jaxpg.run(config, seeds=2, run_dir=tmp_path / "r", callbacks=[callback], progress=False,
              chunk_updates=4, verbose=False)  # fmt: skip
    (logger,) = made
    assert logger.run_dir == tmp_path / "r" and (tmp_path / "r" / "config.json").exists()
    assert [step for step, _ in logger.rows] == [u * 128 for u in range(1, 17)]
    assert np.isfinite(logger.rows[-1][1]["loss"]) and logger.closed
