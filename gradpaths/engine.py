"""The bucketed reverse scans: generic (any protocol cell) and fast (the affine cells).

With s_t = F_θ(e_t, x_t), e_t = read(s_{t-1}) and λ_t = ∂L/∂s_t, one reverse scan
carries the cotangent split into buckets λ_t^{[d, k]}: d is the distance from the loss
time (``n_d`` buckets; the last one collects d ≥ D when clamped) and k the number of hop
edges crossed (``n_hops`` buckets; the last collects k ≥ K). Per step, backwards:

.. math::

    λ_t^{[0,0]} \\mathrel{+}= ∂L/∂s_t,\\qquad
    (Δθ^{[d,k]}, ε^{[d,k]}) = \\mathrm{VJP}_{θ, e}\\,F_t\\,(λ_t^{[d,k]}),\\qquad
    λ_{t-1}^{[d+1,\\,k]} \\mathrel{+}= \\mathrm{read}^T(ε_{hwy}),\\quad
    λ_{t-1}^{[d+1,\\,k+1]} \\mathrel{+}= \\mathrm{read}^T(ε_{hop})

and G^{[d,k]} = Σ_t Δθ_t^{[d,k]}. Every bucket goes through the same VJP (vmapped), and
the map from λ to (Δθ, ε) is linear, so the buckets sum to the plain gradient exactly.
Edge scales α_t multiply ε on their edge (the VJP of sg(e) + α(e − sg(e))).

The generic scan recomputes each step's VJP from the saved s_{t-1}; parameter
cotangents are summed over the batch inside the VJP and accumulated per bucket. The fast
scan (affine cells u = xW_x + b, a = mW_h, parameter-free elementwise core) reuses the
core VJPs saved by the forward pass, sends every bucket through one GEMM with W_hᵀ, and
contracts the parameter gradients after the scan as large matmuls (``contract``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from gradpaths.unroll import Forward, affine_scan, generic_scan, outputs_TB


def shift(x: jax.Array, axis: int, clamp: bool) -> jax.Array:
    """Moves bucket j to j+1 along ``axis``; the last bucket keeps its own if ``clamp``."""
    head = jnp.zeros_like(jax.lax.slice_in_dim(x, 0, 1, axis=axis))
    body = jax.lax.slice_in_dim(x, 0, x.shape[axis] - 1, axis=axis)
    out = jnp.concatenate([head, body], axis=axis)
    if clamp:
        last = jax.lax.slice_in_dim(x, x.shape[axis] - 1, x.shape[axis], axis=axis)
        out = out + jnp.concatenate([jnp.zeros_like(body), last], axis=axis)
    return out


def _route(read_T, edge_ct: dict, hops: tuple[str, ...], n_hops: int, n_d: int, tail: bool, lead: int):
    """λ_{t-1} buckets from the edge cotangents ε [D, K1, B, ...]: highway edges keep k,
    hop edges move k one up (clamped), and every bucket moves d one up (clamped if ``tail``)."""
    vread = read_T
    for _ in range(lead):
        vread = jax.vmap(vread)

    def to_state(names):
        sel = {k: (v if k in names else jax.tree.map(jnp.zeros_like, v)) for k, v in edge_ct.items()}
        return vread(sel)[0]

    highway = tuple(k for k in edge_ct if k not in hops)
    hwy = to_state(highway) if highway else None
    hop = to_state(hops) if hops else None
    if hop is not None and n_hops > 1:
        hop = jax.tree.map(lambda h: shift(h, 1, clamp=True), hop)
    new = hop if hwy is None else hwy if hop is None else jax.tree.map(jnp.add, hwy, hop)
    if n_d > 1:
        new = jax.tree.map(lambda v: shift(v, 0, clamp=tail), new)
    return new


def _scale_edges(edge_ct: dict, alpha: dict, axis: int) -> dict:
    """ε_k ← α_t ε_k, with α [B] broadcast at ``axis`` (the batch axis of ε)."""

    def mul(v, a):
        return v * a.reshape((1,) * axis + a.shape + (1,) * (v.ndim - axis - 1))

    return {k: v if k not in alpha else jax.tree.map(lambda u, a=alpha[k]: mul(u, a), v) for k, v in edge_ct.items()}


def generic_reverse(cell, params, fwd: Forward, seeds, alphas, hops, n_hops=1, n_d=1, tail=False, per_step=False,
                    keep_state=False, carry=None):  # fmt: skip
    """The bucketed reverse scan for any protocol cell.

    Args:
      fwd: ``unroll.generic_scan``'s states, s_{t-1} and inputs.
      seeds: ∂L/∂s_t directly [T, B, ...]. alphas: ``{edge: [T, B]}`` gradient scales.
      hops: the edges that count as hops. n_hops: K + 1. n_d: distance buckets (1: none).
      tail: whether the last distance bucket collects d ≥ n_d - 1.
      per_step: also return G_t = Σ_{d,k} Δθ_t^{[d,k]} [T, ...]; "hops": G_{t,k} = Σ_d Δθ_t^{[d,k]}
        [T, K1, ...]. keep_state: also return λ_t [T, K1, B, ...].
      carry: (λ, G) from the steps after these (``chunked_reverse``); zeros if None.

    Returns:
      ((λ_0, G [n_d, K1, ...] like params), G_t or None, λ_t or None).
    """
    if carry is None:
        lam0 = jax.tree.map(lambda s: jnp.zeros((n_d, n_hops, *s.shape[1:]), s.dtype), fwd.prev)
        g0 = jax.tree.map(lambda p: jnp.zeros((n_d, n_hops, *jnp.shape(p)), jnp.result_type(p)), params)
        carry = (lam0, g0)
    read_T = jax.linear_transpose(cell.read, jax.tree.map(lambda s: s[0, 0], fwd.prev))
    step_B = jax.vmap(cell.step, in_axes=(None, 0, 0))

    def body(carry, inp):
        lam, g = carry
        x, prev, seed, alpha = inp
        lam = jax.tree.map(lambda lm, sd: lm.at[0, 0].add(sd), lam, seed)
        _, vjp = jax.vjp(lambda p, e: step_B(p, e, x), params, jax.vmap(cell.read)(prev))
        d_p, edge_ct = jax.vmap(jax.vmap(vjp))(lam)
        edge_ct = _scale_edges(edge_ct, alpha, axis=2)
        new = _route(read_T, edge_ct, hops, n_hops, n_d, tail, lead=3)
        g = jax.tree.map(jnp.add, g, d_p)
        g_t = jax.tree.map(lambda v: v.sum(0 if per_step == "hops" else (0, 1)), d_p) if per_step else None
        return (new, g), (g_t, jax.tree.map(lambda v: v[0], lam) if keep_state else None)

    return jax.lax.scan(body, carry, (fwd.x_TBI, fwd.prev, seeds, alphas), reverse=True)


def chunked_reverse(cell, params, x_TBI, s0, dh_TBH, hops, n_hops, n_d, tail, per_step, keep_state, chunk: int):
    """``generic_reverse`` with the forward pass rematerialised in chunks of ``chunk`` steps.

    Only the state at each chunk's start is kept from the forward pass; the reverse scan
    over chunks recomputes a chunk's states, its loss seeds (the VJP of ``output`` applied
    to ∂L/∂h_t) and runs the bucketed reverse scan through it, carrying (λ, G). Memory is
    O(T/C + C) states instead of O(T) (C = √T balances them); the cost is one more forward
    pass. T is padded to a multiple of C with steps whose seeds are zero, which add nothing.
    """
    n_t = x_TBI.shape[0]
    n_c = -(-n_t // chunk)
    pad = lambda v: jnp.concatenate([v, jnp.zeros((n_c * chunk - n_t, *v.shape[1:]), v.dtype)])
    by_chunk = lambda v: pad(v).reshape(n_c, chunk, *v.shape[1:])
    x_CTBI, dh_CTBH = by_chunk(x_TBI), by_chunk(dh_TBH)

    def fwd_chunk(s, x):
        states = generic_scan(cell, params, x, s, {}).states
        return jax.tree.map(lambda v: v[-1], states), s

    _, starts = jax.lax.scan(fwd_chunk, s0, x_CTBI)
    lam0 = jax.tree.map(lambda s: jnp.zeros((n_d, n_hops, *s.shape), s.dtype), s0)
    g0 = jax.tree.map(lambda p: jnp.zeros((n_d, n_hops, *jnp.shape(p)), jnp.result_type(p)), params)

    def back_chunk(carry, inp):
        x, dh, start = inp
        fwd = generic_scan(cell, params, x, start, {})
        _, out_vjp = jax.vjp(lambda s: outputs_TB(cell, s), fwd.states)
        (seeds,) = out_vjp(dh)
        return generic_reverse(cell, params, fwd, seeds, {}, hops, n_hops, n_d, tail, per_step, keep_state, carry)

    (_, g), (g_T, lam_T) = jax.lax.scan(back_chunk, (lam0, g0), (x_CTBI, dh_CTBH, starts), reverse=True)
    unchunk = lambda v: v.reshape(n_c * chunk, *v.shape[2:])[:n_t]
    return g, jax.tree.map(unchunk, g_T), jax.tree.map(unchunk, lam_T)


# ----------------------------------------------------------------------------- the fast path


def contract(cell, x, m, du, da, spec: str) -> dict[str, jax.Array]:
    """(∂⁺F/∂θ)ᵀ of an affine cell applied to cotangents, as einsums ``spec`` = "x,ct->out"
    over the input letter i: W_x ← xᵀdu, W_h ← mᵀda, b ← Σdu, b_h ← Σda (batch b summed)."""
    ins, out = spec.split("->")
    ct_spec = ins.split(",")[1]
    bias = f"{ct_spec}->{out.replace('i', '')}"
    grads = {"W_x": jnp.einsum(spec, x, du), "W_h": jnp.einsum(spec, m, da), "b": jnp.einsum(bias, du)}
    if cell.has_b_h:
        grads["b_h"] = jnp.einsum(bias, da)
    return grads


def affine_reverse(cell, params, fwd: Forward, seeds, hops, n_hops=1, n_d=1, tail=False, keep_state=False,
                   alphas=None):  # fmt: skip
    """The fast bucketed reverse scan over the core VJPs saved by ``unroll.affine_scan``.

    Per step: λ += seed (bucket [0, 0]); (du, da, ε) = VJP_core(λ) for every bucket
    (vmapped); the matmul edge gets da W_hᵀ (one GEMM over all buckets); then ``_route``.

    Returns:
      (g, outs, λ_0): with n_d > 1, g holds the parameter gradients [n_d, K1, ...] and outs
      the per-step λ [T, K1, B, ...] (or None); with n_d = 1, g is None and outs is
      (du [T, B, K1, G·H], da (None for additive cells), λ or None). λ_0 [n_d, K1, B, ...] is ∂L/∂s_0.
    """
    mm = cell.matmul_edge
    w_h_T = params["W_h"].T
    alphas = {} if alphas is None else alphas
    state_1 = jax.tree.map(lambda s: s[0], seeds)
    read_T = jax.linear_transpose(cell.read, state_1)
    lam0 = jax.tree.map(lambda s: jnp.zeros((n_d, n_hops, *s.shape), s.dtype), state_1)
    g0 = jax.tree.map(lambda p: jnp.zeros((n_d, n_hops, *p.shape), p.dtype), params) if n_d > 1 else None
    vv = lambda f: jax.vmap(jax.vmap(f))

    def body(carry, inp):
        lam, g = carry
        core_vjp, seed, x, m, alpha = inp
        lam = jax.tree.map(lambda lm, sd: lm.at[0, 0].add(sd), lam, seed)
        du, da, de = vv(core_vjp)(lam)
        edge_ct = _scale_edges({**de, mm: da @ w_h_T}, alpha, axis=2)
        new = _route(read_T, edge_ct, hops, n_hops, n_d, tail, lead=2)
        kept = jax.tree.map(lambda v: v[0], lam) if keep_state else None
        if n_d > 1:
            g = jax.tree.map(jnp.add, g, contract(cell, x, m, du, da, "bi,dkbn->dkin"))
            return (new, g), kept
        bk = lambda v: jnp.swapaxes(v[0], 0, 1)  # [B, K1, G·H]: (t, b) adjacent for the contraction GEMM
        return (new, g), (bk(du), None if cell.additive else bk(da), kept)

    inputs = (fwd.core_vjp, seeds, fwd.x_TBI, fwd.m_TBH, alphas)
    (lam_0, g), outs = jax.lax.scan(body, (lam0, g0), inputs, reverse=True)
    return g, outs, lam_0


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def affine_states(cell, params, x_TBI, s0, alphas):
    """The states of an affine cell, differentiated through ``affine_reverse``."""
    return affine_scan(cell, params, x_TBI, s0, alphas, save_vjp=False).states


def _states_fwd(cell, params, x_TBI, s0, alphas):
    fwd = affine_scan(cell, params, x_TBI, s0, alphas, save_vjp=True)
    return fwd.states, (params, fwd, alphas)


def _states_bwd(cell, res: Any, ct_states):
    params, fwd, alphas = res
    _, (du, da, _), lam_0 = affine_reverse(cell, params, fwd, ct_states, cell.hop_edges, alphas=alphas)
    du = du[:, :, 0]
    da = du if da is None else da[:, :, 0]
    grads = contract(cell, fwd.x_TBI, fwd.m_TBH, du, da, "tbi,tbn->in")
    d_x = du @ params["W_x"].T
    d_s0 = jax.tree.map(lambda v: v[0, 0], lam_0)
    return grads, d_x, d_s0, jax.tree.map(jnp.zeros_like, alphas)


affine_states.defvjp(_states_fwd, _states_bwd)
