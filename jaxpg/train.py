"""The trainer: one jitted program for the whole of training, shared by every algorithm.

``make_train(config, algorithm=None, agent=None)`` returns a pure ``train(key, hparams=None) ->
TrainResult``. Inside it a ``lax.scan`` over updates runs, for each update:

1. :func:`collect`: ``algorithm.start`` (the environments go on, or reset), then
   :func:`jaxpg.rollout.rollout` (a scan over ``num_steps``; one forward pass of the agent per
   step, and ``V(final_obs)`` for the bootstrap);
2. :func:`learn`: ``algorithm.targets`` (the advantages and the critic's targets), then
   ``algorithm.update`` (how the parameters move: epochs of minibatches, one full-batch step,
   a trust-region step, ...), and the per-update metrics, reduced inside the jit.

:func:`make_collect` and :func:`make_learn` give the two halves alone (the benchmarks time them
apart).

The trainer never looks at which algorithm it runs: the :class:`jaxpg.Algorithm` owns everything
algorithm-specific, and its state is one opaque pytree in :class:`TrainState`. The agent
(:mod:`jaxpg.agents`) is the config's MLP unless one is given. The hyperparameters in
:class:`HParams` are part of the state and traced, so ``jax.vmap(train)`` over keys and hparams is
one compiled program. Pieces for a host loop (progress bars, checkpoints): :func:`make_init`,
:func:`make_train_chunk`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from jaxpg import losses
from jaxpg.agents import Agent, AgentLike, as_agent
from jaxpg.algorithms import Algorithm
from jaxpg.config import Config, HParams
from jaxpg.distributions import action_dist
from jaxpg.policy import PolicyParams
from jaxpg.registry import make_algorithm
from jaxpg.rollout import (
    EnvCarry,
    RolloutOptions,
    Transition,
    env_carry_init,
    episode_stats,
    rollout,
)
from jaxpg.updates import Batch

# What the ``algorithm`` arguments accept: an Algorithm, or a builder ``(config, agent) ->
# Algorithm`` (``None`` besides means the config's registered algorithm).
AlgorithmLike = Algorithm | Callable[[Config, Agent], Algorithm]


class TrainState(struct.PyTreeNode):
    """Everything training carries from one update to the next."""

    params: Any  # agent parameters (the optimiser's target)
    opt_state: Any
    env: EnvCarry  # environment states, last observations, the agent's carry, statistics
    algo_state: Any  # the algorithm's own state (a baseline, reference parameters, ...)
    hparams: HParams
    key: jax.Array
    update_step: jax.Array  # int32, updates done so far
    nonfinite_updates: jax.Array  # int32, updates whose loss or gradient was not finite


class TrainResult(NamedTuple):
    params: PolicyParams  # what ``make_policy(config)`` acts with
    metrics: dict[str, jax.Array]  # each [num_updates]
    state: TrainState  # to continue training, or to checkpoint


# ``update(state) -> (state, metrics)``: one update (:func:`make_update`), or a chunk of them.
UpdateStep = Callable[[TrainState], tuple[TrainState, dict[str, jax.Array]]]


def _coerce_hparams(config: Config, hparams: HParams | None) -> HParams:
    if hparams is None:
        return config.hparams()
    if not isinstance(hparams, HParams):
        raise ValueError(
            f"hparams: expected jaxpg.HParams (see config.hparams()), got {type(hparams).__name__}"
        )
    if hparams._fields != config.traced_fields():
        raise ValueError(
            f"hparams: {list(hparams._fields)} are not {type(config).__name__}'s traced "
            f"hyperparameters {list(config.traced_fields())} (build them with config.hparams())"
        )
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), hparams)


def rollout_options(config: Config) -> RolloutOptions:
    """The rollout's static switches from ``config``."""
    return RolloutOptions(
        config.normalize_obs,
        config.normalize_rewards,
        config.clip_actions,
        float(config.reward_scale),
    )


