"""C8: success rate against the lag T for rnn, lstm and gru on the adding and copy tasks.

Every cell is trained with the same recipe (``_train.config``: Adam lr 1e-2, clip 1, the
same H, batch and steps) on ``tasks.make(task, T)``, all seeds of a point in one call.
A seed's outcome is r = (mean loss over the last segment) / (the task's no-memory
baseline, ``Task.baseline``). Set before any run:

- **success**: r < ``SUCCESS`` = 0.5: better than any model that remembers only half
  of what the task needs (adding: one value exactly and the other guessed, MSE 1/12 =
  baseline/2; copy: 5 of 10 symbols, CE 5 ln 8 / (T+20) = baseline/2). A diverged seed fails.
- per (task, T) and gated cell c ∈ {lstm, gru}: the difference of success rates
  rate(c) − rate(rnn) with Newcombe's 95% interval; ``_stats.decide`` says SUPPORTED
  when it lies above 0, NOT SUPPORTED below, INCONCLUSIVE otherwise (with the seeds
  needed). A (task, T) combines its two cells (``combine_parts``: both → SUPPORTED,
  one each way → NUANCED).
- a task is SUPPORTED if some lag is; NUANCED if some lag is NUANCED; NOT SUPPORTED
  if every lag is; INCONCLUSIVE otherwise. The claim combines the tasks the same way:
  **a task that decides nothing makes the claim INCONCLUSIVE**, it is never skipped.

Reproductions at ``--scale full`` (the published settings; at smaller scales "not run
at this scale"): Arjovsky et al. 2016 copy T = 100, 200 (RNN 80 hidden, LSTM 40,
RMSProp 1e-3, batch 20) against 10 ln 8 / (T+20); Hochreiter and Schmidhuber 1997, the
noise-free long-lag task p = 100 (``tasks.make("longlag", 100)``), the LSTM without a forget
gate (the 1997 cell) against the tanh RNN trained by BPTT, with this module's recipe.
"""

from __future__ import annotations

import numpy as np

from experiments import _common as C
from experiments import _stats as S
from experiments import _train as TR

CLAIM, NAME = "C8", "c8_lag"
TITLE = "C8: success rate against lag T for rnn, lstm and gru on adding and copy"
SUCCESS = 0.5
CELLS = ("rnn", "lstm", "gru")
ARJOVSKY_T, ARJOVSKY_H = (100, 200), {"rnn": 80, "lstm": 40}
ARJOVSKY = {"batch_size": 20, "optimizer": "rmsprop", "lr": 1e-3, "clip_norm": None, "segment": 500}


def sizes(args: C.Args) -> dict:
    """Per-scale settings (measured on 2 loaded CPU cores: an H=16 LSTM step at T=50, batch 32, ~4 ms a seed)."""
    return {
        "H": {"adding": args.pick(4, 16, 64), "copy": args.pick(4, 64, 128)},
        "batch": {"adding": args.pick(8, 32, 64), "copy": args.pick(8, 32, 64)},
        "T": {"adding": args.pick((5,), (50,), (50, 100, 200, 400)), "copy": args.pick((), (10,), (10, 20, 50))},
        "steps": {"adding": args.pick(20, 600, 3000), "copy": args.pick(20, 3000, 10000)},
        "segment": args.pick(10, 100, 100),
        "seeds": args.n_seeds(2, 8, 16),
        "arjovsky_steps": args.pick(0, 0, 20000),
    }


def config(args: C.Args, sz: dict, task: str, T: int, cell: str):
    """The shared recipe (c9_irnn asks for the same adding points and so reuses them)."""
    per_task = {"hidden_size": sz["H"][task], "batch_size": sz["batch"][task], "steps": sz["steps"][task]}
    return TR.config(args, task=task, T=T, cell=cell, segment=sz["segment"], **per_task)


def lag_decision(succ: dict[str, np.ndarray]) -> tuple[str, dict[str, S.Decision]]:
    """One (task, T): per gated cell, decide(rate(cell) − rate(rnn)); combined over lstm and gru.

    succ: {cell: bool per seed} for "rnn", "lstm", "gru".
    """
    k = {c: (int(np.sum(s)), len(s)) for c, s in succ.items()}
    dec = {c: S.decide(S.newcombe(*k[c], *k["rnn"]), what=f"success rate {c} − rnn") for c in ("lstm", "gru")}
    return S.combine_parts(dec.values()), dec


