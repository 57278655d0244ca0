"""One process of a 2-process ``jaxpg.run`` / ``jaxpg.resume`` job on this machine (1 CPU device
each): ``python _multihost_run.py PORT PROCESS_ID MODE RUN_DIR``. Prints the run's status as
JSON on the last line of stdout.

Modes (``tests/test_multidevice.py`` checks each):
- ``interrupt``: Ctrl-C (SIGINT) reaches process 1 alone, after the chunk that ends at update 4;
  and process 1's disk shows a checkpoint at every update (its ``checkpoint_steps`` says so),
  so the processes must agree on what to save from process 0's view.
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

port, process_id, mode, run_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
dist.initialize_distributed(f"localhost:{port}", 2, process_id)

from _multihost_config import RUN, RUN_CONFIG  # noqa: E402

import jaxpg  # noqa: E402
from jaxpg.callbacks import Callback  # noqa: E402


class OnProcess1(Callback):
    def on_start(self, run):
        if mode == "raise-at-start" and process_id == 1:
            raise ValueError("on_start failed in process 1")

    def on_chunk(self, run, chunk):
        if process_id == 1 and chunk.first_update + chunk.length == 4:
            if mode == "interrupt":
                os.kill(os.getpid(), signal.SIGINT)
            elif mode == "raise":
                raise RuntimeError("on_chunk failed in process 1")


if mode == "interrupt" and process_id == 1:
    import jaxpg.checkpoint

    jaxpg.checkpoint.checkpoint_steps = lambda directory: list(range(1, 9))

read = []
if mode == "resume":
    # How many members each leaf of the restored state holds in this process.
    from trees import raw_leaves

    import jaxpg.runner

    restore = jaxpg.runner.restore_checkpoint

    def restore_and_count(*args, **kwargs):
        state, meta = restore(*args, **kwargs)
        held = {sum(s.data.shape[0] for s in x.addressable_shards) for x in raw_leaves(state)}
        read.append(sorted(held))
        return state, meta

    jaxpg.runner.restore_checkpoint = restore_and_count

if mode in ("resume", "blind-resume"):
    where = run_dir if not (mode == "blind-resume" and process_id == 1) else run_dir + "-missing"
    result = jaxpg.resume(
        where, spread=True, checkpoint_every=2, chunk_updates=2, progress=False, plot=False
    )
else:
    if mode == "blind-run" and process_id == 1:
        run_dir += "-missing"
    result = jaxpg.run(
        RUN_CONFIG,
        run_dir=run_dir,
        callbacks=[OnProcess1()],
        spread=True,
        checkpoint_every=2,
        **RUN,
    )
status = {"status": result.status, "message": result.message, "done": result.updates_done}
print(json.dumps({**status, "members_read": read} if mode == "resume" else status))