def _parts(config: Config, algorithm, agent) -> tuple[Agent, Algorithm]:
    """The agent and the algorithm for ``config``: the given ones, or the config's own.
    ``algorithm`` may be an :class:`Algorithm` or a builder ``(config, agent) -> Algorithm``."""
    agent = as_agent(agent, config)
    if algorithm is None:
        algorithm = make_algorithm(config, agent)
    elif not isinstance(algorithm, Algorithm):
        if not callable(algorithm):
            raise ValueError(
                f"algorithm={algorithm!r} is invalid: expected a jaxpg.Algorithm or a builder "
                "(config, agent) -> Algorithm"
            )
        algorithm = algorithm(config, agent)
        if not isinstance(algorithm, Algorithm):
            raise ValueError(
                f"algorithm: the builder returned a {type(algorithm).__name__}, not a jaxpg.Algorithm"
            )
    return agent, algorithm


def init_state(
    config: Config,
    key: jax.Array,
    hparams: HParams | None = None,
    *,
    algorithm: AlgorithmLike | None = None,
    agent: AgentLike | None = None,
) -> TrainState:
    """A fresh :class:`TrainState` for ``config``; pure, jittable and vmappable over keys."""
    agent, algorithm = _parts(config, algorithm, agent)
    hp = _coerce_hparams(config, hparams)
    draws = functools.partial(_initial_draws, config=config, agent=agent)
    params, env, key = mapped_when_few(draws)(key)
    opt_state, algo_state = algorithm.init(params, hp)
    return TrainState(
        params=params,
        opt_state=opt_state,
        env=env,
        algo_state=algo_state,
        hparams=hp,
        key=key,
        update_step=jnp.zeros((), jnp.int32),
        nonfinite_updates=jnp.zeros((), jnp.int32),
    )


def _initial_draws(key: jax.Array, *, config: Config, agent: Agent) -> tuple:
    """What the initial state draws from its key: the agent's parameters, the environments'
    first states, and the state's next key."""
    net_key, env_key, key = jax.random.split(key, 3)
    env = env_carry_init(
        env_key, config.env_spec, config.num_envs, agent_carry=agent.initial_carry(config.num_envs)
    )
    return agent.init(net_key), env, key


# Up to this many vmapped seeds, :func:`init_state`'s random draws run one seed after another
# (``lax.map``) instead of batched.
MAP_INITS_UP_TO = 32


def mapped_when_few(fn: Callable[[jax.Array], Any]) -> Callable[[jax.Array], Any]:
    """``fn(key)`` whose ``jax.vmap`` over at most :data:`MAP_INITS_UP_TO` keys is a ``lax.map``
    of the unbatched ``fn`` (over more, or a symbolic size, the batched ``fn``); the values are
    the same. A nested vmap applies it to the innermost axis.

    For the random draws of an initialisation, which run once: their threefry loops then
    compile as the single run's kernels instead of batched ones, which on a CPU take about
    twice as long to compile (PPO CartPole with 8 vmapped seeds: ``benchmarks/compile_time.py``).
    Many keys keep the batched program: a loop of thousands of small initialisations would
    cost an accelerator thousands of kernel launches each.

    It is a ``jax.custom_batching.custom_vmap``, whose limits apply: ``fn`` must not close
    over a value batched by the same ``vmap`` (pass such a value as an argument), and it has no
    reverse-mode derivative (:func:`init_state` keeps the hyperparameters out of it, so a
    gradient with respect to them goes through)."""
    wrapped = jax.custom_batching.custom_vmap(fn)

    @wrapped.def_vmap
    def rule(axis_size, in_batched, key):  # called only when the key is batched
        few = isinstance(axis_size, int) and axis_size <= MAP_INITS_UP_TO
        out = jax.lax.map(fn, key) if few else jax.vmap(fn)(key)
        return out, jax.tree.map(lambda _: True, out)

    return wrapped


def env_steps(update_step: jax.Array, batch_size: int) -> jax.Array:
    """Env steps after ``update_step`` updates, as float32: exact up to 2^24 steps, then to
    float32 rounding, and never wrapping (an int32 count wraps past 2^31 steps, which a GPU
    reaches in minutes)."""
    return update_step.astype(jnp.float32) * jnp.float32(batch_size)


