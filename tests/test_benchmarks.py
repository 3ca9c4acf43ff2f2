"""A smoke run of every benchmark code path at tiny sizes (no timing is asserted), and the verdict helper."""

import json

import jax.numpy as jnp
import pytest

from benchmarks import __main__ as run_all
from benchmarks import decompose_cost, frameworks, memory, scaling, seeds, timing

TINY = {"batch": 2, "hidden": 4, "inputs": 3, "steps": 5}


def test_goal_verdict_both_ways_and_bad_input():
    assert timing.goal(1.2, 1.5) == "MET"
    assert timing.goal(1.6, 1.5) == "NOT MET"
    with pytest.raises(ValueError, match="finite"):
        timing.goal(float("nan"), 1.5)


def test_time_cases_and_ratio_are_per_round():
    timed = timing.time_cases({"a": lambda: jnp.ones(3).sum(), "b": lambda: None}, repeats=3, warmup=0)
    assert timed["a"]["ms"]["q1"] <= timed["a"]["ms"]["median"] <= timed["a"]["ms"]["q3"]
    r = timing.ratio(timed, "b", "a")
    assert r["min"] <= r["median"] <= r["max"]
    with pytest.raises(ValueError, match="was not timed"):
        timing.ratio(timed, "c", "a")


def test_decompose_cost_and_frameworks_write_tables(tmp_path):
    res = decompose_cost.run(dict(TINY, hops=(0, 1), long=8), repeats=1)
    assert {g["verdict"] for g in res["goals"]} <= {"MET", "NOT MET"}
    assert all(r["rel_error_vs_autodiff"] <= 1e-5 for r in res["per_t"][0]["rows"])
    assert "distance" in res["per_t"][0]
    md = timing.write(tmp_path, "decompose_cost", "t", timing.mark_quick(res), decompose_cost.markdown(res))
    assert "not a measurement" in md.read_text()
    record = json.loads((tmp_path / "benchmarks" / "decompose_cost.json").read_text())
    assert record["environment"]["versions"]["jax"] and record["config"]["steps"] == TINY["steps"]

    res = frameworks.run(dict(TINY, steps=(TINY["steps"],)), repeats=1)
    checks = {r["case"]: r["check"] for r in res["per_t"][0]["rows"] if r["check"]}
    for case in (frameworks.FLAX, *frameworks.TORCH.values()):  # torch is in the test extra
        assert checks[case]["rel_error_dW_h"] <= 1e-5, case
    assert {g["reference"] for g in res["goals"]} == {frameworks.FLAX, *frameworks.TORCH.values()}
    frameworks.markdown(res)


def test_seeds_scaling_memory_and_summary_run(tmp_path):
    res = seeds.run(dict(TINY, seeds=(2,)), repeats=1)
    assert {r["case"] for r in res["rows"]} >= {seeds.LOOP, "jit(vmap)", "jit(lax.map)"}
    seeds.markdown(res)
    sweep = {"base": dict(TINY, hops=1), "sweeps": {"hops": (0,)}, "repeats": 1, "budget_s": 1.0}
    res = scaling.run(sweep, repeats=1)
    assert res["rows"][0]["point"]["hops"] == 0
    scaling.markdown(res)
    m = memory.measure(TINY, memory.CASES["decompose hops K=1"])
    assert m["xla_total_mib"] > 0 and m["peak_rss_mib"] >= m["rss_after_import_mib"]
    md = run_all.summary(
        {
            "decompose_cost": {
                "goals": [{"case": "c", "reference": "r", "ratio": 2.0, "goal": 1.5, "verdict": timing.goal(2.0, 1.5)}]
            }
        }
    )
    assert "NOT MET" in md
