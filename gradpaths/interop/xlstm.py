"""xlstm's sLSTM and mLSTM layers (PyTorch, package ``xlstm``) -> gradpaths ``(cell, params)``.

The imported cell is the whole layer, not only its recurrence: the causal depthwise
conv, the head-wise projections, the group norms, the skip and the output gate are
computed inside ``step``, so ``unroll`` returns the layer's output. A width-K causal conv
is state holding the conv's last K−1 inputs (``window`` [K−1, D]); it is read through two
edges:

- ``conv`` (a hop): window_{t-1} read by the conv output at t, ∂x^conv_t/∂window_{t-1}[j] = diag(w_j);
- ``conv_shift`` (a highway): window_{t-1}[1:] copied into window_t[:-1] (Jacobian: a shift),

so an input that reaches the recurrence through the conv crosses exactly one ``conv`` hop,
whatever its delay. (With K ≤ 2 there is no shift edge; with K ≤ 1 no conv edge.)

Where the package's computation differs from the plain equations:

- sLSTM: the weight named ``fgate`` projects the **input**-gate pre-activation and
  ``igate`` the forget gate (``i, f, z, o = fgate(x), igate(x), zgate(x), ogate(x)``);
  we name them by the gate they feed (W_i = fgate, W_f = igate).
- sLSTM vanilla kernel: i, f = min(exp(·), 1), and the stabiliser restarts (m = log ĩ)
  when the **whole batch's** n is zero. The clamps never bind except on the first step,
  where f multiplies a zero memory, and torch's half-gradient at the tie min(1, 1) cancels
  (the argument's tangent is zero there): the package's gradient is the clean one. We
  restart the stabiliser per example, which agrees whenever the batch starts at zeros.
- mLSTM: the layer runs the parallel form with a causal mask of ``context_length``
  (sequences longer than it fail in the package), and adds ε = 1e-6 to the normaliser
  max(|nᵀq|, e^{-m}) + ε. With ε > 0, h depends (by O(ε)) on the stabiliser m, so the
  imported cell keeps ε and reproduces the package's m exactly (m_0 = −∞, i.e. the
  restart from the empty memory); its gradient then matches to rounding. Setting
  ``eps=0`` gives the stabiliser-invariant mathematics; the difference is O(ε) and is tested.

Dropout is the identity (evaluation mode). Parameters keep the package's dtype.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradpaths.cells.xlstm import MLSTMMemory, SLSTMMemory, mlstm_memory_step, slstm_pointwise, slstm_recurrent

Params = dict[str, jax.Array]


class XSLSTMState(NamedTuple):
    """Imported sLSTM layer state: conv ``window`` [K−1, E], (c, n, m, h) [H], layer output ``y`` [E]."""

    window: jax.Array
    c: jax.Array
    n: jax.Array
    m: jax.Array
    h: jax.Array
    y: jax.Array


class XMLSTMState(NamedTuple):
    """Imported mLSTM layer state: conv ``window`` [K−1, D], memory (C, n, m) per head, output ``y`` [E]."""

    window: jax.Array
    C: jax.Array
    n: jax.Array
    m: jax.Array
    y: jax.Array


def _conv_edges(kernel_size: int) -> tuple[str, ...]:
    return ("conv",) * (kernel_size >= 2) + ("conv_shift",) * (kernel_size >= 3)


def _conv_read(window: jax.Array, kernel_size: int) -> dict[str, jax.Array]:
    e = {"conv": window} if kernel_size >= 2 else {}
    return e | ({"conv_shift": window[1:]} if kernel_size >= 3 else {})


def _conv_step(params: Params, edges: dict[str, jax.Array], x: jax.Array, kernel_size: int, width: int):
    """(x^conv_t, window_t): x^conv_t = Σ_j w_j ⊙ [window_{t-1}; x_t]_j + b, window_t = last K−1 inputs."""
    if kernel_size == 0:
        return x, jnp.zeros((0, width), x.dtype)
    w = params["conv_w"]
    y = w[-1] * x + params["conv_b"]
    if kernel_size >= 2:
        y = y + jnp.sum(w[:-1] * edges["conv"], axis=0)
    if kernel_size == 1:
        return y, jnp.zeros((0, width), x.dtype)
    kept = [edges["conv_shift"]] if kernel_size >= 3 else []
    return y, jnp.concatenate([*kept, x[None]], axis=0)


def _headwise(w_PxIxO: jax.Array, x: jax.Array) -> jax.Array:
    """xlstm's LinearHeadwiseExpand without bias: block-diagonal, y_{p,o} = Σ_i x_{p,i} W_{p,i,o}."""
    p, i, _ = w_PxIxO.shape
    return jnp.einsum("pi,pio->po", x.reshape(p, i), w_PxIxO).reshape(-1)


