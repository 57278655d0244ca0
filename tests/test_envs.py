"""Environment layer and rollouts: auto-reset, truncation vs termination, final observations,
episode statistics, normalisation, and vmapping over seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_envs import CountEnv

import jaxpg
from jaxpg import advantages as adv_lib
from jaxpg.agents import Agent, mlp_agent, unroll
from jaxpg.distributions import action_dist
from jaxpg.envs import make_env
from jaxpg.normalization import running_stats_init, running_stats_update, scale_reward
from jaxpg.rollout import RolloutOptions, bootstrap_values, env_carry_init, episode_stats, rollout

PLAIN = RolloutOptions(normalize_obs=False, normalize_rewards=False, clip_actions=True)


def probe_network(value_scale=10.0) -> Agent:
    """A parameter-free agent: uniform logits over 2 actions and V(obs) = scale * obs[0]."""

    def apply(params, carry, obs, reset):
        return carry, jnp.zeros(obs.shape[:-1] + (2,)), value_scale * obs[..., 0]

    return Agent(init=lambda key: {}, initial_carry=lambda n: (), apply=apply, has_critic=True)


def run(env, num_envs, num_steps, key=0, options=PLAIN, network=None, carry=None):
    network = network or probe_network()
    carry = carry or env_carry_init(jax.random.key(key), env, num_envs)
    fn = jax.jit(
        lambda k, c: rollout(
            k,
            {},
            c,
            jnp.float32(0.99),
            env=env,
            agent=network,
            dist=action_dist(env.discrete),
            num_steps=num_steps,
            options=options,
        )
    )
    return fn(jax.random.key(key + 1), carry)


# -- the env layer ------------------------------------------------------------------------------


def test_unknown_name_lists_registered_envs():
    with pytest.raises(ValueError, match="CartPol-v1.*CartPole-v1.*Pendulum-v1"):
        make_env("CartPol-v1")
    with pytest.raises(ValueError, match="env"):
        jaxpg.PPOConfig(env="NoSuchEnv-v0")


def test_registry_kwargs_pass_through_and_instances_work():
    env = make_env("DeepSea-bsuite", size=12)
    assert env.env.size == 12
    custom = make_env(CountEnv(limit=3))
    assert custom.name == "CountEnv" and custom.discrete and custom.obs_shape == (2,)
    with pytest.raises(ValueError, match="env_kwargs"):
        make_env(CountEnv(), size=3)


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("max_steps_in_episode", -5, "positive integer"),
        ("max_steps_in_episode", 0, "positive integer"),
        ("max_steps_in_episode", 2.5, "positive integer"),
        ("max_steps_in_episode", 2**31, "positive integer up to 2147483647"),
        ("max_steps_in_episode", 1e12, "positive integer up to 2147483647"),
        ("gravity", float("nan"), "finite"),
        ("masspole", float("inf"), "finite"),
    ],
)
def test_env_params_that_cannot_be_right_are_refused(field, value, allowed):
    params = make_env("CartPole-v1").params.replace(**{field: value})
    with pytest.raises(ValueError, match=rf"env_params: {field}=.*CartPole-v1.*{allowed}"):
        make_env("CartPole-v1", params)
    with pytest.raises(ValueError, match=field):
        jaxpg.PPOConfig(env_params=params)
    # a positive limit and finite numbers pass, also as a float that is whole
    make_env("CartPole-v1", params.replace(**{field: 3.0 if "steps" in field else 1.5}))


def test_spaces_of_builtins():
    cart = make_env("CartPole-v1")
    assert (cart.discrete, cart.action_dim, cart.obs_shape) == (True, 2, (4,))
    pend = make_env("Pendulum-v1")
    assert (pend.discrete, pend.action_dim) == (False, 1)
    np.testing.assert_allclose(pend.action_low, [-2.0])
    np.testing.assert_allclose(pend.action_high, [2.0])
    breakout = make_env("Breakout-MinAtar")
    assert breakout.obs_shape == (10, 10, 4) and breakout.discrete


def test_auto_reset_matches_hand_stepped_single_env():
    """Batched CartPole against a hand-stepped environment built from gymnax's raw pieces:
    ``step_env`` (no reset) gives the state the episode really reached, ``reset_env`` the new
    start. The recorded final observation must be the former, the next observation the latter."""
    env = make_env("CartPole-v1")
    raw, params = env.env, env.params
    num_envs, num_steps = 3, 60
    obs, state = env.reset(jax.random.key(0), num_envs)
    actions = jax.random.randint(jax.random.key(1), (num_steps, num_envs), 0, 2)
    step = jax.jit(env.step)
    ended = 0
    for t in range(num_steps):
        key = jax.random.fold_in(jax.random.key(2), t)
        out = step(key, state, actions[t])
        for i in range(num_envs):
            state_i = jax.tree.map(lambda x: x[i], state)
            key_step, key_reset = env.split_keys(key, num_envs)[i]
            true_obs, true_state, reward, terminated, _ = raw.step_env(
                key_step, state_i, actions[t, i], params
            )
            truncated = raw.is_truncated(true_state, params)
            np.testing.assert_allclose(out.final_obs[i], true_obs, rtol=1e-5, atol=1e-6)
            assert bool(out.terminated[i]) == bool(terminated)
            assert bool(out.truncated[i]) == bool(truncated)
            assert float(out.reward[i]) == float(reward)
            if terminated or truncated:
                ended += 1
                reset_obs, _ = raw.reset_env(key_reset, params)
                np.testing.assert_allclose(out.obs[i], reset_obs, rtol=1e-5, atol=1e-6)
                assert not np.allclose(out.obs[i], out.final_obs[i])
            else:
                np.testing.assert_allclose(out.obs[i], true_obs, rtol=1e-5, atol=1e-6)
        state = out.env_state
    assert ended >= 3, "random CartPole episodes should end within 60 steps"


@pytest.mark.parametrize("name", ["CartPole-v1", "Breakout-MinAtar", "Pendulum-v1"])
def test_presplit_step_equals_gymnax_step(name):
    """``step_with_keys`` (gymnax's auto-reset with presplit keys) against gymnax's own
    ``Environment.step`` given the key whose split is that pair, over many steps and resets.
    Breakout's step is random, so its step key matters too."""
    env = make_env(name)
    num_envs, num_steps = 8, 120
    _, state = env.reset(jax.random.key(0), num_envs)
    gymnax_step = jax.jit(jax.vmap(env.env.step, in_axes=(0, 0, 0, None)))
    ours = jax.jit(env.step_with_keys)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    ended = 0
    for t in range(num_steps):
        step_key = jax.random.fold_in(jax.random.key(1), t)
        keys = jax.random.split(step_key, num_envs)  # one gymnax key per env
        pairs = jax.vmap(jax.random.split)(keys)  # what gymnax's step splits each into
        act_key = jax.random.fold_in(step_key, 7)
        if env.discrete:
            action = jax.random.randint(act_key, (num_envs,), 0, env.action_dim)
        else:
            action = jax.random.uniform(act_key, (num_envs, env.action_dim), minval=-2, maxval=2)
        # Both step from the same state (so float rounding cannot accumulate between them).
        out = ours(pairs, state, action)
        obs, state, reward, terminated, truncated, info = gymnax_step(
            keys, state, action, env.params
        )
        close(out.obs, obs)
        close(out.final_obs, info["final_observation"])
        close(out.reward, reward)
        np.testing.assert_array_equal(out.terminated, terminated)
        np.testing.assert_array_equal(out.truncated, truncated)
        jax.tree.map(close, out.env_state, state)
        ended += int(np.sum(terminated | truncated))
    if name != "Pendulum-v1":  # Pendulum only ends at its 200-step limit
        assert ended >= 3


class _OwnStepEnv(CountEnv):
    """An env that overrides ``step`` itself: jaxpg must call it, not gymnax's auto-reset."""

    def step(self, key, state, action, params=None):
        obs, new_state, reward, terminated, truncated, info = super().step(
            key, state, action, params
        )
        return obs, new_state, reward + 100.0, terminated, truncated, info


def test_env_that_overrides_step_is_stepped_through_its_own_method():
    env = make_env(_OwnStepEnv(limit=3))
    assert not env._standard_step and make_env(CountEnv(limit=3))._standard_step
    _, state = env.reset(jax.random.key(0), 2)
    out = env.step(jax.random.key(1), state, jnp.zeros(2, jnp.int32))
    np.testing.assert_allclose(out.reward, [101.0, 101.0])


# -- truncation and termination -----------------------------------------------------------------


def test_truncation_flags_final_obs_and_bootstrap():
    limit, num_steps, num_envs = 4, 10, 3
    env = make_env(CountEnv(limit=limit))
    _, batch = run(env, num_envs, num_steps)
    t = np.arange(num_steps)
    expected_trunc = (t % limit) == limit - 1  # steps 3 and 7 end an episode
    np.testing.assert_array_equal(batch.truncated, np.repeat(expected_trunc[:, None], num_envs, 1))
    assert not np.any(batch.terminated)
    # The observation acted on counts up and resets; the final obs is the true next state.
    np.testing.assert_array_equal(batch.obs[:, 0, 0], t % limit)
    np.testing.assert_array_equal(batch.final_obs[:, 0, 0], t % limit + 1)

    network = probe_network(value_scale=10.0)
    next_values = bootstrap_values({}, network, batch.final_obs)
    # At a truncated step the bootstrap is V(final obs) = 10 * limit, not V(reset obs) = 0.
    np.testing.assert_allclose(next_values[3], 10.0 * limit)
    advantages, _ = adv_lib.gae(
        batch.reward, batch.value, next_values, batch.terminated, batch.truncated, 0.9, 1.0
    )
    # At the truncated step: delta = 1 + 0.9 * 40 - V(obs=3) = 1 + 36 - 30 = 7.
    np.testing.assert_allclose(advantages[3], 1.0 + 0.9 * 40.0 - 30.0, rtol=1e-6)
    # What the established engines do (bootstrap from the reset observation) would give -29.
    assert not np.allclose(advantages[3], 1.0 + 0.9 * 0.0 - 30.0)


def test_termination_at_limit_gets_no_bootstrap():
    limit, num_steps = 4, 8
    env = make_env(CountEnv(limit=limit, terminate_at_limit=True))
    _, batch = run(env, 2, num_steps)
    expected = (np.arange(num_steps) % limit) == limit - 1
    np.testing.assert_array_equal(batch.terminated[:, 0], expected)
    assert not np.any(batch.truncated)
    next_values = bootstrap_values({}, probe_network(), batch.final_obs)
    advantages, returns = adv_lib.gae(
        batch.reward, batch.value, next_values, batch.terminated, batch.truncated, 0.9, 1.0
    )
    # Terminal step: delta = r - V(s) = 1 - 30, whatever V(final obs) is.
    np.testing.assert_allclose(advantages[3], 1.0 - 30.0, rtol=1e-6)
    np.testing.assert_allclose(returns[3], 1.0, rtol=1e-6)


# -- episode statistics -------------------------------------------------------------------------


def test_episode_statistics_by_hand_and_masked_before_first_end():
    env = make_env(CountEnv(limit=3))
    carry, batch = run(env, 2, 2)  # no episode ends in the first two steps
    assert not np.any(batch.episode_done)
    stats = episode_stats(batch)
    assert np.isnan(stats["episode_return"]) and int(stats["episodes"]) == 0
    np.testing.assert_array_equal(batch.episode_return, 0.0)

    carry, batch = run(env, 2, 7, carry=carry)  # global steps 2..8: ends at 2, 5, 8
    done_steps = np.flatnonzero(batch.episode_done[:, 0])
    np.testing.assert_array_equal(done_steps, [0, 3, 6])
    np.testing.assert_array_equal(batch.episode_return[done_steps, 0], [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(batch.episode_length[done_steps, 0], [3, 3, 3])
    assert float(np.sum(batch.episode_return)) == 2 * 3 * 3.0  # nothing outside ended episodes
    stats = episode_stats(batch)
    assert float(stats["episode_return"]) == 3.0 and int(stats["episodes"]) == 6
    np.testing.assert_array_equal(carry.episode_length, [0, 0])  # step 8 ended episode 3


def test_episode_return_is_raw_even_with_reward_scaling():
    env = make_env(CountEnv(limit=3, reward=5.0))
    opts = RolloutOptions(normalize_obs=True, normalize_rewards=True, clip_actions=True)
    _, batch = run(env, 2, 6, options=opts)
    np.testing.assert_array_equal(batch.episode_return[batch.episode_done], 15.0)
    assert not np.allclose(batch.reward, 5.0)


# -- normalisation -----------------------------------------------------------------------------


def test_running_stats_match_numpy():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(3.0, 2.0, size=(n, 3)).astype(np.float32) for n in (5, 1, 17, 8)]
    stats = running_stats_init((3,))
    for c in chunks:
        stats = running_stats_update(stats, c)
    data = np.concatenate(chunks)
    np.testing.assert_allclose(stats.mean, data.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats.var, data.var(0), rtol=1e-3)


def test_rollout_obs_statistics_match_numpy():
    env = make_env("CartPole-v1")
    opts = RolloutOptions(normalize_obs=True, normalize_rewards=False, clip_actions=True)
    net = mlp_agent(env.obs_shape, env.action_dim, True)
    params = net.init(jax.random.key(0))
    carry = env_carry_init(jax.random.key(0), env, 8)
    fn = jax.jit(
        lambda k, c: rollout(
            k,
            params,
            c,
            jnp.float32(0.99),
            env=env,
            agent=net,
            dist=action_dist(True),
            num_steps=30,
            options=opts,
        )
    )
    new_carry, batch = fn(jax.random.key(1), carry)
    # Replay the recorded actions on the raw environment with the same keys: the statistics
    # must be NumPy's mean and variance of the final observations it produces.
    state = carry.env_state
    step = jax.jit(env.step_with_keys)
    _, env_key = jax.random.split(jax.random.key(1))  # the rollout's (noise key, env key)
    keys = env.split_keys(env_key, 8, leading=(30,))
    raw_final = []
    for t in range(30):
        out = step(keys[t], state, batch.action[t])
        raw_final.append(np.asarray(out.final_obs))
        state = out.env_state
    data = np.concatenate(raw_final)
    np.testing.assert_allclose(new_carry.obs_stats.mean, data.mean(0), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(new_carry.obs_stats.var, data.var(0), rtol=2e-3, atol=1e-5)


def test_reward_scaling_matches_numpy_loop():
    env = make_env(CountEnv(limit=4, reward=2.0))
    opts = RolloutOptions(normalize_obs=False, normalize_rewards=True, clip_actions=True)
    gamma = 0.99
    _, batch = run(env, 1, 9, options=opts)
    ret, seen = 0.0, []
    for t in range(9):
        ret = ret * gamma + 2.0  # the discounted return, restarted after each episode end
        seen.append(ret)
        if t % 4 == 3:
            ret = 0.0
    # NumPy reference: the reward divided by the std of every return seen so far. From the
    # second step on the running statistics' tiny prior (count 1e-4, var 1) weighs < 1e-3.
    numpy_ref = [2.0 / np.sqrt(np.var(seen[: t + 1]) + 1e-8) for t in range(9)]
    np.testing.assert_allclose(batch.reward[1:, 0], numpy_ref[1:], rtol=2e-3)
    # And exactly what the running statistics give, the first step included.
    stats = running_stats_init(())
    ref = []
    for t in range(9):
        stats = running_stats_update(stats, jnp.asarray([seen[t]]))
        ref.append(float(scale_reward(stats, 2.0)))
    np.testing.assert_allclose(batch.reward[:, 0], ref, rtol=1e-5)


def test_constant_reward_scale_scales_what_is_learned_not_what_is_reported():
    env = make_env(CountEnv(limit=4, reward=2.0))
    _, plain = run(env, 2, 9)
    opts = RolloutOptions(False, False, True, reward_scale=10.0)
    _, scaled = run(env, 2, 9, options=opts)
    np.testing.assert_array_equal(scaled.reward, 20.0 * np.ones((9, 2)))
    np.testing.assert_array_equal(scaled.episode_return, plain.episode_return)
    assert float(np.max(scaled.episode_return)) == 8.0  # 4 steps of the raw reward 2
    # before the running std: the scaled discounted return is what gets normalised
    norm = RolloutOptions(False, True, True, reward_scale=10.0)
    _, both = run(env, 1, 9, options=norm)
    _, unscaled = run(env, 1, 9, options=RolloutOptions(False, True, True))
    np.testing.assert_allclose(both.reward[1:], unscaled.reward[1:], rtol=1e-3)
    with pytest.raises(ValueError, match="reward_scale"):
        jaxpg.PPOConfig(reward_scale=0.0)


# -- continuous actions, image observations, vmapping ---------------------------------------


def test_continuous_rollout_clips_env_action_but_keeps_raw_sample():
    env = make_env("Pendulum-v1")
    net = mlp_agent(env.obs_shape, env.action_dim, False)
    params = net.init(jax.random.key(0))
    # A huge log std makes most samples fall outside [-2, 2].
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: x + 3.0 if "log_std" in jax.tree_util.keystr(p) else x, params
    )
    carry = env_carry_init(jax.random.key(0), env, 4)
    _, batch = jax.jit(
        lambda k, c: rollout(
            k,
            params,
            c,
            jnp.float32(0.99),
            env=env,
            agent=net,
            dist=action_dist(False),
            num_steps=20,
            options=PLAIN,
        )
    )(jax.random.key(1), carry)
    assert batch.action.shape == (20, 4, 1)
    assert np.max(np.abs(batch.action)) > 2.0  # the raw sample is kept for the loss
    _, dist_params, _ = unroll(net, params, (), batch.obs, batch.reset)
    np.testing.assert_allclose(
        batch.log_prob, action_dist(False).log_prob(dist_params, batch.action), rtol=1e-5, atol=1e-5
    )
    # Pendulum's reward is -(theta^2 + .1 thetadot^2 + .001 u^2) with the clipped u: >= -16.3.
    assert np.min(batch.reward) >= -(np.pi**2 + 0.1 * 64 + 0.001 * 4) - 1e-4


def test_minatar_rollout_with_thousands_of_envs():
    env = make_env("Breakout-MinAtar")
    net = mlp_agent(env.obs_shape, env.action_dim, True)
    params = net.init(jax.random.key(0))
    carry = env_carry_init(jax.random.key(0), env, 2048)
    _, batch = jax.jit(
        lambda k, c: rollout(
            k,
            params,
            c,
            jnp.float32(0.99),
            env=env,
            agent=net,
            dist=action_dist(True),
            num_steps=4,
            options=PLAIN,
        )
    )(jax.random.key(1), carry)
    assert batch.obs.shape == (4, 2048, 10, 10, 4)
    assert batch.value.shape == (4, 2048)


def test_rollout_vmapped_over_seeds_equals_separate_rollouts():
    env = make_env("CartPole-v1")
    net = mlp_agent(env.obs_shape, env.action_dim, True)
    params = net.init(jax.random.key(0))

    def one(key):
        reset_key, roll_key = jax.random.split(key)
        carry = env_carry_init(reset_key, env, 5)
        return rollout(
            roll_key,
            params,
            carry,
            jnp.float32(0.99),
            env=env,
            agent=net,
            dist=action_dist(True),
            num_steps=40,
            options=PLAIN,
        )[1]

    keys = jax.random.split(jax.random.key(7), 2)
    both = jax.jit(jax.vmap(one))(keys)
    for i in range(2):
        single = jax.jit(one)(keys[i])
        np.testing.assert_array_equal(both.action[i], single.action)
        np.testing.assert_array_equal(both.terminated[i], single.terminated)
        np.testing.assert_array_equal(both.truncated[i], single.truncated)
        np.testing.assert_allclose(both.obs[i], single.obs, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(both.log_prob[i], single.log_prob, rtol=1e-5, atol=1e-6)
