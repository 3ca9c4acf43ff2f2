"""h-detach (Kanuparthi et al., ICLR 2019): does blocking the h_{t-1} -> gates gradient speed up LSTM training?

Setting: an LSTM (b_f = 1, Gaussian W_h, Adam) on the copy task (10 symbols, lag T),
trained with h-detach probability p ∈ {0, 0.25, 0.5}: at each step t of each training
step the gradient through the ``gates`` edge is multiplied by α_t ~ Bernoulli(1 - p),
the forward pass unchanged. Same seeds (same initial weights and batches) for every p.
All p × seeds run as one seed-parallel computation of one compiled trainer (config p = max p,
each run's p carried in ``TrainState.h_detach``: bit-identical to a per-p config,
tested in tests/test_train.py), cached on disk under ``points/``.

Measured per run: the loss curve ℓ_k / baseline (baseline 10 ln 8 / (T + 20)), the score
A = mean_k ℓ_k / baseline (the normalised area under the loss curve: lower trains
faster; 1 = nothing learned), the final loss and the final copy accuracy.

Verdict (set before the run): INCONCLUSIVE if no p brings the median final loss below
LEARNED × baseline (nothing learned, so speed cannot be compared). Otherwise, with
"clearly better" as in c7_forget_training (beyond the seed spread): SUPPORTED if some
p > 0 is clearly better than p = 0 and none clearly worse; NUANCED if some are better
and some worse; NOT SUPPORTED if none is clearly better.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from experiments import _common as C
from experiments import c7_forget_training as FT
from experiments.c7_forget_training import clearly_better
from gradpaths import train as gt

CLAIM, NAME = "", "hdetach"
TITLE = "h-detach: blocking the h -> gates gradient against LSTM training speed on the copy task"
PS = (0.0, 0.25, 0.5)
LEARNED = 0.9


def sizes(args: C.Args) -> dict:
    n_t, n_h, n_b, steps, seg = args.pick((5, 8, 8, 20, 10), (10, 64, 32, 1200, 100), (100, 128, 64, 20000, 500))
    return {"T": n_t, "H": n_h, "B": n_b, "steps": steps, "segment": seg, "lr": 1e-2, "seeds": args.n_seeds(2, 4, 16)}


def config(sz: dict, args: C.Args) -> gt.TrainConfig:
    """The trainer of every run: masking compiled in (p = max PS); each run sets its own p."""
    return gt.TrainConfig(
        task="copy",
        T=sz["T"],
        cell="lstm",
        hidden_size=sz["H"],
        forget_bias=1.0,
        recurrent_init="gaussian",
        batch_size=sz["B"],
        steps=sz["steps"],
        segment=sz["segment"],
        lr=sz["lr"],
        h_detach=max(PS),
        dtype="float64" if args.float64 else "float32",
    )


def sweep(args: C.Args, sz: dict) -> dict:
    """{"steps" [K], "p=x": {Metrics field: [seeds][K]}}, cached on disk."""
    cfg = config(sz, args)
    seeds = sz["seeds"]

    def compute():
        trainer = gt.make_trainer(cfg)
        init = lambda key, p: trainer.init(key)._replace(h_detach=p)
        p_R = jnp.repeat(jnp.asarray(PS, jnp.result_type(float)), seeds)
        C.progress(f"{NAME}: training {len(PS)} values of p × {seeds} seeds, {cfg.steps} steps")
        m = FT.train_runs(cfg, init, FT.seed_keys(seeds, len(PS)), p_R)
        out = {"steps": m["step"][0]}
        for i, p in enumerate(PS):
            out[f"p={p:g}"] = {f: v[i * seeds : (i + 1) * seeds] for f, v in m.items()}
        return out

    return C.cached(FT.sweep_path(args, NAME, cfg, PS, seeds), compute)


def verdict(scores: list, final_rel: list[float]) -> str:
    """scores: per p (PS order, p = 0 first) the per-seed scores A; final_rel: per p the
    median final loss / baseline."""
    if len(scores) < 2 or len(final_rel) != len(scores):
        raise ValueError(f"verdict needs scores and final losses for p = 0 and at least one p > 0, got {len(scores)}")
    if not min(final_rel) < LEARNED:
        return C.INCONCLUSIVE
    better = [clearly_better(s, scores[0]) for s in scores[1:]]
    worse = [clearly_better(scores[0], s) for s in scores[1:]]
    if any(better):
        return C.NUANCED if any(worse) else C.SUPPORTED
    return C.NOT_SUPPORTED


def run(args: C.Args) -> C.Outcome:
    sz = sizes(args)
    res = sweep(args, sz)
    names = [f"p={p:g}" for p in PS]
    base = float(FT.curves(res, names[0], "baseline")[0, 0])
    loss = {k: FT.curves(res, k) / base for k in names}  # [seeds, segments]
    acc = {k: FT.curves(res, k, "accuracy")[:, -1] for k in names}
    diverged = {k: int(np.asarray(res[k]["diverged"], bool)[:, -1].sum()) for k in names}
    steps = np.asarray(res["steps"], float)
    score = {k: np.nanmean(v, axis=1) for k, v in loss.items()}
    final = {k: float(np.nanmedian(v[:, -1])) for k, v in loss.items()}
    v = verdict([score[k] for k in names], [final[k] for k in names])
    med = {k: float(np.median(score[k])) for k in names}
    headline = (
        f"copy T={sz['T']}, {sz['steps']} steps: median score A (mean loss/baseline) "
        + ", ".join(f"{k} {C.fmt(med[k])}" for k in names)
        + "; final loss/baseline "
        + ", ".join(f"{k} {C.fmt(final[k])}" for k in names)
    )
    if v == C.INCONCLUSIVE:
        headline = f"nothing learned (final loss ≥ {LEARNED}×baseline for every p); " + headline
    better = [k for k in names[1:] if clearly_better(score[k], score[names[0]])]
    worse = [k for k in names[1:] if clearly_better(score[names[0]], score[k])]
    agrees = True if v == C.SUPPORTED else (False if worse and not better else None)
    rep = C.Reproduction(
        "Kanuparthi et al. 2019 (h-detach)",
        f"LSTM H={sz['H']} copy T={sz['T']}, p ∈ {{{', '.join(n[2:] for n in names)}}}, {sz['seeds']} seeds, "
        f"{sz['steps']} Adam steps",
        "h-detach (p = 0.25-0.5) speeds up LSTM training on the copy task",
        f"score A {', '.join(f'{k} {C.fmt(med[k])}' for k in names)}; clearly faster: {better or 'none'}, "
        f"clearly slower: {worse or 'none'}",
        agrees,
    )
    rows = "\n".join(
        f"| {k} | {C.fmt(med[k])} | {C.fmt(float(np.percentile(score[k], 25)))}–"
        f"{C.fmt(float(np.percentile(score[k], 75)))} | {C.fmt(final[k])} | {C.fmt(float(np.nanmedian(acc[k])))} | "
        f"{diverged[k]} |"
        for k in names
    )
    summary = (
        f"LSTM H={sz['H']} (b_f=1) on copy T={sz['T']} (baseline {C.fmt(base)} nats/step), batch {sz['B']}, "
        f"Adam lr {sz['lr']}, {sz['steps']} steps, {sz['seeds']} seeds (same seeds for every p). Score A = mean "
        "over training of loss/baseline (lower trains faster).\n\n"
        "| h-detach p | median A | A IQR | final loss/baseline | final copy accuracy | diverged |\n"
        "|---|---|---|---|---|---|\n" + rows
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "hdetach.png", (rep,))
    C.write_outputs(
        args,
        NAME,
        config=sz,
        data={"score": score, "final_rel": final, "loss_rel": loss, "accuracy": acc, "steps": steps},
        outcome=outcome,
        summary=summary,
        figures={"hdetach.png": _figure(steps, loss, score, sz, v)},
        seeds=sz["seeds"],
    )
    return outcome


def _figure(steps, loss, score, sz, v):
    import matplotlib.pyplot as plt

    from experiments.c2_vanishing import band

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    for j, (k, y) in enumerate(loss.items()):
        band(axes[0], steps, y, f"C{j}", f"h-detach {k}")
        axes[1].plot(np.full(len(score[k]), j), score[k], "o", color=f"C{j}", alpha=0.6)
        axes[1].plot([j - 0.25, j + 0.25], [np.median(score[k])] * 2, color="k", lw=2)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("copy loss / memoryless baseline (median, IQR)")
    axes[0].legend(fontsize=8)
    axes[1].set_xticks(range(len(loss)), list(loss), fontsize=8)
    axes[1].set_ylabel("score A = mean loss/baseline over training")
    axes[1].set_xlabel("h-detach probability (seeds: dots; median: bar)")
    meds = ", ".join(f"{k} {C.fmt(float(np.median(a)))}" for k, a in score.items())
    fig.suptitle(f"h-detach on copy T={sz['T']}, LSTM H={sz['H']}: {v}; median score A {meds}")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
