"""The trainer: one jitted program for the whole of training, shared by every algorithm.

``make_train(config)`` returns a pure ``train(key, hparams=None) -> TrainResult``. Inside it
a ``lax.scan`` over updates runs, for each update:

1. :func:`jaxpg.rollout.rollout` (a scan over ``num_steps``; one forward pass per step);
2. ``V(final_obs)`` for the bootstrap, in one batched pass;
3. the algorithm's advantage estimator;
4. epochs of shuffled minibatches of the algorithm's loss (one step for REINFORCE), with
   gradients clipped by global norm and Adam;
5. per-update metrics, reduced to means inside the jit.

All state is one :class:`TrainState` pytree. The hyperparameters in :class:`HParams` are part
of it and traced, so ``jax.vmap(train)`` over keys and hparams is one compiled program. Pieces
for a host loop (progress bars, checkpoints): :func:`make_init`, :func:`make_train_chunk`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxpg import advantages as adv_lib
from jaxpg import losses
from jaxpg.algorithms import Algorithm, Minibatch, Targets, actor_critic_loss, make_algorithm
from jaxpg.config import HParams, PPOConfig, ReinforceConfig
from jaxpg.distributions import action_dist
from jaxpg.networks import Network, make_network
from jaxpg.permutation import random_permutation
from jaxpg.policy import PolicyParams, network_for
from jaxpg.rollout import (
    EnvCarry,
    RolloutOptions,
    Transition,
    bootstrap_values,
    env_carry_init,
    episode_stats,
    rollout,
)

Config = PPOConfig | ReinforceConfig


class TrainState(struct.PyTreeNode):
    """Everything training carries from one update to the next."""

    params: Any  # network parameters (the optimiser's target)
    opt_state: Any
    env: EnvCarry  # environment states, last observations, episode and normaliser statistics
    baseline: adv_lib.MovingAverageBaseline  # REINFORCE's moving-average baseline
    hparams: HParams
    key: jax.Array
    update_step: jax.Array  # int32, updates done so far
    nonfinite_updates: jax.Array  # int32, updates whose loss or gradient was not finite


class TrainResult(NamedTuple):
    params: PolicyParams  # what ``make_policy(config)`` acts with
    metrics: dict[str, jax.Array]  # each [num_updates]
    state: TrainState  # to continue training, or to checkpoint


def _global_norm(tree) -> jax.Array:
    """``sqrt(sum of squares)`` over every leaf (as optax computes it, on any optax version)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def _clip_by_known_global_norm(g_norm: jax.Array, max_norm: jax.Array) -> optax.GradientTransformation:
    """``optax.clip_by_global_norm`` with the norm computed by the caller (who also reports it),
    so a gradient step computes it once. Same arithmetic and the same (empty) state."""

    def update_fn(updates, state, params=None):
        del params
        trigger = g_norm < max_norm
        clip = lambda t: jax.lax.select(trigger, t, (t / g_norm.astype(t.dtype)) * max_norm)
        return jax.tree.map(clip, updates), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def make_optimizer(
    hp: HParams, learning_rate: jax.Array, adam_eps: float, grad_norm: jax.Array | None = None
) -> optax.GradientTransformation:
    """Global-norm clipping then Adam, built from traced values (a sweep never recompiles).

    ``grad_norm``, when given, is the global norm of the gradients about to be clipped.
    """
    clip = (
        optax.clip_by_global_norm(hp.max_grad_norm)
        if grad_norm is None
        else _clip_by_known_global_norm(grad_norm, hp.max_grad_norm)
    )
    return optax.chain(
        clip,
        optax.scale_by_adam(eps=adam_eps),
        optax.scale(-learning_rate),
    )


def learning_rate(config: Config, hp: HParams, update_step: jax.Array) -> jax.Array:
    if not config.anneal_lr:
        return hp.lr
    frac = 1.0 - update_step.astype(jnp.float32) / config.num_updates
    return hp.lr * jnp.maximum(frac, 0.0)


def _coerce_hparams(config: Config, hparams: HParams | None) -> HParams:
    if hparams is None:
        return config.hparams()
    if not isinstance(hparams, HParams):
        raise ValueError(
            f"hparams: expected jaxpg.HParams (see config.hparams()), got {type(hparams).__name__}"
        )
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), hparams)


def rollout_options(config: Config) -> RolloutOptions:
    """The rollout's static switches from ``config``."""
    return RolloutOptions(config.normalize_obs, config.normalize_rewards, config.clip_actions)


