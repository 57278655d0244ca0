"""The GRPO family's loss variants under TRL's names: ``loss_type`` (grpo, bnpo, dr_grpo, dapo),
``epsilon_high``, ``importance_sampling_level`` (token, sequence: GSPO), ``scale_rewards``
(``advantage="batch_std"``), ``mask_truncated_completions``, and ``GRPOConfig.from_trl``.

Each variant is checked against a NumPy loop on a hand-made batch of sequences of different
lengths, where the variants give different numbers."""

import compile_options
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trees import assert_trees_equal

import jaxpg
from jaxpg import losses
from jaxpg.grpo import group_targets
from jaxpg.rollout import Transition

T, B = 6, 4
LENGTHS = [6, 2, 4, 1]  # valid tokens of each sequence
EPS, EPS_HIGH = 0.2, 0.28


def batch(seed=0):
    rng = np.random.default_rng(seed)
    old = rng.normal(-1.0, 0.3, size=(T, B))
    new = old + rng.normal(0.0, 0.3, size=(T, B))  # ratios on both sides of the clip range
    adv = np.repeat(rng.normal(size=(1, B)), T, axis=0)  # one advantage per sequence
    ref = old + rng.normal(0.0, 0.1, size=(T, B))
    mask = np.stack([(np.arange(T) < n) for n in LENGTHS], axis=1).astype(np.float64)
    new[mask == 0] = np.nan  # padding never leaks
    return new, old, adv, ref, mask


def numpy_loss(new, old, adv, mask, loss_type, level, eps_high=EPS_HIGH, max_length=T, num_tokens=None):  # fmt: skip
    """The TRL recipe, loop by loop, in float64."""
    per_token = np.zeros((T, B))
    for i in range(B):
        n = int(mask[:, i].sum())
        if level == "sequence":
            log_s = sum(new[t, i] - old[t, i] for t in range(n)) / max(n, 1)
        for t in range(n):
            log_r = log_s if level == "sequence" else new[t, i] - old[t, i]
            r = np.exp(log_r)
            clipped = min(max(r, 1 - EPS), 1 + eps_high)
            per_token[t, i] = -min(r * adv[t, i], clipped * adv[t, i])
    return numpy_aggregate(per_token, mask, loss_type, max_length, num_tokens)


def numpy_aggregate(per_token, mask, loss_type, max_length=T, num_tokens=None):
    total, count = 0.0, 0
    seq_means = []
    for i in range(B):
        n = int(mask[:, i].sum())
        s = sum(per_token[t, i] for t in range(n))
        total += s
        count += n
        seq_means.append(s / max(n, 1))
    if loss_type == "grpo":
        return float(np.mean(seq_means))
    if loss_type == "bnpo":
        return total / max(count, 1)
    if loss_type == "dapo":
        return total / (count if num_tokens is None else num_tokens)
    return total / (B * max_length)


def jax_loss(new, old, adv, mask, loss_type, level, eps_high=EPS_HIGH, **kw):
    log_ratio = losses.importance_log_ratio(
        jnp.asarray(new, jnp.float32), jnp.asarray(old, jnp.float32), mask, level
    )
    per_token = losses.clipped_surrogate(log_ratio, jnp.asarray(adv, jnp.float32), EPS, eps_high)
    return losses.aggregate_token_losses(per_token, mask, loss_type, **kw)


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_each_loss_variant_against_numpy(loss_type, level):
    new, old, adv, _, mask = batch()
    kw = {"num_tokens": 20.0} if loss_type == "dapo" else {}
    got = jax_loss(new, old, adv, mask, loss_type, level, **kw)
    want = numpy_loss(new, old, adv, mask, loss_type, level, num_tokens=kw.get("num_tokens"))
    np.testing.assert_allclose(float(got), want, rtol=2e-5, atol=1e-6)
    assert np.isfinite(float(got))  # the NaN padding is never read


def test_the_variants_give_different_numbers_here():
    new, old, adv, _, mask = batch()
    values = {
        (loss_type, level): float(jax_loss(new, old, adv, mask, loss_type, level, num_tokens=20.0))
        for loss_type in ("grpo", "bnpo", "dr_grpo", "dapo")
        for level in ("token", "sequence")
    }
    assert len({round(v, 6) for v in values.values()}) == len(values), values
    # Clip-higher changes the number too: some token ratios lie in (1.2, 1.28].
    sym = float(jax_loss(new, old, adv, mask, "bnpo", "token", eps_high=EPS))
    assert abs(sym - values[("bnpo", "token")]) > 1e-4
    np.testing.assert_allclose(sym, numpy_loss(new, old, adv, mask, "bnpo", "token", eps_high=EPS), rtol=2e-5)  # fmt: skip


