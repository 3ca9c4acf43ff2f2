"""Flax (linen and nnx) and PyTorch recurrent weights -> gradpaths cells, exactly.

Every importer reads the library's affine maps into the gradpaths form

.. math::

    u_t = x_t W_x + b,\\qquad a_t = h_{t-1} W_h + b_h

with gate blocks side by side: LSTM (i, f, g, o), GRU (r, z, n), MGU (f, n). Biases
that are simply added before a gate's nonlinearity are summed into ``b``
(``b_x + b_h``, as Flax's LSTM and PyTorch's ``bias_ih + bias_hh``). A hidden bias
that sits *inside* a gate product stays in ``b_h``'s n block: the GRU's
n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)) and the MGU's f ⊙ (W_hn h + b_hn).
``b_h``'s other blocks are zero (their gradients still equal the library's).

Layouts: Flax kernels are [in, out]; PyTorch weights are [G·H, in] and are
transposed. gradpaths is batch-major ([..., T, I], like Flax's default and
PyTorch's ``batch_first=True``); swap axes for time-major data. Flax's LSTM carry
is (c, h) and PyTorch's is (h, c); ``state_from_flax`` / ``state_from_torch``
turn either into a gradpaths state for ``state0=``.

torch is optional: a state dict of numpy arrays needs no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradpaths.cells import LSTM, Cell, HState, LSTMState, gru, lstm, mgu, rnn, stack

TORCH_KINDS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
_GATES = {"lstm": 4, "gru": 3, "mgu": 2, "rnn_tanh": 1, "rnn_relu": 1, "rnn_sigmoid": 1, "rnn_linear": 1}


class Affine(NamedTuple):
    """The two affine maps of a cell, library layout converted to [in, out].

    Attributes:
      w_x: [I, G·H]. w_h: [H, G·H]. b_x, b_h: [G·H] or None (no bias).
    """

    w_x: Any
    w_h: Any
    b_x: Any
    b_h: Any


def _make_cell(kind: str, hidden: int) -> Cell:
    if kind == "lstm":
        return lstm(hidden)
    if kind == "gru":
        return gru(hidden)
    if kind == "mgu":
        return mgu(hidden)
    return rnn(hidden, activation=kind.removeprefix("rnn_"))


def _assemble(kind: str, aff: Affine) -> tuple[Cell, dict[str, jax.Array]]:
    """Builds (cell, params) from the affine maps; sums additive biases into b."""
    w_x, w_h = jnp.asarray(aff.w_x), jnp.asarray(aff.w_h)
    dtype = w_x.dtype
    if w_x.ndim != 2 or w_h.ndim != 2:
        raise ValueError(f"kernels must be 2-D; got input kernel {w_x.shape} and hidden kernel {w_h.shape}")
    hidden, width = w_h.shape[0], _GATES[kind] * w_h.shape[0]
    if w_h.shape[1] != width or w_x.shape[1] != width:
        raise ValueError(
            f"a {kind} cell with hidden size {hidden} needs kernels [I, {width}] and [{hidden}, {width}]; "
            f"got {w_x.shape} and {w_h.shape}"
        )
    if w_h.dtype != dtype or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"kernels must share one floating dtype, got {w_x.dtype} and {w_h.dtype}")

    def bias(v):
        if v is None:
            return jnp.zeros((width,), dtype)
        v = jnp.asarray(v).astype(dtype)
        if v.shape != (width,):
            raise ValueError(f"a {kind} bias must have shape ({width},), got {v.shape}")
        return v

    b_x, b_h = bias(aff.b_x), bias(aff.b_h)
    cell = _make_cell(kind, hidden)
    if not cell.has_b_h:
        return cell, {"W_x": w_x, "W_h": w_h, "b": b_x + b_h}
    inside = jnp.arange(width) >= width - hidden  # the n block: its hidden bias sits inside r ⊙ (…)
    return cell, {"W_x": w_x, "W_h": w_h, "b": b_x + jnp.where(inside, 0, b_h), "b_h": jnp.where(inside, b_h, 0)}


# ----------------------------------------------------------------------------- Flax


def _flax_fn_names() -> list[tuple[Any, str]]:
    fns = [(jnp.tanh, "tanh"), (jax.nn.relu, "relu"), (jax.nn.sigmoid, "sigmoid")]
    return fns + [(jax.nn.identity, "linear")] if hasattr(jax.nn, "identity") else fns


def _fn_name(fn: Any) -> str | None:
    return next((name for f, name in _flax_fn_names() if fn is f), None)


def _check_gated(module: Any) -> None:
    gate, act = _fn_name(getattr(module, "gate_fn", None)), _fn_name(getattr(module, "activation_fn", None))
    if gate != "sigmoid" or act != "tanh":
        raise ValueError(
            f"{type(module).__name__} must use gate_fn=sigmoid and activation_fn=tanh to map onto a gradpaths cell; "
            f"got gate_fn={module.gate_fn!r}, activation_fn={module.activation_fn!r}"
        )


def _flax_kind(module: Any, linen: Any, nnx: Any) -> str:
    """The gradpaths kind of a Flax cell, after checking its options map exactly."""
    lstms = (linen.LSTMCell, linen.OptimizedLSTMCell, nnx.LSTMCell, nnx.OptimizedLSTMCell)
    if isinstance(module, lstms):
        _check_gated(module)
        return "lstm"
    if isinstance(module, (linen.GRUCell, nnx.GRUCell)):
        _check_gated(module)
        return "gru"
    if isinstance(module, linen.MGUCell):
        _check_gated(module)
        if not module.reset_gate:
            raise ValueError(
                "MGUCell(reset_gate=False) has no gradpaths counterpart; only reset_gate=True maps to gp.mgu"
            )
        return "mgu"
    if isinstance(module, (linen.SimpleCell, nnx.SimpleCell)):
        act = _fn_name(module.activation_fn)
        if act is None:
            names = [n for _, n in _flax_fn_names()]
            raise ValueError(f"SimpleCell activation_fn must be one of {names}, got {module.activation_fn!r}")
        return f"rnn_{act}"
    raise TypeError(
        "from_flax covers LSTMCell, OptimizedLSTMCell, GRUCell, SimpleCell, MGUCell (linen), their nnx versions "
        f"and nn.RNN wrapping one of them; got {type(module).__module__}.{type(module).__name__}"
    )


# Flax's submodule names: input maps, then hidden maps, in gradpaths gate order.
_LINEN_NAMES = {
    "lstm": (("ii", "if", "ig", "io"), ("hi", "hf", "hg", "ho")),
    "gru": (("ir", "iz", "in"), ("hr", "hz", "hn")),
    "mgu": (("if", "in"), ("hf", "hn")),
    "rnn": (("i",), ("h",)),
}


def _concat(maps: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """[(kernel, bias | None)] -> (concatenated kernel, concatenated bias | None)."""
    kernel = jnp.concatenate([jnp.asarray(k) for k, _ in maps], axis=-1)
    if all(b is None for _, b in maps):
        return kernel, None
    bias = [jnp.zeros(jnp.shape(k)[-1:], jnp.asarray(k).dtype) if b is None else jnp.asarray(b) for k, b in maps]
    return kernel, jnp.concatenate(bias)


def _linen_affine(kind: str, tree: Mapping) -> Affine:
    names_x, names_h = _LINEN_NAMES[kind.split("_")[0]]
    missing = [n for n in (*names_x, *names_h) if n not in tree or "kernel" not in tree[n]]
    if missing:
        raise ValueError(
            f"the variables lack the Dense layer(s) {missing} of a Flax {kind} cell; "
            f"expected sub-dicts {names_x + names_h}, got keys {sorted(tree)}"
        )
    w_x, b_x = _concat([(tree[n]["kernel"], tree[n].get("bias")) for n in names_x])
    w_h, b_h = _concat([(tree[n]["kernel"], tree[n].get("bias")) for n in names_h])
    return Affine(w_x, w_h, b_x, b_h)


def _nnx_affine(module: Any, kind: str) -> Affine:
    def linear(lin):
        return lin.kernel[...], None if lin.bias is None else lin.bias[...]

    if kind == "lstm" and hasattr(module, "ii"):  # nnx.LSTMCell: one Linear per gate ('if_': 'if' is a keyword)
        w_x, b_x = _concat([linear(getattr(module, n)) for n in ("ii", "if_", "ig", "io")])
        w_h, b_h = _concat([linear(getattr(module, n)) for n in ("hi", "hf", "hg", "ho")])
        return Affine(w_x, w_h, b_x, b_h)
    (w_x, b_x), (w_h, b_h) = linear(module.dense_i), linear(module.dense_h)
    return Affine(w_x, w_h, b_x, b_h)


def _cell_tree(variables: Any) -> Mapping:
    """The cell's parameter dict from its own variables or from those of an nn.RNN."""
    if not isinstance(variables, Mapping):
        raise TypeError(
            f"variables must be the dict from module.init (e.g. {{'params': ...}}), got {type(variables).__name__}"
        )
    tree = variables.get("params", variables)
    if isinstance(tree, Mapping) and set(tree) == {"cell"}:
        tree = tree["cell"]
    if not isinstance(tree, Mapping):
        raise TypeError(f"variables['params'] must be a dict of Dense layers, got {type(tree).__name__}")
    return tree


