"""One process of a 2-process ``jaxpg.run`` / ``jaxpg.resume`` job on this machine (1 CPU device
each): ``python _multihost_run.py PORT PROCESS_ID MODE[,MODE...] RUN_DIR``. Runs the modes one
after another in the same two processes and prints one line of JSON per mode: the run's status,
or for a ``blind-*`` mode its refusal (``{"refused": "module.Error: message", "left": [what
process 0 sees in the run directory after it]}``). A process start (jax, jaxpg, the coordination
service) costs about 5 s of a 2-core CPU, so a refusal is checked in the processes of the run
that follows it.
Modes (``tests/test_multidevice.py`` checks each):
- ``interrupt``: Ctrl-C (SIGINT) reaches process 1 alone, after the chunk that ends at update 4;
  and process 1's disk shows checkpoints 1 and 2 (its ``checkpoint_steps`` says so), so the
  processes must agree on what to save from process 0's view: by its own, process 1 would skip
  the collective save at update 2 that process 0 enters (the run then aborts in gloo: "Is there
  a distributed collective mismatch").
- ``resume``: resumes ``RUN_DIR`` to the end (spread, as ``jaxpg train --resume DIR
  --distributed`` does), and says how many members of the checkpoint the process read (the
  member count of each leaf of the restored state on its devices).
- ``raise``: a callback raises in process 1 alone, after the chunk that ends at update 4. This
  run is not spread: each process trains both members, and process 0 writes the checkpoint at
  update 2.
- ``raise-at-start``: a callback's ``on_start`` raises in process 1 alone (no agreement point:
  process 0 is already waiting in a collective).
- ``blind-resume``: process 1 is given a run directory that does not exist.
- ``blind-run``: a new spread run where process 1 is given another run directory than process
  0's (as a disk of its own would be).
"""

from __future__ import annotations

import json
import os
import signal
import sys

import jaxpg.distributed as dist  # must not start JAX's backend: initialize comes first

port, process_id, modes, run_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
dist.initialize_distributed(f"localhost:{port}", 2, process_id)

from _multihost_config import RUN, RUN_CONFIG  # noqa: E402

import jaxpg  # noqa: E402
import jaxpg.checkpoint  # noqa: E402
import jaxpg.runner  # noqa: E402
from jaxpg.callbacks import Callback  # noqa: E402


class OnProcess1(Callback):
    def __init__(self, mode):
        self.mode = mode

    def on_start(self, run):
        if self.mode == "raise-at-start" and process_id == 1:
            raise ValueError("on_start failed in process 1")

    def on_chunk(self, run, chunk):
        if process_id == 1 and chunk.first_update + chunk.length == 4:
            if self.mode == "interrupt":
                os.kill(os.getpid(), signal.SIGINT)
            elif self.mode == "raise":
                raise RuntimeError("on_chunk failed in process 1")


def run_mode(mode: str) -> dict:
    steps = jaxpg.checkpoint.checkpoint_steps
    if mode == "interrupt" and process_id == 1:
        jaxpg.checkpoint.checkpoint_steps = lambda directory: [1, 2]
    try:
        return train(mode)
    finally:
        jaxpg.checkpoint.checkpoint_steps = steps


def train(mode: str) -> dict:
    read = []
    if mode in ("resume", "blind-resume"):
        # How many members each leaf of the restored state holds in this process.
        from trees import raw_leaves

        restore = jaxpg.runner.restore_checkpoint

        def restore_and_count(*args, **kwargs):
            state, meta = restore(*args, **kwargs)
            held = {sum(s.data.shape[0] for s in x.addressable_shards) for x in raw_leaves(state)}
            read.append(sorted(held))
            return state, meta

        jaxpg.runner.restore_checkpoint = restore_and_count
        missing = mode == "blind-resume" and process_id == 1
        try:
            result = jaxpg.resume(
                run_dir + "-missing" if missing else run_dir,
                spread=True,
                checkpoint_every=2,
                chunk_updates=2,
                progress=False,
                plot=False,
            )
        finally:
            jaxpg.runner.restore_checkpoint = restore
    else:
        missing = mode == "blind-run" and process_id == 1
        result = jaxpg.run(
            RUN_CONFIG,
            run_dir=run_dir + "-missing" if missing else run_dir,
            callbacks=[OnProcess1(mode)],
            spread=mode != "raise",
            checkpoint_every=2,
            **RUN,
        )
    status = {"status": result.status, "message": result.message, "done": result.updates_done}
    return {**status, "members_read": read} if mode == "resume" else status


for mode in modes.split(","):
    if mode.startswith("blind-"):
        # Refused in every process: the exception's own line, and what the run left behind.
        try:
            run_mode(mode)
            outcome = {"refused": None}
        except jaxpg.runner.RunArgumentError as err:
            outcome = {"refused": f"{type(err).__module__}.{type(err).__name__}: {err}"}
        # process 0's view, after its own probe file is gone (another process may look first)
        seen = process_id == 0 and os.path.isdir(run_dir)
        outcome["left"] = sorted(os.listdir(run_dir)) if seen else None
        print(json.dumps(outcome), flush=True)
    else:
        print(json.dumps(run_mode(mode)), flush=True)
