"""C10 at initialisation: do highway-only cells keep the long-range gradient an LSTM keeps only at large b_f?

Setting: each highway-only cell in ``gradpaths.cells.REGISTRY`` (minGRU, minLSTM, LRU,
RG-LRU, mLSTM, S6; every within-layer temporal path is its elementwise highway), the LSTM
(b_f = 1) and the tanh RNN, each at the hidden size whose parameter count is closest to
the LSTM's (matched parameters), inputs N(0, 1), a random unit readout r of the output,
loss r·y_{T-1}; for this last-step loss G_{d≥D} is the sum of ``by_step`` over t ≤ T−1−D
(``_probe.long_range``, one reverse pass). Measured per seed:

- the long-range share ‖G_{d≥D}‖ / ‖g‖ (scale-free: absolute norms depend on each cell's
  output scale, so the share is what is compared; the absolute norm is reported beside it);
- for cells with an elementwise real highway z_t = a_t ⊙ z_{t-1} + b_t: the highway
  adjoint's log-norm against Σ log a_t (``analysis.highway_log_prediction``), max |Δ log|;
- in 2-layer stacks (``gp.stack``) of minGRU and of LSTM: the time × depth map ‖∂L/∂s_t‖
  per layer, and the share of G_{d≥D} in each layer's parameters.

Rule (the init half of CLAIMS.md C10, written before running): per highway-only cell, the
difference of median log shares (cell − LSTM) gets a 95 % bootstrap interval over seeds;
the cell keeps at least the LSTM's long-range gradient if it lies above 0, less if below,
undecided otherwise; verdict over the cells by ``_probe.cases``. The training half (copy
at a length where the tanh RNN stays at the baseline) is ``c10_training``; the report combines both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import gradpaths as gp
from experiments import _common as C
from experiments import _probe as P
from experiments import _stats as S
from gradpaths import analysis as A
from gradpaths.cells import REGISTRY

CLAIM, NAME = "C10", "c10_modern"
TITLE = "C10 at init: long-range gradients of highway-only cells against the LSTM"
HIGHWAY_ONLY = P.HIGHWAY_ONLY
REFERENCES = ("lstm", "rnn")


def measure(cell, params, xs, r, max_d: int) -> dict:
    """``_probe.long_range`` for the loss r·y_{T-1}."""
    return P.long_range(cell, params, xs, lambda hs: A.readout_loss(hs, r, A.last_step(xs.shape[-2], xs.dtype)), max_d)


def verdict(log_share: dict[str, np.ndarray]) -> tuple[str, dict[str, S.Decision]]:
    """log_share: {cell: per-seed log long-range share}, with "lstm" the reference."""
    ref = log_share["lstm"]
    parts = {
        k: S.decide(S.bootstrap_diff(v, ref, stat="median"), what=f"log share {k} − lstm")
        for k, v in log_share.items()
        if k in HIGHWAY_ONLY
    }
    if not parts:
        raise ValueError("verdict needs at least one highway-only cell beside the lstm")
    return P.cases([p.verdict for p in parts.values()]), parts


def run(args: C.Args) -> C.Outcome:
    n_t, h_lstm, n_b, max_d = args.pick((40, 8, 2, 20), (160, 16, 2, 100), (600, 128, 16, 100))
    n_seeds, n_i, dtype = args.n_seeds(3, 8, 32), 4, jnp.float64  # float64: shares far below float32's range
    target = P.n_params(gp.lstm(h_lstm), n_i)
    names = args.pick(("lstm", "mingru", "lru"), (*REFERENCES, *HIGHWAY_ONLY), (*REFERENCES, *HIGHWAY_ONLY))  # compiles
    make = lambda k: lambda hh: REGISTRY[k](hh, **dict(P.OPTIONS.get(k, ())))
    cells = {k: P.matched(make(k), target, n_i, P.width_multiple(k)) for k in names if k in REGISTRY}
    h = {k: c.hidden_size for k, c in cells.items()}
    two_lstm = gp.stack([gp.lstm(h_lstm // 2 + 2)] * 2)
    two = lambda make: P.matched(lambda hh: gp.stack([make(hh)] * 2), P.n_params(two_lstm, n_i), n_i)
    cells["2×minGRU"] = two(make("mingru")) if "mingru" in cells else None
    cells["2×LSTM"] = None if args.quick else two_lstm
    cells = {k: c for k, c in cells.items() if c is not None}
    res = {}
    for i, (k, cell) in enumerate(cells.items()):
        data = P.draws(cell, jax.random.key(100 + i), n_seeds, n_i, n_b, n_t, dtype)
        res[k] = P.over_seeds_and(lambda p, x, r, _, cell=cell: measure(cell, p, x, r, max_d), data, jnp.zeros(1))
        res[k] = jax.tree.map(lambda v: v[:, 0], res[k])
        C.progress(f"  C10 {k}: {P.n_params(cell, n_i)} parameters, {n_seeds} seeds done")
    log_share = {k: np.log(np.maximum(res[k]["share"], 1e-300)) for k in cells}
    v, parts = verdict(log_share)
    share = {k: P.ci(res[k]["share"]) for k in cells}
    gap = {k: float(np.max(res[k]["log_gap"])) for k in cells if np.isfinite(res[k].get("log_gap", np.nan)).all()}
    headline = (
        f"at init: ‖G_d≥{max_d}‖/‖g‖ median, n={n_seeds}: "
        + ", ".join(f"{k} {C.fmt(share[k].value)}" for k in cells if "×" not in k)
        + "; log-ratio to the LSTM [95% CI]: "
        + ", ".join(f"{k} {P.brief(p)}" for k, p in parts.items())
    )
    rows = "\n".join(
        f"| {k} | {h.get(k, '—')} | {P.n_params(c, n_i)} | {share[k].text()} | {C.fmt(np.median(res[k]['norm']))} | "
        + (f"{parts[k].verdict} ({P.brief(parts[k])})" if k in parts else "reference")
        + f" | {C.fmt(gap[k]) if k in gap else 'n/a'} |"
        for k, c in cells.items()
    )  # fmt: skip
    summary = (
        f"T={n_t}, batch {n_b}, {n_seeds} seeds, float64, loss r·y_{{T-1}}, long range d ≥ {max_d}, "
        f"parameters matched to the LSTM (H={h_lstm}, {target}). The init half of C10; "
        "the training half is c10_training.\n\n"
        "| cell | H | parameters | long-range share median [95% CI] | ‖G_d≥D‖ median | "
        "keeps ≥ the LSTM's (log-ratio [95% CI]) | max abs Δ log, highway adjoint vs Σ log a |\n"
        + "|---|---|---|---|---|---|---|\n"
        + rows
        + "\n\nStacks: share of G_d≥D in each layer's parameters (bottom first): "
        + "; ".join(
            f"{k}: {', '.join(C.fmt(x) for x in np.median(res[k]['layer_share'], 0))}" for k in cells if "×" in k
        )
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c10_modern.png")
    fig = _figure(res, share, parts, cells, max_d, v)
    config = {"T": n_t, "B": n_b, "I": n_i, "max_distance": max_d, "lstm_H": h_lstm, "params": target, "H": h}
    data = {
        "share": share,
        "decisions": parts,
        "log_gap": gap,
        "layer_share": {k: res[k]["layer_share"] for k in cells},
    }
    return P.save(args, NAME, outcome, summary, fig, config, data, n_seeds)


def _figure(res, share, parts, cells, max_d, v):
    import matplotlib.pyplot as plt

    flat = [k for k in cells if "×" not in k]
    stacks = [k for k in cells if "×" in k]
    fig, axes = plt.subplots(1, 1 + len(stacks), figsize=(5.5 + 4.5 * len(stacks), 4.2))
    e = np.array([[share[k].value, share[k].lo, share[k].hi] for k in flat])
    cols = ["C3" if k in parts and parts[k].verdict == C.SUPPORTED else "C0" if k in parts else "0.4" for k in flat]
    axes[0].bar(range(len(flat)), e[:, 0], color=cols)
    axes[0].errorbar(
        range(len(flat)), e[:, 0], yerr=[e[:, 0] - e[:, 1], e[:, 2] - e[:, 0]], fmt="none", ecolor="k", capsize=3
    )
    axes[0].set_yscale("log")
    axes[0].set_xticks(range(len(flat)), flat, rotation=30, fontsize=8)
    axes[0].set_ylabel(f"‖G_d≥{max_d}‖ / ‖g‖ (median, 95% CI)")
    axes[0].set_title("matched parameters; red: above the LSTM (95% CI)", fontsize=9)
    for ax, k in zip(axes[1:], stacks):
        P.depth_map(fig, ax, res[k]["layer_time"], k)
    fig.suptitle(f"C10 (init half) {v}: " + ", ".join(f"{k} {parts[k].verdict}" for k in parts))
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
