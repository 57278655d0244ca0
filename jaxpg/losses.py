"""Policy-gradient losses and diagnostics: pure math on time-major arrays.

Every array argument is time-major, `[T, *batch]`, and all arguments of one
call share that shape (checked at trace time, see `_check_same_shape`). Every
loss returns a scalar and takes an optional `mask` of the same shape: a bool
or {0, 1} float array where nonzero marks a valid entry. Means run over valid
entries only (`masked_mean`).

Quantities that are targets rather than outputs of the network being trained
(advantages, old log-probs, returns, old values) go through
`lax.stop_gradient`, so a caller cannot leak gradient into them by accident.

Scalar hyperparameters (`clip_eps`) may be Python floats or traced 0-d arrays,
so they can be swept with `jax.vmap`.

No flax, no gymnax: only jax and jax.numpy.
"""

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
Numeric = jax.typing.ArrayLike


# -----------------------------------------------------------------------------
# Trace-time argument checks, shared with advantages.py.
# Shapes are static under jit/vmap, so these run while tracing, never inside
# the compiled program. They are plain `ValueError`s rather than assertions (chex's and the like):
# a global switch that disables assertions must not switch off validation of user input, and
# the message should name the offending arguments of the public function.


def _check_same_shape(fn: str, **arrays) -> None:
    """Raises ValueError unless every non-None array has the same shape."""
    shapes = {k: jnp.shape(v) for k, v in arrays.items() if v is not None}
    if len(set(shapes.values())) > 1:
        got = ", ".join(f"{k} {s}" for k, s in shapes.items())
        raise ValueError(f"{fn}: arguments must share one shape [T, *batch]; got {got}")


def _check_time_major(fn: str, **arrays) -> None:
    """Raises ValueError if an array has no leading time axis."""
    for k, v in arrays.items():
        if jnp.ndim(v) < 1:
            raise ValueError(
                f"{fn}: {k} must be time-major [T, *batch] with ndim >= 1; got shape {jnp.shape(v)}"
            )


def _check_scalar(fn: str, **scalars) -> None:
    """Raises ValueError unless each hyperparameter is a Python or 0-d scalar."""
    for k, v in scalars.items():
        if jnp.ndim(v) != 0:
            raise ValueError(
                f"{fn}: {k} must be a scalar (Python float or 0-d array; vmap to "
                f"sweep it); got shape {jnp.shape(v)}"
            )


def _as_float(x: Array) -> Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


# -----------------------------------------------------------------------------
# Masked statistics.


def masked_mean(x: Array, mask: Array | None = None) -> Array:
    """Mean of `x` over the entries where `mask` is nonzero.

    Args:
      x: `[T, *batch]` (any shape); bool/int inputs are averaged as float32.
      mask: optional, same shape as `x`; nonzero marks a valid entry.

    Returns:
      Scalar `sum(x[mask]) / count(mask)`; `0.0` if no entry is valid.

    Masked-out entries are selected away with `jnp.where`, not multiplied by
    zero, so NaN/inf padding neither leaks into the value nor into the gradient
    (which is exactly zero for masked-out entries, and everywhere when nothing
    is valid).
    """
    x = _as_float(x)
    if mask is None:
        return jnp.mean(x)
    _check_same_shape("masked_mean", x=x, mask=mask)
    valid = jnp.asarray(mask).astype(bool)
    count = jnp.sum(valid, dtype=x.dtype)
    # max(count, 1): zero valid entries gives 0 / 1 = 0, never 0 / 0.
    return jnp.sum(jnp.where(valid, x, 0.0)) / jnp.maximum(count, 1.0)


def masked_var(x: Array, mask: Array | None = None) -> Array:
    """Population variance (ddof=0) of `x` over valid entries; 0 if none valid."""
    centred = _as_float(x) - masked_mean(x, mask)
    return masked_mean(jnp.square(centred), mask)


# -----------------------------------------------------------------------------
# Policy losses.


