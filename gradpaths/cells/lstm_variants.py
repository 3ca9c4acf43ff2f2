"""LSTM variants: peephole connections (Gers, Schraudolph & Schmidhuber 2002) and layer
normalisation (Ba, Kiros & Hinton 2016). Both keep the LSTM's state ``LSTMState(h, c)``,
its gate order (i, f, g, o) and its ``highway`` edge c_{t-1} in f_t ⊙ c_{t-1}.

Parameters: W_x [I, 4H], W_h [H, 4H], b [4H] (the b_f block starts at ``forget_bias``),
plus the variant's own: peepholes w_ci, w_cf, w_co [H]; or the layer-norm gains and
biases g_x, β_x, g_h, β_h [4H] and g_c, β_c [H].
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from gradpaths._checks import check_int as _check_int
from gradpaths.cells.classic import LSTMState
from gradpaths.cells.registry import register

Params = dict[str, jax.Array]


def _lstm_weights(key: jax.Array, input_size: int, hidden: int, forget_bias: float, dtype) -> Params:
    """W_x ~ N(0, 1/I), W_h ~ N(0, 1/H), b = (0, forget_bias, 0, 0) by gate block."""
    _check_int("input_size", input_size, 1)
    kx, kh = jax.random.split(key)
    return {
        "W_x": jax.random.normal(kx, (input_size, 4 * hidden), dtype) / math.sqrt(input_size),
        "W_h": jax.random.normal(kh, (hidden, 4 * hidden), dtype) / math.sqrt(hidden),
        "b": jnp.zeros((4 * hidden,), dtype).at[hidden : 2 * hidden].set(forget_bias),
    }


def layer_norm(z: jax.Array, gain: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    """LN(z; g, β) = g ⊙ (z - mean z) / sqrt(var z + eps) + β over the last axis."""
    mu = jnp.mean(z, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(z - mu), axis=-1, keepdims=True)
    return gain * (z - mu) / jnp.sqrt(var + eps) + bias


@dataclasses.dataclass(frozen=True)
class _LSTMVariant:
    hidden_size: int
    forget_bias: float = 1.0

    def __post_init__(self):
        _check_int("hidden_size", self.hidden_size, 1)

    def zero_state(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> LSTMState:
        z = jnp.zeros((*batch_shape, self.hidden_size), dtype)
        return LSTMState(z, z)

    def output(self, state: LSTMState) -> jax.Array:
        return state.h


@dataclasses.dataclass(frozen=True)
class PeepholeLSTM(_LSTMVariant):
    """LSTM with peephole connections (Gers, Schraudolph & Schmidhuber 2002; Greff et al.'s vanilla LSTM).

    .. math::

        z = W_x^T x_t + W_h^T h_{t-1} + b
        i = σ(z_i + w_{ci} ⊙ c_{t-1}),\\quad f = σ(z_f + w_{cf} ⊙ c_{t-1}),\\quad g = \\tanh(z_g)
        c_t = f ⊙ c_{t-1} + i ⊙ g,\\quad o = σ(z_o + w_{co} ⊙ c_t),\\quad h_t = o ⊙ \\tanh(c_t)

    Edges (c_{t-1} is read in two places, so it travels on two edges):
      ``highway``: c_{t-1} in f ⊙ c_{t-1}, ∂c_t/∂c_{t-1} = diag(f_t) (the constant error carousel).
      ``peephole`` (a hop): c_{t-1} into the i and f gates,
      ∂c_t/∂c_{t-1} = diag(c_{t-1} σ'_f w_cf + g σ'_i w_ci).
      ``gates`` (a hop): h_{t-1} into z, as in the LSTM.
    The peephole is a hop because its gradient leaves the carousel through a gate's σ',
    exactly like the h_{t-1} → gates path; counting it with the highway would hide gated
    paths in the 0-hop class, and the split "carousel versus everything gated" is the one
    the classic argument makes. ``gp.decompose(..., hop_edges=("gates",))`` counts h-hops only.
    The o-peephole reads c_t of the same step, so it is no edge: its Jacobian is part of
    each edge's ∂h_t/∂c_t = diag(o ⊙ tanh'(c_t) + tanh(c_t) σ'_o w_co).
    Parameters: W_x, W_h, b as the LSTM's; w_ci, w_cf, w_co [H] ~ N(0, peephole_scale²).
    """

    peephole_scale: float = 0.1

    edges: ClassVar[tuple[str, ...]] = ("highway", "peephole", "gates")
    hop_edges: ClassVar[tuple[str, ...]] = ("peephole", "gates")

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        kw, kp = jax.random.split(key)
        params = _lstm_weights(kw, input_size, self.hidden_size, self.forget_bias, dtype)
        w = self.peephole_scale * jax.random.normal(kp, (3, self.hidden_size), dtype)
        return params | {"w_ci": w[0], "w_cf": w[1], "w_co": w[2]}

    def read(self, state: LSTMState) -> dict[str, jax.Array]:
        return {"highway": state.c, "peephole": state.c, "gates": state.h}

    def step(self, params: Params, edges: dict[str, jax.Array], x: jax.Array) -> LSTMState:
        z = x @ params["W_x"] + edges["gates"] @ params["W_h"] + params["b"]
        zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
        peep = edges["peephole"]
        i, f = jax.nn.sigmoid(zi + params["w_ci"] * peep), jax.nn.sigmoid(zf + params["w_cf"] * peep)
        c = f * edges["highway"] + i * jnp.tanh(zg)
        o = jax.nn.sigmoid(zo + params["w_co"] * c)
        return LSTMState(o * jnp.tanh(c), c)


@dataclasses.dataclass(frozen=True)
class LayerNormLSTM(_LSTMVariant):
    """Layer-normalised LSTM (Ba, Kiros & Hinton 2016, eqs. 20-22).

    .. math::

        (z_i, z_f, z_g, z_o) = \\mathrm{LN}(W_h^T h_{t-1}; g_h, β_h) + \\mathrm{LN}(W_x^T x_t; g_x, β_x) + b
        c_t = σ(z_f) ⊙ c_{t-1} + σ(z_i) ⊙ \\tanh(z_g),\\quad h_t = σ(z_o) ⊙ \\tanh(\\mathrm{LN}(c_t; g_c, β_c))

    Each LN normalises its whole 4H (or H) vector, as in the paper (not gate by gate).
    Edges: ``highway`` is c_{t-1} in f ⊙ c_{t-1}, ∂c_t/∂c_{t-1} = diag(f_t) still (LN acts on
    c_t only on its way to h_t: ∂h_t/∂c_t = diag(o tanh') J_LN(c_t), a dense H×H map);
    ``gates`` (a hop) is h_{t-1} into LN(W_h^T h_{t-1}), ∂z/∂h_{t-1} = J_LN W_hᵀ.
    Parameters: W_x, W_h, b as the LSTM's; g_x, β_x, g_h, β_h [4H] and g_c, β_c [H]
    (gains 1, biases 0).
    """

    eps: float = 1e-5

    edges: ClassVar[tuple[str, ...]] = ("highway", "gates")
    hop_edges: ClassVar[tuple[str, ...]] = ("gates",)

    def __post_init__(self):
        super().__post_init__()
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps!r}")

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        params = _lstm_weights(key, input_size, self.hidden_size, self.forget_bias, dtype)
        wide, narrow = 4 * self.hidden_size, self.hidden_size
        ones, zeros = jnp.ones, jnp.zeros
        return params | {
            "g_x": ones((wide,), dtype),
            "beta_x": zeros((wide,), dtype),
            "g_h": ones((wide,), dtype),
            "beta_h": zeros((wide,), dtype),
            "g_c": ones((narrow,), dtype),
            "beta_c": zeros((narrow,), dtype),
        }

    def read(self, state: LSTMState) -> dict[str, jax.Array]:
        return {"highway": state.c, "gates": state.h}

    def step(self, params: Params, edges: dict[str, jax.Array], x: jax.Array) -> LSTMState:
        p, eps = params, self.eps
        z = (
            layer_norm(edges["gates"] @ p["W_h"], p["g_h"], p["beta_h"], eps)
            + layer_norm(x @ p["W_x"], p["g_x"], p["beta_x"], eps)
            + p["b"]
        )
        zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(zf) * edges["highway"] + jax.nn.sigmoid(zi) * jnp.tanh(zg)
        h = jax.nn.sigmoid(zo) * jnp.tanh(layer_norm(c, p["g_c"], p["beta_c"], eps))
        return LSTMState(h, c)


@register("lstm_peephole")
def peephole_lstm(hidden_size: int, *, forget_bias: float = 1.0, peephole_scale: float = 0.1) -> PeepholeLSTM:
    """An LSTM with peepholes; edges ("highway", "peephole", "gates"), hops ("peephole", "gates")."""
    return PeepholeLSTM(hidden_size, forget_bias, peephole_scale)


@register("lstm_layernorm")
def layer_norm_lstm(hidden_size: int, *, forget_bias: float = 1.0, eps: float = 1e-5) -> LayerNormLSTM:
    """A layer-normalised LSTM (Ba, Kiros & Hinton 2016); edges as the LSTM's."""
    return LayerNormLSTM(hidden_size, forget_bias, eps)
