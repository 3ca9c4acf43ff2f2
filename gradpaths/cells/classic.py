"""Recurrent cells as pure functions, with the previous state routed through named edges.

Every cell here has the same three-stage form, written for **one example** (the
stage functions are rank-polymorphic, so a leading batch axis passes through):

.. math::

    u_t = x_t W_x + b                       \\quad\\text{(input projection, all } t \\text{ at once)}
    a_t = e^{\\text{mm}}_t W_h + b_h        \\quad\\text{(the one recurrent matmul)}
    s_t = \\mathrm{core}(u_t, a_t, e_t)      \\quad\\text{(elementwise, parameter-free)}

where ``e_t = read(s_{t-1})`` holds one copy of the previous state for each named
edge, and ``e^mm`` is the edge that feeds the recurrent matmul. All parameters sit
in the two linear maps, so every parameter gradient is an outer product of stored
inputs with the cotangents of ``u_t`` and ``a_t`` (see ``decompose.py``).

Parameters are a dict ``{"W_x": [I, G·H], "W_h": [H, G·H], "b": [G·H]}`` (GRU and
MGU add ``"b_h": [G·H]``), with the G gate blocks side by side in the order each
cell's docstring gives (PyTorch's order where PyTorch has the cell).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from gradpaths._checks import check_int as _check_int
from gradpaths._linalg import orthogonal
from gradpaths.cells.registry import register

Params = dict[str, jax.Array]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "linear": lambda z: z,
}
RECURRENT_INITS = ("gaussian", "orthogonal", "identity")


class LSTMState(NamedTuple):
    """LSTM state: hidden output ``h`` [..., H] and cell state ``c`` [..., H]."""

    h: jax.Array
    c: jax.Array


class HState(NamedTuple):
    """State of the single-vector cells (RNN, GRU, MGU): ``h`` [..., H]."""

    h: jax.Array


def _recurrent_matrix(key: jax.Array, hidden: int, gates: int, init: str, scale: float, dtype) -> jax.Array:
    """W_h [H, G·H]: G blocks of ``scale`` × (N(0, 1/H) | orthogonal | identity)."""
    keys = jax.random.split(key, gates)
    if init == "gaussian":
        blocks = [jax.random.normal(k, (hidden, hidden), dtype) / math.sqrt(hidden) for k in keys]
    elif init == "orthogonal":
        blocks = [orthogonal(k, (hidden, hidden), dtype) for k in keys]  # no LAPACK: docs/hang.md
    else:
        blocks = [jnp.eye(hidden, dtype=dtype) for _ in keys]
    return scale * jnp.concatenate(blocks, axis=1)


@dataclasses.dataclass(frozen=True)
class Cell:
    """A recurrent cell: static configuration plus pure ``init`` / ``read`` / ``core``.

    Attributes:
      hidden_size: H.
      recurrent_init: "gaussian" (W_h ~ N(0, g²/H)), "orthogonal" or "identity".
      recurrent_scale: g, the factor on every recurrent block.
      input_scale: std of W_x is input_scale / sqrt(I).
    """

    hidden_size: int
    recurrent_init: str = "orthogonal"
    recurrent_scale: float = 1.0
    input_scale: float = 1.0

    edges: ClassVar[tuple[str, ...]]
    hop_edges: ClassVar[tuple[str, ...]]
    matmul_edge: ClassVar[str]
    gates: ClassVar[int]
    has_b_h: ClassVar[bool] = False
    additive: ClassVar[bool] = False  # core reads u + a only, so ∂/∂u = ∂/∂a

    def __post_init__(self):
        _check_int("hidden_size", self.hidden_size, 1)
        if self.recurrent_init not in RECURRENT_INITS:
            raise ValueError(f"recurrent_init must be one of {RECURRENT_INITS}, got {self.recurrent_init!r}")

    @property
    def highway_edges(self) -> tuple[str, ...]:
        return tuple(e for e in self.edges if e not in self.hop_edges)

    @property
    def width(self) -> int:
        """G·H, the width of u_t and a_t."""
        return self.gates * self.hidden_size

    def param_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        h, n = self.hidden_size, self.width
        shapes = {"W_x": (input_size, n), "W_h": (h, n), "b": (n,)}
        if self.has_b_h:
            shapes["b_h"] = (n,)
        return shapes

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        """Samples parameters. W_x ~ N(0, input_scale²/I); W_h per ``recurrent_init``."""
        _check_int("input_size", input_size, 1)
        kx, kh, kb = jax.random.split(key, 3)
        w_x = self.input_scale * jax.random.normal(kx, (input_size, self.width), dtype) / math.sqrt(input_size)
        w_h = _recurrent_matrix(kh, self.hidden_size, self.gates, self.recurrent_init, self.recurrent_scale, dtype)
        params = {"W_x": w_x, "W_h": w_h, "b": self.init_bias(kb, dtype)}
        if self.has_b_h:
            params["b_h"] = jnp.zeros((self.width,), dtype)
        return params

    def init_bias(self, key: jax.Array, dtype) -> jax.Array:
        del key
        return jnp.zeros((self.width,), dtype)

    def zero_state(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32):
        raise NotImplementedError

    def read(self, state) -> dict[str, jax.Array]:
        """e_t = read(s_{t-1}): one copy of the previous state per edge (linear)."""
        raise NotImplementedError

    def core(self, u: jax.Array, a: jax.Array, e: Mapping[str, jax.Array]):
        """s_t from u_t [G·H], a_t [G·H] and the edges other than the matmul edge."""
        raise NotImplementedError

    def output(self, state) -> jax.Array:
        """h_t, the output the loss sees."""
        return state.h

    def step(self, params: Params, edges: Mapping[str, jax.Array], x: jax.Array):
        """s_t = F_θ(e_t, x_t) = core(x W_x + b, e_matmul W_h (+ b_h), e): the protocol's step."""
        u = x @ params["W_x"] + params["b"]
        return self.core(u, self.recurrent(params, edges[self.matmul_edge]), edges)

    def recurrent(self, params: Params, m: jax.Array) -> jax.Array:
        """a_t = m W_h (+ b_h)."""
        a = m @ params["W_h"]
        return a + params["b_h"] if self.has_b_h else a


