"""Craftax environments as ``"craftax:NAME"`` (``craftax:Craftax-Symbolic-v1``,
``craftax:Craftax-Classic-Pixels-v1``, ...), the versions without Craftax's own auto-reset.

Craftax ends an episode when the player dies (or beats the final boss; in Classic, also steps
into lava) and when ``params.max_timesteps`` is reached; it reports both as ``done``. The
adapter keeps them apart: an episode that ended at the time limit with the player alive is
truncated, every other end is terminated. Symbolic observations are flat ``float32`` vectors,
pixel ones images ``[H, W, 3]`` (the ``cnn`` network reads them). There is no action mask: every
action is legal in Craftax (one that cannot apply does nothing). ``env_kwargs`` replace fields of
Craftax's ``EnvParams`` (``max_timesteps``, ``day_length``, ...).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from gymnax.environments import spaces

from jaxpg.envs import register_env_family
from jaxpg.suites import SuiteEnv, SuiteParams, import_suite, split_name, suite_installed

PREFIX = "craftax"
NAMES = (
    "Craftax-Symbolic-v1",
    "Craftax-Pixels-v1",
    "Craftax-Classic-Symbolic-v1",
    "Craftax-Classic-Pixels-v1",
)


def _names() -> list[str]:
    return [f"{PREFIX}:{n}" for n in NAMES] if suite_installed(PREFIX) else []


class CraftaxEnv(SuiteEnv):
    def __init__(self, name: str, **kwargs):
        super().__init__(name)
        import_suite(PREFIX)
        from craftax.craftax_env import make_craftax_env_from_name

        self.craftax_env = make_craftax_env_from_name(split_name(name, NAMES), auto_reset=False)
        defaults = self.craftax_env.default_params
        unknown = set(kwargs) - {f.name for f in dataclasses.fields(defaults)}
        if unknown:
            raise ValueError(
                f"env_kwargs: {sorted(unknown)} are not fields of Craftax's EnvParams; it has "
                + ", ".join(f.name for f in dataclasses.fields(defaults))
            )
        self.craftax_params = defaults.replace(**kwargs)
        self.limit = int(self.craftax_params.max_timesteps)

    def _reset(self, key):
        return self.craftax_env.reset_env(key, self.craftax_params)

    def _step(self, key, inner, action, time):
        params = self.craftax_params
        obs, state, reward, done, _ = self.craftax_env.step_env(key, inner, action, params)
        time_up = state.timestep >= params.max_timesteps
        terminated = done & (~time_up | (state.player_health <= 0))
        return obs, state, reward, terminated, done & ~terminated

    def observation_space(self, params: SuiteParams | None) -> spaces.Box:
        shape = tuple(self.craftax_env.observation_space(self.craftax_params).shape)
        return spaces.Box(0.0, 1.0, shape, jnp.float32)

    def action_space(self, params: SuiteParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(int(self.craftax_env.action_space(self.craftax_params).n))


register_env_family(PREFIX, CraftaxEnv, _names, note="Craftax (spaces: built on use)")