def _residual(kind: str, module: Any, aff: Affine) -> Affine:
    """SimpleCell(residual=True) adds h_{t-1} before φ: W_h ← W_h + I (same gradients)."""
    if kind.startswith("rnn_") and module.residual:
        w_h = jnp.asarray(aff.w_h)
        return aff._replace(w_h=w_h + jnp.eye(w_h.shape[0], dtype=w_h.dtype))
    return aff


def from_flax(module: Any, variables: Any = None) -> tuple[Cell, dict[str, jax.Array]]:
    """A Flax recurrent cell and its weights as a gradpaths ``(cell, params)``.

    Covered: linen ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``, ``SimpleCell``
    (tanh / relu / sigmoid / identity, ``residual`` too) and ``MGUCell``
    (``reset_gate=True``); nnx ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell`` and
    ``SimpleCell``; and ``nn.RNN`` / ``nnx.RNN`` wrapping any of them.

    Mapping (Flax Dense kernels are already [in, out]):

    - LSTM: W_x = [ii | if | ig | io], W_h = [hi | hf | hg | ho], b = the h biases
      (Flax's input Dense layers have none). Carry (c, h) -> ``LSTMState(h, c)``.
    - GRU: W_x = [ir | iz | in], W_h = [hr | hz | hn]; b = (b_ir, b_iz, b_in);
      b_h = (0, 0, b_hn), since n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)) and
      h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}. nnx's GRUCell has no b_hn, so b_h = 0.
    - MGU: W_x = [if | in], W_h = [hf | hn]; b = (b_if, b_in), b_h = (0, b_hn).
    - SimpleCell: h_t = φ(x W_i + b_i + h W_h (+ h_{t-1} if residual)), with the
      residual folded into W_h + I.

    Args:
      module: the linen or nnx cell, or an ``nn.RNN`` / ``nnx.RNN`` around one.
      variables: for linen, the cell's variables or those of an ``nn.RNN`` wrapping it
        (``{'params': {'cell': ...}}``). nnx modules hold their own state: leave None.

    Returns:
      ``(cell, params)``; params take the variables' dtype. gradpaths computes in that
      dtype: a module's separate computation ``dtype`` (e.g. float32 maths on float64
      parameters) is not modelled.

    Raises:
      TypeError for an unsupported module or malformed variables; ValueError for
      options with no gradpaths counterpart (a non-default gate or activation
      function, MGU without reset gate, a reversed nn.RNN).
    """
    import flax.linen as linen
    from flax import nnx

    if isinstance(module, (linen.RNN, nnx.RNN)):
        if module.reverse:
            raise ValueError("nn.RNN(reverse=True) runs right to left; import its cell and reverse xs along T instead")
        module = module.cell
    kind = _flax_kind(module, linen, nnx)
    if isinstance(module, nnx.Module):
        if variables is not None:
            raise ValueError(
                "nnx modules carry their own state; call from_flax(module) without variables, "
                f"got {type(variables).__name__}"
            )
        aff = _nnx_affine(module, kind)
    else:
        if variables is None:
            raise ValueError(f"a linen {type(module).__name__} needs its variables: from_flax(module, variables)")
        aff = _linen_affine(kind, _cell_tree(variables))
    return _assemble(kind, _residual(kind, module, aff))


