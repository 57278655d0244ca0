"""Environments of other JAX suites (Brax, Craftax, Jumanji, Navix, XLand-MiniGrid) as gymnax ones.

Each suite's adapter is its own module (``jaxpg.suites.brax``, ...) and registers its prefix
with :func:`jaxpg.envs.register_env_family` when imported, so ``make_env("brax:ant")`` and
``jaxpg train --env brax:ant`` work like a gymnax name. Every adapter is a
:class:`SuiteEnv`: a gymnax ``Environment`` whose ``step_env`` reports *termination only*
and whose ``is_truncated`` reports the time limit, so jaxpg's episode semantics hold in every
suite: a truncated episode bootstraps from V(final observation), a terminated one from 0, and
the final observation is the true one, before the automatic reset. Rewards are float32.

The episode limit is ``params.max_steps_in_episode``: the suite's own limit by default (Brax has
none: the adapter's ``episode_length``, 1000 as Brax's trainers), and a shorter one may be given
as ``env_params``. A suite that is not installed is a one-line error naming the extra.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment as gx_env

# prefix -> (the adapter module, the suite's import name, the extra that installs it)
SUITES = {
    "brax": ("jaxpg.suites.brax", "brax", "brax"),
    "craftax": ("jaxpg.suites.craftax", "craftax", "craftax"),
    "jumanji": ("jaxpg.suites.jumanji", "jumanji", "jumanji"),
    "navix": ("jaxpg.suites.navix", "navix", "navix"),
    "xminigrid": ("jaxpg.suites.xminigrid", "xminigrid", "xminigrid"),
}


def import_suite(prefix: str, submodule: str = "") -> ModuleType:
    """The suite's own package (or its ``submodule``), imported without its chatter on stdout
    (Brax prints "Failed to import warp"), or a one-line ``ValueError`` naming the extra."""
    _, module, extra = SUITES[prefix]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return importlib.import_module(module + submodule)
    except ImportError as e:
        raise ValueError(
            f"env: the {prefix} suite is not installed ({e}); install it with "
            f"pip install 'jaxpg[{extra}]'"
        ) from None


def suite_installed(prefix: str) -> bool:
    """Whether the suite's package can be found (without importing it)."""
    return importlib.util.find_spec(SUITES[prefix][1]) is not None


def split_name(name: str, known: Any) -> str:
    """``"PREFIX:NAME"`` -> ``NAME``, which must be one of ``known``."""
    prefix, _, inner = name.partition(":")
    known = sorted(known)
    if inner not in known:
        raise ValueError(
            f"env: unknown {prefix} environment {inner!r}; {prefix} has: " + ", ".join(known)
        )
    return inner


@struct.dataclass
class SuiteState:
    inner: Any  # the suite's own state (or time step)
    time: jax.Array  # steps taken in this episode
    truncated: jax.Array  # the step that reached this state was cut by the time limit


@struct.dataclass
class SuiteParams(gx_env.EnvParams):
    max_steps_in_episode: int = 1000


class SuiteEnv(gx_env.Environment):
    """A suite's environment as a gymnax ``Environment`` with termination and truncation apart.

    Subclasses implement ``_reset(key) -> (obs, inner)`` and ``_step(key, inner, action, time)
    -> (obs, inner, reward, terminated, truncated)`` (``time``: the steps of the episode after
    this one; the suite's own flags: ``truncated`` where the suite cut the episode at its time
    limit) and set ``name``, ``limit`` (the suite's episode
    limit), ``observation_space`` and ``action_space``. An episode is truncated where the suite
    says so or where ``params.max_steps_in_episode`` is reached, unless it terminated.
    """

    limit: int = 1000

    def __init__(self, name: str):
        super().__init__()
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_params(self) -> SuiteParams:
        return SuiteParams(max_steps_in_episode=int(self.limit))

    def _reset(self, key):
        raise NotImplementedError

    def _step(self, key, inner, action, time):
        raise NotImplementedError

    # The suites' own code is traced with implicit rank promotion allowed (Brax relies on it),
    # whatever the user's jax_numpy_rank_promotion says for theirs.
    def reset_env(self, key: jax.Array, params: SuiteParams) -> tuple[Any, SuiteState]:
        with jax.numpy_rank_promotion("allow"):
            obs, inner = self._reset(key)
        return obs, SuiteState(inner, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.bool_))

    def step_env(
        self, key: jax.Array, state: SuiteState, action: jax.Array, params: SuiteParams
    ) -> tuple[Any, SuiteState, jax.Array, jax.Array, dict]:
        time = state.time + 1
        with jax.numpy_rank_promotion("allow"):
            obs, inner, reward, terminated, truncated = self._step(key, state.inner, action, time)
        terminated = jnp.asarray(terminated, jnp.bool_)
        truncated = (jnp.asarray(truncated, jnp.bool_) | (time >= params.max_steps_in_episode)) & (
            ~terminated
        )
        state = SuiteState(inner, time, truncated)
        return obs, state, jnp.asarray(reward, jnp.float32), terminated, {}

    def is_truncated(self, state: SuiteState, params: SuiteParams) -> jax.Array:
        return state.truncated
