"""lmgym reproduce: the Razin et al. reproduction end to end at its --quick scale (its verdicts mean
nothing there; the mechanics are what is tested): declared claims written first, every choice
on validation, arms as resumable bench cells, a report with a verdict per claim, plots."""

from __future__ import annotations

import json

import pytest

from lmgym import reproduce
from lmgym.cli import main


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("razin")
    return out, reproduce.load("razin").run(out, quick=True, progress=False)


def test_quick_razin_writes_claims_tuning_arms_verdicts_and_a_report(quick):
    out, summary = quick
    assert set(summary["verdicts"]) == {"a", "b", "c"}
    assert set(summary["verdicts"].values()) <= {"reproduced", "not reproduced", "inconclusive"}
    assert set(summary["arms"]) == {"base", "grpo-adam", "grpo-sgd", "rloo", "sft-then-grpo"}
    claims = json.loads((out / "claims.json").read_text())
    assert claims["claims"]["a"][0].startswith("Under policy-gradient RL")
    tuning = json.loads((out / "tuning.json").read_text())
    assert {"grpo-adamw", "grpo-sgd", "sft"} <= set(tuning)
    for trial in tuning["grpo-sgd"]["trials"]:  # tuning reads validation, never test
        assert not any(key.startswith("test/") for key in json.dumps(trial).split('"'))
    base = summary["arms"]["base"]
    assert base["relabelled"][0] == 0.0 and base["relabelled_zero_std"][0] == 1.0  # the stuck subset
    report = (out / "report.md").read_text()
    assert "declared before the run" in report and "Its verdicts mean nothing" in report
    assert (out / "razin.png").stat().st_size > 0
    sft_model = tuning["sft"]["model"]
    arm = json.loads(next((out / "runs" / "sft-then-grpo").rglob("result.json")).read_text())
    assert arm["model"]["name"] == sft_model  # the RL arm started from the SFT model


def test_a_second_run_resumes_from_what_is_there(quick, capsys):
    out, summary = quick
    assert main(["reproduce", "razin", "--quick", "--out", str(out), "--quiet"]) == 0  # every cell already finished
    printed = capsys.readouterr().out
    assert all(f"claim ({k}): {v}" in printed for k, v in summary["verdicts"].items())


def test_unknown_reproduction():
    with pytest.raises(ValueError, match="unknown reproduction"):
        reproduce.load("nope")
