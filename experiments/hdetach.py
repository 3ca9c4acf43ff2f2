"""h-detach (Kanuparthi et al., ICLR 2019): blocking the h_{t-1} → gates gradient, in training and in expectation.

**Training.** An LSTM (b_f = 1, Gaussian W_h, Adam, clip 1) on the copy task, trained
with h-detach probability p ∈ ``PS``: at each step t of each training step the gradient
through the ``gates`` edge is multiplied by m_t ~ Bernoulli(1 − p), the forward pass
unchanged. The p values are arms of one compiled trainer (each run's p in
``TrainState.h_detach``), with the same seeds. Score A = mean over segments of loss /
``Task.baseline`` (lower trains faster).

Criterion (set before the run): INCONCLUSIVE if the reference arm p = 0 does not bring its
median final loss below LEARNED × baseline (p = 0 has not learned, so no speed-up or
slow-down against it can be read; the headline says so). Otherwise, per p > 0, the effect
A(p = 0) − A(p) (paired bootstrap of the median difference) through ``_stats.decide``;
SUPPORTED if some p > 0 is faster and none slower, NOT SUPPORTED if some is slower and none
faster, NUANCED if both, INCONCLUSIVE if no p > 0 is separated from p = 0 (with the seeds
needed). Default scale: batch 32, 1000 steps, where p = 0 learns but slowly (~0.7×baseline).

**The identity** (docs/derivations.md; tests/test_hdetach_identity.py): every path
crosses each step's h → gates edge at most once, so E_m[g_m] = Σ_k (1 − p)^k G^[k]
exactly. What the theory leaves open is measured here, on a fixed batch at
initialisation and after training (the p = 0 arm's weights): the relative variance of
the estimator, tr Cov(g_m) / ‖E g_m‖², over ``N_MASKS`` random masks for each p, and
how the reweighting moves the expected gradient, cos(E_p, G) and ‖E_p‖ / ‖G‖.

Reproduction: the paper's setting (copy T = 100 and 300, hidden 128, Adam 1e-3, batch
100, clip 1, p = 0.5) runs at ``--scale full``; otherwise "not run at this scale".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import gradpaths as gp
from experiments import _common as C
from experiments import _stats as S
from experiments import _train as TR
from gradpaths import tasks

CLAIM, NAME = "", "hdetach"
TITLE = "h-detach: blocking the h -> gates gradient against LSTM training speed on the copy task"
PS = (0.0, 0.25, 0.5)
VAR_PS = (0.1, 0.25, 0.5, 0.75)
LEARNED, N_MASKS = 0.9, 64
PAPER = {"T": (100, 300), "H": 128, "lr": 1e-3, "B": 100, "clip": 1.0, "p": 0.5}


def sizes(args: C.Args) -> dict:
    n_t, n_h, n_b, steps, seg = args.pick((3, 8, 8, 20, 10), (10, 64, 32, 1000, 100), (100, 128, 100, 20000, 500))
    return {"T": n_t, "H": n_h, "B": n_b, "steps": steps, "segment": seg, "seeds": args.n_seeds(2, 8, 16)}


def model(sz: dict) -> dict:
    """The network every arm trains and the variance measures: an LSTM with Gaussian W_h on copy."""
    return {"task": "copy", "T": sz["T"], "cell": "lstm", "hidden_size": sz["H"], "recurrent_init": "gaussian"}


def sweep(args: C.Args, sz: dict, ps=PS, **change) -> dict:
    schedule = {"batch_size": sz["B"], "steps": sz["steps"], "segment": sz["segment"], "h_detach": max(ps)}
    cfg = TR.config(args, **model(sz), **schedule, **change)
    with_p = lambda trainer: lambda key, p: trainer.init(key)._replace(h_detach=p)
    p_R = jnp.repeat(jnp.asarray(ps, jnp.result_type(float)), sz["seeds"])
    return TR.train(
        args, cfg, sz["seeds"], arms=[f"p={p:g}" for p in ps], init=with_p, per_run=(p_R,), keep_params=True
    )


def verdict(scores: list, final_rel: list[float]) -> tuple[str, list[S.Decision]]:
    """scores: per p (PS order, p = 0 first) the per-seed scores A (paired seeds); final_rel: per p the
    median final loss / baseline."""
    if len(scores) < 2 or len(final_rel) != len(scores):
        raise ValueError(f"verdict needs scores and final losses for p = 0 and at least one p > 0, got {len(scores)}")
    if not final_rel[0] < LEARNED:
        why = f"p = 0 has not learned (median final {final_rel[0]:.3g} ≥ {LEARNED}×baseline): needs more steps"
        return S.INCONCLUSIVE, [S.inconclusive(why)]
    ds = [S.decide(S.bootstrap_diff(scores[0], s, paired=True), what="A(p=0) − A(p)") for s in scores[1:]]
    vs = {d.verdict for d in ds}
    if S.SUPPORTED in vs:
        return (S.NUANCED if S.NOT_SUPPORTED in vs else S.SUPPORTED), ds
    return (S.NOT_SUPPORTED if S.NOT_SUPPORTED in vs else S.INCONCLUSIVE), ds


def estimator_stats(cell, params, xs, loss, ps, key, n_masks=N_MASKS) -> dict:
    """For each p: tr Cov(g_m)/‖E‖² over random masks, cos(E_p, G), ‖E_p‖/‖G‖, the identity's error."""
    flat = lambda t: jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(t)])
    n_t = xs.shape[-2]
    d = gp.decompose(cell, params, xs, loss, max_hops=n_t, parts=("hops",))
    g_k = jnp.stack([flat(jax.tree.map(lambda g, k=k: g[k], d.by_hops)) for k in range(n_t + 1)])
    g = g_k.sum(0)
    grad_m = jax.jit(jax.vmap(lambda m: flat(gp.masked_grad(cell, params, xs, loss, scales={"gates": m}))))
    out = {}
    for i, p in enumerate(ps):
        e = ((1.0 - p) ** jnp.arange(n_t + 1, dtype=g_k.dtype)) @ g_k
        m = jax.random.bernoulli(jax.random.fold_in(key, i), 1.0 - p, (n_masks, n_t)).astype(xs.dtype)
        gm = grad_m(m)
        out[f"p={p:g}"] = {
            "rel_var": float(jnp.sum(jnp.var(gm, axis=0)) / jnp.sum(e**2)),
            "cos_E_G": float(e @ g / (jnp.linalg.norm(e) * jnp.linalg.norm(g))),
            "norm_E_over_G": float(jnp.linalg.norm(e) / jnp.linalg.norm(g)),
            "mean_error": float(jnp.linalg.norm(gm.mean(0) - e) / jnp.linalg.norm(e)),
        }
    out["hop_share"] = (jnp.linalg.norm(g_k, axis=1) / jnp.linalg.norm(g)).tolist()
    return out


