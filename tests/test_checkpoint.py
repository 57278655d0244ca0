"""Checkpoints: round trips (types, keys, batching), keep-last-N, and clear errors that destroy
nothing for missing, corrupt and incompatible checkpoints. No training (no train compile)."""

import json
import os
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from file_snapshots import snapshot

from jaxpg import checkpoint as ckpt
from jaxpg.ppo import PPOConfig
from jaxpg.reinforce import ReinforceConfig
from jaxpg.train import TrainState, init_state

pytestmark = pytest.mark.timeout(120)

CONFIG = PPOConfig(total_timesteps=1024, num_envs=4, num_steps=32, hidden_sizes=(8,))


def _batched_state(config=CONFIG, seeds=(0, 1)):
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    return jax.jit(jax.vmap(lambda k: init_state(config, k)))(keys)


def _leaves(state):
    return [
        np.asarray(
            jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
        )
        for x in jax.tree.leaves(state)
    ]


def _assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(_leaves(a), _leaves(b)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ckpt")
    state = _batched_state()
    for step in (2, 4, 6, 8):
        ckpt.save_checkpoint(
            directory,
            state.replace(update_step=state.update_step + step),
            CONFIG,
            keep=3,
            metadata={"seeds": [0, 1]},
        )
    return directory, state


def test_round_trip_gives_back_the_same_typed_state(saved):
    directory, state = saved
    restored, meta = ckpt.restore_checkpoint(directory, CONFIG)
    assert isinstance(restored, TrainState)
    assert jax.dtypes.issubdtype(restored.key.dtype, jax.dtypes.prng_key)
    assert meta["step"] == 8 and meta["batch_shape"] == [2] and meta["seeds"] == [0, 1]
    assert meta["config"] == CONFIG.to_dict()
    _assert_same(restored, state.replace(update_step=state.update_step + 8))
    # The restored key continues the same random stream.
    np.testing.assert_array_equal(
        jax.random.key_data(jax.random.split(restored.key[0])),
        jax.random.key_data(jax.random.split(state.key[0])),
    )


def test_keeps_the_last_n_and_restores_a_given_step(saved):
    directory, state = saved
    assert ckpt.checkpoint_steps(directory) == [4, 6, 8]
    restored, meta = ckpt.restore_checkpoint(directory, CONFIG, step=4)
    assert meta["step"] == 4
    _assert_same(restored, state.replace(update_step=state.update_step + 4))
    # A path to one checkpoint works too.
    _, meta = ckpt.restore_checkpoint(directory / "6", CONFIG)
    assert meta["step"] == 6
    with pytest.raises(ckpt.CheckpointError, match=r"no checkpoint for update 5 .* \[4, 6, 8\]"):
        ckpt.restore_checkpoint(directory, CONFIG, step=5)


def test_unbatched_state_and_another_algorithm(tmp_path):
    config = ReinforceConfig(
        total_timesteps=2048, num_envs=4, num_steps=16, baseline="moving_average"
    )
    state = init_state(config, jax.random.key(3))
    path = ckpt.save_checkpoint(tmp_path, state, config)
    assert path == tmp_path.absolute() / "0"
    restored, meta = ckpt.restore_checkpoint(tmp_path, config)
    assert meta["batch_shape"] == []
    _assert_same(restored, state)


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(env="Acrobot-v1"), "env"),
        (dict(hidden_sizes=(16,)), "hidden_sizes"),
        (dict(num_envs=8), "num_envs"),
        (dict(activation="relu"), "activation"),
    ],
)
def test_incompatible_config_is_refused_and_nothing_is_destroyed(saved, change, field):
    directory, _ = saved
    before = snapshot(directory)
    with pytest.raises(
        ckpt.CheckpointError, match=rf"incompatible with this config: {field}: saved"
    ):
        ckpt.restore_checkpoint(directory, CONFIG.replace(**change))
    assert snapshot(directory) == before


def test_another_algorithm_is_refused(saved):
    directory, _ = saved
    with pytest.raises(ckpt.CheckpointError, match="algorithm: saved 'ppo', config 'reinforce'"):
        ckpt.restore_checkpoint(
            directory, ReinforceConfig(total_timesteps=1024, num_envs=4, hidden_sizes=(8,))
        )


