"""xLSTM cells (Beck et al. 2024): sLSTM and mLSTM, with exponential gating and the stabiliser.

Both cells keep a memory (c or C), a normaliser n and a stabiliser m. The unstabilised
recurrence is

.. math::

    \\bar c_t = \\tilde f_t \\bar c_{t-1} + \\tilde\\imath_t z_t,\\qquad
    \\bar n_t = \\tilde f_t \\bar n_{t-1} + \\tilde\\imath_t,\\qquad
    \\tilde\\imath_t = \\exp(\\tilde\\imath^{\\rm pre}_t),\\quad \\tilde f_t = σ(f^{\\rm pre}_t),

and the stored state is (c, n) = e^{-m_t} (c̄, n̄) with

.. math::

    m_t = \\max(\\log\\tilde f_t + m_{t-1}, \\log\\tilde\\imath_t),\\quad
    i_t = e^{\\log\\tilde\\imath_t - m_t},\\quad f_t = e^{\\log\\tilde f_t + m_{t-1} - m_t}

so that i_t, f_t ≤ 1 and nothing overflows. From the empty memory (n_{t-1} = 0, the zero
state) the stabiliser restarts at m_t = log ĩ_t, as xlstm does (its sLSTM kernel tests
n = 0; its parallel mLSTM is the recurrence from m_0 = −∞); f_t then multiplies a zero
memory. Because c_t/n_t = c̄_t/n̄_t for **any** sequence m_t, h_t does not depend on m: the
stabiliser is a change of coordinates. The same identity, differentiated, shows that the
gradient through m cancels exactly, and that scaling the h_{t-1} → gates edge by α gives the
same gradient in either coordinates; so the hop decomposition does not depend on the
stabiliser, provided m travels with (c, n) on the highway. That is why m is on the highway
edge and not an edge of its own (as a hop it would count paths that cancel).

The mLSTM's normaliser floor max(|n̄ᵀq|, 1) becomes max(|nᵀq|, e^{-m}); an ε added to the
denominator (xlstm adds 1e-6) breaks the invariance slightly, so ``eps`` defaults to 0 here
and the xlstm importer sets it.

The mLSTM also has a parallel form (``gradpaths.parallel``, stabilised cells): m is a
max-plus linear recurrence, so one associative scan gives every m_t; with m known, (C, n)
is linear in (C, n)_{t-1} with coefficients (f_t, i_t), and a second scan gives them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from gradpaths._checks import check_int as _check_int
from gradpaths.cells.registry import register
from gradpaths.parallel import max_plus_scan

Params = dict[str, jax.Array]


class SLSTMMemory(NamedTuple):
    """The sLSTM highway: memory ``c``, normaliser ``n`` and stabiliser ``m``, each [..., H]."""

    c: jax.Array
    n: jax.Array
    m: jax.Array


class SLSTMState(NamedTuple):
    """sLSTM state: ``c``, ``n``, ``m`` and the output ``h``, each [..., H]."""

    c: jax.Array
    n: jax.Array
    m: jax.Array
    h: jax.Array


class MLSTMMemory(NamedTuple):
    """The mLSTM highway: ``C`` [..., NH, Dh, Dh] (value × key), ``n`` [..., NH, Dh], ``m`` [..., NH]."""

    C: jax.Array
    n: jax.Array
    m: jax.Array


class MLSTMState(NamedTuple):
    """mLSTM state: the memory (C, n, m) per head and the output ``h`` [..., H]."""

    C: jax.Array
    n: jax.Array
    m: jax.Array
    h: jax.Array


class MLSTMJacobian(NamedTuple):
    """∂(C, n, m)_t/∂(C, n, m)_{t-1} of one mLSTM step, per head (heads do not mix):

    .. math::

        J_t = \\begin{pmatrix} f_t I & 0 & u^C_t \\\\ 0 & f_t I & u^n_t \\\\ 0 & 0 & g_t \\end{pmatrix},
        \\quad u_t = \\frac{∂(C, n)_t}{∂m_{t-1}} = f_t (C, n)_{t-1} - g_t (C, n)_t,
        \\quad g_t = \\frac{∂m_t}{∂m_{t-1}}

    ``f`` [..., NH], ``u_C`` [..., NH, Dh, Dh], ``u_n`` [..., NH, Dh], ``g`` [..., NH].
    """

    f: jax.Array
    u_C: jax.Array
    u_n: jax.Array
    g: jax.Array


class _MLSTMInputs(NamedTuple):
    """The mLSTM's projections of x_t, per head: q, k (scaled by 1/√Dh), v, o^pre [NH, Dh]; log ĩ, f^pre [NH]."""

    q: jax.Array
    k: jax.Array
    v: jax.Array
    pre_o: jax.Array
    log_i: jax.Array
    pre_f: jax.Array


