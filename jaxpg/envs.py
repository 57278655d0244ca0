"""Vectorized gymnax environments: the only module that knows gymnax's step tuple.

An :class:`Env` wraps a gymnax ``Environment`` (built from a registry name or given as an
instance) with its params and the facts the trainer needs about its spaces. ``reset`` and
``step`` are vmapped over a leading batch axis of ``num_envs`` environments; gymnax >= 1.0
auto-resets inside ``step``, and :class:`StepResult` keeps what learning needs from it:
the reward, ``terminated`` and ``truncated`` as separate flags, and the true final
observation of an episode that ended (``info["final_observation"]``), which is where the value
bootstrap of a truncated episode comes from. The returned ``obs`` is where the next step starts.

Observations are returned as they come, ``[num_envs, *obs_shape]`` of the environment's own
dtype (``Env.obs_dtype``): integer tokens stay integers, and the agent decides how to embed them.
An observation may also be a pytree (a dict, a NamedTuple: Jumanji's, a user's own), described
by ``Env.obs_spec``; jaxpg's own networks flatten and concatenate its leaves
(:func:`flatten_obs`). An environment with a legal-action mask defines
``action_mask(obs) -> bool [..., num_actions]`` (read from a batch of observations), and every
agent's logits are masked with it (:func:`jaxpg.agents.as_agent`), so no policy samples an
illegal action, in training or in evaluation.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment as gx_env
from gymnax.environments import spaces as gx_spaces


class StepResult(NamedTuple):
    """One batched environment step. Leading axis: ``num_envs``."""

    obs: jax.Array  # observation to act on next (a reset observation where an episode ended)
    env_state: Any
    reward: jax.Array  # float32
    terminated: jax.Array  # bool: the MDP reached a terminal state, no bootstrap
    truncated: jax.Array  # bool: cut by a time limit, bootstrap from V(final_obs)
    final_obs: jax.Array  # the observation the transition really reached (== obs unless done)


@dataclasses.dataclass(frozen=True, eq=False)
class Env:
    """A gymnax environment with its params and the shape facts of its spaces."""

    env: gx_env.Environment
    params: Any
    name: str
    obs_shape: tuple[int, ...]
    discrete: bool
    action_dim: int  # number of actions (discrete) or size of the action vector (continuous)
    action_low: np.ndarray | None = None  # continuous bounds, shape [action_dim]
    action_high: np.ndarray | None = None
    obs_dtype: Any = jnp.float32  # what reset and step return (the first leaf's, for a pytree)
    # One observation, without the batch axis: a jax.ShapeDtypeStruct, or a pytree of them.
    obs_spec: Any = None
    # obs [..., *] -> bool [..., action_dim], True where an action is legal; None: all are.
    action_mask: Callable[[Any], jax.Array] | None = None
    # Optimistic reset: 0 resets every environment afresh on every step (the reset of those
    # that did not finish is thrown away); K > 0 draws K fresh starts per step, shared in order
    # by the environments that finish (see step_with_keys).
    reset_pool: int = 0

    def __post_init__(self):
        if self.obs_spec is None:
            spec = jax.ShapeDtypeStruct(tuple(self.obs_shape), self.obs_dtype)
            object.__setattr__(self, "obs_spec", spec)

    @property
    def pytree_obs(self) -> bool:
        """Whether an observation is a pytree (dict, NamedTuple, ...) rather than one array."""
        return not isinstance(self.obs_spec, jax.ShapeDtypeStruct)

    def dummy_obs(self, batch: tuple[int, ...] = (1,)) -> Any:
        """Zeros shaped like a batch of observations ``[*batch, ...]`` (pytree as ``obs_spec``)."""
        return jax.tree.map(lambda s: jnp.zeros((*batch, *s.shape), s.dtype), self.obs_spec)

    def batch_shape(self, obs: Any) -> tuple[int, ...]:
        """The leading (batch) axes of ``obs``, observations of this environment."""
        leaf, spec = jax.tree.leaves(obs)[0], jax.tree.leaves(self.obs_spec)[0]
        return tuple(leaf.shape[: jnp.ndim(leaf) - len(spec.shape)])

    @property
    def max_steps_in_episode(self) -> int | None:
        steps = getattr(self.params, "max_steps_in_episode", None)
        return None if steps is None else int(steps)

    def clip_action(self, action: jax.Array) -> jax.Array:
        """A continuous action ``[..., action_dim]`` clipped to the action space's bounds."""
        low = jnp.broadcast_to(self.action_low, action.shape)
        high = jnp.broadcast_to(self.action_high, action.shape)
        return jnp.clip(action, low, high)

    def reset(self, key: jax.Array, num_envs: int) -> tuple[jax.Array, Any]:
        """Resets ``num_envs`` environments; returns ``(obs [N, *obs_shape], env_state)``."""
        return self.reset_with_keys(jax.random.split(key, num_envs))

    def reset_with_keys(self, keys: jax.Array) -> tuple[jax.Array, Any]:
        """Resets one environment per key ``[N]``: equal keys give equal starts (groups)."""
        return jax.vmap(self.env.reset, in_axes=(0, None))(keys, self.params)

    def step(self, key: jax.Array, env_state: Any, action: jax.Array) -> StepResult:
        """Steps every environment once, auto-resetting those whose episode ended."""
        return self.step_with_keys(self.split_keys(key, action.shape[0]), env_state, action)

    @staticmethod
    def split_keys(key: jax.Array, num_envs: int, leading: tuple[int, ...] = ()) -> jax.Array:
        """The keys :meth:`step_with_keys` takes, ``[*leading, num_envs, 2]``, in one call.

        A rollout splits the keys of all its steps at once (``leading=(num_steps,)``): each
        ``jax.random`` call is a loop on a CPU, so one call per rollout is much cheaper than a
        few per step.
        """
        return jax.random.split(key, (*leading, num_envs, 2))

    @property
    def _standard_step(self) -> bool:
        """Whether the env uses gymnax's own ``Environment.step`` (auto-reset around
        ``step_env``), which :meth:`step_with_keys` can then run with presplit keys."""
        return type(self.env).step is gx_env.Environment.step

    def step_with_keys(self, keys: jax.Array, env_state: Any, action: jax.Array) -> StepResult:
        """:meth:`step` with per-env keys ``[num_envs, 2]`` from :meth:`split_keys`.

        For an env that keeps gymnax's ``Environment.step``, this is that method with its
        internal ``split`` of each key replaced by the presplit pair (step key, reset key): the
        same transition for the same key pair. An env that overrides ``step`` is stepped through
        its own method with the first key of each pair.

        With ``reset_pool = K`` (``0 < K < num_envs``) only ``K`` resets are computed per step
        (optimistic resets, for suites whose reset is expensive: Craftax's world generation,
        XLand-MiniGrid's): the ``k``-th environment that finishes takes fresh start ``k mod K``.
        When at most ``K`` finish in a step, this is a fresh reset for each of them, drawn
        independently; when more finish, some start from the same state.
        """
        if not self._standard_step:
            if self.reset_pool:
                raise ValueError(
                    f"reset_pool={self.reset_pool}: optimistic resets need an environment that "
                    f"keeps gymnax's Environment.step; {self.name} overrides it"
                )
            obs, state, reward, terminated, truncated, info = jax.vmap(
                self.env.step, in_axes=(0, 0, 0, None)
            )(keys[:, 0], env_state, action, self.params)
            final_obs = info["final_observation"]
        else:
            final_obs, state_st, reward, terminated, _ = jax.vmap(
                self.env.step_env, in_axes=(0, 0, 0, None)
            )(keys[:, 0], env_state, action, self.params)
            truncated = jax.vmap(self.env.is_truncated, in_axes=(0, None))(state_st, self.params)
            done = jnp.logical_or(terminated, truncated)

            num_envs = done.shape[0]
            pool = self.reset_pool
            if 0 < pool < num_envs:
                # Optimistic reset: K fresh starts (from the first K reset keys); the k-th
                # environment to finish (in index order) takes start k mod K. Where at most K
                # finish, each gets its own start; beyond K, starts are shared.
                obs_re, state_re = jax.vmap(self.env.reset_env, in_axes=(0, None))(
                    keys[:pool, 1], self.params
                )
                slot = (jnp.cumsum(done) - 1) % pool
                obs_re, state_re = jax.tree.map(lambda x: x[slot], (obs_re, state_re))
            else:
                obs_re, state_re = jax.vmap(self.env.reset_env, in_axes=(0, None))(
                    keys[:, 1], self.params
                )
            pick = lambda reset_leaf, step_leaf: jnp.where(
                done.reshape(done.shape + (1,) * (step_leaf.ndim - 1)), reset_leaf, step_leaf
            )
            state = jax.tree.map(pick, state_re, state_st)
            obs = jax.tree.map(pick, obs_re, final_obs)
        return StepResult(
            obs=obs,
            env_state=state,
            reward=jnp.asarray(reward, jnp.float32),
            terminated=jnp.asarray(terminated, jnp.bool_),
            truncated=jnp.asarray(truncated, jnp.bool_),
            final_obs=final_obs,
        )

    def describe(self) -> str:
        """One line: name, observation shape and action space."""
        if self.discrete:
            actions = f"Discrete({self.action_dim})"
        else:
            actions = (
                f"Box({_fmt(self.action_low)}, {_fmt(self.action_high)}, ({self.action_dim},))"
            )
        return f"{self.name}: obs {self.obs_shape}, actions {actions}"


