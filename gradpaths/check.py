"""``check_cell``: test a cell against the protocol, numerically, before trusting its paths.

The generic engine is exact for any cell that keeps the protocol, because the edge split
is a linear re-bucketing of one VJP per step. What a cell can get wrong is the protocol
itself, so that is what is checked, with autodiff of ``step`` as the reference:

1. the members exist; ``edges`` are unique names and ``hop_edges ⊆ edges``;
2. ``read`` returns exactly the declared edges and is linear:
   read(a s + b s') = a read(s) + b read(s');
3. ``step`` returns a state like ``zero_state`` (structure, shapes, dtype) and ``output`` a vector;
4. every declared edge reaches the step (its Jacobian ∂F/∂e_k is not zero);
5. the decomposition sums to ``jax.grad`` (every part), and for the library's affine cells
   the fast reverse scan equals the generic one.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gradpaths import decompose as dec
from gradpaths.unroll import check_cell_members, check_step, forward, is_affine, param_dtype, unroll


def _flat(tree) -> np.ndarray:
    """Every leaf of a pytree, raveled and concatenated on the host."""
    return np.concatenate([np.ravel(np.asarray(v)) for v in jax.tree.leaves(tree)])


def _rel(a, b) -> float:
    """‖a − b‖ / ‖b‖ over all leaves, in float64 on the host (eager jnp would compile a kernel
    per leaf shape)."""
    fa, fb = _flat(a).astype(np.float64), _flat(b).astype(np.float64)
    return float(np.linalg.norm(fa - fb) / max(np.linalg.norm(fb), np.finfo(np.float64).tiny))


def _random_like(key, tree):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([jax.random.normal(k, jnp.shape(v), jnp.result_type(v)) for k, v in zip(keys, leaves)])


def check_cell(cell: Any, input_size: int, *, key: jax.Array | None = None, dtype=None, T: int = 4) -> dict:
    """Checks ``cell`` against the protocol; raises TypeError/ValueError naming what is wrong.

    Args:
      cell: any object meant to satisfy the cell protocol.
      input_size: I, passed to ``cell.init``.
      key: PRNG key for the random parameters, states and inputs (default key(0)).
      dtype: float64 when x64 is on (the default), else float32.
      T: the sequence length of the decomposition check.

    Returns:
      ``{"read_linearity": e, "grad": e, "fast_vs_generic": e}``: the relative errors measured
      (the last only for the library's affine cells). The tolerance is 1e-12 in float64
      and 1e-5 in float32.
    """
    check_cell_members(cell)
    dtype = dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    tol = 1e-12 if jnp.dtype(dtype) == jnp.float64 else 1e-5
    k_p, k_s, k_x, k_l = jax.random.split(jax.random.key(0) if key is None else key, 4)
    params = cell.init(k_p, input_size, dtype)
    param_dtype(params)
    s0 = cell.zero_state((), dtype)
    e0 = cell.read(s0)
    if not isinstance(e0, dict) or set(e0) != set(cell.edges):
        got = sorted(e0) if isinstance(e0, dict) else type(e0).__name__
        raise ValueError(f"{type(cell).__name__}.read must return a dict over edges {cell.edges}, got {got}")
    check_step(cell, params, input_size)
    h = jax.eval_shape(cell.output, s0)
    if len(h.shape) != 1:
        raise ValueError(f"{type(cell).__name__}.output must return a vector [H] for one example, got shape {h.shape}")

    s1, s2 = _random_like(k_s, s0), _random_like(jax.random.fold_in(k_s, 1), s0)
    mixed = cell.read(jax.tree.map(lambda a, b: 0.3 * a - 1.7 * b, s1, s2))
    linear = jax.tree.map(lambda a, b: 0.3 * a - 1.7 * b, cell.read(s1), cell.read(s2))
    err_read = _rel(mixed, linear)
    if err_read > tol:
        raise ValueError(
            f"{type(cell).__name__}.read is not linear (relative error {err_read:.2e}): "
            "it must select parts of the state"
        )

    x = jax.random.normal(k_x, (input_size,), dtype)
    jac = jax.jit(jax.jacrev(lambda e: ravel_pytree(cell.step(params, e, x))[0]))(cell.read(s1))
    dead = [k for k in cell.edges if not any(np.any(np.asarray(v) != 0) for v in jax.tree.leaves(jac[k]))]
    if dead:
        raise ValueError(
            f"edge(s) {dead} of {type(cell).__name__} never reach step (∂F/∂e is zero at a random state): "
            "declare only the edges the step reads"
        )

    xs = jax.random.normal(k_l, (2, T, input_size), dtype)
    loss = lambda hs: jnp.sum(jnp.sin(2 * hs) ** 2)

    @jax.jit  # one compile for the whole check, not one per eager op
    def sums_and_ref(params, xs):
        ref = jax.grad(lambda p: loss(unroll(cell, p, xs, backward="autodiff")))(params)
        d = dec.decompose(cell, params, xs, loss, max_hops=T, parts=dec.PARTS)
        one = [dec._sum(p, 0) for p in (d.by_step, d.by_distance, d.by_hops)]
        return [d.total, *one, *(dec._sum(p, (0, 1)) for p in (d.by_distance_hops, d.by_step_hops))], ref

    sums, ref = sums_and_ref(params, xs)
    err_grad = max(_rel(s, ref) for s in sums)
    if err_grad > tol:
        raise ValueError(f"the decomposition of {type(cell).__name__} misses jax.grad by {err_grad:.2e} (> {tol})")
    out = {"read_linearity": err_read, "grad": err_grad}
    if is_affine(cell):
        out["fast_vs_generic"] = fast_vs_generic(cell, params, xs, loss, max_hops=T)
        if out["fast_vs_generic"] > tol:
            raise ValueError(
                f"the fast path of {type(cell).__name__} differs from the generic engine "
                f"by {out['fast_vs_generic']:.2e}"
            )
    return out


def fast_vs_generic(cell, params, xs, loss_fn, *, max_hops: int, max_distance: int | None = None) -> float:
    """Max relative difference, over every part, between the fast and the generic reverse scans."""
    n_t, k1 = xs.shape[-2], max_hops + 1
    n_d, tail = (n_t, False) if max_distance is None or max_distance >= n_t - 1 else (max_distance + 1, True)
    hops = cell.hop_edges

    @jax.jit
    def both(params, xs):
        fwd, batch_shape = forward(cell, params, xs)
        _, seeds = dec.loss_and_seeds(cell, fwd, batch_shape, loss_fn)
        by_distance = [
            f(cell, params, fwd, seeds, hops, k1, n_d, tail, False, False)[0] for f in (dec._affine, dec._generic)
        ]
        rest = [f(cell, params, fwd, seeds, hops, k1, 1, False, "hops", True) for f in (dec._affine, dec._generic)]
        return by_distance, rest

    (fast_d, gen_d), (fast, gen) = both(params, xs)
    return max([_rel(fast_d, gen_d)] + [_rel(f, g) for f, g in zip(fast, gen)])
