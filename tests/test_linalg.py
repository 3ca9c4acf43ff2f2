"""gradpaths._linalg: QR and the orthogonal initialiser in jnp (no LAPACK; docs/hang.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradpaths import _linalg


def _gaussian(shape, dtype=jnp.float64, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), shape, dtype)


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (16, 16), (40, 7), (256, 256)])
def test_qr_reconstructs_with_orthonormal_q(shape):
    a = _gaussian(shape)
    q, r = jax.jit(_linalg.qr)(a)
    n = shape[1]
    assert q.shape == shape and r.shape == (n, n)
    assert np.abs(q @ r - a).max() <= 1e-12 * max(1.0, np.abs(a).max())
    assert np.abs(q.T @ q - np.eye(n)).max() <= 1e-13
    assert np.array_equal(r, np.triu(r)) and (np.diag(r) >= 0).all()


def test_qr_matches_numpy_up_to_column_signs():
    a = np.asarray(_gaussian((9, 6), seed=1))
    q, r = _linalg.qr(a)
    q_np, r_np = np.linalg.qr(a)
    sign = np.sign(np.diag(r_np))  # numpy's R may have a negative diagonal; ours may not
    np.testing.assert_allclose(q, q_np * sign, atol=1e-13)
    np.testing.assert_allclose(r, r_np * sign[:, None], atol=1e-12)


def test_qr_rank_deficient_stays_orthonormal():
    a = _gaussian((6, 3)).at[:, 1].set(0.0)
    q, r = _linalg.qr(a)
    assert np.isfinite(q).all() and r[1, 1] == 0
    assert np.abs(q.T @ q - np.eye(3)).max() <= 1e-13
    assert np.abs(q @ r - a).max() <= 1e-12


def test_qr_under_jit_vmap_equals_one_by_one():
    a = _gaussian((3, 2, 8, 5), seed=2)
    q, r = jax.jit(jax.vmap(_linalg.qr))(a)
    assert q.shape == (3, 2, 8, 5) and r.shape == (3, 2, 5, 5)
    q1, r1 = _linalg.qr(a[2, 1])
    np.testing.assert_allclose(q[2, 1], q1, atol=1e-14)
    np.testing.assert_allclose(r[2, 1], r1, atol=1e-14)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_qr_keeps_dtype(dtype):
    q, r = _linalg.qr(_gaussian((6, 4), dtype))
    assert q.dtype == dtype and r.dtype == dtype


@pytest.mark.parametrize("bad", [np.zeros((3, 5)), np.zeros(4), np.zeros((4, 3), np.int32)])
def test_qr_rejects_bad_input(bad):
    with pytest.raises((ValueError, TypeError), match="qr needs|floating"):
        _linalg.qr(bad)


@pytest.mark.parametrize("shape", [(16, 16), (6, 10), (10, 6)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_orthogonal_is_orthogonal_and_matches_jax(shape, dtype):
    key = jax.random.PRNGKey(3)
    w = _linalg.orthogonal(key, shape, dtype)
    assert w.shape == shape and w.dtype == dtype
    small = w.T @ w if shape[0] >= shape[1] else w @ w.T
    tol = 1e-5 if dtype == jnp.float32 else 1e-13
    assert np.abs(np.asarray(small) - np.eye(min(shape))).max() <= tol
    # the same Gaussian and sign convention as JAX's initialiser, so the same matrix
    np.testing.assert_allclose(w, jax.nn.initializers.orthogonal()(key, shape, dtype), atol=tol)


def test_orthogonal_under_jit_vmap_gives_distinct_matrices():
    keys = jax.random.split(jax.random.PRNGKey(4), 5)
    w = jax.jit(jax.vmap(lambda k: _linalg.orthogonal(k, (8, 8), jnp.float64)))(keys)
    np.testing.assert_allclose(jnp.einsum("sij,sik->sjk", w, w), np.broadcast_to(np.eye(8), (5, 8, 8)), atol=1e-13)
    np.testing.assert_allclose(w[3], _linalg.orthogonal(keys[3], (8, 8), jnp.float64), atol=1e-14)
    assert np.abs(w[0] - w[1]).max() > 0.1


@pytest.mark.parametrize(("shape", "dtype"), [((2, 3, 4), jnp.float32), ((4, 4), jnp.int32)])
def test_orthogonal_rejects_bad_input(shape, dtype):
    with pytest.raises((ValueError, TypeError), match="2-D shape|floating"):
        _linalg.orthogonal(jax.random.PRNGKey(0), shape, dtype)


def test_log_spectral_radius_matches_numpy_eigvals_under_vmap():
    ws = (
        jax.random.normal(jax.random.key(4), (4, 12, 12), jnp.float64)
        * jnp.asarray([0.3, 0.9, 1.0, 1.7])[:, None, None]
    )
    got = jax.jit(jax.vmap(_linalg.log_spectral_radius))(ws)
    want = np.log(np.abs(np.linalg.eigvals(np.asarray(ws))).max(-1))
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert _linalg.log_spectral_radius(ws[0].astype(jnp.float32)).dtype == jnp.float32
