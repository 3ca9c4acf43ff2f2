"""Equivalence of imported Flax / PyTorch cells with the libraries themselves, in float64.

Outputs must agree within 1e-10; against PyTorch, autograd gradients with respect
to the inputs and to the weights agree too (gradpaths side: jax.grad and decompose).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import gradpaths as gp
from gradpaths.interop import from_flax, from_torch, state_from_flax, state_from_torch

TOL = 1e-10
B, T, I, H = 2, 5, 3, 4
F64 = jnp.float64


def _xs(seed=0):
    return jax.random.normal(jax.random.key(seed), (B, T, I), F64)


def _randomise(tree, seed):
    """Every leaf ~ N(0, 0.5²): zero-initialised biases would hide a wrong bias mapping."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten([0.5 * jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)])


def _max_err(a, b):
    return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


LINEN_CELLS = {
    "LSTMCell": lambda: nn.LSTMCell(H, param_dtype=F64),
    "OptimizedLSTMCell": lambda: nn.OptimizedLSTMCell(H, param_dtype=F64),
    "GRUCell": lambda: nn.GRUCell(H, param_dtype=F64),
    "MGUCell": lambda: nn.MGUCell(H, param_dtype=F64),
    "SimpleCell-tanh": lambda: nn.SimpleCell(H, param_dtype=F64),
    "SimpleCell-identity": lambda: nn.SimpleCell(H, activation_fn=jax.nn.identity, param_dtype=F64),
    "SimpleCell-relu": lambda: nn.SimpleCell(H, activation_fn=nn.relu, param_dtype=F64),
    "SimpleCell-sigmoid-residual": lambda: nn.SimpleCell(H, activation_fn=nn.sigmoid, residual=True, param_dtype=F64),
}
NNX_CELLS = {
    "LSTMCell": nnx.LSTMCell,
    "OptimizedLSTMCell": nnx.OptimizedLSTMCell,
    "GRUCell": nnx.GRUCell,
    "SimpleCell-tanh": nnx.SimpleCell,
}


@pytest.mark.parametrize("name", sorted(LINEN_CELLS))
def test_linen_matches_flax_rnn_float64(name):
    cell_mod = LINEN_CELLS[name]()
    xs = _xs()
    carry = _randomise(cell_mod.initialize_carry(jax.random.key(3), xs[:, 0].shape), seed=4)
    variables = {"params": {"cell": _randomise(cell_mod.init(jax.random.key(1), carry, xs[:, 0]), seed=2)["params"]}}
    wrapper = nn.RNN(cell_mod)
    want = wrapper.apply(variables, xs, initial_carry=carry)

    cell, params = from_flax(cell_mod, variables)
    assert {p.dtype for p in params.values()} == {jnp.dtype(F64)}
    assert cell.hidden_size == H
    assert _max_err(gp.unroll(cell, params, xs, state0=state_from_flax(cell, carry)), want) < TOL
    own = {"params": variables["params"]["cell"]}
    for module, v in [(cell_mod, own), (wrapper, variables)]:
        other_cell, other = from_flax(module, v)
        assert other_cell == cell
        jax.tree.map(np.testing.assert_array_equal, other, params)