def _fmt(x: np.ndarray | None) -> str:
    if x is None:
        return "None"
    values = [f"{float(np.float32(v)):.6g}" for v in np.ravel(x)]
    return values[0] if len(set(values)) == 1 else "[" + ", ".join(values) + "]"


class EnvFamily(NamedTuple):
    """A family of environments named ``"PREFIX:NAME"`` (jaxpg's sequence tasks, an env suite)."""

    make: Callable[..., gx_env.Environment]  # (full name, **env_kwargs) -> a gymnax Environment
    names: Callable[[], Sequence[str]]  # the full names it knows, for listings
    # Listed by name only, with this note, instead of built one by one (an env suite: building
    # each of its environments to list its spaces would take minutes).
    note: str | None = None


# The built-in families by import path: the module registers its family when imported, so
# listing or building one imports that module only then.
_BUILTIN_FAMILIES = {
    "seq": "jaxpg.sequence",
    "brax": "jaxpg.suites.brax",
    "craftax": "jaxpg.suites.craftax",
    "jumanji": "jaxpg.suites.jumanji",
    "navix": "jaxpg.suites.navix",
    "xminigrid": "jaxpg.suites.xminigrid",
}
_FAMILIES: dict[str, EnvFamily] = {}


def register_env_family(
    prefix: str,
    make: Callable[..., gx_env.Environment],
    names: Callable[[], Sequence[str]] = tuple,
    note: str | None = None,
) -> None:
    """Makes ``make_env("PREFIX:NAME", **env_kwargs)`` build ``make("PREFIX:NAME", **env_kwargs)``.

    Args:
      prefix: the family's prefix, without the colon (``"seq"``).
      make: ``(name, **env_kwargs) -> Environment``: a gymnax-style environment for ``name``
        (the whole name, prefix included); a ``ValueError`` for a name it does not know.
      names: ``() -> names`` for :func:`registered_envs` and ``jaxpg envs``.
      note: list the names with this note in ``jaxpg envs`` instead of building each one.
    """
    if not prefix or ":" in prefix:
        raise ValueError(f"prefix={prefix!r} is invalid: a non-empty name without ':'")
    _FAMILIES[prefix] = EnvFamily(make, names, note)


