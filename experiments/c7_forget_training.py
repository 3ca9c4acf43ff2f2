"""C7 in training: does a larger forget-gate bias train better on long lags?

Setting: an LSTM (Gaussian W_h, Adam) on the adding problem at lag T, trained from
forget-gate biases b_f ∈ {-2, 0, 1, 2, 3} and chrono initialisation (Tallec & Ollivier
2018: b_f ~ log U[1, T - 1], b_i = -b_f). Every setting starts from the same weights per
seed; only the bias vector b differs. All settings × seeds run as one jitted, seed-parallel
computation: one compiled trainer with ``forget_bias=0``, whose initial b is replaced per
run (optax's Adam state is zeros whatever the initial values, so this is exactly the
trainer started from that bias). The trainer also records the highway and long-range
gradient shares every ``decompose_every`` steps, which paths_training reads.

Measured per run: the loss curve ℓ_k (segment means) relative to the no-memory baseline
1/6; the score A = mean_k ℓ_k / baseline (the normalised area under the loss curve: lower
trains better, 1 = never learned); and the steps to solve, the first segment end with
ℓ_k ≤ SOLVED · baseline (unsolved runs are censored).

Criterion (CLAIMS.md, training half of C7): "a larger bias trains better on long lags".
Setting a is *clearly better* than b when median(A_a) < 25th percentile(A_b) and
median(A_b) > 75th percentile(A_a) (beyond the seed spread). Over the point biases in
increasing order: NOT SUPPORTED unless the largest bias is clearly better than the
smallest; SUPPORTED if, besides, no smaller bias is clearly better than a larger one;
NUANCED otherwise (the best bias is intermediate). INCONCLUSIVE when no setting solves
the task in most seeds (too few steps to tell training speed apart; quick scale).
Chrono is reported beside the sweep.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import gradpaths as gp
from experiments import _common as C
from gradpaths import train as gt

CLAIM, NAME = "C7", "c7_forget_training"
TITLE = "C7 in training: forget-gate bias against training speed on the adding problem"
BIASES = (-2.0, 0.0, 1.0, 2.0, 3.0)
SETTINGS = tuple(f"b_f={b:g}" for b in BIASES) + ("chrono",)
SOLVED = 0.1  # loss ≤ SOLVED × baseline counts as solved
CHRONO_SEED = 7


def sizes(args: C.Args) -> dict:
    """Sizes at this scale (shared with paths_training, which reads the same sweep)."""
    n_t, n_h, n_b, steps, seg = args.pick((10, 8, 8, 40, 20), (60, 16, 32, 800, 50), (200, 64, 64, 5000, 250))
    return {
        "T": n_t,
        "H": n_h,
        "B": n_b,
        "steps": steps,
        "segment": seg,
        "lr": 1e-2,
        "seeds": args.n_seeds(2, 4, 16),
        "decompose_every": seg,
        "long_range": max(1, n_t // 4),
    }


def config(sz: dict, args: C.Args, **change) -> gt.TrainConfig:
    """The trainer config of the sweep (b_f = 0; the bias is set per run)."""
    base = gt.TrainConfig(
        task="adding",
        T=sz["T"],
        cell="lstm",
        hidden_size=sz["H"],
        forget_bias=0.0,
        recurrent_init="gaussian",
        batch_size=sz["B"],
        steps=sz["steps"],
        segment=sz["segment"],
        lr=sz["lr"],
        decompose_every=sz["decompose_every"],
        probe_batch=8,
        max_hops=2,
        long_range=sz["long_range"],
        dtype="float64" if args.float64 else "float32",
    )
    return dataclasses.replace(base, **change)


def bias_vectors(setting: str, n_h: int, n_t: int, seeds: int, dtype) -> jax.Array:
    """The initial LSTM bias b [seeds, 4H] of a setting ("b_f=x" or "chrono", drawn per seed)."""
    if setting == "chrono":
        cell = gp.lstm(n_h, chrono=n_t)
        keys = jax.random.split(jax.random.key(CHRONO_SEED), seeds)
        return jax.jit(jax.vmap(lambda k: cell.init_bias(k, dtype)))(keys)
    if not setting.startswith("b_f="):
        raise ValueError(f"setting must be 'b_f=<number>' or 'chrono', got {setting!r}")
    b = gp.lstm(n_h, forget_bias=float(setting[4:])).init_bias(None, dtype)
    return jnp.broadcast_to(b, (seeds, b.shape[0]))


def start_from_bias(trainer: gt.Trainer):
    """``init(key, b) -> TrainState``: ``trainer.init(key)`` with the cell bias replaced by b [4H].

    Adam's state is zeros whatever the initial values, so this equals the trainer of a
    config with that bias (tested).
    """

    def init(key, b):
        state = trainer.init(key)
        return state._replace(params={**state.params, "cell": {**state.params["cell"], "b": b}})

    return init


def train_runs(cfg: gt.TrainConfig, init, keys: jax.Array, *per_run) -> dict[str, np.ndarray]:
    """Trains runs r from ``init(keys[r], *(a[r] for a in per_run))``, one seed-parallel call per segment.

    Returns each ``Metrics`` field as an array [R, segments].
    """
    states = gt.over_seeds(init)(keys, *per_run)
    run_segment = gt.make_seeds(cfg).run_segment
    segments = []
    for _ in range(cfg.steps // cfg.segment):
        states, metrics = run_segment(states)
        segments.append(jax.device_get(metrics))
    return {f: np.stack([np.asarray(getattr(m, f)) for m in segments], axis=1) for f in gt.Metrics._fields}


def seed_keys(seeds: int, repeats: int) -> jax.Array:
    """The same ``seeds`` keys for each of ``repeats`` settings: [repeats · seeds]."""
    keys = jax.random.split(jax.random.key(0), seeds)
    return jax.random.wrap_key_data(jnp.tile(jax.random.key_data(keys), (repeats, 1)))


def sweep_path(args: C.Args, name: str, cfg: gt.TrainConfig, *extra) -> Path:
    """points/sweep-<hash of the config and extra>.json under the experiment's folder."""
    tag = json.dumps([dataclasses.asdict(cfg), *extra], sort_keys=True)
    return args.dir(name) / "points" / f"sweep-{hashlib.sha256(tag.encode()).hexdigest()[:12]}.json"