@dataclasses.dataclass(frozen=True)
class _HCell(Cell):
    """A cell whose state is h alone (HState)."""

    def zero_state(self, batch_shape=(), dtype=jnp.float32):
        return HState(jnp.zeros((*batch_shape, self.hidden_size), dtype))


@dataclasses.dataclass(frozen=True)
class _Interpolating(_HCell):
    """h_t = (1 - z) ⊙ n + z ⊙ h_{t-1} cells (GRU, MGU): ``highway`` is h_{t-1} in z ⊙ h_{t-1}
    (Jacobian diag(z_t)); ``gates`` (a hop) is h_{t-1} inside a = h_{t-1} W_h + b_h."""

    edges: ClassVar = ("highway", "gates")
    hop_edges: ClassVar = ("gates",)
    matmul_edge: ClassVar = "gates"
    has_b_h: ClassVar = True

    def read(self, state):
        return {"highway": state.h, "gates": state.h}


@dataclasses.dataclass(frozen=True)
class RNN(_HCell):
    """Elman RNN.

    .. math::

        h_t = φ(W_x^T x_t + W_h^T h_{t-1} + b)

    Edge ``recurrent`` (a hop): ∂h_t/∂h_{t-1} = diag(φ'(z_t)) W_hᵀ.
    Parameters: W_x [I, H], W_h [H, H], b [H].
    """

    activation: str = "tanh"
    recurrent_init: str = "gaussian"

    edges: ClassVar = ("recurrent",)
    hop_edges: ClassVar = ("recurrent",)
    matmul_edge: ClassVar = "recurrent"
    gates: ClassVar = 1
    additive: ClassVar = True

    def __post_init__(self):
        super().__post_init__()
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {self.activation!r}")

    def read(self, state):
        return {"recurrent": state.h}

    def core(self, u, a, e):
        return HState(ACTIVATIONS[self.activation](u + a))


