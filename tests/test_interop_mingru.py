"""gp.interop.from_mingru against the installed mingru-pytorch package: outputs, input and
parameter gradients, and the package's two initial-state behaviours."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradpaths as gp
from gradpaths.interop.mingru import from_mingru, state_from_mingru

torch = pytest.importorskip("torch")
mingru_pytorch = pytest.importorskip("minGRU_pytorch")

B, T, DIM = 2, 6, 3
from minGRU_pytorch.minLSTM import minLSTM  # noqa: E402  (the package exports minGRU only)

KINDS = {"minGRU": mingru_pytorch.minGRU, "minLSTM": minLSTM}
TOL = {torch.float64: (1e-12, 1e-11), torch.float32: (1e-5, 1e-5)}  # (outputs, gradients), relative


def _module(kind: str, expansion: float, dtype):
    torch.manual_seed(0)
    return KINDS[kind](DIM, expansion_factor=expansion).to(dtype)


def _inputs(dtype, steps=T, seed=1):
    return torch.randn(B, steps, DIM, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _torch_grads(module, x, w, prev=None):
    x = x.clone().requires_grad_(True)
    out = module(x, prev) if prev is not None else module(x)
    (out * w).sum().backward()
    grads = {name: p.grad.detach().numpy() for name, p in module.named_parameters()}
    return out.detach().numpy(), x.grad.numpy(), grads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("expansion", [1.0, 2.0], ids=["no_proj", "proj"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_outputs_and_gradients_match_package(kind, expansion, dtype):
    module = _module(kind, expansion, dtype)
    x = _inputs(dtype)
    w = torch.randn(B, T, DIM, generator=torch.Generator().manual_seed(2), dtype=dtype)
    out_t, dx_t, grads_t = _torch_grads(module, x, w)

    cell, params = from_mingru(module)
    assert cell.hop_edges == () and ("W_out" in params) == (expansion != 1.0)
    xs, wj = jnp.asarray(x.numpy()), jnp.asarray(w.numpy())
    assert params["W_x"].dtype == xs.dtype
    loss = lambda p, xs: (gp.unroll(cell, p, xs) * wj).sum()
    out_j = gp.unroll(cell, params, xs)
    dp, dx = jax.grad(loss, (0, 1))(params, xs)

    tol_out, tol_grad = TOL[dtype]
    assert out_j.dtype == xs.dtype
    assert _rel(out_j, out_t) <= tol_out
    assert _rel(dx, dx_t) <= tol_grad
    input_map = "to_hidden_and_gate" if kind == "minGRU" else "to_hidden_and_f_i_gate"
    assert _rel(dp["W_x"], grads_t[f"{input_map}.weight"].T) <= tol_grad
    if expansion != 1.0:
        assert _rel(dp["W_out"], grads_t["to_out.weight"].T) <= tol_grad


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_single_step_mode_matches(kind):
    """T = 1 calls take the package's sequential branch; chained, they equal one unroll."""
    module = _module(kind, 2.0, torch.float64)
    x = _inputs(torch.float64)
    cell, params = from_mingru(module)
    with torch.no_grad():
        prev, outs = None, []
        for t in range(T):
            out, prev = module(x[:, t : t + 1], prev, return_next_prev_hidden=True)
            outs.append(out)
    assert _rel(gp.unroll(cell, params, jnp.asarray(x.numpy())), torch.cat(outs, 1).numpy()) <= 1e-12


def test_minlstm_parallel_initial_state_is_g_of_prev_hidden():
    """The package's parallel minLSTM starts from g(prev_hidden), its T = 1 step from prev_hidden."""
    module = _module("minLSTM", 1.0, torch.float64)
    x = _inputs(torch.float64)
    prev = torch.randn(B, 1, DIM, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cell, params = from_mingru(module)
    xs = jnp.asarray(x.numpy())
    with torch.no_grad():
        parallel = module(x, prev).numpy()
        seq, h = [], prev
        for t in range(T):
            out, h = module(x[:, t : t + 1], h, return_next_prev_hidden=True)
            seq.append(out)
        sequential = torch.cat(seq, 1).numpy()
    ours_par = gp.unroll(cell, params, xs, state0=state_from_mingru(module, prev))
    ours_seq = gp.unroll(cell, params, xs, state0=state_from_mingru(module, prev, parallel=False))
    assert _rel(ours_par, parallel) <= 1e-12
    assert _rel(ours_seq, sequential) <= 1e-12
    # the two modes differ by exactly the carried difference g(h0) - h0, decayed by ∏ f'
    assert _rel(parallel, sequential) > 1e-3
    f_prime = jax.vmap(lambda x: cell.coefficients(params, x)[0]["highway"], 1, 1)(xs)
    decay = jnp.cumprod(f_prime, axis=1)
    h0 = jnp.asarray(prev.numpy()[:, 0])
    expected = decay * (gp.cells.gated_linear.g(h0) - h0)[:, None]
    np.testing.assert_allclose(parallel - sequential, expected, rtol=1e-10, atol=1e-13)


def test_mingru_parallel_initial_state_needs_positive_prev_hidden():
    """The package's parallel minGRU takes log(prev_hidden): right for prev > 0, NaN otherwise."""
    module = _module("minGRU", 1.0, torch.float64)
    x = _inputs(torch.float64)
    prev = torch.randn(B, 1, DIM, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cell, params = from_mingru(module)
    xs = jnp.asarray(x.numpy())
    with torch.no_grad():
        positive = module(x, prev.abs() + 0.1).numpy()
        negative = module(x, -prev.abs() - 0.1).numpy()
    ours = gp.unroll(cell, params, xs, state0=state_from_mingru(module, prev.abs() + 0.1))
    assert _rel(ours, positive) <= 1e-12
    assert np.isnan(negative).any()
    assert np.isfinite(gp.unroll(cell, params, xs, state0=state_from_mingru(module, -prev.abs() - 0.1))).all()


def test_rejects_other_modules():
    with pytest.raises(TypeError, match="minGRU or minLSTM"):
        from_mingru(torch.nn.Linear(3, 3))