def reinforce_loss(log_prob: Array, advantages: Array, mask: Array | None = None) -> Array:
    """Vanilla policy-gradient (REINFORCE) surrogate loss.

        L = -mean_t[ log pi(a_t | s_t) * A_t ]

    so that grad L = -E[ grad log pi * A ], the score-function estimator.

    Args:
      log_prob: `[T, *batch]` log pi(a_t | s_t) of the taken actions.
      advantages: `[T, *batch]` A_t (treated as constant).
      mask: optional `[T, *batch]` validity mask.

    Returns:
      Scalar loss.

    Reference: Williams (1992), "Simple statistical gradient-following
    algorithms for connectionist reinforcement learning".
    """
    _check_same_shape("reinforce_loss", log_prob=log_prob, advantages=advantages, mask=mask)
    advantages = lax.stop_gradient(advantages)
    return -masked_mean(log_prob * advantages, mask)


def ppo_clip_loss(
    log_prob: Array,
    old_log_prob: Array,
    advantages: Array,
    clip_eps: Numeric,
    mask: Array | None = None,
) -> Array:
    """PPO clipped surrogate loss.

        r_t = exp(log pi(a_t|s_t) - log pi_old(a_t|s_t))
        L   = -mean_t[ min(r_t * A_t, clip(r_t, 1 - eps, 1 + eps) * A_t) ]

    At r_t = 1 its gradient equals that of `reinforce_loss`.

    Args:
      log_prob: `[T, *batch]` log-probs under the current policy.
      old_log_prob: `[T, *batch]` log-probs under the behaviour policy (constant).
      advantages: `[T, *batch]` A_t (constant).
      clip_eps: scalar eps (Python float or 0-d array).
      mask: optional `[T, *batch]` validity mask.

    Returns:
      Scalar loss.

    Reference: Schulman et al. (2017), "Proximal Policy Optimization
    Algorithms", eq. (7).
    """
    _check_same_shape(
        "ppo_clip_loss",
        log_prob=log_prob,
        old_log_prob=old_log_prob,
        advantages=advantages,
        mask=mask,
    )
    _check_scalar("ppo_clip_loss", clip_eps=clip_eps)
    advantages = lax.stop_gradient(advantages)
    ratio = jnp.exp(log_prob - lax.stop_gradient(old_log_prob))
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return -masked_mean(jnp.minimum(ratio * advantages, clipped * advantages), mask)


def value_loss(
    values: Array,
    returns: Array,
    old_values: Array | None = None,
    clip_eps: Numeric | None = None,
    mask: Array | None = None,
) -> Array:
    """Squared-error value loss, optionally with PPO-style value clipping.

    Unclipped:  L = 0.5 * mean_t[ (V_t - R_t)^2 ]
    Clipped:    V^clip_t = V^old_t + clip(V_t - V^old_t, -eps, eps)
                L = 0.5 * mean_t[ max((V_t - R_t)^2, (V^clip_t - R_t)^2) ]

    Args:
      values: `[T, *batch]` current value predictions V_t.
      returns: `[T, *batch]` regression targets R_t (constant).
      old_values: optional `[T, *batch]` predictions at collection time
        (constant). Must be given together with `clip_eps`.
      clip_eps: optional scalar eps. Must be given together with `old_values`.
      mask: optional `[T, *batch]` validity mask.

    Returns:
      Scalar loss.

    Reference: the clipped form follows OpenAI Baselines' PPO2, discussed in
    Engstrom et al. (2020), "Implementation Matters in Deep Policy Gradients".
    """
    if (old_values is None) != (clip_eps is None):
        raise ValueError(
            "value_loss: old_values and clip_eps must be given together (both for "
            "the clipped loss, neither for the plain one); got "
            f"old_values={'None' if old_values is None else jnp.shape(old_values)}, "
            f"clip_eps={clip_eps!r}"
        )
    _check_same_shape(
        "value_loss", values=values, returns=returns, old_values=old_values, mask=mask
    )
    returns = lax.stop_gradient(returns)
    sq_err = jnp.square(values - returns)
    if old_values is not None:
        _check_scalar("value_loss", clip_eps=clip_eps)
        old_values = lax.stop_gradient(old_values)
        clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
        sq_err = jnp.maximum(sq_err, jnp.square(clipped - returns))
    return 0.5 * masked_mean(sq_err, mask)