@pytest.mark.parametrize("name", sorted(NNX_CELLS))
def test_nnx_matches_nnx_rnn_float64(name):
    module = NNX_CELLS[name](I, H, dtype=F64, param_dtype=F64, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(module)
    module = nnx.merge(graphdef, _randomise(state, seed=5))
    xs = _xs()
    wrapper = nnx.RNN(module)
    want = wrapper(xs)
    for m in (module, wrapper):
        cell, params = from_flax(m)
        assert {p.dtype for p in params.values()} == {jnp.dtype(F64)}
        assert _max_err(gp.unroll(cell, params, xs), want) < TOL


def test_flax_mapping_is_the_documented_one():
    """LSTM: W_x = [ii|if|ig|io], b = the h biases; GRU: b_hn alone in b_h."""
    xs = _xs()
    v = _randomise(nn.RNN(nn.LSTMCell(H, param_dtype=F64)).init(jax.random.key(0), xs), seed=1)
    cell, params = from_flax(nn.LSTMCell(H, param_dtype=F64), v)
    p = v["params"]["cell"]
    assert isinstance(cell, gp.LSTM) and cell.forget_gate
    np.testing.assert_array_equal(params["W_x"][:, H : 2 * H], p["if"]["kernel"])
    np.testing.assert_array_equal(params["b"][3 * H :], p["ho"]["bias"])
    v = _randomise(nn.RNN(nn.GRUCell(H, param_dtype=F64)).init(jax.random.key(0), xs), seed=1)
    cell, params = from_flax(nn.GRUCell(H, param_dtype=F64), v)
    p = v["params"]["cell"]
    assert isinstance(cell, gp.GRU)
    np.testing.assert_array_equal(params["b_h"][2 * H :], p["hn"]["bias"])
    np.testing.assert_array_equal(params["b_h"][: 2 * H], 0.0)
    np.testing.assert_array_equal(params["b"][2 * H :], p["in"]["bias"])


@pytest.mark.parametrize(
    "module, variables, match",
    [
        (nn.LSTMCell(H, gate_fn=nn.hard_sigmoid), {"params": {}}, "gate_fn=sigmoid"),
        (nn.GRUCell(H, activation_fn=nn.relu), {"params": {}}, "activation_fn=tanh"),
        (nn.SimpleCell(H, activation_fn=nn.gelu), {"params": {}}, "activation_fn must be one of"),
        (nn.MGUCell(H, reset_gate=False), {"params": {}}, "reset_gate"),
        (nn.RNN(nn.GRUCell(H), reverse=True), {"params": {}}, "reverse"),
        (nn.LSTMCell(H), None, "needs its variables"),
        (nn.LSTMCell(H), {"params": {"ii": {"kernel": np.zeros((I, H))}}}, "lack the Dense"),
    ],
)
def test_flax_bad_options_raise_value_error(module, variables, match):
    with pytest.raises(ValueError, match=match):
        from_flax(module, variables)


def test_flax_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match="from_flax covers"):
        from_flax(nn.Dense(3), {"params": {}})
    with pytest.raises(TypeError, match="variables must be"):
        from_flax(nn.LSTMCell(H), [1, 2])
    with pytest.raises(ValueError, match="carry their own state"):
        from_flax(nnx.GRUCell(I, H, rngs=nnx.Rngs(0)), {"params": {}})


# ----------------------------------------------------------------------------- PyTorch

TORCH_LAYERS = {
    "LSTM": lambda torch, **kw: torch.nn.LSTM(I, H, batch_first=True, **kw),
    "GRU": lambda torch, **kw: torch.nn.GRU(I, H, batch_first=True, **kw),
    "RNN-tanh": lambda torch, **kw: torch.nn.RNN(I, H, batch_first=True, **kw),
    "RNN-relu": lambda torch, **kw: torch.nn.RNN(I, H, nonlinearity="relu", batch_first=True, **kw),
}


def _torch_loss(out):
    return (out**2).sum() + out[..., -1, :].sin().sum()


def _jax_loss(hs):
    return jnp.sum(hs**2) + jnp.sum(jnp.sin(hs[..., -1, :]))


def _torch_h0(torch, name, seed=0):
    g = torch.Generator().manual_seed(seed)
    h0 = torch.randn(1, B, H, generator=g, dtype=torch.float64)
    return (h0, torch.randn(1, B, H, generator=g, dtype=torch.float64)) if name == "LSTM" else h0


@pytest.mark.parametrize("name, bias", [*((n, True) for n in sorted(TORCH_LAYERS)), ("GRU", False), ("LSTM", False)])
def test_torch_outputs_and_gradients_float64(name, bias):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = TORCH_LAYERS[name](torch, bias=bias).double()
    x_np = np.asarray(_xs(1))
    hx = _torch_h0(torch, name)
    x = torch.tensor(x_np, requires_grad=True)
    out, _ = module(x, hx)
    _torch_loss(out).backward()

    cell, params = from_torch(module)
    state0 = state_from_torch(cell, hx)
    xs = jnp.asarray(x_np)

    @jax.jit
    def run(params, xs, state0):
        hs = gp.unroll(cell, params, xs, state0=state0)
        dxs = jax.grad(lambda v: _jax_loss(gp.unroll(cell, params, v, state0=state0)))(xs)
        return hs, dxs, gp.decompose(cell, params, xs, _jax_loss, max_hops=1, parts=(), state0=state0).total

    hs, dxs, total = run(params, xs, state0)
    assert _max_err(hs, out.detach().numpy()) < TOL
    assert _max_err(dxs, x.grad.numpy()) < TOL
    grads = {k: v.grad.numpy() for k, v in module.named_parameters()}
    assert _max_err(total["W_x"], grads["weight_ih_l0"].T) < TOL
    assert _max_err(total["W_h"], grads["weight_hh_l0"].T) < TOL
    if bias:
        assert _max_err(total["b"], grads["bias_ih_l0"]) < TOL
        if cell.has_b_h:
            assert _max_err(total["b_h"], grads["bias_hh_l0"]) < TOL
    else:
        np.testing.assert_array_equal(params["b"], 0.0)


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_torch_cells_match_stepwise_float64(name):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    module = getattr(torch.nn, name)(I, H).double()
    x_np = np.asarray(_xs(2))
    hx = _torch_h0(torch, "LSTM" if name == "LSTMCell" else name)
    hx = tuple(v[0] for v in hx) if name == "LSTMCell" else hx[0]
    state, outs = hx, []
    for t in range(T):
        state = module(torch.tensor(x_np[:, t]), state)
        outs.append((state[0] if name == "LSTMCell" else state).detach().numpy())
    cell, params = from_torch(module)
    hs = gp.unroll(cell, params, jnp.asarray(x_np), state0=state_from_torch(cell, hx, layer=None))
    assert _max_err(hs, np.stack(outs, axis=1)) < TOL


