"""Pytree comparisons in numpy for the tests.

An eager ``jnp`` op compiles one small XLA kernel per new shape and dtype, and the exactness
tests compare hundreds of leaves of every shape: in jnp, those compiles were most of the
tests' time. Results come back to the host once (``jax.device_get``) and are compared here.
"""

import jax
import numpy as np


def flat(tree) -> np.ndarray:
    """Every leaf, raveled and concatenated (host arrays, in the leaves' dtype)."""
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(tree)])


def rel(a, b) -> float:
    """‖a − b‖ / ‖b‖ over all leaves of two pytrees of the same structure."""
    fa, fb = flat(a), flat(b)
    return float(np.linalg.norm(fa - fb) / np.linalg.norm(fb))
