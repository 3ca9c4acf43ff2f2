"""Imported RG-LRU (recurrentgemma) and Mamba (mambapy) layers against the packages themselves.

Outputs, input gradients and parameter gradients of ``gp.unroll`` on the imported cell
must equal the package layer's forward and its own autodiff (jax.grad for recurrentgemma,
torch autograd for mambapy): ≤ 1e-12 relative in float64 where the package computes in
float64, ≤ 1e-5 in float32. Where a package departs from the clean mathematics (reset at
segment_pos == 0, the clipped √ derivative, float32 casts) the expected difference is tested.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradpaths as gp
from gradpaths.cells import HState, MambaState

B, T, H = 2, 6, 4
F32, F64 = jnp.float32, jnp.float64


def _rel(a, b):
    """max over leaves of ‖a − b‖ / ‖b‖."""
    errs = jax.tree.map(
        lambda u, v: float(jnp.linalg.norm(jnp.ravel(u - v)) / max(float(jnp.linalg.norm(jnp.ravel(v))), 1e-300)),
        a,
        b,
    )
    return max(jax.tree.leaves(errs))


def _randomise(tree, seed, scale=0.5):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten(
        [leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
    )


# ----------------------------------------------------------------------------- recurrentgemma


@pytest.fixture
def rg(monkeypatch):
    """recurrentgemma's layers module, or skip."""
    return pytest.importorskip("recurrentgemma.jax.layers")


def _f64_scan(monkeypatch):
    """Make recurrentgemma's scan accumulate in the input dtype (it is float32 whatever the dtype)."""
    from recurrentgemma.jax import scan

    original = scan.linear_scan

    def linear_scan(x, a, h0=None, **kw):
        return original(x, a, h0, acc_float_dtype=x.dtype, **kw)

    monkeypatch.setattr(scan, "linear_scan", linear_scan)


def _rg_setup(rg, dtype, heads=2, seed=0):
    module = rg.RGLRU(width=H, num_heads=heads, param_dtype=dtype)
    xs = jax.random.normal(jax.random.key(seed), (B, T, H), dtype)
    pos = jnp.broadcast_to(jnp.arange(1, T + 1), (B, T))  # never 0: no reset
    variables = module.init(jax.random.key(seed + 1), xs, pos)
    variables = {"params": _randomise(variables["params"], seed + 2)}  # gate biases are zero at init
    weights = jax.random.normal(jax.random.key(seed + 3), (B, T, H), dtype)
    return module, variables, xs, pos, weights


def _rg_grads(module, variables, xs, pos, weights, h0):
    def loss(v, x):
        return jnp.sum(weights * module.apply(v, x, pos, cache=h0)[0])

    y = module.apply(variables, xs, pos, cache=h0)[0]
    g_v, g_x = jax.grad(loss, argnums=(0, 1))(variables, xs)
    p = g_v["params"]
    g_params = {
        "W_a": p["a_gate"]["w"],
        "b_a": p["a_gate"]["b"],
        "W_x": p["input_gate"]["w"],
        "b_x": p["input_gate"]["b"],
        "Lambda": -p["a_param"],
    }
    return y, g_params, g_x


def _gp_grads(cell, params, xs, weights, state0):
    def loss(p, x):
        return jnp.sum(weights * gp.unroll(cell, p, x, state0=state0))

    g_p, g_x = jax.grad(loss, argnums=(0, 1))(params, xs)
    return gp.unroll(cell, params, xs, state0=state0), g_p, g_x


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
def test_recurrentgemma_outputs_and_gradients(rg, monkeypatch, dtype):
    if dtype == F64:
        _f64_scan(monkeypatch)
    tol = 1e-12 if dtype == F64 else 1e-5
    module, variables, xs, pos, weights = _rg_setup(rg, dtype)
    h0 = (0.5 * jax.random.normal(jax.random.key(9), (B, H))).astype(dtype if dtype == F64 else F32)
    cell, params = gp.interop.from_recurrentgemma(module, variables)
    assert (cell.hidden_size, cell.num_heads, cell.hop_edges) == (H, 2, ())
    assert all(v.dtype == dtype for v in params.values())
    want = _rg_grads(module, variables, xs, pos, weights, h0)
    got = _gp_grads(cell, params, xs, weights, HState(h0.astype(dtype)))
    for name, g, w in zip(("output", "params", "inputs"), got, want):
        assert _rel(g, w) <= tol, name


def test_recurrentgemma_float64_accumulates_in_float32(rg):
    """Unpatched, the package's recurrence runs in float32 inside a float64 layer."""
    module, variables, xs, pos, _ = _rg_setup(rg, F64)
    y, last = module.apply(variables, xs, pos)
    cell, params = gp.interop.from_recurrentgemma(module, variables)
    assert last.dtype == F32
    err = _rel(y, gp.unroll(cell, params, xs))
    assert 1e-12 < err < 1e-6