def test_dapo_without_a_batch_count_is_bnpo_and_dr_grpo_takes_a_length():
    new, old, adv, _, mask = batch(1)
    np.testing.assert_allclose(
        float(jax_loss(new, old, adv, mask, "dapo", "token")),
        float(jax_loss(new, old, adv, mask, "bnpo", "token")),
        rtol=1e-6,
    )
    got = float(jax_loss(new, old, adv, mask, "dr_grpo", "token", max_length=16))
    np.testing.assert_allclose(got, numpy_loss(new, old, adv, mask, "dr_grpo", "token", max_length=16), rtol=2e-5)  # fmt: skip


@pytest.mark.parametrize("loss_type, level", [("grpo", "sequence"), ("dr_grpo", "token")])
def test_the_gradient_matches_finite_differences_of_the_numpy_loss(loss_type, level):
    new, old, adv, _, mask = batch(2)
    new = np.where(mask > 0, new, 0.0)
    grad = jax.grad(
        lambda lp: jax_loss(lp, old, adv, mask, loss_type, level)
    )(jnp.asarray(new, jnp.float32))  # fmt: skip
    h = 1e-5
    for t, i in [(0, 0), (3, 0), (1, 1), (0, 3), (5, 0), (4, 2)]:
        up, down = new.copy(), new.copy()
        up[t, i] += h
        down[t, i] -= h
        fd = (numpy_loss(up, old, adv, mask, loss_type, level) - numpy_loss(down, old, adv, mask, loss_type, level)) / (2 * h)  # fmt: skip
        np.testing.assert_allclose(float(grad[t, i]), fd, rtol=1e-3, atol=1e-6)
    assert np.all(np.asarray(grad)[mask == 0] == 0.0)  # padding gets no gradient


def test_the_kl_terms_aggregate_like_the_policy_loss():
    new, _, _, ref, mask = batch(3)
    new = np.where(mask > 0, new, 0.0)
    per_token = losses.kl_k3_per_token(jnp.asarray(new, jnp.float32), jnp.asarray(ref, jnp.float32))  # fmt: skip
    k3 = np.exp(ref - new) - (ref - new) - 1
    np.testing.assert_allclose(np.asarray(per_token), k3, rtol=1e-4, atol=1e-6)
    for loss_type in ("grpo", "bnpo", "dr_grpo"):
        got = losses.aggregate_token_losses(per_token, mask, loss_type)
        np.testing.assert_allclose(float(got), numpy_aggregate(k3, mask, loss_type), rtol=1e-4)
    np.testing.assert_allclose(
        float(losses.kl_k3(jnp.asarray(new, jnp.float32), jnp.asarray(ref, jnp.float32), mask)),
        numpy_aggregate(k3, mask, "bnpo"),
        rtol=1e-4,
    )


# -- the targets: scale_rewards="batch" and mask_truncated_completions ----------------------------


def transitions(reward, terminated, truncated):
    empty = Transition(*([None] * len(Transition._fields)))
    return empty._replace(
        reward=jnp.asarray(reward, jnp.float32),
        terminated=jnp.asarray(terminated),
        truncated=jnp.asarray(truncated),
    )


