"""C10 after training: do highway-only cells learn copy where the tanh RNN stays at the baseline?

Setting: each highway-only cell (``_probe.HIGHWAY_ONLY``), the tanh RNN and the LSTM (b_f = 1)
trained with the experiments' recipe (``_train.config``: Adam 1e-2, clip 1, float32, the same
batch and steps) on ``tasks.make(task, T)``; the LSTM at H, every other model at the width whose
parameter count is closest to that LSTM's (``_probe.matched``), and 2-layer stacks
(``TrainConfig.layers``) of minGRU and of LSTM matched to it too; ``_probe.OPTIONS`` (RG-LRU
with recurrentgemma's bounded derivative of √(1 − a²): with the exact one, 5 of 8 seeds diverged
on copy where a_t → 1; mLSTM with 4 heads, as xLSTM). Measured per seed:

- final loss / ``Task.baseline`` (the last segment's mean) and success, r < ``SUCCESS`` (C8's bar);
- at init and after training, through the model's own readout, for the task loss of the **last
  step only** on a fixed batch of the same task at a longer lag T_probe (copy 100: the symbols lie
  ≥ 100 steps before the last recall): ``_probe.long_range``, i.e. the long-range share
  ‖G_{d≥D}‖/‖g‖, the highway adjoint against Σ log a_t (max |Δ log|), and, in the stacks, each
  layer's share of G_{d≥D} and ‖∂L/∂s_t‖ per layer (the time × depth map).

Rule (the training half of CLAIMS.md C10, written before running), on copy: the lag counts only
if the tanh RNN stays at the baseline (median r ≥ ``AT_BASELINE``, h-detach's bar for a reference
that has not learned); otherwise INCONCLUSIVE (a longer lag would decide). Per highway-only model
(the six cells and the minGRU stack), ``_stats.decide`` on its success rate (Wilson 95%) against
1/2: above, it learns copy; below, it does not; undecided otherwise. Over the models:
``_probe.cases``. The long-range shares after training are measured and reported, not scored.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common as C
from experiments import _probe as P
from experiments import _stats as S
from experiments import _train as TR
from gradpaths import tasks
from gradpaths import train as gt

CLAIM, NAME = "C10", "c10_training"
TITLE = "C10 after training: highway-only cells on copy against the tanh RNN and the LSTM"
SUCCESS, AT_BASELINE = 0.5, 0.9
STACKS = ("mingru", "lstm")  # 2-layer stacks, named "2×<cell>"


def sizes(args: C.Args) -> dict:
    """Per-scale settings. Default, on one core: 8 seeds × 400 copy steps at batch 16 take 5-30 s a model
    (S6 and mLSTM the dearest). The LRU solves copy in 300-400 steps; the others are near 0.8× the baseline
    by then, and minGRU, minLSTM and RG-LRU stall at 0.71× after 3000 steps at H = 64 (exploratory runs)."""
    copy, adding = ("copy", 10, 100), ("adding", 50, 200)  # (task, T trained, T probed)
    everyone = ("rnn", "lstm", *P.HIGHWAY_ONLY)
    return args.picks(
        tasks=((("copy", 5, 12),), (copy,), (copy, adding)),
        cells=(("rnn", "lstm", "lru"), everyone, everyone),
        stacks=((), STACKS, STACKS),
        H=(4, 32, 64),
        batch=(8, 16, 32),
        steps=(20, 400, 3000),
        segment=(10, 100, 100),
        max_d=(8, 100, 100),
        probe_batch=(2, 8, 16),
    ) | {"seeds": args.n_seeds(2, 8, 16)}


def models(args: C.Args, sz: dict, task: str, T: int) -> dict[str, gt.TrainConfig]:
    """{name: config}: the LSTM at H; every other model at the width matched to its parameter count."""
    cfg = lambda name, h, layers=1: TR.config(
        args, task=task, T=T, cell=name, hidden_size=h, layers=layers, cell_options=P.OPTIONS.get(name, ()),
        batch_size=sz["batch"], steps=sz["steps"], segment=sz["segment"],
    )  # fmt: skip
    n_i = tasks.make(task, T).input_size
    target = P.n_params(gt.make_cell(cfg("lstm", sz["H"])), n_i)
    width = lambda name, layers: (
        P.matched(lambda h: gt.make_cell(cfg(name, h, layers)), target, n_i, P.width_multiple(name)).hidden_size
    )
    out = {k: cfg(k, sz["H"] if k == "lstm" else width(k, 1)) for k in sz["cells"]}
    return out | {f"2×{k}": cfg(k, width(k, 2), 2) for k in sz["stacks"]}


def restore(template, loaded, dtype):
    """A cached parameter tree (JSON lists) as arrays of ``dtype``, shaped like ``template`` (tuples for stacks)."""
    if isinstance(template, dict):
        return {k: restore(v, loaded[k], dtype) for k, v in template.items()}
    if isinstance(template, (tuple, list)):
        return tuple(restore(t, v, dtype) for t, v in zip(template, loaded))
    return jnp.asarray(loaded, dtype)


def probe(cfg: gt.TrainConfig, t_probe: int, n_b: int, max_d: int):
    """params [seeds] -> ``_probe.long_range`` per seed, float64, on a fixed batch of (cfg.task, t_probe)."""
    task, cell = tasks.make(cfg.task, t_probe), gt.make_cell(cfg)
    batch = task.sample(jax.random.key(2024), n_b)
    batch = batch._replace(mask=jnp.zeros_like(batch.mask).at[:, -1].set(1))  # the last step's loss only

    def one(params):
        w = params["readout"]
        loss = lambda hs: tasks.loss_and_accuracy(task, hs @ w["W"] + w["b"], batch)[0]
        return P.long_range(cell, params["cell"], batch.inputs.astype(jnp.float64), loss, max_d)

    return lambda params: jax.tree.map(np.asarray, gt.over_seeds(one)(params))


def verdict(ratios: dict[str, np.ndarray]) -> tuple[str, dict[str, S.Decision]]:
    """ratios: {model: final loss / baseline per seed (NaN: diverged)} on copy, with "rnn" the reference."""
    rnn = TR.median_ratio(ratios["rnn"])
    if rnn < AT_BASELINE:
        why = f"the tanh RNN learned (median final loss {rnn:.3g}× the baseline < {AT_BASELINE})"
        why += ": a longer lag would decide"
        return C.INCONCLUSIVE, {"rnn": S.inconclusive(why, len(ratios["rnn"]))}
    parts = {
        k: S.decide(S.rate(TR.solved(r, SUCCESS)), null=0.5, what=f"{k}'s success rate")
        for k, r in ratios.items()
        if k.removeprefix("2×") in P.HIGHWAY_ONLY
    }
    if not parts:
        raise ValueError("verdict needs at least one highway-only model beside the rnn")
    return P.cases([d.verdict for d in parts.values()]), parts


def run(args: C.Args) -> C.Outcome:
    sz, n = sizes(args), sizes(args)["seeds"]
    res, cfgs = {}, {}
    for task, T, t_probe in sz["tasks"]:
        cfgs[task] = models(args, sz, task, T)
        for k, cfg in cfgs[task].items():
            rec = TR.train(args, cfg, n, keep_params=True)
            init = gt.over_seeds(gt.make_trainer(cfg).init)(TR.seed_keys(n)).params
            f64 = lambda tree: jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), tree)
            measure = probe(cfg, t_probe, sz["probe_batch"], sz["max_d"])
            res[task, k] = {
                "ratio": TR.final_ratio(rec),
                "curve": TR.arm(rec) / rec["baseline"],
                "steps": np.asarray(rec["steps"]),
                "init": measure(f64(init)),
                "trained": measure(restore(init, rec["params"], jnp.float64)),
                "diverged": int(TR.diverged(rec).sum()),
            }
            C.progress(f"  C10 training {task} {k}: H={cfg.hidden_size}, median final/baseline "
                       f"{C.fmt(TR.median_ratio(res[task, k]['ratio']))}")  # fmt: skip
    copy = {k: res["copy", k]["ratio"] for k in cfgs["copy"]}
    v, parts = verdict(copy)
    n_i = {t: tasks.make(t, T).input_size for t, T, _ in sz["tasks"]}
    share = lambda t, k, when: P.ci(res[t, k][when]["share"])
    rows = []
    for t, T, _ in sz["tasks"]:
        for k, cfg in cfgs[t].items():
            r, lr = res[t, k], np.log(np.maximum(res[t, k]["trained"]["share"], 1e-300))
            vs = S.bootstrap_diff(lr, np.log(np.maximum(res[t, "lstm"]["trained"]["share"], 1e-300)))
            gap = r["trained"].get("log_gap")
            rows.append([
                f"{t} T={T}", k, cfg.hidden_size, P.n_params(gt.make_cell(cfg), n_i[t]),
                f"{int(TR.solved(r['ratio'], SUCCESS).sum())}/{n} {S.rate(TR.solved(r['ratio'], SUCCESS)).ci()}",
                P.ci(r["ratio"]).text(), r["diverged"],
                parts[k].verdict if t == "copy" and k in parts else "—",
                share(t, k, "init").text(), share(t, k, "trained").text(),
                "reference" if k == "lstm" else P.brief(vs),
                C.fmt(float(np.max(gap))) if gap is not None and np.isfinite(gap).all() else "n/a",
            ])  # fmt: skip
    header = ["task", "model", "H", "parameters", f"success (< {SUCCESS}×baseline) [Wilson 95%]"]
    header += ["final loss/baseline median [95% CI]", "diverged", "learns copy", "long-range share at init"]
    header += ["after training", "log-ratio to the LSTM after", "max abs Δ log, highway adjoint vs Σ log a"]
    layer = "; ".join(
        f"{k}: init {', '.join(C.fmt(x) for x in np.median(res['copy', k]['init']['layer_share'], 0))} → trained "
        + ", ".join(C.fmt(x) for x in np.median(res["copy", k]["trained"]["layer_share"], 0))
        for k in cfgs["copy"]
        if k.startswith("2×")
    )
    t_copy, tp_copy = next((T, tp) for t, T, tp in sz["tasks"] if t == "copy")
    summary = (
        f"Recipe: Adam 1e-2, clip 1, float32, batch {sz['batch']}, {sz['steps']} steps, {n} seeds; parameters matched "
        f"to the LSTM (H={sz['H']}). Probes: the last step's task loss on a fixed batch of {sz['probe_batch']} at the "
        f"probe lag (copy: T={tp_copy}), float64, long range d ≥ {sz['max_d']}. Rule: the tanh RNN at the baseline "
        f"(median ≥ {AT_BASELINE}), then each highway-only model's success rate against 1/2.\n\n"
        + "\n".join(f"- {k}: {d.text()}" for k, d in parts.items())
        + "\n\n" + C.table(header, rows)
        + (f"\n\nStacks, share of G_d≥{sz['max_d']} in each layer (bottom first): {layer}" if layer else "")
    )  # fmt: skip
    learned = [k for k, d in parts.items() if d.verdict == C.SUPPORTED]
    failed = [k for k, d in parts.items() if d.verdict == C.NOT_SUPPORTED]
    rnn = P.ci(copy["rnn"])
    headline = (
        f"copy T={t_copy}, n={n}: tanh RNN final/baseline {rnn.text()}; learn copy: {', '.join(learned) or 'none'}; "
        f"do not: {', '.join(failed) or 'none'}; long-range share (d ≥ {sz['max_d']}, probed at T={tp_copy}) "
        f"at init → trained: "
        + ", ".join(
            f"{k} {C.fmt(share('copy', k, 'init').value)} → {C.fmt(share('copy', k, 'trained').value)}"
            for k in cfgs["copy"]
        )
        + "".join(f"; {k}: {d.reason}" for k, d in parts.items() if d.verdict == C.INCONCLUSIVE)
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c10_training.png")
    config = sz | {"models": {f"{t}/{k}": c for t, m in cfgs.items() for k, c in m.items()}}
    data = {
        "decisions": parts,
        "ratio": {f"{t}/{k}": r["ratio"] for (t, k), r in res.items()},
        "share": {f"{t}/{k}/{w}": share(t, k, w) for (t, k) in res for w in ("init", "trained")},
        "layer_share": {f"{t}/{k}": r["trained"]["layer_share"] for (t, k), r in res.items() if k.startswith("2×")},
    }
    fig = _figure(res, cfgs["copy"], parts, sz, t_copy, tp_copy, v)
    return C.save(args, NAME, outcome, summary, fig, config, data, n)


def _figure(res, models_, parts, sz, t_copy, t_probe, v):
    import matplotlib.pyplot as plt

    stacks = [k for k in models_ if k.startswith("2×")]
    fig, axes = plt.subplots(1, 2 + len(stacks), figsize=(11 + 4.2 * len(stacks), 4.4))
    for j, k in enumerate(models_):
        r = res["copy", k]
        C.band(axes[0], r["steps"], r["curve"], f"C{j % 10}", k)
        for when, mk, dx in (("init", "o", -0.15), ("trained", "s", 0.15)):
            e = P.ci(r[when]["share"])
            label = None if j else ("at init" if when == "init" else "after training")
            face = "none" if when == "init" else None
            C.errorbars(axes[1], [j + dx], [e], fmt=mk, color=f"C{j % 10}", mfc=face, capsize=3, label=label)
    axes[0].axhline(1.0, color="k", ls="--", lw=0.8)
    axes[0].axhline(SUCCESS, color="k", ls=":", lw=0.8)
    axes[0].set(yscale="log", xlabel="training step", ylabel="loss / baseline (median, 95% CI)")
    axes[0].set_title(f"copy T={t_copy}; dashed: no-memory baseline, dotted: success", fontsize=9)
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].set_xticks(range(len(models_)), list(models_), rotation=35, fontsize=8)
    axes[1].set(yscale="log", ylabel=f"‖G_d≥{sz['max_d']}‖ / ‖g‖ (median, 95% CI)")
    axes[1].set_title(f"long-range share, copy probed at T={t_probe}: init (open), trained (filled)", fontsize=9)
    axes[1].legend(fontsize=7)
    for ax, k in zip(axes[2:], stacks):
        m = np.median(res["copy", k]["trained"]["layer_time"], 0)  # [L, T]
        im = ax.imshow(np.log10(np.maximum(m, 1e-300)), aspect="auto", origin="lower", cmap="magma",
                       vmin=np.log10(m.max()) - 8)  # fmt: skip
        ax.set_yticks(range(m.shape[0]), [f"layer {l}" for l in range(m.shape[0])])
        ax.set_xlabel(f"time step t (loss at t = {m.shape[1] - 1})")
        ax.set_title(f"{k} trained: log10 ‖∂L/∂s_t‖ per layer", fontsize=9)
        fig.colorbar(im, ax=ax)
    fig.suptitle(f"C10 (training half) {v}: " + ", ".join(f"{k} {d.verdict}" for k, d in parts.items()), fontsize=10)
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