class Collected(NamedTuple):
    """What :func:`collect` gives :func:`learn`: one update's batch of experience."""

    env: EnvCarry  # where the environments (and the agent's carry) are after the rollout
    transitions: Transition  # time-major [num_steps, num_envs]
    start_carry: Any  # the agent's carry at the rollout's start (a recurrent replay starts here)
    key: jax.Array  # the train state's next key
    update_key: jax.Array  # the key of the algorithm's update (minibatch shuffles)


def collect(state: TrainState, *, config: Config, agent: Agent, algorithm: Algorithm) -> Collected:
    """The first half of an update: ``algorithm.start``, then one rollout with the current
    parameters (:func:`jaxpg.rollout.rollout`)."""
    env = config.env_spec
    key, reset_key, rollout_key, update_key = jax.random.split(state.key, 4)
    carry = algorithm.start(reset_key, state.env)
    start_carry = carry.agent_carry
    carry, transitions = rollout(
        rollout_key,
        state.params,
        carry,
        state.hparams.gamma,
        env=env,
        agent=agent,
        dist=action_dist(env.discrete),
        num_steps=config.num_steps,
        options=rollout_options(config),
    )
    return Collected(carry, transitions, start_carry, key, update_key)


def learn(
    state: TrainState,
    collected: Collected,
    *,
    config: Config,
    agent: Agent,
    algorithm: Algorithm,
    constrain_minibatches: Callable[[Any, int], Any] | None = None,
) -> tuple[TrainState, dict]:
    """The second half of an update: ``algorithm.targets`` and ``algorithm.update`` on the
    collected batch, then the per-update metrics (reduced inside the jit)."""
    hp = state.hparams
    transitions = collected.transitions
    targets, algo_state = algorithm.targets(transitions, hp, state.algo_state)
    extra = {} if constrain_minibatches is None else {"constrain": constrain_minibatches}
    out = algorithm.update(
        state.params,
        state.opt_state,
        algo_state,
        Batch(transitions, targets, collected.start_carry),
        hp,
        state.update_step,
        collected.update_key,
        **extra,
    )
    update_step = state.update_step + 1
    metrics = {
        **episode_stats(transitions, first_only=algorithm.first_episodes),
        **out.metrics,
        "explained_variance": losses.explained_variance(
            transitions.value, targets.returns, targets.value_mask
        )
        if agent.has_critic
        else jnp.asarray(jnp.nan, jnp.float32),  # the column is there for every algorithm
        "env_steps": env_steps(update_step, config.batch_size),
        "nonfinite": jnp.logical_not(out.finite),
    }
    new_state = state.replace(
        params=out.params,
        opt_state=out.opt_state,
        env=collected.env,
        algo_state=out.algo_state,
        key=collected.key,
        update_step=update_step,
        nonfinite_updates=state.nonfinite_updates + jnp.logical_not(out.finite).astype(jnp.int32),
    )
    return new_state, metrics


def update(
    state: TrainState,
    *,
    config: Config,
    agent: Agent,
    algorithm: Algorithm,
    constrain_minibatches: Callable[[Any, int], Any] | None = None,
) -> tuple[TrainState, dict]:
    """One update: :func:`collect` a batch, then :func:`learn` from it."""
    parts = {"config": config, "agent": agent, "algorithm": algorithm}
    collected = collect(state, **parts)
    return learn(state, collected, constrain_minibatches=constrain_minibatches, **parts)


def make_update(
    config: Config,
    constrain_minibatches: Callable[[Any, int], Any] | None = None,
    *,
    algorithm: AlgorithmLike | None = None,
    agent: AgentLike | None = None,
) -> UpdateStep:
    """``update(state) -> (state, metrics)``: one update of ``config``'s algorithm.

    ``constrain_minibatches`` (a hook for :mod:`jaxpg.distributed`) is passed to the
    algorithm's ``update`` as ``constrain`` (see :func:`jaxpg.updates.optimize`).
    """
    agent, algorithm = _parts(config, algorithm, agent)
    return functools.partial(
        update,
        config=config,
        agent=agent,
        algorithm=algorithm,
        constrain_minibatches=constrain_minibatches,
    )