def test_shape_mismatch_behind_matching_metadata_is_refused(tmp_path, saved):
    # A checkpoint whose metadata claims a config it was not saved with: the stored array
    # shapes are checked against the config's train state before anything is restored.
    directory, _ = saved
    copy = tmp_path / "ckpt"
    shutil.copytree(directory / "8", copy / "8")
    meta_file = next(p for p in (copy / "8" / "meta").iterdir() if p.is_file())
    meta = json.loads(meta_file.read_text())
    meta["config"]["hidden_sizes"] = [16]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(
        ckpt.CheckpointError, match="does not fit this config's train state: shape mismatch"
    ):
        ckpt.restore_checkpoint(copy, CONFIG.replace(hidden_sizes=(16,)))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.restore_checkpoint(tmp_path / "nope", CONFIG)
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint found"):
        ckpt.restore_checkpoint(tmp_path, CONFIG)
    assert os.listdir(tmp_path) == []


def test_corrupt_checkpoint_is_a_clear_error_and_is_left_as_it_was(tmp_path, saved):
    directory, _ = saved
    copy = tmp_path / "ckpt"
    shutil.copytree(directory, copy)
    # Scribble over every data file of the newest checkpoint's state.
    for root, _, files in os.walk(copy / "8" / "state"):
        for name in files:
            with open(os.path.join(root, name), "r+b") as f:
                size = max(1, os.path.getsize(f.name))
                f.write(b"\x00garbage" * (size // 8 + 1))
    before = snapshot(copy)
    with pytest.raises(
        ckpt.CheckpointError, match=r"checkpoint .*8 cannot be read, it may be corrupt"
    ):
        ckpt.restore_checkpoint(copy, CONFIG)
    assert snapshot(copy) == before
    # The older checkpoints are still there and readable.
    _, meta = ckpt.restore_checkpoint(copy, CONFIG, step=6)
    assert meta["step"] == 6


def test_checkpoint_without_metadata(tmp_path, saved):
    directory, _ = saved
    shutil.copytree(directory / "8", tmp_path / "8")
    shutil.rmtree(tmp_path / "8" / "meta")
    with pytest.raises(ckpt.CheckpointError, match="no readable metadata"):
        ckpt.restore_checkpoint(tmp_path, CONFIG)


def test_save_refuses_bad_keep(tmp_path, saved):
    with pytest.raises(ValueError, match="keep=0 is invalid"):
        ckpt.save_checkpoint(tmp_path, saved[1], CONFIG, keep=0)


# --- env_params in the recorded config ----------------------------------------------------


def _recorded(config):
    """A checkpoint's metadata for ``config``, as it comes back from JSON."""
    from jaxpg.files import to_json

    return json.loads(to_json({"config": config.to_dict()}))


def _params(env, **overrides):
    from jaxpg.runs import env_params_with

    return env_params_with(env, overrides, {})


def test_env_params_recorded_by_their_fields_match_the_rebuilt_config(tmp_path):
    from jaxpg import runs

    config = CONFIG.replace(env_params=_params("CartPole-v1", max_steps_in_episode=200))
    runs.write_config(tmp_path, config, {})
    rebuilt, _ = runs.read_config(tmp_path)
    ckpt.check_compatible(_recorded(config), rebuilt)
    acrobot = PPOConfig(
        env="Acrobot-v1",
        env_params=_params("Acrobot-v1", available_torque=[-2.0, 0.0, 2.0]),
        total_timesteps=1024,
    )
    ckpt.check_compatible(_recorded(acrobot), acrobot.replace())
    with pytest.raises(ckpt.CheckpointError, match="env_params: saved"):
        ckpt.check_compatible(
            _recorded(acrobot),
            acrobot.replace(env_params=_params("Acrobot-v1", available_torque=[-1.0, 0.0, 1.0])),
        )


def test_other_env_params_are_refused_and_the_defaults_match_none():
    limited = CONFIG.replace(env_params=_params("CartPole-v1", max_steps_in_episode=200))
    with pytest.raises(ckpt.CheckpointError, match="env_params: saved None"):
        ckpt.check_compatible(_recorded(CONFIG), limited)
    with pytest.raises(ckpt.CheckpointError, match="env_params: saved {"):
        ckpt.check_compatible(_recorded(limited), CONFIG)
    # The default params given explicitly are the environment's defaults (None).
    explicit = CONFIG.replace(env_params=_params("CartPole-v1"))
    ckpt.check_compatible(_recorded(CONFIG), explicit)
    ckpt.check_compatible(_recorded(explicit), CONFIG)


def test_env_params_recorded_by_repr_in_an_older_checkpoint():
    limited = CONFIG.replace(env_params=_params("CartPole-v1", max_steps_in_episode=200))
    old = _recorded(limited)
    old["config"]["env_params"] = repr(limited.env_params)
    ckpt.check_compatible(old, limited)
    with pytest.raises(ckpt.CheckpointError, match="env_params: saved 'EnvParams"):
        ckpt.check_compatible(
            old, CONFIG.replace(env_params=_params("CartPole-v1", max_steps_in_episode=300))
        )
    with pytest.raises(ckpt.CheckpointError, match="env_params: saved 'EnvParams"):
        ckpt.check_compatible(old, CONFIG)


# A format-2 checkpoint written by jaxpg 73ef3c8 (before format 3: the eleven closed
# hyperparameters and one-part running statistics), with that jaxpg's restored leaves
# (restored.npz) and its state after one more update from it (next_update.npz).
FORMAT_2 = os.path.join(os.path.dirname(__file__), "data", "checkpoint_format2")
FORMAT_2_CONFIG = PPOConfig(
    env="CartPole-v1", num_envs=4, num_steps=8, total_timesteps=64, hidden_sizes=(8,),
    normalize_obs=True, normalize_rewards=True, num_minibatches=2, num_epochs=1,
)  # fmt: skip


def _named_leaves(state) -> dict[str, np.ndarray]:
    out = {}
    for path, x in jax.tree_util.tree_leaves_with_path(state):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        out[jax.tree_util.keystr(path)] = np.asarray(x)
    return out


def _assert_matches_format_2(state, reference_file):
    ours = _named_leaves(state)
    reference = dict(np.load(os.path.join(FORMAT_2, reference_file)))
    lo = {k for k in ours if k.endswith("_lo")}
    parts = ("mean", "var", "count")
    assert lo == {f".env.{s}_stats.{p}_lo" for s in ("obs", "reward") for p in parts}
    # The new leaves: the traced hyperparameters are the config's, the lo parts are new.
    hparams = {k for k in ours if k.startswith(".hparams.")}
    assert hparams == {f".hparams.{n}" for n in FORMAT_2_CONFIG.traced_fields()}
    assert set(ours) - lo <= set(reference)
    for name in sorted(set(ours) - lo):
        np.testing.assert_allclose(ours[name], reference[name], rtol=1e-5, atol=1e-7, err_msg=name)
    return ours


def test_a_format_2_checkpoint_restores_and_trains_on():
    from jaxpg.train import make_train_chunk

    state, meta = ckpt.restore_checkpoint(FORMAT_2, FORMAT_2_CONFIG)
    assert meta["format"] == 2 and meta["step"] == 2
    ours = _assert_matches_format_2(state, "restored.npz")
    assert all(not ours[k].any() for k in ours if k.endswith("_lo"))  # a one-part sum: lo = 0
    state, _ = jax.jit(make_train_chunk(FORMAT_2_CONFIG, 1))(state)
    # Short runs merge with the plain float32 formula: the same update as jaxpg then.
    _assert_matches_format_2(state, "next_update.npz")


def test_object_store_urls_are_refused_not_mangled():
    """``Path("gs://b/run").absolute()`` would be a local folder named ``gs:``; the run loop and
    the checkpoints refuse the URL in one line instead, and write nothing."""
    import jaxpg
    from jaxpg.runner import RunArgumentError

    config = PPOConfig(total_timesteps=4 * 16 * 2, num_envs=4, num_steps=16)
    with pytest.raises(RunArgumentError, match=r"run_dir='gs://bucket/run'.*mounted"):
        jaxpg.run(config, run_dir="gs://bucket/run")
    with pytest.raises(RunArgumentError, match="object-store"):
        jaxpg.resume("gs://bucket/run")
    with pytest.raises(ValueError, match=r"directory='s3://b/ckpt'"):
        ckpt.Checkpointer("s3://b/ckpt", config)
    with pytest.raises(ValueError, match="object-store"):  # a Path has collapsed "//" to "/"
        ckpt.Checkpointer(Path("gs://b/ckpt"), config)
    assert not os.path.exists("gs:") and not os.path.exists("s3:")
