"""Tests for jaxpg.losses against NumPy, hand-derived gradients and identities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpg import losses

TOL = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
    with jax.numpy_rank_promotion("raise"):
        yield


def rand(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def rand_mask(shape, seed, p=0.6):
    mask = np.random.default_rng(seed).random(shape) < p
    mask.reshape(-1)[0] = True
    return mask


# --- masked_mean -------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7,), (7, 3), (7, 3, 2)])
def test_masked_mean_divides_by_valid_count(shape):
    x, mask = rand(shape, 0), rand_mask(shape, 1)
    want = x[mask].astype(np.float64).mean()
    np.testing.assert_allclose(jax.jit(losses.masked_mean)(x, mask), want, **TOL)
    np.testing.assert_allclose(losses.masked_mean(x, mask.astype(np.float32)), want, **TOL)
    np.testing.assert_allclose(losses.masked_mean(x), x.astype(np.float64).mean(), **TOL)


def test_masked_mean_ignores_nan_padding_in_value_and_gradient():
    x = np.array([1.0, np.nan, 3.0, np.inf], np.float32)
    mask = np.array([True, False, True, False])
    assert float(losses.masked_mean(x, mask)) == 2.0
    grad = jax.grad(losses.masked_mean)(x, mask)
    np.testing.assert_array_equal(grad, [0.5, 0.0, 0.5, 0.0])


def test_all_masked_gives_zero_and_finite_gradients():
    shape = (5, 2)
    none = np.zeros(shape, bool)
    lp, old, a = rand(shape, 2), rand(shape, 3), rand(shape, 4)
    cases = {
        "masked_mean": (lambda x: losses.masked_mean(x, none)),
        "reinforce_loss": (lambda x: losses.reinforce_loss(x, a, none)),
        "ppo_clip_loss": (lambda x: losses.ppo_clip_loss(x, old, a, 0.2, none)),
        "value_loss": (lambda x: losses.value_loss(x, a, old, 0.2, none)),
        "entropy_bonus": (lambda x: losses.entropy_bonus(x, none)),
    }
    for name, fn in cases.items():
        value, grad = jax.value_and_grad(fn)(lp)
        assert float(value) == 0.0, name
        assert np.all(np.asarray(grad) == 0.0), name
    assert float(losses.approx_kl(lp, old, none)) == 0.0
    assert float(losses.clip_fraction(lp, old, 0.2, none)) == 0.0


# --- reinforce_loss ----------------------------------------------------------


def test_reinforce_gradient_on_softmax_bandit_matches_hand_derivation():
    rng = np.random.default_rng(5)
    K, n = 4, 256
    theta = rng.normal(size=K).astype(np.float32)
    probs = np.exp(theta - theta.max())
    probs /= probs.sum()
    actions = rng.choice(K, size=n, p=probs)
    advantages = rng.normal(size=n).astype(np.float32)

    def loss(th):
        log_prob = jax.nn.log_softmax(th)[actions]
        return losses.reinforce_loss(log_prob, advantages)

    got = jax.jit(jax.grad(loss))(theta)
    onehot = np.eye(K)[actions]
    want = -np.mean(advantages[:, None] * (onehot - probs[None, :]), axis=0)
    np.testing.assert_allclose(got, want, **TOL)


def test_reinforce_loss_value_and_mask():
    lp, a, mask = rand((6, 3), 6), rand((6, 3), 7), rand_mask((6, 3), 8)
    want = -(lp * a)[mask].astype(np.float64).mean()
    np.testing.assert_allclose(losses.reinforce_loss(lp, a, mask), want, **TOL)


def test_advantages_and_old_quantities_get_no_gradient():
    lp, old, a = rand((6, 3), 9), rand((6, 3), 10), rand((6, 3), 11)
    np.testing.assert_array_equal(jax.grad(losses.reinforce_loss, 1)(lp, a), 0.0)
    grads = jax.grad(losses.ppo_clip_loss, (1, 2))(lp, old, a, 0.2)
    for g in grads:
        np.testing.assert_array_equal(g, 0.0)
    v, ret = rand((6, 3), 12), rand((6, 3), 13)
    grads = jax.grad(losses.value_loss, (1, 2))(v, ret, old, 0.2)
    for g in grads:
        np.testing.assert_array_equal(g, 0.0)
    # Sanity: the trainable inputs do get gradient.
    assert np.any(np.asarray(jax.grad(losses.reinforce_loss)(lp, a)) != 0.0)
    assert np.any(np.asarray(jax.grad(losses.value_loss)(v, ret, old, 0.2)) != 0.0)


# --- ppo_clip_loss -----------------------------------------------------------


def test_ppo_gradient_is_zero_exactly_where_the_clipped_term_is_the_minimum():
    eps = 0.2
    rng = np.random.default_rng(14)
    n = 400
    # Ratios well inside or well outside [1 - eps, 1 + eps]: no ties.
    ratio = rng.choice([0.5, 0.7, 0.9, 1.05, 1.15, 1.3, 2.0], size=n).astype(np.float32)
    advantages = (rng.choice([-1.0, 1.0], size=n) * rng.uniform(0.1, 2.0, size=n)).astype(
        np.float32
    )
    old = rng.normal(size=n).astype(np.float32)
    lp = (old + np.log(ratio)).astype(np.float32)

    got = jax.grad(losses.ppo_clip_loss)(lp, old, advantages, eps)
    clipped_is_min = ((ratio > 1 + eps) & (advantages > 0)) | ((ratio < 1 - eps) & (advantages < 0))
    assert 0 < clipped_is_min.sum() < n
    want = np.where(clipped_is_min, 0.0, -advantages * ratio / n)
    np.testing.assert_array_equal(np.asarray(got)[clipped_is_min], 0.0)
    np.testing.assert_allclose(got, want, **TOL)

    surrogate = np.minimum(ratio * advantages, np.clip(ratio, 1 - eps, 1 + eps) * advantages)
    np.testing.assert_allclose(
        losses.ppo_clip_loss(lp, old, advantages, eps), -surrogate.mean(), **TOL
    )


def test_ppo_gradient_equals_policy_gradient_at_ratio_one():
    lp, a, mask = rand((8, 4), 15), rand((8, 4), 16), rand_mask((8, 4), 17)
    ppo = jax.grad(lambda x: losses.ppo_clip_loss(x, lp, a, 0.2, mask))(lp)
    pg = jax.grad(lambda x: losses.reinforce_loss(x, a, mask))(lp)
    np.testing.assert_allclose(ppo, pg, **TOL)

    # The same identity through a softmax policy's parameters.
    rng = np.random.default_rng(18)
    theta = rng.normal(size=5).astype(np.float32)
    actions = rng.integers(0, 5, size=64)
    adv = rng.normal(size=64).astype(np.float32)
    old = jax.nn.log_softmax(theta)[actions]

    def ppo_loss(th):
        return losses.ppo_clip_loss(jax.nn.log_softmax(th)[actions], old, adv, 0.1)

    def pg_loss(th):
        return losses.reinforce_loss(jax.nn.log_softmax(th)[actions], adv)

    np.testing.assert_allclose(jax.grad(ppo_loss)(theta), jax.grad(pg_loss)(theta), **TOL)


def test_ppo_clip_eps_can_be_vmapped():
    lp, old, a = rand((8, 4), 19), rand((8, 4), 20, 0.3), rand((8, 4), 21)
    eps = jnp.array([0.05, 0.2, 0.5])
    swept = jax.vmap(lambda e: losses.ppo_clip_loss(lp, old, a, e))(eps)
    for i, e in enumerate([0.05, 0.2, 0.5]):
        np.testing.assert_allclose(swept[i], losses.ppo_clip_loss(lp, old, a, e), **TOL)
    assert len(set(np.round(np.asarray(swept), 6))) == 3


# --- value_loss --------------------------------------------------------------


def test_value_loss_matches_numpy():
    v, ret, old, mask = rand((9, 3), 22), rand((9, 3), 23), rand((9, 3), 24), rand_mask((9, 3), 25)
    v64, ret64, old64 = (x.astype(np.float64) for x in (v, ret, old))
    plain = 0.5 * ((v64 - ret64) ** 2)[mask].mean()
    np.testing.assert_allclose(losses.value_loss(v, ret, mask=mask), plain, **TOL)

    eps = 0.3
    v_clip = old64 + np.clip(v64 - old64, -eps, eps)
    clipped = 0.5 * np.maximum((v64 - ret64) ** 2, (v_clip - ret64) ** 2)[mask].mean()
    got = jax.jit(losses.value_loss)(v, ret, old, eps, mask)
    np.testing.assert_allclose(got, clipped, **TOL)
    assert not np.isclose(clipped, plain)


@pytest.mark.parametrize("kwargs", [dict(old_values=np.zeros(4, np.float32)), dict(clip_eps=0.2)])
def test_value_loss_requires_old_values_and_clip_eps_together(kwargs):
    with pytest.raises(
        ValueError, match="value_loss: old_values and clip_eps must be given together"
    ):
        losses.value_loss(np.zeros(4, np.float32), np.ones(4, np.float32), **kwargs)


# --- entropy and diagnostics -------------------------------------------------


def test_entropy_bonus_is_masked_mean():
    ent, mask = np.abs(rand((6, 2), 26)), rand_mask((6, 2), 27)
    np.testing.assert_allclose(losses.entropy_bonus(ent, mask), ent[mask].mean(), **TOL)


def test_approx_kl_matches_numpy_and_is_nonnegative():
    lp, old, mask = rand((10, 4), 28), rand((10, 4), 29), rand_mask((10, 4), 30)
    log_ratio = lp.astype(np.float64) - old
    per_step = (np.exp(log_ratio) - 1.0) - log_ratio
    np.testing.assert_allclose(losses.approx_kl(lp, old, mask), per_step[mask].mean(), **TOL)
    for seed in range(5):
        x, y = rand((50,), 100 + seed, 3.0), rand((50,), 200 + seed, 3.0)
        assert float(losses.approx_kl(x, y)) >= 0.0
    assert float(losses.approx_kl(lp, lp)) == 0.0
    np.testing.assert_array_equal(jax.grad(losses.approx_kl)(lp, old), 0.0)


def test_clip_fraction_matches_numpy():
    lp, old, mask = rand((10, 4), 31, 0.3), rand((10, 4), 32, 0.3), rand_mask((10, 4), 33)
    ratio = np.exp(lp.astype(np.float64) - old)
    want = (np.abs(ratio - 1.0) > 0.2)[mask].mean()
    assert 0.0 < want < 1.0
    np.testing.assert_allclose(losses.clip_fraction(lp, old, 0.2, mask), want, **TOL)


def test_explained_variance_matches_numpy():
    ret, mask = rand((12, 3), 34), rand_mask((12, 3), 35)
    v = (ret + 0.5 * rand((12, 3), 36)).astype(np.float32)
    r, vv = ret[mask].astype(np.float64), v[mask].astype(np.float64)
    want = 1.0 - np.var(r - vv) / np.var(r)
    np.testing.assert_allclose(losses.explained_variance(v, ret, mask), want, **TOL)
    np.testing.assert_allclose(losses.explained_variance(ret, ret), 1.0, **TOL)
    np.testing.assert_allclose(losses.explained_variance(np.zeros_like(ret), ret), 0.0, **TOL)
    assert np.isnan(losses.explained_variance(v, np.ones_like(ret)))
    assert np.isnan(losses.explained_variance(v, ret, np.zeros_like(mask)))


# --- shape checks at trace time ----------------------------------------------


def test_shape_mismatch_raises_at_trace_time_naming_arguments():
    a, b = jnp.zeros((4, 2)), jnp.zeros((4,))
    with pytest.raises(ValueError, match=r"reinforce_loss: .*log_prob \(4, 2\), advantages \(4,\)"):
        jax.jit(losses.reinforce_loss)(a, b)
    with pytest.raises(ValueError, match=r"ppo_clip_loss: .*old_log_prob \(4,\)"):
        jax.jit(losses.ppo_clip_loss)(a, b, a, 0.2)
    with pytest.raises(ValueError, match=r"value_loss: .*mask \(4,\)"):
        jax.jit(losses.value_loss)(a, a, mask=b)
    with pytest.raises(ValueError, match=r"masked_mean: .*x \(4, 2\), mask \(2,\)"):
        losses.masked_mean(a, jnp.ones((2,)))
    with pytest.raises(ValueError, match=r"explained_variance: .*returns \(4,\)"):
        losses.explained_variance(a, b)
    with pytest.raises(ValueError, match=r"ppo_clip_loss: clip_eps must be a scalar"):
        losses.ppo_clip_loss(a, a, a, jnp.array([0.1, 0.2]))