def init_state(config: Config, key: jax.Array, hparams: HParams | None = None) -> TrainState:
    """A fresh :class:`TrainState` for ``config``; pure, jittable and vmappable over keys."""
    hp = _coerce_hparams(config, hparams)
    network = network_for(config)
    net_key, env_key, key = jax.random.split(key, 3)
    params = network.init(net_key)
    tx = make_optimizer(hp, hp.lr, config.adam_eps)
    return TrainState(
        params=params,
        opt_state=tx.init(params),
        env=env_carry_init(env_key, config.env_spec, config.num_envs),
        baseline=adv_lib.moving_average_baseline_init(),
        hparams=hp,
        key=key,
        update_step=jnp.zeros((), jnp.int32),
        nonfinite_updates=jnp.zeros((), jnp.int32),
    )


def gradient_step(params, opt_state, mb: Minibatch, hp: HParams, lr, *, loss_fn, adam_eps):
    """One clipped Adam step on ``loss_fn``.

    Returns the new params and optimiser state, unguarded, and the step's metrics with
    ``finite``: whether the loss and the gradient were finite. :func:`optimize` discards the
    whole update when any step was not (one select per update instead of one per step).
    """
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, mb, hp)
    grad_norm = _global_norm(grads)
    tx = make_optimizer(hp, lr, adam_eps, grad_norm)
    updates, new_opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    # The global norm is finite exactly when every gradient element is, except that a sum of
    # squares overflowing float32 (a norm above ~1.8e19) also counts as non-finite.
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    aux = {**aux, "loss": loss, "grad_norm": grad_norm, "finite": finite}
    return new_params, new_opt_state, aux


def optimize(params, opt_state, data: Minibatch, hp: HParams, lr, key, *, config: Config, loss_fn,
             constrain_minibatches=None):
    """Epochs of shuffled minibatches over the flat batch ``data`` (leading axis ``T * N``).

    Returns the new params and optimiser state, the mean of each loss metric, and whether every
    step's loss and gradient were finite. When one was not, the params and optimiser state come
    back unchanged: an update never trains on a non-finite loss or gradient.
    """
    num_epochs = getattr(config, "num_epochs", 1)
    num_minibatches = getattr(config, "num_minibatches", 1)
    step = functools.partial(gradient_step, loss_fn=loss_fn, adam_eps=config.adam_eps)

    def minibatch_step(carry, mb):
        params, opt_state = carry
        params, opt_state, aux = step(params, opt_state, mb, hp, lr)
        return (params, opt_state), aux

    def epoch(carry, epoch_key):
        if num_minibatches == 1 and num_epochs == 1:
            shaped = jax.tree.map(lambda x: x[None], data)
        else:
            perm = random_permutation(epoch_key, config.batch_size)
            shaped = jax.tree.map(
                lambda x: jnp.take(x, perm, axis=0).reshape(num_minibatches, -1, *x.shape[1:]),
                data,
            )
        if constrain_minibatches is not None:
            # jaxpg.distributed: split each minibatch's rows over the devices.
            shaped = constrain_minibatches(shaped)
        return jax.lax.scan(minibatch_step, carry, shaped)

    (new_params, new_opt_state), aux = jax.lax.scan(
        epoch, (params, opt_state), jax.random.split(key, num_epochs)
    )
    finite = jnp.all(aux.pop("finite"))
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    return (
        keep(new_params, params),
        keep(new_opt_state, opt_state),
        jax.tree.map(jnp.mean, aux),
        finite,
    )


def flatten_batch(batch: Transition, targets: Targets) -> Minibatch:
    """The rollout batch and its targets as one flat :class:`Minibatch` (leading axis ``T * N``)."""
    flat = lambda x: x.reshape(-1, *x.shape[2:])
    return jax.tree.map(
        flat,
        Minibatch(
            obs=batch.obs,
            action=batch.action,
            old_log_prob=batch.log_prob,
            old_value=batch.value,
            advantages=targets.advantages,
            returns=targets.returns,
            mask=targets.mask,
            value_mask=targets.value_mask,
        ),
    )


def make_loss_fn(config: Config, network: Network, algorithm: Algorithm):
    """``loss_fn(params, minibatch, hparams) -> (loss, metrics)``: the loss the update minimises."""
    return functools.partial(
        actor_critic_loss,
        network=network,
        dist=action_dist(config.env_spec.discrete),
        surrogate=algorithm.surrogate,
        normalize_advantages=config.normalize_advantages,
        clip_value_loss=getattr(config, "clip_value_loss", False),
    )


