"""The accelerator suite: one command that measures what benchmarkers ask of jaxpg on a GPU or TPU.

    python benchmarks/device_suite.py OUT_DIR                # full: sized for one GPU, < 10 min
    python benchmarks/device_suite.py OUT_DIR --size tiny    # seconds on a CPU (CI runs this)

Sections, in this order (each under its own time budget; a point that would start after its
section's budget is spent is listed as skipped, never silently dropped):

1. ``compile``: trace (``jax.jit(f).lower(keys)``) and compile (``.compile()``) seconds of the
   whole training program of every registered algorithm on CartPole-v1 (its preset), for one
   seed and for 8 vmapped seeds.
2. ``solve``: time to solve CartPole-v1: wall seconds, compile included, until the trailing mean
   training return first reaches 475, for each algorithm's CartPole preset (one seed). The
   program is timed as one call; the time at update ``k`` is ``compile + steady * (k + 1) /
   num_updates`` (every update costs the same).
3. ``throughput``: env steps per second of the whole training program (rollout and update)
   against ``num_envs`` (1k to 64k), compile apart, for every algorithm on CartPole-v1 and
   Breakout-MinAtar (GRPO: CartPole only, it needs whole episodes).
4. ``many_agents``: seconds per agent for N vmapped seeds (PPO CartPole, 4 envs x 128 steps,
   500k steps each: PureJaxRL's headline setting), then REINFORCE and the others at fewer N.
5. ``sequence``: generated tokens per second of PPO's whole training program on
   ``seq:reverse`` (5 tokens) with the cached causal transformer and with an MLP over the
   buffer, at 1, 64 and 1024 sequences (``benchmarks/sequence.py``'s speed part), and their
   ratio.

Writes ``device_suite.json`` (every number, the machine, the settings; rewritten after every
point, so a run cut short keeps what it measured), ``device_suite.md`` (the tables) and
``device_suite.png`` (four panels) into OUT_DIR. ``benchmarks/README.md`` says how to run it on
a machine that has only jax, flax, optax, chex and orbax (gymnax travels as wheels).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import loadavg, machine_info, machine_line  # noqa: E402
from report import log, markdown_table, mean_std, payload, write_plot  # noqa: E402
from timing import compile_program, time_call, time_program  # noqa: E402

from jaxpg.files import atomic_write_json, atomic_write_text  # noqa: E402
from jaxpg.metrics import final_return  # noqa: E402

SOLVE_RETURN = 475.0
SOLVE_WINDOW_STEPS = 20_000  # the trailing mean covers this many env steps (at least one update)

SIZES = {
    "full": dict(
        compile_seeds=[1, 8],
        solve_timesteps=None,
        throughput_num_envs=[1024, 4096, 16384, 65536],
        throughput_num_envs_others=[1024, 65536],
        throughput_envs=["CartPole-v1", "Breakout-MinAtar"],
        throughput_num_steps=32,
        steps_per_point=2**22,
        many_agents_ppo=[1, 2048, 128],  # the headline first: 2048 agents
        many_agents_others=[256],
        many_agents_timesteps=500_000,
        sequence_num_envs=[1, 64, 1024],
        sequence_tokens=2**16,
        budgets_s=dict(compile=45, solve=75, throughput=130, many_agents=150, sequence=90),
    ),
    "tiny": dict(
        compile_seeds=[1, 2],
        solve_timesteps=4096,
        throughput_num_envs=[4, 8],
        throughput_num_envs_others=[4],
        throughput_envs=["CartPole-v1"],
        throughput_num_steps=8,
        steps_per_point=128,
        many_agents_ppo=[1, 2],
        many_agents_others=[1],
        many_agents_timesteps=512,
        sequence_num_envs=[2],
        sequence_tokens=2**5,
        budgets_s=dict(compile=600, solve=600, throughput=600, many_agents=600, sequence=600),
    ),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("out_dir", type=Path, help="folder for device_suite.json/.md/.png")
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument(
        "--algos", nargs="+", default=None, help="registered algorithms (default: every one)"
    )
    p.add_argument(
        "--sections",
        nargs="+",
        choices=["compile", "solve", "throughput", "many_agents", "sequence"],
        default=["compile", "solve", "throughput", "many_agents", "sequence"],
    )
    p.add_argument(
        "--budget-scale",
        type=float,
        default=1.0,
        help="multiplies every section's time budget (full: 45/75/130/150/90 s)",
    )
    p.add_argument("--no-plot", action="store_true")
    return p.parse_args(argv)


# -- the programs -----------------------------------------------------------------------------


def preset_config(algo: str, size: str):
    """The algorithm's CartPole preset (its registered defaults where there is none)."""
    from jaxpg_parts import make_config

    from jaxpg import presets

    make = getattr(presets, f"{algo}_cartpole", None)
    config = make() if make is not None else make_config(algo, "CartPole-v1")
    if size == "tiny":
        config = with_num_envs(config, 4, total_timesteps=2 * 4 * config.num_steps)
    return config