def test_torch_stacked_layers_chain_float64():
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    module = torch.nn.LSTM(I, H, num_layers=2, batch_first=True).double()
    x_np = np.asarray(_xs(3))
    out, _ = module(torch.tensor(x_np))
    hs = jnp.asarray(x_np)
    for k in range(2):
        cell, params = from_torch(module, layer=k)
        hs = gp.unroll(cell, params, hs)
    assert _max_err(hs, out.detach().numpy()) < TOL
    whole, params = from_torch(module)  # no layer: the whole stack as one cell
    assert _max_err(gp.unroll(whole, params, jnp.asarray(x_np)), out.detach().numpy()) < TOL
    with pytest.raises(ValueError, match="layer must be"):
        from_torch(module, layer=2)


def test_torch_state_dict_of_numpy_needs_no_torch():
    """A hand-made numpy state dict: the torch-free path, with the GRU's b_hn kept apart."""
    rng = np.random.default_rng(0)
    sd = {
        "weight_ih_l0": rng.normal(size=(3 * H, I)),
        "weight_hh_l0": rng.normal(size=(3 * H, H)),
        "bias_ih_l0": rng.normal(size=3 * H),
        "bias_hh_l0": rng.normal(size=3 * H),
    }
    cell, params = from_torch(sd)
    assert isinstance(cell, gp.GRU) and params["W_x"].dtype == jnp.float64
    np.testing.assert_array_equal(params["W_x"], sd["weight_ih_l0"].T)
    np.testing.assert_array_equal(params["b"][: 2 * H], sd["bias_ih_l0"][: 2 * H] + sd["bias_hh_l0"][: 2 * H])
    np.testing.assert_array_equal(params["b"][2 * H :], sd["bias_ih_l0"][2 * H :])
    np.testing.assert_array_equal(params["b_h"], np.r_[np.zeros(2 * H), sd["bias_hh_l0"][2 * H :]])
    lstm_sd = {"weight_ih_l0": rng.normal(size=(4 * H, I)), "weight_hh_l0": rng.normal(size=(4 * H, H))}
    cell, params = from_torch(lstm_sd)
    assert isinstance(cell, gp.LSTM)
    np.testing.assert_array_equal(params["b"], 0.0)
    rnn_sd = {"weight_ih_l0": rng.normal(size=(H, I)), "weight_hh_l0": rng.normal(size=(H, H))}
    with pytest.raises(ValueError, match="pass kind="):
        from_torch(rnn_sd)
    cell, _ = from_torch(rnn_sd, kind="rnn_relu")
    assert isinstance(cell, gp.RNN) and cell.activation == "relu"
    with pytest.raises(ValueError, match="needs 4 gate blocks"):
        from_torch(rnn_sd, kind="lstm")


def test_torch_state_dict_matches_module_float64():
    torch = pytest.importorskip("torch")
    module = torch.nn.GRU(I, H, batch_first=True).double()
    _, from_module = from_torch(module)
    _, from_sd = from_torch({k: v.numpy() for k, v in module.state_dict().items()})
    for k in from_module:
        np.testing.assert_array_equal(from_module[k], from_sd[k])


@pytest.mark.parametrize(
    "make, kwargs, match",
    [
        (lambda t: t.nn.LSTM(I, H, bidirectional=True), {}, "bidirectional"),
        (lambda t: t.nn.LSTM(I, H, proj_size=2), {}, "proj_size"),
        (lambda t: t.nn.LSTM(I, H), {"kind": "gru"}, "contradicts"),
        (lambda t: t.nn.GRU(I, H), {"kind": "mgu"}, "kind must be one of"),
        (lambda t: {k: v.numpy() for k, v in t.nn.GRU(I, H, bidirectional=True).state_dict().items()}, {}, "_reverse"),
        (lambda t: {k: v.numpy() for k, v in t.nn.LSTM(I, H, proj_size=2).state_dict().items()}, {}, "weight_hr"),
        (lambda t: {"weight": np.zeros((4, 4))}, {}, "weight_ih_l0"),
    ],
)
def test_torch_unsupported_raise_value_error(make, kwargs, match):
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=match):
        from_torch(make(torch), **kwargs)


def test_torch_wrong_types_raise_type_error():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="from_torch takes"):
        from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(TypeError, match="from_torch takes"):
        from_torch(42)