def test_recurrentgemma_reset_at_segment_start(rg, monkeypatch):
    """segment_pos == 0 gives h_1 = i_1 ⊙ x_1 (no √(1 − a²), no h_0); from there on, the cell."""
    _f64_scan(monkeypatch)
    module, variables, xs, _, _ = _rg_setup(rg, F64)
    pos = jnp.broadcast_to(jnp.arange(T), (B, T))
    y = module.apply(variables, xs, pos, cache=jnp.ones((B, H), F64))[0]
    cell, params = gp.interop.from_recurrentgemma(module, variables)
    gate_i = jax.nn.sigmoid(
        jax.vmap(lambda x: x @ jax.scipy.linalg.block_diag(*params["W_x"]))(xs[:, 0]) + params["b_x"].reshape(-1)
    )
    assert _rel(y[:, 0], gate_i * xs[:, 0]) <= 1e-12
    assert _rel(y[:, 0], gp.unroll(cell, params, xs[:, :1])[:, 0]) > 1e-3  # not the RG-LRU step
    assert _rel(y[:, 1:], gp.unroll(cell, params, xs[:, 1:], state0=HState(y[:, 0]))) <= 1e-12


def test_recurrentgemma_clipped_sqrt_gradient(rg, monkeypatch):
    """With a_t within 1e-7 of 1 the package clips d√/dx at 1000: the exact cell differs there,
    the cell built with clip_sqrt_grad=True matches; the forward pass is the same."""
    _f64_scan(monkeypatch)
    module, variables, xs, pos, weights = _rg_setup(rg, F64)
    p = dict(variables["params"])
    p["a_param"] = jnp.full((H,), -20.0, F64)  # softplus ≈ 2e-9, so 1 − a_t² ≈ 3e-8 r_t < 1/(4·1000²)
    variables = {"params": p}
    h0 = jnp.zeros((B, H), F64)
    want = _rg_grads(module, variables, xs, pos, weights, h0)
    cell, params = gp.interop.from_recurrentgemma(module, variables)
    exact = _gp_grads(cell, params, xs, weights, HState(h0))
    clipped = _gp_grads(
        *gp.interop.from_recurrentgemma(module, variables, clip_sqrt_grad=True), xs, weights, HState(h0)
    )
    assert _rel(exact[0], want[0]) <= 1e-12 and _rel(clipped[0], want[0]) <= 1e-12
    assert _rel(clipped[1], want[1]) <= 1e-12 and _rel(clipped[2], want[2]) <= 1e-12
    assert _rel(exact[1]["Lambda"], want[1]["Lambda"]) > 0.1  # the clip changes dL/dΛ
    assert _rel(exact[1]["W_x"], want[1]["W_x"]) <= 1e-12  # i_t's path has no √: equal


def test_recurrentgemma_rejects(rg):
    module = rg.RGLRU(width=H, num_heads=1, only_real=False)
    with pytest.raises(NotImplementedError, match="only_real"):
        gp.interop.from_recurrentgemma(module, {})
    with pytest.raises(TypeError, match="RGLRU"):
        gp.interop.from_recurrentgemma(object(), {})
    with pytest.raises(TypeError, match="a_param"):
        gp.interop.from_recurrentgemma(rg.RGLRU(width=H, num_heads=1), {"params": {}})


# ----------------------------------------------------------------------------- mambapy


@pytest.fixture
def mp():
    """mambapy's mamba module, or skip."""
    pytest.importorskip("torch")
    return pytest.importorskip("mambapy.mamba")


def _torch_layout(block, attr, n, r):
    """The block's weights (attr="data") or their gradients (attr="grad") in gradpaths' layout."""
    get = lambda t: getattr(t, attr).detach().numpy()
    w_x = get(block.x_proj.weight)
    out = {
        "W_in": get(block.in_proj.weight).T,
        "w_conv": get(block.conv1d.weight)[:, 0, :].T,
        "W_delta": w_x[:r].T,
        "W_B": w_x[r : r + n].T,
        "W_C": w_x[r + n :].T,
        "W_dt": get(block.dt_proj.weight).T,
        "b_dt": get(block.dt_proj.bias),
        "A_log": get(block.A_log),
        "D": get(block.D),
        "W_out": get(block.out_proj.weight).T,
    }
    for name, layer in (("b_in", block.in_proj), ("b_out", block.out_proj), ("b_conv", block.conv1d)):
        if layer.bias is not None:
            out[name] = get(layer.bias)
    return {k: jnp.asarray(v) for k, v in out.items()}