def test_batch_std_advantages_and_masked_truncations_against_numpy():
    rng = np.random.default_rng(4)
    steps, group, groups = 5, 3, 2
    n = group * groups
    reward = rng.normal(size=(steps, n))
    terminated = np.zeros((steps, n), bool)
    truncated = np.zeros((steps, n), bool)
    ends = [1, 4, 2, 4, 3, 0]
    cut = [False, True, False, True, False, False]  # members 1 and 3 hit the time limit
    for i, (t, c) in enumerate(zip(ends, cut)):
        (truncated if c else terminated)[t, i] = True
    truncated[4, 5] = True  # member 5's second episode is cut: its first is not
    first = np.stack([(np.arange(steps) <= t) for t in ends], axis=1).astype(np.float32)
    R = (reward * first).sum(0)
    centred = R.reshape(groups, group) - R.reshape(groups, group).mean(1, keepdims=True)
    A = (centred / (R.std() + 1e-8)).reshape(-1)  # the group's mean over the batch's std

    tr = transitions(reward, terminated, truncated)
    targets, _ = group_targets(group, "batch_std")(tr, None, ())
    np.testing.assert_allclose(targets.advantages, first * A[None], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(targets.mask, first)

    masked, _ = group_targets(group, "batch_std", mask_truncated=True)(tr, None, ())
    np.testing.assert_allclose(masked.advantages, targets.advantages)  # the statistics keep them
    keep = np.array([0.0 if c else 1.0 for c in cut], np.float32)
    np.testing.assert_array_equal(masked.mask, first * keep[None])


# -- the config ---------------------------------------------------------------------------------


def test_from_trl_reads_a_trl_config_across():
    config = jaxpg.GRPOConfig.from_trl(
        num_generations=4,
        beta=0.04,
        epsilon=0.2,
        epsilon_high=0.28,
        loss_type="dapo",
        scale_rewards="batch",
        mask_truncated_completions=True,
        importance_sampling_level="sequence",
        learning_rate=1e-3,
        num_iterations=2,
        num_groups=2,
    )
    assert (config.group_size, config.kl_coef, config.clip_eps, config.epsilon_high) == (4, 0.04, 0.2, 0.28)  # fmt: skip
    assert (config.loss_type, config.advantage, config.importance_sampling_level) == ("dapo", "batch_std", "sequence")  # fmt: skip
    assert config.mask_truncated_completions and config.lr == 1e-3 and config.num_epochs == 2
    assert jaxpg.GRPOConfig.from_trl(scale_rewards=False).advantage == "mean"
    assert jaxpg.GRPOConfig.from_trl(scale_rewards="group").advantage == "std"
    with pytest.raises(ValueError, match="temperature"):
        jaxpg.GRPOConfig.from_trl(temperature=0.7)
    with pytest.raises(ValueError, match="scale_rewards="):
        jaxpg.GRPOConfig.from_trl(scale_rewards="token")
    with pytest.raises(ValueError, match="beta="):
        jaxpg.GRPOConfig.from_trl(beta=0.1, kl_coef=0.2)


@pytest.mark.parametrize(
    "field, value, extra",
    [
        ("loss_type", "sum", {}),
        ("importance_sampling_level", "sequence_token", {}),
        ("epsilon_high", -0.1, {}),
        ("epsilon_high", "0.3", {}),
        ("mask_truncated_completions", 1, {}),
        ("num_minibatches", 8, {"loss_type": "grpo", "num_groups": 2, "group_size": 2}),
    ],
)
def test_bad_variant_settings_name_the_field(field, value, extra):
    with pytest.raises(ValueError, match=f"{field}="):
        jaxpg.GRPOConfig(**{field: value}, **extra)


def test_the_variants_train_and_dapo_is_bnpo_with_one_minibatch():
    """One minibatch per epoch: its share of the batch's tokens is all of them, so "dapo" and
    "bnpo" make the same update; "grpo" with sequence ratios and clip-higher makes another."""
    base = dict(
        env="CartPole-v1",
        num_groups=2,
        group_size=4,
        num_epochs=2,
        num_minibatches=1,
        total_timesteps=8 * 500 * 2,
        kl_coef=0.04,
    )
    runs = {
        # dapo and bnpo are two programs compared bit for bit: XLA's default emitters
        name: compile_options.exact_jit(jaxpg.make_train(jaxpg.GRPOConfig(**base, **kw)))(
            jax.random.key(0)
        )
        for name, kw in {
            "bnpo": {},
            "dapo": {"loss_type": "dapo"},
            "gspo": {
                "loss_type": "grpo",
                "importance_sampling_level": "sequence",
                "epsilon_high": 0.28,
            },  # fmt: skip
        }.items()
    }
    assert_trees_equal(runs["dapo"].params, runs["bnpo"].params)
    for run in runs.values():
        assert np.all(np.isfinite(run.metrics["loss"]))
    leaves = zip(jax.tree.leaves(runs["gspo"].params), jax.tree.leaves(runs["bnpo"].params))
    assert any(not np.allclose(a, b) for a, b in leaves)