def with_num_envs(config, num_envs: int, **changes):
    """``config`` with ``num_envs`` environments (group-relative configs: ``num_envs //
    group_size`` groups, groups of 2 below 8 envs)."""
    if hasattr(config, "num_groups"):
        group = config.group_size if num_envs >= 8 else 2
        return config.replace(
            num_envs=None, group_size=group, num_groups=num_envs // group, **changes
        )
    return config.replace(num_envs=num_envs, **changes)


def vmapped_train(config, num_seeds: int):
    """``keys [S] -> metrics``: ``S`` whole training runs in one program (``S == 1``: plain)."""
    import jax

    import jaxpg

    train = jaxpg.make_train(config)
    if num_seeds == 1:
        return lambda keys: train(keys[0]).metrics
    return lambda keys: jax.vmap(train)(keys).metrics


def trace_and_compile(fn, *args) -> dict:
    import jax

    start = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    trace_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    return {"trace_s": trace_s, "compile_s": compile_s, "compiled": compiled}


def first_crossing(returns, batch_size: int) -> int | None:
    """The first update whose trailing mean return (over ``SOLVE_WINDOW_STEPS`` env steps, at
    least one update; updates with no finished episode skipped) reaches ``SOLVE_RETURN``."""
    import numpy as np

    r = np.asarray(returns, np.float64)
    window = max(1, math.ceil(SOLVE_WINDOW_STEPS / batch_size))
    for k in range(len(r)):
        recent = r[max(0, k + 1 - window) : k + 1]
        recent = recent[~np.isnan(recent)]
        if k + 1 >= window and recent.size and recent.mean() >= SOLVE_RETURN:
            return k
    return None


# -- sections ---------------------------------------------------------------------------------