def sweep(args: C.Args) -> dict:
    """The bias sweep: {"config", "steps" [K], setting: {Metrics field: [seeds][K]}}, cached on disk."""
    sz = sizes(args)
    cfg = config(sz, args)
    path = sweep_path(args, NAME, cfg, SETTINGS, sz["seeds"], CHRONO_SEED)

    def compute():
        seeds = sz["seeds"]
        dtype = gt.DTYPES[cfg.dtype]
        b = jnp.concatenate([bias_vectors(s, sz["H"], sz["T"], seeds, dtype) for s in SETTINGS])
        C.progress(f"{NAME}: training {len(SETTINGS)} settings × {seeds} seeds, {cfg.steps} steps")
        m = train_runs(cfg, start_from_bias(gt.make_trainer(cfg)), seed_keys(seeds, len(SETTINGS)), b)
        out = {"config": dataclasses.asdict(cfg), "steps": m["step"][0]}
        for i, s in enumerate(SETTINGS):
            out[s] = {f: v[i * seeds : (i + 1) * seeds] for f, v in m.items()}
        return out

    return C.cached(path, compute)


def curves(res: dict, setting: str, field: str = "loss") -> np.ndarray:
    """A metric of one setting as floats [seeds, segments] (None -> NaN)."""
    return np.array(res[setting][field], dtype=float)


