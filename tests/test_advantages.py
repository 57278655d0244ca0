"""Tests for jaxpg.advantages against independent NumPy loops and identities."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpg import advantages as adv

SHAPES = [(13,), (13, 4), (13, 3, 2)]
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
    with jax.numpy_rank_promotion("raise"):
        yield


def make_batch(shape, seed=0):
    """Random rollout with a mix of terminated, truncated and both."""
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=shape).astype(np.float32)
    values = rng.normal(size=shape).astype(np.float32)
    next_values = rng.normal(size=shape).astype(np.float32)
    terminated = rng.random(shape) < 0.2
    truncated = rng.random(shape) < 0.2
    flat_term, flat_trunc = terminated.reshape(-1), truncated.reshape(-1)
    flat_term[2], flat_trunc[2] = True, True  # both on the same step
    flat_term[5], flat_trunc[5] = True, False
    flat_term[8], flat_trunc[8] = False, True
    return rewards, values, next_values, terminated, truncated


# --- independent references: scalar loops over each trajectory -------------


def columns(*arrays):
    """Views each [T, *batch] array as a list of [T] float64 columns."""
    T = arrays[0].shape[0]
    flat = [np.asarray(a, np.float64).reshape(T, -1) for a in arrays]
    return [[f[:, j] for f in flat] for j in range(flat[0].shape[1])]


def np_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    T = rewards.shape[0]
    out = []
    for r, v, nv, term, trunc in columns(rewards, values, next_values, terminated, truncated):
        a = np.zeros(T)
        running = 0.0
        for t in reversed(range(T)):
            if term[t] or trunc[t]:
                running = 0.0
            delta = r[t] + (0.0 if term[t] else gamma * nv[t]) - v[t]
            running = delta + gamma * lam * running
            a[t] = running
        out.append(a)
    advantages = np.stack(out, axis=1).reshape(rewards.shape)
    return advantages, advantages + np.asarray(values, np.float64)


def np_discounted_returns(rewards, next_values, terminated, truncated, gamma):
    T = rewards.shape[0]
    out = []
    for r, nv, term, trunc in columns(rewards, next_values, terminated, truncated):
        g = np.zeros(T)
        for t in reversed(range(T)):
            boot = nv[t] if (term[t] or trunc[t] or t == T - 1) else g[t + 1]
            g[t] = r[t] + (0.0 if term[t] else gamma * boot)
        out.append(g)
    return np.stack(out, axis=1).reshape(rewards.shape)


def np_forward_returns(rewards, next_values, terminated, truncated, gamma):
    """Forward-sum form: G_t = sum_{k=t}^{end} gamma^(k-t) r_k + bootstrap."""
    T = rewards.shape[0]
    out = []
    for r, nv, term, trunc in columns(rewards, next_values, terminated, truncated):
        g = np.zeros(T)
        for t in range(T):
            end = t
            while not (term[end] or trunc[end] or end == T - 1):
                end += 1
            g[t] = sum(gamma ** (k - t) * r[k] for k in range(t, end + 1))
            if not term[end]:
                g[t] += gamma ** (end - t + 1) * nv[end]
        out.append(g)
    return np.stack(out, axis=1).reshape(rewards.shape)


# --- gae ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_gae_matches_numpy_loop(shape):
    batch = make_batch(shape)
    got_a, got_r = jax.jit(adv.gae)(*batch, 0.97, 0.9)
    want_a, want_r = np_gae(*batch, 0.97, 0.9)
    np.testing.assert_allclose(got_a, want_a, **TOL)
    np.testing.assert_allclose(got_r, want_r, **TOL)


def test_gae_accepts_float_flags():
    r, v, nv, term, trunc = make_batch((13, 4))
    want = adv.gae(r, v, nv, term, trunc, 0.9, 0.8)
    got = adv.gae(r, v, nv, term.astype(np.float32), trunc.astype(np.float32), 0.9, 0.8)
    np.testing.assert_allclose(got[0], want[0], **TOL)


def test_gae_vmap_equals_batched():
    batch = make_batch((13, 5), seed=1)
    full_a, full_r = adv.gae(*batch, 0.99, 0.95)
    # vmap over the env axis: each call sees a [T] trajectory.
    per_env = jax.vmap(lambda *b: adv.gae(*b, 0.99, 0.95), in_axes=1, out_axes=1)
    got_a, got_r = jax.jit(per_env)(*batch)
    np.testing.assert_allclose(got_a, full_a, **TOL)
    np.testing.assert_allclose(got_r, full_r, **TOL)


def test_gae_lambda_zero_is_td_error():
    r, v, nv, term, trunc = make_batch((13, 4), seed=2)
    got, _ = adv.gae(r, v, nv, term, trunc, 0.9, 0.0)
    td = r + 0.9 * (1.0 - term) * nv - v
    np.testing.assert_allclose(got, td, **TOL)


def test_gae_lambda_one_is_mc_return_minus_value():
    r, v, _, term, _ = make_batch((13, 4), seed=3)
    no_trunc = np.zeros_like(term)
    # Consistent next values: V(s'_t) = V(s_{t+1}) inside an episode.
    rng = np.random.default_rng(3)
    nv = np.concatenate([v[1:], rng.normal(size=(1, 4)).astype(np.float32)])
    got, _ = adv.gae(r, v, nv, term, no_trunc, 0.95, 1.0)
    want = np_forward_returns(r, nv, term, no_trunc, 0.95) - v
    np.testing.assert_allclose(got, want, **TOL)
    # Identity between the two estimators.
    mc = adv.discounted_returns(r, nv, term, no_trunc, 0.95)
    np.testing.assert_allclose(got, mc - v, **TOL)


def test_truncation_bootstraps_from_next_values_termination_does_not():
    r, v, nv, term, trunc = make_batch((13,), seed=4)
    term[:], trunc[:] = False, False
    term[4], trunc[9] = True, True
    base_a, _ = adv.gae(r, v, nv, term, trunc, 0.9, 0.8)
    base_g = adv.discounted_returns(r, nv, term, trunc, 0.9)

    bumped = nv.copy()
    bumped[9] += 1.0
    a, _ = adv.gae(r, v, bumped, term, trunc, 0.9, 0.8)
    g = adv.discounted_returns(r, bumped, term, trunc, 0.9)
    np.testing.assert_allclose(a[9] - base_a[9], 0.9, **TOL)
    np.testing.assert_allclose(g[9] - base_g[9], 0.9, **TOL)
    # Credit flows back to the start of the truncated episode, not before it.
    np.testing.assert_allclose(a[8] - base_a[8], 0.9 * 0.9 * 0.8, **TOL)
    np.testing.assert_allclose(a[:5], base_a[:5], **TOL)
    np.testing.assert_allclose(a[10:], base_a[10:], **TOL)

    bumped = nv.copy()
    bumped[4] = np.nan  # a terminal value is never read, not even as 0 * NaN
    a, _ = adv.gae(r, v, bumped, term, trunc, 0.9, 0.8)
    g = adv.discounted_returns(r, bumped, term, trunc, 0.9)
    np.testing.assert_allclose(a, base_a, **TOL)
    np.testing.assert_allclose(g, base_g, **TOL)


def test_traced_gamma_and_lambda_match_per_value_calls_without_retracing():
    batch = make_batch((13, 3), seed=5)
    gammas = jnp.array([0.5, 0.9, 0.99], jnp.float32)
    lams = jnp.array([0.0, 0.7, 1.0], jnp.float32)
    swept_a, swept_r = jax.vmap(lambda g, lam: adv.gae(*batch, g, lam))(gammas, lams)
    swept_g = jax.vmap(lambda g: adv.discounted_returns(batch[0], *batch[2:], g))(gammas)
    for i, (g, lam) in enumerate(zip([0.5, 0.9, 0.99], [0.0, 0.7, 1.0])):
        want_a, want_r = np_gae(*batch, g, lam)
        np.testing.assert_allclose(swept_a[i], want_a, **TOL)
        np.testing.assert_allclose(swept_r[i], want_r, **TOL)
        want_g = np_discounted_returns(batch[0], *batch[2:], g)
        np.testing.assert_allclose(swept_g[i], want_g, **TOL)

    jitted = jax.jit(chex.assert_max_traces(lambda g, lam: adv.gae(*batch, g, lam), n=1))
    for g, lam in zip(gammas, lams):
        jitted(g, lam)


def test_gae_gradient_wrt_values_matches_numpy_finite_differences():
    r, v, nv, term, trunc = make_batch((9, 2), seed=6)
    grad = jax.grad(lambda vals: jnp.sum(adv.gae(r, vals, nv, term, trunc, 0.9, 0.8)[0]))(v)
    assert np.all(np.isfinite(grad))
    # GAE is linear in values, so a unit finite difference of the NumPy loop is exact.
    base = np_gae(r, v, nv, term, trunc, 0.9, 0.8)[0].sum()
    want = np.zeros(v.shape)
    for idx in np.ndindex(v.shape):
        bumped = v.astype(np.float64)
        bumped[idx] += 1.0
        want[idx] = np_gae(r, bumped, nv, term, trunc, 0.9, 0.8)[0].sum() - base
    np.testing.assert_allclose(grad, want, **TOL)

    grad_nv = jax.grad(lambda n: jnp.sum(adv.gae(r, v, n, term, trunc, 0.9, 0.8)[0]))(nv)
    assert np.all(grad_nv[term] == 0.0)
    assert np.all(grad_nv[~term] != 0.0)


def test_gae_shape_errors_name_the_arguments():
    r, v, nv, term, trunc = make_batch((13, 4))
    with pytest.raises(ValueError, match=r"gae: .*rewards \(13, 4\), values \(13,\)"):
        jax.jit(adv.gae)(r, v[:, 0], nv, term, trunc, 0.9, 0.9)
    with pytest.raises(ValueError, match=r"gae: .*truncated \(13, 3\)"):
        adv.gae(r, v, nv, term, trunc[:, :3], 0.9, 0.9)
    with pytest.raises(ValueError, match=r"gae: gamma must be a scalar.*\(2,\)"):
        adv.gae(r, v, nv, term, trunc, jnp.array([0.9, 0.9]), 0.9)
    with pytest.raises(ValueError, match=r"discounted_returns: .*next_values \(12, 4\)"):
        adv.discounted_returns(r, nv[1:], term, trunc, 0.9)
    with pytest.raises(ValueError, match=r"gae: rewards must be time-major"):
        adv.gae(*(x[0, 0] for x in (r, v, nv, term, trunc)), 0.9, 0.9)


# --- discounted_returns ------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_discounted_returns_matches_numpy_loop(shape):
    r, _, nv, term, trunc = make_batch(shape, seed=7)
    got = jax.jit(adv.discounted_returns)(r, nv, term, trunc, 0.93)
    np.testing.assert_allclose(got, np_discounted_returns(r, nv, term, trunc, 0.93), **TOL)
    np.testing.assert_allclose(got, np_forward_returns(r, nv, term, trunc, 0.93), **TOL)


def test_discounted_returns_with_zero_next_values_is_monte_carlo():
    r, _, _, term, trunc = make_batch((13, 4), seed=8)
    zeros = np.zeros_like(r)
    got = adv.discounted_returns(r, zeros, term, trunc, 0.9)
    np.testing.assert_allclose(got, np_forward_returns(r, zeros, term, trunc, 0.9), **TOL)
    # Hand-checked case: one column, episode boundary after step 1.
    r1 = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    done = np.array([False, True, False, False])
    got = adv.discounted_returns(r1, np.zeros(4, np.float32), done, np.zeros(4, bool), 0.5)
    np.testing.assert_allclose(got, [2.0, 2.0, 5.0, 4.0], **TOL)


def test_discounted_returns_vmap_equals_batched():
    r, _, nv, term, trunc = make_batch((13, 5), seed=9)
    full = adv.discounted_returns(r, nv, term, trunc, 0.9)
    per_env = jax.vmap(lambda *b: adv.discounted_returns(*b, 0.9), in_axes=1, out_axes=1)(
        r, nv, term, trunc
    )
    np.testing.assert_allclose(per_env, full, **TOL)


# --- normalize_advantages ----------------------------------------------------


def test_normalize_advantages_matches_numpy_on_valid_entries():
    rng = np.random.default_rng(10)
    a = rng.normal(3.0, 2.0, size=(13, 4)).astype(np.float32)
    mask = rng.random((13, 4)) < 0.6
    a_with_junk = np.where(mask, a, 1e6).astype(np.float32)

    got = jax.jit(adv.normalize_advantages)(a_with_junk, mask)
    valid = a[mask].astype(np.float64)
    want = (valid - valid.mean()) / (valid.std() + 1e-8)
    np.testing.assert_allclose(np.asarray(got)[mask], want, **TOL)
    assert np.all(np.asarray(got)[~mask] == 0.0)

    got = adv.normalize_advantages(a)
    want = (a - a.mean()) / (a.std() + 1e-8)
    np.testing.assert_allclose(got, want, **TOL)


def test_normalize_advantages_all_masked_is_zero():
    got = adv.normalize_advantages(jnp.ones((5, 2)), jnp.zeros((5, 2), bool))
    assert np.all(np.asarray(got) == 0.0)


# --- moving-average baseline -------------------------------------------------


def test_moving_average_baseline_sequence():
    update = jax.jit(adv.moving_average_baseline_update)
    state = adv.moving_average_baseline_init()
    assert state.value.dtype == jnp.float32 and state.count.dtype == jnp.int32
    assert state.value.shape == () and state.count.shape == ()

    # First update takes the batch mean outright (no bias towards 0).
    state = update(state, jnp.array([[1.0, 3.0]]), 0.5)
    assert (float(state.value), int(state.count)) == (2.0, 1)
    # 0.5 * 2 + 0.5 * mean(4, 4) = 3
    state = update(state, jnp.array([[4.0, 4.0]]), 0.5)
    assert (float(state.value), int(state.count)) == (3.0, 2)
    # No valid entry: unchanged.
    state = update(state, jnp.array([[100.0, 100.0]]), 0.5, jnp.array([[False, False]]))
    assert (float(state.value), int(state.count)) == (3.0, 2)
    # Masked: mean over valid entries only = 10; 0.5 * 3 + 0.5 * 10 = 6.5
    state = update(state, jnp.array([[10.0, -99.0]]), 0.5, jnp.array([[1.0, 0.0]]))
    assert (float(state.value), int(state.count)) == (6.5, 3)


def test_moving_average_baseline_empty_first_update_keeps_waiting():
    state = adv.moving_average_baseline_update(
        adv.moving_average_baseline_init(), jnp.ones((3,)), 0.9, jnp.zeros((3,), bool)
    )
    assert int(state.count) == 0
    state = adv.moving_average_baseline_update(state, jnp.full((3,), 5.0), 0.9)
    assert (float(state.value), int(state.count)) == (5.0, 1)


def test_moving_average_baseline_vmaps_over_decay():
    def run(decay):
        state = adv.moving_average_baseline_init()
        state = adv.moving_average_baseline_update(state, jnp.full((2,), 2.0), decay)
        return adv.moving_average_baseline_update(state, jnp.full((2,), 4.0), decay)

    states = jax.vmap(run)(jnp.array([0.5, 0.9]))
    # 0.5*2 + 0.5*4 = 3.0 ; 0.9*2 + 0.1*4 = 2.2
    np.testing.assert_allclose(states.value, [3.0, 2.2], **TOL)
    np.testing.assert_array_equal(states.count, [2, 2])


# --- per-step and whole-trajectory advantages --------------------------------


def test_per_step_advantages_scalar_and_full_baseline():
    g = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_allclose(adv.per_step_advantages(g, 1.5), g - 1.5)
    np.testing.assert_allclose(adv.per_step_advantages(g, jnp.float32(1.5)), g - 1.5)
    b = np.ones((4, 3), np.float32) * np.arange(3)
    np.testing.assert_allclose(adv.per_step_advantages(g, b), g - b)


@pytest.mark.parametrize("shape", [(3,), (4,), (4, 1), (1, 3), (4, 3, 1)])
def test_per_step_advantages_refuses_other_baseline_shapes(shape):
    g = jnp.zeros((4, 3))
    msg = re.escape("per_step_advantages: baseline must be a scalar") + r".*\(4, 3\).*"
    with pytest.raises(ValueError, match=msg + re.escape(str(shape))):
        jax.jit(adv.per_step_advantages)(g, jnp.zeros(shape))


def np_trajectory_advantages(rewards, mask, baseline):
    T, N = rewards.shape
    out = np.zeros((T, N))
    b = np.broadcast_to(baseline, (N,))
    for j in range(N):
        ret = 0.0
        for t in range(T):
            if mask[t, j]:
                ret += rewards[t, j]
        for t in range(T):
            if mask[t, j]:
                out[t, j] = ret - b[j]
    return out


@pytest.mark.parametrize("baseline", [0.7, np.array([0.1, -2.0, 3.0, 0.0, 1.0], np.float32)])
def test_trajectory_advantages_matches_numpy(baseline):
    rng = np.random.default_rng(11)
    rewards = rng.normal(size=(9, 5)).astype(np.float32)
    lengths = rng.integers(0, 10, size=5)
    mask = np.arange(9)[:, None] < lengths[None, :]
    got = jax.jit(adv.trajectory_advantages)(rewards, mask, baseline)
    np.testing.assert_allclose(got, np_trajectory_advantages(rewards, mask, baseline), **TOL)
    np.testing.assert_allclose(
        adv.episode_returns(rewards, mask), np.where(mask, rewards, 0.0).sum(0), **TOL
    )


def test_trajectory_advantages_refuses_time_major_baseline():
    with pytest.raises(ValueError, match=r"trajectory_advantages: baseline .*\(5,\).*\(9, 5\)"):
        adv.trajectory_advantages(jnp.zeros((9, 5)), jnp.ones((9, 5)), jnp.zeros((9, 5)))
