"""Small gymnax environments with known dynamics, for tests (``ProbeEnv`` and ``TokenEnv`` below).

``CountEnv``: the observation is ``[t, 1]`` where ``t`` counts the steps of the episode, the
reward is 1 per step, and the episode ends when ``t`` reaches ``limit``: by truncation (a time
limit, the default) or by termination (``terminate_at_limit=True``). Nothing is random, so every
flag, final observation and return can be computed by hand.
"""

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


# -- probe environments with known values and advantages (as rejax and bsuite's probes) --------


@struct.dataclass
class ProbeState(environment.EnvState):
    time: int
    first_action: int


@struct.dataclass
class ProbeParams(environment.EnvParams):
    max_steps_in_episode: int = 100


class ProbeEnv(environment.Environment):
    """A one- or two-step episode that always terminates (never a truncation):

    * ``"constant"``: one step, reward 1 whatever the action: ``V(s) = 1``;
    * ``"action"``: one step, reward 1 for action 1 and 0 for action 0: the advantage of action 1
      exceeds that of action 0 by exactly 1, and a trained policy picks action 1;
    * ``"two_step"``: two steps; the reward (1) comes at the second step, only if the *first*
      action was 1, and the second observation does not tell which action that was. Credit
      must flow back one step: action 1 at the first step gets a positive advantage.

    The observation is a one-hot of the step ``[1, 0]`` or ``[0, 1]``.
    """

    def __init__(self, kind: str):
        super().__init__()
        assert kind in ("constant", "action", "two_step")
        self.kind = kind

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams()

    def step_env(self, key, state, action, params):
        time = state.time + 1
        first_action = jnp.where(state.time == 0, action, state.first_action)
        if self.kind == "constant":
            reward, terminated = jnp.float32(1.0), time >= 1
        elif self.kind == "action":
            reward, terminated = (action == 1).astype(jnp.float32), time >= 1
        else:
            reward = jnp.where(time == 2, (first_action == 1).astype(jnp.float32), 0.0)
            terminated = time >= 2
        new_state = ProbeState(time=time, first_action=first_action)
        return self._obs(new_state), new_state, reward, terminated, {}

    def reset_env(self, key, params):
        state = ProbeState(time=0, first_action=0)
        return self._obs(state), state

    def _obs(self, state):
        return jax.nn.one_hot(jnp.minimum(state.time, 1), 2, dtype=jnp.float32)

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (2,), jnp.float32)

    def action_space(self, params=None):
        return spaces.Discrete(2)

    @property
    def name(self) -> str:
        return f"Probe-{self.kind}"

    @property
    def num_actions(self) -> int:
        return 2


class TokenEnv(environment.Environment):
    """Integer observations: the observation is the int32 token ``t mod vocab`` of step ``t``;
    episodes last ``limit`` steps (truncated). For checking that tokens reach the agent as
    integers."""

    def __init__(self, vocab: int = 7, limit: int = 5, num_actions: int = 3):
        super().__init__()
        self.vocab, self.limit, self._num_actions = vocab, limit, num_actions

    @property
    def default_params(self) -> CountParams:
        return CountParams(max_steps_in_episode=self.limit)

    def step_env(self, key, state, action, params):
        new_state = CountState(time=state.time + 1, episode=state.episode)
        return self._obs(new_state), new_state, jnp.float32(1.0), jnp.bool_(False), {}

    def reset_env(self, key, params):
        state = CountState(time=0, episode=0)
        return self._obs(state), state

    def _obs(self, state):
        return jnp.asarray([state.time % self.vocab], jnp.int32)

    def observation_space(self, params):
        return spaces.Box(0, self.vocab - 1, (1,), jnp.int32)

    def action_space(self, params=None):
        return spaces.Discrete(self._num_actions)

    @property
    def name(self) -> str:
        return "TokenEnv"

    @property
    def num_actions(self) -> int:
        return self._num_actions


@struct.dataclass
class BanditState(environment.EnvState):
    time: int
    scale: float


