"""Evaluation on probe environments with known returns, and GIF rendering."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces
from jit_counts import compiles

from jaxpg import evaluate as ev
from jaxpg.ppo import PPOConfig
from jaxpg.train import init_state, policy_params

pytestmark = pytest.mark.timeout(180)


@struct.dataclass
class ProbeState(environment.EnvState):
    length: jax.Array  # this episode ends (terminated) after `length` steps


@struct.dataclass
class ProbeParams(environment.EnvParams):
    max_steps_in_episode: int = 100
    max_length: int = 6  # episode length is uniform in 1..max_length


class ProbeEnv(environment.Environment):
    """Reward 1 + action (actions 0, 1), episodes of a random length 1..max_length, so a first
    episode of length L returns between L and 2L."""

    @property
    def default_params(self):
        return ProbeParams()

    def reset_env(self, key, params):
        length = jax.random.randint(key, (), 1, params.max_length + 1)
        state = ProbeState(time=jnp.int32(0), length=length)
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        state = ProbeState(time=state.time + 1, length=state.length)
        reward = 1.0 + jnp.asarray(action, jnp.float32)
        terminated = state.time >= state.length
        return self.get_obs(state), state, reward, terminated, {}

    def get_obs(self, state, params=None, key=None):
        return jnp.stack([state.time, state.length]).astype(jnp.float32)

    @property
    def name(self):
        return "Probe-v0"

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params):
        return spaces.Box(0.0, 1000.0, (2,), jnp.float32)


def _policy(config, seed=0):
    return policy_params(config, jax.jit(lambda k: init_state(config, k))(jax.random.key(seed)))


def _evaluate(config, params, key, num_episodes, **kwargs):
    return jax.jit(ev.make_evaluate(config, num_episodes, **kwargs))(params, key)


@pytest.fixture(scope="module")
def probe():
    config = PPOConfig(
        env=ProbeEnv(), total_timesteps=512, num_envs=4, num_steps=32, hidden_sizes=(8,)
    )
    return config, _policy(config)


def test_each_env_counts_its_first_episode_only(probe):
    config, params = probe
    result = jax.jit(ev.make_evaluate(config, 64))(params, jax.random.key(1))
    ret, length = np.asarray(result.episode_return), np.asarray(result.episode_length)
    assert ret.shape == (64,) and result.finished.all()
    assert set(length) <= set(range(1, 7)) and len(set(length)) > 1
    # A later episode would add at least 1 more: returns stay within [L, 2L].
    assert np.all(ret >= length) and np.all(ret <= 2 * length)


def test_time_limit_truncates(probe):
    config, params = probe
    limited = config.replace(env_params=ProbeParams(max_steps_in_episode=3, max_length=50))
    result = _evaluate(limited, params, jax.random.key(2), 32)
    assert np.all(np.asarray(result.episode_length) <= 3) and result.finished.all()
    assert np.any(np.asarray(result.episode_length) == 3)


def test_max_steps_bounds_unfinished_episodes(probe):
    config, params = probe
    long = config.replace(env_params=ProbeParams(max_steps_in_episode=1000, max_length=500))
    result = _evaluate(long, params, jax.random.key(2), 16, max_steps=5)
    assert np.all(np.asarray(result.episode_length) <= 5)
    assert not np.asarray(result.finished).all()


def test_deterministic_ignores_the_action_key(probe):
    config, params = probe
    fixed = config.replace(env_params=ProbeParams(max_length=1))  # every episode: one step
    det_fn = jax.jit(ev.make_evaluate(fixed, 32, deterministic=True))
    sto_fn = jax.jit(ev.make_evaluate(fixed, 32))
    det = [det_fn(params, jax.random.key(k)) for k in (0, 1)]
    sto = [sto_fn(params, jax.random.key(k)) for k in (0, 1)]
    np.testing.assert_array_equal(det[0].episode_return, det[1].episode_return)
    assert len(set(np.asarray(det[0].episode_return))) == 1  # the same obs, the same action
    assert len(set(np.asarray(sto[0].episode_return))) == 2  # sampled actions 0 and 1


def test_vmapped_over_seeds_equals_one_by_one(probe):
    config, _ = probe
    keys = jnp.stack([jax.random.key(s) for s in (0, 1, 2)])
    states = jax.jit(jax.vmap(lambda k: init_state(config, k)))(keys)
    params = policy_params(config, states)
    evaluate = ev.make_evaluate(config, 8)
    batched = jax.jit(jax.vmap(evaluate, in_axes=(0, None)))(params, jax.random.key(5))
    one_fn = jax.jit(evaluate)
    for s in range(3):
        one = one_fn(jax.tree.map(lambda x, s=s: x[s], params), jax.random.key(5))
        np.testing.assert_array_equal(batched.episode_return[s], one.episode_return)


def test_evaluate_compiles_once_and_equals_the_jitted_evaluation(probe):
    # jaxpg.evaluate called eagerly, again with other parameters and another key: the second
    # call compiles nothing (each eager call used to compile its while_loop again); each result
    # equals make_evaluate's under jax.jit, and a traced call (under vmap) still works.
    config, params = probe
    other = _policy(config, seed=1)
    with compiles() as first:
        a = ev.evaluate(config, params, jax.random.key(3), 8)
    with compiles() as second:
        b = ev.evaluate(config, other, jax.random.key(4), 8)
    assert len(first) >= 1 and len(second) == 0, (first, second)
    for got, p, k in ((a, params, 3), (b, other, 4)):
        want = _evaluate(config, p, jax.random.key(k), 8)
        np.testing.assert_array_equal(got.episode_return, want.episode_return)
        np.testing.assert_array_equal(got.episode_length, want.episode_length)
    keys = jnp.stack([jax.random.key(3), jax.random.key(4)])
    both = jax.jit(jax.vmap(lambda k: ev.evaluate(config, params, k, 8)))(keys)
    np.testing.assert_array_equal(both.episode_return[0], a.episode_return)


def test_bad_arguments(probe):
    config, params = probe
    with pytest.raises(ValueError, match="num_episodes=0 is invalid"):
        ev.evaluate(config, params, jax.random.key(0), 0)
    with pytest.raises(ValueError, match="max_steps=0 is invalid"):
        ev.evaluate(config, params, jax.random.key(0), 4, max_steps=0)


def test_render_unsupported_env_says_which_can(probe, tmp_path):
    config, params = probe
    with pytest.raises(
        ev.RenderError, match="gymnax has no visualizer for Probe-v0; it can render .*CartPole-v1"
    ):
        ev.render_gif(config, params, jax.random.key(0), tmp_path / "x.gif")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(
    importlib.util.find_spec("pygame") is None, reason="needs the render extra (pygame)"
)
def test_render_cartpole_gif(tmp_path):
    config = PPOConfig(total_timesteps=512, num_envs=4, num_steps=32, hidden_sizes=(8,))
    params = _policy(config)
    path = tmp_path / "cartpole.gif"
    frames = ev.render_gif(config, params, jax.random.key(0), path, max_steps=30)
    from PIL import Image

    with Image.open(path) as image:
        assert image.n_frames == frames and 1 <= frames <= 30
    assert [p.name for p in tmp_path.iterdir()] == ["cartpole.gif"]
