"""The built-in recurrent policies (``network="gru"`` / ``"lstm"``) and hidden observations
(``keep_obs``, :class:`jaxpg.wrappers.MaskObservation`): the replay identity with episodes
ending mid-rollout, the carry reset, the truncation bootstrap from the carry that reached the
final observation (against a hand-stepped loop), every algorithm on a recurrent agent, the
evaluation and CLI paths, and a memory probe that a feed-forward policy cannot solve."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_envs import CountEnv, DelayedRecallEnv

import jaxpg
from jaxpg import updates
from jaxpg.agents import is_recurrent, make_agent, unroll
from jaxpg.distributions import CATEGORICAL
from jaxpg.evaluate import evaluate
from jaxpg.rollout import RolloutOptions, env_carry_init, rollout
from jaxpg.wrappers import MaskObservation

PLAIN = RolloutOptions(normalize_obs=False, normalize_rewards=False, clip_actions=True)
CELLS = ["gru", "lstm"]


def short_cartpole(cell, **kw):
    """CartPole without velocities, with a 7-step time limit: in 24 steps episodes end by
    truncation and, under random actions, sometimes by termination, mid-rollout."""
    env = MaskObservation("CartPole-v1", keep=(0, 2))
    params = env.default_params.replace(max_steps_in_episode=7)
    base = dict(
        env=env,
        env_params=params,
        network=cell,
        recurrent_size=16,
        hidden_sizes=(8,),
        num_envs=4,
        num_steps=24,
        num_minibatches=2,
        total_timesteps=4 * 24 * 2,
    )
    return jaxpg.PPOConfig(**{**base, **kw})


def run_rollout(config, agent, params, agent_carry, key=3):
    carry = env_carry_init(
        jax.random.key(1), config.env_spec, config.num_envs, agent_carry=agent_carry
    )
    carry = carry.replace(episode_start=jnp.zeros(config.num_envs, bool))  # mid-episode start
    return carry, jax.jit(
        lambda c: rollout(
            jax.random.key(key),
            params,
            c,
            jnp.float32(0.99),
            env=config.env_spec,
            agent=agent,
            dist=CATEGORICAL,
            num_steps=config.num_steps,
            options=PLAIN,
        )
    )(carry)[1]


def random_carry(agent, n, key):
    shapes = jax.eval_shape(lambda: agent.initial_carry(n))
    leaves, tree = jax.tree.flatten(shapes)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [jax.random.normal(k, s.shape) for k, s in zip(keys, leaves)])


@pytest.mark.parametrize("cell", CELLS)
def test_replay_from_the_start_carry_gives_the_rollouts_log_probs_and_values(cell):
    config = short_cartpole(cell)
    agent = make_agent(config)
    assert is_recurrent(agent)
    params = agent.init(jax.random.key(0))
    start = random_carry(agent, 4, jax.random.key(2))  # a carry from an episode in progress
    carry, batch = run_rollout(config, agent, params, start)
    assert np.any(batch.truncated[1:]) and np.any(batch.reset[1:])  # episodes end mid-rollout
    _, dist_params, values = jax.jit(functools.partial(unroll, agent))(
        params, start, batch.obs, batch.reset
    )
    np.testing.assert_allclose(
        CATEGORICAL.log_prob(dist_params, batch.action), batch.log_prob, atol=2e-6, rtol=0
    )
    np.testing.assert_allclose(values, batch.value, atol=2e-6, rtol=0)
    # Through the trainer's sequence minibatches: at the rollout's parameters every ratio is 1.
    algorithm = jaxpg.registry.make_algorithm(config, agent)
    hp = config.hparams()
    _, algo_state = algorithm.init(params, hp)
    targets, _ = algorithm.targets(batch, hp, algo_state)
    mbs = updates.split_minibatches(
        jax.random.key(4), jaxpg.Batch(batch, targets, start), 2, sequences=True
    )
    for m in range(2):
        mb = jax.tree.map(lambda x: x[m], mbs)
        _, dist_params, values = unroll(agent, params, mb.agent_carry, mb.obs, mb.reset)
        np.testing.assert_allclose(
            CATEGORICAL.log_prob(dist_params, mb.action), mb.old_log_prob, atol=2e-6, rtol=0
        )


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("apart,discrete", [(False, True), (True, False)])
def test_the_built_in_replay_equals_the_one_step_scanned_over_time(cell, apart, discrete):
    # The agent's own replay (the encoder and the heads over all steps at once, the cell
    # scanned) against jax.lax.scan of its one-step apply, resets mid-sequence included: the
    # outputs, the final carry and the gradient of a loss through them.
    from jaxpg.agents import recurrent_agent, scan_apply

    agent = recurrent_agent(
        (3,), 2, discrete, cell=cell, recurrent_size=16, hidden_sizes=(8, 8), critic_apart=apart
    )
    assert agent.replay is not None
    params = agent.init(jax.random.key(0))
    T, N = 9, 4
    obs = jax.random.normal(jax.random.key(1), (T, N, 3))
    reset = jnp.zeros((T, N), bool).at[3, 1].set(True).at[0, 2].set(True).at[6, :2].set(True)
    start = random_carry(agent, N, jax.random.key(2))

    def loss(replay, params):
        carry, dist_params, value = replay(params, start, obs, reset)
        total = sum(jnp.sum(jnp.sin(x)) for x in jax.tree.leaves((carry, dist_params, value)))
        return total, (carry, dist_params, value)

    scanned = functools.partial(scan_apply, agent.apply)
    (want_loss, want), want_grad = jax.jit(jax.value_and_grad(
        functools.partial(loss, scanned), has_aux=True))(params)  # fmt: skip
    (got_loss, got), got_grad = jax.jit(jax.value_and_grad(
        functools.partial(loss, agent.replay), has_aux=True))(params)  # fmt: skip
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=1e-6, rtol=1e-6)
    for g, w in zip(jax.tree.leaves(got_grad), jax.tree.leaves(want_grad)):
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-5)
    assert jax.tree.structure(got_grad) == jax.tree.structure(want_grad)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_a_carry_after_a_done_equals_the_initial_carry(cell):
    agent = make_agent(short_cartpole(cell))
    params = agent.init(jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (3, 2))
    stale = random_carry(agent, 3, jax.random.key(2))
    reset = jnp.array([True, False, True])
    out = agent.apply(params, stale, obs, reset)
    fresh = agent.apply(params, agent.initial_carry(3), obs, jnp.ones(3, bool))
    for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(fresh)):
        np.testing.assert_array_equal(got[np.array([0, 2])], want[np.array([0, 2])])
        assert not np.allclose(got[1], want[1])  # the stale carry is kept where no reset


@pytest.mark.parametrize("cell", CELLS)
def test_truncation_bootstraps_from_the_carry_that_reached_the_final_observation(cell):
    limit = 4
    env = jaxpg.make_env(CountEnv(limit=limit))  # truncated every 4 steps, nothing random
    config = jaxpg.PPOConfig(
        env=env.env,
        network=cell,
        recurrent_size=8,
        hidden_sizes=(8,),
        num_envs=2,
        num_steps=10,
        num_minibatches=1,
        total_timesteps=20,
    )
    agent = make_agent(config)
    params = agent.init(jax.random.key(0))
    start = random_carry(agent, 2, jax.random.key(5))
    carry = env_carry_init(jax.random.key(1), config.env_spec, 2, agent_carry=start)
    _, batch = jax.jit(
        lambda c: rollout(
            jax.random.key(3),
            params,
            c,
            jnp.float32(0.99),
            env=config.env_spec,
            agent=agent,
            dist=CATEGORICAL,
            num_steps=10,
            options=PLAIN,
        )
    )(carry)
    # By hand: step the agent through one episode's observations [t, 1], t = 0..3 (reset at the
    # first), then read the final observation [4, 1] from the carry that got there, no reset.
    c = start
    for t in range(limit):
        obs = jnp.tile(jnp.array([[float(t), 1.0]]), (2, 1))
        c, _, v = agent.apply(params, c, obs, jnp.full(2, t == 0))
        np.testing.assert_allclose(batch.value[t], v, atol=2e-6)  # a fresh start: step 0 resets
    _, _, v_final = agent.apply(
        params, c, jnp.tile(jnp.array([[float(limit), 1.0]]), (2, 1)), jnp.zeros(2, bool)
    )
    _, _, v_reset = agent.apply(
        params, agent.initial_carry(2), jnp.tile(jnp.array([[0.0, 1.0]]), (2, 1)), jnp.ones(2, bool)
    )
    assert batch.truncated[limit - 1].all() and not batch.terminated.any()
    np.testing.assert_allclose(batch.next_value[limit - 1], v_final, atol=2e-6)
    assert not np.allclose(v_final, v_reset)  # what a bootstrap from the reset would give


@pytest.mark.parametrize("algo", ["ppo", "a2c", "trpo", "reinforce", "grpo"])
def test_every_algorithm_trains_a_recurrent_policy(algo):
    cls = jaxpg.registry.config_class(algo)
    kw = dict(
        env=MaskObservation("CartPole-v1", keep=(0, 2)),
        network="gru",
        recurrent_size=16,
        hidden_sizes=(16,),
    )
    if algo == "grpo":
        kw.update(num_groups=2, group_size=2, num_minibatches=2, total_timesteps=2 * 4 * 500)
    else:
        kw.update(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 2)
        if algo in ("ppo",):
            kw.update(num_minibatches=2)
    config = cls(**kw)
    result = jax.jit(jaxpg.make_train(config))(jax.random.key(0))
    assert not np.any(np.asarray(result.metrics["nonfinite"]))
    before = jaxpg.init_state(config, jax.random.key(0)).params
    assert any(
        not np.allclose(a, b)
        for a, b in zip(jax.tree.leaves(result.state.params), jax.tree.leaves(before))
    )
    ret = evaluate(config, result.params, jax.random.key(1), 4).episode_return
    assert ret.shape == (4,) and np.all(ret >= 1)


def test_vmapped_seeds_and_the_policy_step_with_a_gru():
    config = short_cartpole("gru")
    seeds = jax.jit(jax.vmap(jaxpg.make_train(config)))(jax.random.split(jax.random.key(0), 2))
    assert jax.tree.leaves(seeds.state.env.agent_carry)[0].shape == (2, 4, 16)
    policy = jaxpg.make_policy(config)
    params = jax.tree.map(lambda x: x[0], seeds.params)
    c = policy.initial_carry(5)
    c, action = policy.step(params, c, jnp.zeros((5, 2)), jnp.ones(5, bool), jax.random.key(0))
    assert c.shape == (5, 16) and action.shape == (5,)


def test_mask_observation_keeps_the_components_and_the_dynamics():
    full = jaxpg.make_env("CartPole-v1")
    masked = jaxpg.make_env(MaskObservation("CartPole-v1", keep=(2, 0)))
    assert masked.obs_shape == (2,) and masked.name == "CartPole-v1[keep 2,0]"
    keys = jax.random.split(jax.random.key(0), 3)
    obs_f, st_f = full.reset_with_keys(keys)
    obs_m, st_m = masked.reset_with_keys(keys)
    np.testing.assert_array_equal(obs_m, obs_f[:, [2, 0]])
    action = jnp.array([0, 1, 1])
    step_keys = full.split_keys(jax.random.key(1), 3)
    out_f = full.step_with_keys(step_keys, st_f, action)
    out_m = masked.step_with_keys(step_keys, st_m, action)
    np.testing.assert_array_equal(out_m.obs, out_f.obs[:, [2, 0]])
    np.testing.assert_array_equal(out_m.reward, out_f.reward)
    space = masked.env.observation_space(masked.params)
    full_space = full.env.observation_space(full.params)
    np.testing.assert_array_equal(space.high, np.asarray(full_space.high)[[2, 0]])
    for bad in [(4,), (0, 0), (), (-1,), (1.5,)]:
        with pytest.raises(ValueError, match="keep"):
            MaskObservation("CartPole-v1", keep=bad)
    with pytest.raises(ValueError, match="1-D observation"):
        MaskObservation("Breakout-MinAtar", keep=(0,))


def test_keep_obs_from_the_config_and_the_command_line(tmp_path):
    from jaxpg import cli, runs

    config = jaxpg.PPOConfig(keep_obs=[0, 2])
    assert config.keep_obs == (0, 2) and config.env_spec.obs_shape == (2,)
    with pytest.raises(ValueError, match=r"keep_obs=\(7,\) is invalid"):
        jaxpg.PPOConfig(keep_obs=(7,))
    run_dir = tmp_path / "gru"
    code = cli.main(
        [
            "train",
            "ppo",
            "--network",
            "gru",
            "--keep-obs",
            "0,2",
            "--num-envs",
            "4",
            "--num-steps",
            "16",
            "--num-minibatches",
            "2",
            "--recurrent-size",
            "8",
            "--hidden-sizes",
            "8",
            "--total-timesteps",
            "128",
            "--run-dir",
            str(run_dir),
            "--no-progress",
            "--no-plot",
        ]
    )
    assert code == 0
    config, _ = runs.read_config(run_dir)
    assert (config.network, config.keep_obs, config.env_spec.obs_shape) == ("gru", (0, 2), (2,))
    assert cli.main(["eval", str(run_dir), "--episodes", "3"]) == 0
    assert (
        cli.main(
            [
                "train",
                "--resume",
                str(run_dir),
                "--total-timesteps",
                "192",
                "--no-progress",
                "--no-plot",
            ]
        )
        == 0
    )


def recall_run(network):
    config = jaxpg.PPOConfig(
        env=DelayedRecallEnv(delay=1),
        network=network,
        recurrent_size=16,
        hidden_sizes=(16,),
        num_envs=16,
        num_steps=16,
        num_minibatches=4,
        lr=3e-3,
        ent_coef=0.0,
        total_timesteps=16 * 16 * 60,
    )
    result = jax.jit(jaxpg.make_train(config))(jax.random.key(0))
    return float(
        jnp.mean(
            evaluate(
                config, result.params, jax.random.key(1), 256, deterministic=True
            ).episode_return
        )
    )


def test_memory_probe_needs_a_recurrent_policy():
    # The cue is seen at the first step and must be reported one step later: a feed-forward
    # policy cannot beat 0.5 (it sees [0, 0] at the last step whatever the cue).
    assert recall_run("gru") >= 0.98
    assert recall_run("mlp") <= 0.6


@pytest.mark.parametrize("algo", ["ppo", "trpo"])
def test_a_continuous_recurrent_policy_on_pendulum_without_angular_velocity(algo):
    kw = dict(num_minibatches=2) if algo == "ppo" else dict(critic_minibatches=2)
    config = jaxpg.registry.config_class(algo)(
        env="Pendulum-v1",
        keep_obs=(0, 1),
        network="lstm",
        recurrent_size=8,
        hidden_sizes=(8,),
        num_envs=4,
        num_steps=16,
        total_timesteps=4 * 16 * 2,
        **kw,
    )
    result = jax.jit(jaxpg.make_train(config))(jax.random.key(0))
    assert not np.any(np.asarray(result.metrics["nonfinite"]))
    ret = evaluate(config, result.params, jax.random.key(1), 2).episode_return
    assert ret.shape == (2,) and np.all(ret < 0)
