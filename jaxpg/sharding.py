"""Sharding: one training program over many devices (and hosts), or members spread over them.

Data parallelism is ``jax.jit`` plus :class:`jax.sharding.NamedSharding` over a 1-D
:class:`jax.sharding.Mesh` (one ``Auto`` axis, ``"data"``):

* the environments are sharded: every leaf of the env carry with a leading ``num_envs`` axis
  (gymnax states, observations, running episode returns) is split across devices, so each
  device steps ``num_envs / num_devices`` environments;
* the parameters, the optimiser state, the normaliser statistics, the hyperparameters and the
  key are replicated;
* in the optimisation phase each minibatch's rows are split over the devices (through
  ``make_update``'s ``constrain_minibatches`` hook): every device differentiates its rows and
  the partial gradients are summed across devices.

The trainer is the single-device code, unchanged. ``jit`` keeps its global-view semantics, so
every mean in it (the loss over a minibatch, hence the gradient; the advantage normalisation;
the observation and reward statistics; the episode metrics) is a mean over the global batch;
the compiler inserts the cross-device reductions. The result equals a one-device run up to the
order of float32 summation (``tests/test_multidevice.py`` checks both the gradient and a short
training run on 4 forced CPU devices). Random numbers do not depend on the sharding either:
the same key gives the same environments and actions on one device or on many.

``shard_map`` is deliberately not used: with its default checks, ``pmean`` of the gradient of a
per-device loss over replicated parameters gives ``num_devices`` times the gradient (the
transpose of the implicit broadcast already sums), one of the traps this layout avoids.

Seeds and sweep members can be spread across devices instead, whole agents per device:
:func:`make_sharded_sweep` for a whole sweep, :func:`spread_members` for a host loop of chunks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxpg.agents import AgentLike, as_agent
from jaxpg.config import Config, HParams
from jaxpg.train import (
    TrainResult,
    TrainState,
    _coerce_hparams,
    init_state,
    make_train,
    make_update,
    policy_params,
    run_updates,
)

DATA_AXIS = "data"

# The fields of ``EnvCarry`` with a leading ``num_envs`` axis; the normaliser statistics are
# not batched and stay replicated. Named explicitly, not guessed from shapes: CartPole's
# observation statistics have shape (4,), the same as 4 environments.
_PER_ENV_FIELDS = (
    "env_state",
    "obs",
    "episode_return",
    "episode_length",
    "discounted_return",
    "agent_carry",
    "episode_start",
)


# -- the mesh and the global batch -------------------------------------------------------------


def _mesh(devices: np.ndarray, axis_names: tuple[str, ...]) -> Mesh:
    # Auto axes: jax.make_mesh defaults to Explicit axes in recent JAX, which carry shardings
    # in the types and reject code written for one device (gymnax's vmaps). AxisType exists
    # from JAX ~0.6 (0.7.2, Colab's, has it); before it, every axis was Auto.
    axis_type = getattr(jax.sharding, "AxisType", None)
    if axis_type is None:
        return Mesh(devices, axis_names)
    return Mesh(devices, axis_names, axis_types=(axis_type.Auto,) * len(axis_names))


def make_mesh(devices: Sequence[Any] | None = None, axis_name: str = DATA_AXIS) -> Mesh:
    """A 1-D mesh of ``devices`` (default: every device of every process) with one Auto axis."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh: no devices")
    try:
        from jax.experimental import mesh_utils

        # A device order that makes a ring on TPU, so the all-reduces are fast.
        ordered = mesh_utils.create_device_mesh((len(devices),), devices)
    except Exception:  # noqa: BLE001 - any topology it cannot handle: keep the given order
        ordered = np.asarray(devices, dtype=object)
    return _mesh(np.asarray(ordered, dtype=object).reshape(-1), (axis_name,))


class BatchLayout(NamedTuple):
    """How one update's batch divides over devices and processes."""

    num_envs: int  # global: config.num_envs
    num_devices: int
    num_processes: int
    envs_per_device: int
    envs_per_process: int
    env_steps_per_update: int  # global batch, num_envs * num_steps


