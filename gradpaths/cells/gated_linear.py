"""Gated linear recurrences: minGRU, minLSTM (Feng et al. 2024) and the LRU (Orvieto et al. 2023).

Each cell here is a *linear* recurrence in its carried state z, with coefficients that
depend on the input x_t only:

.. math::

    z_t = a_t \\cdot z_{t-1} + b_t,\\qquad (a_t, b_t) = \\mathrm{coefficients}_θ(x_t),
    \\qquad s_t = \\mathrm{finish}_θ(z_t, x_t)

where ``·`` is an elementwise product (a complex one for the LRU) and ``finish`` adds
whatever the output needs (an output projection, a skip term). No gate reads z_{t-1},
so there is a single edge, ``highway`` (z_{t-1} in ``a_t · z_{t-1}``), and
``hop_edges == ()``: every path is a 0-hop path, and ∂z_t/∂z_{t-1} = diag(a_t).

``LinearRecurrence`` is the shared base. Its members ``coefficients``, ``mul`` and
``finish`` are also the optional *parallel protocol* of ``gradpaths.parallel``: any cell
providing them (for example RG-LRU or S6) gets ``parallel_unroll`` for free.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from gradpaths.cells.classic import HState, _check_int
from gradpaths.cells.registry import register

Params = dict[str, jax.Array]


class ProjState(NamedTuple):
    """State of a gated linear cell with an output map: carried ``h`` [..., H], output ``y`` [..., O]."""

    h: jax.Array
    y: jax.Array


class LRUState(NamedTuple):
    """LRU state: the complex state x = re + i·im (``re``, ``im`` [..., N]) and the output ``y`` [..., H]."""

    re: jax.Array
    im: jax.Array
    y: jax.Array


def g(x: jax.Array) -> jax.Array:
    """Feng et al.'s positive activation (appendix B.3): g(x) = x + ½ for x ≥ 0, σ(x) for x < 0."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


CANDIDATES = {"g": g, "linear": lambda x: x, "tanh": jnp.tanh}


@dataclasses.dataclass(frozen=True)
class LinearRecurrence:
    """Base of the cells z_t = a_t · z_{t-1} + b_t with (a_t, b_t) from x_t only.

    A subclass provides ``coefficients(params, x) -> (a, b)``, ``finish(params, z, x) ->
    state`` with ``read(finish(params, z, x)) == z``, and, if ``·`` is not the elementwise
    product, ``mul(a, z)``. ``step`` is then fixed:

    .. math::

        s_t = \\mathrm{finish}_θ(a_t \\cdot e^{\\text{highway}}_t + b_t,\\; x_t)

    Edge ``highway`` (a highway): ∂z_t/∂z_{t-1} = diag(a_t) (``mul``'s Jacobian in general).
    """

    hidden_size: int

    edges: ClassVar[tuple[str, ...]] = ("highway",)
    hop_edges: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        _check_int("hidden_size", self.hidden_size, 1)

    def coefficients(self, params: Params, x: jax.Array) -> tuple[Any, Any]:
        """(a_t, b_t) for one step, x [I]; b is shaped like ``read(state)``, a as ``mul`` expects."""
        raise NotImplementedError

    def mul(self, a: Any, z: Any) -> Any:
        """a · z: the action of a coefficient on z, also the composition of two coefficients."""
        return jax.tree.map(jnp.multiply, a, z)

    def finish(self, params: Params, z: Any, x: jax.Array) -> Any:
        """The state s_t from the carried part z_t (a dict like ``read``) and x_t."""
        raise NotImplementedError

    def step(self, params: Params, edges: dict[str, Any], x: jax.Array) -> Any:
        """s_t = finish(a_t · e_t + b_t, x_t), for one example x [I]."""
        a, b = self.coefficients(params, x)
        return self.finish(params, jax.tree.map(jnp.add, self.mul(a, edges), b), x)


def _normal(key: jax.Array, shape: tuple[int, ...], fan_in: int, dtype) -> jax.Array:
    return jax.random.normal(key, shape, dtype) / math.sqrt(fan_in)