def _family(prefix: str) -> EnvFamily | None:
    if prefix not in _FAMILIES and prefix in _BUILTIN_FAMILIES:
        importlib.import_module(_BUILTIN_FAMILIES[prefix])
    return _FAMILIES.get(prefix)


def env_families() -> tuple[str, ...]:
    """The registered prefixes, built-in ones first."""
    return tuple(_BUILTIN_FAMILIES) + tuple(p for p in _FAMILIES if p not in _BUILTIN_FAMILIES)


def registered_envs() -> list[str]:
    """The names ``make_env`` accepts: gymnax's registry, then every family's names."""
    names = list(gymnax.registered_envs)
    for prefix in env_families():
        names += list(_family(prefix).names())
    return names


_MAX_EPISODE_LIMIT = 2**31 - 1


def check_env_params(name: str, params: Any) -> None:
    """Refuses environment params that cannot be right, as config fields are refused: an
    episode limit ``max_steps_in_episode`` that is not a positive integer an int32 step counter
    reaches, and any number that is not finite (NaN or infinity). Traced values (params
    vmapped or passed through ``jit``) are not checked. Raises a ``ValueError`` naming the
    field, the value and what is allowed."""
    if params is None:
        return
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if isinstance(leaf, jax.core.Tracer) or not isinstance(
            leaf, (int, float, np.ndarray, np.generic, jax.Array)
        ):
            continue
        field = jax.tree_util.keystr(path, simple=True, separator=".")
        value = np.asarray(leaf)
        if field == "max_steps_in_episode":
            whole = np.issubdtype(value.dtype, np.integer) or (
                np.issubdtype(value.dtype, np.floating) and np.all(value == np.round(value))
            )
            if not (whole and np.all(value >= 1) and np.all(value <= _MAX_EPISODE_LIMIT)):
                raise ValueError(
                    f"env_params: max_steps_in_episode={leaf!r} is invalid for {name}: the "
                    f"episode limit, a positive integer up to {_MAX_EPISODE_LIMIT} (the "
                    "environments count an episode's steps in int32)"
                )
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise ValueError(f"env_params: {field}={leaf!r} is invalid for {name}: a finite number")


