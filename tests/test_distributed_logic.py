"""The parts of multi-host training that need no second host: the global batch arithmetic,
per-process seeding, the process-0-writes guard, the mesh and the state's sharding, and
``initialize_distributed``'s checks. (Real multi-device and two-process runs are in
``test_multidevice.py``.)"""

import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec
from jit_counts import compiles

import jaxpg
from jaxpg import distributed as dist
from jaxpg import processes


def tiny_ppo(**kw):
    base = dict(
        env="CartPole-v1",
        num_envs=4,
        num_steps=8,
        num_minibatches=2,
        num_epochs=1,
        total_timesteps=4 * 8 * 3,
    )
    return jaxpg.PPOConfig(**{**base, **kw})


# -- the global batch -------------------------------------------------------------------------------


def test_batch_layout_splits_the_global_batch():
    config = tiny_ppo(num_envs=2048, num_steps=16, total_timesteps=2048 * 16)
    # A v5e-32 pod slice: 8 hosts x 4 chips.
    layout = dist.batch_layout(config, num_devices=32, num_processes=8)
    assert layout == dist.BatchLayout(
        num_envs=2048,
        num_devices=32,
        num_processes=8,
        envs_per_device=64,
        envs_per_process=256,
        env_steps_per_update=2048 * 16,
    )
    # Defaults: this process's view (one process here).
    here = dist.batch_layout(tiny_ppo())
    assert here.num_devices == jax.device_count() and here.num_processes == jax.process_count()
    assert here.envs_per_device * here.num_devices == 4


def test_batch_layout_refuses_an_uneven_split_with_a_suggestion():
    with pytest.raises(
        ValueError,
        match=r"num_envs=6 must be divisible by the global device count "
        r"8 \(2 process\(es\) x 4 device\(s\)\).*num_envs=8",
    ):
        dist.batch_layout(tiny_ppo(num_envs=6, num_minibatches=1), num_devices=8, num_processes=2)
    with pytest.raises(ValueError, match="num_envs=12 or 16"):
        dist.batch_layout(
            tiny_ppo(num_envs=14, num_minibatches=1, total_timesteps=14 * 8),
            num_devices=4,
            num_processes=1,
        )
    with pytest.raises(ValueError, match="cannot split evenly over 3 process"):
        dist.batch_layout(tiny_ppo(), num_devices=4, num_processes=3)


# -- per-process seeding and the process-0 guard ----------------------------------------------------


def test_process_keys_differ_between_processes_and_are_reproducible():
    key = jax.random.key(42)
    keys = [np.asarray(jax.random.key_data(dist.process_key(key, i))) for i in range(8)]
    assert len({k.tobytes() for k in keys}) == 8
    np.testing.assert_array_equal(keys[3], jax.random.key_data(jax.random.fold_in(key, 3)))
    # Default: this process's index.
    np.testing.assert_array_equal(
        jax.random.key_data(dist.process_key(key)), jax.random.key_data(jax.random.fold_in(key, 0))
    )


def test_global_seed_is_the_seed_with_one_process():
    assert dist.global_seed(7) == 7 and isinstance(dist.global_seed(np.int64(7)), int)


def test_only_process_zero_writes(tmp_path, monkeypatch):
    @dist.main_process_only
    def write(name):
        (tmp_path / name).write_text("x")
        return name

    assert dist.is_main_process() and dist.is_main_process(0) and not dist.is_main_process(3)
    assert write("from0.txt") == "from0.txt"
    monkeypatch.setattr(jax, "process_index", lambda *a, **k: 1)
    assert not dist.is_main_process()
    assert write("from1.txt") is None
    assert sorted(os.listdir(tmp_path)) == ["from0.txt"]


# -- initialize_distributed -----------------------------------------------------------------------


def test_initialize_distributed_checks_its_arguments(monkeypatch):
    monkeypatch.setattr(processes, "_distributed_is_initialized", lambda: False)

    def must_not_run(**kwargs):
        raise AssertionError("jax.distributed.initialize should not be reached")

    monkeypatch.setattr(jax.distributed, "initialize", must_not_run)
    with pytest.raises(ValueError, match="process_id=2 must be < num_processes=2"):
        dist.initialize_distributed("localhost:1234", num_processes=2, process_id=2)
    with pytest.raises(ValueError, match="num_processes=-1 must be a non-negative int"):
        dist.initialize_distributed("localhost:1234", num_processes=-1, process_id=0)


def test_initialize_distributed_is_a_no_op_once_joined(monkeypatch):
    monkeypatch.setattr(processes, "_distributed_is_initialized", lambda: True)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **k: pytest.fail("called twice"))
    assert dist.initialize_distributed() == dist.topology()


