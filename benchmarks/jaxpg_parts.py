"""jaxpg-side programs for the benchmarks: the whole trainer, the rollout alone, the update alone,
and an evaluation of a trained policy.

The rollout-only and update-only programs are built from the same pieces that
:func:`jaxpg.train.update` uses (``rollout`` with its ``V(final_obs)`` pass, the algorithm's
``targets`` and ``update``), each scanned ``num_updates`` times inside one jitted program, so their
env-steps-per-second figures are comparable with the whole program's:

* rollout only: ``num_updates`` rollouts of ``num_steps`` steps with fixed parameters. Every
  field of each batch is reduced to a sum and returned, so XLA cannot drop the forward pass's
  value and log-probability as dead code;
* update only: ``num_updates`` times, on one fixed batch: advantages and the epochs of
  minibatch gradient steps.

Their sum is close to, but not exactly, the whole program (which also materialises each batch
between the two phases).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

import jaxpg
from jaxpg import registry
from jaxpg import train as train_lib
from jaxpg.agents import make_agent
from jaxpg.distributions import action_dist
from jaxpg.registry import make_algorithm
from jaxpg.rollout import rollout
from jaxpg.updates import Batch


def make_config(algo: str, env: str, **overrides):
    """A registered algorithm's config from its defaults plus ``overrides``."""
    if algo not in registry.names():
        raise ValueError(
            f"--algos: unknown algorithm {algo!r}; use one of {list(registry.names())}"
        )
    return registry.config_class(algo)(env=env, **overrides)


def with_updates(config, num_updates: int):
    """``config`` with ``total_timesteps`` set to exactly ``num_updates`` updates."""
    return config.replace(total_timesteps=num_updates * config.batch_size)


def train_program(config):
    """``key -> (metrics, state)`` for the whole training run."""
    train = jaxpg.make_train(config)

    def run(key):
        result = train(key)
        return result.metrics, result.state

    return run


def init_states(config, keys) -> Any:
    """One :class:`jaxpg.TrainState` per key, stacked on a leading seed axis (a vmapped
    ``init_state``)."""
    return jax.jit(jax.vmap(functools.partial(jaxpg.init_state, config)))(keys)


def seeds_program(config):
    """``states [S] -> (metrics [S, num_updates], state [S])``: every update of ``S`` agents in
    one vmapped program (the states from :func:`init_states`)."""
    chunk = jaxpg.make_train_chunk(config, config.num_updates)

    def run(states):
        state, metrics = jax.vmap(chunk)(states)
        return metrics, state

    return run


def rollout_program(config, num_updates: int):
    """``state -> per-update sums of every batch field``: rollouts alone, fixed params."""
    env = config.env_spec
    agent = make_agent(config)
    dist = action_dist(env.discrete)
    options = train_lib.rollout_options(config)

    def run(state):
        def one(carry_and_key, _):
            carry, key = carry_and_key
            key, sub = jax.random.split(key)
            carry, batch = rollout(
                sub,
                state.params,
                carry,
                state.hparams.gamma,
                env=env,
                agent=agent,
                dist=dist,
                num_steps=config.num_steps,
                options=options,
            )
            sums = jax.tree.map(lambda x: jnp.sum(x.astype(jnp.float32)), batch)
            return (carry, key), sums

        _, sums = jax.lax.scan(one, (state.env, state.key), None, length=num_updates)
        return sums

    return run


def one_batch(config, state):
    """One rollout's batch from ``state`` (to feed the update-only program)."""
    env = config.env_spec

    def run(state):
        _, batch = rollout(
            state.key,
            state.params,
            state.env,
            state.hparams.gamma,
            env=env,
            agent=make_agent(config),
            dist=action_dist(env.discrete),
            num_steps=config.num_steps,
            options=train_lib.rollout_options(config),
        )
        return batch

    return jax.jit(run)(state)


def update_program(config, num_updates: int):
    """``(state, batch) -> (params, metrics)``: the update alone, ``num_updates`` times on one
    fixed batch (the algorithm's targets, then its update: the epochs of minibatch steps), as
    in :func:`jaxpg.train.update`."""
    algorithm = make_algorithm(config, make_agent(config))

    def run(state, batch):
        hp = state.hparams

        def one(carry, _):
            params, opt_state, key, step = carry
            key, opt_key = jax.random.split(key)
            targets, algo_state = algorithm.targets(batch, hp, state.algo_state)
            out = algorithm.update(
                params,
                opt_state,
                algo_state,
                Batch(batch, targets, state.env.agent_carry),
                hp,
                step,
                opt_key,
            )
            return (out.params, out.opt_state, key, step + 1), out.metrics

        init = (state.params, state.opt_state, state.key, state.update_step)
        (params, _, _, _), metrics = jax.lax.scan(one, init, None, length=num_updates)
        return params, metrics

    return run


def evaluate_program(config, num_episodes: int):
    """``(policy_params, key) -> returns [num_episodes]``: the undiscounted return of the first
    episode of ``num_episodes`` fresh environments, actions sampled from the trained policy (as
    in training): :func:`jaxpg.evaluate.make_evaluate`, jaxpg's one evaluation rollout."""
    from jaxpg.evaluate import make_evaluate

    evaluate = make_evaluate(config, num_episodes)
    return lambda params, key: evaluate(params, key).episode_return


def init_state(config, key):
    return jax.jit(functools.partial(jaxpg.init_state, config))(key)