def batch_layout(
    config: Config, num_devices: int | None = None, num_processes: int | None = None
) -> BatchLayout:
    """The global batch arithmetic for ``config`` on ``num_devices`` devices (default: all of
    them, over all processes). ``config.num_envs`` is the global number of environments; it must
    divide evenly so every device steps the same number."""
    num_devices = jax.device_count() if num_devices is None else int(num_devices)
    num_processes = jax.process_count() if num_processes is None else int(num_processes)
    if num_devices < 1 or num_processes < 1 or num_devices % num_processes:
        raise ValueError(
            f"batch_layout: {num_devices} device(s) cannot split evenly over "
            f"{num_processes} process(es)"
        )
    num_envs = config.num_envs
    if num_envs % num_devices:
        lower = num_envs // num_devices * num_devices
        suggestion = f"{lower} or {lower + num_devices}" if lower else f"{num_devices}"
        raise ValueError(
            f"num_envs={num_envs} must be divisible by the global device count {num_devices} "
            f"({num_processes} process(es) x {num_devices // num_processes} device(s)), so every "
            f"device steps the same number of environments; use e.g. num_envs={suggestion}"
        )
    return BatchLayout(
        num_envs=num_envs,
        num_devices=num_devices,
        num_processes=num_processes,
        envs_per_device=num_envs // num_devices,
        envs_per_process=num_envs // num_processes,
        env_steps_per_update=config.batch_size,
    )


# -- sharding the training state ---------------------------------------------------------------


def _mesh_or_default(mesh: Mesh | None) -> Mesh:
    return make_mesh() if mesh is None else mesh


def _check_fits(config, mesh: Mesh) -> BatchLayout:
    processes = len({d.process_index for d in mesh.devices.flat})
    return batch_layout(config, mesh.size, processes)


def _axis(mesh: Mesh) -> str:
    if len(mesh.axis_names) != 1:
        raise ValueError(f"mesh: expected a 1-D mesh, got axes {mesh.axis_names}")
    return mesh.axis_names[0]


def member_sharding(mesh: Mesh | None = None) -> NamedSharding:
    """The sharding of a batch of runs spread over the devices (:func:`spread_members`): each
    leaf's leading member axis split over the mesh, member ``m`` on the mesh's device ``m // (M /
    D)`` (the mesh's order, which may differ from ``jax.devices()``'s).
    Given to :func:`jaxpg.checkpoint.restore_checkpoint`, every process reads only the members
    its own devices hold."""
    mesh = _mesh_or_default(mesh)
    return NamedSharding(mesh, PartitionSpec(_axis(mesh)))


def _state_spec_tree(state: TrainState, mesh: Mesh) -> TrainState:
    replicated = NamedSharding(mesh, PartitionSpec())
    per_env = NamedSharding(mesh, PartitionSpec(_axis(mesh)))
    tree = jax.tree.map(lambda _: replicated, state)
    env_changes = {
        name: jax.tree.map(lambda _: per_env, getattr(state.env, name)) for name in _PER_ENV_FIELDS
    }
    return tree.replace(env=tree.env.replace(**env_changes))


def state_shardings(
    config: Config, mesh: Mesh | None = None, *, agent: AgentLike | None = None
) -> TrainState:
    """The :class:`NamedSharding` of every leaf of ``config``'s :class:`TrainState`: the
    per-environment leaves sharded over the mesh, everything else replicated. What a
    checkpoint restore needs to put a state back on the devices."""
    mesh = _mesh_or_default(mesh)
    _check_fits(config, mesh)
    init = functools.partial(init_state, config, agent=as_agent(agent, config))
    shapes = jax.eval_shape(init, jax.random.key(0))
    return _state_spec_tree(shapes, mesh)


def shard_state(
    config: Config, state: TrainState, mesh: Mesh | None = None, *, agent: AgentLike | None = None
) -> TrainState:
    """``state`` placed on the mesh's devices: environments sharded, the rest replicated.

    (One process. With many, build the state with :func:`make_sharded_init`, or restore a
    checkpoint straight into :func:`state_shardings`.)"""
    return jax.device_put(state, state_shardings(config, mesh, agent=agent))


def _constrain_state(state: TrainState, mesh: Mesh) -> TrainState:
    return jax.lax.with_sharding_constraint(state, _state_spec_tree(state, mesh))


def _replicate(tree, mesh: Mesh):
    return jax.lax.with_sharding_constraint(
        tree, jax.tree.map(lambda _: NamedSharding(mesh, PartitionSpec()), tree)
    )