@dataclasses.dataclass(frozen=True)
class _MinCell(LinearRecurrence):
    """minGRU / minLSTM: u = x W_x (+ b), in blocks [h̃ pre-activation, gate(s)]; h_t carried.

    Attributes:
      hidden_size: H (mingru-pytorch's ``dim_inner``).
      candidate: the activation on h̃: "g" (the log-space version's g, what
        mingru-pytorch computes; default), "linear" (the paper's plain version) or "tanh".
      bias: whether u has a bias b [G·H] (mingru-pytorch has none).
      output_size: if an int O, the state also holds y_t = h_t W_out [O] (mingru-pytorch's
        ``to_out``), and that is the output; if None, the output is h_t.
    """

    candidate: str = "g"
    bias: bool = True
    output_size: int | None = None

    gates: ClassVar[int]

    def __post_init__(self):
        super().__post_init__()
        if self.candidate not in CANDIDATES:
            raise ValueError(f"candidate must be one of {tuple(CANDIDATES)}, got {self.candidate!r}")
        if not isinstance(self.bias, bool):
            raise TypeError(f"bias must be a bool, got {type(self.bias).__name__} {self.bias!r}")
        if self.output_size is not None:
            _check_int("output_size", self.output_size, 1)

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        """W_x [I, G·H] ~ N(0, 1/I); b [G·H] = 0; W_out [H, O] ~ N(0, 1/H)."""
        _check_int("input_size", input_size, 1)
        kx, ko = jax.random.split(key)
        width = self.gates * self.hidden_size
        params = {"W_x": _normal(kx, (input_size, width), input_size, dtype)}
        if self.bias:
            params["b"] = jnp.zeros((width,), dtype)
        if self.output_size is not None:
            params["W_out"] = _normal(ko, (self.hidden_size, self.output_size), self.hidden_size, dtype)
        return params

    def zero_state(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32):
        h = jnp.zeros((*batch_shape, self.hidden_size), dtype)
        if self.output_size is None:
            return HState(h)
        return ProjState(h, jnp.zeros((*batch_shape, self.output_size), dtype))

    def read(self, state) -> dict[str, jax.Array]:
        """e_t = {"highway": h_{t-1}}."""
        return {"highway": state.h}

    def finish(self, params: Params, z: dict[str, jax.Array], x: jax.Array):
        h = z["highway"]
        return HState(h) if self.output_size is None else ProjState(h, h @ params["W_out"])

    def output(self, state) -> jax.Array:
        return state.h if self.output_size is None else state.y

    def blocks(self, params: Params, x: jax.Array) -> list[jax.Array]:
        """The G blocks of u_t = x_t W_x (+ b), each [..., H]."""
        u = x @ params["W_x"]
        if self.bias:
            u = u + params["b"]
        return jnp.split(u, self.gates, axis=-1)


@dataclasses.dataclass(frozen=True)
class MinGRU(_MinCell):
    """minGRU (Feng et al. 2024, "Were RNNs all we needed?"), as mingru-pytorch computes it.

    .. math::

        [k_t, q_t] = x_t W_x + b,\\quad z_t = σ(q_t),\\quad \\tilde h_t = g(k_t)

        h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ \\tilde h_t,\\qquad y_t = h_t W_{out}\\ (\\text{optional})

    g is the log-space version's activation (``candidate="g"``; "linear" gives the
    paper's plain minGRU). Edge ``highway`` (the only edge): ∂h_t/∂h_{t-1} = diag(1 - z_t).
    Parameters: W_x [I, 2H] in blocks (k, q), b [2H], W_out [H, O] if ``output_size``.
    """

    gates: ClassVar = 2

    def coefficients(self, params: Params, x: jax.Array):
        k, q = self.blocks(params, x)
        z = jax.nn.sigmoid(q)
        return {"highway": 1 - z}, {"highway": z * CANDIDATES[self.candidate](k)}