def variance(args: C.Args, sz: dict, rec: dict) -> dict:
    """estimator_stats at init and after training (p = 0 arm, seed 0), in float64, on one batch."""
    trainer = TR.gt.make_trainer(TR.config(args, **model(sz)))
    task = tasks.make("copy", sz["T"])
    batch = task.sample(jax.random.key(99), 16)
    xs = batch.inputs.astype(jnp.float64)
    to64 = lambda t: jax.tree.map(lambda v: v[0], TR.load_params(t, jnp.float64))
    out = {}
    for when, params in (("init", trainer.init(TR.seed_keys(1)[0]).params), ("trained", to64(rec["params"]))):
        params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), params)
        ro = params["readout"]
        loss = lambda hs, ro=ro: tasks.loss_and_accuracy(task, hs @ ro["W"] + ro["b"], batch)[0]
        out[when] = estimator_stats(trainer.cell, params["cell"], xs, loss, VAR_PS, jax.random.key(1))
    return out


def run(args: C.Args) -> C.Outcome:
    sz = sizes(args)
    rec = sweep(args, sz)
    names = [f"p={p:g}" for p in PS]
    score = {k: TR.score(rec, k) for k in names}
    final = {k: TR.median_ratio(TR.final_ratio(rec, k)) for k in names}
    v, ds = verdict([score[k] for k in names], [final[k] for k in names])
    path = args.dir(NAME) / "points" / f"variance-{TR.config_hash(rec['config'], sz)}.json"
    var = {} if args.quick else C.cached(path, lambda: variance(args, sz, rec))  # quick: spare the compiles
    vtxt = lambda w: ", ".join(f"{k} {var[w][k]['rel_var']:.3g}" for k in var[w] if k != "hop_share")
    headline = (
        f"copy T={sz['T']}, {sz['seeds']} seeds, {sz['steps']} steps: median score A "
        + ", ".join(f"{k} {S.bootstrap_stat(score[k]).text()}" for k in names)
        + "; A(p=0) − A(p): "
        + "; ".join(f"{k} {d.text()}" for k, d in zip(names[1:], ds))
        + (f" | estimator tr Cov/‖E‖² at init: {vtxt('init')}; trained: {vtxt('trained')}" if var else "")
    )
    rows = [
        [w, k, f"{e['rel_var']:.3g}", f"{e['cos_E_G']:.4f}", f"{e['norm_E_over_G']:.3g}", f"{e['mean_error']:.2g}"]
        for w in var
        for k, e in var[w].items()
        if k != "hop_share"
    ]
    header = ["weights", "p", "tr Cov(g_m)/‖E‖²", "cos(E_p, G)", "‖E_p‖/‖G‖", "‖mean of masks − E_p‖/‖E_p‖"]
    summary = (
        f"LSTM H={sz['H']} (b_f=1) on copy T={sz['T']}, batch {sz['B']}, Adam lr 1e-2, clip 1, {sz['steps']} steps, "
        f"{sz['seeds']} seeds (same seeds for every p). Decisions: "
        + "; ".join(f"{k}: {d.text()}" for k, d in zip(names[1:], ds))
        + (
            ""
            if not var
            else f"\n\nThe estimator on one batch of 16 (float64, {N_MASKS} masks per p):\n\n"
            + C.table(header, rows)
            + "\n\nHop-class norms ‖G^[k]‖/‖G‖, init: "
            + ", ".join(f"{x:.2g}" for x in var["init"]["hop_share"][:6])
            + "; trained: "
            + ", ".join(f"{x:.2g}" for x in var["trained"]["hop_share"][:6])
        )
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "hdetach.png", tuple(_paper_row(args, T) for T in PAPER["T"]))
    data = {"score": score, "final_rel": final, "decisions": [d._asdict() for d in ds], "estimator": var}
    return C.save(args, NAME, outcome, summary, _figure(rec, score, var, sz, v), sz, data, sz["seeds"])


