"""The train function: API, config validation, determinism, REINFORCE masks, non-finite guard."""

import dataclasses

import compile_options
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_envs import CountEnv
from trees import assert_trees_close as leaves_close
from trees import assert_trees_equal

import jaxpg
from jaxpg.algorithms import first_episode_mask, rollout_cut_mask

TINY_PPO = dict(total_timesteps=512 * 3)


# -- the public API, as the README shows it ---------------------------------------------------


def test_readme_snippet_runs_as_written():
    config = jaxpg.PPOConfig(env="CartPole-v1", total_timesteps=2048)
    train = jaxpg.make_train(config)
    result = jax.jit(train)(jax.random.key(0))
    assert result.metrics["episode_return"].shape == (config.num_updates,)
    for name in (
        "policy_loss",
        "value_loss",
        "entropy",
        "approx_kl",
        "clip_fraction",
        "explained_variance",
        "learning_rate",
        "env_steps",
    ):
        assert result.metrics[name].shape == (config.num_updates,), name
    np.testing.assert_array_equal(result.metrics["env_steps"], [512, 1024, 1536, 2048])
    # lr anneals linearly from 2.5e-4 over the 4 updates.
    np.testing.assert_allclose(
        result.metrics["learning_rate"], 2.5e-4 * np.array([1, 0.75, 0.5, 0.25]), rtol=1e-6
    )
    policy = jaxpg.make_policy(config)
    obs = jnp.zeros((7, 4))
    action = policy.act(result.params, obs, jax.random.key(1))
    assert action.shape == (7,) and action.dtype == jnp.int32
    obs = jax.random.normal(jax.random.key(4), (7, 4))
    greedy = policy.act(result.params, obs)
    # the deterministic action is the most likely one, by the policy's own log-probabilities
    log_probs = jnp.stack([policy.log_prob(result.params, obs, jnp.full((7,), a)) for a in (0, 1)])
    np.testing.assert_array_equal(greedy, np.argmax(np.asarray(log_probs), axis=0))
    assert policy.value(result.params, obs).shape == (7,)
    results = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 8))
    assert results.metrics["episode_return"].shape == (8, config.num_updates)


def test_episode_return_is_nan_where_no_episode_ended():
    # CountEnv episodes last 300 steps; 4 envs x 128 steps: the first update ends none.
    config = jaxpg.PPOConfig(env=CountEnv(limit=300), total_timesteps=512 * 3)
    metrics = jax.jit(jaxpg.make_train(config))(jax.random.key(0)).metrics
    ret = np.asarray(metrics["episode_return"])
    assert np.isnan(ret[0]) and np.isnan(ret[1])  # steps 0..255 end nothing
    assert ret[2] == 300.0  # the episodes ending at step 299 return 300


def test_policy_value_without_critic_is_a_clear_error():
    config = jaxpg.ReinforceConfig(baseline="none", total_timesteps=16 * 256)
    policy = jaxpg.make_policy(config)
    params = jaxpg.init_state(config, jax.random.key(0))
    with pytest.raises(ValueError, match="no critic"):
        policy.value(jaxpg.PolicyParams(params.params), jnp.zeros((1, 4)))


def test_continuous_policy_act_is_within_bounds():
    config = jaxpg.PPOConfig(env="Pendulum-v1", total_timesteps=512)
    result = jax.jit(jaxpg.make_train(config))(jax.random.key(0))
    policy = jaxpg.make_policy(config)
    obs = jax.random.normal(jax.random.key(0), (64, 3))
    actions = policy.act(result.params, obs, jax.random.key(2))
    assert actions.shape == (64, 1) and np.all(np.abs(actions) <= 2.0)
    # the deterministic action is the distribution's mode: nearby actions are less likely
    mode = policy.act(result.params, obs)
    inside = np.abs(np.asarray(mode)) < 1.9
    assert inside.any()
    for delta in (-0.1, 0.1):
        lower = policy.log_prob(result.params, obs, mode + delta) < policy.log_prob(
            result.params, obs, mode
        )
        assert np.all(np.asarray(lower)[inside[:, 0]])
    # a policy whose mean lies far outside the bounds acts at the bound: the clip is real
    far = jax.tree_util.tree_map_with_path(
        lambda path, x: (
            x + 50.0
            if "policy_head" in jax.tree_util.keystr(path) and "bias" in jax.tree_util.keystr(path)
            else x
        ),
        result.params,
    )
    for key in (None, jax.random.key(3)):
        np.testing.assert_array_equal(policy.act(far, obs, key), 2.0)


