"""C4: without a forget gate, dL/dc passes back along the highway unchanged (the CEC).

With f ≡ 1, c_t = c_{t-1} + i_t ⊙ g_t, so the highway Jacobian ∂c_t/∂c_{t-1} is the
identity. For a loss at the last step τ = T-1, the 0-hop adjoint λ_s^{[0]}.c is then
the same vector for every s < τ: its relative spread over s measures C4. With a
forget gate it is multiplied by Π f instead (shown for contrast).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import gradpaths as gp
from experiments import _common as C
from experiments import _probe as P

CLAIM, NAME = "C4", "c4_cec"
TITLE = "C4: with f = 1 the highway carries dL/dc back unchanged"


def c_adjoint_norms(cell, params, xs, max_hops):
    """‖∂L/∂c_s‖ per hop class [T, K+1] for L = Σ h_{T-1} (one sequence)."""
    d = gp.decompose(cell, params, xs, lambda hs: hs[-1].sum(), max_hops=max_hops, parts=("state",))
    return jnp.linalg.norm(d.state_grads.c, axis=-1), d.state_grads.c[:, 0]


def spread(c0_TH) -> float:
    """Largest relative deviation of the 0-hop c-adjoint over s < T-1 from its value at s = T-2."""
    c0 = np.asarray(c0_TH)[:-1]
    ref = c0[-1]
    return float(np.max(np.linalg.norm(c0 - ref, axis=-1)) / np.linalg.norm(ref))


def verdict(spreads: list[float], eps: float) -> str:
    """SUPPORTED iff the 0-hop c-adjoint is constant in s (spread ≤ 10 eps) for every seed."""
    if not spreads:
        raise ValueError("verdict needs at least one spread")
    return C.SUPPORTED if max(spreads) <= 10 * eps else C.NOT_SUPPORTED


def run(args: C.Args) -> C.Outcome:
    n_t, n_h = args.pick((30, 8), (200, 32), (1000, 128))
    n_seeds = args.n_seeds(2, 16, 64)
    n_i, max_hops, dtype = 4, 3, args.dtype
    eps = float(jnp.finfo(dtype).eps)
    keys = jax.random.split(jax.random.key(4), n_seeds)
    curves, spreads = {}, {}
    for label, cell in (
        ("forget_gate=False", gp.lstm(n_h, forget_gate=False)),
        ("forget_gate=True (b_f=1)", gp.lstm(n_h)),
    ):

        def one(key, cell=cell):
            kp, kx = jax.random.split(key)
            params = cell.init(kp, n_i, dtype)
            xs = jax.random.normal(kx, (n_t, n_i), dtype)
            return c_adjoint_norms(cell, params, xs, max_hops)

        norms, c0 = jax.jit(jax.vmap(one))(keys)
        curves[label] = np.asarray(norms)
        spreads[label] = [spread(c) for c in np.asarray(c0)]
    v = verdict(spreads["forget_gate=False"], eps)
    s_off, s_on = max(spreads["forget_gate=False"]), float(np.median(spreads["forget_gate=True (b_f=1)"]))
    headline = (
        f"f≡1: max relative spread of the 0-hop ∂L/∂c_s over s = {C.fmt(s_off)} over n={n_seeds} seeds "
        f"(eps={eps:.1e}; a bound over every seed, so no sampling interval); with a forget gate: {C.fmt(s_on)} (median)"
    )
    summary = (
        f"LSTM, H={n_h}, T={n_t}, {n_seeds} seeds, {jnp.dtype(dtype).name}, loss Σ h_{{T-1}}. "
        "The 0-hop class of ∂L/∂c_s is the part carried only by the highway c_{s} → c_{s+1} → … → c_{T-1}.\n\n"
        "| LSTM | max spread over s (all seeds) | median spread |\n|---|---|---|\n"
        + "\n".join(f"| {k} | {max(v_):.2e} | {np.median(v_):.2e} |" for k, v_ in spreads.items())
        + "\n\nWith f ≡ 1 every distance 1..T-1 sees the same vector: the CEC carries the gradient unchanged. "
        "With a forget gate the same class decays as Π f_t."
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c4_highway.png")
    fig = _figure(curves, n_t, s_off, eps)
    config = {"T": n_t, "H": n_h, "I": n_i, "max_hops": max_hops, "seeds": n_seeds}
    data = {"spreads": spreads, "eps": eps, "median_norms": {k: np.median(v_, axis=0) for k, v_ in curves.items()}}
    return P.save(args, NAME, outcome, summary, fig, config, data, n_seeds)


def _figure(curves, n_t, s_off, eps):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    s = np.arange(n_t)
    for ax, (label, norms) in zip(axes, curves.items()):
        med = np.median(norms, axis=0)  # [T, K+1]
        for k in range(med.shape[1]):
            name = (
                "0 hops (highway)" if k == 0 else (f"≥{k} hops" if k == med.shape[1] - 1 else f"{k} hop{'s' * (k > 1)}")
            )
            y = np.where(med[:, k] > 0, med[:, k], np.nan)
            ax.plot(s, y, label=name, lw=2 if k == 0 else 1)
        ax.set_yscale("log")
        ax.set_xlabel("time step s (loss at s = T-1)")
        ax.set_title(f"LSTM {label}")
    axes[0].set_ylabel("‖∂L/∂c_s‖ by hop class (median over seeds)")
    axes[0].legend(fontsize=7)
    flat = "is flat in s" if s_off <= 10 * eps else "is NOT flat in s"
    fig.suptitle(f"C4: with f ≡ 1 the 0-hop ∂L/∂c_s {flat} (relative spread {s_off:.1e}); with a forget gate it decays")
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
