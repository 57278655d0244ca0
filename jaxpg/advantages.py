"""Return and advantage estimators: pure math on time-major arrays.

Every array argument is time-major, `[T, *batch]`: axis 0 is time, the rest
are batch axes (e.g. `[T, num_envs]`). Arrays of one call share that shape,
checked at trace time. Step t holds the transition (s_t, a_t, r_t, s'_t):

  - `terminated[t]`: s'_t is terminal, so its value is 0 (no bootstrap);
  - `truncated[t]`: the episode was cut (time limit) at s'_t, which is not
    terminal, so we bootstrap from `next_values[t]` = V(s'_t), the value of the
    *final* observation, not of the observation the env reset to;
  - `done = terminated or truncated`: step t+1 belongs to a new episode, so no
    credit flows backwards across it.

Flags may be bool or float arrays. Scalar hyperparameters (`gamma`, `lam`,
`decay`) may be Python floats or traced 0-d arrays, so they can be swept with
`jax.vmap`. Recursions over time use `lax.scan(reverse=True)`, so compile time
does not grow with T.

No flax, no gymnax: only jax and jax.numpy.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxpg.losses import (
    _check_same_shape,
    _check_scalar,
    _check_time_major,
    masked_mean,
    masked_var,
)

Array = jax.Array
Numeric = jax.typing.ArrayLike


def _flag(x: Array) -> Array:
    return jnp.asarray(x).astype(bool)


def _reverse_discounted_sum(x: Array, discount: Array, init: Array) -> Array:
    """y_t = x_t + discount_t * y_{t+1}, y_T = init, scanned backwards in time."""

    def step(carry, inputs):
        x_t, discount_t = inputs
        y_t = x_t + discount_t * carry
        return y_t, y_t

    _, y = lax.scan(step, init, (x, discount.astype(x.dtype)), reverse=True)
    return y


def gae(
    rewards: Array,
    values: Array,
    next_values: Array,
    terminated: Array,
    truncated: Array,
    gamma: Numeric,
    lam: Numeric,
) -> tuple[Array, Array]:
    """Generalized advantage estimation, GAE(gamma, lambda).

        delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1},   A_T = 0
        R_t     = A_t + V(s_t)                    (the lambda-return target)

    lam = 0 gives the one-step TD error; lam = 1 gives the bootstrapped
    Monte Carlo return minus V(s_t).

    Args:
      rewards: `[T, *batch]` r_t.
      values: `[T, *batch]` V(s_t).
      next_values: `[T, *batch]` V(s'_t), the value of the true next state.
      terminated: `[T, *batch]` bool/float, s'_t is terminal.
      truncated: `[T, *batch]` bool/float, the episode was cut at s'_t.
      gamma: scalar discount.
      lam: scalar GAE lambda.

    Returns:
      `(advantages, returns)`, both `[T, *batch]`. Differentiable in all
      float inputs; callers stop gradients as they need.

    References: Schulman et al. (2016), "High-Dimensional Continuous Control
    Using Generalized Advantage Estimation"; truncation handling after Pardo
    et al. (2018), "Time Limits in Reinforcement Learning".
    """
    _check_same_shape(
        "gae",
        rewards=rewards,
        values=values,
        next_values=next_values,
        terminated=terminated,
        truncated=truncated,
    )
    _check_time_major("gae", rewards=rewards)
    _check_scalar("gae", gamma=gamma, lam=lam)
    terminated, truncated = _flag(terminated), _flag(truncated)
    done = terminated | truncated
    # where, not multiplication: garbage (NaN) values at terminal states vanish.
    bootstrap = jnp.where(terminated, 0.0, gamma * next_values)
    deltas = rewards + bootstrap - values
    discount = jnp.where(done, 0.0, gamma * lam)
    advantages = _reverse_discounted_sum(deltas, discount, jnp.zeros_like(deltas[0]))
    return advantages, advantages + values


def discounted_returns(
    rewards: Array,
    next_values: Array,
    terminated: Array,
    truncated: Array,
    gamma: Numeric,
) -> Array:
    """Discounted returns-to-go, restarted per episode, bootstrapped at cuts.

        G_t = r_t + gamma * (1 - terminated_t) * B_t,
        B_t = V(s'_t) if done_t or t == T - 1 else G_{t+1}

    With `next_values = 0` this is the plain Monte Carlo return of each
    episode (the REINFORCE target); with a critic it bootstraps at truncations
    and at the end of the rollout.

    Args:
      rewards: `[T, *batch]` r_t.
      next_values: `[T, *batch]` V(s'_t) (only read where done_t or t == T-1).
      terminated: `[T, *batch]` bool/float, the episode ended in a terminal state.
      truncated: `[T, *batch]` bool/float, the episode was cut (a time limit).
      gamma: scalar discount.

    Returns:
      `[T, *batch]` returns G_t.

    Reference: Sutton & Barto (2018), "Reinforcement Learning: An
    Introduction", 2nd ed., sec. 3.3 and 13.3.
    """
    _check_same_shape(
        "discounted_returns",
        rewards=rewards,
        next_values=next_values,
        terminated=terminated,
        truncated=truncated,
    )
    _check_time_major("discounted_returns", rewards=rewards)
    _check_scalar("discounted_returns", gamma=gamma)
    terminated, truncated = _flag(terminated), _flag(truncated)
    # One carry dtype for the scan, whatever mix of float dtypes comes in.
    dtype = jnp.result_type(rewards, next_values, gamma)
    rewards, next_values = jnp.asarray(rewards, dtype), jnp.asarray(next_values, dtype)

    def step(next_return, inputs):
        r_t, v_t, terminated_t, done_t = inputs
        bootstrap = jnp.where(done_t, v_t, next_return)
        # where, not multiplication: a NaN value at a terminal state vanishes.
        g_t = r_t + jnp.where(terminated_t, 0.0, gamma * bootstrap)
        return g_t, g_t

    # Seeding the carry with V(s'_{T-1}) makes the rollout end a bootstrap.
    xs = (rewards, next_values, terminated, terminated | truncated)
    _, returns = lax.scan(step, next_values[-1], xs, reverse=True)
    return returns


def normalize_advantages(advantages: Array, mask: Array | None = None, eps: float = 1e-8) -> Array:
    """Standardizes advantages over the valid entries.

        A' = (A - mean(A)) / (std(A) + eps)      (population std, valid entries)

    Args:
      advantages: `[T, *batch]`.
      mask: optional `[T, *batch]` validity mask; masked-out entries return 0.
      eps: guard against a zero std.

    Returns:
      `[T, *batch]` normalized advantages.
    """
    _check_same_shape("normalize_advantages", advantages=advantages, mask=mask)
    mean = masked_mean(advantages, mask)
    std = jnp.sqrt(masked_var(advantages, mask))
    normalized = (advantages - mean) / (std + eps)
    if mask is None:
        return normalized
    return jnp.where(_flag(mask), normalized, 0.0)


# -----------------------------------------------------------------------------
# Baselines for REINFORCE.


class MovingAverageBaseline(NamedTuple):
    """State of an exponential moving average of returns.

    Attributes:
      value: `[]` float32, the current baseline b.
      count: `[]` int32, number of updates that saw at least one valid return.
    """

    value: jax.Array
    count: jax.Array


def moving_average_baseline_init() -> MovingAverageBaseline:
    """A baseline that has seen no data: value 0, count 0."""
    return MovingAverageBaseline(value=jnp.zeros((), jnp.float32), count=jnp.zeros((), jnp.int32))


def moving_average_baseline_update(
    state: MovingAverageBaseline,
    returns: Array,
    decay: Numeric,
    mask: Array | None = None,
) -> MovingAverageBaseline:
    """One step of an exponential moving average of the batch-mean return.

        b <- mean(G)                                 if count == 0
        b <- decay * b + (1 - decay) * mean(G)       otherwise

    The first update takes the batch mean outright, so b has no bias towards
    its zero initialisation. An update whose mask has no valid entry leaves the
    state unchanged. Branch-free, so jittable and vmappable over `decay`.

    Args:
      state: the current `MovingAverageBaseline`.
      returns: `[T, *batch]` (any shape) returns G.
      decay: scalar in [0, 1].
      mask: optional, same shape as `returns`.

    Returns:
      The new `MovingAverageBaseline`.

    Reference: Williams (1992), sec. 7 (reinforcement comparison);
    Sutton & Barto (2018), sec. 13.4.
    """
    _check_same_shape("moving_average_baseline_update", returns=returns, mask=mask)
    _check_scalar("moving_average_baseline_update", decay=decay)
    batch_mean = masked_mean(returns, mask).astype(jnp.float32)
    has_data = jnp.asarray(True) if mask is None else jnp.any(_flag(mask))
    averaged = decay * state.value + (1.0 - decay) * batch_mean
    value = jnp.where(state.count == 0, batch_mean, averaged)
    return MovingAverageBaseline(
        value=jnp.where(has_data, value, state.value).astype(jnp.float32),
        count=state.count + has_data.astype(jnp.int32),
    )


def per_step_advantages(returns: Array, baseline: Numeric) -> Array:
    """Per-step advantage A_t = G_t - b_t.

    Args:
      returns: `[T, *batch]` returns-to-go G_t.
      baseline: a scalar (e.g. a moving average) or `[T, *batch]` (e.g. learned
        values V(s_t)). Other shapes are refused: a `[*batch]` or `[T]`
        baseline would broadcast silently along the wrong axis.

    Returns:
      `[T, *batch]` advantages.

    Reference: Williams (1992); Greensmith et al. (2004), "Variance Reduction
    Techniques for Gradient Estimates in Reinforcement Learning".
    """
    shape = jnp.shape(baseline)
    if shape != () and shape != jnp.shape(returns):
        raise ValueError(
            f"per_step_advantages: baseline must be a scalar or have the returns "
            f"shape {jnp.shape(returns)} [T, *batch]; got shape {shape}"
        )
    return returns - baseline


def episode_returns(rewards: Array, mask: Array) -> Array:
    """Undiscounted return of each trajectory, R(tau) = sum_t r_t * mask_t.

    Args:
      rewards: `[T, *batch]`, one trajectory per batch entry.
      mask: `[T, *batch]`, nonzero on steps that belong to the trajectory.

    Returns:
      `[*batch]` returns.
    """
    _check_same_shape("episode_returns", rewards=rewards, mask=mask)
    _check_time_major("episode_returns", rewards=rewards)
    return jnp.sum(jnp.where(_flag(mask), rewards, 0.0), axis=0)


def trajectory_advantages(rewards: Array, mask: Array, baseline: Numeric) -> Array:
    """Whole-trajectory advantage: every valid step gets R(tau) - b.

    The estimator grad J = E[ R(tau) * sum_t grad log pi(a_t|s_t) ] of
    Williams (1992), with a baseline b.

    Args:
      rewards: `[T, *batch]`, one trajectory per batch entry.
      mask: `[T, *batch]`, nonzero on valid steps.
      baseline: a scalar or `[*batch]` (one per trajectory).

    Returns:
      `[T, *batch]`: R(tau) - b on valid steps, 0 elsewhere.
    """
    returns = episode_returns(rewards, mask)
    shape = jnp.shape(baseline)
    if shape != () and shape != returns.shape:
        raise ValueError(
            f"trajectory_advantages: baseline must be a scalar or have shape "
            f"[*batch] = {returns.shape}; got shape {shape}"
        )
    advantages = returns - baseline
    return jnp.where(_flag(mask), advantages[None], 0.0)


# -----------------------------------------------------------------------------
# Group-relative advantages (no critic).

GROUP_ADVANTAGES = ("std", "mean", "leave_one_out")


def group_advantages(
    returns: Array, kind: str = "std", eps: float = 1e-8, mask: Array | None = None
) -> Array:
    """Advantage of each member of a group of tries from one start, relative to the group.

        "std"            (GRPO):     A_i = (R_i - mean_j R_j) / (std_j R_j + eps)
        "mean"           (Dr. GRPO): A_i = R_i - mean_j R_j
        "leave_one_out"  (RLOO):     A_i = R_i - mean_{j != i} R_j
                                         = G / (G - 1) * (R_i - mean_j R_j)

    The std is the population std (ddof=0) of the group.

    Args:
      returns: `[*groups, G]`, the outcome of each of the `G >= 2` members of each group
        (the group is the last axis).
      kind: one of `GROUP_ADVANTAGES`.
      eps: guard against a zero std (a group whose members all did equally well gets 0).
      mask: optional `[*groups, G]`, nonzero for the members whose outcome is known (an
        episode cut off by the end of the rollout is not): the group's mean and std are taken
        over these members only, each of the others gets 0, and so does every member of a
        group with fewer than 2 known outcomes.

    Returns:
      `[*groups, G]` advantages.

    References: Shao et al. (2024), "DeepSeekMath", sec. 4.1 (GRPO); Liu et al. (2025),
    "Understanding R1-Zero-Like Training: A Critical Perspective" (Dr. GRPO); Ahmadian et al.
    (2024), "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human
    Feedback in LLMs" (RLOO, after Kool et al., 2019).
    """
    if kind not in GROUP_ADVANTAGES:
        raise ValueError(
            f"group_advantages: kind={kind!r} is invalid: one of {list(GROUP_ADVANTAGES)}"
        )
    returns = jnp.asarray(returns, jnp.float32)
    size = jnp.shape(returns)[-1] if jnp.ndim(returns) else 0
    if size < 2:
        raise ValueError(
            f"group_advantages: the last axis is the group and needs at least 2 members; got "
            f"shape {jnp.shape(returns)}"
        )
    if mask is None:
        valid = jnp.ones_like(returns)
    else:
        _check_same_shape("group_advantages", returns=returns, mask=mask)
        valid = _flag(mask).astype(jnp.float32)
    returns = jnp.where(valid > 0, returns, 0.0)  # an unknown outcome may be NaN: never read
    count = jnp.sum(valid, axis=-1, keepdims=True)
    total = jnp.sum(returns, axis=-1, keepdims=True)
    mean = total / jnp.maximum(count, 1.0)
    if kind == "mean":
        advantages = returns - mean
    elif kind == "leave_one_out":
        advantages = returns - (total - returns) / jnp.maximum(count - 1.0, 1.0)
    else:
        var = jnp.sum(valid * (returns - mean) ** 2, axis=-1, keepdims=True) / jnp.maximum(
            count, 1.0
        )
        advantages = (returns - mean) / (jnp.sqrt(var) + eps)
    return jnp.where((valid > 0) & (count >= 2), advantages, 0.0)
