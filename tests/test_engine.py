"""The generic engine, the fast path's agreement with it, check_cell, stacks, hop_edges and max_distance."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import pytest
from _trees import rel
from readme_cell import readme_cell, readme_namespace

import gradpaths as gp
from gradpaths.check import fast_vs_generic

T, H, I, B = 7, 3, 2, 2
AFFINE = {
    "rnn": gp.rnn(H),
    "irnn": gp.irnn(H),
    "lstm": gp.lstm(H),
    "lstm_nofg": gp.lstm(H, forget_gate=False),
    "gru": gp.gru(H),
    "mgu": gp.mgu(H),
}
LOSS = lambda hs: jnp.sum(jnp.sin(2 * hs) ** 2)


def setup(cell, dtype=jnp.float64, seed=0):
    params = jax.jit(cell.init, static_argnums=(1, 2))(jax.random.key(seed), I, dtype)
    return params, jax.random.normal(jax.random.key(seed + 1), (B, T, I), dtype)


def grad(cell, params, xs, loss=LOSS):
    return jax.grad(lambda p: loss(gp.unroll(cell, p, xs, backward="autodiff")))(params)


@pytest.mark.parametrize("name", AFFINE)
def test_fast_path_equals_generic_on_every_part(name):
    """Every part: nothing clamped (K = T, every distance), then clamped hops and a distance tail."""
    cell = AFFINE[name]
    params, xs = setup(cell)
    assert fast_vs_generic(cell, params, xs, LOSS, max_hops=T) <= 1e-12
    assert fast_vs_generic(cell, params, xs, LOSS, max_hops=2, max_distance=3) <= 1e-12


def test_a_subclass_declaring_a_wrong_fact_still_gets_the_exact_gradient():
    """A GRU subclass declaring additive=True (false: its core reads r ⊙ a_n) once got a
    gradient 0.38 off; a subclass now takes the generic engine, which reads no such flag."""

    @dataclasses.dataclass(frozen=True)
    class Lying(gp.GRU):
        additive = True

    cell = Lying(H)
    params, xs = setup(cell)
    d = gp.decompose(cell, params, xs, LOSS, max_hops=2)
    assert rel(d.total, grad(cell, params, xs)) <= 1e-12
    assert gp.check_cell(cell, I)["grad"] <= 1e-12


def test_max_distance_tail_collects_the_far_distances():
    cell = gp.stack([gp.lstm(H), readme_cell(H)])
    params, xs = setup(cell)
    full = gp.decompose(cell, params, xs, LOSS, max_hops=2, parts=("distance", "distance_hops"))
    head = lambda tree, D: jax.tree.map(lambda v: v[:D], tree)
    rest = lambda tree, D: jax.tree.map(lambda v: v[D:].sum(0), tree)
    at = lambda tree, D: jax.tree.map(lambda v: v[D], tree)
    for D in (1, 3, T - 2):
        cut = gp.decompose(cell, params, xs, LOSS, max_hops=2, parts=("distance", "distance_hops"), max_distance=D)
        assert rel(head(cut.by_distance, D), head(full.by_distance, D)) <= 1e-12
        assert rel(at(cut.by_distance, D), rest(full.by_distance, D)) <= 1e-12
        assert rel(at(cut.by_distance_hops, D), rest(full.by_distance_hops, D)) <= 1e-12
    big = gp.decompose(cell, params, xs, LOSS, parts=("distance",), max_distance=T + 5)
    assert jax.tree.leaves(big.by_distance)[0].shape[0] == T


def test_hop_edges_choose_what_counts():
    cell = gp.stack([gp.lstm(H), gp.gru(H)])
    params, xs = setup(cell)
    ref = grad(cell, params, xs)
    only_top = gp.decompose(cell, params, xs, LOSS, max_hops=T, parts=("hops",), hop_edges=("1.gates",))
    assert rel(jax.tree.map(lambda v: v.sum(0), only_top.by_hops), ref) <= 1e-12
    masked = gp.masked_grad(cell, params, xs, LOSS, {"1.gates": 0.0})
    assert rel(jax.tree.map(lambda v: v[0], only_top.by_hops), masked) <= 1e-12
    none = gp.decompose(cell, params, xs, LOSS, max_hops=1, parts=("hops",), hop_edges=())
    assert rel(jax.tree.map(lambda v: v[0], none.by_hops), ref) <= 1e-12
    with pytest.raises(ValueError, match="not edges"):
        gp.decompose(cell, params, xs, LOSS, hop_edges=("gates",))
    with pytest.raises(TypeError, match="hop_edges"):
        gp.decompose(cell, params, xs, LOSS, hop_edges="1.gates")


def test_readme_cell_runs_under_jit_and_vmap_with_a_batch():
    cell = readme_cell(H)
    xs = jax.random.normal(jax.random.key(3), (B, T, I), jnp.float32)

    def one(key):
        p = cell.init(key, I)
        return gp.decompose(cell, p, xs, LOSS, max_hops=2, parts=("hops", "step", "state"))

    keys = jax.random.split(jax.random.key(0), 3)
    d = jax.jit(jax.vmap(one))(keys)
    p1 = cell.init(keys[1], I)
    assert rel(jax.tree.map(lambda v: v[1], d.total), grad(cell, p1, xs)) <= 1e-5
    assert d.state_grads.c.shape == (3, T, 3, B, H)
    assert d.total["R"].dtype == jnp.float32


def test_stack_from_torch_is_the_whole_stack():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.LSTM(I, H, num_layers=3, batch_first=True).double()
    cell, params = gp.interop.from_torch(net)
    assert cell.edges == ("0.highway", "0.gates", "1.highway", "1.gates", "2.highway", "2.gates")
    xs = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    out, _ = net(xs)
    (out**3).sum().backward()
    x_j = jnp.asarray(xs.detach().numpy())
    hs = gp.unroll(cell, params, x_j)
    assert float(jnp.abs(hs - out.detach().numpy()).max()) <= 1e-13
    g = gp.decompose(cell, params, x_j, lambda hs: (hs**3).sum(), max_hops=2, parts=("hops",)).total
    for l in range(3):
        w_hh = getattr(net, f"weight_hh_l{l}").grad.numpy().T
        assert float(jnp.abs(g[l]["W_h"] - w_hh).max()) <= 1e-12 * max(1.0, float(jnp.abs(w_hh).max()))
    dx = jax.grad(lambda x: (gp.unroll(cell, params, x) ** 3).sum())(x_j)
    assert float(jnp.abs(dx - xs.grad.numpy()).max()) <= 1e-12


# ----------------------------------------------------------------------------- check_cell refuses lies


def _variant(**overrides):
    base = readme_namespace()["LeakyGated"]
    return dataclasses.make_dataclass("Variant", [], bases=(base,), namespace=overrides, frozen=True)(H)


BAD_CELLS = [
    (lambda: _variant(hop_edges=("gates",)), ValueError, "not edges"),
    (
        lambda: _variant(edges=("keep", "mix", "extra"), read=lambda self, s: {"keep": s.c, "mix": s.h, "extra": s.h}),
        ValueError,
        "never reach",
    ),
    (lambda: _variant(read=lambda self, s: {"keep": s.c**2, "mix": s.h}), ValueError, "not linear"),
    (lambda: _variant(read=lambda self, s: {"keep": s.c}), ValueError, "over edges"),
    (lambda: _variant(output=lambda self, s: s.h[None]), ValueError, "vector"),
    (lambda: _variant(edges=["keep", "mix"]), TypeError, "tuple of str"),
    (lambda: object(), TypeError, "cell needs"),
]


@pytest.mark.parametrize("make, exc, msg", BAD_CELLS)
def test_check_cell_refuses_a_cell_that_breaks_the_protocol(make, exc, msg):
    with pytest.raises(exc, match=msg):
        gp.check_cell(make(), I)


def test_engine_refuses_a_step_that_does_not_return_a_state():
    cell = _variant(step=lambda self, p, e, x: e["mix"])
    params, xs = setup(cell)
    with pytest.raises(ValueError, match="state like zero_state"):
        gp.decompose(cell, params, xs, LOSS)
    with pytest.raises(ValueError, match="step failed"):
        gp.unroll(readme_cell(H), params, jnp.ones((T, I + 1)))


def test_chunked_rematerialisation_gives_the_same_parts():
    cell = gp.stack([gp.lstm(H), readme_cell(H)])
    params, xs = setup(cell)
    parts = ("step", "distance", "hops", "state", "distance_hops", "step_hops")
    chunks = (1, 3, "sqrt", T)
    dec = lambda p, x, chunk: gp.decompose(cell, p, x, LOSS, max_hops=2, parts=parts, max_distance=3, chunk=chunk)
    ref, *got = jax.jit(lambda p, x: [dec(p, x, c) for c in (None, *chunks)])(params, xs)  # one compile
    for chunk, g in zip(chunks, got):
        for field in ("total", "by_step", "by_distance", "by_hops", "state_grads", "by_distance_hops", "by_step_hops"):
            assert rel(getattr(g, field), getattr(ref, field)) <= 1e-12, (chunk, field)
    with pytest.raises(ValueError, match="chunk"):
        gp.decompose(cell, params, xs, LOSS, chunk=0)


class WithAndWithoutJit(chex.TestCase):
    """The core exactness, once traced eagerly and once under jit (chex.variants)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_parts_sum_to_grad(self):
        for cell in (readme_cell(H), gp.stack([gp.gru(H), gp.mingru(H)])):  # the LSTM: test_core
            params, xs = setup(cell)
            dec = self.variant(lambda p, x, cell=cell: gp.decompose(cell, p, x, LOSS, max_hops=T))
            d = dec(params, xs)
            ref = grad(cell, params, xs)
            for part in (d.by_step, d.by_distance, d.by_hops):
                chex.assert_trees_all_close(jax.tree.map(lambda v: v.sum(0), part), ref, rtol=1e-12, atol=1e-14)
            chex.assert_trees_all_close(d.total, ref, rtol=1e-12, atol=1e-14)
            chex.assert_shape(jax.tree.leaves(d.by_hops), [(T + 1, *jnp.shape(p)) for p in jax.tree.leaves(params)])