# -- configs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_envs", 0, "num_envs=0"),
        ("num_envs", 2.5, "num_envs=2.5"),
        ("lr", -1.0, "lr=-1.0"),
        ("gamma", 1.5, "gamma=1.5"),
        ("gae_lambda", -0.1, "gae_lambda"),
        ("clip_eps", 0.0, "clip_eps"),
        ("num_minibatches", 3, "num_minibatches=3.*divide"),
        ("hidden_sizes", (), "hidden_sizes"),
        ("conv_channels", (16, 0), "conv_channels"),
        ("network", "lstm-ish", "network='lstm-ish'.*one of"),
        ("network", "cnn", "network='cnn'.*image observations.*CartPole-v1"),
        ("activation", "sigmoidal", "activation='sigmoidal'"),
        ("anneal_lr", "yes", "anneal_lr"),
        ("total_timesteps", 100, "total_timesteps=100.*512"),
        ("env", 42, "env"),
    ],
)
def test_bad_ppo_config_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        jaxpg.PPOConfig(**{field: value})


@pytest.mark.parametrize(
    "field, value",
    [("baseline", "learned"), ("mode", "episodic"), ("baseline_decay", 2.0)],
)
def test_bad_reinforce_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        jaxpg.ReinforceConfig(**{field: value})


def test_configs_are_frozen_and_replace_revalidates():
    config = jaxpg.PPOConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0
    assert config.replace(lr=1e-3).lr == 1e-3
    with pytest.raises(ValueError, match="num_envs"):
        config.replace(num_envs=-4)
    assert jaxpg.PPOConfig(total_timesteps=1e6).total_timesteps == 1_000_000


def test_trajectory_mode_takes_num_steps_from_the_env():
    config = jaxpg.ReinforceConfig(mode="trajectory", num_steps=None, total_timesteps=10**5)
    assert config.num_steps == 500
    with pytest.raises(ValueError, match="num_steps"):
        jaxpg.ReinforceConfig(mode="intermediate", num_steps=None)


# -- determinism -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        jaxpg.PPOConfig(**TINY_PPO),
        jaxpg.ReinforceConfig(total_timesteps=16 * 256 * 2),
        jaxpg.PPOConfig(env="Pendulum-v1", normalize_obs=True, normalize_rewards=True, **TINY_PPO),
    ],
    ids=["ppo", "reinforce", "ppo-continuous-normalised"],
)
def test_vmapped_seed_equals_single_run_and_runs_are_bit_identical(config):
    train = jaxpg.make_train(config)
    keys = jax.random.split(jax.random.key(3), 3)
    # With XLA's default emitters (at the suite's optimisation level): the faster elemental ones
    # round a batched program apart from the unbatched one by more (there, Pendulum's
    # trajectories drifted until the normaliser's mean was 5 ulps away after 3 updates).
    batched = compile_options.exact_jit(jax.vmap(train))(keys)
    single = compile_options.exact_jit(train)(keys[1])
    again = compile_options.exact_jit(train)(keys[1])
    assert_trees_equal(single, again)
    # Batched matmuls may round differently from unbatched ones, by a few ulps: an absolute
    # 1e-6 for leaves near zero and 4 float32 ulps (2**-21) relative for large ones, such as
    # the observation normaliser's variance (~12, where one ulp is 9.5e-7: a CI machine's
    # vector unit rounded it 2 ulps away).
    leaves_close(
        jax.tree.map(lambda x: x[1], batched.params), single.params, atol=1e-6, rtol=2**-21
    )
    np.testing.assert_allclose(
        batched.metrics["policy_loss"][1], single.metrics["policy_loss"], atol=1e-6
    )


