"""Smoke test of the benchmark suite (benchmarks/): every jaxpg-side script runs at tiny sizes
and writes a valid JSON record, a markdown table and a plot. The peer venvs are not needed
(``peers.py`` runs with jaxpg alone).

All the scripts run in one subprocess that shares a persistent XLA compilation cache, so the
programs they have in common (the same tiny config) compile once, and with XLA's backend
optimisations off, which halves compile time; the programs compute the same values.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = (
    "throughput",
    "many_agents",
    "learning",
    "peers",
    "memory",
    "trpo_step",
    "rollout_noise",
    "group_relative",
)

# One tiny PPO CartPole config (4 envs x 8 steps, 2 updates) shared across the scripts; only
# learning draws its plot (one plot is enough to check the PNG path).
RUNS = {
    "throughput": [
        "--algos",
        "ppo",
        "--envs",
        "CartPole-v1",
        "--num-envs",
        "4",
        "--num-steps",
        "8",
        "--steps-per-point",
        "64",
        "--min-updates",
        "1",
        "--repeats",
        "1",
        "--set",
        "anneal_lr=false",
        "--no-plot",
    ],
    "many_agents": [
        "--num-agents",
        "2",
        "--total-timesteps",
        "64",
        "--num-steps",
        "8",
        "--repeats",
        "1",
        "--no-plot",
    ],
    "learning": [
        "--envs",
        "CartPole-v1",
        "--seeds",
        "2",
        "--total-timesteps",
        "64",
        "--eval-episodes",
        "2",
        "--set",
        "num_steps=8",
    ],
    "peers": [
        "--settings",
        "classic",
        "--peers",
        "--num-envs",
        "4",
        "--num-steps",
        "8",
        "--total-timesteps",
        "64",
        "--seeds",
        "1",
        "--eval-episodes",
        "2",
        "--timeout",
        "120",
        "--no-plot",
    ],
    "memory": [
        "--budgets",
        "64",
        "128",
        "--no-run",
        "--set",
        "anneal_lr=false",
        "num_steps=8",
        "--no-plot",
    ],
    "trpo_step": ["--quick", "--num-envs", "4", "--num-steps", "8", "--no-plot"],
    "rollout_noise": [
        "--quick",
        "--num-actions",
        "2",
        "4",
        "--num-envs",
        "4",
        "--num-steps",
        "8",
        "--no-plot",
    ],
    "group_relative": ["--quick", "--methods", "grpo-std", "--seeds", "1", "--no-plot"],
    "recurrent": ["--quick", "--parts", "speed", "--num-envs", "4", "--repeats", "1"],
    "sequence": ["--quick", "--parts", "speed", "--num-envs", "2", "--repeats", "1"],
}

DRIVER = """
import sys
sys.path.insert(0, sys.argv[1])
import importlib, json
out, runs = sys.argv[2], json.loads(sys.argv[3])
for name, args in runs.items():
    importlib.import_module(name).main(args + ["--out-dir", out])