def _paper_row(args: C.Args, T: int) -> C.Reproduction:
    src, exp = "Kanuparthi et al. 2019 (h-detach)", "p = 0.5 trains copy faster than p = 0"
    setting = f"copy T={T}, hidden 128, Adam 1e-3, batch 100, clip 1, p = 0.5"
    if args.scale != "full":
        return C.Reproduction(src, setting, exp, "—", C.NOT_RUN)
    sz = {"T": T, "H": PAPER["H"], "B": PAPER["B"], "steps": 20000, "segment": 500, "seeds": args.n_seeds(2, 8, 8)}
    rec = sweep(args, sz, (0.0, PAPER["p"]), lr=PAPER["lr"])
    d = S.decide(S.bootstrap_diff(TR.score(rec, "p=0"), TR.score(rec, "p=0.5"), paired=True), what="A(p=0) − A(p=0.5)")
    return C.Reproduction(src, setting, exp, d.text(), S.agrees(d))


def _figure(rec, score, var, sz, v):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.0))
    for j, k in enumerate(score):
        C.band(axes[0], rec["steps"], TR.arm(rec, k) / rec["baseline"], f"C{j}", f"h-detach {k}")
        C.arm_dots(axes[1], j, score[k], f"C{j}")
    axes[0].set(yscale="log", xlabel="training step", ylabel="copy loss / baseline (median, 95% CI)")
    axes[0].legend(fontsize=8)
    axes[1].set_xticks(range(len(score)), list(score))
    axes[1].set_ylabel("score A (seeds; median, bootstrap 95%)")
    for w, mk in (("init", "o-"), ("trained", "s--")) if var else ():
        axes[2].plot(VAR_PS, [var[w][f"p={p:g}"]["rel_var"] for p in VAR_PS], mk, label=w)
    axes[2].set(yscale="log", xlabel="h-detach probability p", ylabel="tr Cov(g_m) / ‖E g_m‖²")
    if var:
        axes[2].legend(fontsize=8)
    else:  # --quick skips the variance measurement
        axes[2].text(0.5, 0.5, "variance not measured at this scale", ha="center", transform=axes[2].transAxes)
    fig.suptitle(f"h-detach on copy T={sz['T']}, LSTM H={sz['H']}, {sz['seeds']} seeds: {v}")
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
