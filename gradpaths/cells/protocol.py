"""The public cell protocol: what any recurrent cell must provide to be decomposed.

A cell computes s_t = F_θ(e_t, x_t) for **one example**, where e_t = read(s_{t-1})
holds one copy of the previous state per named edge, and each edge is read in one
place only. Crossing an edge in ``hop_edges`` counts as one hop; the other edges are
highways. No base class is needed: any object with these members works.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp


@runtime_checkable
class CellProtocol(Protocol):
    """A recurrent cell, written for one example (vmap adds batch and seeds).

    Attributes:
      edges: every edge that reads the previous state, e.g. ("highway", "gates").
      hop_edges: the edges whose crossings are counted (a subset of ``edges``).
    """

    edges: tuple[str, ...]
    hop_edges: tuple[str, ...]

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> Any:
        """Parameters θ: any pytree of arrays."""

    def zero_state(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> Any:
        """The zero state s_0, any pytree of arrays with leading ``batch_shape``."""

    def read(self, state: Any) -> dict[str, Any]:
        """e = read(s): {edge: the part of s that edge carries}; a linear selection."""

    def step(self, params: Any, edges: dict[str, Any], x: jax.Array) -> Any:
        """s_t = F_θ(e_t, x_t) for one example, x [I]."""

    def output(self, state: Any) -> jax.Array:
        """h_t [H], what the loss sees."""
