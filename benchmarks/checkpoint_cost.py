"""What a checkpoint of a 2-process run costs against the number of members.

The run loop (:class:`jaxpg.callbacks.Checkpoints`) gathers every member's state to every
process (``to_host``, a collective) and process 0 writes it with orbax. For each member count
this script starts 2 processes of one CPU device each (as 2 hosts would be), spreads the
members over them (``jaxpg.run``'s ``spread=True`` init program), and times, in each process,
the gather alone and the whole checkpoint (gather and write), after one untimed checkpoint;
it records each process's peak RSS growth over the timed checkpoints (``VmHWM`` reset first,
Linux) and the bytes of one member's state.

Beside it, the alternative the run loop does not take: orbax's own multi-process save of the
spread arrays, every process writing the members it holds, no gather (``Checkpointer`` without
``active_processes``), timed and measured the same way; then whether
:func:`jaxpg.checkpoint.restore_checkpoint` reads that checkpoint back in one process and
finds the same state as the gathered one (with 25 MB members, 32 of them: 0.46 s and +90 MB
per process against 1.9 s and +2 GB in process 0; but one process cannot read it back, orbax
refuses the other topology, so the run loop keeps the gather).

    python benchmarks/checkpoint_cost.py                  # 2, 8, 32, 128 members
    python benchmarks/checkpoint_cost.py --quick          # 2 and 8 members
    python benchmarks/checkpoint_cost.py --hidden-sizes 1024,1024 --members 2 8 32 \
        --name checkpoint_cost_big_cpu                     # 25 MB per member
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402
from options import add_common_args  # noqa: E402
from report import log, payload, publish  # noqa: E402

FULL = dict(members=[2, 8, 32, 128], repeats=3)
QUICK = dict(members=[2, 8], repeats=2)


def worker(port: int, process_id: int, members: int, repeats: int, out: str, hidden: str) -> None:
    """One process: join, build the spread state, time the gathers and the checkpoints."""
    import jaxpg.distributed as dist

    dist.initialize_distributed(f"localhost:{port}", 2, process_id)
    import time

    import jax
    import numpy as np

    import jaxpg
    from jaxpg import runner
    from jaxpg.callbacks import Checkpoints, RunContext
    from jaxpg.checkpoint import Checkpointer, key_impl_of
    from jaxpg.members import Members
    from jaxpg.sharding import to_host

    config = jaxpg.PPOConfig(**config_args(hidden))
    group = Members.of(members)
    keys, hparams = group.inputs(config)
    state = runner._program(runner._init_fn(config, None), True)(keys, hparams)
    jax.block_until_ready(state)
    leaves = jax.tree.leaves(jax.tree.map(lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x, state))  # fmt: skip
    member_bytes = sum(x.nbytes for x in leaves) / members
    ctx = RunContext(config, group, Path(out), 0, 1, 1, jax.process_index() == 0)
    cb = Checkpoints(every=0, keep=2)
    cb.on_start(ctx)
    cb.save(ctx, state, 1)  # untimed: the first save sets orbax up
    reset_peak()
    rss0 = rss_mb("VmRSS")
    gathers, saves = [], []
    for i in range(repeats):
        t = time.perf_counter()
        to_host(state)
        gathers.append(time.perf_counter() - t)
        t = time.perf_counter()
        cb.save(ctx, state, 2 + i)
        saves.append(time.perf_counter() - t)
    cb.close()
    gathered_growth = rss_mb("VmHWM") - rss0
    # The alternative: orbax's own multi-process save of the spread arrays, every process
    # writing the members it holds (no gather, every process active in orbax).
    sharded = Checkpointer(Path(out) / "sharded", config, keep=2)
    impl = key_impl_of(state)
    sharded.save(state, step=1, key_impl=impl)  # untimed, as above
    reset_peak()
    rss0 = rss_mb("VmRSS")
    sharded_saves = []
    for i in range(repeats):
        t = time.perf_counter()
        sharded.save(state, step=2 + i, key_impl=impl)
        sharded_saves.append(time.perf_counter() - t)
    sharded.close()
    print(json.dumps({
        "process": process_id, "members": members, "member_state_bytes": member_bytes,
        "gather_s": float(np.median(gathers)), "checkpoint_s": float(np.median(saves)),
        "peak_rss_growth_mb": gathered_growth,
        "sharded_checkpoint_s": float(np.median(sharded_saves)),
        "sharded_peak_rss_growth_mb": rss_mb("VmHWM") - rss0,
    }))  # fmt: skip


def rss_mb(field: str) -> float:
    """This process's resident memory (``VmRSS``) or its peak since :func:`reset_peak`
    (``VmHWM``), in MB, from ``/proc/self/status`` (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Sets the peak resident memory (``VmHWM``) back to the current one (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def same_checkpoints(out: str, config_args: dict) -> bool | str:
    """Whether the latest gathered and sharded checkpoints hold the same state, exactly, as
    :func:`jaxpg.checkpoint.restore_checkpoint` reads them back in this one process; or why
    it cannot read one."""
    import jax
    import numpy as np

    import jaxpg
    from jaxpg.checkpoint import restore_checkpoint

    config = jaxpg.PPOConfig(**config_args)
    from jaxpg.checkpoint import CheckpointError

    a, _ = restore_checkpoint(Path(out) / "checkpoints", config)
    try:
        b, _ = restore_checkpoint(Path(out) / "sharded", config)
    except CheckpointError as e:
        return f"unreadable: {str(e).split('(')[-1].split('.')[0]}"
    data = lambda t: jax.tree.leaves(jax.tree.map(lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x, t))  # fmt: skip
    return all(np.array_equal(x, y) for x, y in zip(data(a), data(b), strict=True))


def config_args(hidden: str) -> dict:
    return dict(
        env="CartPole-v1",
        num_envs=4,
        num_steps=32,
        hidden_sizes=tuple(int(h) for h in hidden.split(",")),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def measure(members: int, repeats: int, hidden: str) -> list[dict]:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=1"
    port = free_port()
    with tempfile.TemporaryDirectory() as out:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    str(port),
                    str(pid),
                    str(members),
                    str(repeats),
                    out,
                    hidden,
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for pid in range(2)
        ]
        rows = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=900)
            if proc.returncode:
                raise RuntimeError(f"worker failed:\n{stderr[-3000:]}")
            rows.append(json.loads(stdout.strip().splitlines()[-1]))
        same = same_checkpoints(out, config_args(hidden))
    for r in rows:
        r["sharded_equals_gathered"] = same
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p, quick_help="2 and 8 members", repeats=False)
    p.add_argument("--members", nargs="+", type=int, help=f"default {FULL['members']}")
    p.add_argument("--hidden-sizes", default="64,64", help="the MLP's layers (a bigger state)")
    p.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        port, pid, members, repeats, out, hidden = args.worker
        return worker(int(port), int(pid), int(members), int(repeats), out, hidden)
    plan = QUICK if args.quick else FULL
    counts = args.members or plan["members"]
    rows = []
    for m in counts:
        log(f"{m} members ...")
        for r in measure(m, plan["repeats"], args.hidden_sizes):
            r["state_mb"] = r["member_state_bytes"] * m / 2**20
            rows.append(r)
            log(f"  process {r['process']}: gather {r['gather_s']:.3f} s, checkpoint "
                f"{r['checkpoint_s']:.3f} s, peak RSS +{r['peak_rss_growth_mb']:.1f} MB; "
                f"sharded {r['sharded_checkpoint_s']:.3f} s, "
                f"+{r['sharded_peak_rss_growth_mb']:.1f} MB, "
                f"same state: {r['sharded_equals_gathered']}")  # fmt: skip
    settings = {"env": "CartPole-v1", "algorithm": "ppo", "num_envs": 4, "num_steps": 32,
                "hidden_sizes": args.hidden_sizes,
                "processes": 2, "devices_per_process": 1, "repeats": plan["repeats"]}  # fmt: skip
    data = payload("checkpoint_cost", "quick" if args.quick else "full", settings, rows,
                   machine_info(), argv=argv)  # fmt: skip
    columns = [
        ("members", "members"), ("process", "process"),
        ("member_state_bytes", "bytes per member"), ("state_mb", "all members, MB"),
        ("gather_s", "gather s"), ("checkpoint_s", "checkpoint s (gather + write)"),
        ("peak_rss_growth_mb", "peak RSS growth, MB"),
        ("sharded_checkpoint_s", "sharded checkpoint s"),
        ("sharded_peak_rss_growth_mb", "sharded peak RSS growth, MB"),
        ("sharded_equals_gathered", "sharded = gathered (read in one process)"),
    ]  # fmt: skip
    publish(args, "checkpoint_cost_cpu", data, rows, columns)


if __name__ == "__main__":
    main()
