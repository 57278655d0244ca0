"""The members of a run: every (sweep setting, seed) pair, in one order.

A run trains ``M = K * S`` members in one vmapped program: ``K`` sweep settings (one when there
is no sweep) times ``S`` seeds. Member ``m`` is setting ``m // S`` with seed ``seeds[m % S]``
(setting-major). :class:`Members` is the one place that says so: the run loop, the metrics
table, the run directory and its checkpoints, evaluation, the plots and the loggers all ask
it. Spread over devices (``jaxpg.run(..., spread=True)``), members keep this order: device d
trains the d-th contiguous block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Members"]


@dataclasses.dataclass(frozen=True, eq=False)
class Members:
    """The (setting, seed) members of a run, setting-major.

    Args:
      seeds: the seeds; seed ``s`` trains with ``jax.random.key(s)``.
      settings: the sweep settings (dicts of traced hyperparameter values, see
        :mod:`jaxpg.sweep`), or ``None`` for no sweep.
    """

    seeds: tuple[int, ...]
    settings: tuple[Mapping[str, float], ...] | None = None

    def __post_init__(self) -> None:
        seeds = tuple(int(s) for s in self.seeds)
        if not seeds:
            raise ValueError("seeds=() is invalid: at least one seed")
        object.__setattr__(self, "seeds", seeds)
        if self.settings is not None:
            settings = tuple(dict(s) for s in self.settings)
            if not settings:
                raise ValueError("settings=() is invalid: None (no sweep) or at least one setting")
            object.__setattr__(self, "settings", settings)

    @property
    def num_seeds(self) -> int:
        return len(self.seeds)

    @property
    def num_settings(self) -> int:
        """``K``: the number of sweep settings (1 without a sweep)."""
        return len(self.settings) if self.settings else 1

    def __len__(self) -> int:
        return self.num_settings * self.num_seeds

    def setting_index(self, m: int | np.ndarray) -> int | np.ndarray:
        """The sweep setting of member ``m`` (0 without a sweep); works on arrays too."""
        return m // self.num_seeds

    def seed(self, m: int | np.ndarray) -> int | np.ndarray:
        """The seed of member ``m``; works on arrays too."""
        return np.asarray(self.seeds, np.int64)[m % self.num_seeds]

    def describe(self, m: int) -> str:
        """``"seed 3"``, or ``"setting 1 lr=0.001, seed 3"`` in a sweep."""
        text = f"seed {self.seed(m)}"
        if self.settings:
            k = int(self.setting_index(m))
            values = ", ".join(f"{name}={v:g}" for name, v in self.settings[k].items())
            text = f"setting {k} {values}, {text}"
        return text

    def setting_slices(self) -> list[tuple[int, slice]]:
        """``(k, members of setting k)`` for each setting: contiguous blocks of ``S``."""
        s = self.num_seeds
        return [(k, slice(k * s, (k + 1) * s)) for k in range(self.num_settings)]

    def inputs(self, config: Any) -> tuple[Any, Any]:
        """Keys ``[M]`` and hyperparameters ``[M]`` (a batched :class:`jaxpg.config.HParams`)
        to vmap a train function over, in member order."""
        import jax
        import jax.numpy as jnp

        from jaxpg.config import stack_hparams

        keys = jnp.stack([jax.random.key(s) for s in self.seeds] * self.num_settings)
        if self.settings:
            hp = stack_hparams(config, list(self.settings))
            hp = jax.tree.map(lambda x: jnp.repeat(x, self.num_seeds, axis=0), hp)
        else:
            hp = jax.tree.map(lambda x: jnp.broadcast_to(x, (self.num_seeds,)), config.hparams())
        return keys, hp

    def to_dict(self) -> dict[str, Any]:
        """``{"seeds": [...], "sweep_settings": [...] or None}``, as the run directory and the
        checkpoints record them."""
        return {
            "seeds": list(self.seeds),
            "sweep_settings": [dict(s) for s in self.settings] if self.settings else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Members:
        """The inverse of :meth:`to_dict` (missing seeds: ``[0]``)."""
        return cls(tuple(d.get("seeds") or [0]), d.get("sweep_settings") or None)

    @classmethod
    def of(
        cls, seeds: int | Sequence[int], settings: Sequence[Mapping[str, float]] | None = None
    ) -> Members:
        """``Members.of(4)`` is seeds 0..3; ``Members.of([3, 7], settings)`` those seeds."""
        if isinstance(seeds, (int, np.integer)):
            if seeds < 1:
                raise ValueError(f"seeds={seeds} is invalid: a positive number or a list of seeds")
            seeds = range(int(seeds))
        return cls(tuple(seeds), tuple(settings) if settings else None)
