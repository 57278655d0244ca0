"""Group-relative advantages (GRPO, Dr. GRPO, RLOO), grouped resets, the k3 KL estimator, the
reference policy, and PPO with one reward per trajectory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_envs import CountEnv, ScaledBanditEnv
from trees import assert_trees_equal

import jaxpg
from jaxpg.advantages import group_advantages
from jaxpg.distributions import CATEGORICAL, DIAG_GAUSSIAN
from jaxpg.grpo import group_targets
from jaxpg.losses import kl_k3
from jaxpg.rollout import env_carry_init


def numpy_group_advantages(R, kind, eps=1e-8):
    out = np.zeros_like(R)
    for g in range(R.shape[0]):
        r = R[g]
        for i in range(len(r)):
            if kind == "std":
                out[g, i] = (r[i] - r.mean()) / (r.std() + eps)
            elif kind == "mean":
                out[g, i] = r[i] - r.mean()
            else:
                out[g, i] = r[i] - np.mean(np.delete(r, i))
    return out


@pytest.mark.parametrize("kind", ["std", "mean", "leave_one_out"])
def test_group_advantages_against_numpy(kind):
    R = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32) * 3
    np.testing.assert_allclose(
        group_advantages(R, kind), numpy_group_advantages(R, kind), rtol=1e-5, atol=1e-5
    )


def test_rloo_is_a_rescaled_dr_grpo():
    R = np.random.default_rng(1).normal(size=(3, 6)).astype(np.float32)
    G = R.shape[-1]
    np.testing.assert_allclose(
        group_advantages(R, "leave_one_out"),
        G / (G - 1) * group_advantages(R, "mean"),
        rtol=1e-5,
        atol=1e-6,
    )
    assert np.all(np.asarray(group_advantages(np.ones((2, 4)), "std")) == 0.0)  # no signal, no NaN


@pytest.mark.parametrize("kind", ["std", "mean", "leave_one_out"])
def test_group_targets_with_masks(kind):
    rng = np.random.default_rng(2)
    T, G, groups = 6, 3, 2
    N = G * groups
    reward = rng.normal(size=(T, N)).astype(np.float32)
    done = np.zeros((T, N), bool)
    ends = [1, 5, 2, 3, 0, 5]  # each member's first episode ends at this step
    for n, t in enumerate(ends):
        done[t, n] = True
    done[4, 4] = True  # a second episode of member 4: not counted
    batch = jaxpg.rollout.Transition(*([None] * len(jaxpg.rollout.Transition._fields)))._replace(
        reward=jnp.asarray(reward), terminated=jnp.asarray(done), truncated=jnp.zeros((T, N), bool)
    )
    targets, _ = group_targets(G, kind)(batch, None, ())
    mask = np.stack([(np.arange(T) <= t).astype(np.float32) for t in ends], axis=1)
    R = (reward * mask).sum(0)
    A = numpy_group_advantages(R.reshape(groups, G), kind).reshape(-1)
    np.testing.assert_array_equal(targets.mask, mask)
    np.testing.assert_allclose(targets.advantages, mask * A[None], rtol=1e-5, atol=1e-5)


def test_group_members_start_identically_and_groups_differ():
    env = jaxpg.make_env("CartPole-v1")  # its reset draws the start from the key
    carry = env_carry_init(jax.random.key(0), env, 12, group_size=4)
    obs = np.asarray(carry.obs).reshape(3, 4, -1)
    for g in range(3):
        assert np.all(obs[g] == obs[g, :1])
    assert not np.allclose(obs[0, 0], obs[1, 0]) and not np.allclose(obs[1, 0], obs[2, 0])
    # The GRPO algorithm's own start does the same, every update from a new key.
    config = jaxpg.GRPOConfig(num_groups=3, group_size=4, total_timesteps=12 * 500)
    algorithm = jaxpg.make_algorithm(config, jaxpg.make_agent(config))
    a = np.asarray(algorithm.start(jax.random.key(1), carry).obs).reshape(3, 4, -1)
    b = np.asarray(algorithm.start(jax.random.key(2), carry).obs).reshape(3, 4, -1)
    assert np.all(a == a[:, :1]) and not np.allclose(a, b)


@pytest.mark.parametrize("discrete", [True, False])
def test_k3_estimator(discrete):
    key = jax.random.key(0)
    if discrete:
        dist, p = CATEGORICAL, jnp.asarray([[0.5, -0.3, 1.0]])
        q = jnp.asarray([[0.0, 0.4, 0.2]])
        shape = (200_000, 3)
        broadcast = lambda d: jnp.broadcast_to(d, shape)
    else:
        dist, p = DIAG_GAUSSIAN, (jnp.asarray([[0.3, -0.2]]), jnp.asarray([0.1, -0.3]))
        q = (jnp.asarray([[0.0, 0.1]]), jnp.asarray([0.3, -0.1]))
        shape = (200_000, 2)
        broadcast = lambda d: (jnp.broadcast_to(d[0], shape), d[1])
    pb, qb = broadcast(p), broadcast(q)
    actions = dist.sample(key, pb)
    lp, lq = dist.log_prob(pb, actions), dist.log_prob(qb, actions)
    per_sample = jnp.expm1(lq - lp) - (lq - lp)
    assert float(jnp.min(per_sample)) >= 0.0
    assert float(kl_k3(lp, lp)) == 0.0
    analytic = float(dist.kl(p, q)[0])
    assert float(kl_k3(lp, lq)) == pytest.approx(analytic, rel=0.03)


def test_group_relative_advantage_has_the_right_sign_where_a_global_baseline_does_not():
    config = jaxpg.GRPOConfig(
        env=ScaledBanditEnv(), num_groups=64, group_size=8, total_timesteps=512
    )
    agent = jaxpg.make_agent(config)
    algorithm = jaxpg.make_algorithm(config, agent)
    state = jaxpg.init_state(config, jax.random.key(0))
    carry = algorithm.start(jax.random.key(1), state.env)
    _, batch = jaxpg.rollout.rollout(
        jax.random.key(2),
        state.params,
        carry,
        jnp.float32(0.99),
        env=config.env_spec,
        agent=agent,
        dist=CATEGORICAL,
        num_steps=1,
        options=jaxpg.train.rollout_options(config),
    )
    targets, _ = algorithm.targets(batch, state.hparams, state.algo_state)
    action, scale = np.asarray(batch.action[0]), np.asarray(batch.obs[0, :, 0])
    adv, reward = np.asarray(targets.advantages[0]), np.asarray(batch.reward[0])
    groups_mixed = [g for g in range(64) if 0 < action[g * 8 : (g + 1) * 8].sum() < 8]
    rows = np.concatenate([np.arange(g * 8, (g + 1) * 8) for g in groups_mixed])
    assert np.all(adv[rows][action[rows] == 1] > 0) and np.all(adv[rows][action[rows] == 0] < 0)
    # One global baseline (the batch mean) blames the better action at s = 1.
    global_adv = reward - reward.mean()
    assert np.any(global_adv[(action == 1) & (scale == 1.0)] < 0)


def test_grpo_has_no_critic_and_its_reference_follows_reference_every():
    base = dict(
        env=CountEnv(limit=4),
        num_groups=2,
        group_size=2,
        num_epochs=1,
        num_minibatches=1,
        total_timesteps=4 * 4 * 3,
        kl_coef=0.1,
    )
    fixed = jax.jit(jaxpg.make_train(jaxpg.GRPOConfig(**base)))(jax.random.key(0))
    assert "value_head" not in fixed.params.network["params"]
    initial = jaxpg.init_state(jaxpg.GRPOConfig(**base), jax.random.key(0))
    assert_trees_equal(fixed.state.algo_state.reference, initial.params)  # the initial policy
    moving = jax.jit(jaxpg.make_train(jaxpg.GRPOConfig(**base, reference_every=1)))(
        jax.random.key(0)
    )
    assert_trees_equal(moving.state.algo_state.reference, moving.state.params)
    for name in ("kl_ref", "group_return_std"):
        assert moving.metrics[name].shape == (3,)
    np.testing.assert_array_equal(
        moving.metrics["group_return_std"], 0.0
    )  # CountEnv: equal returns


@pytest.mark.parametrize(
    "field, value, extra",
    [
        ("group_size", 1, {}),
        ("num_envs", 10, {}),
        ("advantage", "median", {}),
        ("num_steps", 100, {}),
        ("reference_every", -1, {}),
        ("kl_coef", -0.1, {}),
    ],
)
def test_bad_grpo_config_names_the_field(field, value, extra):
    with pytest.raises(ValueError, match=f"{field}="):
        jaxpg.GRPOConfig(**{field: value}, **extra)


def test_ppo_trajectory_mode_gives_every_step_the_episode_return():
    config = jaxpg.PPOConfig(
        env=CountEnv(limit=5),
        mode="trajectory",
        num_steps=8,
        num_envs=2,
        num_minibatches=1,
        baseline="none",
        normalize_advantages=False,
        total_timesteps=16,
    )
    assert not config.has_critic
    agent = jaxpg.make_agent(config)
    algorithm = jaxpg.make_algorithm(config, agent)
    state = jaxpg.init_state(config, jax.random.key(0))
    carry = algorithm.start(jax.random.key(1), state.env)
    assert np.all(np.asarray(carry.episode_start))  # a fresh reset every update
    _, batch = jaxpg.rollout.rollout(
        jax.random.key(2),
        state.params,
        carry,
        jnp.float32(0.99),
        env=config.env_spec,
        agent=agent,
        dist=CATEGORICAL,
        num_steps=8,
        options=jaxpg.train.rollout_options(config),
    )
    targets, _ = algorithm.targets(batch, state.hparams, state.algo_state)
    np.testing.assert_array_equal(targets.advantages[:, 0], [5, 5, 5, 5, 5, 0, 0, 0])
    with pytest.raises(ValueError, match="baseline="):
        jaxpg.PPOConfig(baseline="moving_average")  # GAE needs the critic
    assert jaxpg.PPOConfig(mode="trajectory", num_steps=None).num_steps == 500