class ScaledBanditEnv(environment.Environment):
    """A contextual bandit: one-step episodes whose start state ``s`` (drawn at reset from the
    key: 1 or 4, the observation) scales the reward of every action: ``r = s * (0.5, 1.0)[a]``.
    Action 1 is always better, but with one global baseline (~1.9) its reward at ``s = 1`` looks
    bad; relative to a group that shares the start, it never does."""

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams(max_steps_in_episode=1)

    def step_env(self, key, state, action, params):
        reward = state.scale * jnp.where(action == 1, 1.0, 0.5)
        new_state = BanditState(time=state.time + 1, scale=state.scale)
        return self._obs(new_state), new_state, reward.astype(jnp.float32), jnp.bool_(True), {}

    def reset_env(self, key, params):
        scale = jnp.where(jax.random.bernoulli(key), 4.0, 1.0)
        state = BanditState(time=0, scale=scale)
        return self._obs(state), state

    def _obs(self, state):
        return jnp.asarray([state.scale], jnp.float32)

    def observation_space(self, params):
        return spaces.Box(0.0, 4.0, (1,), jnp.float32)

    def action_space(self, params=None):
        return spaces.Discrete(2)

    @property
    def name(self) -> str:
        return "ScaledBandit"

    @property
    def num_actions(self) -> int:
        return 2


# -- a memory probe ----------------------------------------------------------------------------


@struct.dataclass
class RecallState(environment.EnvState):
    time: int
    cue: int


class DelayedRecallEnv(environment.Environment):
    """One-step-delayed recall: the first observation shows a cue ``c`` in {0, 1} as ``[2c - 1,
    1]``; the next ``delay`` observations are ``[0, 0]``; the action at the last step scores
    reward 1 if it equals ``c`` (0 otherwise), and the episode terminates. Earlier actions score
    nothing. A feed-forward policy sees the same ``[0, 0]`` at the last step whatever the cue,
    so its expected return is 0.5; a policy that remembers the first observation gets 1."""

    def __init__(self, delay: int = 1):
        super().__init__()
        self.delay = delay

    @property
    def default_params(self) -> environment.EnvParams:
        return environment.EnvParams(max_steps_in_episode=1000)

    def step_env(self, key, state, action, params):
        time = state.time + 1
        last = time > self.delay
        reward = jnp.where(last & (action == state.cue), 1.0, 0.0).astype(jnp.float32)
        new_state = RecallState(time=time, cue=state.cue)
        obs = jnp.zeros((2,), jnp.float32)
        return obs, new_state, reward, last, {}

    def reset_env(self, key, params):
        cue = jax.random.bernoulli(key).astype(jnp.int32)
        state = RecallState(time=0, cue=cue)
        return jnp.stack([2.0 * cue - 1.0, 1.0]).astype(jnp.float32), state

    def observation_space(self, params):
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)

    def action_space(self, params=None):
        return spaces.Discrete(2)

    @property
    def name(self) -> str:
        return "DelayedRecall"

    @property
    def num_actions(self) -> int:
        return 2


@struct.dataclass
class MaskedState(environment.EnvState):
    time: int
    legal: jax.Array  # bool [4]


class MaskedChoiceEnv(environment.Environment):
    """A dict observation ``{"action_mask": bool[4], "clock": float32[1]}`` with a legal-action
    mask drawn afresh each step (action 0 always legal, each other one with probability 1/2).
    The reward is the chosen action's index when it is legal (an illegal one would pay 10, so a
    policy that ever samples one shows it); episodes are cut at 8 steps by the time limit."""

    limit = 8

    @property
    def default_params(self):
        return CountParams(max_steps_in_episode=self.limit)

    def _legal(self, key):
        return jnp.concatenate([jnp.ones((1,), bool), jax.random.bernoulli(key, 0.5, (3,))])

    def _obs(self, state):
        return {
            "action_mask": state.legal,
            "clock": jnp.asarray(state.time, jnp.float32)[None] / self.limit,
        }

    def step_env(self, key, state, action, params):
        reward = jnp.where(state.legal[action], action, 10).astype(jnp.float32)
        new = MaskedState(time=state.time + 1, legal=self._legal(key))
        return self._obs(new), new, reward, jnp.asarray(False), {}

    def reset_env(self, key, params):
        state = MaskedState(time=0, legal=self._legal(key))
        return self._obs(state), state

    def action_mask(self, obs):
        return obs["action_mask"]

    def observation_space(self, params):
        return spaces.Dict(
            {"action_mask": spaces.Box(0, 1, (4,), jnp.bool_), "clock": spaces.Box(0, 1, (1,))}
        )

    def action_space(self, params=None):
        return spaces.Discrete(4)

    @property
    def name(self) -> str:
        return "MaskedChoice"
