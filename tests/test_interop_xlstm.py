"""gp.interop.from_xlstm against the xlstm package (torch, CPU): outputs, input and parameter
gradients, the traps (fgate feeds the input gate; the mLSTM's ε and context_length)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
xlstm = pytest.importorskip("xlstm")

import gradpaths as gp  # noqa: E402
from gradpaths.interop.xlstm import from_xlstm, mlstm_params, slstm_params  # noqa: E402

B, T, E = 2, 6, 8


def _layer(kind: str, kernel: int, dtype, context: int = T):
    torch.manual_seed(kernel)
    if kind == "slstm":
        cfg = xlstm.sLSTMLayerConfig(embedding_dim=E, num_heads=2, conv1d_kernel_size=kernel, backend="vanilla")
        layer = xlstm.sLSTMLayer(cfg)
    else:
        cfg = xlstm.mLSTMLayerConfig(
            embedding_dim=E,
            num_heads=2,
            context_length=context,
            conv1d_kernel_size=kernel,
            round_proj_up_to_multiple_of=4,
        )
        layer = xlstm.mLSTMLayer(cfg)
    layer = layer.to(dtype).eval()
    with torch.no_grad():  # move every parameter off its init (zeros, ones), so each one is tested
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return layer


def _torch_run(layer, dtype):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(B, T, E, dtype=dtype, generator=gen, requires_grad=True)
    w = torch.randn(B, T, E, dtype=dtype, generator=gen)
    y = layer(x)
    (y * w).sum().backward()
    convert = slstm_params if type(layer).__name__ == "sLSTMLayer" else mlstm_params
    grads = convert(layer, {n: p.grad for n, p in layer.named_parameters()})
    as_jnp = lambda t: jnp.asarray(t.detach().numpy())  # noqa: E731
    return as_jnp(x), as_jnp(w), as_jnp(y), as_jnp(x.grad), grads


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-30))


CASES = [("slstm", 4), ("slstm", 2), ("slstm", 0), ("mlstm", 4), ("mlstm", 3), ("mlstm", 2)]


@pytest.mark.parametrize(("kind", "kernel"), CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_outputs_and_gradients_equal_torch(kind, kernel, dtype):
    tdtype = getattr(torch, dtype)
    layer = _layer(kind, kernel, tdtype)
    x, w, y, gx_torch, gp_torch = _torch_run(layer, tdtype)
    cell, params = from_xlstm(layer)
    assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(dtype)}
    tol = 1e-10 if dtype == "float64" else 1e-5
    assert _rel(gp.unroll(cell, params, x), y) <= tol

    def loss(p, xs):
        return jnp.sum(gp.unroll(cell, p, xs) * w)

    g_p, g_x = jax.grad(loss, argnums=(0, 1))(params, x)
    assert _rel(g_x, gx_torch) <= tol
    assert set(g_p) == set(gp_torch)
    if dtype == "float64":  # leaf by leaf
        for k in g_p:
            assert _rel(g_p[k], gp_torch[k]) <= tol, k
    else:  # float32: relative to the whole gradient (DESIGN's measure); the small ĩ-bias
        # gradient is a cancellation (the stabiliser's paths cancel), ~1e-4 of itself in float32
        flat, flat_torch = (jnp.concatenate([g[k].ravel() for k in sorted(g)]) for g in (g_p, gp_torch))
        assert float(jnp.linalg.norm(flat - flat_torch) / jnp.linalg.norm(flat_torch)) <= tol


@pytest.mark.parametrize(("kind", "kernel"), [("slstm", 4), ("mlstm", 4)])
def test_decomposition_of_imported_layer_is_exact(kind, kernel):
    layer = _layer(kind, kernel, torch.float64)
    x, w, _, _, gp_torch = _torch_run(layer, torch.float64)
    cell, params = from_xlstm(layer)
    assert "conv" in cell.hop_edges and "conv_shift" not in cell.hop_edges
    d = gp.decompose(cell, params, x, lambda hs: jnp.sum(hs * w), max_hops=T, parts=("hops", "step"))
    for k in params:
        assert _rel(d.by_hops[k].sum(0), gp_torch[k]) <= 1e-10, k
        assert _rel(d.by_step[k].sum(0), gp_torch[k]) <= 1e-10, k


def test_fgate_weight_feeds_the_input_gate():
    """xlstm computes i, f, z, o = fgate(x), igate(x), zgate(x), ogate(x): its names are swapped."""
    layer = _layer("slstm", 4, torch.float64)
    _, params = from_xlstm(layer)
    np.testing.assert_array_equal(params["W_i"], np.swapaxes(layer.fgate.weight.detach().numpy(), 1, 2))
    np.testing.assert_array_equal(params["W_f"], np.swapaxes(layer.igate.weight.detach().numpy(), 1, 2))


def test_mlstm_eps_is_the_only_difference_from_the_invariant_mathematics():
    """The package adds ε = 1e-6 to the normaliser. Without it (eps=0) the output moves by
    O(ε), linearly: y(ε) - y(0) = y(2ε) - y(ε) up to O(ε²)."""
    layer = _layer("mlstm", 4, torch.float64)
    x, _, y, _, _ = _torch_run(layer, torch.float64)
    cell, params = from_xlstm(layer)
    assert cell.eps == 1e-6
    ys = [gp.unroll(type(cell)(**{**vars(cell), "eps": e}), params, x) for e in (0.0, 1e-6, 2e-6)]
    assert _rel(ys[1], y) <= 1e-12
    first, second = ys[1] - ys[0], ys[2] - ys[1]
    assert 1e-12 < float(jnp.max(jnp.abs(first))) < 1e-3 * float(jnp.max(jnp.abs(y)))
    assert _rel(second, first) <= 1e-3


def test_mlstm_runs_past_its_context_length():
    """The package's parallel form needs T <= context_length; the recurrent cell is causal and runs on."""
    layer = _layer("mlstm", 4, torch.float64, context=T)
    x, _, y, _, _ = _torch_run(layer, torch.float64)
    cell, params = from_xlstm(layer)
    longer = jnp.concatenate([x, x], axis=1)
    ys = gp.unroll(cell, params, longer)
    assert ys.shape == (B, 2 * T, E) and _rel(ys[:, :T], y) <= 1e-12
    with pytest.raises(RuntimeError):
        layer(torch.tensor(np.asarray(longer)))


def test_rejects_other_modules():
    with pytest.raises(TypeError, match="sLSTMLayer or mLSTMLayer"):
        from_xlstm(torch.nn.LSTM(4, 4))
