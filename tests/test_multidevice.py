"""Data-parallel training on 4 forced CPU devices matches one device; two processes too.

``XLA_FLAGS=--xla_force_host_platform_device_count=4`` only takes effect in a process whose
JAX has not started yet, so each check runs ``_multidevice_worker.py`` in a subprocess and
asserts on the numbers it reports.

Tolerances. The 4-device program computes the same global means as the one-device program,
but sums in another order (per-device partial sums, then an all-reduce), so results agree to
float32 rounding, not bit for bit. On these tiny runs the measured differences are below
2e-6 on the losses and 3e-7 on the parameters; the tests allow 1e-5 (losses, statistics) and
1e-6 (parameters, after Adam's normalised steps). The random numbers, hence the environments'
trajectories, are identical: the keys match exactly and the same episodes end at the same
steps.
"""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
LOSS_TOL = 1e-5
PARAM_TOL = 1e-6
SHARDED_SPECS = ("P('data',)", "PartitionSpec('data',)")  # str() differs across JAX versions


def run_script(args, devices, env_extra=None):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    )
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    env.update(env_extra or {})
    return subprocess.Popen(
        [sys.executable, *map(str, args)],
        env=env,
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc, timeout=420) -> dict:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"worker timed out after {timeout}s\n{err[-3000:]}")
    assert proc.returncode == 0, f"worker failed ({proc.returncode}):\n{err[-5000:]}"
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def four_devices() -> dict:
    """Every check of ``_multidevice_worker.py``, run in one 4-device subprocess."""
    checks = ["gradient", "ppo_training", "reinforce_training", "sharded_sweep", "spread_run"]
    checks.append("indivisible_num_envs")
    return finish(run_script([HERE / "_multidevice_worker.py", *checks], devices=4))


def worker(four_devices: dict, check: str) -> dict:
    result = four_devices[check]
    assert "raised" not in result, f"{check} raised:\n{result.get('raised')}"
    assert result["device_count"] == 4
    return result


def assert_matches_one_device(r):
    assert r["keys_equal"], "the 4-device run drew other random numbers"
    assert r["episodes_equal"], "the 4-device run saw other episodes"
    for name in (
        "loss",
        "policy_loss",
        "value_loss",
        "entropy",
        "grad_norm",
        "approx_kl",
        "explained_variance",
        "episode_return",
        "learning_rate",
        "obs_stats",
        "reward_stats",
        "env_obs",
    ):
        assert r[name] <= LOSS_TOL, f"{name} differs by {r[name]}"
    assert r["params"] <= PARAM_TOL, f"params differ by {r['params']}"
    np.testing.assert_allclose(r["loss_curve_4"], r["loss_curve_1"], rtol=LOSS_TOL, atol=LOSS_TOL)
    # It really ran sharded: environments split over the devices, the rest replicated.
    assert r["env_obs_spec"] in SHARDED_SPECS
    assert r["obs_stats_replicated"] and r["params_replicated"]


def test_gradient_on_four_devices_equals_one_device(four_devices):
    r = worker(four_devices, "gradient")
    assert r["batch_spec"] in SHARDED_SPECS
    assert r["sharded_program_all_reduces"], "each device should differentiate its own rows"
    assert r["grad_abs_diff"] <= 1e-6 * max(1.0, r["grad_max_abs"]), r
    if "shard_map_pmean_loss_diff" in r:
        # shard_map: grad of the pmean'd loss is right; pmean of the per-device gradients over
        # replicated params is num_devices times too large (the known trap).
        assert r["shard_map_pmean_loss_diff"] <= 1e-6
        assert r["shard_map_trap_ratio"] == pytest.approx(4.0, rel=1e-4)


@pytest.fixture(scope="module")
def ppo_run(four_devices):
    return worker(four_devices, "ppo_training")


def test_ppo_training_on_four_devices_matches_one_device(ppo_run):
    assert_matches_one_device(ppo_run)


def test_reinforce_training_on_four_devices_matches_one_device(four_devices):
    r = worker(four_devices, "reinforce_training")
    assert_matches_one_device(r)
    assert r["baseline"] <= LOSS_TOL


