"""Linear algebra in plain jnp, so that it never reaches LAPACK.

Under ``jit(vmap(...))`` on CPU, ``jnp.linalg.qr`` becomes jaxlib's batched LAPACK
``geqrf`` kernel, which splits the batch over XLA's intra-op thread pool and waits
(``ParallelBatchMap`` -> ``BlockingCounter::Wait``) for sub-tasks that no free pool
thread may ever run: ``jit(vmap(init))`` over seeds could hang forever (docs/hang.md).
The functions here are ordinary XLA ops (a ``fori_loop`` of rank-one updates), which
vmap batches like any other op.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


def _check_float(a: jax.Array, name: str) -> None:
    if not jnp.issubdtype(a.dtype, jnp.floating):
        raise TypeError(f"{name} must be a real floating array, got dtype {a.dtype}")


@jax.jit  # compiled once per shape: eagerly, each fori_loop would recompile its fresh closure
def _householder_qr(a_MxN: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reduced QR of one [M, N] matrix (M >= N) by N Householder reflections."""
    m, n = a_MxN.shape
    rows = jnp.arange(m)

    def reflect(j, carry):
        r_MxN, v_MxN = carry
        x = jnp.where(rows >= j, r_MxN[:, j], 0)  # the column on and below the diagonal
        alpha = -jnp.where(x[j] >= 0, 1, -1) * jnp.linalg.norm(x)  # sign avoids cancellation
        v = x.at[j].add(-alpha)  # H x = alpha e_j for H = I - 2 v vᵀ / vᵀv
        v_norm = jnp.linalg.norm(v)
        v = jnp.where(v_norm > 0, v / jnp.where(v_norm > 0, v_norm, 1), 0)  # zero column: H = I
        r_MxN = r_MxN - 2 * jnp.outer(v, v @ r_MxN)
        return r_MxN, v_MxN.at[:, j].set(v)

    r_MxN, v_MxN = lax.fori_loop(0, n, reflect, (a_MxN, jnp.zeros_like(a_MxN)))

    def apply(i, q_MxN):  # Q = H_0 H_1 ... H_{N-1} [I_N; 0], the rightmost reflection first
        v = v_MxN[:, n - 1 - i]
        return q_MxN - 2 * jnp.outer(v, v @ q_MxN)

    q_MxN = lax.fori_loop(0, n, apply, jnp.eye(m, n, dtype=a_MxN.dtype))
    r_NxN = jnp.triu(r_MxN[:n])
    sign_N = jnp.where(jnp.diagonal(r_NxN) < 0, -1, 1).astype(a_MxN.dtype)
    return q_MxN * sign_N, r_NxN * sign_N[:, None]


def qr(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Reduced QR decomposition with a non-negative diagonal, in jnp (no LAPACK).

    .. math::
        A = Q R,\qquad Q^\top Q = I_N,\qquad R \text{ upper triangular},\ R_{jj} \ge 0,

    computed with Householder reflections :math:`H_j = I - 2 v_j v_j^\top`
    (:math:`\|v_j\| = 1`), :math:`H_{N-1} \cdots H_0 A = \tilde R`, then the signs of
    :math:`\tilde R`'s diagonal moved into :math:`Q`. For full-rank A this factorisation
    is unique, so it equals ``numpy.linalg.qr`` up to the signs of Q's columns (and R's
    rows); a zero :math:`R_{jj}` keeps its reflection's column. Householder keeps
    :math:`\|Q^\top Q - I\|` near machine precision whatever the conditioning of A.

    Args:
      a: [..., M, N] real floating array with M >= N.

    Returns:
      (q [..., M, N], r [..., N, N]), in a's dtype.
    """
    a = jnp.asarray(a)
    _check_float(a, "a")
    if a.ndim < 2 or a.shape[-2] < a.shape[-1]:
        raise ValueError(f"qr needs a [..., M, N] array with M >= N, got shape {a.shape}")
    return jnp.vectorize(_householder_qr, signature="(m,n)->(m,n),(n,n)")(a)


def orthogonal(key: jax.Array, shape: tuple[int, int], dtype=jnp.float32) -> jax.Array:
    r"""A Haar-distributed (semi-)orthogonal [N, M] matrix; drop-in for
    ``jax.nn.initializers.orthogonal()(key, shape, dtype)`` on 2-D shapes.

    With :math:`G \sim \mathcal N(0, 1)^{\max \times \min}` and :math:`G = QR`,
    :math:`Q \operatorname{diag}(\operatorname{sign} R_{jj})` is Haar-distributed
    (Mezzadri 2007); ``qr`` already makes :math:`R_{jj} \ge 0`. For N < M the
    transpose is returned, so the rows are orthonormal: :math:`W W^\top = I_N`.
    The Gaussian is drawn exactly as JAX's initialiser draws it, so the two agree to
    rounding.

    Args:
      key: a PRNG key.
      shape: (N, M).
      dtype: a real floating dtype.

    Returns:
      [N, M] array: orthonormal columns if N >= M, orthonormal rows otherwise.
    """
    if len(shape) != 2:
        raise ValueError(f"orthogonal takes a 2-D shape, got {shape}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a real floating dtype, got {dtype}")
    return _orthogonal(key, tuple(shape), dtype)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _orthogonal(key: jax.Array, shape: tuple[int, int], dtype) -> jax.Array:
    n_rows, n_cols = shape
    transpose = n_rows < n_cols
    g = jax.random.normal(key, (n_cols, n_rows) if transpose else (n_rows, n_cols), dtype)
    q, _ = qr(g)
    return q.T if transpose else q


def log_spectral_radius(w: jax.Array, squarings: int = 48) -> jax.Array:
    r"""ln ρ(W) of a square [..., N, N] matrix by Gelfand's formula, in jnp (safe under vmap).

    With :math:`M_0 = W`, :math:`n_i = \|M_i\|_F` and :math:`M_{i+1} = (M_i / n_i)^2`,

    .. math::

        \ln ρ(W) = \lim_{k→∞} 2^{-k} \ln \|W^{2^k}\| = Σ_{i<k} 2^{-i} \ln n_i + 2^{-k} \ln \|M_k\|,

    whose error after k squarings is O(2^{-k}) times the log condition of W's
    eigenbasis. Replaces ``jnp.linalg.eigvals``, whose batched CPU LAPACK call (geev)
    under ``vmap`` is the same pattern that deadlocked the batched QR (docs/hang.md).
    """
    _check_float(w, "w")

    def body(carry, _):
        m, acc, scale = carry
        n = jnp.linalg.norm(m, axis=(-2, -1))
        m = m / n[..., None, None]
        return (m @ m, acc + scale * jnp.log(n), scale / 2), None

    zero = jnp.zeros(w.shape[:-2], w.dtype)
    (m, acc, scale), _ = lax.scan(body, (w, zero, jnp.ones((), w.dtype)), None, length=squarings)
    return acc + scale * jnp.log(jnp.linalg.norm(m, axis=(-2, -1)))
