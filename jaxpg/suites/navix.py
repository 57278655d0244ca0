"""Navix grid worlds as ``"navix:NAME"`` (``navix:Navix-Empty-8x8-v0``, ...).

Navix's time step says what ended an episode: ``step_type`` 2 is a termination (the goal, lava),
1 a truncation (``max_steps``, Navix's time limit). The adapter steps Navix's transition without
its automatic reset, so the final observation is the one the episode reached. Observations are
Navix's own (symbolic ``uint8`` grids by default; pass ``observation_fn`` to change them).
``env_kwargs`` go to ``navix.make`` (``max_steps``, ``observation_fn``, ...).
"""

from __future__ import annotations

from gymnax.environments import spaces

from jaxpg.envs import register_env_family
from jaxpg.suites import SuiteEnv, SuiteParams, import_suite, split_name, suite_installed

PREFIX = "navix"


def _names() -> list[str]:
    if not suite_installed(PREFIX):
        return []
    import navix

    return [f"{PREFIX}:{n}" for n in sorted(navix.registry())]


class NavixEnv(SuiteEnv):
    def __init__(self, name: str, **kwargs):
        super().__init__(name)
        navix = import_suite(PREFIX)
        self.navix_env = navix.make(split_name(name, navix.registry()), **kwargs)
        self.limit = int(self.navix_env.max_steps)

    def _reset(self, key):
        timestep = self.navix_env.reset(key)
        return timestep.observation, timestep

    def _step(self, key, inner, action, time):
        timestep = self.navix_env._step(inner, action)
        return (
            timestep.observation,
            timestep,
            timestep.reward,
            timestep.step_type == 2,
            timestep.step_type == 1,
        )

    def observation_space(self, params: SuiteParams | None) -> spaces.Box:
        space = self.navix_env.observation_space
        return spaces.Box(0, 255, tuple(space.shape), space.dtype)

    def action_space(self, params: SuiteParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(int(self.navix_env.action_space.maximum) + 1)


register_env_family(PREFIX, NavixEnv, _names, note="Navix (spaces: built on use)")
