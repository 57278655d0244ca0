"""Shared update helpers that algorithms compose: the optimiser, one gradient step, and epochs of
minibatches over one update's :class:`Batch`.

* :func:`make_optimizer`: global-norm clipping then Adam, from traced hyperparameters;
* :func:`gradient_step`: one clipped Adam step on a loss, reporting whether it was finite;
* :func:`split_minibatches`: a batch cut into minibatches, either single steps shuffled across
  time and environments, or (``sequences=True``, for recurrent agents) whole environment
  sequences, so the loss can replay the agent from its stored start carry;
* :func:`optimize`: epochs of minibatch steps; a non-finite step discards the whole update;
* :func:`sgd_update`: all of that as an algorithm's ``update`` (PPO, A2C, REINFORCE).

Batches are time-major: every leaf of a :class:`Batch`'s transitions and targets is
``[T, N, ...]``; its ``agent_carry`` is ``[N, ...]``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxpg.config import HParams
from jaxpg.permutation import random_permutation
from jaxpg.rollout import Transition


class Targets(NamedTuple):
    """What the loss needs besides the rollout, all ``[T, N]``."""

    advantages: jax.Array
    returns: jax.Array  # regression target of the critic
    mask: jax.Array  # float: steps that enter the policy loss
    value_mask: jax.Array  # float: steps that enter the value loss


class Batch(NamedTuple):
    """One update's data: the rollout, the algorithm's targets, and the agent's carry at the
    rollout's start (``()`` for a feed-forward agent)."""

    transitions: Transition  # [T, N, ...]
    targets: Targets  # [T, N]
    agent_carry: Any  # [N, ...]
    extra: Any = ()  # an algorithm's own per-step data [T, N, ...], minibatched with the rest


class Minibatch(NamedTuple):
    """A slice of a batch: leading axis ``B`` (single steps), or ``[T, n]`` (whole sequences of
    ``n`` environments, with their start carry ``[n, ...]``)."""

    obs: jax.Array
    action: jax.Array
    old_log_prob: jax.Array
    old_value: jax.Array
    advantages: jax.Array
    returns: jax.Array
    mask: jax.Array
    value_mask: jax.Array
    reset: jax.Array | None  # bool: the step starts an episode (None for single steps)
    agent_carry: Any  # () for single steps; [n, ...] for sequences
    extra: Any = ()  # the batch's ``extra``, sliced like every per-step field


class UpdateResult(NamedTuple):
    """What an algorithm's ``update`` returns."""

    params: Any
    opt_state: Any
    algo_state: Any
    metrics: dict[str, jax.Array]  # scalars, reduced inside the jit
    finite: jax.Array  # bool: False when the update was discarded as non-finite


# The signature of ``Algorithm.update`` (see jaxpg.algorithms); ``constrain`` is the multi-device
# hook of split_minibatches.
UpdateFn = Callable[..., UpdateResult]

# A loss that algorithms hand to :func:`sgd_update`: ``(params, minibatch, hparams) -> (loss,
# metrics)``, the metrics a dict of scalars.
LossFn = Callable[[Any, Minibatch, HParams], tuple[jax.Array, dict[str, jax.Array]]]


# -- the optimiser ---------------------------------------------------------------------------


def global_norm(tree: Any) -> jax.Array:
    """``sqrt(sum of squares)`` over every leaf (as optax computes it, on any optax version)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def _clip_by_known_global_norm(
    g_norm: jax.Array, max_norm: jax.Array
) -> optax.GradientTransformation:
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

    Equals ``optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr, eps=adam_eps))``.
    ``grad_norm``, when given, is the global norm of the gradients about to be clipped.
    """
    clip = (
        optax.clip_by_global_norm(hp.max_grad_norm)
        if grad_norm is None
        else _clip_by_known_global_norm(grad_norm, hp.max_grad_norm)
    )
    return optax.chain(clip, optax.scale_by_adam(eps=adam_eps), optax.scale(-learning_rate))


def optimizer_init(
    adam_eps: float,
) -> Callable[[Any, HParams], tuple[optax.OptState, tuple[()]]]:
    """``init(params, hp) -> (opt_state, ())``: an algorithm's ``init`` with no state of its own."""

    def init(params, hp: HParams):
        return make_optimizer(hp, hp.lr, adam_eps).init(params), ()

    return init


def learning_rate(
    hp: HParams, update_step: jax.Array, *, num_updates: int, anneal: bool
) -> jax.Array:
    """``hp.lr``, or with ``anneal`` its linear decay to 0 over ``num_updates`` updates."""
    if not anneal:
        return hp.lr
    frac = 1.0 - update_step.astype(jnp.float32) / num_updates
    return hp.lr * jnp.maximum(frac, 0.0)


