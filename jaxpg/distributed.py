"""Many processes and many devices: the scaling module's front door.

Joining a multi-host job and who does what in it (:mod:`jaxpg.processes`), and the sharded
programs (:mod:`jaxpg.sharding`), re-exported here.
"""

from jaxpg.processes import (  # noqa: F401
    Topology,
    global_seed,
    initialize_distributed,
    is_main_process,
    main_process_only,
    process_key,
    topology,
)
from jaxpg.sharding import (  # noqa: F401
    DATA_AXIS,
    BatchLayout,
    batch_layout,
    make_mesh,
    make_sharded_init,
    make_sharded_sweep,
    make_sharded_train,
    make_sharded_train_chunk,
    shard_state,
    spread_members,
    state_shardings,
    to_host,
)
