"""C7, selective forgetting: does a trained LSTM drop f at "but" and block the gradient there?

Setting: an LSTM (b_f = 1, Gaussian W_h, Adam) trained on the "A, but B" task
(``tasks.sample_selective``: the label is the sentiment of the clause after the last
"but", at the last step). After training, on a fresh batch of N sequences:

- gates: f_t = σ(z_f) from ``cell.gate_values(u_t, a_t)`` with u_t = x_t W_x + b and
  a_t = h_{t-1} W_h recomputed from ``gp.unroll_states``. f̄_but is the mean of f (over
  units and examples) at the "but" steps (f_t multiplies c_{t-1} when "but" is read);
  f̄_else the mean at every other step t ≥ 1. drop = f̄_but / f̄_else. Also reported: f̄ at
  the sentiment words (where a model that overwrites c instead of resetting it forgets).
- gradient (evaluated in float64): ``gp.decompose`` with the task loss at the last step gives the 0-hop
  (highway) class λ_s = ∂L/∂c_s^{[0]} = (Π_{t=s+1}^{T-1} f_t) ⊙ λ_{T-1}. The
  transmission of step t is τ_t = ‖λ_{t-1}‖ / ‖λ_t‖ ∈ [0, 1]. block = τ at the last "but"
  (λ just before it against just after it) divided by the median τ of the other steps
  after the first, per example, then the median over examples.

Criterion (CLAIMS.md): "f drops towards 0 at 'but' and the gradient back to earlier
tokens is blocked", two halves, each reported for what it is (per-seed values, median
with a bootstrap 95% interval, through ``_stats.decide`` against CUT = 0.5):

- *f drops*: drop = f̄_but / f̄_else. SUPPORTED if the interval lies below CUT, NOT
  SUPPORTED if above (f at "but" is not even halved: the model solves the task another
  way, e.g. by overwriting c through the input gate at each sentiment word);
- *gradient blocked*: block = τ_but / τ_else, the same rule.

INCONCLUSIVE unless the task is solved (median accuracy ≥ SOLVED_ACC); otherwise
``combine_parts`` of the two halves (one each way: NUANCED). No other measure (such as
a gradient-weighted f) enters the verdict.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import gradpaths as gp
from experiments import _common as C
from experiments import _stats as S
from experiments import _train as TR
from gradpaths import tasks
from gradpaths import train as gt

CLAIM, NAME = "C7", "c7_selective"
TITLE = "C7 selective forgetting: the trained forget gate and highway gradient at 'but'"
SOLVED_ACC, CUT = 0.9, 0.5
EVAL_SEED = 12345


def sizes(args: C.Args) -> dict:
    n_t, n_h, n_b, steps = args.pick((8, 8, 8, 20), (20, 16, 32, 600), (50, 64, 64, 4000))
    return {"T": n_t, "H": n_h, "B": n_b, "steps": steps, "lr": 1e-2, "seeds": args.n_seeds(2, 8, 16), "N": 256}


def config(sz: dict, args: C.Args) -> gt.TrainConfig:
    net = {"cell": "lstm", "hidden_size": sz["H"], "forget_bias": 1.0, "recurrent_init": "gaussian"}
    schedule = {"batch_size": sz["B"], "steps": sz["steps"], "segment": sz["steps"], "clip_norm": None}
    return TR.config(args, task="selective", T=sz["T"], **net, **schedule)


def analyse(cell, params, task, xs, batch):
    """Gate and gradient measures of one trained network on an eval batch (see module docstring)."""
    ro = params["readout"]
    states = gp.unroll_states(cell, params["cell"], xs)  # [N, T, H]
    h_prev = jnp.concatenate([jnp.zeros_like(states.h[:, :1]), states.h[:, :-1]], axis=1)
    u = xs @ params["cell"]["W_x"] + params["cell"]["b"]
    _, f, _, _ = cell.gate_values(u, cell.recurrent(params["cell"], h_prev))  # [N, T, H]
    loss_fn = lambda hs: tasks.loss_and_accuracy(task, hs @ ro["W"] + ro["b"], batch)[0]
    acc = tasks.loss_and_accuracy(task, states.h @ ro["W"] + ro["b"], batch)[1]
    d = gp.decompose(cell, params["cell"], xs, loss_fn, max_hops=1, parts=("state",))
    lam0 = jnp.linalg.norm(d.state_grads.c[:, 0], axis=-1).T  # [N, T] ‖∂L/∂c_s^{[0]}‖
    lam_all = jnp.linalg.norm(d.state_grads.c.sum(1), axis=-1).T  # [N, T] all classes
    is_but = jnp.argmax(xs, -1) == tasks.BUT  # [N, T]
    n_t = xs.shape[-2]
    t = jnp.arange(n_t)
    p = tasks.last_but(xs)  # [N]
    f_unit = f.mean(-1)  # [N, T]
    mean_at = lambda v, where, axis=None: jnp.sum(jnp.where(where, v, 0), axis) / jnp.sum(where, dtype=v.dtype)
    other = (~is_but) & (t >= 1)
    sent = other & (jnp.argmax(xs, -1) != tasks.NEUTRAL)
    tau = lam0[:, :-1] / lam0[:, 1:]  # τ_t for t = 1..T-1, [N, T-1]
    at_p = t[1:] == p[:, None]
    tau_but = jnp.sum(jnp.where(at_p, tau, 0.0), 1)
    tau_else = jnp.nanmedian(jnp.where(at_p | ~jnp.isfinite(tau), jnp.nan, tau), axis=1)
    pick = lambda v, s: jnp.take_along_axis(v, s[:, None], 1)[:, 0]
    return {
        "accuracy": acc,
        "f_but": mean_at(f_unit, is_but),
        "f_else": mean_at(f_unit, other),
        "f_sentiment": mean_at(f_unit, sent),
        "unit_drop_frac": jnp.mean(mean_at(f, is_but[..., None], (0, 1)) < 0.5 * mean_at(f, other[..., None], (0, 1))),
        "tau_but": jnp.median(tau_but),
        "tau_else": jnp.median(tau_else),
        "block": jnp.nanmedian(tau_but / tau_else),
        "total_ratio": jnp.median(pick(lam_all, p - 1) / pick(lam_all, p)),
        "f_example": f[0],
        "lam0_example": lam0[0],
        "lam_all_example": lam_all[0],
        "tokens_example": jnp.argmax(xs[0], -1),
    }


def verdict(accuracy, drop, block) -> tuple[str, dict[str, S.Decision]]:
    """Per seed: accuracy, drop = f̄_but/f̄_else and block = τ_but/τ_else (the module docstring's rule)."""
    acc = np.asarray(accuracy, float)
    if acc.size == 0 or not np.all(np.isfinite(acc)):
        raise ValueError(f"accuracy must be finite numbers per seed, got {acc!r}")
    if np.median(acc) < SOLVED_ACC:
        why = f"task not solved (median accuracy {np.median(acc):.3g} < {SOLVED_ACC})"
        return S.INCONCLUSIVE, {"solved": S.inconclusive(why, acc.size)}

    def half(values, what):  # a seed whose ratio is not finite (an adjoint underflowed) is left out, and counted
        v = np.asarray(values, float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            return S.inconclusive(f"{what}: no seed gave a finite value")
        return S.decide(S.bootstrap_stat(v), null=CUT, above=S.NOT_SUPPORTED, below=S.SUPPORTED, what=what)

    halves = {"f drops at 'but'": half(drop, "drop"), "gradient blocked at 'but'": half(block, "block")}
    return S.combine_parts(halves.values()), halves


def run(args: C.Args) -> C.Outcome:
    sz = sizes(args)
    cfg = config(sz, args)
    task = tasks.make("selective", sz["T"])
    cell = gt.make_cell(cfg)
    tr = TR.train(args, cfg, sz["seeds"], keep_params=True)
    dtype = jnp.float64  # the trained network evaluated in float64: adjoints far from the loss stay above underflow
    params = TR.load_params(tr["params"], dtype)
    batch = task.sample(jax.random.key(EVAL_SEED), sz["N"])
    xs = batch.inputs.astype(dtype)
    per_seed = jax.vmap(analyse, in_axes=(None, 0, None, None, None))
    m = jax.device_get(jax.jit(per_seed, static_argnums=(0, 2))(cell, params, task, xs, batch))
    keys = ("accuracy", "f_but", "f_else", "f_sentiment", "block", "total_ratio", "unit_drop_frac")
    med = {k: float(np.median(m[k])) for k in keys}
    drops = np.asarray(m["f_but"]) / np.asarray(m["f_else"])
    v, halves = verdict(m["accuracy"], drops, m["block"])
    headline = "; ".join(f"{k}: {d.text()}" for k, d in halves.items()) + (
        f" — accuracy {C.fmt(med['accuracy'])} (T={sz['T']}); mean f at 'but' {C.fmt(med['f_but'])} vs "
        f"{C.fmt(med['f_else'])} elsewhere (ratio {C.fmt(float(np.median(drops)))}; at sentiment words "
        f"{C.fmt(med['f_sentiment'])}); highway transmission across the last 'but' / elsewhere {C.fmt(med['block'])}"
    )
    cols = [*(m[k] for k in ("accuracy", "f_but", "f_else", "f_sentiment")), drops]
    cols += [m[k] for k in ("unit_drop_frac", "tau_but", "tau_else", "block", "total_ratio")]
    rows = [[s, *(C.fmt(float(c[s])) for c in cols)] for s in range(sz["seeds"])]
    header = ["seed", "accuracy", "f̄_but", "f̄_else", "f̄ at sentiment words", "drop", "units with f_but < f_else/2"]
    header += ["τ_but", "τ_else", "block", "total ratio"]
    summary = (
        f"LSTM H={sz['H']} (b_f=1) trained {sz['steps']} Adam steps (lr {sz['lr']}, batch {sz['B']}) on the "
        f"selective task T={sz['T']}; measured on {sz['N']} fresh sequences per seed. drop = f̄_but/f̄_else; "
        "τ = ‖∂L/∂c_{t-1}^{[0]}‖/‖∂L/∂c_t^{[0]}‖ (highway transmission of one step); block = τ at the last "
        "'but' / median τ elsewhere; total ratio = the same across the last 'but' for the adjoint of all hop "
        f"classes. Solved: median accuracy ≥ {SOLVED_ACC}; each half against {CUT}.\n\n"
        + "\n".join(f"- {k}: {d.text()}" for k, d in halves.items())
        + "\n\n"
        + C.table(header, rows)
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c7_selective.png")
    data = {k: m[k] for k in m if not k.endswith("_example")}
    data |= {"median": med, "drop": drops, "decisions": {k: d._asdict() for k, d in halves.items()}}
    return C.save(args, NAME, outcome, summary, _figure(m, sz, v), sz, data, sz["seeds"])


def _figure(m, sz, v):
    import matplotlib.pyplot as plt

    tok = np.asarray(m["tokens_example"][0])
    f = np.asarray(m["f_example"][0])  # [T, H]
    t = np.arange(len(tok))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.0))
    ax = axes[0]
    ax.plot(t, f, color="C0", alpha=0.25, lw=0.8)
    ax.plot(t, f.mean(1), color="k", lw=2, label="mean over units")
    names = {tasks.NEUTRAL: "·", tasks.POSITIVE: "pos", tasks.NEGATIVE: "neg", tasks.BUT: "BUT"}
    for ax_ in axes:
        for s in t[tok == tasks.BUT]:
            ax_.axvline(s, color="C3", ls="--", lw=1)
        ax_.set_xticks(t, [names[int(k)] for k in tok], fontsize=7, rotation=90)
        ax_.set_xlabel("token (one example; 'but' marked red)")
    ax.set(ylim=(0, 1), ylabel="forget gate f_t (each unit thin, mean bold)")
    ax.legend(fontsize=8)
    lam0, lam = np.asarray(m["lam0_example"][0]), np.asarray(m["lam_all_example"][0])
    axes[1].semilogy(t, np.where(lam0 > 0, lam0, np.nan), "o-", label="0-hop (highway) ‖∂L/∂c_s‖")
    axes[1].semilogy(t, np.where(lam > 0, lam, np.nan), "s-", alpha=0.6, label="all paths ‖∂L/∂c_s‖")
    axes[1].set_ylabel("adjoint norm (loss at the last step)")
    axes[1].legend(fontsize=8)
    fig.suptitle(
        f"C7 selective ({v}): median f̄ at 'but' {C.fmt(float(np.median(m['f_but'])))}, at sentiment words "
        f"{C.fmt(float(np.median(m['f_sentiment'])))}, elsewhere {C.fmt(float(np.median(m['f_else'])))}; highway "
        f"transmission at 'but' / elsewhere {C.fmt(float(np.median(m['block'])))} (example: seed 0)"
    )
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
