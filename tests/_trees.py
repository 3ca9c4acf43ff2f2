"""Pytree comparisons on the host for the tests: ``gradpaths.check``'s own helpers.

An eager ``jnp`` op compiles one small XLA kernel per new shape and dtype, and the exactness
tests compare hundreds of leaves of every shape: in jnp, those compiles were most of the
tests' time. Results come back to the host once (``jax.device_get``) and are compared here.
"""

from gradpaths.check import _flat as flat  # every leaf, raveled and concatenated
from gradpaths.check import _rel as rel  # ‖a − b‖ / ‖b‖ over all leaves, in float64

__all__ = ["flat", "rel"]
