"""jaxpg-side programs for the benchmarks: the whole trainer, the rollout alone, the update alone,
and an evaluation of a trained policy.

The rollout-only and update-only programs are the trainer's own two halves
(:func:`jaxpg.make_collect` and :func:`jaxpg.make_learn`, which :func:`jaxpg.train.update`
composes), each scanned ``num_updates`` times inside one jitted program, so their
env-steps-per-second figures are comparable with the whole program's:

* rollout only: ``num_updates`` collections (the algorithm's ``start``, then a rollout of
  ``num_steps`` steps) with fixed parameters. Every field of each batch is reduced to a sum and
  returned, so XLA cannot drop the forward pass's value and log-probability as dead code;
* update only: ``num_updates`` times, on one fixed batch: the algorithm's targets and update
  (the epochs of minibatch steps, a fresh shuffle each time) and the per-update metrics.

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
    """``state -> per-update sums of every batch field``: collections alone, fixed params."""
    collect = jaxpg.make_collect(config)

    def run(state):
        def one(state, _):
            collected = collect(state)
            sums = jax.tree.map(lambda x: jnp.sum(x.astype(jnp.float32)), collected.transitions)
            return state.replace(env=collected.env, key=collected.key), sums

        _, sums = jax.lax.scan(one, state, None, length=num_updates)
        return sums

    return run


def one_batch(config, state):
    """One collected batch from ``state`` (to feed the update-only program)."""
    return jax.jit(jaxpg.make_collect(config))(state)


def update_program(config, num_updates: int):
    """``(state, collected) -> (params, metrics)``: the update alone, ``num_updates`` times on
    one fixed batch, as in :func:`jaxpg.train.update` (a fresh update key each time)."""
    learn = jaxpg.make_learn(config)

    def run(state, collected):
        def one(carry, _):
            state, key = carry
            key, update_key = jax.random.split(key)
            state, metrics = learn(state, collected._replace(update_key=update_key))
            return (state, key), metrics

        (state, _), metrics = jax.lax.scan(one, (state, collected.update_key), None,
                                           length=num_updates)  # fmt: skip
        return state.params, metrics

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