def test_initialize_distributed_explains_late_calls(monkeypatch):
    monkeypatch.setattr(processes, "_distributed_is_initialized", lambda: False)

    def too_late(**kwargs):
        raise RuntimeError(
            "jax.distributed.initialize() must be called before any JAX computations are executed."
        )

    monkeypatch.setattr(jax.distributed, "initialize", too_late)
    with pytest.raises(RuntimeError, match="before those imports"):
        dist.initialize_distributed("localhost:1234", 2, 0)


def test_initialize_distributed_works_after_importing_jaxpg():
    """A real single-process job: importing jaxpg must leave JAX's backend unstarted, so the
    CLI and scripts can join a job after ``import jaxpg``."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    script = (
        "import json, jaxpg, jaxpg.distributed as dist\n"
        f"topo = dist.initialize_distributed('localhost:{port}', num_processes=1, process_id=0)\n"
        "config = jaxpg.PPOConfig(num_envs=2, num_steps=4, num_minibatches=1, total_timesteps=8)\n"
        "print(json.dumps({'topology': topo._asdict(), 'again': dist.initialize_distributed()._asdict(),\n"
        "                  'layout': dist.batch_layout(config)._asdict()}))\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["topology"]["process_count"] == 1 and out["topology"]["process_index"] == 0
    assert out["again"] == out["topology"]
    assert out["layout"]["num_processes"] == 1


# -- the mesh and the state's sharding ------------------------------------------------------------


def test_topology_and_mesh():
    topo = dist.topology()
    assert topo.process_index == jax.process_index()
    assert topo.global_device_count == jax.device_count() >= topo.local_device_count >= 1
    mesh = dist.make_mesh()
    assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
    if hasattr(jax.sharding, "AxisType"):  # Auto, not Explicit: gymnax's vmaps need it
        assert tuple(mesh.axis_types) == (jax.sharding.AxisType.Auto,)
    assert dist.make_mesh(jax.devices()[:1], axis_name="seeds").axis_names == ("seeds",)
    with pytest.raises(ValueError, match="no devices"):
        dist.make_mesh([])


def test_state_shardings_split_the_environments_and_replicate_the_rest():
    # 4 envs and CartPole's 4-dimensional observations: the statistics' shape (4,) matches the
    # env axis, so only the field names can tell them apart.
    config = tiny_ppo(num_envs=4, normalize_obs=True)
    shardings = dist.state_shardings(config)
    per_env, replicated = PartitionSpec("data"), PartitionSpec()
    assert shardings.env.obs.spec == per_env
    assert shardings.env.episode_return.spec == per_env
    assert all(s.spec == per_env for s in jax.tree.leaves(shardings.env.env_state))
    assert all(s.spec == replicated for s in jax.tree.leaves(shardings.env.obs_stats))
    assert all(s.spec == replicated for s in jax.tree.leaves(shardings.params))
    assert all(s.spec == replicated for s in jax.tree.leaves(shardings.opt_state))
    assert shardings.key.spec == replicated and shardings.hparams.lr.spec == replicated

    state = dist.shard_state(config, jax.jit(jaxpg.make_init(config))(jax.random.key(0)))
    assert state.env.obs.sharding.spec == per_env
    assert state.env.obs_stats.mean.sharding.is_fully_replicated


def test_to_host_gives_numpy_arrays():
    tree = {"a": jnp.arange(3.0), "key": jax.random.key(1), "n": 2}
    out = dist.to_host(tree)
    assert isinstance(out["a"], np.ndarray) and out["a"].tolist() == [0.0, 1.0, 2.0]
    np.testing.assert_array_equal(out["key"], jax.random.key_data(jax.random.key(1)))
    assert out["n"] == 2


def test_sharded_train_on_this_process_devices_equals_plain_jit():
    """The single-device path (a Colab v5e-1, or this CPU): same result as ``jax.jit(train)``."""
    config = tiny_ppo(normalize_obs=True)
    key = jax.random.key(0)
    plain = jax.jit(jaxpg.make_train(config))(key)
    sharded = dist.make_sharded_train(config)
    result = sharded(key)
    np.testing.assert_allclose(result.metrics["loss"], plain.metrics["loss"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(result.metrics["episodes"], plain.metrics["episodes"])
    for a, b in zip(jax.tree.leaves(result.params), jax.tree.leaves(plain.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Other hyperparameters reuse the compiled program (a raw uint32 PRNGKey is another
    # signature: one more program, then reused too).
    raw, typed = jax.random.PRNGKey(1), jax.random.key(2)
    sharded(raw, config.hparams(lr=1e-3))
    hp = config.hparams(lr=3e-4, clip_eps=0.1)
    with compiles() as done:
        sharded(typed, hp)
        sharded(raw, hp)
    assert done == []
    # Ahead of time: compile, then run with other arguments of the same kinds.
    run = sharded.compile(key)
    again = run(key, config.hparams())
    np.testing.assert_array_equal(again.metrics["loss"], result.metrics["loss"])
    with pytest.raises(ValueError, match="another kind of key"):
        run(jax.random.PRNGKey(0))