def _check_heads(hidden_size: int, num_heads: int) -> None:
    _check_int("hidden_size", hidden_size, 1)
    _check_int("num_heads", num_heads, 1)
    if hidden_size % num_heads:
        raise ValueError(f"num_heads={num_heads} must divide hidden_size={hidden_size}")


def stabilised_gates(log_i: jax.Array, pre_f: jax.Array, n_prev: jax.Array, m_prev: jax.Array, empty_axis=None):
    """(i_t, f_t, m_t) of the stabilised exponential gating; shapes of ``log_i``.

    m_t = max(log σ(f^pre) + m_{t-1}, log ĩ), or log ĩ where the memory is empty
    (all of ``n_prev`` over ``empty_axis`` is zero).
    """
    log_f = jax.nn.log_sigmoid(pre_f)
    empty = jnp.all(n_prev == 0, axis=empty_axis)
    m = jnp.where(empty, log_i, jnp.maximum(log_f + m_prev, log_i))
    return (*_gates_given_m(log_i, log_f, m_prev, m), m)


def _gates_given_m(log_i, log_f, m_prev, m):
    """(i_t, f_t) = (e^{log ĩ - m_t}, e^{log f̃ + m_{t-1} - m_t})."""
    return jnp.exp(log_i - m), jnp.exp(log_f + m_prev - m)


def slstm_pointwise(pre_4xH: jax.Array, mem: SLSTMMemory) -> SLSTMState:
    """The sLSTM's elementwise step from the gate pre-activations (i, f, z, o) [4, H].

    c_t = f c_{t-1} + i tanh(z^pre), n_t = f n_{t-1} + i, h_t = σ(o^pre) c_t / n_t.
    """
    log_i, pre_f, pre_z, pre_o = pre_4xH
    i, f, m = stabilised_gates(log_i, pre_f, mem.n, mem.m)
    c = f * mem.c + i * jnp.tanh(pre_z)
    n = f * mem.n + i
    return SLSTMState(c, n, m, jax.nn.sigmoid(pre_o) * c / n)


def slstm_recurrent(R_4xNHxDhxDh: jax.Array, h: jax.Array) -> jax.Array:
    """R h_{t-1} [4, H], block-diagonal per head: (R h)_{g,n,j} = Σ_d h_{n,d} R_{g,n,d,j}."""
    g, heads, dh, _ = R_4xNHxDhxDh.shape
    return jnp.einsum("nd,gnde->gne", h.reshape(heads, dh), R_4xNHxDhxDh).reshape(g, heads * dh)


def _mlstm_write(i_N, k_NxD, v_NxD):
    """What step t writes, per head: (i v kᵀ [NH, Dh, Dh], i k [NH, Dh])."""
    return i_N[:, None, None] * v_NxD[:, :, None] * k_NxD[:, None, :], i_N[:, None] * k_NxD