def state_from_flax(cell: Cell, carry: Any):
    """A Flax carry as a gradpaths state: LSTM (c, h) -> ``LSTMState(h, c)``; else ``HState(h)``."""
    if isinstance(cell, LSTM):
        c, h = carry
        return LSTMState(jnp.asarray(h), jnp.asarray(c))
    return HState(jnp.asarray(carry))


# ----------------------------------------------------------------------------- PyTorch


def _to_numpy(v: Any) -> np.ndarray:
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(v)


def _torch_module(obj: Any) -> tuple[dict[str, np.ndarray], str | None]:
    """State dict (numpy) and kind of a torch RNN module, after checking its options."""
    import torch

    if isinstance(obj, torch.nn.RNNBase):
        if obj.bidirectional:
            raise ValueError(f"bidirectional {type(obj).__name__} is not supported; import a unidirectional module")
        if getattr(obj, "proj_size", 0):
            raise ValueError(f"{type(obj).__name__}(proj_size={obj.proj_size}) is not supported; proj_size must be 0")
        kind = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}.get(obj.mode)
    elif isinstance(obj, torch.nn.RNNCellBase):
        kind = {"LSTMCell": "lstm", "GRUCell": "gru"}.get(type(obj).__name__, f"rnn_{getattr(obj, 'nonlinearity', '')}")
    else:
        raise TypeError(
            f"from_torch takes nn.LSTM, nn.GRU, nn.RNN, their Cell versions or a state dict; got {type(obj).__name__}"
        )
    if kind not in TORCH_KINDS:
        raise ValueError(f"unsupported torch module {obj!r}")
    return {k: _to_numpy(v) for k, v in obj.state_dict().items()}, kind


