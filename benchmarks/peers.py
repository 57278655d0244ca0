"""Peers side by side: jaxpg vs rejax vs Stable-Baselines3 PPO, in one run, same machine, same
hyperparameters, same budget.

Each peer runs in a fresh process with its own Python (``peer_jaxpg.py`` with this Python,
``peer_rejax.py`` in ``benchmarks/.venv-rejax``, ``peer_sb3.py`` in ``benchmarks/.venv-sb3``;
``benchmarks/setup_peers.sh`` makes both venvs). Each reports compile time (lower + compile;
SB3 has none), the first call, the steady state (later calls of the compiled program: seeds
1..S-1, or seed 0 again with one seed), env steps per second, its peak RSS, and the eval
return of each seed's final policy (sampled actions, ``--eval-episodes`` episodes).

Ratios are jaxpg over the peer: ``speed = jaxpg steps/s / peer steps/s`` (above 1: jaxpg is
faster) and ``compile = jaxpg compile s / peer compile s`` (at most 1: jaxpg compiles no slower).
A learning result "differs" when the eval means are further apart than twice the standard error
of their difference and 5% of the larger magnitude.

    python benchmarks/peers.py                 # full: classic (4 envs) and wide (1024 envs)
    python benchmarks/peers.py --quick         # small budgets, one seed
    python benchmarks/peers.py --peers rejax   # jaxpg and rejax only
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from driver import run_driver  # noqa: E402
from machine import machine_info  # noqa: E402
from options import add_common_args  # noqa: E402
from paths import BENCH_DIR  # noqa: E402
from report import fmt, fmt_mean_std, log, mean_std, payload, publish  # noqa: E402

PPO_SHARED = dict(
    env="CartPole-v1",
    num_steps=128,
    num_epochs=4,
    num_minibatches=4,
    lr=2.5e-4,
    gamma=0.99,
    gae_lambda=0.95,
    clip_eps=0.2,
    ent_coef=0.01,
    vf_coef=0.5,
    max_grad_norm=0.5,
    hidden_sizes=[64, 64],
    activation="tanh",
)
# The two speed targets: the classic CartPole config and 1024 envs.
SETTINGS = {
    "classic": dict(PPO_SHARED, num_envs=4),
    "wide": dict(PPO_SHARED, num_envs=1024),
}
FULL = dict(budgets={"classic": 500_000, "wide": 2**21}, seeds=3, sb3_seeds=3, eval_episodes=64)
QUICK = dict(
    budgets={"classic": 2**14, "wide": 2 * 1024 * 128}, seeds=1, sb3_seeds=1, eval_episodes=8
)

DRIVERS = {
    "jaxpg": ("peer_jaxpg.py", None),  # None: this Python
    "rejax": ("peer_rejax.py", ".venv-rejax"),
    "sb3": ("peer_sb3.py", ".venv-sb3"),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p, quick_help="small budgets and one seed", repeats=False)
    p.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    p.add_argument(
        "--peers",
        nargs="*",
        choices=["rejax", "sb3"],
        default=["rejax", "sb3"],
        help="peers besides jaxpg (none: jaxpg alone)",
    )
    p.add_argument(
        "--total-timesteps",
        type=int,
        default=None,
        help=f"one budget for every setting (default {FULL['budgets']}, "
        f"quick {QUICK['budgets']}); rounded down to whole updates",
    )
    p.add_argument("--seeds", type=int, help=f"seeds per peer (default {FULL['seeds']})")
    p.add_argument(
        "--sb3-seeds",
        type=int,
        default=None,
        help=f"seeds for SB3 only, which is slow (default {FULL['sb3_seeds']}, "
        f"quick {QUICK['sb3_seeds']})",
    )
    p.add_argument(
        "--sb3-threads",
        type=int,
        default=None,
        help="torch.set_num_threads for SB3 (default: torch's own choice, as users run "
        "it; 1 is often faster for 2x64 MLPs)",
    )
    p.add_argument("--eval-episodes", type=int)
    p.add_argument("--num-envs", type=int, default=None, help="override num_envs of every setting")
    p.add_argument(
        "--num-steps", type=int, default=None, help="override num_steps of every setting"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every peer this many times, alternating (jaxpg, rejax, sb3, jaxpg, ...), and "
        "report each peer's median run: steadier ratios on a machine with other load",
    )
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed to each peer run")
    p.add_argument(
        "--python",
        default=None,
        help="venv folder or python for a peer: NAME=PATH, e.g. rejax=/opt/rj/bin/python",
        action="append",
    )
    return p.parse_args(argv)


def python_for(peer: str, overrides: dict) -> Path | None:
    if peer in overrides:
        path = Path(overrides[peer])
        return path / "bin" / "python" if path.is_dir() else path
    venv = DRIVERS[peer][1]
    if venv is None:
        return Path(sys.executable)
    path = BENCH_DIR / venv / "bin" / "python"
    return path if path.exists() else None


def spec_for(setting: str, args) -> dict:
    spec = dict(SETTINGS[setting])
    if args.num_envs:
        spec["num_envs"] = args.num_envs
    if args.num_steps:
        spec["num_steps"] = args.num_steps
    batch = spec["num_envs"] * spec["num_steps"]
    budget = args.total_timesteps or args.budgets[setting]
    spec["total_timesteps"] = max(batch, budget // batch * batch)
    spec["seeds"] = args.seeds
    spec["eval_episodes"] = args.eval_episodes
    return spec


def run_peer(peer: str, spec: dict, args, overrides: dict) -> dict:
    python = python_for(peer, overrides)
    if python is None:
        return {
            "peer": peer,
            "skipped": f"no venv at benchmarks/{DRIVERS[peer][1]}: run benchmarks/setup_peers.sh",
        }
    spec = dict(spec)
    if peer == "sb3" and args.sb3_seeds:
        spec["seeds"] = args.sb3_seeds
    if peer == "sb3" and args.sb3_threads:
        spec["torch_threads"] = args.sb3_threads
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # a peer sees only its own venv
    log(f"  {peer}: {spec['total_timesteps']:,} steps x {spec['seeds']} seed(s) ...")
    result = run_driver(python, BENCH_DIR / DRIVERS[peer][0], spec, args.timeout, env=env)
    result.setdefault("peer", peer)
    if "error" in result:
        log(f"  {peer} FAILED: {result['error']}\n{result['log_tail']}")
    else:
        result["eval_return_mean"], result["eval_return_std"] = mean_std(
            result["eval_return_per_seed"]
        )
        log(
            f"  {peer}: compile {fmt(result.get('compile_s'))}s steady "
            f"{result['steady_s']:.3f}s {result['steps_per_s']:,.0f} steps/s eval "
            f"{fmt_mean_std(result['eval_return_mean'], result['eval_return_std'])}"
        )
    return result


def merge_rounds(runs: list[dict]) -> dict:
    """One peer's runs over ``--rounds``: the run with the median steps/s stands for the peer
    (its learning results with it); every run's timings stay under ``rounds``."""
    ok = [r for r in runs if "steps_per_s" in r]
    if not ok:
        return runs[0]
    ok.sort(key=lambda r: r["steps_per_s"])
    chosen = dict(ok[(len(ok) - 1) // 2])
    if len(runs) > 1:
        keys = ("compile_s", "first_call_s", "steady_s", "steady_cpu_s", "steps_per_s", "wall_s")
        chosen["rounds"] = [{k: r.get(k) for k in keys} | {"error": r.get("error")} for r in runs]
    return chosen


def learning_differs(a: dict, b: dict) -> str:
    ma, sa, na = a["eval_return_mean"], a["eval_return_std"], len(a["eval_return_per_seed"])
    mb, sb, nb = b["eval_return_mean"], b["eval_return_std"], len(b["eval_return_per_seed"])
    if not (math.isfinite(ma) and math.isfinite(mb)):
        return "n/a"
    if na < 2 or nb < 2:
        return "n/a (one seed)"
    se = math.sqrt(sa**2 / na + sb**2 / nb)
    gap = abs(ma - mb)
    differs = gap > 2 * se and gap > 0.05 * max(abs(ma), abs(mb))
    return f"differs ({ma:.1f} vs {mb:.1f})" if differs else "same"


def compare(setting: str, spec: dict, results: list[dict]) -> list[dict]:
    ours = next((r for r in results if r["peer"] == "jaxpg" and "steps_per_s" in r), None)
    rows = []
    for r in results:
        row = {
            "setting": setting,
            "peer": r["peer"],
            "num_envs": spec["num_envs"],
            "env_steps": r.get("env_steps"),
            "compile_s": r.get("compile_s"),
            "setup_s": r.get("setup_s"),
            "first_call_s": r.get("first_call_s"),
            "steady_s": r.get("steady_s"),
            "steps_per_s": r.get("steps_per_s"),
            "cores_used": r.get("cores_used"),
            "peak_rss_mib": r.get("peak_rss_mib"),
            "eval": fmt_mean_std(r.get("eval_return_mean"), r.get("eval_return_std"))
            if "eval_return_mean" in r
            else r.get("skipped") or r.get("error"),
        }
        if ours and r is not ours and "steps_per_s" in r:
            row["speed_ratio"] = ours["steps_per_s"] / r["steps_per_s"]
            if ours.get("steady_cpu_s") and r.get("steady_cpu_s"):
                # CPU seconds per env step, peer over jaxpg: the same ratio for CPU time, which
                # other load on the machine disturbs less than wall time.
                row["cpu_ratio"] = (r["steady_cpu_s"] / r["env_steps"]) / (
                    ours["steady_cpu_s"] / ours["env_steps"]
                )
            if r.get("compile_s"):
                row["compile_ratio"] = ours["compile_s"] / r["compile_s"]
            row["learning"] = learning_differs(ours, r)
        rows.append(row)
    return rows


COLUMNS = [
    ("setting", "setting"),
    ("peer", "peer"),
    ("num_envs", "num_envs"),
    ("env_steps", "env steps"),
    ("compile_s", "compile s"),
    ("steady_s", "steady s"),
    ("steps_per_s", "steps/s"),
    ("speed_ratio", "jaxpg speed ratio"),
    ("cpu_ratio", "CPU-time ratio"),
    ("compile_ratio", "jaxpg/peer compile"),
    ("cores_used", "cores used"),
    ("peak_rss_mib", "peak RSS MiB"),
    ("eval", "eval return"),
    ("learning", "learning vs jaxpg"),
]


def draw(rows):
    def _draw(fig):
        settings = list(dict.fromkeys(r["setting"] for r in rows))
        for i, setting in enumerate(settings):
            sel = [r for r in rows if r["setting"] == setting and r.get("steps_per_s")]
            ax = fig.add_subplot(1, len(settings), i + 1)
            ax.bar([r["peer"] for r in sel], [r["steps_per_s"] for r in sel])
            ax.set_yscale("log")
            ax.set_ylabel("env steps / s (steady state)")
            ax.set_title(f"{setting}: {sel[0]['num_envs'] if sel else '?'} envs")
            ax.grid(True, axis="y", which="both", alpha=0.3)

    return _draw


def main(argv=None):
    args = parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.budgets = preset["budgets"]
    for k in ("seeds", "sb3_seeds", "eval_episodes"):
        if getattr(args, k, None) is None:
            setattr(args, k, preset.get(k))
    overrides = dict(s.split("=", 1) for s in (args.python or []))
    machine = machine_info()
    records, rows = [], []
    for setting in args.settings:
        spec = spec_for(setting, args)
        log(f"{setting}: {spec['num_envs']} envs x {spec['num_steps']} steps")
        peers = ["jaxpg", *args.peers]
        rounds = []
        for i in range(args.rounds):
            if args.rounds > 1:
                log(f" round {i + 1} of {args.rounds}")
            rounds.append([run_peer(p, spec, args, overrides) for p in peers])
        results = [merge_rounds([r[j] for r in rounds]) for j in range(len(peers))]
        records.append({"setting": setting, "spec": spec, "results": results})
        rows.extend(compare(setting, spec, results))
    settings = {
        "settings": args.settings,
        "peers": ["jaxpg", *args.peers],
        "seeds": args.seeds,
        "sb3_seeds": args.sb3_seeds,
        "sb3_threads": args.sb3_threads,
        "eval_episodes": args.eval_episodes,
        "rounds": args.rounds,
    }
    notes = [
        "speed ratio = jaxpg steps/s / peer steps/s (wall time); CPU-time ratio = peer CPU s per "
        "env step / jaxpg's (above 1: jaxpg needs less CPU); compile ratio = jaxpg / peer "
        "compile s.",
        "Same hyperparameters, budget and 2x64 tanh MLPs; differences each library cannot "
        "switch off are listed in each result's notes.",
    ]
    for rec in records:
        for r in rec["results"]:
            for n in r.get("notes", []):
                notes.append(f"{r['peer']}: {n}")
    notes = list(dict.fromkeys(notes))
    data = payload(
        "peers",
        "quick" if args.quick else "full",
        settings,
        records,
        machine,
        argv=argv,
        summary=rows,
        notes=notes,
    )
    return publish(args, "peers", data, rows, COLUMNS, draw(rows))


if __name__ == "__main__":
    main()