def gradient_step(
    params: Any,
    opt_state: optax.OptState,
    mb: Minibatch,
    hp: HParams,
    lr: jax.Array,
    *,
    loss_fn: LossFn,
    adam_eps: float,
) -> tuple[Any, optax.OptState, dict[str, jax.Array]]:
    """One clipped Adam step on ``loss_fn(params, mb, hp) -> (loss, metrics)``.

    Returns the new params and optimiser state, unguarded, and the step's metrics with
    ``finite``: whether the loss and the gradient were finite. :func:`optimize` discards the
    whole update when any step was not (one select per update instead of one per step).
    """
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, mb, hp)
    grad_norm = global_norm(grads)
    tx = make_optimizer(hp, lr, adam_eps, grad_norm)
    updates, new_opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    # The global norm is finite exactly when every gradient element is, except that a sum of
    # squares overflowing float32 (a norm above ~1.8e19) also counts as non-finite.
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    aux = {**aux, "loss": loss, "grad_norm": grad_norm, "finite": finite}
    return new_params, new_opt_state, aux


# -- minibatches -----------------------------------------------------------------------------


def as_minibatch(batch: Batch) -> Minibatch:
    """The whole batch as one time-major :class:`Minibatch` ``[T, N]``."""
    tr, tg = batch.transitions, batch.targets
    return Minibatch(
        obs=tr.obs,
        action=tr.action,
        old_log_prob=tr.log_prob,
        old_value=tr.value,
        advantages=tg.advantages,
        returns=tg.returns,
        mask=tg.mask,
        value_mask=tg.value_mask,
        reset=tr.reset,
        agent_carry=batch.agent_carry,
        extra=batch.extra,
    )


def flatten_batch(batch: Batch) -> Minibatch:
    """The batch as single steps: one flat :class:`Minibatch` (leading axis ``T * N``)."""
    if jax.tree.leaves(batch.agent_carry):
        raise ValueError(
            "flatten_batch: a recurrent agent's batch cannot be cut into single steps; use "
            "sequence minibatches"
        )
    # Single steps of a feed-forward agent need no reset flags (nor the cost of shuffling them).
    mb = as_minibatch(batch)._replace(agent_carry=(), reset=None)
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), mb)


def shuffled_rows(batch: Batch, *, sequences: bool) -> int:
    """How many rows :func:`split_minibatches` permutes: the ``T * N`` steps, or with
    ``sequences`` the ``N`` environments."""
    num_steps, num_envs = batch.transitions.log_prob.shape[:2]
    return num_envs if sequences else num_steps * num_envs


def split_minibatches(
    key: jax.Array,
    batch: Batch,
    num_minibatches: int,
    *,
    sequences: bool,
    shuffle: bool = True,
    perm: jax.Array | None = None,
) -> Minibatch:
    """``batch`` cut into ``num_minibatches`` stacked along a new leading axis ``M``.

    * ``sequences=False``: single steps. The ``T * N`` steps are permuted (``key``) and cut into
      ``[M, T * N / M, ...]``: every step is in exactly one minibatch.
    * ``sequences=True``: whole environment sequences. The ``N`` environments are permuted and
      cut into ``[M, T, N / M, ...]``, with the start carries ``[M, N / M, ...]``: every
      environment is in exactly one minibatch, its steps in time order.

    ``shuffle=False`` keeps the order (a single minibatch is never shuffled). ``perm``, when
    given, is the permutation to use instead of drawing one from ``key``:
    ``random_permutation(key, shuffled_rows(batch, sequences=sequences))`` gives the same split.
    """
    if not sequences:
        data = flatten_batch(batch)
        size = data.action.shape[0]
        if num_minibatches == 1 and not shuffle:
            return jax.tree.map(lambda x: x[None], data)
        if perm is None:
            perm = random_permutation(key, size) if shuffle else jnp.arange(size)
        return jax.tree.map(
            lambda x: jnp.take(x, perm, axis=0).reshape(num_minibatches, -1, *x.shape[1:]), data
        )
    data = as_minibatch(batch)
    num_envs = data.reset.shape[1]
    if num_envs % num_minibatches:
        raise ValueError(
            f"num_minibatches={num_minibatches} is invalid: sequence minibatches split the "
            f"{num_envs} environments, so it must divide num_envs"
        )
    if num_minibatches == 1 and not shuffle:
        return jax.tree.map(lambda x: x[None], data)
    if perm is None:
        perm = random_permutation(key, num_envs) if shuffle else jnp.arange(num_envs)

    def per_step(x):  # [T, N, ...] -> [M, T, N / M, ...]
        x = jnp.take(x, perm, axis=1).reshape(x.shape[0], num_minibatches, -1, *x.shape[2:])
        return jnp.swapaxes(x, 0, 1)

    def per_env(x):  # [N, ...] -> [M, N / M, ...]
        return jnp.take(x, perm, axis=0).reshape(num_minibatches, -1, *x.shape[1:])

    carry = jax.tree.map(per_env, data.agent_carry)
    return jax.tree.map(per_step, data._replace(agent_carry=()))._replace(agent_carry=carry)


