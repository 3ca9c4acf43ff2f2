"""The h-detach identity, exactly: E[h-detach gradient] = Σ_k (1 − p)^k G^[k].

Every path crosses each step's h_{t-1} → gates edge at most once, so the gradient with
per-step masks m ∈ {0, 1}^T on that edge is multilinear in m; its expectation under
m_t ~ Bernoulli(1 − p) (independent) replaces each m_t by 1 − p, so a path with k hops
gets weight (1 − p)^k (docs/derivations.md, "The h-detach identity"). At T = 5 the
expectation is a finite sum over all 2^T masks, checked here to 1e-12 in float64.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradpaths as gp

T, I, H = 5, 2, 3


def _setup(cell_name):
    cell = {"lstm": lambda: gp.lstm(H), "gru": lambda: gp.gru(H)}[cell_name]()
    k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
    params = cell.init(k1, I, jnp.float64)
    xs = jax.random.normal(k2, (2, T, I), jnp.float64)  # a batch of 2 sequences
    w = jax.random.normal(k3, (H,), jnp.float64)
    loss = lambda hs: jnp.sum(jnp.tanh(hs @ w) ** 2) + jnp.sum(hs[..., -1, :] ** 3)
    return cell, params, xs, loss


def _flat(tree):
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


@pytest.mark.parametrize("cell_name", ["lstm", "gru"])
@pytest.mark.parametrize("p", [0.25, 0.5])
def test_expected_hdetach_gradient_is_the_reweighted_hop_sum(cell_name, p):
    cell, params, xs, loss = _setup(cell_name)
    masks = jnp.asarray(list(itertools.product((0.0, 1.0), repeat=T)), jnp.float64)  # [2^T, T]
    grads = jax.vmap(lambda m: _flat(gp.masked_grad(cell, params, xs, loss, scales={"gates": m})))(masks)
    weights = jnp.prod(jnp.where(masks == 1.0, 1.0 - p, p), axis=1)  # Π p^(1−m_t) (1−p)^(m_t)
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-15)
    expected = weights @ grads
    d = gp.decompose(cell, params, xs, loss, max_hops=T, parts=("hops",))  # no clamp: k ≤ T-1 < K
    by_k = jnp.stack([_flat(jax.tree.map(lambda g, k=k: g[k], d.by_hops)) for k in range(T + 1)])
    theory = ((1.0 - p) ** jnp.arange(T + 1, dtype=jnp.float64)) @ by_k
    err = float(jnp.linalg.norm(expected - theory) / jnp.linalg.norm(theory))
    assert err <= 1e-12, err
    # and the identity is not trivial: the masked gradients really differ from each other and from G
    assert float(jnp.linalg.norm(grads[0] - grads[-1])) > 1e-3 * float(jnp.linalg.norm(grads[-1]))
    np.testing.assert_allclose(grads[-1], _flat(d.total), rtol=1e-12, atol=1e-14)  # all-ones mask = jax.grad