def mlstm_memory_update(k_NxD, v_NxD, log_i_N, pre_f_N, mem: MLSTMMemory) -> MLSTMMemory:
    """C_t = f C_{t-1} + i v kᵀ, n_t = f n_{t-1} + i k per head (k already scaled by 1/√Dh), with m_t."""
    i, f, m = stabilised_gates(log_i_N, pre_f_N, mem.n, mem.m, empty_axis=-1)
    write_C, write_n = _mlstm_write(i, k_NxD, v_NxD)
    return MLSTMMemory(f[:, None, None] * mem.C + write_C, f[:, None] * mem.n + write_n, m)


def mlstm_retrieve(q_NxD, mem: MLSTMMemory, eps: float = 0.0) -> jax.Array:
    """h̃_t = C_t q / (max(|n_tᵀ q|, e^{-m_t}) + eps) [NH, Dh]."""
    num = jnp.einsum("nvk,nk->nv", mem.C, q_NxD)
    den = jnp.maximum(jnp.abs(jnp.sum(mem.n * q_NxD, axis=-1)), jnp.exp(-mem.m)) + eps
    return num / den[:, None]


def mlstm_memory_step(q_NxD, k_NxD, v_NxD, log_i_N, pre_f_N, mem: MLSTMMemory, eps: float = 0.0):
    """One mLSTM memory update per head, and the retrieval h̃_t [NH, Dh].

    C_t = f C_{t-1} + i v kᵀ, n_t = f n_{t-1} + i k (k already scaled by 1/√Dh),
    h̃_t = C_t q / (max(|n_tᵀ q|, e^{-m_t}) + eps).
    """
    mem = mlstm_memory_update(k_NxD, v_NxD, log_i_N, pre_f_N, mem)
    return mlstm_retrieve(q_NxD, mem, eps), mem