def entropy_bonus(entropy: Array, mask: Array | None = None) -> Array:
    """Mean policy entropy over valid steps, `[T, *batch] -> []`.

    A bonus, not a loss: the trainer subtracts `ent_coef * entropy_bonus`.
    Reference: Williams & Peng (1991); Mnih et al. (2016), "Asynchronous
    Methods for Deep Reinforcement Learning".
    """
    return masked_mean(entropy, mask)


# -----------------------------------------------------------------------------
# Diagnostics (no gradient).


def approx_kl(log_prob: Array, old_log_prob: Array, mask: Array | None = None) -> Array:
    """Estimate of KL(pi_old || pi) from samples of pi_old, always >= 0.

        log r_t = log pi(a_t|s_t) - log pi_old(a_t|s_t)
        KL ~= mean_t[ (r_t - 1) - log r_t ]            (the "k3" estimator)

    Args:
      log_prob: `[T, *batch]` log pi(a_t|s_t) under the current parameters.
      old_log_prob: `[T, *batch]` the same under the policy that collected the data.
      mask: optional `[T, *batch]`, 1 where a step counts.

    Returns:
      Scalar, gradient stopped.

    Reference: Schulman (2020), "Approximating KL Divergence",
    http://joschu.net/blog/kl-approx.html
    """
    _check_same_shape("approx_kl", log_prob=log_prob, old_log_prob=old_log_prob, mask=mask)
    log_ratio = lax.stop_gradient(log_prob - old_log_prob)
    # expm1 keeps (r - 1) - log r accurate for the small ratios seen in practice.
    return masked_mean(jnp.expm1(log_ratio) - log_ratio, mask)


def clip_fraction(
    log_prob: Array,
    old_log_prob: Array,
    clip_eps: Numeric,
    mask: Array | None = None,
) -> Array:
    """Fraction of valid steps whose ratio left the trust region.

        mean_t[ |r_t - 1| > eps ],  r_t = exp(log_prob_t - old_log_prob_t)

    Args:
      log_prob: `[T, *batch]` log pi(a_t|s_t) under the current parameters.
      old_log_prob: `[T, *batch]` the same under the policy that collected the data.
      clip_eps: scalar, the ratio clip.
      mask: optional `[T, *batch]`, 1 where a step counts.

    Returns:
      Scalar in [0, 1], gradient stopped.
    """
    _check_same_shape("clip_fraction", log_prob=log_prob, old_log_prob=old_log_prob, mask=mask)
    _check_scalar("clip_fraction", clip_eps=clip_eps)
    ratio = jnp.exp(lax.stop_gradient(log_prob - old_log_prob))
    return masked_mean(jnp.abs(ratio - 1.0) > clip_eps, mask)


def explained_variance(values: Array, returns: Array, mask: Array | None = None) -> Array:
    """Fraction of the variance of the returns explained by the value function.

        EV = 1 - Var[R - V] / Var[R]      (population variances, valid steps)

    1 is a perfect fit, 0 is no better than a constant, negative is worse.

    Args:
      values: `[T, *batch]` the critic's predictions.
      returns: `[T, *batch]` the targets.
      mask: optional `[T, *batch]`, 1 where a step counts.

    Returns:
      Scalar, gradient stopped. NaN when Var[R] == 0 (constant returns, or no
      valid entry): the ratio is undefined there and a NaN is easy to spot in
      logs, unlike an arbitrary 0 or 1.
    """
    _check_same_shape("explained_variance", values=values, returns=returns, mask=mask)
    values, returns = lax.stop_gradient(values), lax.stop_gradient(returns)
    var_returns = masked_var(returns, mask)
    var_resid = masked_var(returns - values, mask)
    safe = jnp.where(var_returns > 0, var_returns, 1.0)
    return jnp.where(var_returns > 0, 1.0 - var_resid / safe, jnp.nan)


