"""TRPO: the Fisher-vector product against a dense Hessian, conjugate gradient against
numpy.linalg.solve, the trust region and the line search on real updates, a probe, bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from toy_envs import ProbeEnv

import jaxpg
from jaxpg import trust_region
from jaxpg.agents import mlp_agent, unroll
from jaxpg.distributions import CATEGORICAL, DIAG_GAUSSIAN, action_dist
from jaxpg.rollout import RolloutOptions, rollout
from jaxpg.trpo import check_actor_critic_apart
from jaxpg.updates import Batch

PLAIN = RolloutOptions(normalize_obs=False, normalize_rewards=False, clip_actions=True)


# -- the pieces ------------------------------------------------------------------------------


def test_kl_against_closed_forms():
    p, q = jnp.asarray([[1.0, 0.0, -1.0]]), jnp.asarray([[0.0, 0.5, 0.2]])
    pp, qq = np.exp(p) / np.exp(p).sum(), np.exp(q) / np.exp(q).sum()
    np.testing.assert_allclose(CATEGORICAL.kl(p, q), [(pp * np.log(pp / qq)).sum()], rtol=1e-6)
    m_p, m_q = jnp.asarray([[0.3, -1.0]]), jnp.asarray([[0.0, 0.5]])
    ls_p, ls_q = jnp.asarray([0.1, -0.4]), jnp.asarray([[0.2, 0.3]])  # shared and per-row log std
    s_p, s_q = np.exp(np.asarray(ls_p)), np.exp(np.asarray(ls_q))[0]
    want = (
        np.log(s_q / s_p) + (s_p**2 + (np.asarray(m_p - m_q)[0]) ** 2) / (2 * s_q**2) - 0.5
    ).sum()
    np.testing.assert_allclose(DIAG_GAUSSIAN.kl((m_p, ls_p), (m_q, ls_q)), [want], rtol=1e-5)
    np.testing.assert_allclose(DIAG_GAUSSIAN.kl((m_p, ls_p), (m_p, ls_p)), [0.0], atol=1e-7)


@pytest.mark.parametrize("discrete", [True, False])
def test_fisher_vector_product_equals_the_dense_hessian_of_the_mean_kl(discrete):
    agent = mlp_agent((2,), 3 if discrete else 2, discrete, hidden_sizes=(3,))
    dist = action_dist(discrete)
    params = agent.init(jax.random.key(0))
    params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.key(1), x.shape), params)
    obs = jax.random.normal(jax.random.key(2), (7, 2))
    mask = jnp.asarray([1, 1, 0, 1, 1, 1, 0], jnp.float32)

    def dist_of(theta):
        return agent.apply(theta, (), obs, jnp.zeros(7, bool))[1]

    old = dist_of(params)

    def mean_kl(theta):
        return jaxpg.losses.masked_mean(dist.kl(old, dist_of(theta)), mask)

    flat, unravel = ravel_pytree(params)
    dense = jax.hessian(lambda f: mean_kl(unravel(f)))(flat)
    damping = 0.1
    fvp = jax.jit(trust_region.fisher_vector_product(mean_kl, params, damping))
    for seed in range(3):
        v = jax.random.normal(jax.random.key(10 + seed), flat.shape)
        got = ravel_pytree(fvp(unravel(v)))[0]
        np.testing.assert_allclose(got, dense @ v + damping * v, rtol=1e-4, atol=1e-5)


def test_conjugate_gradient_matches_numpy_solve():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(6, 6)).astype(np.float32)
    a = m @ m.T + 0.1 * np.eye(6, dtype=np.float32)  # symmetric positive definite, damped
    b = rng.normal(size=6).astype(np.float32)
    # As a pytree of two leaves, as parameters are.
    split = lambda x: {"w": x[:4], "b": x[4:]}
    join = lambda t: jnp.concatenate([t["w"], t["b"]])
    matvec = lambda t: split(jnp.asarray(a) @ join(t))
    x = jax.jit(lambda b: trust_region.conjugate_gradient(matvec, b, iters=30))(
        split(jnp.asarray(b))
    )
    np.testing.assert_allclose(
        join(x), np.linalg.solve(a.astype(np.float64), b), rtol=1e-3, atol=1e-4
    )


def test_line_search_takes_the_first_candidate_inside_the_region_and_rejects_bit_exactly():
    params = {"x": jnp.asarray([1.0, -2.0])}
    step = {"x": jnp.asarray([1.0, 1.0])}
    # Objective grows along the step; "KL" is the squared length of the move.
    f = lambda t: (jnp.sum(t["x"]), jnp.sum(jnp.square(t["x"] - params["x"])))
    got = trust_region.backtracking_line_search(f, params, step, jnp.float32(-1.0), 0.5, 0.5, 4)
    # Candidates 1, .5, .25, ...: KL 2, .5, .125: the second (one shrink) is the first inside.
    assert bool(got.accepted) and int(got.shrinks) == 1
    np.testing.assert_allclose(got.params["x"], [1.5, -1.5])
    assert float(got.kl) == pytest.approx(0.5) and float(got.improvement) == pytest.approx(1.0)
    worse = lambda t: (-jnp.sum(t["x"]), jnp.float32(0.0))  # never improves
    rejected = trust_region.backtracking_line_search(
        worse, params, step, jnp.float32(1.0), 0.5, 0.5, 4
    )
    assert not bool(rejected.accepted) and int(rejected.shrinks) == 5
    assert np.array_equal(rejected.params["x"], params["x"])


# -- real updates ------------------------------------------------------------------------------


def one_update(config, *, zero_advantages=False, key=0):
    """A rollout, the targets and one TRPO update, by hand through the public protocol."""
    agent = jaxpg.make_agent(config)
    algorithm = jaxpg.make_algorithm(config, agent)
    state = jaxpg.init_state(config, jax.random.key(key))
    env = config.env_spec
    _, batch = rollout(
        jax.random.key(key + 1),
        state.params,
        state.env,
        jnp.float32(0.99),
        env=env,
        agent=agent,
        dist=action_dist(env.discrete),
        num_steps=config.num_steps,
        options=PLAIN,
    )
    targets, _ = algorithm.targets(batch, state.hparams, state.algo_state)
    if zero_advantages:
        targets = targets._replace(advantages=jnp.zeros_like(targets.advantages))
    out = jax.jit(algorithm.update)(
        state.params,
        state.opt_state,
        state.algo_state,
        Batch(batch, targets, ()),
        state.hparams,
        state.update_step,
        jax.random.key(key + 2),
    )
    return agent, state, batch, out


def actor(params):
    p = params["params"]
    return {k: v for k, v in p.items() if k not in ("critic_torso", "value_head")}


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_an_accepted_step_stays_inside_the_trust_region(env):
    config = jaxpg.TRPOConfig(env=env, num_envs=4, num_steps=64, critic_minibatches=2)
    for key in range(3):
        agent, state, batch, out = one_update(config, key=key)
        assert bool(out.finite) and float(out.metrics["step_accepted"]) == 1.0
        # The KL between the policies before and after, computed here on the batch.
        dist = action_dist(config.env_spec.discrete)
        old = unroll(agent, state.params, (), batch.obs, batch.reset)[1]
        new = unroll(agent, out.params, (), batch.obs, batch.reset)[1]
        kl = float(jnp.mean(dist.kl(old, new)))
        assert kl == pytest.approx(float(out.metrics["kl"]), rel=1e-4, abs=1e-7)
        assert 0.0 < kl <= config.target_kl * (1 + 1e-5)
        assert float(out.metrics["surrogate_improvement"]) > 0


def test_a_rejected_step_leaves_the_policy_bit_identical():
    config = jaxpg.TRPOConfig(num_envs=4, num_steps=64, critic_minibatches=2)
    _, state, _, out = one_update(config, zero_advantages=True)  # nothing can improve
    assert float(out.metrics["step_accepted"]) == 0.0
    assert int(out.metrics["line_search_steps"]) == config.line_search_steps + 1
    assert float(out.metrics["kl"]) == 0.0
    for a, b in zip(jax.tree.leaves(actor(out.params)), jax.tree.leaves(actor(state.params))):
        assert np.array_equal(a, b)
    # The critic was still fitted.
    assert not np.array_equal(
        out.params["params"]["value_head"]["kernel"], state.params["params"]["value_head"]["kernel"]
    )


def test_probe_one_update_raises_the_better_actions_probability():
    config = jaxpg.TRPOConfig(
        env=ProbeEnv("action"), num_envs=16, num_steps=8, critic_minibatches=2
    )
    agent, state, _, out = one_update(config)
    s0 = jnp.asarray([[1.0, 0.0]])
    p1 = lambda params: float(
        jax.nn.softmax(agent.apply(params, (), s0, jnp.ones(1, bool))[1])[0, 1]
    )
    assert p1(out.params) > p1(state.params) + 0.01


@pytest.mark.parametrize(
    "field, value",
    [
        ("target_kl", 0.0),
        ("target_kl", -1.0),
        ("cg_iters", 0),
        ("line_search_steps", 0),
        ("line_search_shrink", 1.0),
        ("line_search_shrink", 0.0),
        ("shared_network", True),
        ("critic_minibatches", 3),
        ("total_timesteps", 512),  # less than one update's 8 x 128 steps
        ("cg_damping", -0.1),
    ],
)
def test_bad_trpo_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"{field}="):
        jaxpg.TRPOConfig(**{field: value})


def test_trpo_runs_vmapped_and_swept_in_one_program():
    config = jaxpg.TRPOConfig(
        num_envs=4, num_steps=32, critic_minibatches=2, total_timesteps=4 * 32 * 3
    )
    hparams, _ = jaxpg.sweep.grid(config, target_kl=[0.005, 0.02], cg_damping=[0.1])
    keys = jax.random.split(jax.random.key(0), 2)
    result = jax.jit(jaxpg.sweep.make_sweep(config))(keys, hparams)
    kl = np.asarray(result.metrics["kl"])  # [2 settings, 2 seeds, 3 updates]
    assert kl.shape == (2, 2, 3)
    accepted = np.asarray(result.metrics["step_accepted"]) > 0
    assert np.all(kl[0][accepted[0]] <= 0.005 * (1 + 1e-5))
    assert np.all(kl[1][accepted[1]] <= 0.02 * (1 + 1e-5))


def test_a_users_agent_whose_actor_and_critic_share_parameters_is_refused_at_build_time():
    """The config's ``shared_network`` flag is refused by the config; a user's own agent can
    share a torso without it. The value's and the policy's parameters are read from the
    program's data flow and must not meet."""
    config = jaxpg.TRPOConfig(total_timesteps=8 * 128 * 2)

    def init(key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        return {
            "torso": 0.1 * jax.random.normal(k1, (4, 8)),
            "pi": 0.1 * jax.random.normal(k2, (8, 2)),
            "v": 0.1 * jax.random.normal(k3, (8,)),
            "v_torso": 0.1 * jax.random.normal(k4, (4, 8)),
        }

    def shared(params, carry, obs, reset):
        h = jnp.tanh(obs @ params["torso"])
        return carry, h @ params["pi"], h @ params["v"]

    def apart(params, carry, obs, reset):
        h = jnp.tanh(obs @ params["torso"])
        hv = jnp.tanh(obs @ params["v_torso"])
        return carry, h @ params["pi"], hv @ params["v"]

    with pytest.raises(ValueError, match=r"agent: TRPO .*\['torso'\]"):
        jaxpg.make_train(config, agent=(init, shared))
    policy, value = jaxpg.agents.parameters_read(
        jaxpg.agents.as_agent((init, apart), config), config.env_spec
    )
    assert policy == {"['torso']", "['pi']"} and value == {"['v_torso']", "['v']"}
    result = jax.jit(jaxpg.make_train(config, agent=(init, apart)))(jax.random.key(0))
    assert not np.any(np.asarray(result.metrics["nonfinite"]))


@pytest.mark.parametrize(
    "kw",
    [
        dict(env="CartPole-v1"),
        dict(env="Pendulum-v1"),
        dict(env="Breakout-MinAtar", network="cnn"),
        dict(env="CartPole-v1", network="gru"),
        dict(env="Pendulum-v1", network="lstm"),
    ],
)
def test_trpos_built_in_networks_keep_actor_and_critic_apart(kw):
    config = jaxpg.TRPOConfig(**kw)
    policy, value = jaxpg.agents.parameters_read(
        jaxpg.agents.as_agent(None, config), config.env_spec
    )
    assert policy and value and not policy & value
    # the same network for PPO shares what PPO's defaults share (the recurrent cell)
    if kw.get("network") in ("gru", "lstm"):
        ppo = jaxpg.PPOConfig(**kw)
        policy, value = jaxpg.agents.parameters_read(jaxpg.agents.as_agent(None, ppo), ppo.env_spec)
        assert policy & value


def test_what_the_value_reads_through_a_recurrent_carry_counts():
    """A recurrent agent whose value reads last step's carry: one step alone shows the value
    reading only ``v``, but over a sequence it reads the actor's cell (``w``, ``u``) through the
    carry, which the critic's Adam would then move."""
    spec = jaxpg.TRPOConfig().env_spec

    def init(key):
        ks = jax.random.split(key, 4)
        shapes = {"w": (4, 8), "u": (8, 8), "pi": (8, 2), "v": (8,)}
        return {k: 0.1 * jax.random.normal(kk, s) for kk, (k, s) in zip(ks, shapes.items())}

    def apply(params, carry, obs, reset):
        h = jnp.tanh(obs @ params["w"] + carry @ params["u"])
        return h, h @ params["pi"], carry @ params["v"]

    agent = jaxpg.agents.Agent(init, lambda n: jnp.zeros((n, 8)), apply, True)
    policy, value = jaxpg.agents.parameters_read(agent, spec)
    assert policy == {"['w']", "['u']", "['pi']"}
    assert value == {"['w']", "['u']", "['v']"}
    with pytest.raises(ValueError, match=r"\['u'\], \['w'\]"):
        check_actor_critic_apart(agent, spec)
