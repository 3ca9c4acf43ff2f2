"""A stack of cells is itself a cell: layer l reads layer l−1's output at the same step.

.. math::

    h^{(0)}_t = x_t,\\qquad s^{(l)}_t = F^{(l)}(e^{(l)}_t, h^{(l-1)}_t),\\qquad h^{(l)}_t = \\mathrm{output}(s^{(l)}_t)

The stack's state is the tuple of layer states and its parameters the tuple of layer
parameters. Its edges are the layers' edges named ``"{l}.{edge}"`` ("0.highway",
"1.gates"); within a step, layer l−1 → l is not an edge (it does not read the previous
state), so a path's hops count only the recurrent edges it crosses, in any layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from gradpaths.unroll import check_cell_members


@dataclasses.dataclass(frozen=True)
class Stack:
    """``layers``: the cells, bottom first. Build with ``gp.stack([...])``."""

    layers: tuple

    @property
    def edges(self) -> tuple[str, ...]:
        return tuple(f"{l}.{e}" for l, c in enumerate(self.layers) for e in c.edges)

    @property
    def hop_edges(self) -> tuple[str, ...]:
        return tuple(f"{l}.{e}" for l, c in enumerate(self.layers) for e in c.hop_edges)

    @property
    def hidden_size(self) -> int:
        return self.layers[-1].hidden_size

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> tuple:
        """One parameter pytree per layer; layer l's input size is layer l−1's output size."""
        params, size = [], input_size
        for cell, k in zip(self.layers, jax.random.split(key, len(self.layers))):
            params.append(cell.init(k, size, dtype))
            size = jax.eval_shape(cell.output, cell.zero_state((), dtype)).shape[-1]
        return tuple(params)

    def zero_state(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> tuple:
        return tuple(c.zero_state(batch_shape, dtype) for c in self.layers)

    def read(self, state: tuple) -> dict[str, Any]:
        return {f"{l}.{k}": v for l, (c, s) in enumerate(zip(self.layers, state)) for k, v in c.read(s).items()}

    def step(self, params: tuple, edges: dict[str, Any], x: jax.Array) -> tuple:
        new, h = [], x
        for l, (c, p) in enumerate(zip(self.layers, params)):
            s = c.step(p, {k: edges[f"{l}.{k}"] for k in c.edges}, h)
            new.append(s)
            h = c.output(s)
        return tuple(new)

    def output(self, state: tuple) -> jax.Array:
        return self.layers[-1].output(state[-1])


def stack(cells: Sequence[Any]) -> Stack:
    """``gp.stack([gp.lstm(H), gp.gru(H)])``: a cell made of layers, bottom first."""
    if isinstance(cells, (str, bytes)) or not isinstance(cells, Sequence) or not cells:
        raise TypeError(f"stack takes a non-empty list of cells, got {cells!r}")
    for c in cells:
        check_cell_members(c)
    return Stack(tuple(cells))
