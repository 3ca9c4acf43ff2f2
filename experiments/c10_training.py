"""C10 after training: do highway-only cells learn copy where the tanh RNN stays at the baseline?

Setting: the highway-only cells (``_probe.HIGHWAY_ONLY``, with ``_probe.OPTIONS``), the tanh RNN, the LSTM
(b_f = 1) and 2-layer stacks of minGRU and of LSTM (``TrainConfig.layers``), trained with the experiments'
recipe (``_train.config``: Adam 1e-2, clip 1, float32, one batch size and step budget) on copy T = 10 and
adding T = 50; the LSTM at H, every other model at the width whose parameter count is closest to it
(``_probe.matched``). Measured per seed and task:

- final loss / ``Task.baseline`` and success, below ``SUCCESS`` (C8's bar);
- at init and after training, through the model's readout, for the loss of the **last step**
  of a fixed batch at a longer lag (copy 100: the symbols lie ≥ 100 back; adding 200: the first mark):
  ``_probe.long_range`` (the long-range share ‖G_{d≥D}‖/‖g‖, the highway adjoint against
  Σ log a_t, and for stacks each layer's share and ‖∂L/∂s_t‖ per layer, the time × depth map).

Rule (CLAIMS.md C10's training half; the per-model test fixed after exploratory runs, see docs/claims.md),
on copy: the lag counts only if the tanh RNN's median r ≥ ``AT_BASELINE`` (else INCONCLUSIVE: a longer
lag would decide). Per highway-only model (six cells, the minGRU stack), ``_stats.decide`` on its success
rate (Wilson 95%) against 1/2: above, it learns copy; below, it does not. Over the models: ``_probe.cases``.
Adding and the shares are reported, not scored.
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


def sizes(args: C.Args) -> dict:
    """Per-scale settings. Default: 8 seeds × 400 steps at batch 16, 10-75 s a model on one core (the LRU solves
    copy in 300-400 steps). ``skip``: the mLSTM matched to the LSTM on adding (2 inputs) has H = 372, a 93 × 93
    memory per head, and took over 9 min on one core, so the default run trains it on copy only."""
    copy, adding = ("copy", 10, 100), ("adding", 50, 200)  # (task, T trained, T probed)
    everyone = ("rnn", "lstm", *P.HIGHWAY_ONLY)
    return args.picks(
        tasks=((("copy", 5, 12), ("adding", 6, 12)), (copy, adding), (copy, adding)),
        skip=((("adding", "lru"),), (("adding", "mlstm"),), ()),  # quick: a smoke test of the skip
        cells=(("rnn", "lstm", "lru"), everyone, everyone),
        stacks=((), ("mingru", "lstm"), ("mingru", "lstm")),  # 2-layer stacks, named "2×<cell>"
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
    out = {k: cfg(k, sz["H"] if k == "lstm" else width(k, 1)) for k in sz["cells"] if (task, k) not in sz["skip"]}
    return out | {f"2×{k}": cfg(k, width(k, 2), 2) for k in sz["stacks"]}


def probe(cfg: gt.TrainConfig, t_probe: int, n_b: int, max_d: int):
    """params [seeds] -> ``_probe.long_range`` per seed, float64, on a fixed batch of (cfg.task, t_probe)."""
    task, cell = tasks.make(cfg.task, t_probe), gt.make_cell(cfg)
    batch = task.sample(jax.random.key(2024), n_b)
    batch = batch._replace(mask=jnp.zeros_like(batch.mask).at[:, -1].set(1))  # the last step's loss only

    def one(params):
        w = params["readout"]
        loss = lambda hs: tasks.loss_and_accuracy(task, hs @ w["W"] + w["b"], batch)[0]
        return P.long_range(cell, params["cell"], batch.inputs.astype(jnp.float64), loss, max_d)

    over_seeds = gt.over_seeds(one)  # jitted once: the init and trained probes share the compile
    return lambda params: jax.tree.map(np.asarray, over_seeds(params))


def verdict(ratios: dict[str, np.ndarray]) -> tuple[str, dict[str, S.Decision]]:
    """ratios: {model: final loss / baseline per seed (NaN: diverged)} on copy, with "rnn" the reference."""
    rnn = TR.median_ratio(ratios["rnn"])
    if rnn < AT_BASELINE:
        why = f"the tanh RNN learned (median final/baseline {rnn:.3g} < {AT_BASELINE}): a longer lag would decide"
        return C.INCONCLUSIVE, {"rnn": S.inconclusive(why, len(ratios["rnn"]))}
    rate = lambda k: S.decide(S.rate(TR.solved(ratios[k], SUCCESS)), null=0.5, what=f"{k}'s success rate")
    parts = {k: rate(k) for k in ratios if k.removeprefix("2×") in P.HIGHWAY_ONLY}
    if not parts:
        raise ValueError("verdict needs at least one highway-only model beside the rnn")
    return P.cases([d.verdict for d in parts.values()]), parts


def run(args: C.Args) -> C.Outcome:
    res, cfgs, sz = {}, {}, sizes(args)
    n = sz["seeds"]
    for task, T, t_probe in sz["tasks"]:
        cfgs[task] = models(args, sz, task, T)
        for k, cfg in cfgs[task].items():
            rec = TR.train(args, cfg, n, keep_params=True)
            init = gt.over_seeds(gt.make_trainer(cfg).init)(TR.seed_keys(n)).params
            measure = probe(cfg, t_probe, sz["probe_batch"], sz["max_d"])
            res[task, k] = {"ratio": TR.final_ratio(rec), "curve": TR.arm(rec) / rec["baseline"],
                            "steps": np.asarray(rec["steps"]), "diverged": int(TR.diverged(rec).sum()),
                            "init": measure(jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), init)),
                            "trained": measure(TR.load_params(rec["params"], jnp.float64))}  # fmt: skip
            C.progress(f"  C10 training {task} {k}: H={cfg.hidden_size}, median final/baseline "
                       f"{C.fmt(TR.median_ratio(res[task, k]['ratio']))}")  # fmt: skip
    v, parts = verdict(copy := {k: res["copy", k]["ratio"] for k in cfgs["copy"]})
    n_i = {t: tasks.make(t, T).input_size for t, T, _ in sz["tasks"]}
    share = lambda t, k, when: P.ci(res[t, k][when]["share"])
    log_share = lambda t, k: np.log(np.maximum(res[t, k]["trained"]["share"], 1e-300))

    def row(t, T, k, cfg):
        r, ok = res[t, k], TR.solved(res[t, k]["ratio"], SUCCESS)
        vs = "reference" if k == "lstm" else P.brief(S.bootstrap_diff(log_share(t, k), log_share(t, "lstm")))
        g = np.max(r["trained"].get("log_gap", np.nan))
        return [f"{t} T={T}", k, cfg.hidden_size, P.n_params(gt.make_cell(cfg), n_i[t]),
                f"{int(ok.sum())}/{n} {S.rate(ok).ci()}", P.ci(r["ratio"]).text(), r["diverged"],
                parts[k].verdict if t == "copy" and k in parts else "—", share(t, k, "init").text(),
                share(t, k, "trained").text(), vs, C.fmt(float(g)) if np.isfinite(g) else "n/a"]  # fmt: skip

    rows = [row(t, T, k, cfg) for t, T, _ in sz["tasks"] for k, cfg in cfgs[t].items()]
    header = ["task", "model", "H", "parameters", f"success (< {SUCCESS}×baseline) [Wilson 95%]", "final loss/baseline "
              "median [95% CI]", "diverged", "learns copy", "long-range share at init", "after training",
              "log-ratio to the LSTM after", "max abs Δ log, highway adjoint vs Σ log a"]  # fmt: skip
    per_layer = lambda t, k, w: ", ".join(C.fmt(x) for x in np.median(res[t, k][w]["layer_share"], 0))
    layer = "; ".join(f"{t} {k}: init {per_layer(t, k, 'init')} → trained {per_layer(t, k, 'trained')}"
                      for t, k in res if k.startswith("2×"))  # fmt: skip
    t_copy, tp_copy = next((T, tp) for t, T, tp in sz["tasks"] if t == "copy")
    solved = lambda t: ", ".join(k for k in cfgs[t] if np.mean(TR.solved(res[t, k]["ratio"], SUCCESS)) > 0.5) or "none"
    summary = (
        f"Recipe: Adam 1e-2, clip 1, float32, batch {sz['batch']}, {sz['steps']} steps, {n} seeds; parameters matched "
        f"to the LSTM (H={sz['H']}). Probes: the last step's task loss on a fixed batch of {sz['probe_batch']} at the "
        f"probe lag ({', '.join(f'{t}: T={tp}' for t, _, tp in sz['tasks'])}), float64, long range d ≥ {sz['max_d']}. "
        f"Rule: the tanh RNN at the baseline "
        f"(median ≥ {AT_BASELINE}), then each highway-only model's success rate against 1/2.\n\n"
        + "\n".join(f"- {k}: {d.text()}" for k, d in parts.items())
        + "\n\n" + C.table(header, rows)
        + (f"\n\nStacks, share of G_d≥{sz['max_d']} in each layer (bottom first): {layer}" if layer else "")
        + "".join(f"\n\nThe {k} is not trained on {t} at this scale (see ``sizes``)." for t, k in sz["skip"])
    )  # fmt: skip
    said = lambda verdict: ", ".join(k for k, d in parts.items() if d.verdict == verdict) or "none"
    headline = (
        f"copy T={t_copy}, n={n}: tanh RNN final/baseline {P.ci(copy['rnn']).text()}; learn copy: {said(C.SUPPORTED)}; "
        f"do not: {said(C.NOT_SUPPORTED)}; long-range share (d ≥ {sz['max_d']}, probed at T={tp_copy}) init → trained: "
        + ", ".join(f"{k} {C.fmt(share('copy', k, 'init').value)} → {C.fmt(share('copy', k, 'trained').value)}"
                    for k in cfgs["copy"])
        + "".join(f"; {k}: {d.reason}" for k, d in parts.items() if d.verdict == C.INCONCLUSIVE)
        + "".join(f"; {t} T={T} (not scored) solved by: {solved(t)}" for t, T, _ in sz["tasks"] if t != "copy")
    )  # fmt: skip
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c10_training.png")
    config = sz | {"models": {f"{t}/{k}": c for t, m in cfgs.items() for k, c in m.items()}}
    data = {"decisions": parts, "ratio": {f"{t}/{k}": r["ratio"] for (t, k), r in res.items()}}
    data["share"] = {f"{t}/{k}/{w}": share(t, k, w) for (t, k) in res for w in ("init", "trained")}
    data["layer_share"] = {f"{t}/{k}": r["trained"]["layer_share"] for (t, k), r in res.items() if "×" in k}
    return C.save(args, NAME, outcome, summary, _figure(res, cfgs, parts, sz, v), config, data, n)


def _figure(res, cfgs, parts, sz, v):
    """One row per task: training curves, long-range shares at init and trained, each stack's time × depth map."""
    import matplotlib.pyplot as plt

    color = {k: f"C{j % 10}" for j, k in enumerate(dict.fromkeys(k for m in cfgs.values() for k in m))}
    stacks = [k for k in color if k.startswith("2×")]
    n_r, n_c = len(sz["tasks"]), 2 + len(stacks)
    fig, grid = plt.subplots(n_r, n_c, figsize=(2.5 + 4.2 * n_c, 4.4 * n_r), squeeze=False)
    for axes, (t, T, t_probe) in zip(grid, sz["tasks"]):
        for j, k in enumerate(cfgs[t]):
            r = res[t, k]
            C.band(axes[0], r["steps"], r["curve"], color[k], k)
            for when, mk, dx, face in (("init", "o", -0.15, "none"), ("trained", "s", 0.15, None)):
                label = None if j else {"init": "at init", "trained": "after training"}[when]
                C.errorbars(axes[1], [j + dx], [P.ci(r[when]["share"])], fmt=mk, color=color[k], mfc=face, capsize=3,
                            label=label)  # fmt: skip
        for y, ls in ((1.0, "--"), (SUCCESS, ":")):
            axes[0].axhline(y, color="k", ls=ls, lw=0.8)
        axes[0].set(yscale="log", xlabel="training step", ylabel="loss / baseline (median, 95% CI)")
        axes[0].set_title(f"{t} T={T} ({'scored' if t == 'copy' else 'not scored'}); dashed: no-memory baseline, "
                          "dotted: success", fontsize=9)  # fmt: skip
        axes[0].legend(fontsize=7, ncol=2)
        axes[1].set_xticks(range(len(cfgs[t])), list(cfgs[t]), rotation=35, fontsize=8)
        axes[1].set(xlim=(-0.6, len(cfgs[t]) - 0.4), yscale="log", ylabel=f"‖G_d≥{sz['max_d']}‖ / ‖g‖ (median, 95% CI)")
        axes[1].set_title(f"long-range share, {t} probed at T={t_probe}: init (open), trained (filled)", fontsize=9)
        axes[1].legend(fontsize=7)
        for ax, k in zip(axes[2:], stacks):
            P.depth_map(fig, ax, res[t, k]["trained"]["layer_time"], f"{t}: {k} trained")
    fig.suptitle(f"C10 (training half) {v}: " + ", ".join(f"{k} {d.verdict}" for k, d in parts.items()), fontsize=10)
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