MAMBA_CONFIGS = {
    "default": {},
    "bias-noconvbias": {"bias": True, "conv_bias": False},
    "conv2-sequential": {"d_conv": 2, "pscan": False},
    "expand1-rank2": {"expand_factor": 1, "dt_rank": 2},
}


def _mamba_run(mp, dtype, options, seed=0):
    """(cell, params, u, weights, torch output, torch grads {params, inputs}) for one block."""
    import torch

    torch.manual_seed(seed)
    tdtype = torch.float64 if dtype == F64 else torch.float32
    cfg = mp.MambaConfig(d_model=H, n_layers=1, d_state=3, **{"d_conv": 3, **options})
    block = mp.MambaBlock(cfg).to(tdtype)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.3 * torch.randn_like(p))  # zero biases and the shared A init would hide a wrong mapping
    u = torch.randn(B, T, H, dtype=tdtype, requires_grad=True)
    weights = torch.randn(B, T, H, dtype=tdtype)
    y = block(u)
    (y * weights).sum().backward()
    cell, params = gp.interop.from_mambapy(block)
    grads = _torch_layout(block, "grad", cfg.d_state, cfg.dt_rank)
    arrays = [jnp.asarray(t.detach().numpy()) for t in (u, weights, y, u.grad)]
    return block, cell, params, *arrays, grads


@pytest.mark.parametrize("options", sorted(MAMBA_CONFIGS))
@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
def test_mambapy_outputs_and_gradients(mp, dtype, options):
    block, cell, params, u, weights, y, g_u, g_p = _mamba_run(mp, dtype, MAMBA_CONFIGS[options])
    assert cell.edges == ("highway", "conv", "conv_shift")[: 2 if cell.d_conv == 2 else 3]
    assert cell.hop_edges == ("conv",)
    assert all(v.dtype == dtype for v in params.values())
    got_y, got_p, got_u = _gp_grads(cell, params, u, weights, None)
    tol = 1e-12 if dtype == F64 else 1e-5
    assert _rel(got_y, y) <= tol
    assert _rel(got_u, g_u) <= tol
    cast = ("A_log", "D")  # the package rounds these two gradients to float32 (see the importer)
    assert (
        _rel({k: v for k, v in got_p.items() if k not in cast}, {k: v for k, v in g_p.items() if k not in cast}) <= tol
    )
    assert _rel({k: got_p[k] for k in cast}, {k: g_p[k] for k in cast}) <= (1e-6 if dtype == F64 else tol)


def test_mambapy_float64_casts_to_float32(mp):
    """The block computes A and D in float32: the raw float64 A_log gives a different forward
    pass (the importer folds the cast in), and the block's A_log and D gradients are rounded
    to float32."""
    block, cell, params, u, weights, y, _, g_p = _mamba_run(mp, F64, {})
    raw = {**params, **{k: v for k, v in _torch_layout(block, "data", 3, 1).items() if k in ("A_log", "D")}}
    assert 1e-12 < _rel(gp.unroll(cell, raw, u), y) < 1e-6
    _, got_p, _ = _gp_grads(cell, params, u, weights, None)
    for k in ("A_log", "D"):
        assert 1e-12 < _rel(got_p[k], g_p[k]) < 1e-6
        assert _rel(got_p[k].astype(F32), g_p[k].astype(F32)) < 1e-6


def test_mambapy_step_matches_package_step(mp):
    """The conv window is the package's inference cache: step by step, state and output agree."""
    import torch

    block, cell, params, u, *_ = _mamba_run(mp, F64, {})
    cache = (None, torch.zeros(1, block.config.d_inner, block.config.d_conv - 1, dtype=torch.float64))
    state = cell.zero_state((), F64)
    for t in range(T):
        with torch.no_grad():
            out, cache = block.step(torch.from_numpy(np.array(u[:1, t])), cache)
        state = cell.step(params, cell.read(state), u[0, t])
        assert _rel(state.y, jnp.asarray(out.numpy()[0])) <= 1e-12
        assert _rel(state.h, jnp.asarray(cache[0].numpy()[0])) <= 1e-12
        assert _rel(state.conv, jnp.asarray(cache[1].numpy()[0].T)) <= 1e-12
    assert isinstance(state, MambaState)


def test_mambapy_rejects(mp):
    cfg = mp.MambaConfig(d_model=H, n_layers=1, d_state=3)
    with pytest.raises(TypeError, match="mixer"):
        gp.interop.from_mambapy(mp.ResidualBlock(cfg))
    with pytest.raises(TypeError, match="MambaBlock"):
        gp.interop.from_mambapy(object())
    with pytest.raises(NotImplementedError, match="inner_layernorms"):
        gp.interop.from_mambapy(mp.MambaBlock(mp.MambaConfig(d_model=H, n_layers=1, inner_layernorms=True)))