def _sharded_update(config, mesh: Mesh, agent: Any):
    """``make_update(config)`` with the environments kept sharded between updates and, in the
    optimisation phase, each minibatch's rows split over the devices: every device computes
    the gradient of its rows and the compiler all-reduces them into the global mean."""

    def constrain_minibatches(tree, row_axis: int = 1):
        # [num_minibatches, B, ...] (row_axis 1), or sequences [num_minibatches, T, n, ...] (2).
        rows = NamedSharding(mesh, PartitionSpec(*([None] * row_axis), _axis(mesh)))
        return jax.lax.with_sharding_constraint(tree, jax.tree.map(lambda _: rows, tree))

    update_fn = make_update(config, constrain_minibatches=constrain_minibatches, agent=agent)

    def sharded_update(state):
        state, metrics = update_fn(_constrain_state(state, mesh))
        return _constrain_state(state, mesh), metrics

    return sharded_update


def _host_inputs(config, key: jax.Array, hparams: HParams | None = None):
    """Key and hparams as NumPy: values that every process holds identically, which ``jit``
    over a multi-host mesh takes as replicated inputs (a jax.Array on one local device it
    would refuse)."""
    key = jnp.asarray(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key_data, impl = np.asarray(jax.random.key_data(key)), jax.random.key_impl(key)
    else:  # a raw uint32 key from jax.random.PRNGKey
        key_data, impl = np.asarray(key), None
    hp = jax.tree.map(np.asarray, _coerce_hparams(config, hparams))
    return key_data, impl, hp


def _wrap_key(key_data, impl):
    return key_data if impl is None else jax.random.wrap_key_data(key_data, impl=impl)


def _with_aot(fn, jitted, config, mesh, prepare=None):
    """Attaches ``fn.compile(*args)`` (ahead-of-time: returns a function of the same arguments
    that runs the compiled program, so compile and run can be timed apart), ``fn.jitted`` (for
    cache inspection) and ``fn.mesh``."""
    prepare = prepare or functools.partial(_host_inputs, config)

    def compile(*args):  # noqa: A001 - mirrors jax.stages.Lowered.compile
        key_data, impl, hp = prepare(*args)
        compiled = jitted.lower(key_data, hp, impl=impl).compile()

        def run(*args):
            key_data, run_impl, hp = prepare(*args)
            if run_impl != impl:
                raise ValueError("compiled for another kind of key (typed vs raw uint32)")
            return compiled(key_data, hp)

        return run

    fn.compile, fn.jitted, fn.mesh = compile, jitted, mesh
    return fn


def make_sharded_train(
    config: Config, mesh: Mesh | None = None, *, agent: AgentLike | None = None
) -> Callable[..., TrainResult]:
    """The data-parallel ``train(key, hparams=None) -> TrainResult``, already jitted.

    Same arguments and result as ``jax.jit(make_train(config))``, and the same numbers up to
    float32 summation order; the environments run sharded over ``mesh`` (default: every
    device of every process) and each minibatch's gradient is computed in parts on all of
    them. ``config.num_envs`` is global and must divide by the device count. The returned
    state keeps the environments sharded; params and metrics are replicated.

    ``train.compile(key, hparams=None)`` compiles ahead of time and returns a function of the
    same arguments, so compilation and training can be timed apart; other keys and
    hyperparameter values reuse the compiled program.
    """
    mesh = _mesh_or_default(mesh)
    _check_fits(config, mesh)
    agent = as_agent(agent, config)
    sharded_update = _sharded_update(config, mesh, agent)

    def _train(key_data, hp: HParams, *, impl=None):
        state = _constrain_state(
            init_state(config, _wrap_key(key_data, impl), hp, agent=agent), mesh
        )
        state, metrics = run_updates(state, config.num_updates, update_fn=sharded_update)
        params = _replicate(policy_params(config, state), mesh)
        return TrainResult(params, _replicate(metrics, mesh), state)

    _train = jax.jit(_train, static_argnames="impl")

    def train(key: jax.Array, hparams: HParams | None = None) -> TrainResult:
        key_data, impl, hp = _host_inputs(config, key, hparams)
        return _train(key_data, hp, impl=impl)

    return _with_aot(train, _train, config, mesh)


def make_sharded_init(
    config: Config, mesh: Mesh | None = None, *, agent: AgentLike | None = None
) -> Callable[..., TrainState]:
    """``init(key, hparams=None) -> TrainState``, jitted, created directly in its sharding."""
    mesh = _mesh_or_default(mesh)
    _check_fits(config, mesh)
    agent = as_agent(agent, config)

    def _init(key_data, hp, *, impl=None):
        return _constrain_state(
            init_state(config, _wrap_key(key_data, impl), hp, agent=agent), mesh
        )

    _init = jax.jit(_init, static_argnames="impl")

    def init(key: jax.Array, hparams: HParams | None = None) -> TrainState:
        key_data, impl, hp = _host_inputs(config, key, hparams)
        return _init(key_data, hp, impl=impl)

    return init


def make_sharded_train_chunk(
    config: Config, num_updates: int, mesh: Mesh | None = None, *, agent: AgentLike | None = None
) -> Callable[[TrainState], tuple[TrainState, dict[str, jax.Array]]]:
    """``chunk(state) -> (state, metrics)``, jitted: ``num_updates`` data-parallel updates, for a
    host loop with progress, logging and checkpoints between chunks (start from
    :func:`make_sharded_init`). Chunks compose exactly, as ``jaxpg.make_train_chunk``'s do."""
    mesh = _mesh_or_default(mesh)
    _check_fits(config, mesh)
    agent = as_agent(agent, config)
    sharded_update = _sharded_update(config, mesh, agent)

    @jax.jit
    def chunk(state: TrainState):
        state = _constrain_state(state, mesh)
        state, metrics = run_updates(state, num_updates, update_fn=sharded_update)
        return state, _replicate(metrics, mesh)

    return chunk


# -- seeds and sweep members across devices ----------------------------------------------------


def _sweep_host_inputs(config, mesh: Mesh, keys, hparams=None):
    """Checks a ``keys [S]`` x ``hparams [K]`` sweep against the mesh; returns host inputs."""
    if hparams is None:
        hparams = jax.tree.map(lambda x: x[None], config.hparams())
    hp = _coerce_hparams(config, hparams)
    if hp.lr.ndim != 1:
        raise ValueError(
            f"sweep: hparams need one leading axis of settings, got lr of shape {hp.lr.shape}; "
            "build them with jaxpg.sweep.grid or random_search"
        )
    keys = jnp.asarray(keys)
    num_runs = hp.lr.shape[0] * keys.shape[0]
    if num_runs % mesh.size:
        raise ValueError(
            f"sweep: {hp.lr.shape[0]} setting(s) x {keys.shape[0]} seed(s) = {num_runs} runs "
            f"must be divisible by the device count {mesh.size}, so every device trains the "
            "same number of agents"
        )
    return _host_inputs(config, keys, hp)


def _constrain_members(tree, sharding: NamedSharding):
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def make_sharded_sweep(
    config: Config, mesh: Mesh | None = None, *, agent: AgentLike | None = None
) -> Callable[..., TrainResult]:
    """``sweep(keys [S], hparams [K] = None) -> TrainResult`` with leading axes ``[K, S]``,
    jitted, with the ``K * S`` runs spread over the devices: each device trains whole agents,
    and nothing is communicated. ``K * S`` must divide by the device count.

    Member ``(k, s)`` equals ``make_train(config)(keys[s], hparams[k])``, as with
    :func:`jaxpg.sweep.make_sweep`. ``hparams=None`` trains the config's values (``K = 1``):
    many seeds of one agent. ``sweep.compile(keys, hparams=None)`` compiles ahead of time.
    """
    mesh = _mesh_or_default(mesh)
    members = member_sharding(mesh)
    train = make_train(config, agent=agent)

    def _sweep(key_data, hp: HParams, *, impl=None):
        keys = _wrap_key(key_data, impl)
        num_seeds, num_settings = keys.shape[0], jax.tree.leaves(hp)[0].shape[0]
        # Member m = k * S + s, so the flat axis reshapes back to [K, S].
        flat_keys = keys[jnp.tile(jnp.arange(num_seeds), num_settings)]
        flat_hp = jax.tree.map(lambda x: jnp.repeat(x, num_seeds, axis=0), hp)
        flat_keys, flat_hp = _constrain_members((flat_keys, flat_hp), members)
        result = _constrain_members(jax.vmap(train)(flat_keys, flat_hp), members)
        return jax.tree.map(lambda x: x.reshape(num_settings, num_seeds, *x.shape[1:]), result)

    _sweep = jax.jit(_sweep, static_argnames="impl")
    prepare = functools.partial(_sweep_host_inputs, config, mesh)

    def sweep(keys: jax.Array, hparams: HParams | None = None) -> TrainResult:
        key_data, impl, hp = prepare(keys, hparams)
        return _sweep(key_data, hp, impl=impl)

    return _with_aot(sweep, _sweep, config, mesh, prepare)


def spread_members(fn: Callable, mesh: Mesh | None = None) -> Callable:
    """``jax.jit(fn)`` with the members of a batch of runs spread over the devices.

    ``fn`` maps arguments whose array leaves all have a leading member axis ``[M]`` (keys,
    hyperparameters, or a batch of :class:`TrainState`) to outputs with the same leading axis,
    such as ``jax.vmap(functools.partial(jaxpg.init_state, config))`` or a vmapped
    ``make_train_chunk``. Member ``m`` runs whole on one device: nothing is communicated. ``M``
    must divide by the device count. With many processes, arguments that live on one local
    device (or in NumPy) must be the same in every process; outputs are global arrays
    (:func:`to_host` reads them).

    This is how a host loop over chunks (the CLI's seeds and sweep members) spreads over all
    devices of all hosts.
    """
    mesh = _mesh_or_default(mesh)
    members = member_sharding(mesh)

    def constrain(tree):
        return jax.tree.map(
            lambda x: jax.lax.with_sharding_constraint(x, members) if jnp.ndim(x) else x, tree
        )

    def _run(leaves, *, treedef, impls):
        leaves = [_wrap_key(x, impl) for x, impl in zip(leaves, impls)]
        args = constrain(jax.tree.unflatten(treedef, leaves))
        return constrain(fn(*args))

    _run = jax.jit(_run, static_argnames=("treedef", "impls"))

    def place(x):
        if not isinstance(x, jax.Array) or set(x.sharding.device_set) == set(mesh.devices.flat):
            return x  # NumPy (same in every process), or already on this mesh
        if jax.process_count() > 1:
            return np.asarray(x)  # a local array: taken as the same in every process
        return jax.device_put(x, members if x.ndim else NamedSharding(mesh, PartitionSpec()))

    def prepare(*args):
        leaves, treedef = jax.tree.flatten(args)
        sizes = {np.shape(x)[0] for x in leaves if np.ndim(x)}
        if len(sizes) > 1:
            raise ValueError(
                f"spread_members: arguments disagree on the number of members: {sorted(sizes)}"
            )
        if sizes and next(iter(sizes)) % mesh.size:
            raise ValueError(
                f"spread_members: {next(iter(sizes))} members must be divisible by the device "
                f"count {mesh.size}, so every device trains the same number of agents"
            )
        impls, data = [], []
        for x in leaves:
            typed = isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
            impls.append(jax.random.key_impl(x) if typed else None)
            data.append(place(jax.random.key_data(x) if typed else x))
        return data, treedef, tuple(impls)

    def run(*args):
        data, treedef, impls = prepare(*args)
        return _run(data, treedef=treedef, impls=impls)

    def lower(*args):
        """Ahead of time, as ``jax.jit``: ``run.lower(*args).compile()`` gives the compiled
        program, called with arguments like ``args``."""
        data, treedef, impls = prepare(*args)
        return _Lowered(_run.lower(data, treedef=treedef, impls=impls), prepare)

    run.jitted, run.mesh, run.lower = _run, mesh, lower
    return run


class _Lowered:
    """:func:`spread_members`'s lowered program: ``compile()`` returns the compiled program,
    which takes the original arguments (their keys unwrapped and placed as ``run`` does)."""

    def __init__(self, lowered: Any, prepare: Callable) -> None:
        self._lowered, self._prepare = lowered, prepare

    def compile(self) -> Callable:
        compiled = self._lowered.compile()
        return lambda *args: compiled(self._prepare(*args)[0])


# -- results back to the host ------------------------------------------------------------------


def to_host(tree: Any) -> Any:
    """Every leaf of ``tree`` as a NumPy array in this process, for logging and writing.

    A fully replicated array (params, metrics) is read from a local copy; an array sharded over
    other processes' devices (the environments) is gathered from all of them, which every
    process must then call together.
    """

    def leaf(x):
        if not isinstance(x, jax.Array):
            return np.asarray(x)
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        if x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(leaf, tree)
