"""One process of a multi-host job on this machine: ``python _multihost_worker.py PORT
NUM_PROCESSES PROCESS_ID OUT_DIR``, each process with 2 forced CPU devices (set by the parent in
``XLA_FLAGS``). Prints its measurements as JSON on the last line of stdout.

Every process joins the job with ``initialize_distributed``, trains the same config on the
global mesh (all processes' devices), and only process 0 writes the results file.
"""

from __future__ import annotations

import json
import os
import sys

import jaxpg.distributed as dist  # must not start JAX's backend: initialize comes first

port, num_processes, process_id, out_dir = (
    sys.argv[1],
    int(sys.argv[2]),
    int(sys.argv[3]),
    sys.argv[4],
)
topology = dist.initialize_distributed(f"localhost:{port}", num_processes, process_id)
again = dist.initialize_distributed()  # a second call is a no-op

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _multihost_config import CONFIG, SEED  # noqa: E402

layout = dist.batch_layout(CONFIG)
seed = dist.global_seed(SEED + process_id)  # differs per process: process 0's value wins
result = dist.make_sharded_train(CONFIG)(jax.random.key(seed))
metrics = dist.to_host(result.metrics)
params = dist.to_host(result.params)
env_obs = dist.to_host(result.state.env.obs)  # sharded over both processes: gathered


@dist.main_process_only
def save(path):
    flat = {f"param_{i}": x for i, x in enumerate(jax.tree.leaves(params))}
    np.savez(path, loss=metrics["loss"], env_obs=env_obs, **flat)
    return path


written = save(os.path.join(out_dir, "results.npz"))
print(
    json.dumps(
        {
            "topology": topology._asdict(),
            "again": again._asdict(),
            "layout": layout._asdict(),
            "seed": seed,
            "process_key": np.asarray(
                jax.random.key_data(dist.process_key(jax.random.key(0)))
            ).tolist(),
            "is_main": dist.is_main_process(),
            "written": written,
            "loss": metrics["loss"].tolist(),
            "env_obs_shape": list(env_obs.shape),
            "addressable_env_shards": len(result.state.env.obs.addressable_shards),
        }
    )
)
