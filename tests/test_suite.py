"""Suites (lmgym/suite.py): the base-normalised aggregate, its stratified bootstrap, and a real
(small) suite run through the bench, the leaderboard's suite track and the page data."""

from __future__ import annotations

import numpy as np
import pytest

from lmgym import suite
from lmgym.suite import SuiteEnv, aggregate, normalised_scores, stratified_bootstrap


def _result(env, agent, seed, score):
    return {"env": {"id": env}, "agent": {"name": agent}, "seed": seed, "metrics": {"test/ground_truth": score}}


@pytest.fixture
def toy_suite(monkeypatch):
    envs = [SuiteEnv("lmgym/Arithmetic-v0", model="default", samples=96, trained_tokens=2_000, eval_problems=16,
                     test_problems=32, agent_config={"prompts_per_iteration": 8}),
            SuiteEnv("lmgym/Bandit-v0", model="bandit-tiny", samples=64, trained_tokens=1_000, ceiling=2.5,
                     eval_problems=1, test_problems=None, agent_config={"max_new_tokens": 2, "prompts_per_iteration": 8})]
    monkeypatch.setitem(suite.SUITES, "toy", envs)
    return envs


def test_normalisation_puts_base_at_0_and_the_ceiling_at_1(toy_suite):
    results = {"lmgym__Arithmetic-v0": [_result("lmgym/Arithmetic-v0", "base", s, 0.5) for s in range(3)]
               + [_result("lmgym/Arithmetic-v0", "x", s, v) for s, v in enumerate([0.5, 0.75, 1.0])],
               "lmgym__Bandit-v0": [_result("lmgym/Bandit-v0", "base", s, 1.0) for s in range(3)]
               + [_result("lmgym/Bandit-v0", "x", s, v) for s, v in enumerate([2.5, 1.0, 0.25])]}
    scores = normalised_scores("toy", results)
    assert scores["base"]["lmgym__Arithmetic-v0"].tolist() == [0, 0, 0]
    assert scores["x"]["lmgym__Arithmetic-v0"].tolist() == [0, 0.5, 1]
    assert scores["x"]["lmgym__Bandit-v0"].tolist() == pytest.approx([1, 0, -0.5])  # worse than the start: negative
    rows = {row["agent"]: row for row in aggregate("toy", results)}
    # IQM of the 6 pooled runs (-0.5, 0, 0, 0.5, 1, 1): the middle half (0, 0, 0.5, 1) -> 0.375
    assert rows["x"]["IQM (95% CI)"].point == pytest.approx(0.375)
    assert rows["x"]["mean (95% CI)"].point == pytest.approx(2 / 6)
    assert rows["base"]["IQM (95% CI)"].point == 0


def test_a_base_at_the_ceiling_is_a_clear_error(toy_suite):
    results = {"lmgym__Arithmetic-v0": [_result("lmgym/Arithmetic-v0", "base", 0, 1.0)], "lmgym__Bandit-v0": []}
    with pytest.raises(ValueError, match="ceiling"):
        normalised_scores("toy", results)


def test_stratified_bootstrap_resamples_within_each_env():
    # env a is constant, env b varies: every resample keeps 3 runs of each, so the pooled mean
    # stays within the range that such resamples allow
    by_env = {"a": np.zeros(3), "b": np.array([0.0, 0.5, 1.0])}
    point, low, high = stratified_bootstrap(by_env, np.mean, reps=2000)
    assert point == pytest.approx(0.25)
    assert 0.0 <= low < point < high <= 0.5
    constant = stratified_bootstrap({"a": np.ones(3), "b": np.ones(3)}, np.mean, reps=200)
    assert constant == (1.0, 1.0, 1.0)


def test_a_small_suite_runs_end_to_end(toy_suite, tmp_path):
    results = suite.run_suite("toy", out=str(tmp_path), agents=["grpo"], seeds=[0, 1], progress=False)
    assert set(results) == {"lmgym__Arithmetic-v0", "lmgym__Bandit-v0"}
    for slug, cells in results.items():
        assert {r["agent"]["name"] for r in cells} == {"base", "grpo"} and len(cells) == 4
        assert all((tmp_path / slug / r["env"]["id"].replace("/", "__") / r["agent"]["name"] / f"seed{r['seed']}"
                    / "result.json").is_file() for r in cells)
    bandit = [r for r in results["lmgym__Bandit-v0"] if r["agent"]["name"] == "base"]
    assert bandit[0]["metrics"]["test/ground_truth"] == 1.0  # the shipped bandit model's greedy arm is the worst, C
    assert bandit[0]["agent"]["config"]["max_new_tokens"] == 2
    summary = (tmp_path / "summary.md").read_text()
    assert "Suite `toy`" in summary and "IQM" in summary and "### lmgym/Bandit-v0" in summary
    # a second run finds every cell finished
    again = suite.run_suite("toy", out=str(tmp_path), agents=["grpo"], seeds=[0, 1], progress=False)
    assert [r["wall_seconds"] for r in again["lmgym__Arithmetic-v0"]] == [r["wall_seconds"] for r in results["lmgym__Arithmetic-v0"]]
