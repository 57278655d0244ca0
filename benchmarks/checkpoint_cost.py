"""What a checkpoint of a 2-process run costs against the number of members.

For each member count this script starts 2 processes of one CPU device each (as 2 hosts would
be), spreads the members over them (``jaxpg.run``'s ``spread=True`` init program), and times
two ways to checkpoint them, each after one untimed checkpoint, with each process's peak RSS
growth over the timed ones (``VmHWM`` reset first, Linux):

* the run loop's (:class:`jaxpg.callbacks.Checkpoints`): orbax's collective save of the spread
  arrays, each process writing the members it holds;
* before it, gathered: every member gathered to every process (``to_host``, a collective) and
  written by process 0 alone (orbax ``active_processes={0}``); the gather alone is timed too.

Each process then reads the run loop's latest checkpoint back with
:func:`jaxpg.checkpoint.restore_checkpoint`, timed with its peak RSS growth and the members it
holds: spread (``sharding=member_sharding()``, as a spread resume reads it: each process its own
members) and whole (every member onto each process's device, the default). Then it reads both
latest checkpoints back in one process and compares them exactly. It also records the bytes of
one member's state.

    python benchmarks/checkpoint_cost.py                  # 2, 8, 32, 128 members
    python benchmarks/checkpoint_cost.py --quick          # 2 and 8 members
    python benchmarks/checkpoint_cost.py --hidden-sizes 1024,1024 --members 2 8 32 \
        --name checkpoint_restore_big_cpu                  # 25 MB per member
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
    from jaxpg.callbacks import Checkpoints, RunContext, _primary_only
    from jaxpg.checkpoint import Checkpointer, key_impl_of, restore_checkpoint
    from jaxpg.members import Members
    from jaxpg.sharding import member_sharding, to_host

    config = jaxpg.PPOConfig(**config_args(hidden))
    group = Members.of(members)
    keys, hparams = group.inputs(config)
    state = runner._program(runner._init_fn(config, None), True)(keys, hparams)
    jax.block_until_ready(state)
    member_bytes = sum(x.nbytes for x in raw_leaves(state)) / members
    ctx = RunContext(config, group, Path(out), 0, 1, 1, jax.process_index() == 0)
    # The run loop's checkpoint: orbax's collective save, each process writing its members.
    cb = Checkpoints(every=0, keep=2)
    cb.on_start(ctx)
    cb.save(ctx, state, 1)  # untimed: the first save sets orbax up
    reset_peak()
    rss0 = rss_mb("VmRSS")
    saves = []
    for i in range(repeats):
        t = time.perf_counter()
        cb.save(ctx, state, 2 + i)
        saves.append(time.perf_counter() - t)
    cb.close()
    growth = rss_mb("VmHWM") - rss0
    # Before: every member gathered to every process (to_host), process 0 writes them all.
    gathered = None
    if ctx.is_main:
        gathered = Checkpointer(
            Path(out) / "gathered", config, keep=2, multiprocessing_options=_primary_only()
        )
    impl = key_impl_of(state)

    def gather_and_write(step):
        host = to_host(state)
        if gathered is not None:
            gathered.save(host, step=step, key_impl=impl)

    gather_and_write(1)  # untimed, as above
    reset_peak()
    rss0 = rss_mb("VmRSS")
    gathers, gathered_saves = [], []
    for i in range(repeats):
        t = time.perf_counter()
        to_host(state)
        gathers.append(time.perf_counter() - t)
        t = time.perf_counter()
        gather_and_write(2 + i)
        gathered_saves.append(time.perf_counter() - t)
    if gathered is not None:
        gathered.close()
    gathered_growth = rss_mb("VmHWM") - rss0
    # Reading the run loop's checkpoint back in both processes, as a resume does: spread (each
    # process reads the members its device holds), then whole (every member in every process).
    # Spread first: a later read may reuse memory the earlier one freed, which can only make
    # the whole read's growth look smaller.
    reads = {}
    for name, sharding in (("spread", member_sharding()), ("whole", None)):
        reset_peak()
        rss0, times = rss_mb("VmRSS"), []
        for _ in range(repeats):
            t = time.perf_counter()
            restored, _ = restore_checkpoint(Path(out) / "checkpoints", config, sharding=sharding)
            jax.block_until_ready(restored)
            times.append(time.perf_counter() - t)
            held = sum(s.data.nbytes for x in raw_leaves(restored) for s in x.addressable_shards)
            del restored
        reads[name] = (float(np.median(times)), rss_mb("VmHWM") - rss0, held / member_bytes)
    print(json.dumps({
        "process": process_id, "members": members, "member_state_bytes": member_bytes,
        "checkpoint_s": float(np.median(saves)), "peak_rss_growth_mb": growth,
        "gather_s": float(np.median(gathers)),
        "gathered_checkpoint_s": float(np.median(gathered_saves)),
        "gathered_peak_rss_growth_mb": gathered_growth,
        **{f"restore_{k}_{part}": v[i] for k, v in reads.items()
           for i, part in enumerate(("s", "peak_rss_growth_mb", "members_held"))},
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
    """Whether the latest checkpoints of the two ways hold the same state, exactly, as
    :func:`jaxpg.checkpoint.restore_checkpoint` reads them back in this one process; or why
    it cannot read one."""
    import numpy as np

    import jaxpg
    from jaxpg.checkpoint import CheckpointError, restore_checkpoint

    config = jaxpg.PPOConfig(**config_args)
    a, _ = restore_checkpoint(Path(out) / "gathered", config)
    try:
        b, _ = restore_checkpoint(Path(out) / "checkpoints", config)
    except CheckpointError as e:
        return f"unreadable: {str(e).split('(')[-1].split('.')[0]}"
    pairs = zip(raw_leaves(a), raw_leaves(b), strict=True)
    return all(np.array_equal(x, y) for x, y in pairs)


def raw_leaves(tree) -> list:
    """``tree``'s leaves, typed PRNG keys as their raw data (as a checkpoint stores them)."""
    import jax

    from jaxpg.checkpoint import _key_data

    return jax.tree.leaves(_key_data(tree))


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
        r["same_state"] = same
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
            log(f"  process {r['process']}: checkpoint {r['checkpoint_s']:.3f} s, peak RSS "
                f"+{r['peak_rss_growth_mb']:.1f} MB; gathered {r['gathered_checkpoint_s']:.3f} s "
                f"(gather {r['gather_s']:.3f} s), +{r['gathered_peak_rss_growth_mb']:.1f} MB; "
                f"same state: {r['same_state']}; restore spread {r['restore_spread_s']:.3f} s, "
                f"+{r['restore_spread_peak_rss_growth_mb']:.1f} MB, whole "
                f"{r['restore_whole_s']:.3f} s, "
                f"+{r['restore_whole_peak_rss_growth_mb']:.1f} MB")  # fmt: skip
    settings = {"env": "CartPole-v1", "algorithm": "ppo", "num_envs": 4, "num_steps": 32,
                "hidden_sizes": args.hidden_sizes,
                "processes": 2, "devices_per_process": 1, "repeats": plan["repeats"]}  # fmt: skip
    data = payload("checkpoint_cost", "quick" if args.quick else "full", settings, rows,
                   machine_info(), argv=argv)  # fmt: skip
    columns = [
        ("members", "members"), ("process", "process"),
        ("member_state_bytes", "bytes per member"), ("state_mb", "all members, MB"),
        ("checkpoint_s", "checkpoint s"), ("peak_rss_growth_mb", "peak RSS growth, MB"),
        ("gather_s", "gathered: gather s"),
        ("gathered_checkpoint_s", "gathered: checkpoint s (gather + write)"),
        ("gathered_peak_rss_growth_mb", "gathered: peak RSS growth, MB"),
        ("same_state", "same state (read in one process)"),
        ("restore_spread_members_held", "restore spread: members held"),
        ("restore_spread_s", "restore spread s"),
        ("restore_spread_peak_rss_growth_mb", "restore spread: peak RSS growth, MB"),
        ("restore_whole_members_held", "restore whole: members held"),
        ("restore_whole_s", "restore whole s"),
        ("restore_whole_peak_rss_growth_mb", "restore whole: peak RSS growth, MB"),
    ]  # fmt: skip
    publish(args, "checkpoint_cost_cpu", data, rows, columns)


if __name__ == "__main__":
    main()
