"""The one tree-equality helper of the test suite."""

import jax
import numpy as np

from jaxpg.checkpoint import _key_data


def raw_leaves(tree):
    """The leaves, PRNG keys as their raw data; still JAX arrays, whose shards can be looked at
    where a NumPy copy cannot be made (arrays spread over processes)."""
    return jax.tree.leaves(_key_data(tree))


def arrays(tree):
    """The leaves as NumPy arrays (PRNG keys as their raw data)."""
    return [np.asarray(x) for x in raw_leaves(tree)]


def trees_equal(a, b) -> bool:
    """Same structure and bit-identical leaves."""
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(arrays(a), arrays(b)))


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b), (
        jax.tree.structure(a),
        jax.tree.structure(b),
    )
    for x, y in zip(arrays(a), arrays(b), strict=True):
        np.testing.assert_array_equal(x, y)


def assert_trees_close(a, b, atol, rtol=0.0):
    for x, y in zip(arrays(a), arrays(b), strict=True):
        np.testing.assert_allclose(x, y, atol=atol, rtol=rtol)
