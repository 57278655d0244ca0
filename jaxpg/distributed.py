"""Many processes and many devices: the scaling module's front door.

Joining a multi-host job and who does what in it (:mod:`jaxpg.processes`), and the sharded
programs (:mod:`jaxpg.sharding`), re-exported here.

``import jaxpg.distributed`` imports only :mod:`jaxpg.processes`, which starts nothing: the
sharded programs import the trainer (and gymnax, whose import computes with JAX), after which
``jax.distributed.initialize`` refuses to run. So their names are loaded on first use, and
:func:`initialize_distributed` can be called after ``import jaxpg.distributed``.
"""

import importlib

from jaxpg.processes import (  # noqa: F401
    ProcessFailed,
    Topology,
    fail_together,
    gather_messages,
    global_seed,
    initialize_distributed,
    int_from_process_0,
    is_main_process,
    main_process_only,
    process_key,
    topology,
)

_SHARDING = (
    "DATA_AXIS",
    "BatchLayout",
    "batch_layout",
    "make_mesh",
    "make_sharded_init",
    "make_sharded_sweep",
    "make_sharded_train",
    "make_sharded_train_chunk",
    "member_sharding",
    "shard_state",
    "spread_members",
    "state_shardings",
    "to_host",
)
__all__ = [
    "ProcessFailed",
    "Topology",
    "fail_together",
    "gather_messages",
    "global_seed",
    "initialize_distributed",
    "int_from_process_0",
    "is_main_process",
    "main_process_only",
    "process_key",
    "topology",
    *_SHARDING,
]


def __getattr__(name):
    if name in _SHARDING:
        value = getattr(importlib.import_module("jaxpg.sharding"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jaxpg.distributed' has no attribute {name!r}")