def test_vmapped_init_states_equal_single_ones_mapped_or_batched(monkeypatch):
    # Up to MAP_INITS_UP_TO seeds a vmapped init_state draws its parameters and first env
    # states in a loop of the single init's draws (its jaxpr splits no key outside a loop);
    # over it, batched. Both equal the single inits bit for bit, with the hyperparameters
    # batched too (a sweep) or not.
    from jaxpg import sweep
    from jaxpg import train as train_module

    config = jaxpg.PPOConfig(env="Pendulum-v1", normalize_obs=True, **TINY_PPO)
    keys = jax.random.split(jax.random.key(7), 3)
    hps, settings = sweep.grid(config, lr=[1e-3, 2e-3, 3e-3])
    single = [
        jaxpg.init_state(config, k, config.hparams(**setting))
        for k, setting in zip(keys, settings, strict=True)
    ]
    want = jax.tree.map(lambda *xs: jnp.stack(xs), *single)
    for limit, mapped in ((3, True), (2, False)):
        monkeypatch.setattr(train_module, "MAP_INITS_UP_TO", limit)
        # a fresh function each time: jax caches a traced function's program
        init = jax.vmap(lambda k, hp: jaxpg.init_state(config, k, hp))
        top = [eqn.primitive.name for eqn in jax.make_jaxpr(init)(keys, hps).jaxpr.eqns]
        assert ("random_split" in top) != mapped, (limit, top)
        assert_trees_equal(jax.jit(init)(keys, hps), want)
    seeds_only = jax.vmap(lambda k: jaxpg.init_state(config, k))(keys)
    assert_trees_equal(seeds_only.params, want.params)
    # The hyperparameters stay outside the mapped draws: a gradient through them goes through
    grad = jax.grad(lambda lr: jaxpg.init_state(config, keys[0], config.hparams(lr=lr)).hparams.lr)
    assert float(grad(1e-3)) == 1.0


def test_chunks_compose_exactly():
    config = jaxpg.PPOConfig(total_timesteps=512 * 4)
    whole = compile_options.exact_jit(jaxpg.make_train(config))(jax.random.key(5))
    chunk = compile_options.exact_jit(jaxpg.make_train_chunk(config, 2))
    state = jaxpg.init_state(config, jax.random.key(5))
    state, m1 = chunk(state)
    state, m2 = chunk(state)
    assert_trees_equal(whole.state, state)
    np.testing.assert_array_equal(
        np.concatenate([m1["policy_loss"], m2["policy_loss"]]), whole.metrics["policy_loss"]
    )


# -- REINFORCE pieces ---------------------------------------------------------------------------


def test_rollout_cut_mask_against_numpy():
    rng = np.random.default_rng(0)
    term = rng.random((12, 5)) < 0.15
    trunc = rng.random((12, 5)) < 0.1
    got = np.asarray(rollout_cut_mask(jnp.asarray(term), jnp.asarray(trunc)))
    done = term | trunc
    want = np.zeros((12, 5))
    for n in range(5):
        last_end = np.flatnonzero(done[:, n])
        if len(last_end):
            want[: last_end[-1] + 1, n] = 1.0
    np.testing.assert_array_equal(got, want)


def test_first_episode_mask_against_numpy():
    done = np.zeros((6, 3), bool)
    done[2, 0] = True
    done[4, 0] = True
    done[5, 1] = True
    got = np.asarray(first_episode_mask(jnp.asarray(done), jnp.zeros_like(jnp.asarray(done))))
    want = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1], [0, 1, 1], [0, 1, 1], [0, 1, 1]], float)
    np.testing.assert_array_equal(got, want)


