"""The sort-free minibatch shuffle: a bijection, uniform over whole orders, vmappable."""

import itertools
import math

import jax
import numpy as np
import pytest

from jaxpg.permutation import random_permutation


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 100, 512, 1000, 4097])
def test_is_a_permutation(n):
    for seed in range(3):
        p = np.asarray(random_permutation(jax.random.key(seed), n))
        assert p.dtype == np.int32
        assert sorted(p.tolist()) == list(range(n))


def _chi_square_p(counts: np.ndarray, expected: float) -> float:
    """Upper tail of Pearson's chi-square statistic (Wilson-Hilferty normal approximation)."""
    k = counts.size - 1
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    z = ((chi2 / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))


@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_every_order_equally_likely(n):
    # n = 4 is a power of two (no compaction); 3, 5 and 6 are not. Fixed keys: deterministic.
    orders = list(itertools.permutations(range(n)))
    draws = 150 * len(orders)
    keys = jax.random.split(jax.random.key(n), draws)
    perms = np.asarray(jax.jit(jax.vmap(lambda k: random_permutation(k, n)))(keys))
    index = {order: i for i, order in enumerate(orders)}
    counts = np.bincount([index[tuple(p)] for p in perms], minlength=len(orders))
    assert counts.min() > 0
    assert _chi_square_p(counts, draws / len(orders)) > 1e-3


def test_chi_square_helper_rejects_a_biased_sample():
    # The check above can fail: a sample with one order twice as likely is rejected.
    counts = np.full(24, 150.0)
    counts[0] = 300.0
    counts[1:] -= 150.0 / 23
    assert _chi_square_p(counts, 150.0) < 1e-6


def test_positions_uniform_and_neighbours_unrelated_at_scale():
    n, draws = 1000, 2000
    keys = jax.random.split(jax.random.key(0), draws)
    perms = np.asarray(jax.jit(jax.vmap(lambda k: random_permutation(k, n)))(keys))
    # Where index 0 and index n-1 land: uniform over 10 bins of positions.
    for element in (0, n - 1):
        positions = np.argmax(perms == element, axis=1)
        counts = np.bincount(positions * 10 // n, minlength=10)
        assert _chi_square_p(counts, draws / 10) > 1e-3
    # Neighbouring outputs are uncorrelated (an identity-like shuffle would give ~1).
    corr = np.corrcoef(perms[:, :-1].ravel(), perms[:, 1:].ravel())[0, 1]
    assert abs(corr) < 0.01


def test_vmap_matches_one_key_at_a_time():
    keys = jax.random.split(jax.random.key(3), 4)
    batched = np.asarray(jax.vmap(lambda k: random_permutation(k, 100))(keys))
    for key, row in zip(keys, batched):
        np.testing.assert_array_equal(row, np.asarray(random_permutation(key, 100)))


def test_different_keys_give_different_orders():
    a = np.asarray(random_permutation(jax.random.key(0), 512))
    b = np.asarray(random_permutation(jax.random.key(1), 512))
    assert (a != b).mean() > 0.9


def test_bad_size_is_refused():
    with pytest.raises(ValueError, match="n=-1"):
        random_permutation(jax.random.key(0), -1)