def _torch_layer_keys(sd: Mapping[str, Any], layer: int | None) -> str:
    """The key suffix of the requested layer: '' for a Cell, '_l{k}' for a stack."""
    if any(k.endswith("_reverse") for k in sd):
        raise ValueError("bidirectional weights (keys ending in '_reverse') are not supported")
    if any(k.startswith("weight_hr") for k in sd):
        raise ValueError("weights with a projection (proj_size > 0, keys 'weight_hr_l*') are not supported")
    if "weight_ih" in sd:
        if layer not in (None, 0):
            raise ValueError(f"a Cell state dict has one layer; got layer={layer}")
        return ""
    n_layers = sum(1 for k in sd if k.startswith("weight_ih_l"))
    if n_layers == 0:
        raise ValueError(f"a torch RNN state dict needs 'weight_ih_l0' (or 'weight_ih'); got keys {sorted(sd)}")
    if layer is None:
        layer = 0
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise ValueError(f"layer must be an int in 0..{n_layers - 1}, got {layer!r}")
    return f"_l{layer}"


def from_torch(
    module_or_state_dict: Any, *, kind: str | None = None, layer: int | None = None
) -> tuple[Cell, dict[str, jax.Array]]:
    """A PyTorch recurrent layer (or its state dict) as a gradpaths ``(cell, params)``.

    Covered: ``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` (tanh and relu) and ``nn.LSTMCell``,
    ``nn.GRUCell``, ``nn.RNNCell``; or their state dicts, of tensors or numpy arrays
    (then torch need not be installed).

    Mapping (gate order is PyTorch's: LSTM (i, f, g, o), GRU (r, z, n)):
    W_x = weight_ihᵀ, W_h = weight_hhᵀ, b = bias_ih + bias_hh. For the GRU,
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), so b_hn stays in b_h's n block and
    b's n block is b_in alone. ``bias=False`` gives zero biases.

    Stacked layers: a module or state dict with L > 1 layers gives the whole stack,
    ``gp.stack([...])`` with params one pytree per layer (edges "0.highway", "1.gates", ...);
    ``layer=k`` gives layer k alone. Dropout between layers is a training-time option
    and is not modelled. gradpaths is
    batch-major, as ``batch_first=True``; swap axes 0 and 1 of time-major inputs.

    Args:
      module_or_state_dict: a torch module or a mapping of its ``state_dict()``.
      kind: "lstm", "gru", "rnn_tanh" or "rnn_relu". Inferred from a module, and
        from a state dict's shapes (4H rows: lstm, 3H: gru); a plain RNN's state dict
        needs it, since its weights do not tell tanh from relu.
      layer: which layer of a stacked module; None (default) imports them all as a stack.

    Returns:
      ``(cell, params)``; params take the weights' dtype.

    Raises:
      ValueError for bidirectional or projected (proj_size) weights, a missing or
      inconsistent ``kind``, or a bad ``layer``; TypeError for other objects.
    """
    if kind is not None and kind not in TORCH_KINDS:
        raise ValueError(f"kind must be one of {TORCH_KINDS} or None, got {kind!r}")
    if isinstance(module_or_state_dict, Mapping):
        sd, module_kind = {k: _to_numpy(v) for k, v in module_or_state_dict.items()}, None
    elif type(module_or_state_dict).__module__.startswith("torch"):
        sd, module_kind = _torch_module(module_or_state_dict)
    else:
        raise TypeError(
            "from_torch takes a torch RNN module or a state dict (mapping of arrays), "
            f"got {type(module_or_state_dict).__name__}"
        )
    n_layers = sum(1 for k in sd if k.startswith("weight_ih_l"))
    if layer is None and n_layers > 1:  # the whole stack: gp.stack of the layers, params one per layer
        layers = [from_torch(sd, kind=kind or module_kind, layer=k) for k in range(n_layers)]
        return stack([c for c, _ in layers]), tuple(p for _, p in layers)
    sfx = _torch_layer_keys(sd, layer)
    w_ih, w_hh = sd.get(f"weight_ih{sfx}"), sd.get(f"weight_hh{sfx}")
    if w_ih is None or w_hh is None or w_ih.ndim != 2 or w_hh.ndim != 2 or w_hh.shape[0] % max(w_hh.shape[1], 1):
        shapes = {k: getattr(v, "shape", None) for k, v in sd.items()}
        raise ValueError(f"expected weight_ih{sfx} [G*H, I] and weight_hh{sfx} [G*H, H]; got {shapes}")
    n_gates = w_hh.shape[0] // w_hh.shape[1]
    inferred = {4: "lstm", 3: "gru"}.get(n_gates)
    if module_kind is not None:
        if kind is not None and kind != module_kind:
            raise ValueError(f"kind={kind!r} contradicts the module, which is {module_kind!r}")
        kind = module_kind
    if kind is None:
        if inferred is None:
            raise ValueError(
                f"cannot tell the kind from weights with {n_gates} gate block(s); pass kind='rnn_tanh' or 'rnn_relu'"
            )
        kind = inferred
    if _GATES[kind] != n_gates:
        raise ValueError(
            f"kind={kind!r} needs {_GATES[kind]} gate blocks, but weight_hh{sfx} has {n_gates} ({w_hh.shape})"
        )
    aff = Affine(w_ih.T, w_hh.T, sd.get(f"bias_ih{sfx}"), sd.get(f"bias_hh{sfx}"))
    return _assemble(kind, aff)


def state_from_torch(cell: Cell, hx: Any, layer: int | None = 0):
    """A PyTorch initial state as a gradpaths state.

    ``hx`` is (h0, c0) for an LSTM, else h0; each [num_layers, B, H] or [num_layers, H]
    for a stacked module (row ``layer`` is taken), or [B, H] / [H] for a Cell when
    ``layer`` is None.
    """

    def pick(v):
        v = jnp.asarray(_to_numpy(v))
        return v if layer is None else v[layer]

    if not isinstance(cell, LSTM):
        return HState(pick(hx))
    h0, c0 = hx
    return LSTMState(pick(h0), pick(c0))
