"""Environment wrappers: gymnax ``Environment`` s built around another one, usable wherever jaxpg
takes an environment (``Config(env=...)``, :func:`jaxpg.envs.make_env`).

:class:`MaskObservation` hides observation components, turning a fully observed control task
into a partially observed one: CartPole-v1 without its velocities is
``MaskObservation("CartPole-v1", keep=(0, 2))`` (cart position and pole angle), Pendulum-v1
without its angular velocity is ``keep=(0, 1)``. From a config or the command line:
``keep_obs=(0, 2)`` / ``--keep-obs 0,2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment as gx_env
from gymnax.environments import spaces as gx_spaces


class MaskObservation(gx_env.Environment):
    """``env`` (a gymnax registry name or ``Environment``) whose observations keep only the
    components ``keep`` (indices into its 1-D observation, in the order given).

    Everything else (the dynamics, rewards, termination, the time limit and its params) is the
    wrapped environment's: ``step_env``, ``reset_env``, ``is_truncated`` and the spaces are
    forwarded, and the observation is ``obs[..., keep]``.
    """

    def __init__(self, env: str | gx_env.Environment, keep: Sequence[int], **env_kwargs: Any):
        if isinstance(env, str):
            env, _ = gymnax.make(env, **env_kwargs)
        elif env_kwargs:
            raise ValueError(f"env_kwargs: {sorted(env_kwargs)} only apply to a registry name")
        if not isinstance(env, gx_env.Environment):
            raise ValueError(
                f"MaskObservation: env must be a gymnax Environment or registry "
                f"name, got {type(env).__name__}"
            )
        space = env.observation_space(env.default_params)
        shape = tuple(getattr(space, "shape", ()))
        if len(shape) != 1:
            raise ValueError(
                f"keep: {env.name} has observations of shape {shape}; "
                "MaskObservation needs a 1-D observation"
            )
        keep = tuple(keep) if isinstance(keep, (list, tuple)) else keep
        ok = (
            isinstance(keep, tuple)
            and keep
            and all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in keep)
        )
        if not ok or len(set(keep)) != len(keep) or not all(0 <= i < shape[0] for i in keep):
            raise ValueError(
                f"keep={keep!r} is invalid: distinct indices in [0, {shape[0]}) "
                f"of {env.name}'s observation, e.g. (0, 2)"
            )
        self.env = env
        self.keep = tuple(int(i) for i in keep)
        self._index = np.asarray(self.keep, np.int32)

    def _mask(self, obs):
        return jnp.take(obs, self._index, axis=-1)

    @property
    def default_params(self) -> gx_env.EnvParams:
        return self.env.default_params

    def step_env(
        self,
        key: jax.Array,
        state: gx_env.EnvState,
        action: int | float | jax.Array,
        params: gx_env.EnvParams,
    ) -> tuple[jax.Array, gx_env.EnvState, jax.Array, jax.Array, dict[Any, Any]]:
        obs, state, reward, terminated, info = self.env.step_env(key, state, action, params)
        return self._mask(obs), state, reward, terminated, info

    def reset_env(
        self, key: jax.Array, params: gx_env.EnvParams
    ) -> tuple[jax.Array, gx_env.EnvState]:
        obs, state = self.env.reset_env(key, params)
        return self._mask(obs), state

    def is_truncated(self, state: gx_env.EnvState, params: gx_env.EnvParams) -> jax.Array:
        return self.env.is_truncated(state, params)

    @property
    def name(self) -> str:
        return f"{self.env.name}[keep {','.join(map(str, self.keep))}]"

    @property
    def num_actions(self) -> int:
        return self.env.num_actions

    def action_space(self, params: gx_env.EnvParams | None = None) -> gx_spaces.Space:
        return self.env.action_space(params)

    def observation_space(self, params: gx_env.EnvParams) -> gx_spaces.Box:
        space = self.env.observation_space(params)
        low = np.broadcast_to(np.asarray(space.low), space.shape)[self._index]
        high = np.broadcast_to(np.asarray(space.high), space.shape)[self._index]
        return gx_spaces.Box(low, high, (len(self.keep),), space.dtype)

    def state_space(self, params: gx_env.EnvParams) -> gx_spaces.Space:
        return self.env.state_space(params)
