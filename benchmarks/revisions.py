"""jaxpg at two (or more) git revisions, side by side in one run: env steps per second of the
whole training program (``jaxpg.make_train``; PPO unless ``--config-class``), compile time apart.

Each revision is checked out into its own worktree (under ``benchmarks/results/tmp/``) and
measured in fresh child processes that import jaxpg from that worktree (``PYTHONPATH``), with
the same installed jax, flax, optax and gymnax: only jaxpg's own code differs. The revisions
take turns, round after round, so a drift in the machine's load touches them alike; the figure
per point is the median over rounds, and the ratio is against the first revision.

    python benchmarks/revisions.py --revs c9c5aad HEAD --num-envs 4 1024 --rounds 3

``--program cli`` times the command line instead, ``jaxpg train ppo`` in the child (the host
loop of chunks, metrics and checkpoints around the same program): env steps/s is the run's own
``summary.json`` figure (training time, compile apart).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from driver import run_process  # noqa: E402
from machine import machine_info  # noqa: E402
from options import add_common_args  # noqa: E402
from paths import REPO_DIR  # noqa: E402
from report import fmt, log, payload, publish  # noqa: E402

WORKTREES = REPO_DIR / "benchmarks" / "results" / "tmp"

# The child: only the API every revision has (a config class, make_train). Prints one JSON line.
CHILD = r"""
import json, sys, time
import jax, jaxpg
num_envs, num_steps, updates, repeats = map(int, sys.argv[1:5])
config = getattr(jaxpg, sys.argv[6])(env=sys.argv[5], num_envs=num_envs, num_steps=num_steps,
                                     total_timesteps=updates * num_envs * num_steps)
train = jaxpg.make_train(config)
key = jax.random.key(0)
t = time.perf_counter(); lowered = jax.jit(train).lower(key); trace_s = time.perf_counter() - t
t = time.perf_counter(); compiled = lowered.compile(); compile_s = time.perf_counter() - t
jax.block_until_ready(compiled(key))
times = []
for i in range(repeats):
    t = time.perf_counter(); jax.block_until_ready(compiled(jax.random.key(i + 1)))
    times.append(time.perf_counter() - t)
steady = sorted(times)[len(times) // 2]
print(json.dumps({"jaxpg_file": jaxpg.__file__, "trace_s": trace_s, "compile_s": compile_s,
                  "steady_s": steady, "steady_all_s": times,
                  "steps_per_s": updates * num_envs * num_steps / steady}))
"""


# The child for --program cli: `jaxpg train ppo` through jaxpg.cli.main, read from summary.json.
CHILD_CLI = r"""
import json, sys, tempfile
from pathlib import Path
import jaxpg, jaxpg.cli
num_envs, num_steps, updates, repeats = map(int, sys.argv[1:5])
with tempfile.TemporaryDirectory() as tmp:
    argv = ["train", "ppo", "--env", sys.argv[5], "--num-envs", str(num_envs),
            "--num-steps", str(num_steps), "--total-timesteps", str(updates * num_envs * num_steps),
            "--run-dir", f"{tmp}/run", "--no-progress", "--no-plot", "--no-compile-cache"]
    assert jaxpg.cli.main(argv) == 0
    summary = json.loads(Path(tmp, "run", "summary.json").read_text())
print(json.dumps({"jaxpg_file": jaxpg.__file__, "trace_s": None,
                  "compile_s": summary["compile_time_s"], "steady_s": summary["train_time_s"],
                  "steps_per_s": summary["env_steps_per_s"]}))
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p, quick_help="one round, a small budget", repeats=False)
    p.add_argument(
        "--revs", nargs="+", default=["HEAD~1", "HEAD"], help="git revisions (first: the baseline)"
    )
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument(
        "--config-class",
        default="PPOConfig",
        help="the jaxpg config class to train (every revision must have it)",
    )
    p.add_argument(
        "--program",
        choices=("train", "cli"),
        default="train",
        help="train: the jitted make_train program; cli: `jaxpg train ppo` end to end",
    )
    p.add_argument("--num-envs", nargs="+", type=int, default=[4, 1024])
    p.add_argument("--num-steps", type=int, default=128)
    p.add_argument("--steps-per-point", type=int, default=2**19, help="env steps per timed call")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per child (median)")
    p.add_argument("--rounds", type=int, default=3, help="turns per revision (median over rounds)")
    return p.parse_args(argv)


def worktree(rev: str) -> tuple[Path, str]:
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev],
        cwd=REPO_DIR,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    path = WORKTREES / f"rev-{sha}"
    if not path.exists():
        WORKTREES.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-f", str(path), sha],
            cwd=REPO_DIR,
            check=True,
            capture_output=True,
        )
    return path, sha


def measure(path: Path, num_envs: int, args) -> dict:
    updates = max(2, args.steps_per_point // (num_envs * args.num_steps))
    env = {**os.environ, "PYTHONPATH": str(path)}
    cmd = [
        sys.executable,
        "-c",
        CHILD if args.program == "train" else CHILD_CLI,
        str(num_envs),
        str(args.num_steps),
        str(updates),
        str(args.repeats),
        args.env,
        args.config_class,
    ]
    # Run in the worktree: `python -c` puts the working directory first on sys.path, ahead of
    # an editable install's import hook (measure() checks jaxpg.__file__ all the same).
    code, _, wall, output = run_process(cmd, timeout=1800, cwd=path, env=env)
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        return {"error": f"exit code {code}", "log_tail": output[-2000:]}
    result = json.loads(lines[-1])
    if not result["jaxpg_file"].startswith(str(path)):
        raise RuntimeError(f"the child imported {result['jaxpg_file']}, not the worktree {path}")
    return {**result, "updates": updates, "wall_s": wall}


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.rounds, args.steps_per_point, args.repeats = 1, 2**15, 1
    trees = [worktree(rev) for rev in args.revs]
    runs = {(sha, n): [] for _, sha in trees for n in args.num_envs}
    for r in range(args.rounds):
        for n in args.num_envs:
            for path, sha in trees:
                result = measure(path, n, args)
                log(
                    f"round {r + 1}/{args.rounds} {sha} {n} envs: "
                    f"{fmt(result.get('steps_per_s'))} steps/s"
                )
                runs[(sha, n)].append(result)
    rows, results = [], []
    base_sha = trees[0][1]
    for n in args.num_envs:
        base = statistics.median(x["steps_per_s"] for x in runs[(base_sha, n)])
        for rev, (_, sha) in zip(args.revs, trees):
            good = [x for x in runs[(sha, n)] if "error" not in x]
            sps = statistics.median(x["steps_per_s"] for x in good)
            compile_s = statistics.median(x["compile_s"] for x in good)
            traces = [x["trace_s"] for x in good if x["trace_s"] is not None]
            trace_s = statistics.median(traces) if traces else None
            row = {
                "rev": f"{rev} ({sha})",
                "num_envs": n,
                "steps_per_s": sps,
                "ratio": sps / base,
                "trace_s": trace_s,
                "compile_s": compile_s,
                "rounds": [x["steps_per_s"] for x in good],
            }
            rows.append(row)
            results.append({**row, "runs": runs[(sha, n)]})
    data = payload(
        "revisions", "quick" if args.quick else "full", vars(args), results, machine_info()
    )
    columns = [
        ("rev", "revision"),
        ("num_envs", "num_envs"),
        ("steps_per_s", "env steps/s (median)"),
        ("ratio", "ratio to first"),
        ("trace_s", "trace s"),
        ("compile_s", "compile s"),
    ]
    publish(args, "revisions", data, rows, columns)


if __name__ == "__main__":
    main()