def make_collect(
    config: Config, *, algorithm: AlgorithmLike | None = None, agent: AgentLike | None = None
) -> Callable[[TrainState], Collected]:
    """``collect(state) -> Collected``: the first half of ``config``'s update (:func:`collect`),
    for a program that times or inspects the rollout alone."""
    agent, algorithm = _parts(config, algorithm, agent)
    return functools.partial(collect, config=config, agent=agent, algorithm=algorithm)


def make_learn(
    config: Config,
    constrain_minibatches: Callable[[Any, int], Any] | None = None,
    *,
    algorithm: AlgorithmLike | None = None,
    agent: AgentLike | None = None,
) -> Callable[[TrainState, Collected], tuple[TrainState, dict]]:
    """``learn(state, collected) -> (state, metrics)``: the second half of ``config``'s update
    (:func:`learn`); ``learn(state, make_collect(config)(state))`` is one update."""
    agent, algorithm = _parts(config, algorithm, agent)
    return functools.partial(
        learn,
        config=config,
        agent=agent,
        algorithm=algorithm,
        constrain_minibatches=constrain_minibatches,
    )


def run_updates(
    state: TrainState, num_updates: int, *, update_fn: UpdateStep
) -> tuple[TrainState, dict]:
    """``num_updates`` updates in one ``lax.scan``; metrics come back stacked ``[num_updates]``."""
    return jax.lax.scan(lambda s, _: update_fn(s), state, None, length=num_updates)


def policy_params(config: Config, state: TrainState) -> PolicyParams:
    return PolicyParams(
        network=state.params,
        obs_stats=state.env.obs_stats if config.normalize_obs else None,
    )


def make_train(
    config: Config, *, algorithm: AlgorithmLike | None = None, agent: AgentLike | None = None
) -> Callable[..., TrainResult]:
    """Returns the pure ``train(key, hparams=None) -> TrainResult`` for ``config``.

    ``jax.jit(train)(key)`` trains for ``config.num_updates`` updates in one program;
    ``jax.jit(jax.vmap(train))(keys)`` trains one agent per key.

    Args:
      config: a config (``PPOConfig``, ``A2CConfig``, ``ReinforceConfig``, or a registered one).
      algorithm: ``None`` (the config's registered algorithm), a :class:`jaxpg.Algorithm`, or a
        builder ``(config, agent) -> Algorithm``.
      agent: ``None`` (the config's MLP), a :class:`jaxpg.agents.Agent`, a flax linen module
        called as ``module(carry, obs, reset) -> (carry, dist_params, value)``, or an
        ``(init, apply)`` pair (see :mod:`jaxpg.agents`).
    """
    agent, algorithm = _parts(config, algorithm, agent)
    update_fn = make_update(config, algorithm=algorithm, agent=agent)

    def train(key: jax.Array, hparams: HParams | None = None) -> TrainResult:
        state = init_state(config, key, hparams, algorithm=algorithm, agent=agent)
        state, metrics = run_updates(state, config.num_updates, update_fn=update_fn)
        return TrainResult(policy_params(config, state), metrics, state)

    return train


def make_init(
    config: Config, *, algorithm: AlgorithmLike | None = None, agent: AgentLike | None = None
) -> Callable[..., TrainState]:
    """``init(key, hparams=None) -> TrainState``, for a host loop of chunks."""
    agent, algorithm = _parts(config, algorithm, agent)
    return functools.partial(init_state, config, algorithm=algorithm, agent=agent)


def make_train_chunk(
    config: Config,
    num_updates: int,
    *,
    algorithm: AlgorithmLike | None = None,
    agent: AgentLike | None = None,
) -> UpdateStep:
    """``chunk(state) -> (state, metrics)``: ``num_updates`` updates, to jit once and call in a
    host loop (for progress bars, logging and checkpoints between chunks). Chunks compose:
    ``k`` chunks of ``n`` updates give exactly the state of one run of ``k * n`` updates."""
    update_fn = make_update(config, algorithm=algorithm, agent=agent)
    return functools.partial(run_updates, num_updates=num_updates, update_fn=update_fn)