def kl_k3(log_prob: Array, ref_log_prob: Array, mask: Array | None = None) -> Array:
    """Mean of the "k3" estimator of KL(pi || pi_ref) on samples of pi, always >= 0.

        log r_t = log pi_ref(a_t|s_t) - log pi(a_t|s_t)
        k3_t    = r_t - log r_t - 1

    Unbiased for KL(pi || pi_ref) when the actions are sampled from pi, and differentiable in
    `log_prob` (GRPO's penalty towards a reference policy; `ref_log_prob` is constant).

    Args:
      log_prob: `[T, *batch]` log pi of the taken actions.
      ref_log_prob: `[T, *batch]` the same under the reference policy.
      mask: optional `[T, *batch]`, 1 where a step counts.

    Returns:
      Scalar.

    References: Schulman (2020), "Approximating KL Divergence"; Shao et al. (2024),
    "DeepSeekMath", eq. (4).
    """
    _check_same_shape("kl_k3", log_prob=log_prob, ref_log_prob=ref_log_prob, mask=mask)
    return masked_mean(kl_k3_per_token(log_prob, ref_log_prob), mask)


# -----------------------------------------------------------------------------
# The GRPO family's token losses, under TRL's names (``GRPOConfig.loss_type``,
# ``epsilon_high``, ``importance_sampling_level``). Arrays are `[T, B]`: T token
# positions (time steps), B sequences (episodes); `mask` marks each sequence's
# valid tokens.

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")


def importance_log_ratio(
    log_prob: Array, old_log_prob: Array, mask: Array, level: str = "token"
) -> Array:
    """Log importance ratios, per token or per sequence (GSPO).

        "token":     log r_{t,i} = log pi(a_{t,i}) - log pi_old(a_{t,i})
        "sequence":  log s_i     = sum_t m_{t,i} log r_{t,i} / max(sum_t m_{t,i}, 1),
                     the same for every token t of sequence i

    Args:
      log_prob: `[T, B]` log-probs under the current policy.
      old_log_prob: `[T, B]` under the policy that sampled the tokens (constant).
      mask: `[T, B]`, nonzero at valid tokens.
      level: one of `IMPORTANCE_SAMPLING_LEVELS`.

    Returns:
      `[T, B]` log ratios (0 at masked tokens for "token"; a sequence's value everywhere
      for "sequence"), differentiable in `log_prob`.

    Reference: Zheng et al. (2025), "Group Sequence Policy Optimization", eq. (7): the
    sequence ratio is the geometric mean of the token ratios over the valid tokens.
    """
    _check_same_shape("importance_log_ratio", log_prob=log_prob, old_log_prob=old_log_prob, mask=mask)  # fmt: skip
    if level not in IMPORTANCE_SAMPLING_LEVELS:
        raise ValueError(
            f"importance_log_ratio: level={level!r} is invalid: one of {list(IMPORTANCE_SAMPLING_LEVELS)}"
        )
    valid = jnp.asarray(mask).astype(bool)
    log_ratio = jnp.where(valid, log_prob - lax.stop_gradient(old_log_prob), 0.0)
    if level == "token":
        return log_ratio
    if jnp.ndim(log_ratio) != 2:
        raise ValueError(
            f"importance_log_ratio: sequence ratios need [T, B] arrays; got {jnp.shape(log_ratio)}"
        )
    count = jnp.maximum(jnp.sum(valid, axis=0, dtype=log_ratio.dtype), 1.0)
    return jnp.broadcast_to(jnp.sum(log_ratio, axis=0) / count, jnp.shape(log_ratio))


def clipped_surrogate(
    log_ratio: Array, advantages: Array, epsilon: Numeric, epsilon_high: Numeric
) -> Array:
    """PPO's clipped surrogate per token, with asymmetric clipping (DAPO's clip-higher).

        l_t = -min(r_t A_t, clip(r_t, 1 - epsilon, 1 + epsilon_high) A_t),  r_t = exp(log r_t)

    Args:
      log_ratio: `[T, *batch]` log importance ratios (:func:`importance_log_ratio`).
      advantages: `[T, *batch]` (constant).
      epsilon: scalar, the lower clip.
      epsilon_high: scalar, the upper clip (`epsilon` for PPO's symmetric one).

    Returns:
      `[T, *batch]` per-token losses.

    Reference: Yu et al. (2025), "DAPO", eq. (10) (clip-higher: `epsilon_high` 0.28 with
    `epsilon` 0.2).
    """
    _check_same_shape("clipped_surrogate", log_ratio=log_ratio, advantages=advantages)
    _check_scalar("clipped_surrogate", epsilon=epsilon, epsilon_high=epsilon_high)
    advantages = lax.stop_gradient(advantages)
    ratio = jnp.exp(log_ratio)
    clipped = jnp.clip(ratio, 1.0 - epsilon, 1.0 + epsilon_high)
    return -jnp.minimum(ratio * advantages, clipped * advantages)