def make_env(env: str | gx_env.Environment | Env, env_params: Any = None, **env_kwargs: Any) -> Env:
    """Builds an :class:`Env` from a registry name or an ``Environment`` instance.

    Args:
      env: a gymnax registry name such as ``"CartPole-v1"``, a family's ``"PREFIX:NAME"``
        (``"seq:reverse"``; :func:`register_env_family`), a gymnax ``Environment`` instance (a
        user's own environment works like a built-in one), or an existing :class:`Env`
        (returned as is).
      env_params: the environment's params; defaults to ``env.default_params``.
      **env_kwargs: passed through to ``gymnax.make`` (or the family's ``make``) for a name.
    """
    if isinstance(env, Env):
        return env
    if isinstance(env, str) and ":" in env:
        family = _family(env.partition(":")[0])
        if family is not None:
            env = family.make(env, **env_kwargs)
            env_kwargs = {}
    if isinstance(env, str):
        if env not in gymnax.registered_envs:
            raise ValueError(
                f"env: unknown environment {env!r}. Registered gymnax environments: "
                + ", ".join(gymnax.registered_envs)
                + "; families: "
                + ", ".join(f"{p}:NAME" for p in env_families())
            )
        instance, default_params = gymnax.make(env, **env_kwargs)
        name = env
    elif isinstance(env, gx_env.Environment):
        if env_kwargs:
            raise ValueError(
                f"env_kwargs: {sorted(env_kwargs)} only apply to a registry name, "
                f"not to an Environment instance ({type(env).__name__})"
            )
        instance, default_params = env, env.default_params
        name = env.name
    else:
        raise ValueError(
            f"env: expected a gymnax registry name or a gymnax Environment instance, "
            f"got {type(env).__name__}: {env!r}"
        )
    params = default_params if env_params is None else env_params
    check_env_params(name, params)

    obs_spec = jax.eval_shape(instance.reset, jax.random.key(0), params)[0]
    obs_spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), obs_spec)
    if isinstance(obs_spec, jax.ShapeDtypeStruct):
        obs_shape = tuple(obs_spec.shape)
    else:  # a pytree: jaxpg's own networks see its leaves flattened and concatenated
        obs_shape = (sum(math.prod(x.shape) for x in jax.tree.leaves(obs_spec)),)
    obs_dtype = jax.tree.leaves(obs_spec)[0].dtype
    mask = getattr(instance, "action_mask", None)
    extra = {"obs_spec": obs_spec, "action_mask": mask if callable(mask) else None}
    action_space = instance.action_space(params)
    if isinstance(action_space, gx_spaces.Discrete):
        return Env(
            instance,
            params,
            name,
            obs_shape,
            True,
            int(action_space.n),
            obs_dtype=obs_dtype,
            **extra,
        )
    if isinstance(action_space, gx_spaces.Box):
        shape = tuple(action_space.shape)
        if len(shape) != 1:
            raise ValueError(
                f"env: {name} has a Box action space of shape {shape}; jaxpg supports "
                "Discrete and 1-D Box action spaces"
            )
        low = np.broadcast_to(np.asarray(action_space.low, np.float32), shape).copy()
        high = np.broadcast_to(np.asarray(action_space.high, np.float32), shape).copy()
        if extra["action_mask"] is not None:
            raise ValueError(f"env: {name} has an action mask but a continuous action space")
        return Env(
            instance, params, name, obs_shape, False, shape[0], low, high, obs_dtype, **extra
        )
    raise ValueError(
        f"env: {name} has a {type(action_space).__name__} action space; jaxpg supports "
        "Discrete and 1-D Box action spaces"
    )


# Built on first use by downloading data; listing should not download anything.
_DOWNLOADS = {"MNISTBandit-bsuite": "downloads MNIST when built"}


def env_table() -> list[tuple[str, str, str, str]]:
    """``(name, observation space, action space, note)`` for every registered environment
    (``jaxpg envs``); the note says why one is not supported, or that it downloads data."""
    rows = []
    notes = {n: f.note for f in map(_family, env_families()) if f.note for n in f.names()}
    for name in registered_envs():
        if name in notes:
            rows.append((name, "-", "-", notes[name]))
            continue
        if name in _DOWNLOADS:
            rows.append((name, "-", "-", _DOWNLOADS[name]))
            continue
        try:
            env = make_env(name)
        except Exception as e:  # noqa: BLE001 - list every env, whatever it fails with
            try:
                instance, params = gymnax.make(name)
                obs = _space(instance.observation_space(params))
                act = _space(instance.action_space(params))
            except Exception:  # noqa: BLE001
                obs = act = "-"
            rows.append((name, obs, act, f"not supported: {' '.join(str(e).split())[:70]}"))
            continue
        _, _, rest = env.describe().partition(": obs ")
        obs, _, act = rest.partition(", actions ")
        rows.append((name, f"Box{obs}", act, ""))
    return rows


def _space(space: Any) -> str:
    kind = type(space).__name__
    if hasattr(space, "n"):
        return f"{kind}({int(space.n)})"
    if hasattr(space, "shape"):
        return f"{kind}{tuple(space.shape)}"
    return kind
