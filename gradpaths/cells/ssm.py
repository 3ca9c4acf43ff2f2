"""Gated linear recurrences and selective state spaces: RG-LRU (Griffin), S6 and the Mamba block.

Each cell is written for **one example** (x [I]); vmap adds the batch. The RG-LRU and S6
recurrences are elementwise-linear in the previous state, so each has one edge, the
``highway``, and no hop edges: every gradient path inside the layer is a highway path.
The Mamba block adds the causal depthwise convolution in front of S6, whose state (the
last K−1 inputs) is read by two edges: ``conv`` (a hop, the taps that feed the SSM) and
``conv_shift`` (a highway, the shift register that carries the inputs along).

When the input size I differs from the hidden size H, RG-LRU and S6 first project the
input, x ← x W_in (W_in [I, H]); with I = H there is no projection (as in the packages).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from gradpaths.cells.classic import HState, _check_int
from gradpaths.cells.registry import register

Params = dict[str, jax.Array]


class S6State(NamedTuple):
    """S6 state: the SSM state ``h`` [..., H, N] and the output ``y`` [..., H] (read by no edge)."""

    h: jax.Array
    y: jax.Array


class MambaState(NamedTuple):
    """Mamba block state.

    Attributes:
      h: SSM state [..., E, N] (E = expand · H inner channels, N = d_state).
      conv: the last K−1 inner inputs x̃_{t-K+2..t}, oldest first [..., K−1, E].
      y: the block output [..., H] (read by no edge).
    """

    h: jax.Array
    conv: jax.Array
    y: jax.Array


def _check_positive(name: str, value, *, below: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if below is not None and not value < below:
        raise ValueError(f"{name} must be < {below}, got {value!r}")


def _check_x(cell, params: Params, x: jax.Array, width: int) -> None:
    want = params["W_in"].shape[0] if "W_in" in params else width
    if x.shape != (want,):
        raise ValueError(
            f"{type(cell).__name__}.step takes one example x of shape [{want}] (params' input size); "
            f"got shape {tuple(x.shape)}: vmap over batch axes"
        )


def _maybe_project(params: Params, x: jax.Array) -> jax.Array:
    """x W_in when the cell was initialised with I ≠ H, else x."""
    return x @ params["W_in"] if "W_in" in params else x


def _input_projection(key: jax.Array, input_size: int, hidden: int, dtype) -> Params:
    if input_size == hidden:
        return {}
    return {"W_in": jax.random.normal(key, (input_size, hidden), dtype) / math.sqrt(input_size)}


# ----------------------------------------------------------------------------- RG-LRU


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _sqrt_bound_derivative(x: jax.Array, max_gradient: float) -> jax.Array:
    """√x whose derivative is evaluated at max(x, 1/(4 g²)), so it never exceeds g
    (recurrentgemma's ``sqrt_bound_derivative``)."""
    del max_gradient
    return jnp.sqrt(x)


def _sqrt_fwd(x, max_gradient):
    del max_gradient
    return jnp.sqrt(x), x


def _sqrt_bwd(max_gradient, x, g):
    x_pre = jnp.maximum(x, 1 / (4 * max_gradient**2))
    return jax.vjp(jnp.sqrt, x_pre)[1](g)


_sqrt_bound_derivative.defvjp(_sqrt_fwd, _sqrt_bwd)


def _block_diagonal(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """x [H] through G diagonal blocks: w [G, H/G, H/G], b [G, H/G] -> [H]."""
    g = w.shape[0]
    y = jnp.einsum("hi,hij->hj", x.reshape(g, -1), w) + b
    return y.reshape(-1)


@dataclasses.dataclass(frozen=True)
class RGLRU:
    """Real-Gated Linear Recurrent Unit (De et al. 2024, Griffin), as recurrentgemma computes it.

    .. math::

        r_t = σ(x_t W_a + b_a),\\qquad i_t = σ(x_t W_x + b_x)            \\quad\\text{(block-diagonal, G blocks)}
        \\log a_t = -c\\, r_t ⊙ \\mathrm{softplus}(-Λ)                   \\quad (a_t = σ(Λ)^{c r_t},\\ c = 8)
        h_t = a_t ⊙ h_{t-1} + \\sqrt{1 - a_t^2} ⊙ (i_t ⊙ x_t)

    with 1 - a_t² computed as 1 - exp(2 log a_t). Edge ``highway`` (h_{t-1} in a_t ⊙ h_{t-1}):
    ∂h_t/∂h_{t-1} = diag(a_t). The gates read x_t only, so there is no hop edge.

    Initialisation (recurrentgemma's, not the paper's wording): the base a = σ(Λ) is drawn with
    a² uniform on [min_rad², max_rad²] (uniform on a ring's area), so a ∈ [0.9, 0.999] and the
    gate-open decay a^c = a^8 ∈ [0.43, 0.992]. Gate weights ~ N(0, w_init_variance_scale / H),
    gate biases 0.

    Parameters: W_a, W_x [G, H/G, H/G], b_a, b_x [G, H/G], Lambda [H]; plus W_in [I, H] when
    the input size I ≠ H (x_t ← x_t W_in first). recurrentgemma's ``a_param`` is −Λ.

    Attributes:
      hidden_size: H (the width of x_t and h_t).
      num_heads: G, the number of diagonal blocks of the gate weights (divides H).
      c: the decay exponent's scale (8 in Griffin).
      min_rad, max_rad: the ring a = σ(Λ) is initialised on.
      w_init_variance_scale: the gate weights' variance scale.
      sqrt_max_gradient: None (exact) or g: evaluate the derivative of √(1 − a_t²) at
        max(1 − a_t², 1/(4g²)), as recurrentgemma does with g = 1000. The forward pass is
        unchanged; gradients differ only where 1 − a_t² < 1/(4g²).
    """

    hidden_size: int
    num_heads: int = 1
    c: float = 8.0
    min_rad: float = 0.9
    max_rad: float = 0.999
    w_init_variance_scale: float = 1.0
    sqrt_max_gradient: float | None = None

    edges: ClassVar[tuple[str, ...]] = ("highway",)
    hop_edges: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        _check_int("hidden_size", self.hidden_size, 1)
        _check_int("num_heads", self.num_heads, 1)
        if self.hidden_size % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide hidden_size ({self.hidden_size})")
        _check_positive("c", self.c)
        _check_positive("min_rad", self.min_rad, below=1.0)
        _check_positive("max_rad", self.max_rad, below=1.0)
        if self.min_rad > self.max_rad:
            raise ValueError(f"min_rad ({self.min_rad}) must be <= max_rad ({self.max_rad})")
        _check_positive("w_init_variance_scale", self.w_init_variance_scale)
        if self.sqrt_max_gradient is not None:
            _check_positive("sqrt_max_gradient", self.sqrt_max_gradient)

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        """Samples parameters as recurrentgemma's ``RGLRU`` initialises them."""
        _check_int("input_size", input_size, 1)
        h, g = self.hidden_size, self.num_heads
        k_in, k_a, k_x, k_lam = jax.random.split(key, 4)
        gate_init = jax.nn.initializers.variance_scaling(self.w_init_variance_scale, "fan_in", "normal")
        unif = jax.random.uniform(k_lam, (h,), dtype)
        log_rad = 0.5 * jnp.log(unif * (self.max_rad**2 - self.min_rad**2) + self.min_rad**2 + 1e-8)
        return {
            **_input_projection(k_in, input_size, h, dtype),
            "W_a": gate_init(k_a, (g, h // g, h // g), dtype),
            "b_a": jnp.zeros((g, h // g), dtype),
            "W_x": gate_init(k_x, (g, h // g, h // g), dtype),
            "b_x": jnp.zeros((g, h // g), dtype),
            "Lambda": -jnp.log(jnp.exp(-log_rad) - 1.0),  # σ(Λ) = exp(log_rad)
        }

    def zero_state(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> HState:
        return HState(jnp.zeros((*batch_shape, self.hidden_size), dtype))

    def read(self, state: HState) -> dict[str, jax.Array]:
        return {"highway": state.h}

    def coefficients(self, params: Params, x: jax.Array) -> tuple[dict, dict]:
        """({"highway": a_t}, {"highway": b_t}) of h_t = a_t ⊙ h_{t-1} + b_t, for one step x [I]
        (``gradpaths.parallel``'s protocol, with ``mul`` and ``finish``)."""
        x = _maybe_project(params, x)
        r = jax.nn.sigmoid(_block_diagonal(x, params["W_a"], params["b_a"]))
        i = jax.nn.sigmoid(_block_diagonal(x, params["W_x"], params["b_x"]))
        log_a = -self.c * r * jax.nn.softplus(-params["Lambda"])
        a, a_squared = jnp.exp(log_a), jnp.exp(2 * log_a)
        if self.sqrt_max_gradient is None:
            multiplier = jnp.sqrt(1 - a_squared)
        else:
            multiplier = _sqrt_bound_derivative(1 - a_squared, self.sqrt_max_gradient)
        return {"highway": a}, {"highway": (x * i) * multiplier}

    def mul(self, a: dict, z: dict) -> dict:
        return jax.tree.map(jnp.multiply, a, z)

    def finish(self, params: Params, z: dict, x: jax.Array) -> HState:
        return HState(z["highway"])

    def step(self, params: Params, edges: dict[str, jax.Array], x: jax.Array) -> HState:
        _check_x(self, params, x, self.hidden_size)
        a, b = self.coefficients(params, x)
        return HState(a["highway"] * edges["highway"] + b["highway"])

    def output(self, state: HState) -> jax.Array:
        return state.h


@register("rglru")
def rglru(hidden_size: int, *, num_heads: int = 1, c: float = 8.0, min_rad: float = 0.9, **options) -> RGLRU:
    """The RG-LRU of Griffin (``RGLRU``); ``gp.rglru(64)`` works with defaults."""
    return RGLRU(hidden_size, num_heads=num_heads, c=c, min_rad=min_rad, **options)


# ----------------------------------------------------------------------------- S6


def _dt_rank(dt_rank, width: int) -> int:
    if dt_rank == "auto":
        return math.ceil(width / 16)
    _check_int("dt_rank", dt_rank, 1)
    return dt_rank


def _s6_init(key: jax.Array, e: int, n: int, r: int, cfg, dtype) -> Params:
    """mambapy's init: x_proj ~ U(±1/√E), dt_proj ~ U(±dt_scale/√R), softplus(b_dt) = dt ~
    logU[dt_min, dt_max] (floored at dt_init_floor), A_log = log(1..N) (S4D-real), D = 1."""
    k_x, k_dtw, k_dt = jax.random.split(key, 3)
    w_x = jax.random.uniform(k_x, (e, r + 2 * n), dtype, -1.0, 1.0) / math.sqrt(e)
    std = cfg.dt_scale / math.sqrt(r)
    u = jax.random.uniform(k_dt, (e,), dtype)
    dt = jnp.exp(u * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min))
    dt = jnp.maximum(dt, cfg.dt_init_floor)
    return {
        "W_delta": w_x[:, :r],
        "W_B": w_x[:, r : r + n],
        "W_C": w_x[:, r + n :],
        "W_dt": jax.random.uniform(k_dtw, (r, e), dtype, -std, std),
        "b_dt": dt + jnp.log(-jnp.expm1(-dt)),  # softplus⁻¹(dt)
        "A_log": jnp.broadcast_to(jnp.log(jnp.arange(1, n + 1, dtype=dtype)), (e, n)),
        "D": jnp.ones((e,), dtype),
    }


def _s6_coefficients(params: Params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(exp(Δ_t A), (Δ_t B_t) x_t), both [E, N], of h_t = exp(Δ_t A) h_{t-1} + (Δ_t B_t) x_t; x [E]."""
    delta = jax.nn.softplus((x @ params["W_delta"]) @ params["W_dt"] + params["b_dt"])
    a = -jnp.exp(params["A_log"])
    return jnp.exp(delta[:, None] * a), (delta[:, None] * (x @ params["W_B"])[None, :]) * x[:, None]


def _s6_readout(params: Params, h: jax.Array, x: jax.Array) -> jax.Array:
    """y_t = h_t C_t + D ⊙ x_t [E]."""
    return h @ (x @ params["W_C"]) + params["D"] * x


def _s6_step(params: Params, h_prev: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One S6 step, mambapy's computation: h_prev [E, N], x [E] -> (h_t [E, N], y_t [E])."""
    decay, drive = _s6_coefficients(params, x)
    h = decay * h_prev + drive
    return h, _s6_readout(params, h, x)


def _check_dt(cfg) -> None:
    _check_positive("dt_min", cfg.dt_min)
    _check_positive("dt_max", cfg.dt_max)
    if cfg.dt_min > cfg.dt_max:
        raise ValueError(f"dt_min ({cfg.dt_min}) must be <= dt_max ({cfg.dt_max})")
    _check_positive("dt_init_floor", cfg.dt_init_floor)
    _check_positive("dt_scale", cfg.dt_scale)


@dataclasses.dataclass(frozen=True)
class S6:
    """Mamba's selective SSM (Gu and Dao 2023), discretised as mambapy does (ZOH on A only).

    For channel d and state index n:

    .. math::

        Δ_t = \\mathrm{softplus}((x_t W_δ) W_{dt} + b_{dt})        \\quad [H]\\ (\\text{low-rank } R)
        B_t = x_t W_B,\\quad C_t = x_t W_C                        \\quad [N]
        A = -\\exp(A_{log})                                      \\quad [H, N]
        h_t[d,n] = e^{Δ_t[d] A[d,n]}\\, h_{t-1}[d,n] + (Δ_t[d] B_t[n])\\, x_t[d]
        y_t[d] = Σ_n C_t[n] h_t[d,n] + D[d] x_t[d]

    Edge ``highway`` (h_{t-1}): ∂h_t/∂h_{t-1} = diag(exp(Δ_t ⊗ A)) on the flattened [H·N]
    state. Δ, B and C read x_t only, so there is no hop edge. The output y_t is part of the
    state (S6State.y) but read by no edge.

    Parameters: W_delta [H, R], W_B, W_C [H, N], W_dt [R, H], b_dt [H], A_log [H, N], D [H];
    plus W_in [I, H] when I ≠ H. Init: A = −(1, 2, …, N) per channel (S4D-real), D = 1,
    softplus(b_dt) log-uniform on [dt_min, dt_max].

    Attributes:
      hidden_size: H channels. d_state: N. dt_rank: R, or "auto" = ⌈H/16⌉.
      dt_min, dt_max, dt_init_floor, dt_scale: Δ's initialisation, as mambapy's MambaConfig.
    """

    hidden_size: int
    d_state: int = 16
    dt_rank: int | str = "auto"
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    dt_scale: float = 1.0

    edges: ClassVar[tuple[str, ...]] = ("highway",)
    hop_edges: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        _check_int("hidden_size", self.hidden_size, 1)
        _check_int("d_state", self.d_state, 1)
        _dt_rank(self.dt_rank, self.hidden_size)
        _check_dt(self)

    @property
    def rank(self) -> int:
        return _dt_rank(self.dt_rank, self.hidden_size)

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        _check_int("input_size", input_size, 1)
        k_in, k_s6 = jax.random.split(key)
        return {
            **_input_projection(k_in, input_size, self.hidden_size, dtype),
            **_s6_init(k_s6, self.hidden_size, self.d_state, self.rank, self, dtype),
        }

    def zero_state(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> S6State:
        h, n = self.hidden_size, self.d_state
        return S6State(jnp.zeros((*batch_shape, h, n), dtype), jnp.zeros((*batch_shape, h), dtype))

    def read(self, state: S6State) -> dict[str, jax.Array]:
        return {"highway": state.h}

    def coefficients(self, params: Params, x: jax.Array) -> tuple[dict, dict]:
        """({"highway": exp(Δ_t A)}, {"highway": (Δ_t B_t) x_t}) for one step x [I]
        (``gradpaths.parallel``'s protocol, with ``mul`` and ``finish``)."""
        decay, drive = _s6_coefficients(params, _maybe_project(params, x))
        return {"highway": decay}, {"highway": drive}

    def mul(self, a: dict, z: dict) -> dict:
        return jax.tree.map(jnp.multiply, a, z)

    def finish(self, params: Params, z: dict, x: jax.Array) -> S6State:
        h = z["highway"]
        return S6State(h, _s6_readout(params, h, _maybe_project(params, x)))

    def step(self, params: Params, edges: dict[str, jax.Array], x: jax.Array) -> S6State:
        _check_x(self, params, x, self.hidden_size)
        return S6State(*_s6_step(params, edges["highway"], _maybe_project(params, x)))

    def output(self, state: S6State) -> jax.Array:
        return state.y


@register("s6")
def s6(hidden_size: int, *, d_state: int = 16, dt_rank: int | str = "auto", **options) -> S6:
    """Mamba's selective SSM (``S6``); ``gp.s6(64)`` works with defaults."""
    return S6(hidden_size, d_state=d_state, dt_rank=dt_rank, **options)


# ----------------------------------------------------------------------------- Mamba block


@dataclasses.dataclass(frozen=True)
class MambaBlock:
    """The Mamba-1 block (mambapy's ``MambaBlock``): projections, causal conv, S6, gate.

    With E = expand · H inner channels and K = d_conv:

    .. math::

        [x̃_t, z_t] = u_t W_{in} (+ b_{in})                                \\quad [E], [E]
        c_t = Σ_{k=0}^{K-1} w_k ⊙ x̃_{t-K+1+k} + b_{conv}                  \\quad\\text{(depthwise, causal)}
        x_t = \\mathrm{silu}(c_t)
        h_t, y_t = \\mathrm{S6}(h_{t-1}, x_t)                              \\quad\\text{(see ``S6``)}
        o_t = (y_t ⊙ \\mathrm{silu}(z_t)) W_{out} (+ b_{out})             \\quad [H]

    The convolution's state is the window of the last K−1 inner inputs (MambaState.conv,
    oldest first; zeros before the sequence, as the package's left padding). Edges:

    - ``highway`` (h_{t-1}): ∂h_t/∂h_{t-1} = diag(exp(Δ_t ⊗ A)).
    - ``conv`` (a hop; the window read by the taps w_0..w_{K-2}): ∂h_t/∂window = the S6
      step's Jacobian in x_t (through Δ_t, B_t, C_t and the input term) · diag(silu'(c_t)) · taps.
    - ``conv_shift`` (a highway; the window shifted by one): ∂window_t/∂window_{t-1} is the
      shift matrix, so an input travels along it unchanged and a path from x̃_s into the SSM
      crosses exactly one hop, whatever its lag. With K = 2 the window holds x̃_{t-1} only and
      nothing is shifted: the cell has no ``conv_shift`` edge.

    Parameters: W_in [I, 2E] (b_in [2E] if ``bias``), w_conv [K, E] (b_conv [E] if
    ``conv_bias``), the S6 parameters of width E, W_out [E, H] (b_out [H] if ``bias``).

    Attributes:
      hidden_size: H, the output width (mambapy's d_model).
      d_state: N. expand: E / H. d_conv: K ≥ 2. dt_rank: R, or "auto" = ⌈H/16⌉.
      bias: in_proj and out_proj biases. conv_bias: the convolution's bias.
      dt_min, dt_max, dt_init_floor, dt_scale: Δ's initialisation, as mambapy's MambaConfig.
    """

    hidden_size: int
    d_state: int = 16
    expand: int = 2
    d_conv: int = 4
    dt_rank: int | str = "auto"
    bias: bool = False
    conv_bias: bool = True
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    dt_scale: float = 1.0

    hop_edges: ClassVar[tuple[str, ...]] = ("conv",)

    @property
    def edges(self) -> tuple[str, ...]:
        """("highway", "conv", "conv_shift"); with K = 2 the window holds one input and is not
        shifted, so there is no ``conv_shift``."""
        return ("highway", "conv") if self.d_conv == 2 else ("highway", "conv", "conv_shift")

    def __post_init__(self):
        _check_int("hidden_size", self.hidden_size, 1)
        _check_int("d_state", self.d_state, 1)
        _check_int("expand", self.expand, 1)
        _check_int("d_conv", self.d_conv, 2)
        _dt_rank(self.dt_rank, self.hidden_size)
        _check_dt(self)

    @property
    def inner(self) -> int:
        return self.expand * self.hidden_size

    @property
    def rank(self) -> int:
        return _dt_rank(self.dt_rank, self.hidden_size)

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        """Samples parameters as mambapy does (nn.Linear / nn.Conv1d defaults: U(±1/√fan_in))."""
        _check_int("input_size", input_size, 1)
        e, h, k = self.inner, self.hidden_size, self.d_conv
        k_in, k_conv, k_cb, k_s6, k_out = jax.random.split(key, 5)

        def uniform(key, shape, fan_in):
            return jax.random.uniform(key, shape, dtype, -1.0, 1.0) / math.sqrt(fan_in)

        params = {"W_in": uniform(k_in, (input_size, 2 * e), input_size), "w_conv": uniform(k_conv, (k, e), k)}
        if self.bias:
            params["b_in"] = jnp.zeros((2 * e,), dtype)
            params["b_out"] = jnp.zeros((h,), dtype)
        if self.conv_bias:
            params["b_conv"] = uniform(k_cb, (e,), k)
        params.update(_s6_init(k_s6, e, self.d_state, self.rank, self, dtype))
        params["W_out"] = uniform(k_out, (e, h), e)
        return params

    def zero_state(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> MambaState:
        e, n, k = self.inner, self.d_state, self.d_conv
        zeros = functools.partial(jnp.zeros, dtype=dtype)
        return MambaState(
            zeros((*batch_shape, e, n)), zeros((*batch_shape, k - 1, e)), zeros((*batch_shape, self.hidden_size))
        )

    def read(self, state: MambaState) -> dict[str, jax.Array]:
        edges = {"highway": state.h, "conv": state.conv}
        return edges if self.d_conv == 2 else {**edges, "conv_shift": state.conv}

    def step(self, params: Params, edges: dict[str, jax.Array], x: jax.Array) -> MambaState:
        if x.shape != (params["W_in"].shape[0],):
            raise ValueError(
                f"MambaBlock.step takes one example x of shape [{params['W_in'].shape[0]}] (params' input "
                f"size); got shape {tuple(x.shape)}: vmap over batch axes"
            )
        xz = x @ params["W_in"] + params["b_in"] if self.bias else x @ params["W_in"]
        x_in, z = jnp.split(xz, 2)
        window = jnp.concatenate([edges["conv"], x_in[None]])  # [K, E], oldest first
        c = jnp.sum(params["w_conv"] * window, axis=0)
        if self.conv_bias:
            c = c + params["b_conv"]
        h, y = _s6_step(params, edges["highway"], jax.nn.silu(c))
        out = (y * jax.nn.silu(z)) @ params["W_out"]
        if self.bias:
            out = out + params["b_out"]
        kept = edges["conv_shift"][1:] if self.d_conv > 2 else edges["conv"][:0]  # K = 2: nothing is kept
        return MambaState(h, jnp.concatenate([kept, x_in[None]]), out)

    def output(self, state: MambaState) -> jax.Array:
        return state.y


@register("mamba")
def mamba(hidden_size: int, *, d_state: int = 16, expand: int = 2, d_conv: int = 4, **options) -> MambaBlock:
    """The Mamba-1 block (``MambaBlock``): input size from ``init``, output size ``hidden_size``."""
    return MambaBlock(hidden_size, d_state=d_state, expand=expand, d_conv=d_conv, **options)