@dataclasses.dataclass(frozen=True)
class SLSTM:
    """sLSTM (Beck et al. 2024): scalar memory, exponential input gate, sigmoid forget gate.

    .. math::

        (\\log\\tilde\\imath, f^{\\rm pre}, z^{\\rm pre}, o^{\\rm pre}) = W_x^T x_t + R\\,h_{t-1} + b
        m_t = \\max(\\log σ(f^{\\rm pre}) + m_{t-1}, \\log\\tilde\\imath),\\quad
        i_t = e^{\\log\\tilde\\imath - m_t},\\quad f_t = e^{\\log σ(f^{\\rm pre}) + m_{t-1} - m_t}
        c_t = f_t c_{t-1} + i_t \\tanh(z^{\\rm pre}),\\quad n_t = f_t n_{t-1} + i_t,\\quad
        h_t = σ(o^{\\rm pre}) ⊙ c_t / n_t

    R is block-diagonal: each of ``num_heads`` heads mixes its own Dh = H / num_heads units.

    Edges:
      ``highway`` carries (c, n, m)_{t-1} into the f-products and the stabiliser:
      ∂c_t/∂c_{t-1} = ∂n_t/∂n_{t-1} = diag(f_t), ∂m_t/∂m_{t-1} = diag(1[log f̃_t + m_{t-1} ≥ log ĩ_t]),
      ∂(c_t, n_t)/∂m_{t-1} = diag(f_t (1 - ∂m_t/∂m_{t-1})) (c_{t-1}, n_{t-1}) - (c_t, n_t) ∂m_t/∂m_{t-1}
      (each unit on its own: the highway Jacobian is diagonal per unit, a 3×3 block).
      ``gates`` (a hop) carries h_{t-1} into R h_{t-1}: ∂pre_t/∂h_{t-1} = R, then through
      every gate to (c, n, m, h)_t.
    Parameters: W_x [I, 4H] (blocks i, f, z, o), R [4, NH, Dh, Dh], b [4H].
    """

    hidden_size: int
    num_heads: int = 1
    forget_bias: float = 1.0
    recurrent_scale: float = 1.0
    input_scale: float = 1.0

    edges: ClassVar[tuple[str, ...]] = ("highway", "gates")
    hop_edges: ClassVar[tuple[str, ...]] = ("gates",)

    def __post_init__(self):
        _check_heads(self.hidden_size, self.num_heads)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        """W_x ~ N(0, input_scale²/I), R ~ N(0, recurrent_scale²/Dh), b_f = forget_bias."""
        _check_int("input_size", input_size, 1)
        kx, kr = jax.random.split(key)
        hid, heads, dh = self.hidden_size, self.num_heads, self.head_dim
        w_x = self.input_scale * jax.random.normal(kx, (input_size, 4 * hid), dtype) / math.sqrt(input_size)
        r = self.recurrent_scale * jax.random.normal(kr, (4, heads, dh, dh), dtype) / math.sqrt(dh)
        b = jnp.zeros((4 * hid,), dtype).at[hid : 2 * hid].set(self.forget_bias)
        return {"W_x": w_x, "R": r, "b": b}

    def zero_state(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> SLSTMState:
        z = jnp.zeros((*batch_shape, self.hidden_size), dtype)
        return SLSTMState(z, z, z, z)

    def read(self, state: SLSTMState) -> dict[str, Any]:
        return {"highway": SLSTMMemory(state.c, state.n, state.m), "gates": state.h}

    def step(self, params: Params, edges: dict[str, Any], x: jax.Array) -> SLSTMState:
        pre = (x @ params["W_x"] + params["b"]).reshape(4, self.hidden_size)
        return slstm_pointwise(pre + slstm_recurrent(params["R"], edges["gates"]), edges["highway"])

    def output(self, state: SLSTMState) -> jax.Array:
        return state.h


@dataclasses.dataclass(frozen=True)
class MLSTM:
    """mLSTM (Beck et al. 2024): matrix memory per head, covariance update, no recurrent matmul.

    .. math::

        q, k, v, o^{\\rm pre}, \\log\\tilde\\imath, f^{\\rm pre} = W_x^T x_t + b,\\qquad k ← k / \\sqrt{D_h}
        C_t = f_t C_{t-1} + i_t\\, v k^T,\\quad n_t = f_t n_{t-1} + i_t k
        h_t = σ(o^{\\rm pre}) ⊙ \\frac{C_t q}{\\max(|n_t^T q|, e^{-m_t}) + ε}

    with the stabilised gates (i_t, f_t, m_t) of the sLSTM, one scalar gate pair per head.
    Every gate comes from x_t alone, so the cell is highway-only (``hop_edges == ()``).

    Edge ``highway`` carries (C, n, m)_{t-1}: ∂C_t/∂C_{t-1} = f_t I, ∂n_t/∂n_{t-1} = f_t I,
    ∂m_t/∂m_{t-1} = 1[log f̃_t + m_{t-1} ≥ log ĩ_t] (per head), and ∂(C_t, n_t)/∂m_{t-1} as for
    the sLSTM (``MLSTMJacobian``). The h_t it reaches: ∂h_t/∂C_{t-1} = f_t o ⊙ (· q)/den, plus
    the denominator's term.
    Parameters: W_x [I, 4H + 2NH] (blocks q, k, v, o of width H, then ĩ, f of width NH), b likewise.

    Parallel form (the stabilised parallel protocol of ``gradpaths.parallel``): ``stabiliser``
    scans m_t = max(log f̃_t + m_{t-1}, log ĩ_t) in the max-plus semiring; ``coefficients``
    then gives (C, n)_t = f_t (C, n)_{t-1} + i_t (v kᵀ, k) with m_t carried in b;
    ``finish`` adds h_t; ``jacobian`` gives the step's J_t for the reverse pass.
    """

    hidden_size: int
    num_heads: int = 1
    forget_bias: float = 3.0
    input_scale: float = 1.0
    eps: float = 0.0

    edges: ClassVar[tuple[str, ...]] = ("highway",)
    hop_edges: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        _check_heads(self.hidden_size, self.num_heads)
        if not self.eps >= 0:
            raise ValueError(f"eps must be >= 0, got {self.eps!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        """W_x ~ N(0, input_scale²/I); b_f = forget_bias, other biases zero."""
        _check_int("input_size", input_size, 1)
        hid, heads = self.hidden_size, self.num_heads
        width = 4 * hid + 2 * heads
        w_x = self.input_scale * jax.random.normal(key, (input_size, width), dtype) / math.sqrt(input_size)
        b = jnp.zeros((width,), dtype).at[4 * hid + heads :].set(self.forget_bias)
        return {"W_x": w_x, "b": b}

    def zero_state(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> MLSTMState:
        heads, dh = self.num_heads, self.head_dim
        return MLSTMState(
            jnp.zeros((*batch_shape, heads, dh, dh), dtype),
            jnp.zeros((*batch_shape, heads, dh), dtype),
            jnp.zeros((*batch_shape, heads), dtype),
            jnp.zeros((*batch_shape, self.hidden_size), dtype),
        )

    def read(self, state: MLSTMState) -> dict[str, Any]:
        return {"highway": MLSTMMemory(state.C, state.n, state.m)}

    def _inputs(self, params: Params, x: jax.Array) -> _MLSTMInputs:
        """q, k/√Dh, v, o^pre [NH, Dh] and log ĩ, f^pre [NH] from one input x [I]."""
        hid, heads, dh = self.hidden_size, self.num_heads, self.head_dim
        u = x @ params["W_x"] + params["b"]
        q, k, v, pre_o = u[: 4 * hid].reshape(4, heads, dh)
        log_i, pre_f = u[4 * hid :].reshape(2, heads)
        return _MLSTMInputs(q, k / math.sqrt(dh), v, pre_o, log_i, pre_f)

    def step(self, params: Params, edges: dict[str, Any], x: jax.Array) -> MLSTMState:
        inp = self._inputs(params, x)
        h_tilde, mem = mlstm_memory_step(inp.q, inp.k, inp.v, inp.log_i, inp.pre_f, edges["highway"], self.eps)
        return MLSTMState(*mem, self._h(inp.pre_o, h_tilde))

    def _h(self, pre_o: jax.Array, h_tilde: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(pre_o).reshape(self.hidden_size) * h_tilde.reshape(self.hidden_size)

    def output(self, state: MLSTMState) -> jax.Array:
        return state.h

    # --- the parallel protocol (stabilised): see gradpaths.parallel ---------------------------

    def stabiliser(self, params: Params, z0: dict[str, Any], xs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(m_{t-1}, m_t) [T, NH] of one sequence xs [T, I] from z0 = read(s_0), by a max-plus scan.

        m_t = max(p_t + m_{t-1}, log ĩ_t) with p_t = log f̃_t while the memory holds something
        and p_t = −∞ (a restart at log ĩ_t) while it is empty (n_{t-1} = 0). n_t = f_t n_{t-1}
        + i_t k_t with f_t, i_t > 0, so the memory is empty before step t exactly when n_0 = 0
        and k_s = 0 for every s < t (barring an exact cancellation or underflow to 0 in n).
        """
        inp = jax.vmap(self._inputs, (None, 0))(params, xs)
        mem0 = z0["highway"]
        written = jax.lax.associative_scan(jnp.logical_or, jnp.any(inp.k != 0, axis=-1))  # k_s ≠ 0, s ≤ t
        held = jnp.any(mem0.n != 0, axis=-1) | jnp.concatenate([jnp.zeros_like(written[:1]), written[:-1]])
        m = max_plus_scan(jnp.where(held, jax.nn.log_sigmoid(inp.pre_f), -jnp.inf), inp.log_i, mem0.m)
        return jnp.concatenate([mem0.m[None], m[:-1]]), m

    def coefficients(self, params: Params, x: jax.Array, mu: tuple[jax.Array, jax.Array]) -> tuple[dict, dict]:
        """a_t = (f_t, f_t, 0) on (C, n, m) and b_t = (i_t v kᵀ, i_t k, m_t), given μ_t = (m_{t-1}, m_t) [NH]."""
        m_prev, m = mu
        inp = self._inputs(params, x)
        i, f = _gates_given_m(inp.log_i, jax.nn.log_sigmoid(inp.pre_f), m_prev, m)
        write_C, write_n = _mlstm_write(i, inp.k, inp.v)
        a = MLSTMMemory(f[:, None, None], f[:, None], jnp.zeros_like(m))
        return {"highway": a}, {"highway": MLSTMMemory(write_C, write_n, m)}

    def mul(self, a: Any, z: Any) -> Any:
        """a · z. A coefficient a_t (a dict like z) acts elementwise. A Jacobian J = (f, u, g)
        acts per head as J·(C, n, m) = (f C + u_C m, f n + u_n m, g m) and composes as
        J_2 J_1 = (f_2 f_1, f_2 u_1 + g_1 u_2, g_2 g_1)."""
        if not isinstance(a, MLSTMJacobian):
            return jax.tree.map(jnp.multiply, a, z)
        if isinstance(z, MLSTMJacobian):
            return MLSTMJacobian(
                a.f * z.f,
                a.f[:, None, None] * z.u_C + z.g[:, None, None] * a.u_C,
                a.f[:, None] * z.u_n + z.g[:, None] * a.u_n,
                a.g * z.g,
            )
        mem = z["highway"]
        C = a.f[:, None, None] * mem.C + a.u_C * mem.m[:, None, None]
        return {"highway": MLSTMMemory(C, a.f[:, None] * mem.n + a.u_n * mem.m[:, None], a.g * mem.m)}

    def finish(self, params: Params, z: dict[str, Any], x: jax.Array) -> MLSTMState:
        """s_t = (C, n, m, h)_t with h_t = σ(o^pre) ⊙ C_t q / (max(|n_tᵀ q|, e^{-m_t}) + ε)."""
        inp, mem = self._inputs(params, x), z["highway"]
        return MLSTMState(*mem, self._h(inp.pre_o, mlstm_retrieve(inp.q, mem, self.eps)))

    def jacobian(self, params: Params, edges: dict[str, Any], x: jax.Array) -> MLSTMJacobian:
        """J_t = ∂(C, n, m)_t/∂(C, n, m)_{t-1} at e_t (``MLSTMJacobian``).

        f_t is the stabilised forget gate; the m-column (u^C, u^n, g) is the step's own
        forward-mode derivative along m_{t-1} (a tangent of ones: heads do not mix), so the
        max's subgradient, a tie included, is exactly the one the sequential step takes.
        """
        inp, mem = self._inputs(params, x), edges["highway"]
        f = stabilised_gates(inp.log_i, inp.pre_f, mem.n, mem.m, empty_axis=-1)[1]
        update = lambda m_prev: mlstm_memory_update(inp.k, inp.v, inp.log_i, inp.pre_f, mem._replace(m=m_prev))
        col = jax.jvp(update, (mem.m,), (jnp.ones_like(mem.m),))[1]
        return MLSTMJacobian(f, col.C, col.n, col.m)


@register("slstm")
def slstm(
    hidden_size: int,
    *,
    num_heads: int = 1,
    forget_bias: float = 1.0,
    recurrent_scale: float = 1.0,
    input_scale: float = 1.0,
) -> SLSTM:
    """An sLSTM with ``num_heads`` block-diagonal recurrent heads (they must divide hidden_size)."""
    return SLSTM(hidden_size, num_heads, forget_bias, recurrent_scale, input_scale)


@register("mlstm")
def mlstm(
    hidden_size: int, *, num_heads: int = 1, forget_bias: float = 3.0, input_scale: float = 1.0, eps: float = 0.0
) -> MLSTM:
    """An mLSTM with ``num_heads`` matrix memories of size (H/num_heads)²; highway-only."""
    return MLSTM(hidden_size, num_heads, forget_bias, input_scale, eps)
