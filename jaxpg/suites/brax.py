"""Brax environments as ``"brax:NAME"`` (``brax:ant``, ``brax:humanoid``, ...).

``env_kwargs`` go to ``brax.envs.get_environment`` (``backend="spring"``, ``"positional"``,
``"generalized"`` (Brax's default) or ``"mjx"``, and each environment's own options), except
``episode_length`` (default 1000, as Brax's trainers): the time limit, after which an episode is
*truncated* and bootstraps from V(last observation). Brax's own ``EpisodeWrapper`` folds that
limit into ``done``; this adapter does not use it. An episode that Brax ends (``done``: the
hopper or the humanoid falls) is terminated. A fresh reset draws a new start state.
"""

from __future__ import annotations

import jax.numpy as jnp
from gymnax.environments import spaces

from jaxpg.envs import register_env_family
from jaxpg.suites import SuiteEnv, SuiteParams, import_suite, split_name, suite_installed

PREFIX = "brax"


def _names() -> list[str]:
    if not suite_installed(PREFIX):
        return []
    envs = import_suite(PREFIX, ".envs")
    return [f"{PREFIX}:{n}" for n in sorted(envs._envs)]


class BraxEnv(SuiteEnv):
    """A Brax ``Env``: observation ``float32[observation_size]``, actions in ``[-1, 1]``."""

    def __init__(self, name: str, episode_length: int = 1000, **kwargs):
        super().__init__(name)
        envs = import_suite(PREFIX, ".envs")

        inner = split_name(name, envs._envs)
        if int(episode_length) < 1:
            raise ValueError(f"episode_length={episode_length!r} is invalid: a positive int")
        self.brax_env = envs.get_environment(inner, **kwargs)
        self.limit = int(episode_length)

    def _reset(self, key):
        state = self.brax_env.reset(key)
        return state.obs, state

    def _step(self, key, inner, action, time):
        state = self.brax_env.step(inner, action)
        return state.obs, state, state.reward, state.done > 0.5, jnp.zeros((), jnp.bool_)

    def observation_space(self, params: SuiteParams | None) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (self.brax_env.observation_size,), jnp.float32)

    def action_space(self, params: SuiteParams | None = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (self.brax_env.action_size,), jnp.float32)


register_env_family(PREFIX, BraxEnv, _names, note="Brax (spaces: built on use)")