def clearly_better(a, b) -> bool:
    """Scores a beat scores b (lower is better) beyond the seed spread (see module docstring)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return bool(np.median(a) < np.percentile(b, 25) and np.median(b) > np.percentile(a, 75))


def verdict(scores: list, solved_fraction: list[float]) -> str:
    """scores: per point bias (increasing order) the per-seed scores A (lower trains better);
    solved_fraction: per setting, the fraction of seeds that solved the task."""
    if len(scores) < 2:
        raise ValueError(f"verdict needs scores at two or more biases, got {len(scores)}")
    if not any(f > 0.5 for f in solved_fraction):
        return C.INCONCLUSIVE
    if not clearly_better(scores[-1], scores[0]):
        return C.NOT_SUPPORTED
    n = len(scores)
    reversed_pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if clearly_better(scores[i], scores[j])]
    return C.NUANCED if reversed_pairs else C.SUPPORTED


def reproduction(better: str, worse: str, scores: dict, source: str, setting: str, expected: str):
    """A reproduction row: does ``better`` train clearly better than ``worse``?"""
    med = {s: float(np.median(scores[s])) for s in (better, worse)}
    if clearly_better(scores[better], scores[worse]):
        agrees = True
    elif clearly_better(scores[worse], scores[better]):
        agrees = False
    else:
        agrees = None
    measured = f"score A (mean loss/baseline): {better} {C.fmt(med[better])}, {worse} {C.fmt(med[worse])}"
    return C.Reproduction(source, setting, expected, measured, agrees)


def solve_steps(loss_SK: np.ndarray, baseline: float, steps_K: np.ndarray) -> np.ndarray:
    """Per seed, the first recorded step with loss ≤ SOLVED·baseline (inf if never)."""
    hit = np.nan_to_num(loss_SK, nan=np.inf) <= SOLVED * baseline
    return np.where(hit.any(1), np.asarray(steps_K, float)[hit.argmax(1)], np.inf)


def summarise(res: dict) -> dict:
    base = float(curves(res, SETTINGS[0], "baseline")[0, 0])
    steps = np.asarray(res["steps"], float)
    out = {}
    for s in SETTINGS:
        rel = curves(res, s) / base
        t_solve = solve_steps(curves(res, s), base, steps)
        out[s] = {
            "score": np.nanmean(rel, axis=1),
            "final": rel[:, -1],
            "solve_steps": t_solve,
            "solved_fraction": float(np.isfinite(t_solve).mean()),
        }
    return out


def run(args: C.Args) -> C.Outcome:
    sz = sizes(args)
    res = sweep(args)
    st = summarise(res)
    pts = SETTINGS[: len(BIASES)]
    v = verdict([st[s]["score"] for s in pts], [st[s]["solved_fraction"] for s in SETTINGS])
    med = {s: float(np.median(st[s]["score"])) for s in SETTINGS}
    med_t = {s: float(np.median(st[s]["solve_steps"])) for s in SETTINGS}
    t_txt = lambda s: f"{med_t[s]:.0f}" if np.isfinite(med_t[s]) else f">{sz['steps']}"
    headline = (
        f"adding T={sz['T']}: median score A (mean loss/baseline, lower trains better) over "
        + ", ".join(f"{s} {C.fmt(med[s])}" for s in SETTINGS)
        + f"; median steps to loss ≤ {SOLVED}×baseline: "
        + ", ".join(f"{s[4:] if s != 'chrono' else s} {t_txt(s)}" for s in SETTINGS)
    )
    if v == C.INCONCLUSIVE:
        headline = f"no setting solved the task in most seeds within {sz['steps']} steps; " + headline
    scores = {s: st[s]["score"] for s in SETTINGS}
    reps = (
        reproduction(
            "b_f=1",
            "b_f=0",
            scores,
            "Jozefowicz et al. 2015",
            f"LSTM adding T={sz['T']}, H={sz['H']}, {sz['seeds']} seeds, {sz['steps']} Adam steps",
            "forget bias 1 trains better than 0",
        ),
        reproduction(
            "chrono",
            "b_f=1",
            scores,
            "Tallec & Ollivier 2018",
            f"LSTM adding T={sz['T']}, chrono T_max={sz['T']}, {sz['seeds']} seeds, {sz['steps']} steps",
            "chrono init trains faster than forget bias 1 on long lags",
        ),
    )
    rows = "\n".join(
        f"| {s} | {C.fmt(med[s])} | {C.fmt(float(np.percentile(st[s]['score'], 25)))}–"
        f"{C.fmt(float(np.percentile(st[s]['score'], 75)))} | {t_txt(s)} | {st[s]['solved_fraction']:.2f} | "
        f"{C.fmt(float(np.median(st[s]['final'])))} |"
        for s in SETTINGS
    )
    summary = (
        f"LSTM H={sz['H']} on adding T={sz['T']} (baseline 1/6), batch {sz['B']}, Adam lr {sz['lr']}, "
        f"{sz['steps']} steps, {sz['seeds']} seeds (same weights for every setting). Score A = mean over "
        f"training of loss/baseline (lower trains better); solved = loss ≤ {SOLVED}×baseline.\n\n"
        "| setting | median A | A IQR | median steps to solve | solved fraction | final loss/baseline |\n"
        "|---|---|---|---|---|---|\n" + rows
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c7_forget_training.png", reps)
    C.write_outputs(
        args,
        NAME,
        config=sz,
        data={"summary": st, "loss": {s: curves(res, s) for s in SETTINGS}, "steps": res["steps"]},
        outcome=outcome,
        summary=summary,
        figures={"c7_forget_training.png": _figure(res, st, sz, v)},
        seeds=sz["seeds"],
    )
    return outcome


def _figure(res, st, sz, v):
    import matplotlib.pyplot as plt

    from experiments.c2_vanishing import band

    base = 1.0 / 6.0
    steps = np.asarray(res["steps"], float)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    for j, s in enumerate(SETTINGS):
        band(axes[0], steps, curves(res, s) / base, f"C{j}", s)
    axes[0].axhline(SOLVED, color="k", ls=":", lw=0.8, label=f"solved ({SOLVED}×baseline)")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("loss / baseline (median, IQR over seeds)")
    axes[0].legend(fontsize=7)
    x = np.arange(len(SETTINGS))
    for j, s in enumerate(SETTINGS):
        sc = st[s]["score"]
        axes[1].plot(np.full(len(sc), j), sc, "o", color=f"C{j}", alpha=0.6)
        axes[1].plot([j - 0.25, j + 0.25], [np.median(sc)] * 2, color="k", lw=2)
    axes[1].set_xticks(x, SETTINGS, fontsize=8)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("score A = mean loss/baseline over training")
    axes[1].set_xlabel("initial forget-gate bias (seeds: dots; median: bar)")
    med = {s: C.fmt(float(np.median(st[s]["score"]))) for s in SETTINGS}
    lo, hi = SETTINGS[0], SETTINGS[len(BIASES) - 1]
    fig.suptitle(
        f"C7 training (adding T={sz['T']}): {v}; median score A {med[lo]} at {lo} → {med[hi]} at {hi}, "
        f"chrono {med['chrono']}"
    )
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
