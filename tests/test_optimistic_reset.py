"""Optimistic resets (``reset_pool``): a few fresh starts per step, shared in order by the
environments that finish, checked against resets computed by hand from the same keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces
from toy_envs import CountEnv

import jaxpg
from jaxpg.envs import make_env


@struct.dataclass
class StartState(environment.EnvState):
    start: jax.Array  # float32: drawn at reset, kept through the episode
    time: int


class RandomStartEnv(environment.Environment):
    """Observation ``[start, time]``: ``start`` is drawn at reset; action 1 terminates."""

    @property
    def default_params(self):
        return environment.EnvParams(max_steps_in_episode=1000)

    def step_env(self, key, state, action, params):
        new = StartState(start=state.start, time=state.time + 1)
        return self._obs(new), new, jnp.float32(1.0), action == 1, {}

    def reset_env(self, key, params):
        state = StartState(start=jax.random.uniform(key), time=0)
        return self._obs(state), state

    def _obs(self, state):
        return jnp.stack([state.start, jnp.asarray(state.time, jnp.float32)])

    def observation_space(self, params):
        return spaces.Box(0.0, 1e3, (2,), jnp.float32)

    def action_space(self, params=None):
        return spaces.Discrete(2)


def _step(env, state, finishing, key):
    action = jnp.zeros((8,), jnp.int32).at[jnp.asarray(finishing, jnp.int32)].set(1)
    keys = env.split_keys(key, 8)
    return keys, env.step_with_keys(keys, state, action)


@pytest.mark.parametrize(
    "finishing,slots",
    [
        ([1, 4], [0, 1]),  # fewer than the pool: each its own fresh start
        ([0, 2, 3, 5, 6], [0, 1, 2, 0, 1]),  # more: starts shared, in order
    ],
)
def test_finishing_envs_take_the_pool_in_order(finishing, slots):
    base = make_env(RandomStartEnv())
    env = jaxpg.envs.Env(**{**base.__dict__, "reset_pool": 3})
    obs, state = base.reset(jax.random.key(0), 8)
    keys, out = _step(env, state, finishing, jax.random.key(1))
    fresh = [float(RandomStartEnv().reset_env(keys[k, 1], base.params)[0][0]) for k in range(3)]
    new_obs, final = np.asarray(out.obs), np.asarray(out.final_obs)
    for env_index, slot in zip(finishing, slots):
        assert new_obs[env_index, 0] == np.float32(fresh[slot]) and new_obs[env_index, 1] == 0
        # the final observation is the episode's own last one, not the fresh start
        np.testing.assert_array_equal(final[env_index], [obs[env_index, 0], 1.0])
    going = [i for i in range(8) if i not in finishing]
    np.testing.assert_array_equal(new_obs[going], np.stack([obs[going, 0], np.ones(len(going))], 1))
    assert np.asarray(out.terminated)[finishing].all()
    # with at most 3 finishing, the starts are distinct draws
    if len(finishing) <= 3:
        assert len(set(new_obs[finishing, 0].tolist())) == len(finishing)


def test_config_field_and_training():
    with pytest.raises(ValueError, match="reset_pool"):
        jaxpg.PPOConfig(reset_pool=-1)
    config = jaxpg.PPOConfig(
        env=CountEnv(limit=3), reset_pool=2, num_envs=8, num_steps=8, total_timesteps=128
    )
    assert config.env_spec.reset_pool == 2
    result = jax.jit(jaxpg.make_train(config))(jax.random.key(0))
    # every CountEnv episode is 3 steps whatever start it took
    np.testing.assert_allclose(np.asarray(result.metrics["episode_length"]), 3.0)
    # The field reaches the training rollout: with one fresh start per step, environments that
    # restarted at the same step share their start (independent draws would not)
    pooled = jaxpg.PPOConfig(
        env=RandomStartEnv(), reset_pool=1, num_envs=8, num_steps=8, total_timesteps=128
    )
    obs = np.asarray(jax.jit(jaxpg.make_train(pooled))(jax.random.key(0)).state.env.obs)
    restarted = obs[:, 1] < 128 // 8  # [start, steps since the start]: these reset at least once
    groups = [obs[restarted & (obs[:, 1] == t), 0] for t in np.unique(obs[restarted, 1])]
    assert any(len(g) > 1 for g in groups), obs  # some restarted at the same step
    for starts in groups:
        np.testing.assert_array_equal(starts, starts[0])