class Budget:
    """A section's time budget: ``fits(estimate)`` says whether a point may start."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def fits(self, estimate: float = 0.0) -> bool:
        return self.left() > estimate


def section_compile(algos, sizes, budget, out):
    import jax

    for algo in algos:
        for seeds in sizes["compile_seeds"]:
            if seeds > 1 and algo != "ppo":
                continue
            if not budget.fits():
                out["skipped"].append(f"compile {algo} seeds={seeds}")
                continue
            config = preset_config(algo, "tiny" if sizes is SIZES["tiny"] else "full")
            keys = jax.random.split(jax.random.key(0), seeds)
            t = trace_and_compile(vmapped_train(config, seeds), keys)
            t.pop("compiled")
            rec = {
                "algorithm": algo,
                "num_seeds": seeds,
                **t,
                "total_s": t["trace_s"] + t["compile_s"],
            }
            log(
                f"compile   {algo:9s} seeds={seeds:3d} trace {t['trace_s']:5.2f}s "
                f"compile {t['compile_s']:5.2f}s"
            )
            yield rec


def section_solve(algos, sizes, budget, out):
    import jax
    import numpy as np

    size = "tiny" if sizes is SIZES["tiny"] else "full"
    for algo in algos:
        if not budget.fits():
            out["skipped"].append(f"solve {algo}")
            continue
        config = preset_config(algo, size)
        if sizes["solve_timesteps"] is not None:
            config = config.replace(total_timesteps=sizes["solve_timesteps"])
        keys = jax.random.split(jax.random.key(0), 1)
        t = trace_and_compile(vmapped_train(config, 1), keys)
        compiled = t.pop("compiled")
        metrics, steady_s = time_call(compiled, keys)  # one call: what a user waits for
        returns = np.asarray(metrics["episode_return"])
        k = first_crossing(returns, config.batch_size)
        n = config.num_updates
        compile_s = t["trace_s"] + t["compile_s"]
        rec = {
            "algorithm": algo,
            "config": config.to_dict(),
            "num_updates": n,
            "batch_size": config.batch_size,
            "compile_s": compile_s,
            "steady_s": steady_s,
            "solved_update": k,
            "steps_to_solve": None if k is None else (k + 1) * config.batch_size,
            "seconds_to_solve": None if k is None else compile_s + steady_s * (k + 1) / n,
            "train_only_seconds_to_solve": None if k is None else steady_s * (k + 1) / n,
            "curve_steps": [(i + 1) * config.batch_size for i in range(n)],
            "curve_return": [None if np.isnan(x) else float(x) for x in returns],
        }
        log(
            f"solve     {algo:9s} "
            + (
                "not reached"
                if k is None
                else f"{rec['steps_to_solve']:,} steps, {rec['seconds_to_solve']:.2f}s (compile {compile_s:.2f}s)"
            )
        )
        yield rec


def section_throughput(algos, sizes, budget, out):
    import jax
    from jaxpg_parts import make_config, train_program

    T = sizes["throughput_num_steps"]
    for algo in algos:
        sizes_n = (
            sizes["throughput_num_envs"]
            if algo in ("ppo", "reinforce")
            else sizes["throughput_num_envs_others"]
        )
        for env in sizes["throughput_envs"]:
            if algo == "grpo" and env != "CartPole-v1":
                continue
            for n in sizes_n:
                if not budget.fits():
                    out["skipped"].append(f"throughput {algo} {env} num_envs={n}")
                    continue
                config = make_config(algo, env)
                steps = {} if algo == "grpo" else {"num_steps": T}  # GRPO: whole episodes
                batch = n * steps.get("num_steps", config.num_steps)
                updates = max(2, sizes["steps_per_point"] // batch)
                config = with_num_envs(config, n, total_timesteps=updates * batch, **steps)
                t = time_program(train_program(config), jax.random.key(0), repeats=1)
                t.pop("output")
                steps = config.num_updates * config.batch_size
                rec = {
                    "algorithm": algo,
                    "env": env,
                    "num_envs": n,
                    "num_steps": config.num_steps,
                    "env_steps": steps,
                    **t,
                    "steps_per_s": steps / t["steady_s"],
                }
                log(
                    f"throughput {algo:9s} {env:17s} N={n:6d} compile {t['compile_s']:5.2f}s "
                    f"{rec['steps_per_s']:14,.0f} steps/s"
                )
                yield rec


def section_many_agents(algos, sizes, budget, out):
    import jax
    import jaxpg_parts as jp

    import jaxpg

    for algo in algos:
        counts = sizes["many_agents_ppo"] if algo == "ppo" else sizes["many_agents_others"]
        config = preset_config(algo, "tiny" if sizes is SIZES["tiny"] else "full")
        if algo == "ppo":
            config = with_num_envs(config, 4, num_steps=128, total_timesteps=4 * 128)
        config = config.replace(
            total_timesteps=max(sizes["many_agents_timesteps"], config.batch_size)
        )
        for n in counts:
            if not budget.fits():
                out["skipped"].append(f"many_agents {algo} N={n}")
                continue
            states = jax.jit(jax.vmap(lambda k, c=config: jaxpg.init_state(c, k)))(
                jax.random.split(jax.random.key(0), n)
            )
            compiled, compile_s = compile_program(jp.seeds_program(config), states)
            (metrics, _), steady_s = time_call(compiled, states)  # one call per point
            t = {"compile_s": compile_s, "steady_s": steady_s}
            returns = metrics["episode_return"]
            steps = config.num_updates * config.batch_size
            rec = {
                "algorithm": algo,
                "num_agents": n,
                "num_envs": config.num_envs,
                "env_steps_per_agent": steps,
                **t,
                "s_per_agent": t["steady_s"] / n,
                "steps_per_s": steps * n / t["steady_s"],
                # per agent jaxpg.metrics.final_return, then the mean over agents
                "final_train_return_mean": mean_std(final_return(returns))[0],
            }
            log(
                f"many      {algo:9s} N={n:5d} compile {t['compile_s']:5.2f}s steady "
                f"{t['steady_s']:7.2f}s  {rec['s_per_agent']:.4f} s/agent"
            )
            yield rec


def section_sequence(algos, sizes, budget, out):
    from sequence import speed_point

    for n in sizes["sequence_num_envs"]:
        rates = {}
        for network in ("transformer", "mlp"):
            if not budget.fits():
                out["skipped"].append(f"sequence {network} N={n}")
                continue
            rec = speed_point(n, network, max(sizes["sequence_tokens"], 8 * n), repeats=2)
            rates[network] = rec["tokens_per_s"]
            if len(rates) == 2:
                rec["transformer_over_mlp"] = rates["transformer"] / rates["mlp"]
            yield rec


SECTIONS = {
    "compile": section_compile,
    "solve": section_solve,
    "throughput": section_throughput,
    "many_agents": section_many_agents,
    "sequence": section_sequence,
}

COLUMNS = {
    "compile": [
        ("algorithm", "algo"),
        ("num_seeds", "seeds"),
        ("trace_s", "trace s"),
        ("compile_s", "compile s"),
        ("total_s", "total s"),
    ],
    "solve": [
        ("algorithm", "algo"),
        ("batch_size", "batch"),
        ("compile_s", "compile s"),
        ("steps_to_solve", "env steps to 475"),
        ("train_only_seconds_to_solve", "train s"),
        ("seconds_to_solve", "wall s to 475 (compile incl.)"),
    ],
    "throughput": [
        ("algorithm", "algo"),
        ("env", "env"),
        ("num_envs", "num_envs"),
        ("num_steps", "T"),
        ("env_steps", "env steps"),
        ("compile_s", "compile s"),
        ("steady_s", "steady s"),
        ("steps_per_s", "env steps/s"),
    ],
    "many_agents": [
        ("algorithm", "algo"),
        ("num_agents", "N"),
        ("env_steps_per_agent", "steps/agent"),
        ("compile_s", "compile s"),
        ("steady_s", "steady s"),
        ("s_per_agent", "s / agent"),
        ("steps_per_s", "total env steps/s"),
        ("final_train_return_mean", "final return"),
    ],
    "sequence": [
        ("network", "network"),
        ("num_envs", "sequences"),
        ("tokens", "tokens"),
        ("compile_s", "compile s"),
        ("steady_s", "steady s"),
        ("tokens_per_s", "tokens/s"),
        ("transformer_over_mlp", "transformer / MLP"),
    ],
}


def draw(results):
    def _draw(fig):
        ax = fig.add_subplot(1, 4, 1)
        algos = [r["algorithm"] for r in results["compile"] if r["num_seeds"] == 1]
        ax.bar(
            algos, [r["trace_s"] for r in results["compile"] if r["num_seeds"] == 1], label="trace"
        )
        ax.bar(
            algos,
            [r["compile_s"] for r in results["compile"] if r["num_seeds"] == 1],
            bottom=[r["trace_s"] for r in results["compile"] if r["num_seeds"] == 1],
            label="compile",
        )
        ax.set_ylabel("seconds (one seed)")
        ax.set_title("trace + compile")
        ax.legend(fontsize=7)
        ax = fig.add_subplot(1, 4, 2)
        for r in results["solve"]:
            t = [
                r["compile_s"] + r["steady_s"] * (i + 1) / r["num_updates"]
                for i in range(r["num_updates"])
            ]
            ax.plot(
                t,
                [float("nan") if x is None else x for x in r["curve_return"]],
                label=r["algorithm"],
                lw=1,
            )
        ax.axhline(SOLVE_RETURN, color="k", ls=":", lw=1)
        ax.set_xlabel("wall seconds (compile incl.)")
        ax.set_ylabel("training return")
        ax.set_title("CartPole-v1: time to 475")
        ax.legend(fontsize=7)
        ax = fig.add_subplot(1, 4, 3)
        for key in sorted({(r["algorithm"], r["env"]) for r in results["throughput"]}):
            pts = sorted(
                (r["num_envs"], r["steps_per_s"])
                for r in results["throughput"]
                if (r["algorithm"], r["env"]) == key
            )
            ax.plot(*zip(*pts), "-o", ms=3, label=f"{key[0]} {key[1]}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("num_envs")
        ax.set_ylabel("env steps / s (whole program)")
        ax.set_title("throughput")
        ax.legend(fontsize=6)
        ax = fig.add_subplot(1, 4, 4)
        for algo in sorted({r["algorithm"] for r in results["many_agents"]}):
            pts = sorted(
                (r["num_agents"], r["s_per_agent"])
                for r in results["many_agents"]
                if r["algorithm"] == algo
            )
            ax.plot(*zip(*pts), "-o", ms=3, label=algo)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("vmapped seeds N")
        ax.set_ylabel("seconds per agent")
        ax.set_title("many agents")
        ax.legend(fontsize=7)

    return _draw


def write(args, data):
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "device_suite.json", data)
    md = [
        f"### device_suite ({args.size})",
        "",
        f"Command: `{data['command']}`",
        "",
        f"Machine: {machine_line(data['machine'])}",
        "",
    ]
    for name in args.sections:
        md += [f"#### {name}", "", markdown_table(data["results"][name], COLUMNS[name]), ""]
    if data["skipped"]:
        md += ["Skipped (their section's time budget was spent): " + "; ".join(data["skipped"]), ""]
    md += [f"- {n}" for n in data["notes"]]
    atomic_write_text(out / "device_suite.md", "\n".join(md).rstrip() + "\n")


def main(argv=None):
    args = parse_args(argv)
    from jaxpg import registry

    sizes = SIZES[args.size]
    algos = args.algos or list(registry.names())
    # PPO, then REINFORCE first: the figures everyone compares, before a budget runs out.
    algos = [a for a in ("ppo", "reinforce") if a in algos] + [
        a for a in algos if a not in ("ppo", "reinforce")
    ]
    data = payload(
        "device_suite",
        args.size,
        {
            "sizes": sizes,
            "algos": algos,
            "sections": args.sections,
            "budget_scale": args.budget_scale,
        },
        None,
        machine_info(),
        argv=argv,
    )
    data["results"] = {name: [] for name in SECTIONS}
    data["skipped"] = []
    data["notes"] = [
        "compile: trace = jax.jit(f).lower(keys), compile = .compile(), one program per point; "
        "the algorithm's CartPole preset.",
        f"solve: the trailing mean of the per-update training return over {SOLVE_WINDOW_STEPS:,} "
        f"env steps first >= {SOLVE_RETURN:g}; seconds = compile + steady * (k + 1) / updates.",
        f"throughput: T = {sizes['throughput_num_steps']} steps per rollout for every algorithm "
        "but GRPO (whole episodes, groups of 8); steady = a later call of the compiled program.",
        "many agents: PPO 4 envs x 128 steps; N initial states built by a vmapped init_state; "
        "one call of the compiled program per point (seconds = that call); final return = "
        "per agent, the mean training episode return over the last 10% of updates "
        "(jaxpg.metrics.final_return), then the mean over agents.",
        "sequence: PPO (mode='trajectory') on seq:reverse, whole 5-token completions, 4 epochs "
        "of one minibatch; tokens/s = generated tokens / steady seconds; the ratio is on the "
        "MLP's row.",
    ]
    for name in args.sections:
        budget = Budget(sizes["budgets_s"][name] * args.budget_scale)
        for rec in SECTIONS[name](algos, sizes, budget, data):
            data["results"][name].append(rec)
            write(args, data)  # a run cut short keeps every point it measured
        write(args, data)
    data["loadavg_at_end"] = loadavg()
    write(args, data)
    if not args.no_plot:
        write_plot(args.out_dir / "device_suite.png", draw(data["results"]), figsize=(20, 4.5))
    print((args.out_dir / "device_suite.md").read_text())
    return data


if __name__ == "__main__":
    main()