def update(state: TrainState, *, config: Config, network: Network, algorithm: Algorithm,
           constrain_minibatches=None) -> tuple[TrainState, dict]:
    """One update: rollout, advantages, optimisation, metrics."""
    env = config.env_spec
    hp = state.hparams
    key, reset_key, rollout_key, opt_key = jax.random.split(state.key, 4)
    trajectory_mode = getattr(config, "mode", "intermediate") == "trajectory"

    carry = state.env
    if trajectory_mode:
        # Whole episodes from a fresh reset: an episode never spans two updates.
        carry = env_carry_init(
            reset_key, env, config.num_envs, carry.obs_stats, carry.reward_stats
        )
    carry, batch = rollout(
        rollout_key, state.params, carry, hp.gamma,
        env=env, network=network, dist=action_dist(env.discrete),
        num_steps=config.num_steps, options=rollout_options(config),
    )
    if network.has_critic:
        next_values = bootstrap_values(state.params, network, batch.final_obs)
    else:
        next_values = jnp.zeros_like(batch.reward)
    targets, baseline = algorithm.estimate_advantages(batch, next_values, hp, state.baseline)

    lr = learning_rate(config, hp, state.update_step)
    loss_fn = make_loss_fn(config, network, algorithm)
    params, opt_state, loss_metrics, finite = optimize(
        state.params, state.opt_state, flatten_batch(batch, targets), hp, lr, opt_key,
        config=config, loss_fn=loss_fn, constrain_minibatches=constrain_minibatches,
    )
    update_step = state.update_step + 1
    metrics = {
        **episode_stats(batch),
        **loss_metrics,
        "explained_variance": losses.explained_variance(
            batch.value, targets.returns, targets.value_mask
        ) if network.has_critic else jnp.asarray(jnp.nan, jnp.float32),
        "learning_rate": lr,
        "env_steps": update_step * config.batch_size,
        "nonfinite": jnp.logical_not(finite),
    }
    new_state = state.replace(
        params=params,
        opt_state=opt_state,
        env=carry,
        baseline=baseline,
        key=key,
        update_step=update_step,
        nonfinite_updates=state.nonfinite_updates + jnp.logical_not(finite).astype(jnp.int32),
    )
    return new_state, metrics


def make_update(config: Config, constrain_minibatches=None):
    """``update(state) -> (state, metrics)``: one update of ``config``'s algorithm.

    ``constrain_minibatches`` (a hook for :mod:`jaxpg.distributed`) is applied to each epoch's
    stacked minibatches ``[num_minibatches, B, ...]`` before the scan over them.
    """
    return functools.partial(
        update, config=config, network=network_for(config), algorithm=make_algorithm(config),
        constrain_minibatches=constrain_minibatches,
    )


def run_updates(state: TrainState, num_updates: int, *, update_fn) -> tuple[TrainState, dict]:
    """``num_updates`` updates in one ``lax.scan``; metrics come back stacked ``[num_updates]``."""
    return jax.lax.scan(lambda s, _: update_fn(s), state, None, length=num_updates)


def policy_params(config: Config, state: TrainState) -> PolicyParams:
    return PolicyParams(
        network=state.params,
        obs_stats=state.env.obs_stats if config.normalize_obs else None,
    )


def make_train(config: Config):
    """Returns the pure ``train(key, hparams=None) -> TrainResult`` for ``config``.

    ``jax.jit(train)(key)`` trains for ``config.num_updates`` updates in one program;
    ``jax.jit(jax.vmap(train))(keys)`` trains one agent per key.
    """
    update_fn = make_update(config)

    def train(key: jax.Array, hparams: HParams | None = None) -> TrainResult:
        state = init_state(config, key, hparams)
        state, metrics = run_updates(state, config.num_updates, update_fn=update_fn)
        return TrainResult(policy_params(config, state), metrics, state)

    return train


def make_init(config: Config):
    """``init(key, hparams=None) -> TrainState``, for a host loop of chunks."""
    return functools.partial(init_state, config)


def make_train_chunk(config: Config, num_updates: int):
    """``chunk(state) -> (state, metrics)``: ``num_updates`` updates, to jit once and call in a
    host loop (for progress bars, logging and checkpoints between chunks). Chunks compose:
    ``k`` chunks of ``n`` updates give exactly the state of one run of ``k * n`` updates."""
    update_fn = make_update(config)
    return functools.partial(run_updates, num_updates=num_updates, update_fn=update_fn)