@dataclasses.dataclass(frozen=True)
class MinLSTM(_MinCell):
    """minLSTM (Feng et al. 2024), with normalised gates, as mingru-pytorch computes it.

    .. math::

        [k_t, p_t, q_t] = x_t W_x + b,\\quad f_t = σ(p_t),\\ i_t = σ(q_t),\\quad
        f'_t = \\frac{f_t}{f_t + i_t},\\ i'_t = \\frac{i_t}{f_t + i_t}

        h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ g(k_t),\\qquad y_t = h_t W_{out}\\ (\\text{optional})

    Edge ``highway`` (the only edge): ∂h_t/∂h_{t-1} = diag(f'_t).
    Parameters: W_x [I, 3H] in blocks (k, p, q) (mingru-pytorch's hidden, f, i), b [3H],
    W_out [H, O] if ``output_size``.
    """

    gates: ClassVar = 3

    def coefficients(self, params: Params, x: jax.Array):
        k, p, q = self.blocks(params, x)
        f, i = jax.nn.sigmoid(p), jax.nn.sigmoid(q)
        return {"highway": f / (f + i)}, {"highway": i / (f + i) * CANDIDATES[self.candidate](k)}


def _halves(v: jax.Array) -> tuple[jax.Array, jax.Array]:
    n = v.shape[-1] // 2
    return v[..., :n], v[..., n:]