def task_verdict(per_lag: list[str]) -> str:
    """SUPPORTED if some lag is, NUANCED if some lag is, NOT SUPPORTED if all are, else INCONCLUSIVE."""
    if not per_lag:
        raise ValueError("task_verdict needs one verdict per lag")
    for v in (S.SUPPORTED, S.NUANCED):
        if v in per_lag:
            return v
    return S.NOT_SUPPORTED if all(v == S.NOT_SUPPORTED for v in per_lag) else S.INCONCLUSIVE


def verdict(succ: dict[str, dict[int, dict[str, np.ndarray]]]) -> tuple[str, dict]:
    """succ: {task: {T: {cell: success per seed}}} -> (claim verdict, {task: verdict})."""
    if not succ:
        raise ValueError("verdict needs at least one task")
    per_task = {t: task_verdict([lag_decision(s)[0] for s in by_t.values()]) for t, by_t in succ.items()}
    return S.combine_parts(per_task.values()), per_task


def run(args: C.Args) -> C.Outcome:
    sz, n = sizes(args), sizes(args)["seeds"]
    recs = {
        t: {T: {c: TR.train(args, config(args, sz, t, T, c), n) for c in CELLS} for T in sz["T"][t]}
        for t in ("adding", "copy")
        if sz["T"][t]
    }
    ratios = {t: {T: {c: TR.final_ratio(r) for c, r in g.items()} for T, g in by.items()} for t, by in recs.items()}
    succ = {t: {T: {c: TR.solved(r, SUCCESS) for c, r in g.items()} for T, g in by.items()} for t, by in ratios.items()}
    v, per_task = verdict(succ)
    why = {t: lag_decision(succ[t][max(succ[t])])[1] for t in succ}
    tally = lambda s, c: f"{int(s[c].sum())}/{n} {S.rate(s[c]).ci()}"
    parts = [
        f"{t} ({per_task[t]}) "
        + "; ".join(f"T={T}: " + ", ".join(f"{c} {tally(s, c)}" for c in CELLS) for T, s in succ[t].items())
        for t in succ
    ]
    incon = [f"{t}: {d.reason}" for t in succ for d in why[t].values() if d.verdict == S.INCONCLUSIVE]
    headline = f"success (final loss < {SUCCESS}×baseline), Wilson 95% — " + " | ".join(parts)
    headline += f"; {incon[0]}" if incon and v == S.INCONCLUSIVE else ""
    reps = (_adding_row(args, sz, ratios), *_arjovsky_rows(args, sz), _longlag_row(args, sz))
    rows = [
        [t, T, *(tally(s, c) for c in CELLS), "; ".join(lag_decision(s)[1][c].text() for c in ("lstm", "gru"))]
        for t in succ
        for T, s in succ[t].items()
    ]
    header = ["task", "T", *(f"{c} success [Wilson 95%]" for c in CELLS), "rate(c) − rate(rnn)"]
    summary = (
        f"H {sz['H']}, batch {sz['batch']}, Adam lr 1e-2, clip 1, float32, {n} seeds per point, steps "
        f"{sz['steps']}. Success: final loss / Task.baseline < {SUCCESS}. Per task: {per_task}.\n\n"
        + C.table(header, rows)
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c8_lag.png", reps)
    data = {"final_ratio": ratios, "success": succ, "per_task": per_task}
    return C.save(args, NAME, outcome, summary, _figure(recs, succ, n), sz, data, n)


def _gap(r: dict) -> S.Decision:
    """decide(median final loss/baseline of the rnn − of the lstm), a diverged seed counted as 10."""
    return S.decide(S.bootstrap_diff(S.worst_fill(r["rnn"], 10), S.worst_fill(r["lstm"], 10)))


def _adding_row(args, sz, ratios) -> C.Reproduction:
    """Arjovsky et al. 2016 / Le et al. 2015 name adding at T ≥ 100: decided only where such a lag ran."""
    long = [T for T in sz["T"]["adding"] if T >= 100]
    src, exp = "Arjovsky et al. 2016; Le et al. 2015 (adding)", "tanh RNN stays near the baseline; LSTM far below"
    if not long:
        return C.Reproduction(src, "T ≥ 100", exp, f"ran T={sz['T']['adding']} only", C.NOT_RUN)
    T = max(long)
    d = _gap(ratios["adding"][T])
    setting = f"T={T}, H={sz['H']['adding']}, {sz['steps']['adding']} Adam steps"
    return C.Reproduction(src, setting, exp, f"final loss/baseline rnn − lstm: {d.text()}", S.agrees(d))


def _arjovsky_rows(args, sz) -> list[C.Reproduction]:
    src, exp = "Arjovsky et al. 2016 (copy)", "LSTM below 10 ln 8/(T+20); tanh RNN stays at it"
    setting = lambda T: f"T={T}, RNN 80 / LSTM 40 hidden, RMSProp 1e-3, batch 20"
    if not sz["arjovsky_steps"]:
        return [C.Reproduction(src, setting(T), exp, "—", C.NOT_RUN) for T in ARJOVSKY_T]
    cfg = lambda T, c: TR.config(
        args, task="copy", T=T, cell=c, hidden_size=ARJOVSKY_H[c], steps=sz["arjovsky_steps"], **ARJOVSKY
    )
    rows = []
    for T in ARJOVSKY_T:
        r = {c: TR.final_ratio(TR.train(args, cfg(T, c), sz["seeds"])) for c in ARJOVSKY_H}
        d, below = _gap(r), S.bootstrap_stat(S.worst_fill(r["lstm"], 10))
        agrees = True if d.verdict == S.SUPPORTED and below.hi < 1 else (False if below.lo >= 1 else None)
        measured = f"LSTM final/baseline {below.text()}; rnn − lstm {d.text()}"
        rows.append(C.Reproduction(src, setting(T), exp, measured, agrees))
    return rows


def _longlag_row(args, sz) -> C.Reproduction:
    src = "Hochreiter and Schmidhuber 1997 (noise-free long lag, p = 100)"
    exp = "LSTM solves it in every trial; BPTT in none"
    setting = "p = 100, LSTM without forget gate against tanh RNN, H=32, Adam 1e-2, clip 1"
    if args.scale != "full":
        return C.Reproduction(src, setting, exp, "—", C.NOT_RUN)
    kw = dict(task="longlag", T=100, hidden_size=32, batch_size=32, steps=5000, segment=500)
    cfgs = {"lstm": TR.config(args, cell="lstm", forget_gate=False, **kw), "rnn": TR.config(args, cell="rnn", **kw)}
    s = {c: TR.solved(TR.final_ratio(TR.train(args, cfg, sz["seeds"])), SUCCESS) for c, cfg in cfgs.items()}
    d = S.decide(S.newcombe(int(s["lstm"].sum()), s["lstm"].size, int(s["rnn"].sum()), s["rnn"].size))
    return C.Reproduction(src, setting, exp, f"success lstm − rnn: {d.text()}", S.agrees(d))


def _figure(recs, succ, n):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(recs), figsize=(5.5 * len(recs), 7.5), squeeze=False)
    colors = {"rnn": "C3", "lstm": "C0", "gru": "C2"}
    for (t, by), top, bottom in zip(recs.items(), axes[0], axes[1]):
        lags, T = list(by), list(by)[-1]
        for k, c in enumerate(CELLS):
            e = [S.rate(succ[t][T_][c]) for T_ in lags]
            C.errorbars(top, np.arange(len(lags)) + (k - 1) * 0.08, e, fmt="o-", color=colors[c], capsize=4, label=c)
            C.band(bottom, by[T][c]["steps"], TR.arm(by[T][c]) / by[T][c]["baseline"], colors[c], c)
        top.set_xticks(range(len(lags)), [f"T={T_}" for T_ in lags])
        top.set(xlim=(-0.5, len(lags) - 0.5), ylim=(-0.05, 1.05), ylabel=f"success rate, Wilson 95% ({n} seeds)")
        top.set_title(f"{t}: final loss < {SUCCESS}×baseline")
        top.legend(fontsize=8)
        bottom.axhline(1.0, color="k", ls="--", lw=0.8, label="no-memory baseline")
        bottom.axhline(SUCCESS, color="k", ls=":", lw=0.8, label="success")
        bottom.set(yscale="log", xlabel="training step", ylabel="loss / baseline (median, 95% CI)")
        bottom.set_title(f"{t}, T={T}")
        bottom.legend(fontsize=7)
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