def _head_norm(h: jax.Array, heads: int, w: jax.Array | None, eps: float) -> jax.Array:
    """xlstm's MultiHeadLayerNorm (a group norm, one group per head), gain 1 + w, no bias."""
    g = h.reshape(heads, -1)
    mu = jnp.mean(g, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(g - mu), axis=-1, keepdims=True)
    y = ((g - mu) / jnp.sqrt(var + eps)).reshape(-1)
    return y if w is None else y * (1 + w)


@dataclasses.dataclass(frozen=True)
class XLSTMsLSTMLayer:
    """xlstm's ``sLSTMLayer`` as one cell, x [E] -> y [E].

    .. math::

        x^c_t = \\mathrm{SiLU}(\\mathrm{conv}(x)_t),\\quad
        \\mathrm{pre}_t = (W_i x^c_t, W_f x^c_t, W_z x_t, W_o x_t) + R\\,h_{t-1} + b
        (c, n, m, h)_t = \\text{sLSTM pointwise (see gradpaths.cells.xlstm.SLSTM)},\\quad
        y_t = \\mathrm{GroupNorm}_{\\rm heads}(h_t) ⊙ (1 + w_{\\rm gn})

    W_* are head-wise block-diagonal [NH, Dh, Dh]. Edges: ``highway`` (c, n, m),
    ``gates`` (a hop: h_{t-1} -> R h_{t-1}), and the conv edges of the module docstring.
    """

    hidden_size: int
    num_heads: int = 4
    conv_kernel_size: int = 4
    group_norm_weight: bool = True
    norm_eps: float = 1e-5

    @property
    def edges(self) -> tuple[str, ...]:
        return ("highway", "gates", *_conv_edges(self.conv_kernel_size))

    @property
    def hop_edges(self) -> tuple[str, ...]:
        return ("gates", *_conv_edges(self.conv_kernel_size)[:1])

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        """Random parameters in the imported layout (the package's init is not reproduced)."""
        if input_size != self.hidden_size:
            raise ValueError(f"an xlstm sLSTM layer maps E -> E: input_size must be {self.hidden_size}")
        heads, dh, k = self.num_heads, self.hidden_size // self.num_heads, self.conv_kernel_size
        keys = jax.random.split(key, 7)
        p = {g: jax.random.normal(kk, (heads, dh, dh), dtype) / math.sqrt(dh) for g, kk in zip("ifzo", keys)}
        p = {f"W_{g}": v for g, v in p.items()}
        p["R"] = jax.random.normal(keys[4], (4, heads, dh, dh), dtype) / math.sqrt(dh)
        p["b"] = jnp.zeros((4, self.hidden_size), dtype).at[1].set(1.0)
        if k:
            p["conv_w"] = jax.random.normal(keys[5], (k, self.hidden_size), dtype) / math.sqrt(k)
            p["conv_b"] = jnp.zeros((self.hidden_size,), dtype)
        if self.group_norm_weight:
            p["gn_w"] = jnp.zeros((self.hidden_size,), dtype)
        return p

    def zero_state(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> XSLSTMState:
        z = jnp.zeros((*batch_shape, self.hidden_size), dtype)
        window = jnp.zeros((*batch_shape, max(self.conv_kernel_size - 1, 0), self.hidden_size), dtype)
        return XSLSTMState(window, z, z, z, z, z)

    def read(self, state: XSLSTMState) -> dict[str, Any]:
        e = {"highway": SLSTMMemory(state.c, state.n, state.m), "gates": state.h}
        return e | _conv_read(state.window, self.conv_kernel_size)

    def step(self, params: Params, edges: dict[str, Any], x: jax.Array) -> XSLSTMState:
        x_conv, window = _conv_step(params, edges, x, self.conv_kernel_size, self.hidden_size)
        xc = jax.nn.silu(x_conv) if self.conv_kernel_size else x
        pre = jnp.stack([_headwise(params[f"W_{g}"], v) for g, v in zip("ifzo", (xc, xc, x, x))])
        s = slstm_pointwise(pre + params["b"] + slstm_recurrent(params["R"], edges["gates"]), edges["highway"])
        y = _head_norm(s.h, self.num_heads, params.get("gn_w"), self.norm_eps)
        return XSLSTMState(window, *s, y)

    def output(self, state: XSLSTMState) -> jax.Array:
        return state.y


@dataclasses.dataclass(frozen=True)
class XLSTMmLSTMLayer:
    """xlstm's ``mLSTMLayer`` as one cell, x [E] -> y [E], in its recurrent form.

    .. math::

        (x^m, z) = W_{\\rm up}^T x_t,\\quad x^c = \\mathrm{SiLU}(\\mathrm{conv}(x^m)_t),\\quad
        q, k, v = W_q x^c, W_k x^c, W_v x^m\\ \\text{(block-diagonal)}
        \\log\\tilde\\imath = W_{ig}^T[q; k; v] + b_{ig},\\quad f^{\\rm pre} = W_{fg}^T[q; k; v] + b_{fg}
        \\tilde h_t = C_t q / (\\max(|n_t^T q|, e^{-m_t}) + ε)\\quad (k ← k/\\sqrt{D_h})
        y_t = W_{\\rm down}^T\\big[(\\mathrm{GN}(\\tilde h_t)(1 + w_{\\rm on}) + s ⊙ x^c) ⊙ \\mathrm{SiLU}(z)\\big]

    One ĩ and one f per head; the memory step is gradpaths.cells.xlstm.MLSTM's. Edges:
    ``highway`` (C, n, m) and the conv edges (``conv`` is the only hop: every gate comes
    from x_t and the conv window).
    """

    embedding_dim: int
    inner_dim: int
    num_heads: int = 4
    qkv_blocksize: int = 4
    conv_kernel_size: int = 4
    bias: bool = False
    eps: float = 1e-6
    norm_eps: float = 1e-5

    @property
    def edges(self) -> tuple[str, ...]:
        return ("highway", *_conv_edges(self.conv_kernel_size))

    @property
    def hop_edges(self) -> tuple[str, ...]:
        return _conv_edges(self.conv_kernel_size)[:1]

    @property
    def head_dim(self) -> int:
        return self.inner_dim // self.num_heads

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        """Random parameters in the imported layout (the package's init is not reproduced)."""
        if input_size != self.embedding_dim:
            raise ValueError(f"an xlstm mLSTM layer maps E -> E: input_size must be {self.embedding_dim}")
        e, d, heads, k = self.embedding_dim, self.inner_dim, self.num_heads, self.conv_kernel_size
        bs = self.qkv_blocksize
        keys = iter(jax.random.split(key, 8))

        def normal(shape, fan_in):
            return jax.random.normal(next(keys), shape, dtype) / math.sqrt(fan_in)

        p = {"W_up": normal((e, 2 * d), e), "W_down": normal((d, e), d)}
        p |= {f"W_{g}": normal((d // bs, bs, bs), bs) for g in "qkv"}
        p |= {"W_ig": normal((3 * d, heads), 3 * d), "b_ig": jnp.zeros((heads,), dtype)}
        p |= {"W_fg": normal((3 * d, heads), 3 * d), "b_fg": jnp.full((heads,), 3.0, dtype)}
        p |= {"outnorm_w": jnp.zeros((d,), dtype), "skip": jnp.ones((d,), dtype)}
        if k:
            p |= {"conv_w": normal((k, d), k), "conv_b": jnp.zeros((d,), dtype)}
        if self.bias:
            p |= {"b_up": jnp.zeros((2 * d,), dtype), "b_down": jnp.zeros((e,), dtype)}
            p |= {f"b_{g}": jnp.zeros((d,), dtype) for g in "qkv"}
        return p

    def zero_state(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> XMLSTMState:
        heads, dh, d = self.num_heads, self.head_dim, self.inner_dim
        return XMLSTMState(
            jnp.zeros((*batch_shape, max(self.conv_kernel_size - 1, 0), d), dtype),
            jnp.zeros((*batch_shape, heads, dh, dh), dtype),
            jnp.zeros((*batch_shape, heads, dh), dtype),
            jnp.zeros((*batch_shape, heads), dtype),
            jnp.zeros((*batch_shape, self.embedding_dim), dtype),
        )

    def read(self, state: XMLSTMState) -> dict[str, Any]:
        return {"highway": MLSTMMemory(state.C, state.n, state.m)} | _conv_read(state.window, self.conv_kernel_size)

    def step(self, params: Params, edges: dict[str, Any], x: jax.Array) -> XMLSTMState:
        d, heads, dh = self.inner_dim, self.num_heads, self.head_dim

        def lin(name, v):
            out = _headwise(params[f"W_{name}"], v) if name in "qkv" else v @ params[f"W_{name}"]
            return out + params[f"b_{name}"] if self.bias else out

        x_m, z = jnp.split(lin("up", x), 2)
        x_conv, window = _conv_step(params, edges, x_m, self.conv_kernel_size, d)
        xc = jax.nn.silu(x_conv)
        q, k, v = lin("q", xc), lin("k", xc), lin("v", x_m)
        qkv = jnp.concatenate([q, k, v])
        log_i, pre_f = qkv @ params["W_ig"] + params["b_ig"], qkv @ params["W_fg"] + params["b_fg"]
        h_tilde, mem = mlstm_memory_step(
            q.reshape(heads, dh),
            k.reshape(heads, dh) / math.sqrt(dh),
            v.reshape(heads, dh),
            log_i,
            pre_f,
            edges["highway"],
            self.eps,
        )
        h = _head_norm(h_tilde.reshape(d), heads, params["outnorm_w"], self.norm_eps) + params["skip"] * xc
        y = lin("down", h * jax.nn.silu(z))
        return XMLSTMState(window, *mem, y)

    def output(self, state: XMLSTMState) -> jax.Array:
        return state.y


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy()


def _conv_params(tensors: dict[str, Any], prefix: str) -> Params:
    """torch Conv1d weight [D, 1, K] -> conv_w [K, D]; bias [D]."""
    out = {}
    if f"{prefix}conv1d.conv.weight" in tensors:
        out["conv_w"] = jnp.asarray(_np(tensors[f"{prefix}conv1d.conv.weight"])[:, 0, :].T)
    if f"{prefix}conv1d.conv.bias" in tensors:
        out["conv_b"] = jnp.asarray(_np(tensors[f"{prefix}conv1d.conv.bias"]))
    return out


def _headwise_w(t) -> jax.Array:
    """LinearHeadwiseExpand weight [P, out, in] -> [P, in, out]."""
    return jnp.asarray(np.swapaxes(_np(t), 1, 2))


def slstm_params(layer, tensors: dict[str, Any]) -> Params:
    """Our parameters from an sLSTMLayer's named tensors (its parameters, or their .grad)."""
    cell = layer.slstm_cell
    hid = layer.config.embedding_dim
    r_ext = cell._recurrent_kernel_int2ext(tensors["slstm_cell._recurrent_kernel_"])  # [NH, Dh_in, 4, Dh_out]
    b_ext = cell._bias_int2ext(tensors["slstm_cell._bias_"])  # [NH, 4, Dh]
    p = {
        "W_i": _headwise_w(tensors["fgate.weight"]),  # sic: xlstm's fgate feeds the input gate
        "W_f": _headwise_w(tensors["igate.weight"]),
        "W_z": _headwise_w(tensors["zgate.weight"]),
        "W_o": _headwise_w(tensors["ogate.weight"]),
        "R": jnp.asarray(np.transpose(_np(r_ext), (2, 0, 1, 3))),
        "b": jnp.asarray(np.transpose(_np(b_ext), (1, 0, 2)).reshape(4, hid)),
    }
    if "group_norm.weight" in tensors:
        p["gn_w"] = jnp.asarray(_np(tensors["group_norm.weight"]))
    return p | _conv_params(tensors, "")


def mlstm_params(layer, tensors: dict[str, Any]) -> Params:
    """Our parameters from an mLSTMLayer's named tensors (its parameters, or their .grad)."""
    t = {k: _np(v) for k, v in tensors.items()}
    p = {
        "W_up": jnp.asarray(t["proj_up.weight"].T),
        "W_down": jnp.asarray(t["proj_down.weight"].T),
        "W_q": _headwise_w(tensors["q_proj.weight"]),
        "W_k": _headwise_w(tensors["k_proj.weight"]),
        "W_v": _headwise_w(tensors["v_proj.weight"]),
        "W_ig": jnp.asarray(t["mlstm_cell.igate.weight"].T),
        "b_ig": jnp.asarray(t["mlstm_cell.igate.bias"]),
        "W_fg": jnp.asarray(t["mlstm_cell.fgate.weight"].T),
        "b_fg": jnp.asarray(t["mlstm_cell.fgate.bias"]),
        "outnorm_w": jnp.asarray(t["mlstm_cell.outnorm.weight"]),
        "skip": jnp.asarray(t["learnable_skip"]),
    }
    if layer.config.bias:
        p |= {"b_up": jnp.asarray(t["proj_up.bias"]), "b_down": jnp.asarray(t["proj_down.bias"])}
        p |= {f"b_{g}": jnp.asarray(t[f"{g}_proj.bias"]) for g in "qkv"}
    return p | _conv_params(tensors, "")


def from_xlstm(layer) -> tuple[XLSTMsLSTMLayer | XLSTMmLSTMLayer, Params]:
    """Imports an xlstm ``sLSTMLayer`` or ``mLSTMLayer`` (torch) as ``(cell, params)``.

    ``gp.unroll(cell, params, x_BxTxE)`` equals ``layer(x_BxTxE)`` (evaluation mode), and
    the gradients with respect to the input and to ``params`` equal torch autograd's
    (map torch gradients with ``slstm_params(layer, grads)`` / ``mlstm_params``).
    Parameters keep the layer's dtype: call ``layer.double()`` for float64.

    Raises:
      TypeError: for anything but an sLSTMLayer or mLSTMLayer.
      ValueError: for an sLSTM layer whose cell function is not "slstm", or one with
        channel-mixing or bias-free convs, which the importer does not model.
    """
    kind = type(layer).__name__
    if kind not in ("sLSTMLayer", "mLSTMLayer") or not hasattr(layer, "config"):
        raise TypeError(f"from_xlstm takes an xlstm sLSTMLayer or mLSTMLayer, got {kind}")
    cfg = layer.config
    k = cfg.conv1d_kernel_size
    if k and (layer.conv1d.config.channel_mixing or not layer.conv1d.config.causal_conv_bias):
        raise ValueError("from_xlstm models the depthwise causal conv with a bias (xlstm's default)")
    tensors = dict(layer.named_parameters())
    if kind == "sLSTMLayer":
        if cfg.function != "slstm":
            raise ValueError(f"from_xlstm imports the 'slstm' cell function, got {cfg.function!r}")
        cell = XLSTMsLSTMLayer(cfg.embedding_dim, cfg.num_heads, k, cfg.group_norm_weight, layer.group_norm.eps)
        return cell, slstm_params(layer, tensors)
    cell = XLSTMmLSTMLayer(
        cfg.embedding_dim,
        cfg._inner_embedding_dim,
        cfg.num_heads,
        cfg.qkv_proj_blocksize,
        k,
        cfg.bias,
        norm_eps=layer.mlstm_cell.outnorm.eps,
    )
    return cell, mlstm_params(layer, tensors)