def aggregate_token_losses(
    per_token: Array,
    mask: Array,
    loss_type: str,
    *,
    max_length: int | None = None,
    num_tokens: Numeric | None = None,
) -> Array:
    """One scalar from per-token losses, as each member of the GRPO family normalises them.

        "grpo":     mean_i [ sum_t m_{t,i} l_{t,i} / max(sum_t m_{t,i}, 1) ]
                    (each sequence's mean, then the mean over the B sequences)
        "bnpo":     sum_{t,i} m l / max(sum_{t,i} m, 1)      (over this batch's valid tokens)
        "dapo":     sum_{t,i} m l / max(num_tokens, 1)       (over the valid tokens of the
                    whole generated batch, of which this is a minibatch)
        "dr_grpo":  sum_{t,i} m l / (B * max_length)         (a constant divisor)

    Args:
      per_token: `[T, B]` per-token losses.
      mask: `[T, B]`, nonzero at valid tokens.
      loss_type: one of `LOSS_TYPES`.
      max_length: "dr_grpo"'s completion length (default `T`).
      num_tokens: "dapo"'s divisor: the valid tokens of the whole batch this minibatch is cut
        from, divided by the number of minibatches (default: this batch's own count, so that
        "dapo" equals "bnpo" on a whole batch).

    Returns:
      Scalar loss. "grpo" weighs a short sequence's tokens more than a long one's; "bnpo" and
      "dapo" weigh every token alike; "dr_grpo" too, with a divisor that does not depend on
      the lengths.

    References: Shao et al. (2024), "DeepSeekMath", eq. (3) ("grpo"); Yu et al. (2025),
    "DAPO", eq. (12) (token-level); Liu et al. (2025), "Understanding R1-Zero-Like Training"
    ("dr_grpo"); TRL's ``GRPOConfig.loss_type``, whose names these are.
    """
    _check_same_shape("aggregate_token_losses", per_token=per_token, mask=mask)
    if loss_type not in LOSS_TYPES:
        raise ValueError(
            f"aggregate_token_losses: loss_type={loss_type!r} is invalid: one of {list(LOSS_TYPES)}"
        )
    per_token = _as_float(per_token)
    valid = jnp.asarray(mask).astype(bool)
    masked = jnp.where(valid, per_token, 0.0)
    if loss_type == "bnpo" or (loss_type == "dapo" and num_tokens is None):
        return masked_mean(per_token, mask)
    if loss_type == "dapo":
        _check_scalar("aggregate_token_losses", num_tokens=num_tokens)
        return jnp.sum(masked) / jnp.maximum(jnp.asarray(num_tokens, masked.dtype), 1.0)
    if jnp.ndim(per_token) != 2:
        raise ValueError(
            f"aggregate_token_losses: loss_type={loss_type!r} needs [T, B] arrays; got "
            f"{jnp.shape(per_token)}"
        )
    num_positions, num_sequences = jnp.shape(per_token)
    if loss_type == "grpo":
        count = jnp.maximum(jnp.sum(valid, axis=0, dtype=masked.dtype), 1.0)
        return jnp.mean(jnp.sum(masked, axis=0) / count)
    length = num_positions if max_length is None else max_length
    return jnp.sum(masked) / (num_sequences * length)


def kl_k3_per_token(log_prob: Array, ref_log_prob: Array) -> Array:
    """The per-token terms of :func:`kl_k3`, `r - log r - 1` with `r = pi_ref / pi`, to be
    aggregated like the policy loss (:func:`aggregate_token_losses`), as TRL does."""
    _check_same_shape("kl_k3_per_token", log_prob=log_prob, ref_log_prob=ref_log_prob)
    log_ratio = lax.stop_gradient(ref_log_prob) - log_prob
    return jnp.expm1(log_ratio) - log_ratio