"""


def _bench_env(out: Path) -> dict:
    env = dict(os.environ)
    env.update(
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(out / "xla-cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        XLA_FLAGS=(
            env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
            " --xla_llvm_disable_expensive_passes=true"
        ).strip(),
        # the shell entry point runs `python3`: this interpreter's
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    return env


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = _bench_env(out)
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(BENCH), str(out), json.dumps(RUNS)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out


@pytest.mark.parametrize(
    "script",
    SCRIPTS
    + (
        "peer_jaxpg",
        "peer_rejax",
        "peer_sb3",
        "revisions",
        "device_suite",
        "recurrent",
        "compile_time",
        "purejaxrl_speed",
        "sequence",
        "test_durations",
        "checkpoint_cost",
    ),
)
def test_help(script):
    # --help needs neither jax nor the peers' packages: every heavy import is lazy.
    proc = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower()


def _no_bare_nan(constant):
    raise AssertionError(f"bare {constant} in a JSON result (jaxpg.files writes null)")


def _load(outputs, name):
    data = json.loads((outputs / f"{name}.json").read_text(), parse_constant=_no_bare_nan)
    assert data["benchmark"] == name
    machine = data["machine"]
    for key in ("cpu_model", "cpu_count", "backend", "versions"):
        assert machine[key], key
    for pkg in ("jax", "jaxlib", "jaxpg"):
        assert machine["versions"][pkg], pkg
    assert data["command"].startswith("python benchmarks/")
    assert (outputs / f"{name}.md").read_text().startswith(f"### {name}")
    # Written atomically, but with open()'s usual mode, not mkstemp's private 0600.
    plain = outputs / f".mode-{name}"
    plain.write_text("x")
    assert stat.S_IMODE((outputs / f"{name}.json").stat().st_mode) == stat.S_IMODE(
        plain.stat().st_mode
    )
    return data


def test_throughput(outputs):
    data = _load(outputs, "throughput")
    parts = {r["part"]: r for r in data["results"]}
    assert set(parts) == {"train", "rollout", "update"}
    for r in parts.values():
        assert r["env_steps"] == 64 and r["num_updates"] == 2
        assert r["compile_s"] > 0 and r["steady_s"] > 0 and r["steps_per_s"] > 0
    (row,) = data["summary"]
    assert 0 < row["rollout_share"] < 1
    assert abs(row["rollout_share"] + row["update_share"] - 1) < 1e-9


def test_throughput_point_beyond_the_default_budget():
    # One update at 4096 envs is 524,288 steps, more than the config's default budget: the
    # point's budget must be set before the config validates it (a full run once died here).
    sys.path.insert(0, str(BENCH))
    import throughput

    args = throughput.resolve_args(["--num-envs", "4096"])
    config = throughput.point_config("ppo", "CartPole-v1", 4096, args)
    assert config.num_envs == 4096 and config.num_updates == args.min_updates >= 1


def test_many_agents(outputs):
    data = _load(outputs, "many_agents")
    (rec,) = data["results"]
    assert rec["num_agents"] == 2
    assert rec["s_per_agent"] == pytest.approx(rec["steady_s"] / 2)


def test_learning(outputs):
    data = _load(outputs, "learning")
    (rec,) = data["results"]
    assert rec["env"] == "CartPole-v1" and rec["seeds"] == 2
    assert len(rec["eval_return"]) == 2
    assert all(1 <= r <= 500 for r in rec["eval_return"])
    assert rec["eval_return_median"] == pytest.approx(np.median(rec["eval_return"]))
    assert rec["references"]
    # 64 steps against the 500k references: the run says it is not comparable.
    assert any(n.startswith("CartPole-v1 ran below the published budget") for n in data["notes"])
    assert (outputs / "learning.png").stat().st_size > 0


def test_median_and_interquartile_mean_against_scipy():
    sys.path.insert(0, str(BENCH))
    from report import median_iqm
    from scipy import stats

    # 8 seeds: the IQM is the mean of the 3rd to 6th sorted values, by hand.
    eight = [40.0, 7.0, 42.0, 38.0, 1.0, 45.0, 39.0, 41.0]
    assert median_iqm(eight) == (39.5, (38.0 + 39.0 + 40.0 + 41.0) / 4)
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 5, 9, 10, 13):
        x = rng.normal(size=n) * 10
        median, iqm = median_iqm(list(x) + [float("nan")])  # non-finite values are dropped
        assert median == pytest.approx(np.median(x), abs=1e-12)
        assert iqm == pytest.approx(stats.trim_mean(x, 0.25), abs=1e-12)
    assert all(np.isnan(v) for v in median_iqm([float("nan")]))


def test_sb3_training_returns_use_the_one_final_return():
    # peer_sb3 rebuilds jaxpg's per-update episode_return from SB3's Monitor records, then
    # takes jaxpg.metrics.final_return of it (no SB3 needed for this part).
    sys.path.insert(0, str(BENCH))
    import peer_sb3

    from jaxpg.metrics import final_return

    # 4 steps per update. env 0: episodes end at its steps 3, 8, 11 and 16; env 1: at 10 and
    # 12; env 2: none. Update 3 (steps 13-16) is the last 10% of 4 updates.
    per_update = peer_sb3.returns_per_update(
        [([1.0, 2.0, 3.0, 4.0], [3, 5, 3, 5]), ([5.0, 6.0], [10, 2]), ([], [])],
        num_steps=4,
        num_updates=4,
    )
    np.testing.assert_array_equal(per_update, [1.0, 2.0, (3.0 + 5.0 + 6.0) / 3, 4.0])
    assert final_return(per_update) == 4.0
    empty = peer_sb3.returns_per_update([([1.0], [3])], num_steps=4, num_updates=2)
    assert np.isnan(empty[1]) and np.isnan(final_return(empty))


def test_purejaxrl_side_by_side_helpers():
    # purejaxrl_speed.py needs a PureJaxRL checkout; its own arithmetic is checked here.
    sys.path.insert(0, str(BENCH))
    import purejaxrl_speed as ps

    # PureJaxRL's LogWrapper records [U, T, N]: per update, the mean return of the episodes
    # that ended in it, against a NumPy loop; NaN where none ended.
    rng = np.random.default_rng(0)
    done = rng.random((5, 6, 3)) < 0.2
    done[2] = False
    returns = rng.normal(size=(5, 6, 3)).astype(np.float32) * 100
    curve = np.asarray(
        ps.purejaxrl_curve({"returned_episode": done, "returned_episode_returns": returns})
    )
    for u in range(5):
        ended = returns[u][done[u]]
        if ended.size:
            assert curve[u] == pytest.approx(ended.mean(), rel=1e-6)
        else:
            assert np.isnan(curve[u])
    # compile 2 s, a run of 10 s over 4 updates: the threshold first met at update 2 of 0-3
    assert ps.time_to_threshold([10.0, 480.0, 500.0, 490.0], 500, 2.0, 10.0) == 2.0 + 7.5
    assert ps.time_to_threshold([10.0, np.nan, 20.0], 500, 2.0, 10.0) is None
    assert ps.parse_point("4:500000") == ps.Point(4, 500000, 1, "CartPole-v1")
    assert ps.parse_point("64:1e7:256:Breakout-MinAtar") == (64, 10**7, 256, "Breakout-MinAtar")
    for bad in ("4", "4:0", "4:100:1:Pendulum-v1", "4:100:1:x:y"):
        with pytest.raises(ValueError, match="--points"):
            ps.parse_point(bad)
    for point in (ps.Point(64, 10**6, 1, "Breakout-MinAtar"), ps.Point(8, 10**5)):
        pj, jx = ps.configs(point)  # PureJaxRL's config keys against jaxpg's fields
        assert pj["ENV_NAME"] == jx.env == point.env
        assert (pj["NUM_ENVS"], pj["TOTAL_TIMESTEPS"]) == (jx.num_envs, jx.total_timesteps)
        pairs = {
            "LR": "lr",
            "NUM_STEPS": "num_steps",
            "UPDATE_EPOCHS": "num_epochs",
            "NUM_MINIBATCHES": "num_minibatches",
            "GAMMA": "gamma",
            "GAE_LAMBDA": "gae_lambda",
            "CLIP_EPS": "clip_eps",
            "ENT_COEF": "ent_coef",
            "VF_COEF": "vf_coef",
            "MAX_GRAD_NORM": "max_grad_norm",
            "ACTIVATION": "activation",
            "ANNEAL_LR": "anneal_lr",
        }
        for key, field in pairs.items():
            assert pj[key] == getattr(jx, field), (point.env, key)
        assert jx.hidden_sizes == (64, 64) and not jx.shared_network
    assert ps.configs(ps.Point(64, 10**6, 1, "Breakout-MinAtar"))[0]["LR"] == 5e-3
    assert ps.parse_point("4:5e5") == (4, 500000, 1, "CartPole-v1")
    for bad in ("4:abc", "4.5:100000", "4:100"):
        with pytest.raises(ValueError, match="--points"):
            ps.parse_point(bad)


def test_peers(outputs):
    data = _load(outputs, "peers")
    (setting,) = data["results"]
    (ours,) = setting["results"]
    assert ours["peer"] == "jaxpg" and "error" not in ours, ours
    assert ours["env_steps"] == setting["spec"]["total_timesteps"] == 64
    assert ours["steps_per_s"] > 0 and ours["peak_rss_mib"] > 0


def test_memory(outputs):
    data = _load(outputs, "memory")
    small, large = data["results"]
    assert (small["budget"], large["budget"]) == (64, 128)
    # The scan over updates keeps the program's temporaries independent of the budget.
    assert small["memory"]["temp_size_in_bytes"] == large["memory"]["temp_size_in_bytes"]


def test_learning_benchmark_uses_the_tested_pendulum_preset():
    sys.path.insert(0, str(BENCH))
    import learning  # noqa: E402

    from jaxpg import presets

    preset = presets.ppo_pendulum()
    for name, value in learning.PENDULUM_OVERRIDES.items():
        assert getattr(preset, name) == value, name


def test_trpo_step(outputs):
    data = _load(outputs, "trpo_step")
    programs = {r["program"] for r in data["results"]}
    assert programs == {"gradient", "gradient_cg", "policy_step"}


def test_rollout_noise(outputs):
    data = _load(outputs, "rollout_noise")
    assert {(r["num_actions"], r["mode"]) for r in data["results"]} == {
        (a, m) for a in (2, 4) for m in ("predraw", "per_step")
    }


def test_group_relative(outputs):
    data = _load(outputs, "group_relative")
    (rec,) = data["results"]
    assert rec["method"] == "grpo-std" and len(rec["per_seed_values"]) == 1


def test_device_suite_tiny(tmp_path):
    # The accelerator suite's own entry point, at its tiny size on the CPU, so it cannot rot:
    # PPO and GRPO (the group-relative sizing) through every section.
    proc = subprocess.run(
        [
            "bash",
            str(BENCH / "device_suite.sh"),
            str(tmp_path),
            "--size",
            "tiny",
            "--algos",
            "ppo",
            "grpo",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=_bench_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    data = _load(tmp_path, "device_suite")
    res = data["results"]
    assert data["skipped"] == []
    assert {(r["algorithm"], r["num_seeds"]) for r in res["compile"]} == {
        ("ppo", 1),
        ("ppo", 2),
        ("grpo", 1),
    }
    for r in res["compile"]:
        assert r["trace_s"] > 0 and r["compile_s"] > 0
    assert [r["algorithm"] for r in res["solve"]] == ["ppo", "grpo"]
    for r in res["solve"]:
        assert len(r["curve_return"]) == r["num_updates"] == len(r["curve_steps"])
    assert {(r["algorithm"], r["num_envs"]) for r in res["throughput"]} == {
        ("ppo", 4),
        ("ppo", 8),
        ("grpo", 4),
    }
    for r in res["throughput"]:
        assert r["steps_per_s"] == pytest.approx(r["env_steps"] / r["steady_s"])
    assert {(r["algorithm"], r["num_agents"]) for r in res["many_agents"]} == {
        ("ppo", 1),
        ("ppo", 2),
        ("grpo", 1),
    }
    seq = res["sequence"]
    assert [(r["network"], r["num_envs"]) for r in seq] == [("transformer", 2), ("mlp", 2)]
    assert seq[1]["transformer_over_mlp"] == pytest.approx(
        seq[0]["tokens_per_s"] / seq[1]["tokens_per_s"]
    )
    assert "#### sequence" in (tmp_path / "device_suite.md").read_text()
    assert (tmp_path / "device_suite.png").stat().st_size > 0


def test_device_suite_first_crossing():
    sys.path.insert(0, str(BENCH))
    import device_suite as ds

    nan = float("nan")
    # A window of 2 updates (batch = half the window's steps): the trailing mean of the
    # finished-episode returns, NaN updates skipped, first reaches 475 at update 4.
    batch = ds.SOLVE_WINDOW_STEPS // 2
    returns = [500.0, 300.0, 480.0, nan, 470.0, 500.0]
    # update 0: window not full; 1: 400; 2: 390; 3: 480 (one finished); 4: 470; 5: 485
    assert ds.first_crossing(returns, batch) == 3
    assert ds.first_crossing([100.0, nan, 470.0, 476.0], batch) is None
    assert ds.first_crossing([475.0], ds.SOLVE_WINDOW_STEPS) == 0


def test_recurrent(outputs):
    data = _load(outputs, "recurrent")
    speed = data["results"]["speed"]
    assert {(r["num_envs"], r["network"]) for r in speed} == {(4, "mlp"), (4, "gru")}
    assert all(r["steps_per_s"] > 0 for r in speed)


def test_sequence(outputs):
    data = _load(outputs, "sequence")
    speed = data["results"]["speed"]
    assert {(r["num_envs"], r["network"]) for r in speed} == {(2, "transformer"), (2, "mlp")}
    assert all(r["tokens_per_s"] == pytest.approx(r["tokens"] / r["steady_s"]) for r in speed)


def test_test_durations_sums_each_files_tests(tmp_path):
    sys.path.insert(0, str(BENCH))
    import test_durations

    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_a" name="test_x" time="1.5"/>'
        '<testcase classname="tests.test_a" name="test_y[p]" time="2.0"/>'
        '<testcase classname="tests.test_b" name="test_z" time="0.25"/>'
        "</testsuite></testsuites>"
    )
    times = test_durations.read_report(report)
    assert times == {
        "tests/test_a.py::test_x": 1.5,
        "tests/test_a.py::test_y[p]": 2.0,
        "tests/test_b.py::test_z": 0.25,
    }
    assert test_durations.per_file(times) == {"tests/test_a.py": 3.5, "tests/test_b.py": 0.25}
