"""Small gymnax environments with known dynamics, for tests.

``CountEnv``: the observation is ``[t, 1]`` where ``t`` counts the steps of the episode, the
reward is 1 per step, and the episode ends when ``t`` reaches ``limit``: by truncation (a time
limit, the default) or by termination (``terminate_at_limit=True``). Nothing is random, so every
flag, final observation and return can be computed by hand.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class CountState(environment.EnvState):
    time: int
    episode: int


@struct.dataclass
class CountParams(environment.EnvParams):
    max_steps_in_episode: int = 5


class CountEnv(environment.Environment):
    def __init__(self, limit: int = 5, terminate_at_limit: bool = False, reward: float = 1.0):
        super().__init__()
        self.limit = limit
        self.terminate_at_limit = terminate_at_limit
        self.reward = reward

    @property
    def default_params(self) -> CountParams:
        # Terminating variant: the time limit is far away, termination ends the episode.
        return CountParams(max_steps_in_episode=10_000 if self.terminate_at_limit else self.limit)

    def step_env(self, key, state, action, params):
        time = state.time + 1
        new_state = CountState(time=time, episode=state.episode)
        terminated = jnp.logical_and(self.terminate_at_limit, time >= self.limit)
        reward = jnp.asarray(self.reward, jnp.float32)
        return self._obs(new_state), new_state, reward, terminated, {}

    def reset_env(self, key, params):
        state = CountState(time=0, episode=0)
        return self._obs(state), state

    def _obs(self, state):
        return jnp.stack([jnp.asarray(state.time, jnp.float32), jnp.float32(1.0)])

    def observation_space(self, params):
        return spaces.Box(0.0, 1e4, (2,), jnp.float32)

    def action_space(self, params=None):
        return spaces.Discrete(2)

    @property
    def name(self) -> str:
        return "CountEnv"

    @property
    def num_actions(self) -> int:
        return 2