@dataclasses.dataclass(frozen=True)
class LSTM(Cell):
    """LSTM, gate blocks in PyTorch's order (i, f, g, o); no f block without a forget gate.

    .. math::

        i, f, g, o = σ(z_i), σ(z_f), \\tanh(z_g), σ(z_o),\\quad z = W_x^T x_t + W_h^T h_{t-1} + b
        c_t = f ⊙ c_{t-1} + i ⊙ g,\\qquad h_t = o ⊙ \\tanh(c_t)

    With ``forget_gate=False``, f ≡ 1 (the 1997 LSTM).

    Edges: ``highway`` is c_{t-1} in f ⊙ c_{t-1}, with ∂c_t/∂c_{t-1} = diag(f_t) and
    ∂h_t/∂c_{t-1} = diag(o_t ⊙ tanh'(c_t) ⊙ f_t). ``gates`` (a hop) is h_{t-1} in z:
    ∂c_t/∂h_{t-1} = (diag(g_t σ'_i) W_{h,i}ᵀ + diag(c_{t-1} σ'_f) W_{h,f}ᵀ + diag(i_t tanh'_g) W_{h,g}ᵀ).
    Parameters: W_x [I, 4H], W_h [H, 4H], b [4H] (3H without a forget gate).
    ``chrono=T_max`` draws b_f ~ log U[1, T_max - 1] and sets b_i = -b_f (Tallec & Ollivier 2018).
    """

    forget_bias: float = 1.0
    forget_gate: bool = True
    chrono: int | None = None

    edges: ClassVar = ("highway", "gates")
    hop_edges: ClassVar = ("gates",)
    matmul_edge: ClassVar = "gates"
    additive: ClassVar = True

    def __post_init__(self):
        super().__post_init__()
        if self.chrono is not None:
            _check_int("chrono", self.chrono, 3)
            if not self.forget_gate:
                raise ValueError("chrono initialisation needs forget_gate=True")

    @property
    def gates(self) -> int:  # type: ignore[override]
        return 4 if self.forget_gate else 3

    def init_bias(self, key, dtype):
        hid = self.hidden_size
        b = jnp.zeros((self.width,), dtype)
        if not self.forget_gate:
            return b
        if self.chrono is None:
            return b.at[hid : 2 * hid].set(self.forget_bias)
        b_f = jnp.log(jax.random.uniform(key, (hid,), dtype, 1.0, self.chrono - 1.0))
        return b.at[:hid].set(-b_f).at[hid : 2 * hid].set(b_f)

    def zero_state(self, batch_shape=(), dtype=jnp.float32):
        z = jnp.zeros((*batch_shape, self.hidden_size), dtype)
        return LSTMState(z, z)

    def read(self, state):
        return {"highway": state.c, "gates": state.h}

    def gate_values(self, u, a):
        """(i, f, g, o) after their nonlinearities; f is None without a forget gate."""
        z = u + a
        if self.forget_gate:
            zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
            f = jax.nn.sigmoid(zf)
        else:
            zi, zg, zo = jnp.split(z, 3, axis=-1)
            f = None
        return jax.nn.sigmoid(zi), f, jnp.tanh(zg), jax.nn.sigmoid(zo)

    def core(self, u, a, e):
        i, f, g, o = self.gate_values(u, a)
        kept = e["highway"] if f is None else f * e["highway"]
        c = kept + i * g
        return LSTMState(o * jnp.tanh(c), c)


@dataclasses.dataclass(frozen=True)
class GRU(_Interpolating):
    """GRU in the Flax / PyTorch form, gate blocks (r, z, n).

    .. math::

        r = σ(u_r + a_r),\\ z = σ(u_z + a_z),\\ n = \\tanh(u_n + r ⊙ a_n),\\quad a = W_h^T h_{t-1} + b_h
        h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

    Edges: ``highway`` is h_{t-1} in z ⊙ h_{t-1}, with Jacobian diag(z_t). ``gates``
    (a hop) is h_{t-1} inside a, reaching h_t through r, z and n.
    Parameters: W_x [I, 3H], W_h [H, 3H], b [3H], b_h [3H] (b_h's n block sits inside r ⊙ (…)).
    """

    gates: ClassVar = 3

    def core(self, u, a, e):
        ur, uz, un = jnp.split(u, 3, axis=-1)
        ar, az, an = jnp.split(a, 3, axis=-1)
        r, z = jax.nn.sigmoid(ur + ar), jax.nn.sigmoid(uz + az)
        n = jnp.tanh(un + r * an)
        return HState((1 - z) * n + z * e["highway"])


@dataclasses.dataclass(frozen=True)
class MGU(_Interpolating):
    """Minimal gated unit (Flax's MGUCell with reset_gate=True), gate blocks (f, n).

    .. math::

        f = σ(u_f + a_f),\\ n = \\tanh(u_n + f ⊙ a_n),\\quad h_t = (1 - f) ⊙ n + f ⊙ h_{t-1}

    Edges as for the GRU: ``highway`` (Jacobian diag(f_t)) and ``gates`` (a hop).
    Parameters: W_x [I, 2H], W_h [H, 2H], b [2H], b_h [2H].
    """

    gates: ClassVar = 2

    def core(self, u, a, e):
        uf, un = jnp.split(u, 2, axis=-1)
        af, an = jnp.split(a, 2, axis=-1)
        f = jax.nn.sigmoid(uf + af)
        n = jnp.tanh(un + f * an)
        return HState((1 - f) * n + f * e["highway"])


