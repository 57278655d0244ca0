"""XLand-MiniGrid environments as ``"xminigrid:NAME"`` (``xminigrid:MiniGrid-Empty-8x8``,
``xminigrid:XLand-MiniGrid-R1-9x9``, ...).

XLand-MiniGrid's time steps are dm_env's: a ``LAST`` step with discount 0 is a termination
(the goal reached), one with discount 1 a truncation (``params.max_steps``). Observations are the
agent's view, ``uint8 [view, view, 2]``. Every action is always legal (XLand-MiniGrid has no
mask). ``env_kwargs`` replace fields of its ``EnvParams`` (``max_steps``, ``view_size``, ...);
an XLand environment samples its rules from ``ruleset`` when given one (``params.replace``).
"""

from __future__ import annotations

from gymnax.environments import spaces

from jaxpg.envs import register_env_family
from jaxpg.suites import SuiteEnv, SuiteParams, import_suite, split_name, suite_installed

PREFIX = "xminigrid"


def _names() -> list[str]:
    if not suite_installed(PREFIX):
        return []
    import xminigrid

    return [f"{PREFIX}:{n}" for n in xminigrid.registered_environments()]


class XMiniGridEnv(SuiteEnv):
    def __init__(self, name: str, **kwargs):
        super().__init__(name)
        xminigrid = import_suite(PREFIX)
        inner = split_name(name, xminigrid.registered_environments())
        self.xm_env, params = xminigrid.make(inner)
        self.xm_params = params.replace(**kwargs) if kwargs else params
        self.limit = int(self.xm_params.max_steps)

    def _reset(self, key):
        timestep = self.xm_env.reset(self.xm_params, key)
        return timestep.observation, timestep

    def _step(self, key, inner, action, time):
        timestep = self.xm_env.step(self.xm_params, inner, action)
        last = timestep.step_type == 2  # StepType.LAST
        terminated = last & (timestep.discount == 0)
        return timestep.observation, timestep, timestep.reward, terminated, last & ~terminated

    def observation_space(self, params: SuiteParams | None) -> spaces.Box:
        shape = tuple(self.xm_env.observation_shape(self.xm_params))
        return spaces.Box(0, 255, shape, "uint8")

    def action_space(self, params: SuiteParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(int(self.xm_env.num_actions(self.xm_params)))


register_env_family(PREFIX, XMiniGridEnv, _names, note="XLand-MiniGrid (spaces: built on use)")
