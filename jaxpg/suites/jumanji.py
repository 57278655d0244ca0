"""Jumanji environments as ``"jumanji:NAME"`` (``jumanji:Snake-v1``, ``jumanji:Game2048-v1``,
...), with their observations as Jumanji gives them and their legal-action masks.

Jumanji's time steps are dm_env's: a ``LAST`` step with discount 0 is a termination, one with
a non-zero discount a truncation. Some environments (Snake) end at their ``time_limit`` with
discount 0 as well; an episode that ends at the time limit is truncated here, whatever the
discount says (a Snake that dies on exactly its last allowed step reads as truncated). The observation is Jumanji's own
pytree (a NamedTuple: Snake's ``grid``, ``step_count``, ``action_mask``); jaxpg's networks
flatten its leaves, and where it has an ``action_mask`` of one flag per action, the policy's
logits are masked with it (:func:`jaxpg.agents.masked`). Environments with one discrete action
are supported; a multi-discrete one (Connector, RobotWarehouse, ...) is refused with its spec.
``env_kwargs`` go to ``jumanji.make``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from gymnax.environments import spaces

from jaxpg.envs import register_env_family
from jaxpg.suites import SuiteEnv, SuiteParams, import_suite, split_name, suite_installed

PREFIX = "jumanji"


def _names() -> list[str]:
    if not suite_installed(PREFIX):
        return []
    import jumanji

    return [f"{PREFIX}:{n}" for n in sorted(jumanji.registered_environments())]


class JumanjiEnv(SuiteEnv):
    def __init__(self, name: str, **kwargs):
        super().__init__(name)
        jumanji = import_suite(PREFIX)
        inner = split_name(name, jumanji.registered_environments())
        self.jumanji_env = jumanji.make(inner, **kwargs)
        spec = self.jumanji_env.action_spec
        if not hasattr(spec, "num_values") or jnp.ndim(spec.num_values) != 0:
            raise ValueError(
                f"env: {name} has the action spec {spec}; jaxpg supports Jumanji environments "
                "with one discrete action (DiscreteArray)"
            )
        self._num_actions = int(spec.num_values)
        self.limit = int(getattr(self.jumanji_env, "time_limit", 0) or 100_000)
        obs = jax.eval_shape(self.jumanji_env.reset, jax.random.key(0))[1].observation
        mask = getattr(obs, "action_mask", None)
        if mask is None or tuple(mask.shape) != (self._num_actions,):
            self.action_mask = None  # every action is legal

    def _reset(self, key):
        state, timestep = self.jumanji_env.reset(key)
        return timestep.observation, state

    def _step(self, key, inner, action, time):
        state, timestep = self.jumanji_env.step(inner, action)
        last = timestep.last()
        # Some Jumanji environments (Snake) end at their time limit with discount 0, as if the
        # episode terminated; an end at the time limit is a truncation here whatever the discount.
        terminated = last & (timestep.discount == 0) & (time < self.limit)
        return timestep.observation, state, timestep.reward, terminated, last & ~terminated

    def action_mask(self, obs: Any) -> jax.Array:
        """Jumanji's own mask, ``bool [..., num_actions]``."""
        return obs.action_mask

    def observation_space(self, params: SuiteParams | None) -> Any:
        obs = jax.eval_shape(self.jumanji_env.reset, jax.random.key(0))[1].observation
        return jax.tree.map(lambda x: spaces.Box(-jnp.inf, jnp.inf, x.shape, x.dtype), obs)

    def action_space(self, params: SuiteParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self._num_actions)


register_env_family(PREFIX, JumanjiEnv, _names, note="Jumanji (spaces: built on use)")
