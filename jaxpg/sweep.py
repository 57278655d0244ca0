"""Hyperparameter sweeps as one compiled program.

The hyperparameters in :class:`jaxpg.HParams` are traced, so a batch of them is just a leading
axis that ``jax.vmap`` maps over. Build the batch with :func:`grid` or :func:`random_search`,
then run it with :func:`make_sweep`: ``K`` hyperparameter settings times ``S`` seeds train in
one program, and a second sweep with other values reuses the compiled program.

Shapes (``num_envs``, ``num_steps``, network sizes, epochs, ...) are static: sweeping them needs
one config (and one compile) per value, and these helpers refuse them with a clear message.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxpg.agents import AgentLike
from jaxpg.config import Config, HParams, check_sweep_names, stack_hparams
from jaxpg.metrics import final_return
from jaxpg.train import TrainResult, make_train


def grid(config: Config, **values: Sequence[float]) -> tuple[HParams, list[dict]]:
    """The Cartesian product of ``values``, e.g. ``grid(cfg, lr=[1e-4, 3e-4], gamma=[0.99])``.

    Returns the batched :class:`HParams` and the list of settings, one dict per member.
    """
    check_sweep_names(config, values)
    for name, vals in values.items():
        if np.ndim(vals) != 1 or len(vals) == 0:
            raise ValueError(f"sweep: {name} needs a non-empty list of values, got {vals!r}")
    names = list(values)
    settings = [dict(zip(names, combo)) for combo in itertools.product(*values.values())]
    settings = [{k: float(v) for k, v in s.items()} for s in settings]
    return stack_hparams(config, settings), settings


def random_search(
    config: Config, key: jax.Array, num: int, **ranges: tuple
) -> tuple[HParams, list[dict]]:
    """``num`` settings drawn uniformly from ``ranges``: ``name=(low, high)`` or
    ``name=(low, high, "log")`` for a log-uniform draw (learning rates)."""
    check_sweep_names(config, ranges)
    draws = {}
    for i, (name, spec) in enumerate(ranges.items()):
        if len(spec) not in (2, 3) or (len(spec) == 3 and spec[2] not in ("log", "linear")):
            raise ValueError(f"sweep: {name}={spec!r}; use (low, high) or (low, high, 'log')")
        low, high = float(spec[0]), float(spec[1])
        u = np.asarray(jax.random.uniform(jax.random.fold_in(key, i), (num,)))
        if len(spec) == 3 and spec[2] == "log":
            if low <= 0:
                raise ValueError(f"sweep: {name} log range needs low > 0, got {low}")
            draws[name] = np.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        else:
            draws[name] = low + u * (high - low)
    settings = [{k: float(v[j]) for k, v in draws.items()} for j in range(num)]
    return stack_hparams(config, settings), settings


def parse_sweep_spec(specs: Sequence[str]) -> dict[str, list[float]]:
    """Parses CLI strings like ``"lr=1e-4,3e-4,1e-3"`` into ``{"lr": [1e-4, 3e-4, 1e-3]}``."""
    values: dict[str, list[float]] = {}
    for spec in specs:
        name, sep, rest = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not rest:
            raise ValueError(f"--sweep {spec!r}: expected NAME=V1,V2,... e.g. lr=1e-4,3e-4")
        try:
            values[name] = [float(v) for v in rest.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--sweep {spec!r}: values must be numbers") from None
    return values


def make_sweep(
    config: Config, *, agent: AgentLike | None = None
) -> Callable[[jax.Array, HParams], TrainResult]:
    """``sweep(keys [S], hparams [K]) -> TrainResult`` with leading axes ``[K, S]``.

    Every setting trains with the same seeds, so member ``(k, s)`` equals
    ``make_train(config)(keys[s], hparams[k])``. Jit it once; other values of the same shape
    reuse the compiled program.
    """
    train = make_train(config, agent=agent)
    over_seeds = jax.vmap(train, in_axes=(0, None))
    over_settings = jax.vmap(over_seeds, in_axes=(None, 0))

    def sweep(keys: jax.Array, hparams: HParams):
        if not isinstance(hparams, HParams):
            raise ValueError(
                f"sweep: hparams must be jaxpg.HParams (from grid or random_search), got "
                f"{type(hparams).__name__}"
            )
        leaves = jax.tree.leaves(hparams)
        sizes = {np.shape(leaf)[:1] for leaf in leaves}
        if len(sizes) != 1 or () in sizes:
            raise ValueError(
                f"sweep: every hyperparameter needs the same leading axis of settings, got "
                f"shapes {[np.shape(leaf) for leaf in leaves]}; build them with grid or "
                "random_search"
            )
        typed = jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)
        if np.ndim(keys) != (1 if typed else 2):
            raise ValueError(
                f"sweep: keys must be a 1-D batch of keys (jax.random.split(key, num_seeds)), "
                f"got shape {np.shape(keys)}"
            )
        return over_settings(keys, hparams)

    return sweep


def results_table(
    metrics: dict, settings: Sequence[dict], seeds: Sequence[int] | None = None
) -> list[dict]:
    """One row per (setting, seed) of a sweep's ``[K, S, num_updates]`` metrics.

    Each row holds the setting's values, ``seed``, ``final_return``
    (:func:`jaxpg.metrics.final_return`: the mean episode return of the last 10% of updates,
    skipping those in which no episode ended; NaN if none did)
    and ``env_steps``.
    Rows are setting-major: row ``k * S + s`` is member ``(k, s)``.
    """
    returns = np.asarray(metrics["episode_return"], np.float64)
    env_steps = np.asarray(metrics["env_steps"])
    num_settings, num_seeds = returns.shape[:2]
    if len(settings) != num_settings:
        raise ValueError(f"results_table: {len(settings)} settings for {num_settings} swept")
    seeds = list(range(num_seeds)) if seeds is None else list(seeds)
    if len(seeds) != num_seeds:
        raise ValueError(f"results_table: {len(seeds)} seeds for {num_seeds} swept")
    finals = final_return(returns)  # [K, S]
    rows = []
    for k, setting in enumerate(settings):
        for s, seed in enumerate(seeds):
            rows.append(
                {
                    **setting,
                    "seed": seed,
                    "final_return": float(finals[k, s]),
                    "env_steps": int(env_steps[k, s, -1]),
                }
            )
    return rows