@register("rnn")
def rnn(
    hidden_size: int,
    *,
    activation: str = "tanh",
    recurrent_init: str = "gaussian",
    recurrent_scale: float = 1.0,
    input_scale: float = 1.0,
) -> RNN:
    """An Elman RNN. ``recurrent_init="identity"`` with ``activation="relu"`` is the IRNN."""
    return RNN(hidden_size, recurrent_init, recurrent_scale, input_scale, activation=activation)


@register("irnn")
def irnn(hidden_size: int, *, recurrent_scale: float = 1.0, input_scale: float = 1.0) -> RNN:
    """The identity-initialised ReLU RNN of Le, Jaitly and Hinton (2015)."""
    return rnn(
        hidden_size,
        activation="relu",
        recurrent_init="identity",
        recurrent_scale=recurrent_scale,
        input_scale=input_scale,
    )


@register("lstm")
def lstm(
    hidden_size: int,
    *,
    forget_bias: float = 1.0,
    forget_gate: bool = True,
    chrono: int | None = None,
    recurrent_init: str = "orthogonal",
    recurrent_scale: float = 1.0,
    input_scale: float = 1.0,
    peephole: bool = False,
    layer_norm: bool = False,
):
    """An LSTM with forget-gate bias ``forget_bias`` (or chrono init up to lag ``chrono``).

    ``peephole=True`` gives the peephole LSTM (Gers et al. 2002) and ``layer_norm=True`` the
    layer-normalised LSTM (Ba et al. 2016), from ``lstm_variants``; they take forget_bias only.
    """
    if peephole or layer_norm:
        from gradpaths.cells import lstm_variants as v  # imports this module: import on use

        if peephole and layer_norm:
            raise ValueError("choose one of peephole=True and layer_norm=True, not both")
        others = {
            "forget_gate": (forget_gate, True),
            "chrono": (chrono, None),
            "recurrent_init": (recurrent_init, "orthogonal"),
            "recurrent_scale": (recurrent_scale, 1.0),
            "input_scale": (input_scale, 1.0),
        }
        given = sorted(k for k, (val, default) in others.items() if val != default)
        if given:
            raise ValueError(f"the {'peephole' if peephole else 'layer-norm'} LSTM takes forget_bias only, got {given}")
        make = v.peephole_lstm if peephole else v.layer_norm_lstm
        return make(hidden_size, forget_bias=forget_bias)
    return LSTM(
        hidden_size,
        recurrent_init,
        recurrent_scale,
        input_scale,
        forget_bias=forget_bias,
        forget_gate=forget_gate,
        chrono=chrono,
    )


@register("gru")
def gru(
    hidden_size: int, *, recurrent_init: str = "orthogonal", recurrent_scale: float = 1.0, input_scale: float = 1.0
) -> GRU:
    """A GRU in the Flax / PyTorch form."""
    return GRU(hidden_size, recurrent_init, recurrent_scale, input_scale)


@register("mgu")
def mgu(
    hidden_size: int, *, recurrent_init: str = "orthogonal", recurrent_scale: float = 1.0, input_scale: float = 1.0
) -> MGU:
    """A minimal gated unit (Flax's MGUCell)."""
    return MGU(hidden_size, recurrent_init, recurrent_scale, input_scale)


def check_params(cell: Cell, params: Any) -> int:
    """Validates ``params`` against ``cell`` and returns the input size I."""
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be a gradpaths Cell (gp.rnn, gp.lstm, ...), got {type(cell).__name__}")
    if not isinstance(params, Mapping) or "W_x" not in params:
        raise TypeError(f"params must be the dict from cell.init, with keys W_x, W_h, b; got {type(params).__name__}")
    input_size = params["W_x"].shape[0] if getattr(params["W_x"], "ndim", 0) == 2 else -1
    want = cell.param_shapes(max(input_size, 1))
    got = {k: tuple(getattr(v, "shape", ())) for k, v in params.items()}
    if input_size < 1 or got != want:
        raise ValueError(
            f"params do not belong to {type(cell).__name__}(hidden_size={cell.hidden_size}): "
            f"expected shapes {want}, got {got}"
        )
    dtypes = {jnp.result_type(v) for v in params.values()}
    if len(dtypes) != 1 or not jnp.issubdtype(dtypes.pop(), jnp.floating):
        raise TypeError(
            f"params must share one floating dtype, got {sorted(str(d) for d in map(jnp.result_type, params.values()))}"
        )
    return input_size