@dataclasses.dataclass(frozen=True)
class LRU(LinearRecurrence):
    """Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting recurrent neural networks").

    .. math::

        λ = \\exp(-e^{ν} + i e^{θ}),\\quad γ = e^{\\log γ}\\ (\\text{init } \\sqrt{1 - |λ|^2})

        x_t = λ ⊙ x_{t-1} + γ ⊙ (B u_t),\\qquad y_t = \\mathrm{Re}(C x_t) + D u_t

    with u_t [I] the input, x_t ∈ ℂ^N the state and y_t [H] the output. The state is
    stored as real pairs: ``read`` gives ``highway`` = [Re x, Im x] [2N], and the edge
    Jacobian is the rotation-scaling block

    .. math::

        \\frac{∂[\\mathrm{Re}\\,x_t, \\mathrm{Im}\\,x_t]}{∂[\\mathrm{Re}\\,x_{t-1}, \\mathrm{Im}\\,x_{t-1}]}
        = \\begin{pmatrix} \\mathrm{diag}(\\mathrm{Re}\\,λ) & -\\mathrm{diag}(\\mathrm{Im}\\,λ) \\\\
          \\mathrm{diag}(\\mathrm{Im}\\,λ) & \\mathrm{diag}(\\mathrm{Re}\\,λ) \\end{pmatrix}

    (``|λ| < 1`` always; λ is constant in t, so the highway's spectrum is |λ| for every t).
    γ is learned, initialised to √(1 − |λ|²), as in the paper's code.

    Attributes:
      hidden_size: H, the output width.
      state_size: N (default H).
      r_min, r_max: the ring 0 ≤ r_min < |λ| < r_max ≤ 1 that ν is drawn on (uniform in area).
      max_phase: arg λ = e^θ is drawn uniform in [0, max_phase).
      skip: "dense" (D [I, H], any I; default), "diagonal" (the paper code's D ⊙ u_t, D [H],
        needs I == H) or "none".

    Parameters: nu_log, theta_log, gamma_log [N]; B_re, B_im [I, N]; C_re, C_im [N, H];
    D as ``skip`` says. B u_t is u_t (B_re + i B_im) here ([in, out] layout).
    """

    state_size: int | None = None
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi
    skip: str = "dense"

    def __post_init__(self):
        super().__post_init__()
        if self.state_size is not None:
            _check_int("state_size", self.state_size, 1)
        if not 0.0 <= self.r_min < self.r_max <= 1.0:
            raise ValueError(f"need 0 <= r_min < r_max <= 1, got r_min={self.r_min}, r_max={self.r_max}")
        if not self.max_phase > 0:
            raise ValueError(f"max_phase must be > 0, got {self.max_phase}")
        if self.skip not in ("dense", "diagonal", "none"):
            raise ValueError(f"skip must be 'dense', 'diagonal' or 'none', got {self.skip!r}")

    @property
    def n(self) -> int:
        return self.hidden_size if self.state_size is None else self.state_size

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        """The paper's ring init; B ~ N(0, 1/(2I)) per part, C ~ N(0, 1/N), D ~ N(0, 1) (dense: 1/I)."""
        _check_int("input_size", input_size, 1)
        if self.skip == "diagonal" and input_size != self.hidden_size:
            raise ValueError(f"skip='diagonal' needs input_size == hidden_size ({self.hidden_size}), got {input_size}")
        n, h = self.n, self.hidden_size
        k1, k2, kbr, kbi, kcr, kci, kd = jax.random.split(key, 7)
        u1 = jax.random.uniform(k1, (n,), dtype)
        u2 = jax.random.uniform(k2, (n,), dtype)
        nu_log = jnp.log(-0.5 * jnp.log(u1 * (self.r_max**2 - self.r_min**2) + self.r_min**2))
        theta_log = jnp.log(self.max_phase * u2)
        gamma_log = 0.5 * jnp.log1p(-jnp.exp(-2 * jnp.exp(nu_log)))
        params = {
            "nu_log": nu_log,
            "theta_log": theta_log,
            "gamma_log": gamma_log,
            "B_re": _normal(kbr, (input_size, n), 2 * input_size, dtype),
            "B_im": _normal(kbi, (input_size, n), 2 * input_size, dtype),
            "C_re": _normal(kcr, (n, h), n, dtype),
            "C_im": _normal(kci, (n, h), n, dtype),
        }
        if self.skip == "dense":
            params["D"] = _normal(kd, (input_size, h), input_size, dtype)
        elif self.skip == "diagonal":
            params["D"] = jax.random.normal(kd, (h,), dtype)
        return params

    def zero_state(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> LRUState:
        zn = jnp.zeros((*batch_shape, self.n), dtype)
        return LRUState(zn, zn, jnp.zeros((*batch_shape, self.hidden_size), dtype))

    def read(self, state: LRUState) -> dict[str, jax.Array]:
        """e_t = {"highway": [Re x_{t-1}, Im x_{t-1}]} [2N]."""
        return {"highway": jnp.concatenate([state.re, state.im], axis=-1)}

    def mul(self, a: dict[str, jax.Array], z: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """The complex product on [re, im] halves."""
        (ar, ai), (zr, zi) = _halves(a["highway"]), _halves(z["highway"])
        return {"highway": jnp.concatenate([ar * zr - ai * zi, ar * zi + ai * zr], axis=-1)}

    def coefficients(self, params: Params, x: jax.Array):
        mod = jnp.exp(-jnp.exp(params["nu_log"]))
        phase = jnp.exp(params["theta_log"])
        gamma = jnp.exp(params["gamma_log"])
        lam = jnp.concatenate([mod * jnp.cos(phase), mod * jnp.sin(phase)], axis=-1)
        bu = jnp.concatenate([gamma * (x @ params["B_re"]), gamma * (x @ params["B_im"])], axis=-1)
        return {"highway": jnp.broadcast_to(lam, bu.shape)}, {"highway": bu}

    def finish(self, params: Params, z: dict[str, jax.Array], x: jax.Array) -> LRUState:
        re, im = _halves(z["highway"])
        y = re @ params["C_re"] - im @ params["C_im"]
        if self.skip == "dense":
            y = y + x @ params["D"]
        elif self.skip == "diagonal":
            y = y + params["D"] * x
        return LRUState(re, im, y)

    def output(self, state: LRUState) -> jax.Array:
        return state.y


@register("mingru")
def mingru(hidden_size: int, *, candidate: str = "g", bias: bool = True, output_size: int | None = None) -> MinGRU:
    """minGRU (Feng et al. 2024): h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ g(k_t); see ``MinGRU``."""
    return MinGRU(hidden_size, candidate=candidate, bias=bias, output_size=output_size)


@register("minlstm")
def minlstm(hidden_size: int, *, candidate: str = "g", bias: bool = True, output_size: int | None = None) -> MinLSTM:
    """minLSTM (Feng et al. 2024): h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ g(k_t); see ``MinLSTM``."""
    return MinLSTM(hidden_size, candidate=candidate, bias=bias, output_size=output_size)


@register("lru")
def lru(
    hidden_size: int,
    *,
    state_size: int | None = None,
    r_min: float = 0.0,
    r_max: float = 1.0,
    max_phase: float = 2 * math.pi,
    skip: str = "dense",
) -> LRU:
    """LRU (Orvieto et al. 2023): x_t = λ ⊙ x_{t-1} + γ ⊙ B u_t, y_t = Re(C x_t) + D u_t; see ``LRU``."""
    return LRU(hidden_size, state_size=state_size, r_min=r_min, r_max=r_max, max_phase=max_phase, skip=skip)
