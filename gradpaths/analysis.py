"""Reductions of a decomposition: readout losses, per-distance tables, shares and hop-class statistics.

Pure functions of arrays and pytrees (no I/O), shared by the claim experiments. With a
loss at the last step only, ℓ = r·h_{T-1}, the gradient through θ's use at step t is at
distance d = T-1-t, so ``by_step`` read backwards is the per-distance table G_d and
``by_distance_hops`` is the joint table G_{d,k}. For a table indexed by distance,

.. math::

    \\mathrm{tail}(D) = \\lVert Σ_{d > D} G_d \\rVert / \\lVert g \\rVert,\\qquad
    \\mathrm{share}_k = ⟨G^{[k]}, G⟩ / \\lVert G \\rVert^2 \\quad (Σ_k \\mathrm{share}_k = 1).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def readout_loss(hs: jax.Array, r: jax.Array, w_T: jax.Array) -> jax.Array:
    """L = (1/B) Σ_b Σ_τ w_τ r·h_{b,τ}: a linear readout r [H] weighted over time by w_T [T]; hs [B, T, H]."""
    return jnp.einsum("bth,h,t->", hs, r, w_T) / hs.shape[0]


def last_step(n_t: int, dtype=jnp.float32) -> jax.Array:
    """Loss weights w_T with all weight on τ = T-1."""
    return jnp.zeros(n_t, dtype).at[-1].set(1)


def underflow_floor(dtype) -> float:
    """Norms at or below this are in float underflow (tiny × 1e6) and are not fitted or compared."""
    return float(jnp.finfo(dtype).tiny) * 1e6


def flat_lead(tree: Any, lead: int = 1) -> jax.Array:
    """The leaves of ``tree`` flattened behind their first ``lead`` axes and concatenated: [..., P] in float64."""
    leaves = jax.tree.leaves(tree)
    head = leaves[0].shape[:lead]
    return jnp.concatenate([v.reshape(*head, -1).astype(jnp.float64) for v in leaves], -1)


def by_distance_last_step(by_step: Any, lead: int = 1) -> jax.Array:
    """G_d [T, P] (d = 0..T-1, float64) from ``by_step`` of a last-step loss: the steps read backwards;
    with ``lead=2``, G_{d,k} [T, K+1, P] from ``by_step_hops`` (O(T·K), where the distance table costs O(T²·K))."""
    return flat_lead(by_step, lead)[::-1]


def band_share(g_DP: jax.Array, lo: int, hi: int) -> jax.Array:
    """‖Σ_{lo ≤ d < hi} G_d‖ / ‖Σ_d G_d‖ for a per-distance table g_DP [D, P]."""
    return jnp.linalg.norm(g_DP[lo:hi].sum(0)) / jnp.linalg.norm(g_DP.sum(0))


def tail_shares(g_DP: jax.Array) -> jax.Array:
    """tail(D) = ‖Σ_{d > D} G_d‖ / ‖g‖ for D = 0..T-1 (the last is 0): [T]."""
    after = jnp.cumsum(g_DP[::-1], 0)[::-1]  # Σ_{d' ≥ d}
    tail = jnp.concatenate([jnp.linalg.norm(after[1:], axis=-1), jnp.zeros(1, g_DP.dtype)])
    return tail / jnp.linalg.norm(g_DP.sum(0))


def hop_class_stats(g_KP: jax.Array, total_P: jax.Array) -> dict[str, jax.Array]:
    """Shares and cosines of the hop classes of one window, g_KP [K+1, P] (rows sum to the window's G).

    Returns: norm ‖G‖; size ‖G‖/‖g‖ (total_P = g); proj_share [K+1] = ⟨G^{[k]}, G⟩/‖G‖²
    (sums to 1; negative opposes G); norm_share [K+1] = ‖G^{[k]}‖/‖G‖; cos_highway_rest,
    the cosine of G^{[0]} and Σ_{k≥1} G^{[k]}; cancellation ‖G‖/Σ_k‖G^{[k]}‖ (1: no
    cancellation); mean_hops Σ_k k‖G^{[k]}‖/Σ_k‖G^{[k]}‖.
    """
    g = g_KP.sum(0)
    gg = jnp.sum(g * g)
    nk = jnp.linalg.norm(g_KP, axis=-1)
    rest = g - g_KP[0]
    hops = jnp.arange(g_KP.shape[0], dtype=g.dtype)
    return {
        "norm": jnp.sqrt(gg),
        "size": jnp.sqrt(gg) / jnp.linalg.norm(total_P),
        "proj_share": g_KP @ g / gg,
        "norm_share": nk / jnp.sqrt(gg),
        "cos_highway_rest": jnp.sum(g_KP[0] * rest) / (nk[0] * jnp.linalg.norm(rest)),
        "cancellation": jnp.sqrt(gg) / nk.sum(),
        "mean_hops": jnp.sum(hops * nk) / nk.sum(),
    }


def highway_log_prediction(log_a_TH: jax.Array, lam_last_H: jax.Array) -> jax.Array:
    """The pure-highway adjoint of an elementwise highway a_t, back from step T-2.

    On the highway λ_{s} = a_{s+1} ⊙ λ_{s+1}, so for s = 0..T-2

    .. math:: λ_s^{[0]} = \\Big(\\prod_{t=s+1}^{T-2} a_t\\Big) ⊙ λ_{T-2}^{[0]},

    and log ‖λ_s^{[0]}‖ follows Σ log a_t. Args: log_a_TH [T, ..., H] = log a_t;
    lam_last_H [..., H] = λ_{T-2}^{[0]}. Returns the prediction [T-1, ..., H].
    """
    n_t = log_a_TH.shape[0]
    suffix = jnp.cumsum(log_a_TH[1 : n_t - 1][::-1], 0)[::-1]
    log_prod = jnp.concatenate([suffix, jnp.zeros_like(log_a_TH[:1])])
    return jnp.exp(log_prod) * lam_last_H


def max_log_gap(measured: jax.Array, predicted: jax.Array, floor: float) -> jax.Array:
    """max |log measured - log predicted| over the entries where both are above ``floor``."""
    ok = (measured > floor) & (predicted > floor)
    safe = lambda v: jnp.log(jnp.where(ok, v, 1.0))
    return jnp.max(jnp.where(ok, jnp.abs(safe(measured) - safe(predicted)), 0.0))
