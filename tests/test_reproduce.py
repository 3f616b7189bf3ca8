"""lmgym reproduce: the Razin et al. reproduction end to end at its --quick scale (its verdicts mean
nothing there; the mechanics are what is tested): declared claims written first, every choice
on validation, arms as resumable bench cells, a report with a verdict per claim, plots."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from lmgym import reproduce
from lmgym.cli import main


def quick_run(tmp_path_factory, name: str):
    """``(out, summary)`` of ``lmgym reproduce NAME --quick`` into a fresh folder."""
    out = tmp_path_factory.mktemp(name)
    return out, reproduce.load(name).run(out, quick=True, progress=False)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return quick_run(tmp_path_factory, "razin")


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


# --- Havrilla et al.: ExIt vs PPO vs RC-RL, dense vs sparse, pass@k -------------------------------------


@pytest.fixture(scope="module")
def havrilla(tmp_path_factory):
    return quick_run(tmp_path_factory, "havrilla")


def test_quick_havrilla_runs_every_arm_and_writes_a_report(havrilla):
    from lmgym.reproduce.havrilla import CLAIMS, QUICK

    out, summary = havrilla
    assert set(summary["arms"]) == {"base", "exit-restart", "exit", "ppo", "ppo-dense", "rcrl", "sft-short", "sft-long"}
    assert summary["verdicts"] == {key: "inconclusive" for key in CLAIMS}  # one seed: no interval, no verdict
    tuning = json.loads((out / "tuning.json").read_text())
    assert set(tuning) == {"exit", "ppo", "rcrl", "sft"} and all(len(t["trials"]) == len(QUICK.lr_factors) for t in tuning.values())
    arms = summary["arms"]
    assert arms["sft-long"]["samples"] == QUICK.sft_long_factor * arms["sft-short"]["samples"]  # longer SFT
    for name in ("exit-restart", "exit", "ppo", "ppo-dense", "rcrl"):
        assert arms[name]["samples"] == QUICK.samples
    # (ExIt updates only once a sample is correct; at 128 samples of a ~3% sampler it may find none)
    for name in ("ppo", "ppo-dense", "rcrl", "sft-short"):
        assert arms[name]["optimizer_steps"] > 0
    assert all(f"pass@{QUICK.k}" in s and f"maj@{QUICK.k}" in s for s in arms.values())
    cell = lambda name: json.loads(next((out / "runs" / name).rglob("result.json")).read_text())
    assert cell("ppo-dense")["env"]["kwargs"].get("dense") is True and not cell("ppo")["env"]["kwargs"].get("dense")
    assert cell("exit-restart")["agent"]["config"]["from_base"] and not cell("exit")["agent"]["config"]["from_base"]
    assert cell("ppo")["agent"]["config"]["select_on"] == "last"  # every arm tests its last policy
    report = (out / "report.md").read_text()
    assert "declared before the run" in report and "Its verdicts mean nothing" in report
    assert (out / "havrilla.png").stat().st_size > 0


def _arms(**maj1):
    """Stats in the shape _verdicts reads: per arm maj@1 and pass@4 values over three seeds."""
    from lmgym.stats import mean_interval

    arms = {}
    for name, (m, p) in maj1.items():
        majs, passes = [m - 0.01, m, m + 0.01], [p - 0.01, p, p + 0.01]
        arms[name] = {"maj@1": list(mean_interval(majs)), "maj@1_values": majs, "pass@4": list(mean_interval(passes)),
                      "pass@4_values": passes,
                      "validation_curve": {"samples": [0, 100, 200, 300], "maj@1": [0.2, 0.3, m, m]}}
    return arms


def test_havrilla_verdicts_follow_the_declared_tests():
    from lmgym.reproduce.havrilla import _verdicts, samples_to_converge

    paper = _arms(base=(0.20, 0.70), **{"exit-restart": (0.40, 0.72)}, exit=(0.38, 0.7), ppo=(0.39, 0.71),
                  **{"ppo-dense": (0.39, 0.71)}, rcrl=(0.36, 0.7), **{"sft-short": (0.3, 0.75), "sft-long": (0.35, 0.6)})
    verdicts, evidence = _verdicts(paper, 4)
    assert verdicts == {"a": True, "b": True, "c": True, "d1": True, "d2": True}
    assert evidence["samples to converge"] == {"exit-restart": 200, "ppo": 200}
    other = _arms(base=(0.20, 0.70), **{"exit-restart": (0.30, 0.60)}, exit=(0.3, 0.6), ppo=(0.45, 0.71),
                  **{"ppo-dense": (0.55, 0.71)}, rcrl=(0.6, 0.7), **{"sft-short": (0.3, 0.6), "sft-long": (0.35, 0.7)})
    verdicts, _ = _verdicts(other, 4)
    assert verdicts == {"a": False, "b": True, "c": False, "d1": False, "d2": False}
    assert samples_to_converge({"samples": [0, 1, 2], "maj@1": [0.3, 0.31, 0.305]}) is None  # no gain: nothing to reach
    assert samples_to_converge({"samples": [0, 10, 20, 30], "maj@1": [0.1, 0.5, 0.55, 0.6]}) == 20


# --- Flet-Berliac et al.: CoPG off-policy, tabular bandit and through the agents ----------------------


def test_the_tabular_bandit_separates_copg_from_the_biased_methods():
    """Part (a) at its full step count on one seed: CoPG reaches pi*, the others do not."""
    from lmgym.envs.bandit import BanditTask
    from lmgym.reproduce.copg import EPSILON, FULL, tabular_run

    optimum = BanditTask(beta=0.5).optimal_policy()
    copg = tabular_run("copg", 0, FULL)
    assert copg["regret"] < EPSILON and abs(copg["curve"][0][1] - copg["regret"]) > 0.1  # it moved, to ~0
    assert max(abs(p - q) for p, q in zip(copg["policy"], optimum)) < 0.02
    for method in ("ipo", "pg-zero", "pg-mean"):
        assert tabular_run(method, 0, FULL)["regret"] > 0.05


@pytest.fixture(scope="module")
def copg(tmp_path_factory):
    return quick_run(tmp_path_factory, "copg")


def test_quick_copg_runs_both_parts_and_writes_a_report(copg):
    from lmgym.reproduce.copg import LM_ARMS, QUICK

    out, summary = copg
    assert set(summary["tabular"]) == {"copg", "ipo", "pg-zero", "pg-mean"}
    assert set(summary["lm"]) == {"base", *LM_ARMS}
    assert summary["verdicts"]["b"] == "inconclusive"  # one seed: no interval
    tuning = json.loads((out / "tuning.json").read_text())
    assert all(len(t["trials"]) == len(QUICK.lrs) for t in tuning.values())
    for t in tuning.values():  # tuning reads validation, never test
        assert all(not key.startswith("test") for trial in t["trials"] for key in trial)
    cell = lambda name: json.loads(next((out / "runs" / name).rglob("result.json")).read_text())
    ipo = cell("ipo")["agent"]["config"]
    assert ipo["loss"] == "ipo" and ipo["labels"] == "bradley_terry" and not ipo["online"]
    assert cell("pg-mean")["agent"]["config"]["pg_baseline"] == "mean" and cell("copg")["agent"]["config"]["data"] == "offline"
    for name in LM_ARMS:  # every arm's value is from sampled evaluation, with its KL
        assert summary["lm"][name]["optimizer_steps"] > 0 and "test/kl_to_reference" in cell(name)["metrics"]
    report = (out / "report.md").read_text()
    assert "declared before the run" in report and "Its verdicts mean nothing" in report
    assert (out / "copg.png").stat().st_size > 0


def test_copg_verdicts_follow_the_declared_tests():
    from lmgym.reproduce.copg import _verdicts

    optimum = [0.705, 0.259, 0.035]
    tabular = {"copg": {"regret": [0.001, 0.0005, 0.002], "policy": optimum},
               **{m: {"regret": [0.15, 0.12, 0.18], "policy": [0.4, 0.4, 0.2]} for m in ("ipo", "pg-zero", "pg-mean")}}
    lm = lambda **values: {name: {"seeds": [0, 1, 2], "value_values": [v - 0.01, v, v + 0.01]} for name, v in values.items()}
    verdicts, _ = _verdicts(tabular, lm(copg=1.6, ipo=1.4, **{"pg-zero": 1.3, "pg-mean": 1.5}), optimum)
    assert verdicts == {"a": True, "b": True}
    tabular["ipo"]["regret"] = [0.004, 0.002, 0.006]  # IPO also reaches ~0: the claim fails
    verdicts, _ = _verdicts(tabular, lm(copg=1.4, ipo=1.6, **{"pg-zero": 1.3, "pg-mean": 1.5}), optimum)
    assert verdicts == {"a": False, "b": False}


@pytest.fixture(scope="module")
def xu(tmp_path_factory):
    return quick_run(tmp_path_factory, "xu")


def test_quick_xu_runs_every_rule_and_writes_a_report(xu):
    from lmgym.reproduce.xu import ARMS, QUICK

    out, summary = xu
    assert set(summary["arms"]) == set(ARMS)
    for arm, overrides in ARMS.items():
        for seed in QUICK.seeds:
            record = json.loads((out / "runs" / f"{arm}-seed{seed}" / "result.json").read_text())
            assert record["queries"] == QUICK.queries and record["params"] == overrides  # the feedback budget, spent exactly
            assert len(record["calibration"]) == QUICK.queries  # one (spread, |error|) per queried sample
            assert [row["queries"] for row in record["curve"]][0] == 0 and record["test"] is not None
    assert summary["target"] == pytest.approx(summary["base"]["validation"] + QUICK.margin)
    assert json.loads((out / "claims.json").read_text())["claims"].keys() == summary["claims"].keys()
    report = (out / "report.md").read_text()
    assert "declared before the run" in report and "Its verdicts mean nothing" in report and "Seen before declaring" in report
    assert (out / "xu.png").stat().st_size > 0


def test_xu_queries_to_target_and_rank_correlation():
    from lmgym.reproduce.xu import queries_to_target, spearman

    curve = [{"queries": 0, "val": 0.50}, {"queries": 250, "val": 0.53}, {"queries": 500, "val": 0.56}, {"queries": 750, "val": 0.52}]
    assert queries_to_target(curve, 0.55, 2250) == (500, False)  # the first evaluation at the target
    assert queries_to_target(curve, 0.60, 2250) == (2250, True)  # never: censored beyond the budget
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2, 2], [1, 1, 2, 2]) == pytest.approx(1.0)  # ties share their rank
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0


def test_xu_verdicts_follow_the_declared_tests():
    from lmgym.reproduce.xu import FULL, _arm_stats, _verdicts, calibration

    def runs(reach_at, final):  # per seed: the queries at which validation jumps to 0.6, and the final score
        return [{"seed": s, "curve": [{"queries": q, "val": 0.6 if at is not None and q >= at else 0.5}
                                      for q in range(0, 2001, 250)][:-1] + [{"queries": 2000, "val": f}],
                 "test": f, "calibration": [], "optimizer_steps": 1, "trained_tokens": 1, "samples": 1, "queries": 2000,
                 "wall_seconds": 1.0} for s, (at, f) in enumerate(zip(reach_at, final))]

    fast, slow = [250, 250, 500, 250, 500], [1500, 1750, 1500, None, 1750]
    records = {"thompson": runs(fast, [0.62] * 5), "disagreement": runs(slow, [0.61] * 5), "greedy": runs(slow, [0.6, 0.6, 0.6, 0.5, 0.6]),
               "uniform": runs(fast[::-1], [0.6] * 5), "thompson-always": runs(slow, [0.55, 0.54, 0.56, 0.55, 0.53])}
    arms = {arm: _arm_stats(rows, 0.55, FULL) for arm, rows in records.items()}
    assert arms["greedy"]["censored"] == [False, False, False, True, False]
    rng = np.random.default_rng(0)
    spread = rng.uniform(0.1, 0.5, 400)
    calibrated = calibration([{"calibration": [[0, 0]] * 400 + [[s, abs(rng.normal(0, s))] for s in spread]}],
                             dataclasses.replace(FULL, bootstrap=200))
    verdicts, _ = _verdicts(records, arms, 0.55, FULL, calibrated)
    assert verdicts["a1"] is None  # uniform reached it as fast as thompson: the interval holds 0
    assert verdicts["a2"] is False  # disagreement slower than uniform
    assert verdicts["b"] is True  # the old behaviour ended lower
    assert verdicts["c"] is True  # errors drawn with the spread as their scale
    records["uniform"] = runs(slow, [0.6] * 5)
    arms["uniform"] = _arm_stats(records["uniform"], 0.55, FULL)
    verdicts, _ = _verdicts(records, arms, 0.55, FULL, calibrated)
    assert verdicts["a1"] is True and verdicts["a2"] is None
    scrambled = calibration([{"calibration": [[0, 0]] * 400 + [[s, 3.0 * abs(rng.normal(0, 0.3))] for s in spread]}],
                            dataclasses.replace(FULL, bootstrap=200))
    assert _verdicts(records, arms, 0.55, FULL, scrambled)[0]["c"] is False  # no correlation, errors 2.4x the spread


# --- Swamy et al.: RM + online RL vs offline DPO, with and without a generation-verification gap ------


@pytest.fixture(scope="module")
def swamy(tmp_path_factory):
    return quick_run(tmp_path_factory, "swamy")


def test_quick_swamy_runs_both_tasks_and_every_arm_on_the_same_pairs(swamy):
    from lmgym.reproduce.swamy import ARMS, QUICK, RM_ARMS, TASKS

    out, summary = swamy
    assert set(summary["results"]) == set(TASKS) and set(summary["verdicts"]) == {"a1", "a2", "b", "c"}
    for task in TASKS:
        pairs = [json.loads(line) for line in (out / "data" / task / "pairs.jsonl").read_text().splitlines()]
        assert len(pairs) == QUICK.pairs  # one fixed dataset, ties skipped
        assert all(p["chosen_ground_truth"] != p["rejected_ground_truth"] for p in pairs)
        heldout = [json.loads(line) for line in (out / "data" / task / "heldout.jsonl").read_text().splitlines()]
        assert all(p["chosen_ground_truth"] > p["rejected_ground_truth"] for p in heldout)  # oriented by the truth
        for name in ARMS:
            for seed in QUICK.seeds:
                record = json.loads((out / "runs" / task / name / f"seed{seed}" / "result.json").read_text())
                assert record["samples"] == QUICK.samples  # the same sample budget for every arm
                assert record["lr"] == summary["tuning"][task][name]["chosen_lr"]
                if name == "dpo-offline":
                    assert record["params"]["preferences"].endswith(f"data/{task}/pairs.jsonl")
                    assert 0.0 <= record["implicit_accuracy"] <= 1.0
        for seed in QUICK.seeds:
            meta = json.loads((out / "rm" / f"{task}-seed{seed}" / "lmgym_rm.json").read_text())
            assert meta["pairs"] == QUICK.pairs and 0.0 <= meta["heldout_accuracy"] <= 1.0
    assert set(RM_ARMS) < set(ARMS)
    tuning = json.loads((out / "tuning.json").read_text())
    assert not any(key.startswith("test") for key in json.dumps(tuning).split('"'))  # tuning reads validation only
    report = (out / "report.md").read_text()
    assert "declared before the run" in report and "Its verdicts mean nothing" in report and "Seen before declaring" in report
    assert (out / "swamy.png").stat().st_size > 0


def test_swamy_verdicts_follow_the_declared_tests():
    from lmgym.reproduce.swamy import verdicts

    def arm(values, implicit=None):
        stats = {"seeds": [0, 1, 2], "test_values": values}
        if implicit is not None:
            stats["implicit_accuracy_values"] = implicit
        return stats

    rms = {task: {s: {"heldout_accuracy": a} for s, a in enumerate([0.8, 0.82, 0.78])} for task in ("gap", "control")}
    results = {"gap": {"dpo-offline": arm([0.40, 0.42, 0.41], [0.55, 0.6, 0.58]), "rm-grpo": arm([0.60, 0.62, 0.61]),
                       "rm-online-dpo": arm([0.40, 0.43, 0.39])},
               "control": {"dpo-offline": arm([0.50, 0.52, 0.51], [0.7, 0.72, 0.71]), "rm-grpo": arm([0.50, 0.51, 0.52]),
                           "rm-online-dpo": arm([0.50, 0.49, 0.51])}}
    found, evidence = verdicts(results, rms, 3)
    assert found == {"a1": True, "a2": None, "b": True, "c": True}
    assert evidence["(b) A(gap) - A(control)"][0] == pytest.approx(0.1 - 0.0, abs=0.01)
    results["gap"]["rm-grpo"] = arm([0.30, 0.31, 0.29])  # the RM route loses where the gap is
    found, _ = verdicts(results, rms, 3)
    assert found["a1"] is False and found["b"] is False
    assert set(verdicts(results, rms, 1)[0].values()) == {None}  # one seed: no interval, no verdict