def test_sharded_chunks_compose_to_the_one_device_run(ppo_run):
    r = ppo_run["chunks"]
    assert r["init_spec"] in SHARDED_SPECS
    assert r["update_step"] == 4 and r["second_chunk_compiles"] == 0
    assert r["loss"] <= LOSS_TOL and r["params"] <= PARAM_TOL
    assert r["shard_state_spec"] in SHARDED_SPECS
    assert r["shard_state_stats_replicated"]


def test_sweep_members_spread_over_devices_equal_the_vmapped_sweep(four_devices):
    """make_sharded_sweep ([K, S] runs over 4 devices) and spread_members (a chunked loop)."""
    r = worker(four_devices, "sharded_sweep")
    assert r["shape"][:2] == [2, 2] and r["episodes_equal"]
    assert r["loss"] <= LOSS_TOL and r["params"] <= PARAM_TOL
    assert r["seeds_only_shape"][:2] == [1, 4] and r["seeds_only_devices"] == 4
    # seeds alone (K = 1) against the one-device sweep; the chunked loop below against them
    assert r["seeds_only_loss"] <= LOSS_TOL and r["seeds_only_params"] <= PARAM_TOL
    assert "6 runs must be divisible by the device count 4" in r["indivisible_error"]
    # spread_members: a host loop of chunks over flat members, as the CLI runs seeds.
    assert r["members_spec"] in SHARDED_SPECS
    assert r["chunks_loss"] <= LOSS_TOL and r["chunks_params"] <= PARAM_TOL
    assert r["second_chunk_compiles"] == 0
    assert "6 members must be divisible by the device count 4" in r["uneven_members_error"]


def test_the_run_loop_spreads_members_over_devices_and_resumes(four_devices):
    """jaxpg.run(spread=True), as ``jaxpg train --distributed`` runs it: one member per device,
    checkpointed and resumed, equals the one-device run."""
    r = worker(four_devices, "spread_run")
    assert r["status"] == ["stopped", "complete", "complete"]
    # resumed once more when complete: nothing trained, the final state read back spread
    assert r["done"][0] == r["done"][1] and r["done_params"] == 0.0
    assert r["done_spec"] in SHARDED_SPECS
    assert r["spec"] in SHARDED_SPECS
    # restore_checkpoint(sharding=member_sharding()): one member on each device, the same values
    assert r["restored_per_device"] == [1] and r["restored_equal"]
    assert r["restored_uneven_error"].endswith(
        "holds 4 members, which the sharding asked for cannot split evenly over its 3 devices"
    )
    assert r["loss"] <= LOSS_TOL and r["params"] <= PARAM_TOL


