"""Trust-region pieces for TRPO: Fisher-vector products, conjugate gradient, the line search.

Pure functions on parameter pytrees (vectors are pytrees of the parameters' structure). No
flax, no gymnax.

TRPO (Schulman et al., 2015) maximises the surrogate ``L(theta) = E[ratio * A]`` subject to
``KL_bar(theta_old, theta) <= delta``. With ``g = grad L`` and ``F`` the Hessian of the mean KL at
``theta_old`` (the Fisher information matrix), the step is

    s    = (F + damping * I)^-1 g                     (conjugate gradient, F only as F v)
    beta = sqrt(2 * delta / (s^T (F + damping * I) s))
    theta_new = theta_old + shrink^k * beta * s       (the first k that keeps KL <= delta and
                                                       improves L; none: keep theta_old)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Tree = object  # a pytree of the parameters' structure


def tree_vdot(a: Tree, b: Tree) -> jax.Array:
    """``sum(a * b)`` over every leaf: the inner product of two parameter vectors."""
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _axpy(alpha, x, y):
    """``alpha * x + y`` leaf by leaf."""
    return jax.tree.map(lambda a, b: alpha * a + b, x, y)


def fisher_vector_product(
    mean_kl: Callable[[Tree], jax.Array], params: Tree, damping: jax.typing.ArrayLike
) -> Callable[[Tree], Tree]:
    """``v -> (F + damping * I) v``, with ``F`` the Hessian of ``mean_kl`` at ``params``.

    ``mean_kl(theta)`` must be the analytic mean ``KL(pi_old || pi_theta)`` with ``pi_old`` the
    policy at ``params``, held constant: at ``theta = params`` its gradient is zero and its
    Hessian is the Fisher information matrix (a sampled KL estimate's Hessian is not).

    The Hessian-vector product is forward-over-reverse (``jvp`` of ``grad``), linearised once
    with ``jax.linearize``: every call reuses that linearisation, so a conjugate-gradient
    iteration costs one forward-mode pass, not a new trace of the KL's backward pass.

    Reference: Schulman et al. (2015), "Trust Region Policy Optimization", appendix C.
    """
    _, hvp = jax.linearize(jax.grad(mean_kl), params)
    return lambda v: _axpy(damping, v, hvp(v))


def conjugate_gradient(
    matvec: Callable[[Tree], Tree], b: Tree, iters: int, residual_tol: float = 1e-10
) -> Tree:
    """Solves ``A x = b`` for a symmetric positive-definite ``A`` given as ``matvec(v) = A v``,
    starting from ``x = 0``: ``iters`` iterations in a ``lax.fori_loop`` (iterations after the
    squared residual drops below ``residual_tol`` change nothing).

    Returns ``x`` (the structure of ``b``).

    Reference: Nocedal & Wright (2006), "Numerical Optimization", algorithm 5.2.
    """

    def body(_, state):
        x, r, p, rr = state
        done = rr < residual_tol
        ap = matvec(p)
        alpha = jnp.where(done, 0.0, rr / jnp.maximum(tree_vdot(p, ap), 1e-30))
        x = _axpy(alpha, p, x)
        r = _axpy(-alpha, ap, r)
        rr_new = tree_vdot(r, r)
        beta = jnp.where(done, 0.0, rr_new / jnp.maximum(rr, 1e-30))
        p = _axpy(beta, p, r)
        return x, r, p, jnp.where(done, rr, rr_new)

    x0 = jax.tree.map(jnp.zeros_like, b)
    init = (x0, b, b, tree_vdot(b, b))
    x, *_ = jax.lax.fori_loop(0, iters, body, init)
    return x


class LineSearch(NamedTuple):
    params: Tree  # the accepted parameters (the old ones when rejected)
    accepted: jax.Array  # bool
    shrinks: jax.Array  # int32: k of the accepted candidate; num_shrinks + 1 when rejected
    kl: jax.Array  # mean KL of the result (0 when rejected)
    improvement: jax.Array  # surrogate gain of the result (0 when rejected)


def backtracking_line_search(
    objective_and_kl: Callable[[Tree], tuple[jax.Array, jax.Array]],
    params: Tree,
    full_step: Tree,
    objective_old: jax.Array,
    max_kl: jax.typing.ArrayLike,
    shrink: float,
    num_shrinks: int,
) -> LineSearch:
    """Candidates ``params + shrink^k * full_step`` for ``k = 0 .. num_shrinks``, all evaluated at
    once (``vmap``, no Python loop); accepts the first whose KL is at most ``max_kl`` and whose
    objective improved on ``objective_old`` (both finite). None accepted: the old ``params``,
    bit for bit.
    """
    fractions = shrink ** jnp.arange(num_shrinks + 1, dtype=jnp.float32)

    def candidate(fraction):
        theta = _axpy(fraction, full_step, params)
        objective, kl = objective_and_kl(theta)
        return objective, kl

    objectives, kls = jax.vmap(candidate)(fractions)
    improvement = objectives - objective_old
    ok = (kls <= max_kl) & (improvement > 0) & jnp.isfinite(objectives) & jnp.isfinite(kls)
    accepted = jnp.any(ok)
    k = jnp.argmax(ok)  # the first accepted candidate (0 when none)
    new = _axpy(fractions[k], full_step, params)
    new = jax.tree.map(lambda n, o: jnp.where(accepted, n, o), new, params)
    return LineSearch(
        params=new,
        accepted=accepted,
        shrinks=jnp.where(accepted, k, num_shrinks + 1).astype(jnp.int32),
        kl=jnp.where(accepted, kls[k], 0.0),
        improvement=jnp.where(accepted, improvement[k], 0.0),
    )
