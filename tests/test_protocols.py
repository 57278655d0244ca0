"""The glue between the pure parts: the optimiser, the shared actor-critic loss, the minibatch
helper, the REINFORCE estimator, the env-step counter, the agent protocol (a user's module, a
recurrent carry, integer observations), the registry, and probe environments with known values."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jit_counts import compiles
from toy_envs import CountEnv, ProbeEnv, TokenEnv
from trees import assert_trees_close, assert_trees_equal

import jaxpg
from jaxpg import updates
from jaxpg.agents import Agent, agent_from_module, is_recurrent, unroll
from jaxpg.algorithms import actor_critic_loss, ppo_surrogate, reinforce_targets, vanilla_surrogate
from jaxpg.distributions import CATEGORICAL
from jaxpg.permutation import random_permutation
from jaxpg.rollout import RolloutOptions, env_carry_init, rollout

PLAIN = RolloutOptions(normalize_obs=False, normalize_rewards=False, clip_actions=True)


def hparams(**kw):
    base = dict(
        lr=1e-3,
        gamma=0.9,
        gae_lambda=0.8,
        clip_eps=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        baseline_decay=0.9,
    )
    base.update(kw)
    return jaxpg.PPOConfig().hparams(**base)  # every other traced field at its default


# -- the optimiser ------------------------------------------------------------------------------


def test_optimizer_equals_optax_clip_then_adam_built_the_plain_way():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.zeros(4)}
    grads = [
        jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape) * s, jnp.float32), params)
        for s in (0.1, 5.0, 0.3, 20.0)
    ]  # some steps below the clip norm, some above
    hp = hparams(lr=3e-3, max_grad_norm=1.0)
    plain = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3, eps=1e-5))
    ours = jax.jit(lambda g, s, p: updates.make_optimizer(hp, hp.lr, 1e-5).update(g, s, p))
    known = jax.jit(
        lambda g, s, p: updates.make_optimizer(hp, hp.lr, 1e-5, updates.global_norm(g)).update(
            g, s, p
        )
    )
    p_plain, s_plain = params, plain.init(params)
    p_ours, s_ours = params, updates.make_optimizer(hp, hp.lr, 1e-5).init(params)
    p_known, s_known = p_ours, s_ours
    for g in grads:
        u, s_plain = plain.update(g, s_plain, p_plain)
        p_plain = optax.apply_updates(p_plain, u)
        u, s_ours = ours(g, s_ours, p_ours)
        p_ours = optax.apply_updates(p_ours, u)
        u, s_known = known(g, s_known, p_known)
        p_known = optax.apply_updates(p_known, u)
    assert_trees_close(p_ours, p_plain, atol=1e-7)
    assert_trees_close(p_known, p_plain, atol=1e-7)


def test_traced_learning_rate_sweeps_without_recompiling():
    params = {"w": jnp.ones(3)}
    g = {"w": jnp.asarray([0.1, -0.2, 0.3])}

    @jax.jit
    def step(lr):
        hp = hparams(lr=lr)
        tx = updates.make_optimizer(hp, hp.lr, 1e-5)
        u, _ = tx.update(g, tx.init(params), params)
        return u["w"]

    for i, lr in enumerate((1e-3, 1e-2)):
        want, _ = optax.adam(lr, eps=1e-5).update(g, optax.adam(lr, eps=1e-5).init(params), params)
        lr = jnp.float32(lr)
        with compiles() as done:
            got = step(lr)
        assert len(done) == (1 if i == 0 else 0)  # compiled for the first value only
        np.testing.assert_allclose(got, want["w"], rtol=1e-6)


def test_learning_rate_anneals_linearly_to_zero():
    hp = hparams(lr=1.0)
    got = [
        float(updates.learning_rate(hp, jnp.int32(u), num_updates=4, anneal=True)) for u in range(5)
    ]
    np.testing.assert_allclose(got, [1.0, 0.75, 0.5, 0.25, 0.0])
    assert float(updates.learning_rate(hp, jnp.int32(3), num_updates=4, anneal=False)) == 1.0


# -- the shared actor-critic loss, against a hand computation ---------------------------------


def linear_agent(critic=True):
    """logits = obs @ W, value = obs @ v: log-probabilities a NumPy loop can compute."""

    def apply(params, carry, obs, reset):
        value = obs @ params["v"] if critic else None
        return carry, obs @ params["W"], value

    return Agent(lambda key: None, lambda n: (), apply, critic)


def numpy_loss(params, mb, hp, *, surrogate, normalize, clip_value, critic):
    obs, act = np.asarray(mb.obs, np.float64), np.asarray(mb.action)
    logits = obs @ np.asarray(params["W"], np.float64)
    logp_all = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    logp = logp_all[np.arange(len(act)), act]
    entropy_rows = -(np.exp(logp_all) * logp_all).sum(-1)
    m = np.asarray(mb.mask) > 0
    adv = np.asarray(mb.advantages, np.float64)
    if normalize:
        mean, std = adv[m].mean(), adv[m].std()
        adv = np.where(m, (adv - mean) / (std + 1e-8), 0.0)
    ratio = np.exp(logp - np.asarray(mb.old_log_prob, np.float64))
    eps = float(hp.clip_eps)
    if surrogate == "ppo":
        per_row = -np.minimum(ratio * adv, np.clip(ratio, 1 - eps, 1 + eps) * adv)
    else:
        per_row = -logp * adv
    policy_loss = per_row[m].mean()
    entropy = entropy_rows[m].mean()
    total = policy_loss - float(hp.ent_coef) * entropy
    if critic:
        v = obs @ np.asarray(params["v"], np.float64)
        ret, old_v, vm = (
            np.asarray(mb.returns),
            np.asarray(mb.old_value),
            np.asarray(mb.value_mask) > 0,
        )
        sq = (v - ret) ** 2
        if clip_value:
            clipped = old_v + np.clip(v - old_v, -eps, eps)
            sq = np.maximum(sq, (clipped - ret) ** 2)
        total += float(hp.vf_coef) * 0.5 * sq[vm].mean()
    return total


@pytest.mark.parametrize("surrogate", ["ppo", "vanilla"])
@pytest.mark.parametrize(
    "normalize, clip_value, critic",
    [(True, True, True), (False, False, True), (True, False, False), (False, True, True)],
)
def test_actor_critic_loss_against_hand_computation(surrogate, normalize, clip_value, critic):
    rng = np.random.default_rng(1)
    rows = 12
    params = {
        "W": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
        "v": jnp.asarray(rng.normal(size=3), jnp.float32),
    }
    mb = updates.Minibatch(
        obs=jnp.asarray(rng.normal(size=(rows, 3)), jnp.float32),
        action=jnp.asarray(rng.integers(0, 4, rows), jnp.int32),
        old_log_prob=jnp.asarray(np.log(0.25) + 0.4 * rng.normal(size=rows), jnp.float32),
        old_value=jnp.asarray(rng.normal(size=rows), jnp.float32),
        advantages=jnp.asarray(rng.normal(size=rows) * 2 + 1, jnp.float32),
        returns=jnp.asarray(rng.normal(size=rows), jnp.float32),
        mask=jnp.asarray(rng.random(rows) < 0.7, jnp.float32),
        value_mask=jnp.asarray(rng.random(rows) < 0.8, jnp.float32),
        reset=jnp.zeros(rows, bool),
        agent_carry=(),
    )
    hp = hparams(clip_eps=0.1)
    got, aux = actor_critic_loss(
        params,
        mb,
        hp,
        agent=linear_agent(critic),
        dist=CATEGORICAL,
        surrogate=ppo_surrogate if surrogate == "ppo" else vanilla_surrogate,
        normalize_advantages=normalize,
        clip_value_loss=clip_value,
    )
    want = numpy_loss(
        params,
        mb,
        hp,
        surrogate=surrogate,
        normalize=normalize,
        clip_value=clip_value,
        critic=critic,
    )
    np.testing.assert_allclose(float(got), want, rtol=2e-5, atol=1e-6)
    if not critic:
        assert float(aux["value_loss"]) == 0.0


# -- the minibatch helper ------------------------------------------------------------------


def numbered_batch(T=6, N=4, carry_width=None):
    """A batch whose every step carries its own index t * N + n in ``obs``."""
    ids = jnp.arange(T * N, dtype=jnp.float32).reshape(T, N)
    zeros = jnp.zeros((T, N))
    tr = jaxpg.rollout.Transition(
        obs=ids[..., None],
        action=jnp.zeros((T, N), jnp.int32),
        log_prob=zeros,
        value=zeros,
        reset=jnp.zeros((T, N), bool),
        reward=zeros,
        terminated=zeros.astype(bool),
        truncated=zeros.astype(bool),
        final_obs=ids[..., None],
        next_value=zeros,
        episode_return=zeros,
        episode_length=zeros.astype(jnp.int32),
        episode_done=zeros.astype(bool),
    )
    targets = jaxpg.Targets(ids, ids, jnp.ones((T, N)), jnp.ones((T, N)))
    carry = (
        ()
        if carry_width is None
        else jnp.tile(jnp.arange(N, dtype=jnp.float32)[:, None], (1, carry_width))
    )
    return jaxpg.Batch(tr, targets, carry, extra={"id": ids})  # an algorithm's own per-step data


@pytest.mark.parametrize("num_minibatches", [1, 2, 4])
def test_step_minibatches_use_every_step_once_per_epoch(num_minibatches):
    batch = numbered_batch()
    for seed in range(3):
        mbs = updates.split_minibatches(
            jax.random.key(seed), batch, num_minibatches, sequences=False
        )
        assert mbs.obs.shape == (num_minibatches, 24 // num_minibatches, 1)
        np.testing.assert_array_equal(np.sort(np.asarray(mbs.obs).ravel()), np.arange(24))
        np.testing.assert_array_equal(mbs.advantages[..., None], mbs.obs)  # rows stay whole
        np.testing.assert_array_equal(mbs.extra["id"], mbs.advantages)  # extra data too


@pytest.mark.parametrize("num_minibatches", [1, 2, 4])
def test_sequence_minibatches_keep_each_environment_whole(num_minibatches):
    T, N = 6, 4
    batch = numbered_batch(T, N, carry_width=3)
    mbs = updates.split_minibatches(jax.random.key(5), batch, num_minibatches, sequences=True)
    n = N // num_minibatches
    assert mbs.obs.shape == (num_minibatches, T, n, 1)
    assert mbs.agent_carry.shape == (num_minibatches, n, 3)
    ids = np.asarray(mbs.obs)[..., 0]
    np.testing.assert_array_equal(mbs.extra["id"], ids)  # an algorithm's extra data goes along
    envs = ids[:, 0, :] % N  # the environment of each column
    np.testing.assert_array_equal(np.sort(envs.ravel()), np.arange(N))  # each env exactly once
    for m in range(num_minibatches):
        for j in range(n):
            np.testing.assert_array_equal(
                ids[m, :, j], np.arange(T) * N + envs[m, j]
            )  # in time order
            np.testing.assert_array_equal(mbs.agent_carry[m, j], envs[m, j])  # with its own carry
    with pytest.raises(ValueError, match="num_minibatches=3"):
        updates.split_minibatches(jax.random.key(0), batch, 3, sequences=True)
    with pytest.raises(ValueError, match="recurrent"):
        updates.split_minibatches(jax.random.key(0), batch, 2, sequences=False)


@pytest.mark.parametrize("sequences", [False, True])
def test_a_given_permutation_splits_as_the_key_it_was_drawn_from(sequences):
    # optimize draws every epoch's permutation before its scan and passes it as ``perm``.
    batch = numbered_batch(6, 4, carry_width=3 if sequences else None)
    rows = updates.shuffled_rows(batch, sequences=sequences)
    assert rows == (4 if sequences else 24)
    key = jax.random.key(7)
    drawn = updates.split_minibatches(key, batch, 2, sequences=sequences)
    given = updates.split_minibatches(
        None, batch, 2, sequences=sequences, perm=random_permutation(key, rows)
    )
    assert_trees_equal(drawn, given)
    reversed_rows = jnp.arange(rows)[::-1]
    mbs = updates.split_minibatches(None, batch, 2, sequences=sequences, perm=reversed_rows)
    first = np.asarray(mbs.obs)[0, 0, 0] if sequences else np.asarray(mbs.obs)[0, 0]
    assert first.item() == (3 if sequences else 23)  # the given order, not a drawn one


@pytest.mark.parametrize("sequences", [False, True])
@pytest.mark.parametrize("epochs_minibatches", [(1, 1), (3, 2), (2, 4)])
def test_optimize_steps_through_each_epochs_own_split(sequences, epochs_minibatches):
    # optimize draws every epoch's permutation before its scan: the same steps as a loop over
    # split_minibatches(split(key, E)[e]), in order (a loss of each minibatch's first row
    # makes the Adam trajectory depend on which rows come when).
    num_epochs, num_minibatches = epochs_minibatches
    batch = numbered_batch(6, 4, carry_width=3 if sequences else None)
    # w starts inside the rows' range (0-23) and a large step size carries it across them,
    # so each step's direction depends on which minibatch it meets
    params, hp, lr = {"w": jnp.full(2, 10.0)}, hparams(), jnp.float32(4.0)
    opt_state = updates.make_optimizer(hp, lr, 1e-5).init(params)

    def loss_fn(p, mb, hp):
        rows = mb.obs.reshape(-1)
        return jnp.sum((p["w"] - jnp.stack([rows[0], jnp.mean(rows)])) ** 2), {}

    key = jax.random.key(11)
    got, got_opt, _, finite = jax.jit(
        functools.partial(
            updates.optimize,
            loss_fn=loss_fn,
            num_epochs=num_epochs,
            num_minibatches=num_minibatches,
            adam_eps=1e-5,
            sequences=sequences,
        )
    )(params, opt_state, batch, hp, lr, key)
    assert bool(finite)
    want, want_opt = params, opt_state
    shuffle = (num_epochs, num_minibatches) != (1, 1)
    for epoch_key in jax.random.split(key, num_epochs):
        mbs = updates.split_minibatches(
            epoch_key, batch, num_minibatches, sequences=sequences, shuffle=shuffle
        )
        for m in range(num_minibatches):
            mb = jax.tree.map(lambda x: x[m], mbs)
            want, want_opt, _ = updates.gradient_step(
                want, want_opt, mb, hp, lr, loss_fn=loss_fn, adam_eps=1e-5
            )
    assert_trees_close(got, want, atol=1e-5)
    assert_trees_close(got_opt, want_opt, atol=1e-5)


@pytest.mark.parametrize("sequences", [False, True])
def test_a_nonfinite_step_restores_params_and_optimizer_state(sequences):
    batch = numbered_batch()
    params = {"w": jnp.ones(2)}
    hp = hparams()
    opt_state = updates.make_optimizer(hp, hp.lr, 1e-5).init(params)

    def loss_fn(p, mb, hp):
        # Finite for every row but the one numbered 13: the third minibatch step meets it.
        x = mb.obs[..., 0]
        bad = jnp.any(x == 13.0)
        return jnp.where(bad, jnp.nan, jnp.sum(p["w"]) * jnp.mean(x)), {}

    run = functools.partial(
        updates.optimize,
        loss_fn=loss_fn,
        num_epochs=2,
        num_minibatches=2,
        adam_eps=1e-5,
        sequences=sequences,
    )
    new_params, new_opt, _, finite = jax.jit(run)(
        params, opt_state, batch, hp, hp.lr, jax.random.key(0)
    )
    assert not bool(finite)
    assert_trees_equal(new_params, params)
    assert_trees_equal(new_opt, opt_state)
    # And without the bad row, the same call trains.
    ok = lambda p, mb, hp: (jnp.sum(p["w"]) * jnp.mean(mb.obs), {})
    moved, _, _, finite = jax.jit(functools.partial(run, loss_fn=ok))(
        params, opt_state, batch, hp, hp.lr, jax.random.key(0)
    )
    assert bool(finite) and not np.array_equal(moved["w"], params["w"])


# -- the intermediate-reward REINFORCE estimator, against NumPy --------------------------------


def numpy_returns_to_go(r, v_next, term, trunc, gamma):
    T, N = r.shape
    g = np.zeros((T, N))
    for n in range(N):
        nxt = v_next[T - 1, n]
        for t in reversed(range(T)):
            boot = v_next[t, n] if (term[t, n] or trunc[t, n] or t == T - 1) else nxt
            g[t, n] = r[t, n] + (0.0 if term[t, n] else gamma * boot)
            nxt = g[t, n]
    return g


def numpy_cut_mask(term, trunc):
    T, N = term.shape
    m = np.zeros((T, N))
    for n in range(N):
        ended = False
        for t in reversed(range(T)):
            ended = ended or term[t, n] or trunc[t, n]
            m[t, n] = float(ended)
    return m


@pytest.mark.parametrize("baseline", ["none", "moving_average", "value"])
def test_reinforce_estimator_against_numpy(baseline):
    rng = np.random.default_rng(2)
    T, N, gamma = 7, 3, 0.9
    r = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T, N)).astype(np.float32)
    next_values = rng.normal(size=(T, N)).astype(np.float32)
    term = rng.random((T, N)) < 0.2
    trunc = (rng.random((T, N)) < 0.15) & ~term
    batch = numbered_batch(T, N).transitions._replace(
        reward=jnp.asarray(r),
        value=jnp.asarray(values),
        next_value=jnp.asarray(next_values),
        terminated=jnp.asarray(term),
        truncated=jnp.asarray(trunc),
    )
    hp = hparams(gamma=gamma, baseline_decay=0.75)
    # The moving average has already seen data: b = 0.4 is subtracted (the baseline from before
    # the batch, so b does not depend on it), then it moves to 0.75 * 0.4 + 0.25 * mean(G).
    state = jaxpg.advantages.MovingAverageBaseline(jnp.float32(0.4), jnp.int32(3))
    targets, new_state = reinforce_targets(baseline)(batch, hp, state)

    # The batch's next values bootstrap a truncation whatever the baseline (without a critic the
    # rollout stores zeros there)
    g = numpy_returns_to_go(r, next_values, term, trunc, gamma)
    if baseline == "value":
        mask = np.ones((T, N))
        adv = g - values
    else:
        mask = numpy_cut_mask(term, trunc)
        if baseline == "moving_average":
            b = 0.4
            moved = 0.75 * 0.4 + 0.25 * g[mask > 0].mean()
            np.testing.assert_allclose(float(new_state.value), moved, rtol=1e-5)
        else:
            b = 0.0
        adv = (g - b) * mask
    np.testing.assert_allclose(targets.returns, g, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(targets.mask, mask)
    np.testing.assert_allclose(targets.advantages, adv, rtol=1e-5, atol=1e-5)


# -- counters ---------------------------------------------------------------------------------


def test_env_steps_does_not_wrap_past_2_31():
    from jaxpg.train import env_steps

    config = jaxpg.PPOConfig(
        num_envs=4, num_steps=8, num_minibatches=1, num_epochs=1, total_timesteps=32 * 2
    )
    big = (2**31 // config.batch_size) + 1000  # updates done: past 2^31 env steps
    state = jaxpg.init_state(config, jax.random.key(0))
    state = state.replace(update_step=jnp.int32(big))
    _, metrics = jax.jit(jaxpg.make_update(config))(state)
    want = (big + 1) * config.batch_size
    assert want > 2**31
    assert float(metrics["env_steps"]) == pytest.approx(want, rel=1e-7)
    assert float(env_steps(jnp.int32(2**30), 4096)) == pytest.approx(2**42, rel=1e-7)


# -- agents -----------------------------------------------------------------------------------


class UserPolicy(nn.Module):
    """A user's feed-forward policy: its own layers, the agent's call signature."""

    @nn.compact
    def __call__(self, carry, obs, reset):
        x = nn.relu(nn.Dense(32)(obs))
        return carry, nn.Dense(2)(x), nn.Dense(1)(x)[:, 0]


def test_a_users_flax_module_trains_through_make_train():
    config = jaxpg.PPOConfig(env="CartPole-v1", total_timesteps=60_000, lr=1e-3)
    train = jax.jit(jaxpg.make_train(config, agent=UserPolicy()))
    result = train(jax.random.key(0))
    assert "Dense_0" in result.params.network["params"]  # the user's parameters, not jaxpg's MLP
    returns = np.asarray(result.metrics["episode_return"])
    assert not np.any(np.asarray(result.metrics["nonfinite"]))
    # It learns: from ~20 (a random policy) to well over 100 in 60k steps.
    assert np.nanmean(returns[:5]) < 40 and np.nanmean(returns[-10:]) > 100, returns
    policy = jaxpg.make_policy(config, UserPolicy())
    assert policy.act(result.params, jnp.zeros((3, 4))).shape == (3,)


def test_an_init_apply_pair_is_an_agent():
    def init(key):
        return {"W": 0.01 * jax.random.normal(key, (4, 2)), "v": jnp.zeros(4)}

    def apply(params, carry, obs, reset):
        return carry, obs @ params["W"], obs @ params["v"]

    config = jaxpg.A2CConfig(total_timesteps=16 * 32 * 2)
    result = jax.jit(jaxpg.make_train(config, agent=(init, apply)))(jax.random.key(0))
    assert set(result.params.network) == {"W", "v"}
    assert not np.any(np.asarray(result.metrics["nonfinite"]))
    no_critic = jaxpg.agents.agent_from_functions(
        init, lambda p, c, o, r: (c, o @ p["W"], None), env=config.env_spec
    )
    assert not no_critic.has_critic


def test_bad_agents_are_refused_with_their_shapes():
    class WrongHead(nn.Module):
        @nn.compact
        def __call__(self, carry, obs, reset):
            return carry, nn.Dense(3)(obs), None

    config = jaxpg.PPOConfig()
    with pytest.raises(ValueError, match=r"logits \[B, 2\]"):
        jaxpg.make_train(config, agent=WrongHead())
    with pytest.raises(ValueError, match="agent="):
        jaxpg.make_train(config, agent="mlp")
    with pytest.raises(ValueError, match="algorithm="):
        jaxpg.make_train(config, algorithm=42)


def test_integer_observations_reach_the_agent_unconverted():
    seen = []

    class TokenPolicy(nn.Module):
        @nn.compact
        def __call__(self, carry, obs, reset):
            seen.append(obs.dtype)
            x = nn.Embed(7, 8)(obs[:, 0])
            return carry, nn.Dense(3)(x), nn.Dense(1)(x)[:, 0]

    config = jaxpg.PPOConfig(
        env=TokenEnv(), num_envs=2, num_steps=8, num_minibatches=2, total_timesteps=32
    )
    assert config.env_spec.obs_dtype == jnp.int32
    result = jax.jit(jaxpg.make_train(config, agent=TokenPolicy()))(jax.random.key(0))
    assert result.state.env.obs.dtype == jnp.int32
    assert seen and all(d == jnp.int32 for d in seen)


def test_large_action_spaces_draw_noise_per_step(monkeypatch):
    """Above PREDRAW_MAX_NOISE the rollout draws each step's noise in the step; the samples
    still follow the policy."""
    from jaxpg import rollout as rollout_lib

    logits = jnp.log(jnp.asarray([0.1, 0.2, 0.3, 0.4]))

    def apply(params, carry, obs, reset):
        return carry, jnp.broadcast_to(logits, (obs.shape[0], 4)), jnp.zeros(obs.shape[0])

    agent = Agent(lambda k: None, lambda n: (), apply, True)
    env = jaxpg.make_env(TokenEnv(num_actions=4))
    counts = {}
    default = rollout_lib.PREDRAW_MAX_NOISE
    for predraw_max in (default, 0):
        monkeypatch.setattr(rollout_lib, "PREDRAW_MAX_NOISE", predraw_max)
        carry = env_carry_init(jax.random.key(0), env, 500)
        _, batch = jax.jit(
            lambda c: rollout(
                jax.random.key(1),
                None,
                c,
                jnp.float32(0.9),
                env=env,
                agent=agent,
                dist=CATEGORICAL,
                num_steps=40,
                options=PLAIN,
            )
        )(carry)
        counts[predraw_max] = np.bincount(np.asarray(batch.action).ravel(), minlength=4) / 20_000
    for freq in counts.values():
        np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.015)
    assert not np.array_equal(counts[0], counts[default])  # other draws, same distribution


# -- a recurrent agent -------------------------------------------------------------------------


def step_counter_agent() -> Agent:
    """Carry c [N]: the number of observations seen in the current episode. Uniform logits;
    ``V = c`` after reading the observation, so every value is computable by hand."""

    def apply(params, carry, obs, reset):
        c = jnp.where(reset, 0.0, carry) + 1.0
        return c, jnp.zeros((obs.shape[0], 2)), c

    return Agent(lambda key: {}, lambda n: jnp.zeros((n,)), apply, True)


def test_recurrent_carry_resets_at_episode_starts_and_bootstraps_from_its_own_carry():
    limit = 4
    env = jaxpg.make_env(CountEnv(limit=limit))  # truncated every 4 steps
    agent = step_counter_agent()
    assert is_recurrent(agent)
    carry = env_carry_init(jax.random.key(0), env, 3, agent_carry=jnp.full((3,), 99.0))
    new_carry, batch = jax.jit(
        lambda c: rollout(
            jax.random.key(1),
            {},
            c,
            jnp.float32(0.9),
            env=env,
            agent=agent,
            dist=CATEGORICAL,
            num_steps=10,
            options=PLAIN,
        )
    )(carry)
    t = np.arange(10)
    # The stale 99 is reset at the first step, and again after every episode end.
    np.testing.assert_array_equal(batch.reset[:, 0], (t % limit) == 0)
    np.testing.assert_array_equal(batch.value[:, 0], t % limit + 1)
    # V(final_obs) of the truncated step 3 comes from the carry that reached it: 5, not the 1 of
    # a reset carry; a mid-episode step's bootstrap is the next step's value.
    np.testing.assert_array_equal(batch.next_value[:, 0], t % limit + 2)
    assert batch.truncated[3, 0] and batch.next_value[3, 0] == limit + 1
    np.testing.assert_array_equal(new_carry.agent_carry, [2.0, 2.0, 2.0])  # steps 8, 9
    # A carry after a done equals the initial carry: reset wins over whatever was carried.
    c, _, _ = agent.apply({}, jnp.asarray([7.0, 3.0]), jnp.zeros((2, 2)), jnp.asarray([True, True]))
    _, _, v0 = agent.apply({}, agent.initial_carry(2), jnp.zeros((2, 2)), jnp.asarray([True, True]))
    np.testing.assert_array_equal(c, v0)


class TinyRecurrent(nn.Module):
    """A small Elman-style recurrent policy with a value head, as a user would write one."""

    hidden: int = 8

    def initial_carry(self, num_envs):
        return jnp.zeros((num_envs, self.hidden))

    @nn.compact
    def __call__(self, carry, obs, reset):
        h = jnp.where(reset[:, None], 0.0, carry)
        h = jnp.tanh(nn.Dense(self.hidden)(obs) + nn.Dense(self.hidden, use_bias=False)(h))
        return h, nn.Dense(2)(h), nn.Dense(1)(h)[:, 0]


def test_replaying_a_recurrent_agent_gives_the_rollouts_log_probs_and_values():
    config = jaxpg.PPOConfig(
        env=CountEnv(limit=5),
        num_envs=4,
        num_steps=16,
        num_minibatches=2,
        total_timesteps=4 * 16 * 2,
    )
    agent = agent_from_module(TinyRecurrent(), env=config.env_spec)
    params = agent.init(jax.random.key(0))
    carry = env_carry_init(
        jax.random.key(1), config.env_spec, 4, agent_carry=agent.initial_carry(4)
    )
    carry = carry.replace(
        agent_carry=jax.random.normal(jax.random.key(2), (4, 8))
    )  # mid-episode state
    carry = carry.replace(episode_start=jnp.zeros(4, bool))
    _, batch = jax.jit(
        lambda c: rollout(
            jax.random.key(3),
            params,
            c,
            jnp.float32(0.99),
            env=config.env_spec,
            agent=agent,
            dist=CATEGORICAL,
            num_steps=16,
            options=PLAIN,
        )
    )(carry)
    assert np.any(batch.reset[1:])  # episodes end in the middle of the rollout
    _, dist_params, values = jax.jit(functools.partial(unroll, agent))(
        params, carry.agent_carry, batch.obs, batch.reset
    )
    np.testing.assert_allclose(
        CATEGORICAL.log_prob(dist_params, batch.action), batch.log_prob, atol=1e-6, rtol=0
    )
    np.testing.assert_allclose(values, batch.value, atol=1e-6, rtol=0)
    # The same through the sequence minibatches: at the rollout's parameters every ratio is 1.
    batch_all = jaxpg.Batch(batch, jaxpg.Targets(*(jnp.ones((16, 4)),) * 4), carry.agent_carry)
    mbs = updates.split_minibatches(jax.random.key(4), batch_all, 2, sequences=True)
    loss = functools.partial(
        actor_critic_loss,
        agent=agent,
        dist=CATEGORICAL,
        surrogate=ppo_surrogate,
        normalize_advantages=True,
        clip_value_loss=True,
    )
    for m in range(2):
        _, aux = loss(params, jax.tree.map(lambda x: x[m], mbs), hparams())
        assert abs(float(aux["approx_kl"])) < 1e-6 and float(aux["clip_fraction"]) == 0.0


def test_a_recurrent_agent_trains_with_sequence_minibatches():
    config = jaxpg.PPOConfig(
        env="CartPole-v1", num_envs=8, num_steps=32, num_minibatches=4, total_timesteps=8 * 32 * 4
    )
    result = jax.jit(jaxpg.make_train(config, agent=TinyRecurrent()))(jax.random.key(0))
    assert result.state.env.agent_carry.shape == (8, 8)
    assert not np.any(np.asarray(result.metrics["nonfinite"]))
    assert np.all(np.asarray(result.metrics["approx_kl"]) > 0)  # the parameters moved
    seeds = jax.jit(jax.vmap(jaxpg.make_train(config, agent=TinyRecurrent())))(
        jax.random.split(jax.random.key(0), 2)
    )
    assert seeds.state.env.agent_carry.shape == (2, 8, 8)
    with pytest.raises(ValueError, match="num_minibatches=3"):
        jaxpg.make_train(
            config.replace(num_minibatches=3, num_envs=8, num_steps=48), agent=TinyRecurrent()
        )
    policy = jaxpg.make_policy(config, TinyRecurrent())
    c = policy.initial_carry(5)
    c, action = policy.step(
        result.params, c, jnp.zeros((5, 4)), jnp.ones(5, bool), jax.random.key(0)
    )
    assert c.shape == (5, 8) and action.shape == (5,)
    with pytest.raises(ValueError, match="recurrent"):
        policy.act(result.params, jnp.zeros((5, 4)))


# -- probe environments ------------------------------------------------------------------------


def probe_run(kind, algorithm="ppo", steps=8_192):
    cls = jaxpg.PPOConfig if algorithm == "ppo" else jaxpg.A2CConfig
    config = cls(
        env=ProbeEnv(kind),
        num_envs=16,
        num_steps=16,
        lr=3e-3,
        ent_coef=0.0,
        anneal_lr=False,
        normalize_rewards=False,
        total_timesteps=steps,
    )
    result = jax.jit(jaxpg.make_train(config))(jax.random.key(0))
    return config, result


def test_probe_constant_reward_value_is_one():
    config, result = probe_run("constant")
    policy = jaxpg.make_policy(config)
    np.testing.assert_allclose(
        policy.value(result.params, jnp.asarray([[1.0, 0.0]])), 1.0, atol=0.05
    )


@pytest.mark.parametrize("algorithm", ["ppo", "a2c"])
def test_probe_action_dependent_reward(algorithm):
    config, result = probe_run("action", algorithm)
    policy = jaxpg.make_policy(config)
    s0 = jnp.asarray([[1.0, 0.0]])
    p1 = float(jnp.exp(policy.log_prob(result.params, s0, jnp.asarray([1]))[0]))
    assert p1 > 0.9
    # The critic learns the expected reward, E[r] = P(action 1).
    assert float(policy.value(result.params, s0)[0]) == pytest.approx(p1, abs=0.05)
    # The advantages of one batch: one-step episodes, so A(1) - A(0) is the reward gap, 1.
    agent = jaxpg.make_agent(config)
    carry = env_carry_init(jax.random.key(9), config.env_spec, 64)
    _, batch = rollout(
        jax.random.key(10),
        result.params.network,
        carry,
        jnp.float32(0.99),
        env=config.env_spec,
        agent=agent,
        dist=CATEGORICAL,
        num_steps=1,
        options=PLAIN,
    )
    batch = batch._replace(action=jnp.tile(jnp.asarray([0, 1]), 32)[None])
    batch = batch._replace(reward=batch.action.astype(jnp.float32))
    targets, _ = jaxpg.algorithms.gae_targets(batch, config.hparams(), ())
    adv = np.asarray(targets.advantages[0])
    np.testing.assert_allclose(adv[1::2] - adv[::2], 1.0, atol=1e-6)
    assert np.all(adv[::2] < 0)  # action 0 is worse than the policy's average


def test_probe_two_step_credit_assignment():
    config, result = probe_run("two_step", steps=16_384)
    policy = jaxpg.make_policy(config)
    s0, s1 = jnp.asarray([[1.0, 0.0]]), jnp.asarray([[0.0, 1.0]])
    p1 = float(jnp.exp(policy.log_prob(result.params, s0, jnp.asarray([1]))[0]))
    assert p1 > 0.9  # the delayed reward was credited to the first action
    # V(s1) cannot tell the first action; V(s0) is the discounted expected reward.
    v0, v1 = (float(policy.value(result.params, s)[0]) for s in (s0, s1))
    assert v1 == pytest.approx(p1, abs=0.1) and v0 == pytest.approx(0.99 * p1, abs=0.1)
    # With that critic, GAE credits action 1 at the first step and blames action 0.
    T = 2
    batch = numbered_batch(T, 2).transitions._replace(
        action=jnp.asarray([[1, 0], [0, 0]]),
        reward=jnp.asarray([[0.0, 0.0], [1.0, 0.0]]),
        value=jnp.asarray([[v0, v0], [v1, v1]]),
        next_value=jnp.asarray([[v1, v1], [0.0, 0.0]]),
        terminated=jnp.asarray([[False, False], [True, True]]),
    )
    targets, _ = jaxpg.algorithms.gae_targets(batch, config.hparams(), ())
    adv = np.asarray(targets.advantages[0])
    # By hand: both first steps have delta_0 = gamma V(s1) - V(s0); the second steps' deltas are
    # r - V(s1), so GAE carries the reward gap, 1, back to the first action by gamma * lambda.
    # Action 0 is blamed; action 1, which the converged policy takes, has an advantage near 0
    # whose sign is the critic's error, so the gap is what shows the credit.
    g, lam = float(config.hparams().gamma), float(config.hparams().gae_lambda)
    delta0 = g * v1 - v0
    want = [delta0 + g * lam * (1.0 - v1), delta0 + g * lam * (0.0 - v1)]
    np.testing.assert_allclose(adv, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adv[0] - adv[1], g * lam, rtol=1e-5)
    assert adv[1] < 0


# -- the registry -----------------------------------------------------------------------------


def test_registry_maps_every_name_to_its_config_and_builder():
    from jaxpg import registry

    assert registry.names()[:4] == ("ppo", "a2c", "trpo", "reinforce")
    for name in registry.names():
        entry = registry.lookup(name)
        assert entry.config_class.algorithm == name
        config = entry.config_class()
        algorithm = entry.build(config, jaxpg.make_agent(config))
        assert isinstance(algorithm, jaxpg.Algorithm)
    with pytest.raises(ValueError, match="algorithm='sac'.*ppo"):
        registry.lookup("sac")