def test_jaxpg_train_distributed_spreads_the_seeds_over_two_processes(tmp_path):
    """``jaxpg train --distributed``: 2 processes x 1 CPU device, 2 seeds, one per process;
    process 0 alone writes the run directory, whose numbers match a one-process run."""
    flags = ["--total-timesteps", "1024", "--num-envs", "4", "--num-steps", "32", "--seeds", "2"]
    flags += ["--chunk-updates", "4", "--no-progress", "--no-plot", "--no-compile-cache"]
    port = free_port()
    procs = [
        run_script(
            [
                "-m",
                "jaxpg",
                "train",
                *flags,
                "--run-dir",
                tmp_path / "spread",
                "--distributed",
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                2,
                "--process-id",
                pid,
            ],
            devices=1,
        )  # fmt: skip
        for pid in range(2)
    ]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=420)
        assert proc.returncode == 0, err[-3000:]
        outs.append(out)
    assert "final return" in outs[0] and "run directory:" in outs[0]
    # Process 0 alone says what the run does (before, both printed it; gloo prints its own line)
    assert not any(line.strip() and line in outs[1] for line in outs[0].splitlines()), outs[1]
    # The same command in one process: this one (no third process start)
    from jaxpg import cli

    assert cli.main(["train", *flags, "--run-dir", str(tmp_path / "one")]) == 0

    def table(name):
        with open(tmp_path / name / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        return np.array([[float(r["loss"]), float(r["seed"])] for r in rows])

    spread, single = table("spread"), table("one")
    assert spread.shape == single.shape == (2 * 8, 2)
    np.testing.assert_array_equal(spread[:, 1], single[:, 1])
    np.testing.assert_allclose(spread[:, 0], single[:, 0], rtol=LOSS_TOL, atol=LOSS_TOL)
    summary = json.loads((tmp_path / "spread" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["process_count"] == 2
    # Spread: each process trained and wrote its own seed (a run that is not spread, each
    # process training both, has the same table; process 0 alone writes its checkpoint)
    written = os.listdir(tmp_path / "spread" / "checkpoints" / "8" / "state")
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= set(written), written


def test_num_envs_must_divide_over_the_devices(four_devices):
    r = worker(four_devices, "indivisible_num_envs")
    assert "num_envs=6 must be divisible by the global device count 4" in r["error"]
    assert "num_envs=4 or 8" in r["error"]


# -- two processes, as two hosts would ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one_device(tmp_path):
    """2 processes x 2 CPU devices = a 4-device global mesh: same run as one device."""
    import jax
    from _multihost_config import CONFIG, SEED

    import jaxpg

    port = free_port()
    procs = [
        run_script([HERE / "_multihost_worker.py", port, 2, pid, tmp_path], devices=2)
        for pid in range(2)
    ]
    results = [finish(p) for p in procs]

    for pid, r in enumerate(results):
        assert r["topology"]["process_index"] == pid
        assert r["topology"]["process_count"] == 2
        assert (
            r["topology"]["global_device_count"] == 4 and r["topology"]["local_device_count"] == 2
        )
        assert r["again"] == r["topology"]
        assert r["layout"]["envs_per_device"] == 2 and r["layout"]["envs_per_process"] == 4
        assert r["seed"] == SEED  # process 0's seed, broadcast
        assert r["addressable_env_shards"] == 2  # each process holds its own environments
        assert r["env_obs_shape"] == [CONFIG.num_envs, 4]  # gathered from both
        assert r["is_main"] == (pid == 0)
    assert results[0]["written"] and results[1]["written"] is None  # only process 0 writes
    assert sorted(os.listdir(tmp_path)) == ["results.npz"]
    assert results[0]["process_key"] != results[1]["process_key"]
    assert results[0]["loss"] == results[1]["loss"]  # one program, one result

    one = jax.jit(jaxpg.make_train(CONFIG))(jax.random.key(SEED))
    saved = np.load(tmp_path / "results.npz")
    np.testing.assert_allclose(saved["loss"], one.metrics["loss"], rtol=LOSS_TOL, atol=LOSS_TOL)
    np.testing.assert_allclose(saved["env_obs"], one.state.env.obs, atol=LOSS_TOL)
    for i, leaf in enumerate(jax.tree.leaves(one.params)):
        np.testing.assert_allclose(saved[f"param_{i}"], leaf, atol=PARAM_TOL)


# -- two processes that stop, fail and resume together ---------------------------------------------


def two_processes(mode: str, run_dir: Path, timeout: int = 300) -> list[tuple[int, str, str]]:
    """``_multihost_run.py MODE`` in 2 processes of one CPU device each: ``(returncode, stdout,
    stderr)`` of each."""
    port = free_port()
    procs = [
        run_script([HERE / "_multihost_run.py", port, pid, mode, run_dir], devices=1)
        for pid in range(2)
    ]
    ends = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"{mode}: a process hung for {timeout} s")
        ends.append((proc.returncode, out, err))
    return ends


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.strip().splitlines() if line.startswith("{")]


def refusal(what: str, unseen: Path) -> str:
    """The one-line refusal of ``what`` when process 1 does not see ``unseen``."""
    return (
        f"jaxpg.runner.RunArgumentError: {what}: process 1 does not see {unseen}; every process "
        "of a multi-process job must see the run directory and its checkpoints (a filesystem "
        "they share)"
    )


def test_two_processes_checkpoint_stop_together_on_ctrl_c_and_resume(tmp_path):
    """``checkpoint_every=2``; Ctrl-C reaches process 1 alone after update 4, and process 1's
    disk disagrees with process 0's about which checkpoints exist: both stop at update 4 with
    the same checkpoints, each process writing the members it holds. A new run, or a resume,
    where process 1 does not see the run directory is refused in both; a resume where both see
    it reads in each process only the member it trains, runs to the end, and the table equals a
    one-process run's. (Each refusal runs in the two processes of the run after it.)"""
    from _multihost_config import RUN, RUN_CONFIG

    import jaxpg

    run_dir = tmp_path / "run"
    # A new run where process 1 does not see process 0's run directory: refused in both, in
    # one line, before the run writes anything (every process writes its members' checkpoints);
    # then the run, which Ctrl-C stops.
    for pid, (code, out, err) in enumerate(two_processes("blind-run,interrupt", run_dir)):
        assert code == 0, err[-3000:]
        blind, interrupted = json_lines(out)
        left = [] if pid == 0 else None  # what process 0 sees in the run directory after it
        assert blind == {"refused": refusal("run", tmp_path / "run-missing"), "left": left}
        assert interrupted == {"status": "interrupted", "message": "interrupted at update 4", "done": 4}  # fmt: skip
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["2", "4"]
    # A process that does not see the run directory: every process refuses, in one line; then
    # the resume where both see it.
    for code, out, err in two_processes("blind-resume,resume", run_dir):
        assert code == 0, err[-3000:]
        blind, resumed = json_lines(out)
        unseen = tmp_path / "run-missing" / "config.json"
        assert blind["refused"] == refusal("resume", unseen), blind
        # Each process read only the member its device trains, not both.
        assert resumed == {
            "status": "complete", "message": None, "done": 8, "members_read": [[1]]
        }  # fmt: skip
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["4", "6", "8"]
    # The members spread over the processes: each process wrote its own (orbax's per-process
    # OCDBT stores), none was gathered to process 0.
    for step in ("4", "6", "8"):
        written = os.listdir(run_dir / "checkpoints" / step / "state")
        assert {"ocdbt.process_0", "ocdbt.process_1"} <= set(written), written

    one = jaxpg.run(RUN_CONFIG, run_dir=tmp_path / "one", verbose=False, **RUN)
    assert one.status == "complete"

    def table(name):
        with open(tmp_path / name / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        return np.array([[float(r["update"]), float(r["seed"]), float(r["loss"])] for r in rows])

    two, single = table("run"), table("one")
    assert two.shape == single.shape == (2 * 8, 3)
    np.testing.assert_array_equal(two[:, :2], single[:, :2])
    np.testing.assert_allclose(two[:, 2], single[:, 2], rtol=LOSS_TOL, atol=LOSS_TOL)


@pytest.mark.parametrize(
    "mode, message",
    [
        ("raise", "RuntimeError: on_chunk failed in process 1"),
        ("raise-at-start", "ValueError: on_start failed in process 1"),
    ],
)
def test_an_exception_in_one_process_stops_both_with_its_message(tmp_path, mode, message):
    """After a chunk, every process agrees on how to go on: process 1 raises its exception and
    process 0 a ProcessFailed with its message. In ``on_start`` there is no agreement point
    (process 0 already waits in a collective): process 1's failure, announced through JAX's
    coordination service, makes process 0 print it and exit with status 1."""
    (code0, out0, err0), (code1, out1, err1) = two_processes(mode, tmp_path / "run", timeout=180)
    assert code1 == 1 and message in err1.splitlines()[-1], err1[-3000:]
    assert code0 == 1, err0[-3000:]
    if mode == "raise":
        assert f"ProcessFailed: process 1 failed: {message}" in err0, err0[-3000:]
        # Not spread (each process trains both members): process 0 wrote the checkpoints (the
        # built-in callbacks run first), alone.
        assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["2", "4"]
        for step in ("2", "4"):
            written = os.listdir(tmp_path / "run" / "checkpoints" / step / "state")
            assert not any(name.startswith("ocdbt.process_1") for name in written), written
    else:
        assert f"jaxpg: stopping: process 1 failed: {message}" in err0, err0[-3000:]