def optimize(
    params: Any,
    opt_state: optax.OptState,
    batch: Batch,
    hp: HParams,
    lr: jax.Array,
    key: jax.Array,
    *,
    loss_fn: LossFn,
    num_epochs: int,
    num_minibatches: int,
    adam_eps: float,
    sequences: bool = False,
    constrain: Callable[[Any, int], Any] | None = None,
) -> tuple[Any, optax.OptState, dict[str, jax.Array], jax.Array]:
    """Epochs of shuffled minibatches of ``batch`` (see :func:`split_minibatches`), one
    :func:`gradient_step` each.

    Returns the new params and optimiser state, the mean of each loss metric, and whether every
    step's loss and gradient were finite. When one was not, the params and optimiser state come
    back unchanged: an update never trains on a non-finite loss or gradient.

    ``constrain(tree, row_axis)`` (a hook for :mod:`jaxpg.distributed`) is applied to each
    epoch's stacked minibatches: ``row_axis`` is the axis of the steps (1) or of the
    environments (2 for sequences' per-step leaves, 1 for their start carries).
    """
    step = functools.partial(gradient_step, loss_fn=loss_fn, adam_eps=adam_eps)
    shuffle = not (num_minibatches == 1 and num_epochs == 1)

    def minibatch_step(carry, mb):
        params, opt_state = carry
        params, opt_state, aux = step(params, opt_state, mb, hp, lr)
        return (params, opt_state), aux

    def epoch(carry, perm):
        shaped = split_minibatches(
            None, batch, num_minibatches, sequences=sequences, shuffle=shuffle, perm=perm
        )
        if constrain is not None:
            # jaxpg.distributed: split each minibatch's rows over the devices.
            if sequences:
                carry_part = constrain(shaped.agent_carry, 1)
                shaped = constrain(shaped._replace(agent_carry=()), 2)
                shaped = shaped._replace(agent_carry=carry_part)
            else:
                shaped = constrain(shaped, 1)
        return jax.lax.scan(minibatch_step, carry, shaped)

    # Every epoch's permutation is drawn before the epochs' scan, in one pass. Drawn inside it,
    # the permutation is an elementwise hash that XLA fuses into each leaf's gather: one copy
    # per leaf to compile and to run (7 for PPO's feed-forward batch).
    # (A single minibatch of a single epoch is not shuffled: no permutation.)
    perms = None
    if shuffle:
        rows = shuffled_rows(batch, sequences=sequences)
        perms = jax.vmap(lambda k: random_permutation(k, rows))(jax.random.split(key, num_epochs))
    (new_params, new_opt_state), aux = jax.lax.scan(
        epoch, (params, opt_state), perms, length=num_epochs
    )
    finite = jnp.all(aux.pop("finite"))
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    return (
        keep(new_params, params),
        keep(new_opt_state, opt_state),
        jax.tree.map(jnp.mean, aux),
        finite,
    )


def sgd_update(
    loss_fn: LossFn,
    *,
    num_epochs: int,
    num_minibatches: int,
    adam_eps: float,
    num_updates: int,
    anneal_lr: bool,
    sequences: bool = False,
) -> UpdateFn:
    """An algorithm's ``update``: ``num_epochs`` epochs of ``num_minibatches`` clipped Adam
    steps on ``loss_fn`` (1 x 1 is one full-batch step), at the (optionally annealed) learning
    rate. The algorithm state passes through unchanged; ``learning_rate`` joins the metrics."""

    def update(
        params, opt_state, algo_state, batch: Batch, hp: HParams, update_step, key, constrain=None
    ) -> UpdateResult:
        lr = learning_rate(hp, update_step, num_updates=num_updates, anneal=anneal_lr)
        params, opt_state, metrics, finite = optimize(
            params,
            opt_state,
            batch,
            hp,
            lr,
            key,
            loss_fn=loss_fn,
            num_epochs=num_epochs,
            num_minibatches=num_minibatches,
            adam_eps=adam_eps,
            sequences=sequences,
            constrain=constrain,
        )
        return UpdateResult(params, opt_state, algo_state, {**metrics, "learning_rate": lr}, finite)

    return update