def test_trajectory_mode_gives_every_step_the_episode_return():
    env = CountEnv(limit=5)
    config = jaxpg.ReinforceConfig(
        env=env,
        mode="trajectory",
        num_steps=8,
        num_envs=2,
        baseline="none",
        normalize_advantages=False,
        total_timesteps=16,
    )
    update = jax.jit(jaxpg.make_update(config))
    state = jaxpg.init_state(config, jax.random.key(0))
    # Run the pieces of one update by hand through the public estimator.
    from jaxpg.agents import make_agent
    from jaxpg.distributions import action_dist
    from jaxpg.rollout import RolloutOptions, env_carry_init, rollout

    agent = make_agent(config)
    carry = env_carry_init(jax.random.key(1), config.env_spec, 2)
    _, batch = rollout(
        jax.random.key(2),
        state.params,
        carry,
        jnp.float32(0.99),
        env=config.env_spec,
        agent=agent,
        dist=action_dist(True),
        num_steps=8,
        options=RolloutOptions(False, False, True),
    )
    targets, _ = jaxpg.make_algorithm(config, agent).targets(batch, state.hparams, state.algo_state)
    np.testing.assert_array_equal(targets.mask[:, 0], [1, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(targets.advantages[:, 0], [5, 5, 5, 5, 5, 0, 0, 0])
    new_state, metrics = update(state)
    assert float(metrics["episode_return"]) == 5.0
    assert int(new_state.update_step) == 1


# -- non-finite losses ------------------------------------------------------------------------


def test_nan_rewards_are_detected_and_not_trained_on():
    config = jaxpg.PPOConfig(env=CountEnv(limit=3, reward=float("nan")), total_timesteps=512 * 2)
    result = jax.jit(jaxpg.make_train(config))(jax.random.key(0))
    assert np.all(np.asarray(result.metrics["nonfinite"]))
    assert int(result.state.nonfinite_updates) == 2
    initial = jaxpg.init_state(config, jax.random.key(0))
    assert_trees_equal(result.state.params, initial.params)


@pytest.mark.parametrize("game", ["Asterix", "Breakout", "Freeway", "SpaceInvaders"])
@pytest.mark.parametrize("network", ["mlp", "cnn"])
@pytest.mark.parametrize("settings", ["gymnax-blines", "purejaxrl"])
def test_minatar_presets_at_the_published_budget(game, network, settings):
    from jaxpg import presets

    config = presets.ppo_minatar(game, network, settings)
    assert config.env == f"{game}-MinAtar" and config.total_timesteps == 10_000_000
    assert (config.num_envs, config.num_steps, config.num_epochs, config.num_minibatches) == (
        64,
        128,
        4,
        8,
    )
    purejaxrl = settings == "purejaxrl"
    assert (config.lr, config.anneal_lr, config.gamma) == (
        (5e-3, True, 0.99) if purejaxrl else (5e-4, False, 0.999)
    )
    assert config.network == network and not config.shared_network
    if network == "mlp":
        assert config.hidden_sizes == ((64, 64) if purejaxrl else (256, 256))
    tag = "-purejaxrl" if purejaxrl else ""
    name = f"ppo-{game.lower()}-minatar{tag}" + ("-cnn" if network == "cnn" else "")
    assert presets.PRESETS[name]() == config


@pytest.mark.parametrize(
    "args, message",
    [
        (("Pong",), "game='Pong' is invalid"),
        (("Breakout", "rnn"), "network='rnn' is invalid"),
        (("Breakout", "mlp", "cleanrl"), "settings='cleanrl' is invalid"),
    ],
)
def test_minatar_preset_refuses_unknown_arguments(args, message):
    from jaxpg import presets

    with pytest.raises(ValueError, match=message):
        presets.ppo_minatar(*args)
