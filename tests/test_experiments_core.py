"""The report runner, shared plumbing, and the C1 / C4 experiments."""

import json

import numpy as np
import pytest

from experiments import __main__ as runner
from experiments import _common as C
from experiments import c1_exact, c4_cec


def test_c1_verdict_both_ways():
    assert c1_exact.verdict({"float64": 3e-16, "float32": 4e-7}) == C.SUPPORTED
    assert c1_exact.verdict({"float64": 1e-9, "float32": 4e-7}) == C.NOT_SUPPORTED
    assert c1_exact.verdict({"float64": 3e-16, "float32": 2e-5}) == C.NOT_SUPPORTED
    with pytest.raises(ValueError, match="float32"):
        c1_exact.verdict({"float64": 0.0})


def test_c4_spread_and_verdict_both_ways():
    flat = np.ones((10, 4))
    decaying = flat * 0.9 ** np.arange(10)[::-1, None]  # what a forget gate of 0.9 does
    assert c4_cec.spread(flat) == 0.0
    assert c4_cec.spread(decaying) > 0.5
    eps = float(np.finfo(np.float32).eps)
    assert c4_cec.verdict([0.0, c4_cec.spread(flat)], eps) == C.SUPPORTED
    assert c4_cec.verdict([0.0, c4_cec.spread(decaying)], eps) == C.NOT_SUPPORTED
    with pytest.raises(ValueError):
        c4_cec.verdict([], eps)


def test_combine_verdicts():
    assert C.combine([C.SUPPORTED, C.SUPPORTED]) == C.SUPPORTED
    assert C.combine([C.NOT_SUPPORTED]) == C.NOT_SUPPORTED
    assert C.combine([C.SUPPORTED, C.NOT_SUPPORTED]) == C.NUANCED
    assert C.combine([C.SUPPORTED, C.INCONCLUSIVE]) == C.INCONCLUSIVE
    with pytest.raises(ValueError):
        C.combine(["MAYBE"])
    with pytest.raises(ValueError):
        C.combine([])


def test_atomic_write_and_cached_point(tmp_path):
    calls = []
    compute = lambda: calls.append(1) or {"x": np.float32(1.5), "nan": float("nan")}
    first = C.cached(tmp_path / "p.json", compute)
    again = C.cached(tmp_path / "p.json", compute)
    assert first == again == {"x": 1.5, "nan": None} and len(calls) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]  # no temp files left


def test_c1_and_c4_end_to_end_and_report_resumes(tmp_path, monkeypatch):
    assert runner.main(["--quick", "--only", "C1,C4", "--out", str(tmp_path)]) == 0
    for name, fig in (("c1_exact", "c1_errors.png"), ("c4_cec", "c4_highway.png")):
        r = json.loads((tmp_path / name / "results.json").read_text())
        assert r["verdict"] == C.SUPPORTED and r["scale"] == "quick"
        assert (tmp_path / name / fig).stat().st_size > 10_000
        assert "Verdict: SUPPORTED" in (tmp_path / name / "summary.md").read_text()
    report = (tmp_path / "REPORT.md").read_text()
    assert "| C1 |" in report and "(c4_cec/c4_highway.png)" in report and "**SUPPORTED**" in report
    assert "| C2 |" in report  # every claim has its row, run or not

    def boom(args):
        raise AssertionError("a finished experiment was recomputed")

    monkeypatch.setattr(c4_cec, "run", boom)  # one group runs in this process (more: in spawned workers)
    assert runner.main(["--quick", "--only", "C4", "--out", str(tmp_path)]) == 0
    assert "c4_cec/c4_highway.png" in (tmp_path / "REPORT.md").read_text()
    # --fresh recomputes; a failing experiment is reported, not fatal
    assert runner.main(["--quick", "--only", "C4", "--fresh", "--out", str(tmp_path)]) == 1
    assert "FAILED (c4_cec)" in (tmp_path / "REPORT.md").read_text()


def test_groups_keep_shared_work_together_heaviest_first():
    names = ["c1_exact", "c6_explosion", "c6_clipping", "c9_irnn", "c10_training", "c4_cec"]
    assert runner.groups(names) == [
        ("c10_training",),
        ("c1_exact",),
        ("c4_cec",),
        ("c6_explosion", "c6_clipping"),  # c6_clipping reads c6_explosion's result
        ("c9_irnn",),
    ]
    registry = [n for _, n in runner.REGISTRY]
    assert sorted(n for g in runner.groups(registry) for n in g) == sorted(registry)
    assert all(n in registry for g in (*runner.GROUPS, runner.HEAVY) for n in g)


def test_cli_rejects_bad_flags():
    with pytest.raises(SystemExit):
        runner.main(["--quick", "--workers", "0"])
    with pytest.raises(SystemExit):
        C.parse_args("x", ["--quick", "--scale", "full"])
    with pytest.raises(SystemExit):
        C.parse_args("x", ["--seeds", "0"])
    assert C.parse_args("x", ["--scale", "full", "--seeds", "3"]).n_seeds(1, 2, 4) == 3


def test_reuse_recomputes_results_that_other_code_wrote(tmp_path, monkeypatch):
    """results.json carries the code version; a changed experiment, shared module or library is rerun."""
    assert runner.main(["--quick", "--only", "C1", "--out", str(tmp_path)]) == 0
    path = tmp_path / "c1_exact" / "results.json"
    r = json.loads(path.read_text())
    assert r["code_version"] == C.code_version("c1_exact") and r["config"] is not None
    args = C.Args(scale="quick", out=tmp_path)
    assert runner.reuse(args, "c1_exact") is not None
    r["code_version"] = "older-code"
    path.write_text(json.dumps(r))
    assert runner.reuse(args, "c1_exact") is None
    monkeypatch.setattr(C, "code_version", lambda name: "older-code")  # as if the sources had changed back
    assert runner.reuse(args, "c1_exact") is not None


def test_code_version_follows_the_sources(tmp_path, monkeypatch):
    v = C.code_version("c1_exact")
    assert v == C.code_version("c1_exact") and v != C.code_version("c4_cec")
    fake = tmp_path / "experiments"
    fake.mkdir()
    (fake / "x.py").write_text("A = 1\n")
    (tmp_path / "gradpaths").mkdir()
    (tmp_path / "gradpaths" / "m.py").write_text("B = 1\n")
    monkeypatch.setattr(C, "_ROOT", tmp_path)
    before = C.code_version("x")
    (tmp_path / "gradpaths" / "m.py").write_text("B = 2\n")
    assert C.code_version("x") != before


def test_report_rows_say_not_run_below_the_named_setting():
    rep = C.Reproduction("Le et al. 2015", "T=150", "IRNN below baseline", "—", C.NOT_RUN)
    o = C.Outcome("C9", "c9_irnn", C.SUPPORTED, "h", "f.png", (rep,))
    text = runner.report(C.Args(scale="default"), [o], {}, 1.0)
    assert "| Le et al. 2015 | T=150 | IRNN below baseline | — | not run at this scale |" in text
