"""Agents: the policy (and its critic) as pure functions, with an optional recurrent carry.

An :class:`Agent` is everything the rollout, the losses and :func:`jaxpg.make_policy` call:

    init(key) -> params
    initial_carry(num_envs) -> carry                 # () for a feed-forward agent
    apply(params, carry, obs, reset) -> (carry, dist_params, value)

``apply`` sees one step of a batch of ``B`` environments:

* ``obs`` ``[B, *obs_shape]``, exactly as the environment gives it (integer tokens stay
  integers): the agent decides how to embed it;
* ``reset`` ``[B]`` bool, true where ``obs`` is the first observation of an episode. An agent
  with a carry resets it there *before* it reads ``obs``, so a carry never leaks across an
  episode boundary and a stored start carry plus the reset flags replay a rollout exactly;
* ``dist_params``: the action distribution's parameters (:mod:`jaxpg.distributions`), logits
  ``[B, A]`` or a Gaussian's ``(mean [B, D], log_std [D] or [B, D])``;
* ``value``: ``V(obs)`` ``[B]``, or ``None`` for an agent without a critic.

The carry's leaves have leading axis ``B``. An agent whose carry has no leaves is feed-forward:
it may be applied to many steps at once (:func:`unroll` flattens them), and its minibatches may
shuffle single steps. One with a carry is recurrent: :func:`unroll` scans it over time, and its
minibatches keep each environment's sequence whole.

Build one with :func:`make_agent` (the config's MLP actor-critic), :func:`agent_from_module`
(any flax linen module called as ``module(carry, obs, reset)``), or :func:`agent_from_functions`
(a plain ``(init, apply)`` pair); :func:`as_agent` takes any of those.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from jaxpg.importing import import_path, path_of
from jaxpg.networks import ActorCritic, CausalEncoder, CausalTransformer, RecurrentActorCritic

if TYPE_CHECKING:  # annotations only: importing the config module imports gymnax
    from jaxpg.config import Config
    from jaxpg.envs import Env


class Agent(NamedTuple):
    init: Callable[[jax.Array], Any]  # key -> params
    initial_carry: Callable[[int], Any]  # num_envs -> carry (leading axis num_envs)
    apply: Callable[..., tuple[Any, Any, jax.Array | None]]  # (params, carry, obs, reset)
    has_critic: bool
    # Optional, recurrent agents only: ``replay(params, carry, obs [T, N, ...], reset [T, N])``,
    # what :func:`unroll` returns (scanning ``apply`` over time), computed some faster way (the
    # transformer: one causal pass over the buffer). A wrapper that changes ``apply`` drops it.
    replay: Callable[..., tuple[Any, Any, jax.Array | None]] | None = None


# What the ``agent`` arguments of jaxpg accept (see :func:`as_agent`); ``None`` besides means the
# config's own network.
AgentLike = Agent | nn.Module | tuple[Callable[..., Any], Callable[..., Any]]


def _empty_carry(num_envs: int) -> tuple:
    del num_envs
    return ()


def is_recurrent(agent: Agent) -> bool:
    """Whether ``agent`` has a carry (decided from the shapes alone, at trace time)."""
    return bool(jax.tree.leaves(jax.eval_shape(lambda: agent.initial_carry(1))))


def unroll(
    agent: Agent, params: Any, carry: Any, obs: jax.Array, reset: jax.Array | None
) -> tuple[Any, Any, jax.Array | None]:
    """``apply`` over leading axes ``[T, *B]`` (time first); returns ``(carry, dist_params,
    value)`` with the same leading axes on the outputs. ``reset=None`` means single steps
    ``[B, *obs_shape]`` of a feed-forward agent.

    A feed-forward agent is applied once to all ``T * prod(B)`` steps, flattened to one batch
    axis. A recurrent agent is scanned over ``T`` from ``carry`` (leading axes ``B``), resetting
    where ``reset`` says; ``B`` must then be a single axis.
    """
    if reset is None:  # single steps of a feed-forward agent: one batch axis, no resets read
        reset = jnp.zeros(jax.tree.leaves(obs)[0].shape[:1], jnp.bool_)
    lead = reset.shape
    if not is_recurrent(agent):
        if len(lead) == 1:
            return agent.apply(params, carry, obs, reset)
        flat_obs = jax.tree.map(lambda x: x.reshape((math.prod(lead),) + x.shape[len(lead) :]), obs)
        carry, dist_params, value = agent.apply(params, carry, flat_obs, reset.reshape(-1))
        unflat = lambda x: x.reshape(lead + x.shape[1:])
        # Batched distribution parameters are [B, A] (logits, a mean, a per-state log std); a
        # state-independent log std [D] is not batched.
        dist_params = jax.tree.map(lambda x: unflat(x) if x.ndim >= 2 else x, dist_params)
        return carry, dist_params, None if value is None else unflat(value)
    if len(lead) != 2:
        raise ValueError(
            f"unroll: a recurrent agent replays time-major sequences [T, N]; got reset of shape "
            f"{lead} (single steps cannot be replayed: use sequence minibatches)"
        )
    if agent.replay is not None:
        return agent.replay(params, carry, obs, reset)
    return scan_apply(agent.apply, params, carry, obs, reset)


def scan_apply(
    apply: Callable[..., tuple[Any, Any, jax.Array | None]],
    params: Any,
    carry: Any,
    obs: Any,
    reset: jax.Array,
) -> tuple[Any, Any, jax.Array | None]:
    """A recurrent agent's ``apply`` scanned over time-major ``[T, N]`` steps from ``carry``:
    ``(carry, dist_params [T, N, ...], value [T, N])``."""

    def step(c, inputs):
        c, dist_params, value = apply(params, c, *inputs)
        return c, (dist_params, value)

    carry, (dist_params, value) = jax.lax.scan(step, carry, (obs, reset))
    # A state-independent log std [D] comes out of the scan as T copies [T, D]: keep one, as
    # the feed-forward path does (batched leaves are [T, N, ...]).
    dist_params = jax.tree.map(lambda x: x if x.ndim >= 3 else x[0], dist_params)
    return carry, dist_params, value


def parameters_read(agent: Agent, env: Any) -> tuple[set[str], set[str]]:
    """``(policy, value)``: the paths (``jax.tree_util.keystr``) of the parameter leaves that
    ``agent``'s distribution parameters and its value read, from the program's data flow: one
    step on ``env``'s dummy observation, traced, not run. Nested programs (``jit``, custom
    derivatives, ``remat``) are followed; any other nested call (a ``scan``, a ``cond``) counts
    as reading all its inputs, so a leaf can be over-counted, never missed. A recurrent agent's
    carry is followed across steps: what the policy or the value reads from the carry counts
    as reading every parameter that ever flows into that part of the carry. For an algorithm
    that moves the actor and the critic apart (TRPO), the two must not meet."""
    params = jax.eval_shape(agent.init, jax.random.key(0))
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = [jax.tree_util.keystr(p) for p, _ in leaves_with_path]
    leaves = [leaf for _, leaf in leaves_with_path]
    carry_leaves, carry_def = jax.tree.flatten(agent.initial_carry(1))
    num_params, num_carry = len(leaves), len(carry_leaves)
    obs = env.dummy_obs((1,))
    reset = jnp.zeros((1,), jnp.bool_)

    def outputs(*inputs):
        params = treedef.unflatten(inputs[:num_params])
        carry = carry_def.unflatten(inputs[num_params:])
        carry, dist_params, value = agent.apply(params, carry, obs, reset)
        return jax.tree.leaves(carry), dist_params, value

    args = [*leaves, *carry_leaves]
    closed = jax.make_jaxpr(outputs)(*args)
    read = _reads(closed.jaxpr, [frozenset([i]) for i in range(len(args))])
    _, dist_shapes, _ = jax.eval_shape(outputs, *args)
    num_dist = len(jax.tree.leaves(dist_shapes))  # outvars: new carry, dist_params, value

    def through_carry(indices: frozenset[int], carried: list[frozenset[int]]) -> frozenset[int]:
        """Parameter indices read directly, or through a carry leaf (as ``carried`` says)."""
        own = frozenset(i for i in indices if i < num_params)
        return own.union(*(carried[i - num_params] for i in indices if i >= num_params))

    carried = [frozenset()] * num_carry  # the parameters that flow into each carry leaf
    while True:  # a fixed point: each pass follows the carry one step further
        new = [through_carry(read[j], carried) for j in range(num_carry)]
        if new == carried:
            break
        carried = new
    policy = through_carry(frozenset().union(*read[num_carry : num_carry + num_dist]), carried)
    value = through_carry(frozenset().union(*read[num_carry + num_dist :]), carried)
    return {paths[i] for i in policy}, {paths[i] for i in value}


def _reads(jaxpr: Any, inputs: list[frozenset[int]]) -> list[frozenset[int]]:
    """For each output of ``jaxpr``, the input indices it reads (see :func:`parameters_read`),
    given what each of its inputs reads."""
    reads = dict(zip(jaxpr.invars, inputs, strict=True))

    def read_by(var) -> frozenset[int]:
        return frozenset() if hasattr(var, "val") else reads.get(var, frozenset())  # a Literal

    for eqn in jaxpr.eqns:
        ins = [read_by(v) for v in eqn.invars]
        inner = next(
            (
                getattr(p, "jaxpr", p)
                for p in eqn.params.values()
                if hasattr(getattr(p, "jaxpr", p), "eqns")
                and len(getattr(p, "jaxpr", p).invars) == len(eqn.invars)
                and len(getattr(p, "jaxpr", p).outvars) == len(eqn.outvars)
            ),
            None,
        )
        if inner is not None and eqn.primitive.name in _FOLLOWED:
            outs = _reads(inner, ins)
        else:
            outs = [frozenset().union(*ins)] * len(eqn.outvars)
        for v, r in zip(eqn.outvars, outs, strict=True):
            reads[v] = r
    return [read_by(v) for v in jaxpr.outvars]


# nested programs whose inputs and outputs are the equation's own, in order
_FOLLOWED = (
    "pjit",
    "jit",
    "closed_call",
    "core_call",
    "custom_jvp_call",
    "custom_vjp_call",
    "remat",
    "remat2",
    "checkpoint",
)


# -- the config's MLP actor-critic -------------------------------------------------------------


def mlp_agent(
    obs_shape: tuple[int, ...],
    action_dim: int,
    discrete: bool,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "tanh",
    shared: bool = False,
    critic: bool = True,
    conv_channels: Sequence[int] = (),
) -> Agent:
    """The feed-forward :class:`jaxpg.networks.ActorCritic` as an :class:`Agent`: observations
    are cast to float32 and flattened after the batch axis (or, with ``conv_channels``, read as
    images ``[H, W, C]`` by a convolutional torso)."""
    if conv_channels and len(obs_shape) != 3:
        raise ValueError(
            f"conv_channels={tuple(conv_channels)!r} needs image observations [H, W, C]; "
            f"this environment's have shape {tuple(obs_shape)}"
        )
    module = ActorCritic(
        action_dim=action_dim,
        discrete=discrete,
        hidden_sizes=tuple(hidden_sizes),
        activation=activation,
        shared=shared,
        critic=critic,
        obs_rank=max(len(obs_shape), 1),
        conv_channels=tuple(conv_channels),
    )
    scalar_obs = len(obs_shape) == 0

    def prepare(obs):
        obs = jnp.asarray(obs, jnp.float32)
        return obs[..., None] if scalar_obs else obs

    def init(key):
        return module.init(key, prepare(jnp.zeros((1, *obs_shape), jnp.float32)))

    def apply(params, carry, obs, reset):
        del reset
        dist_params, value = module.apply(params, prepare(obs))
        return carry, dist_params, value

    return Agent(init, _empty_carry, apply, critic)


def recurrent_agent(
    obs_shape: tuple[int, ...],
    action_dim: int,
    discrete: bool,
    cell: str = "gru",
    recurrent_size: int = 128,
    hidden_sizes: Sequence[int] = (64,),
    activation: str = "tanh",
    critic: bool = True,
    critic_apart: bool = False,
) -> Agent:
    """:class:`jaxpg.networks.RecurrentActorCritic` (a GRU or LSTM core between a dense encoder
    and the heads) as an :class:`Agent` whose carry is the cell's state ``[num_envs, size]``
    (with ``critic_apart``, the critic's own encoder and cell: a pair of them)."""
    module = RecurrentActorCritic(
        action_dim=action_dim,
        discrete=discrete,
        hidden_sizes=tuple(hidden_sizes),
        activation=activation,
        cell=cell,
        recurrent_size=recurrent_size,
        critic=critic,
        obs_rank=len(obs_shape),
        critic_apart=critic_apart,
    )

    def init(key):
        obs = jnp.zeros((1, *obs_shape), jnp.float32)
        return module.init(key, module.initial_carry(1), obs, jnp.ones((1,), jnp.bool_))

    def replay(params, carry, obs, reset):
        # the encoder and the heads read all [T, N] steps at once, only the cell is scanned:
        # a GRU PPO minibatch's gradient (128 steps x 8 sequences) in 0.8x the time
        return module.apply(params, carry, obs, reset, over_time=True)

    return Agent(init, module.initial_carry, module.apply, critic, replay)


@jax.custom_batching.custom_vmap
def any_in_batch(x: jax.Array) -> jax.Array:
    """``jnp.any(x)``, and under ``vmap`` the ``any`` over the mapped axes too, unbatched: a
    ``lax.cond`` on it stays a branch under ``vmap`` (seeds) instead of becoming a select that
    runs both sides. Only for a choice between two ways to the same numbers, where one
    batch element's need may decide for all."""
    return jnp.any(x)


@any_in_batch.def_vmap
def _any_in_batch_vmap(axis_size, in_batched, x):
    del axis_size, in_batched
    return jnp.any(x), False


def transformer_agent(
    vocab_size: int,
    length: int,
    embed_dim: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    critic: bool = True,
    positions: str = "learned",
) -> Agent:
    """:class:`jaxpg.networks.CausalTransformer` over a sequence task's buffer ``int32[length +
    1]`` (:mod:`jaxpg.sequence`) as a recurrent :class:`Agent` whose carry is the key/value
    cache (``num_layers`` pairs ``[B, length, num_heads, embed_dim / num_heads]``); actions are
    tokens.

    * ``apply`` (generation): a step where any sequence starts (``reset``) runs the whole
      buffer in one pass, which fills every sequence's cache (the buffer holds all of its
      context); any other step decodes the one token written since, against the cache: ``O(L)``
      per token. A batch whose sequences start at different steps pays a whole pass at each of
      those steps (still right: the pass gives every sequence's cache).
    * ``replay`` (training, ``[T, N]``): where no sequence starts after the window's first step,
      one causal pass over each sequence's last buffer, read at every step's place (the pass is
      causal, so a later buffer gives an earlier step's output); otherwise one pass over each
      step's buffer (what the feed-forward transformer costs: ``O(L^2)`` per token).

    Under ``vmap`` (seeds) each choice is made once for the whole batch (:func:`any_in_batch`),
    so it stays a branch: both ways are right for every sequence.

    Both equal the feed-forward pass over each step's buffer up to rounding (tested)."""
    module = CausalTransformer(
        vocab_size=vocab_size,
        action_dim=vocab_size,
        embed_dim=embed_dim,
        num_layers=num_layers,
        num_heads=num_heads,
        critic=critic,
        positions=positions,
    )
    encoder = CausalEncoder(vocab_size, embed_dim, num_layers, num_heads, positions)

    def init(key):
        return module.init(key, jnp.zeros((1, length + 1), jnp.int32))

    def initial_carry(num_envs):
        return encoder.empty_cache(num_envs, length)

    def apply(params, cache, obs, reset):
        def whole(cache):
            logits, value, cache = module.apply(params, obs)
            return cache, logits, value

        def decode(cache):
            logits, value, cache = module.apply(params, obs, cache)
            return cache, logits, value

        return jax.lax.cond(any_in_batch(reset), whole, decode, cache)

    def replay(params, cache, obs, reset):
        def one_pass(cache):
            read_at = jnp.swapaxes(obs[..., -1] - 1, 0, 1)  # [N, T]: each step's last token
            logits, value, cache = module.apply(params, obs[-1], None, read_at)
            swap = lambda x: None if x is None else jnp.swapaxes(x, 0, 1)
            return cache, swap(logits), swap(value)

        def stepwise(cache):  # every step's buffer on its own: right across episodes
            logits, value, _ = module.apply(params, obs)
            _, _, cache = module.apply(params, obs[-1])
            return cache, logits, value

        return jax.lax.cond(any_in_batch(reset[1:]), stepwise, one_pass, cache)

    return Agent(init, initial_carry, apply, critic, replay)


def flatten_obs(obs: Any, obs_spec: Any) -> jax.Array:
    """A pytree observation ``[*batch, ...]`` as one float32 array ``[*batch, n]``: every leaf
    (as ``obs_spec``'s, one observation's) cast to float32, flattened and concatenated in
    ``jax.tree.leaves`` order. An array observation is only cast."""
    leaves, specs = jax.tree.leaves(obs), jax.tree.leaves(obs_spec)
    batch = leaves[0].shape[: leaves[0].ndim - len(specs[0].shape)]
    return jnp.concatenate(
        [jnp.asarray(x, jnp.float32).reshape(batch + (-1,)) for x in leaves], axis=-1
    )


def _reading_flat(agent: Agent, obs_spec: Any) -> Agent:
    """``agent`` (built for flat observations ``[B, n]``) fed pytree observations flattened."""

    def apply(params, carry, obs, reset):
        return agent.apply(params, carry, flatten_obs(obs, obs_spec), reset)

    return agent._replace(apply=apply, replay=None)


# Where an action is illegal its logit is this: exp() of it is exactly 0 in float32 and the
# log-probability stays finite (an infinite one makes 0 * log 0 a NaN in the entropy).
ILLEGAL_LOGIT = -1e9


def masked(agent: Agent, action_mask: Callable[[Any], jax.Array]) -> Agent:
    """``agent`` whose logits are :data:`ILLEGAL_LOGIT` wherever ``action_mask(obs)`` is False:
    it never samples an illegal action, and its log-probabilities, entropy and KL are those of
    the distribution restricted to the legal actions."""
    if getattr(agent.apply, "action_mask", None) is action_mask:
        return agent

    def apply(params, carry, obs, reset):
        carry, logits, value = agent.apply(params, carry, obs, reset)
        logits = jnp.where(action_mask(obs), logits, jnp.asarray(ILLEGAL_LOGIT, logits.dtype))
        return carry, logits, value

    apply.action_mask = action_mask
    return agent._replace(apply=apply, replay=None)


def make_agent(config: Config) -> Agent:
    """The agent a config describes: the actor-critic of its ``network`` (``"mlp"``; ``"cnn"``:
    ``conv_channels`` convolutions first; ``"gru"``/``"lstm"``: a recurrent core of
    ``recurrent_size`` units), ``hidden_sizes``, ``activation`` and ``shared_network``, with a
    critic when ``config.has_critic``; or a policy of your own named ``"module:attr"``
    (:func:`agent_from_path`)."""
    env = config.env_spec
    if ":" in config.network:
        return agent_from_path(config.network, config, config.network_kwargs)
    agent = _builtin_agent(config, env)
    return _reading_flat(agent, env.obs_spec) if env.pytree_obs else agent


def _builtin_agent(config: Config, env: Env) -> Agent:
    if config.network == "transformer":
        task = env.env.task
        return transformer_agent(
            task.vocab_size,
            task.length,
            config.embed_dim,
            config.num_layers,
            config.num_heads,
            config.has_critic,
            config.positions,
        )
    if config.network in ("gru", "lstm"):
        return recurrent_agent(
            env.obs_shape,
            env.action_dim,
            env.discrete,
            cell=config.network,
            recurrent_size=config.recurrent_size,
            hidden_sizes=config.hidden_sizes,
            activation=config.activation,
            critic=config.has_critic,
            critic_apart=config.actor_critic_apart,
        )
    return mlp_agent(
        env.obs_shape,
        env.action_dim,
        env.discrete,
        hidden_sizes=config.hidden_sizes,
        activation=config.activation,
        shared=config.shared_network,
        critic=config.has_critic,
        conv_channels=config.conv_channels if config.network == "cnn" else (),
    )


# -- a user's own policy ----------------------------------------------------------------------


def agent_from_functions(
    init: Callable[[jax.Array], Any],
    apply: Callable[..., tuple[Any, Any, Any]],
    initial_carry: Callable[[int], Any] | None = None,
    *,
    env: Env,
) -> Agent:
    """An :class:`Agent` from a plain ``init(key) -> params`` and ``apply(params, carry, obs,
    reset) -> (carry, dist_params, value)``; ``initial_carry`` defaults to no carry.

    ``env`` (a :class:`jaxpg.Env`) gives the shapes to check the functions against: whether
    there is a critic is read off ``apply``'s output, and a ``dist_params`` that does not fit
    the action space is refused here, with its shapes, not deep inside a trace.
    """
    initial_carry = _empty_carry if initial_carry is None else initial_carry
    has_critic = _check_agent(init, apply, initial_carry, env)
    return Agent(init, initial_carry, apply, has_critic)


def agent_from_module(module: nn.Module, *, env: Env) -> Agent:
    """An :class:`Agent` from a flax linen module called as ``module(carry, obs, reset) ->
    (carry, dist_params, value)``. Its initial carry is ``module.initial_carry(num_envs)`` when
    the module defines that method, else no carry (a feed-forward policy)."""
    initial_carry = getattr(module, "initial_carry", None)
    initial_carry = _empty_carry if initial_carry is None else initial_carry
    dummy = env.dummy_obs((1,))
    reset = jnp.ones((1,), jnp.bool_)

    def init(key):
        return module.init(key, initial_carry(1), dummy, reset)

    def apply(params, carry, obs, reset):
        return module.apply(params, carry, obs, reset)

    return agent_from_functions(init, apply, initial_carry, env=env)


def agent_from_path(path: str, config: Config, kwargs: Mapping[str, Any] = FrozenDict()) -> Agent:
    """The policy at import path ``"module:attr"``, as an :class:`Agent` for ``config``.

    ``attr`` is a flax linen module class (built as ``attr(**kwargs)``), a module instance
    (``kwargs`` replace its fields), or a function ``attr(config, **kwargs)`` returning anything
    :func:`as_agent` takes (an :class:`Agent`, a module, an ``(init, apply)`` pair).
    """
    obj = import_path(path)
    kwargs = dict(kwargs)
    if isinstance(obj, type) and issubclass(obj, nn.Module):
        built = obj(**kwargs)
    elif isinstance(obj, nn.Module):
        built = obj.clone(**kwargs) if kwargs else obj
    elif callable(obj):
        built = obj(config, **kwargs)
    else:
        raise ValueError(
            f"network={path!r} is invalid: a flax module class or instance, or a function "
            f"(config, **network_kwargs) -> agent; got a {type(obj).__name__}"
        )
    if built is None:
        raise ValueError(f"network={path!r}: the function returned None, not an agent")
    return as_agent(built, config)


def agent_spec(agent: Any) -> dict[str, Any] | None:
    """``{"network": "module:attr", "network_kwargs": {...}}``, the config fields that name
    ``agent`` so a run directory can rebuild it (:func:`agent_from_path`), or ``None`` when it
    has no import path: a module-level flax module class or function, or an instance of a
    module-level module class whose fields are plain JSON values."""
    if isinstance(agent, nn.Module):
        path = path_of(type(agent))
        if path is None:
            return None
        fields = {
            f.name: getattr(agent, f.name)
            for f in dataclasses.fields(agent)
            if f.name not in ("parent", "name") and f.init
        }
        try:
            json.dumps(fields)
        except (TypeError, ValueError):
            return None
        return {"network": path, "network_kwargs": fields}
    if isinstance(agent, type) or callable(agent) and not isinstance(agent, (Agent, tuple)):
        path = path_of(agent)
        return None if path is None else {"network": path, "network_kwargs": {}}
    return None


def as_agent(agent: AgentLike | None, config: Config) -> Agent:
    """``agent`` as an :class:`Agent`: ``None`` (the config's MLP), an :class:`Agent`, a flax
    linen module, or an ``(init, apply)`` pair. Where the environment has a legal-action mask,
    the agent's logits are :func:`masked` by it, whichever kind of agent it is."""
    env = config.env_spec
    built = _as_agent(agent, config)
    return built if env.action_mask is None else masked(built, env.action_mask)


def _as_agent(agent: AgentLike | None, config: Config) -> Agent:
    if agent is None:
        return make_agent(config)
    if isinstance(agent, Agent):
        return agent
    if isinstance(agent, nn.Module):
        return agent_from_module(agent, env=config.env_spec)
    if isinstance(agent, tuple) and len(agent) == 2 and all(callable(f) for f in agent):
        return agent_from_functions(*agent, env=config.env_spec)
    raise ValueError(
        f"agent={agent!r} is invalid: expected a jaxpg.agents.Agent, a flax linen module "
        "called as module(carry, obs, reset), or an (init, apply) pair"
    )


def _check_agent(init, apply, initial_carry, env) -> bool:
    """Traces ``init`` and one ``apply`` on dummy inputs; returns whether there is a critic."""
    dummy = jax.tree.map(lambda s: jax.ShapeDtypeStruct((2, *s.shape), s.dtype), env.obs_spec)
    reset = jax.ShapeDtypeStruct((2,), jnp.bool_)

    def run(key, obs, reset):
        params = init(key)
        return apply(params, initial_carry(2), obs, reset)

    try:
        carry, dist_params, value = jax.eval_shape(run, jax.random.key(0), dummy, reset)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"agent: calling init and apply(params, carry, obs [2, *{env.obs_spec}], reset [2]) "
            f"failed: {e}"
        ) from e
    expected_carry = jax.eval_shape(lambda: initial_carry(2))
    if jax.tree.structure(carry) != jax.tree.structure(expected_carry) or any(
        a.shape != b.shape for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(expected_carry))
    ):
        raise ValueError(
            "agent: apply must return a carry of the initial carry's structure and shapes; "
            f"got {carry}, expected {expected_carry}"
        )
    if env.discrete:
        ok = hasattr(dist_params, "shape") and dist_params.shape == (2, env.action_dim)
        wanted = f"logits [B, {env.action_dim}]"
    else:
        ok = (
            isinstance(dist_params, tuple)
            and len(dist_params) == 2
            and dist_params[0].shape == (2, env.action_dim)
            and dist_params[1].shape in ((env.action_dim,), (2, env.action_dim))
        )
        wanted = (
            f"(mean [B, {env.action_dim}], log_std [{env.action_dim}] or [B, {env.action_dim}])"
        )
    if not ok:
        got = jax.tree.map(lambda x: x.shape, dist_params)
        raise ValueError(f"agent: dist_params for {env.name} must be {wanted}; got shapes {got}")
    if value is not None and value.shape != (2,):
        raise ValueError(f"agent: value must be [B] (or None: no critic); got shape {value.shape}")
    return value is not None
