"""Networks and distributions: orthogonal init, heads, log-probs and entropies."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpg.agents import mlp_agent
from jaxpg.distributions import CATEGORICAL, DIAG_GAUSSIAN
from jaxpg.networks import orthogonal


@pytest.mark.parametrize("shape", [(4, 64), (64, 64), (64, 2), (400, 64)])
def test_orthogonal_init_equals_numpy_qr_of_the_same_gaussian(shape):
    key = jax.random.key(3)
    got = np.asarray(orthogonal(2.0)(key, shape))
    n_rows, n_cols = shape
    tall = (max(shape), min(shape))
    a = np.asarray(jax.random.normal(key, tall, jnp.float32), np.float64)
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))  # the unique QR with a positive diagonal
    want = 2.0 * (q.T if n_rows < n_cols else q)
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_vmapped_init_of_an_image_network_compiles_and_runs():
    """jax 0.10's batched LAPACK QR (flax's orthogonal init under vmap) deadlocked here on a
    2-core CPU; the whole suite runs under a timeout, so a regression fails, not hangs."""
    net = mlp_agent((10, 10, 4), 3, True)
    params = jax.jit(jax.vmap(net.init))(jax.random.split(jax.random.key(0), 8))
    kernel = params["params"]["actor_torso"]["Dense_0"]["kernel"]
    assert kernel.shape == (8, 400, 64)
    gram = np.einsum("bij,bik->bjk", kernel, kernel)
    np.testing.assert_allclose(gram, np.broadcast_to(2.0 * np.eye(64), gram.shape), atol=1e-4)


def test_vmapped_and_nested_vmapped_inits_equal_the_unbatched_init_bit_for_bit():
    """Seeds vmapped through ``train`` (and a sweep's vmap around them) start from exactly the
    parameters that single runs start from: the QR is mapped over the batch, not batched."""
    init = orthogonal(1.0)
    keys = jax.random.split(jax.random.key(5), 6).reshape(2, 3)
    single = np.stack([np.stack([init(k, (64, 16)) for k in row]) for row in keys])
    once = np.stack([jax.jit(jax.vmap(lambda k: init(k, (64, 16))))(row) for row in keys])
    twice = jax.jit(jax.vmap(jax.vmap(lambda k: init(k, (64, 16)))))(keys)
    np.testing.assert_array_equal(once, single)
    np.testing.assert_array_equal(twice, single)
    # the same Gaussian matrix batched or not: the mapped rule, not a different draw
    a = jax.random.normal(jax.random.key(1), (3, 8, 4))
    from jaxpg.networks import _orthonormal_columns

    np.testing.assert_array_equal(
        jax.vmap(_orthonormal_columns)(a), np.stack([_orthonormal_columns(x) for x in a])
    )
    # an unbatched argument under vmap (in_axes None) is computed once, unbatched
    q = jax.vmap(lambda _, x: _orthonormal_columns(x), in_axes=(0, None))(jnp.arange(2), a[0])
    np.testing.assert_array_equal(q, np.stack([_orthonormal_columns(a[0])] * 2))


def test_heads_and_initial_scales():
    net = mlp_agent((4,), 2, True)
    params = net.init(jax.random.key(0))
    _, logits, value = net.apply(params, (), jnp.ones((5, 4)), jnp.zeros(5, bool))
    assert logits.shape == (5, 2) and value.shape == (5,)
    assert np.max(np.abs(logits)) < 0.1  # policy head gain 0.01: a near-uniform start
    shared = mlp_agent((4,), 2, True, shared=True).init(jax.random.key(0))
    assert "critic_torso" not in shared["params"] and "critic_torso" in params["params"]
    no_critic = mlp_agent((4,), 2, True, critic=False)
    no_critic_params = no_critic.init(jax.random.key(0))
    assert no_critic.apply(no_critic_params, (), jnp.ones((1, 4)), jnp.zeros(1, bool))[2] is None


def test_categorical_against_numpy():
    logits = jnp.asarray([[1.0, 2.0, -1.0], [0.0, 0.0, 0.0]])
    p = np.exp(np.asarray(logits)) / np.exp(np.asarray(logits)).sum(-1, keepdims=True)
    actions = jnp.asarray([1, 2])
    np.testing.assert_allclose(
        CATEGORICAL.log_prob(logits, actions), np.log(p[[0, 1], [1, 2]]), rtol=1e-6
    )
    np.testing.assert_allclose(CATEGORICAL.entropy(logits), -(p * np.log(p)).sum(-1), rtol=1e-6)
    np.testing.assert_array_equal(CATEGORICAL.mode(logits), [1, 0])
    samples = CATEGORICAL.sample(jax.random.key(0), jnp.broadcast_to(logits[0], (20000, 3)))
    np.testing.assert_allclose(np.bincount(samples, minlength=3) / 20000, p[0], atol=0.015)


def test_diag_gaussian_against_closed_form():
    mean = jnp.asarray([[0.5, -1.0]])
    log_std = jnp.asarray([0.1, -0.3])
    action = jnp.asarray([[0.0, 0.2]])
    std = np.exp(np.asarray(log_std))
    z = (np.asarray(action) - np.asarray(mean)) / std
    want = np.sum(-0.5 * z**2 - np.log(std) - 0.5 * math.log(2 * math.pi), axis=-1)
    np.testing.assert_allclose(DIAG_GAUSSIAN.log_prob((mean, log_std), action), want, rtol=1e-6)
    want_h = np.sum(0.5 * np.log(2 * math.pi * math.e * std**2))
    np.testing.assert_allclose(DIAG_GAUSSIAN.entropy((mean, log_std)), [want_h], rtol=1e-6)
    draws = DIAG_GAUSSIAN.sample(jax.random.key(1), (jnp.broadcast_to(mean, (40000, 2)), log_std))
    np.testing.assert_allclose(np.mean(draws, 0), mean[0], atol=0.02)
    np.testing.assert_allclose(np.std(draws, 0), std, rtol=0.02)


def _numpy_conv3x3_valid(x, kernel, bias):
    """A direct loop: x [B, H, W, C], kernel [3, 3, C, F] -> [B, H-2, W-2, F] (cross-correlation,
    as every deep-learning conv)."""
    b, h, w, _ = x.shape
    out = np.zeros((b, h - 2, w - 2, kernel.shape[-1]))
    for i in range(h - 2):
        for j in range(w - 2):
            patch = x[:, i : i + 3, j : j + 3, :]  # [B, 3, 3, C]
            out[:, i, j, :] = np.einsum("bijc,ijcf->bf", patch, kernel) + bias
    return out


def test_conv_torso_against_a_numpy_loop():
    # The MinAtar paper's network: one 3x3 conv of 16 channels (ReLU), flattened, 128 ReLU units.
    agent = mlp_agent(
        (10, 10, 4), 3, True, hidden_sizes=(128,), activation="relu", conv_channels=(16,)
    )
    params = agent.init(jax.random.key(0))
    obs = jax.random.bernoulli(jax.random.key(1), 0.3, (5, 10, 10, 4))
    _, logits, value = agent.apply(params, (), obs, jnp.zeros(5, bool))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    x = np.asarray(obs, np.float64)

    def torso(t):
        h = np.maximum(_numpy_conv3x3_valid(x, t["Conv_0"]["kernel"], t["Conv_0"]["bias"]), 0)
        h = h.reshape(5, -1)  # [B, 8 * 8 * 16], row-major (H, W, C)
        return np.maximum(h @ t["Dense_0"]["kernel"] + t["Dense_0"]["bias"], 0)

    want_logits = torso(p["actor_torso"]) @ p["policy_head"]["kernel"] + p["policy_head"]["bias"]
    want_value = (torso(p["critic_torso"]) @ p["value_head"]["kernel"] + p["value_head"]["bias"])[
        :, 0
    ]
    np.testing.assert_allclose(logits, want_logits, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(value, want_value, rtol=1e-4, atol=1e-5)
    assert p["actor_torso"]["Conv_0"]["kernel"].shape == (3, 3, 4, 16)
    # Leading axes beyond one batch axis ([T, B, H, W, C]) give the same outputs.
    _, logits2, _ = agent.apply(params, (), obs.reshape(1, 5, 10, 10, 4), jnp.zeros(5, bool))
    np.testing.assert_allclose(logits2[0], logits, rtol=1e-6)


def test_conv_torso_needs_image_observations():
    with pytest.raises(ValueError, match=r"conv_channels=\(16,\) needs image observations"):
        mlp_agent((4,), 2, True, conv_channels=(16,))


def _numpy_cell(cell, params, x, reset):
    """GRU / LSTM over ``x [T, N, D]`` in float64, one product per gate as the papers write
    them (flax's GRUCell / OptimizedLSTMCell formulas), a zero carry where ``reset``."""
    p = {k: {n: np.asarray(v, np.float64) for n, v in d.items()} for k, d in params.items()}
    T, N, _ = x.shape
    H = p["hn" if cell == "gru" else "hi"]["kernel"].shape[0]
    h, c, out = np.zeros((N, H)), np.zeros((N, H)), []

    def sig(v):
        return 1.0 / (1.0 + np.exp(-v))

    def lin(name, v):
        return v @ p[name]["kernel"] + p[name].get("bias", 0.0)

    for t in range(T):
        h, c = np.where(reset[t][:, None], 0.0, h), np.where(reset[t][:, None], 0.0, c)
        if cell == "gru":
            r = sig(lin("ir", x[t]) + lin("hr", h))
            z = sig(lin("iz", x[t]) + lin("hz", h))
            n = np.tanh(lin("in", x[t]) + r * lin("hn", h))
            h = (1 - z) * n + z * h
        else:
            i, f, g, o = (lin(f"h{k}", h) + lin(f"i{k}", x[t]) for k in "ifgo")
            c = sig(f) * c + sig(i) * np.tanh(g)
            h = sig(o) * np.tanh(c)
        out.append(h)
    return h, c, np.stack(out)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_cell_against_a_numpy_loop_and_flax_cells_parameters(cell):
    import flax.linen as nn

    from jaxpg.networks import RecurrentCell

    T, N, D, H = 6, 3, 5, 8
    x = jax.random.normal(jax.random.key(1), (T, N, D))
    reset = np.zeros((T, N), bool)
    reset[2, 1] = reset[0, 0] = reset[4, :2] = True
    zero = jnp.zeros((N, H))
    carry = zero if cell == "gru" else (zero, zero)
    module = RecurrentCell(cell, H)
    params = module.init(jax.random.key(0), carry, x[0], jnp.asarray(reset[0]))
    # flax's own cell: the same parameter names, shapes and initial values (checkpoints of the
    # agents built on flax's cells load unchanged)
    flax_cell = {"gru": nn.GRUCell, "lstm": nn.OptimizedLSTMCell}[cell](
        H, kernel_init=orthogonal(1.0), recurrent_kernel_init=orthogonal(1.0)
    )
    want_init = flax_cell.init(jax.random.key(0), carry, x[0])
    assert jax.tree.structure(params) == jax.tree.structure(want_init)
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(want_init)):
        np.testing.assert_array_equal(got, want)
    # the steps one at a time and over time against the float64 loop
    h, c, hs = _numpy_cell(cell, params["params"], np.asarray(x), reset)
    over = jax.jit(lambda p: module.apply(p, carry, x, jnp.asarray(reset), over_time=True))
    last, outs = over(params)
    np.testing.assert_allclose(outs, hs, atol=2e-6)
    stepped = carry
    for t in range(T):
        stepped, out = module.apply(params, stepped, x[t], jnp.asarray(reset[t]))
        np.testing.assert_allclose(out, hs[t], atol=2e-6)
    want_carry = h if cell == "gru" else (c, h)
    for got in (last, stepped):
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want_carry)):
            np.testing.assert_allclose(g, w, atol=2e-6)
    # and against flax's cell applied to the same parameters
    flax_h = carry
    for t in range(T):
        flax_h = jax.tree.map(lambda v, t=t: jnp.where(reset[t][:, None], 0.0, v), flax_h)
        flax_h, flax_out = flax_cell.apply(params, flax_h, x[t])
        np.testing.assert_allclose(outs[t], flax_out, atol=1e-6)
