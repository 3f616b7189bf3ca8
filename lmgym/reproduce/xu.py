"""Xu et al. (2023), "Shattering the Agent-Environment Interface for Fine-Tuning Inclusive
Language Models": ``lmgym reproduce xu``.

The paper's point for lmgym: with the language model as policy *and* reward model, classic RL
exploration still pays, and representing epistemic uncertainty (an ensemble) and resolving it
when choosing what to ask feedback on (Thompson sampling) is statistically efficient: good
quality per reward query.

Setup. lmgym's joint reward-policy agent (``agents/joint.py``: an ensemble of 8 linear reward
heads with random priors on the policy's own trunk, one joint update per round) on
``lmgym/Arithmetic-v0`` from the shipped ``default`` model, under a budget of reward *queries*:
32 prompts x 4 samples a round, 1 queried per prompt. The agent was fixed before this
reproduction (the review's defect: it trained the policy on the untrained heads' predictions):
unqueried samples now weigh the ensemble's held-out skill in the policy gradient (0 until the
ensemble predicts fresh labels better than their mean; ``predicted_rewards="skill"``).

Arms (5 seeds each, the same agent and settings, only the query rule differs; no tuning, so
the effort is equal): ``thompson`` (a random head's favourite per prompt), ``disagreement`` (the
sample the heads disagree on most), ``greedy`` (the ensemble mean's favourite: no uncertainty),
``uniform`` (at random); and ``thompson-always`` (Thompson with the old behaviour,
``predicted_rewards="always"``), to measure what the fix changed.

Measurement: greedy ground truth on the whole validation split (500 problems) at the first
round past every 250 queries (256, 512, ...: a round asks 32); queries-to-target = the first
evaluation at which it reaches base + ``margin`` (a run that never does counts as ``queries +
250``, one evaluation beyond the budget: censored, and said so); the final policy's greedy test ground truth (500 problems) once, for the record; the
ensemble's calibration: each queried sample's spread (std over heads) and |error| of the
ensemble mean, before the update that learns it, over the last half of each run.

Claims and tests, declared before any run (:data:`CLAIMS`); 95% Welch intervals over seeds:

(a1) Thompson sampling reaches the target with fewer queries than uniform selection. Test: the
     interval of mean queries-to-target (uniform - thompson) lies above 0: reproduced; below 0:
     not reproduced; containing 0: inconclusive (also when no arm reaches the target in any seed).
(a2) The same for the disagreement rule (uniform - disagreement).
(b)  The fix matters: training the policy on untrained predictions (thompson-always) ends lower
     than skill weighting (thompson). Test: interval of final validation ground truth (thompson -
     thompson-always) above 0: reproduced; below 0: not reproduced; else inconclusive.
(c)  The ensemble's spread is calibrated (is it a usable uncertainty?). Test, on the thompson
     arm's calibration pairs (all seeds, last half of training): Spearman correlation between
     spread and |error| with a bootstrap 95% interval above 0, and the mean spread within a
     factor of 2 of the root-mean-square error: reproduced; correlation interval below or
     containing 0, or the scale off by more than 2x: not reproduced.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from lmgym.reproduce import declare, fmt, log, report_head, save_figure, verdict, verdict_lines

ENV = "lmgym/Arithmetic-v0"
CLAIMS = {
    "a1": ("Thompson sampling over the reward ensemble reaches base + margin validation accuracy with fewer "
           "reward queries than uniform query selection.",
           "Welch 95% interval of mean queries-to-target (uniform - thompson) above 0: reproduced; below 0: not "
           "reproduced; containing 0 (or no arm reaching the target): inconclusive. A run that never reaches the "
           "target counts as budget + one evaluation interval."),
    "a2": ("Querying the samples the ensemble disagrees on most also beats uniform selection.",
           "As (a1) for uniform - disagreement."),
    "b": ("Training the policy on the untrained ensemble's predictions (the joint agent's earlier behaviour) ends "
          "lower than weighting them by the ensemble's held-out skill.",
          "Welch 95% interval of final validation ground truth (thompson - thompson-always) above 0: reproduced; "
          "below 0: not reproduced; else inconclusive."),
    "c": ("The ensemble's spread is calibrated: larger spread, larger error, on the right scale.",
          "Thompson arm, all seeds, queried samples of the last half of training (before their update): bootstrap "
          "95% interval of Spearman(spread, |error|) above 0 and mean spread / RMSE in [0.5, 2]: reproduced; "
          "otherwise not reproduced."),
}
ARMS = {  # arm -> JointConfig overrides
    "thompson": {"exploration": "thompson"},
    "disagreement": {"exploration": "disagreement"},
    "greedy": {"exploration": "greedy"},
    "uniform": {"exploration": "uniform"},
    "thompson-always": {"exploration": "thompson", "predicted_rewards": "always"},
}


@dataclasses.dataclass(frozen=True)
class Plan:
    queries: int  # reward queries per run (the feedback budget)
    seeds: tuple[int, ...]
    eval_queries: int  # evaluate every this many queries
    eval_problems: int  # validation problems per evaluation (greedy)
    test_problems: int | None  # None: the whole test split
    margin: float  # target = base validation ground truth + margin
    prompts_per_iteration: int
    bootstrap: int  # resamples for the calibration interval


FULL = Plan(queries=2000, seeds=(0, 1, 2, 3, 4), eval_queries=250, eval_problems=500, test_problems=None, margin=0.05,
            prompts_per_iteration=32, bootstrap=2000)
QUICK = Plan(queries=24, seeds=(0, 1), eval_queries=8, eval_problems=16, test_problems=16, margin=0.05,
             prompts_per_iteration=8, bootstrap=200)
# What was seen before the claims were declared, and changes after a run (printed in the report).
SEEN_BEFORE = ("One timing run of the agent before its fix (uniform, seed 0, 2,000 queries, `benchmarks/bench_joint.py`): "
               "validation 0.506 -> 0.648, 40 s. The margin (0.05) and the budget were fixed after it, before any "
               "run of the fixed agent.")
DEVIATIONS = ("none in the setup. After the full run, and before reading its verdicts, the result records gained each "
              "round's held-out skill and prediction weight (read from the same runs' checkpoints; new runs record them "
              "directly), and the report was regenerated from the same runs: nothing was re-run or changed.")


def _log(message: str, progress: bool) -> None:
    log("xu", message, progress)


def _run(folder: Path, overrides: dict, seed: int, plan: Plan, progress: bool) -> dict:
    """One run (resumable: the agent checkpoints into ``folder``; skipped once its record exists)."""
    from agents.joint import Joint, JointConfig
    from lmgym.io import write_json_atomic
    from lmgym.rollout import Budget

    record_file = folder / "result.json"
    if record_file.is_file():
        return json.loads(record_file.read_text())
    config = JointConfig(model="default", seed=seed, eval_problems=plan.eval_problems, eval_k=1,
                         test_problems=plan.test_problems, prompts_per_iteration=plan.prompts_per_iteration,
                         select_on="last", **overrides)
    config.eval_every = plan.eval_queries * config.samples_per_prompt // config.queries_per_prompt  # counts samples
    agent = Joint(config)
    learned = agent.learn(ENV, Budget(max_queries=plan.queries), run_dir=folder, progress=progress)
    record = {"seed": seed, "params": overrides,
              "curve": [{"queries": row["queries"], "samples": row["samples"], "val": row["val/ground_truth"]}
                        for row in learned.curve],
              "test": learned.test.get("test/ground_truth"), "calibration": agent.calibration,
              **skill_trace(agent.train_log),
              "optimizer_steps": agent.optimizer_steps, "trained_tokens": agent.trained_tokens,
              "samples": learned.budget["samples"], "queries": learned.budget["queries"],
              "wall_seconds": learned.wall_seconds}
    write_json_atomic(record_file, record)
    return record


def skill_trace(train_log: list[dict]) -> dict:
    """Per round: the ensemble's held-out skill on the fresh labels (absent in the first round)
    and the weight its predictions then had in the policy gradient."""
    return {"heldout_skill": [m["train/heldout_skill"] for m in train_log if "train/heldout_skill" in m],
            "prediction_weight": [m["train/prediction_weight"] for m in train_log]}


def queries_to_target(curve: list[dict], target: float, censored_at: int) -> tuple[int, bool]:
    """The queries at the first evaluation reaching ``target``; ``(censored_at, True)`` if none does."""
    for row in curve:
        if row["val"] >= target:
            return int(row["queries"]), False
    return censored_at, True


def spearman(x, y) -> float:
    """Spearman's rank correlation (scipy's; 0 where either side is constant)."""
    from scipy import stats

    if np.ptp(np.asarray(x, dtype=float)) == 0 or np.ptp(np.asarray(y, dtype=float)) == 0:
        return 0.0
    return float(stats.spearmanr(x, y).statistic)


def calibration(records: list[dict], plan: Plan) -> dict:
    """Spread vs |error| over the last half of each run's queried samples, pooled over seeds."""
    pairs = [pair for r in records for pair in r["calibration"][len(r["calibration"]) // 2:]]
    if len(pairs) < 3:
        return {"pairs": len(pairs), "spearman": None, "spread_over_rmse": None, "bins": []}
    spread, error = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    rng = np.random.default_rng(0)
    draws = [spearman(spread[idx], error[idx]) for idx in (rng.integers(len(pairs), size=len(pairs))
                                                           for _ in range(plan.bootstrap))]
    rho = spearman(spread, error)
    rmse = float(np.sqrt(np.mean(error ** 2)))
    edges = np.quantile(spread, np.linspace(0, 1, 6))
    bins = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (spread >= low) & (spread <= high)
        if inside.any():
            bins.append({"spread": float(spread[inside].mean()), "rmse": float(np.sqrt(np.mean(error[inside] ** 2))),
                         "abs_error": float(error[inside].mean()), "n": int(inside.sum())})
    return {"pairs": len(pairs), "spearman": [rho, float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))],
            "mean_spread": float(spread.mean()), "rmse": rmse,
            "spread_over_rmse": float(spread.mean() / rmse) if rmse > 0 else None, "bins": bins}


def _arm_stats(records: list[dict], target: float, plan: Plan) -> dict:
    from lmgym.stats import mean_interval

    censored_at = plan.queries + plan.eval_queries
    reached = [queries_to_target(r["curve"], target, censored_at) for r in records]
    return {"seeds": [r["seed"] for r in records],
            "queries_to_target": [q for q, _ in reached], "censored": [c for _, c in reached],
            "queries_to_target_mean": list(mean_interval([float(q) for q, _ in reached])),
            "final_validation": list(mean_interval([r["curve"][-1]["val"] for r in records])),
            "test": list(mean_interval([r["test"] for r in records])) if all(r["test"] is not None for r in records) else None,
            "heldout_skill_last_half": list(mean_interval([float(np.mean(r["heldout_skill"][len(r["heldout_skill"]) // 2:]))
                                                           for r in records])) if all(r.get("heldout_skill") for r in records) else None,
            "prediction_weight_max": max(max(r["prediction_weight"]) for r in records) if all(r.get("prediction_weight") for r in records) else None,
            "optimizer_steps": int(np.mean([r["optimizer_steps"] for r in records])),
            "trained_tokens": int(np.mean([r["trained_tokens"] for r in records])),
            "samples": int(np.mean([r["samples"] for r in records])), "queries": int(np.mean([r["queries"] for r in records])),
            "wall_seconds": float(np.mean([r["wall_seconds"] for r in records]))}


def _by_interval(interval) -> bool | None:
    if interval is None:
        return None
    _, low, high = interval
    return True if low > 0 else False if high < 0 else None


def _verdicts(records: dict, arms: dict, target: float, plan: Plan, calib: dict) -> tuple[dict, dict]:
    from lmgym.stats import difference_interval

    censored_at = plan.queries + plan.eval_queries
    q = {arm: [float(queries_to_target(r["curve"], target, censored_at)[0]) for r in rows] for arm, rows in records.items()}
    anyone = any(not c for s in arms.values() for c in s["censored"])
    out, evidence = {}, {}
    for key, rule in (("a1", "thompson"), ("a2", "disagreement")):
        diff = list(difference_interval(q["uniform"], q[rule]))
        evidence[f"({key}) queries-to-target, uniform - {rule}"] = diff
        out[key] = _by_interval(diff) if anyone else None
    final = {arm: [r["curve"][-1]["val"] for r in rows] for arm, rows in records.items()}
    diff = list(difference_interval(final["thompson"], final["thompson-always"]))
    evidence["(b) final validation, thompson - thompson-always"] = diff
    out["b"] = _by_interval(diff)
    if calib["spearman"] is None or calib["spread_over_rmse"] is None:
        out["c"] = None
    else:
        out["c"] = bool(calib["spearman"][1] > 0 and 0.5 <= calib["spread_over_rmse"] <= 2)
        evidence["(c) Spearman(spread, |error|), bootstrap 95%"] = calib["spearman"]
        evidence["(c) mean spread / RMSE"] = round(calib["spread_over_rmse"], 3)
    return out, evidence


def _base(plan: Plan) -> dict:
    from agents.core import BasePolicy

    base = BasePolicy(BasePolicy.Config(model="default", eval_problems=plan.eval_problems, eval_k=1,
                                        test_problems=plan.test_problems))
    return {"validation": base.evaluate(ENV, {}, plan.eval_problems, "validation")["val/ground_truth"],
            "test": base.evaluate(ENV, {}, plan.test_problems, "test")["test/ground_truth"]}


def run(out: str | Path, quick: bool = False, progress: bool = True) -> dict:
    """Every arm over the seeds, then the verdicts and the report; returns the summary."""
    from lmgym.io import write_json_atomic

    out, plan = Path(out), QUICK if quick else FULL
    start = time.perf_counter()
    declare(out, CLAIMS, plan)
    base_file = out / "base.json"
    if base_file.is_file():
        base = json.loads(base_file.read_text())
    else:
        base = _base(plan)
        write_json_atomic(base_file, base)
    target = base["validation"] + plan.margin
    _log(f"base validation {base['validation']:.3f}: target {target:.3f}", progress)
    records = {}
    for i, (arm, overrides) in enumerate(ARMS.items()):
        _log(f"arm {i + 1}/{len(ARMS)}: {arm} ({len(plan.seeds)} seeds x {plan.queries:,} queries)", progress)
        records[arm] = [_run(out / "runs" / f"{arm}-seed{seed}", overrides, seed, plan, progress) for seed in plan.seeds]
    arms = {arm: _arm_stats(rows, target, plan) for arm, rows in records.items()}
    calib = calibration(records["thompson"], plan)
    verdicts, evidence = _verdicts(records, arms, target, plan, calib)
    summary = {"claims": CLAIMS, "plan": dataclasses.asdict(plan), "quick": quick, "base": base, "target": target,
               "arms": arms, "calibration": calib, "verdicts": {k: verdict(v) for k, v in verdicts.items()},
               "evidence": evidence, "seconds": round(time.perf_counter() - start, 1)}
    _plots(out, records, target, base, calib)
    write_json_atomic(out / "summary.json", summary)
    (out / "report.md").write_text(report(summary))
    _log(f"report in {out / 'report.md'}", progress)
    return summary


def _plots(out: Path, records: dict, target: float, base: dict, calib: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for arm, rows in records.items():
        length = min(len(r["curve"]) for r in rows)
        xs = [rows[0]["curve"][i]["queries"] for i in range(length)]
        ys = np.array([[r["curve"][i]["val"] for i in range(length)] for r in rows])
        mean = ys.mean(0)
        axes[0].plot(xs, mean, "--" if arm.endswith("always") else "-", label=arm)
        if len(rows) > 1:
            half = 1.96 * ys.std(0, ddof=1) / np.sqrt(len(rows))
            axes[0].fill_between(xs, mean - half, mean + half, alpha=0.12)
    axes[0].axhline(target, color="k", linewidth=0.8, linestyle=":", label=f"target (base {base['validation']:.3f} + margin)")
    axes[0].set(xlabel="reward queries", ylabel="validation ground truth (greedy)",
                title="mean over seeds, band: 95% normal interval")
    if calib["bins"]:
        spreads, rmses = [b["spread"] for b in calib["bins"]], [b["rmse"] for b in calib["bins"]]
        axes[1].plot(spreads, rmses, "o-", label="thompson: RMSE per spread quintile")
        top = max(spreads + rmses) * 1.1
        axes[1].plot([0, top], [0, top], "k:", linewidth=0.8, label="calibrated (RMSE = spread)")
    axes[1].set(xlabel="ensemble spread (std over heads)", ylabel="error of the ensemble mean (RMSE)",
                title="calibration, last half of training, before each update")
    save_figure(fig, axes, out / "xu.png")


def report(summary: dict) -> str:
    from tabulate import tabulate

    plan = summary["plan"]
    run_minutes = sum(s["wall_seconds"] * len(s["seeds"]) for s in summary["arms"].values()) / 60
    lines = report_head("Xu et al. (2023), joint reward-policy learning with epistemic exploration", "xu", summary,
                        " (2 seeds, a few dozen queries)",
                        f"this invocation {summary['seconds'] / 60:.1f} min on 2 CPU cores (the runs' own wall time: "
                        f"{run_minutes:.1f} min; runs finished earlier are read back).")
    lines += ["", f"Seen before declaring: {SEEN_BEFORE}", "", "## Setup", "",
              f"`agents.joint.Joint` on `{ENV}` from the shipped `default` model; {plan['prompts_per_iteration']} prompts x "
              f"4 samples a round, 1 queried per prompt; {plan['queries']:,} reward queries per run, seeds "
              f"{list(plan['seeds'])}; greedy validation ground truth on {plan['eval_problems']} problems at the "
              f"first round past every {plan['eval_queries']} queries; base validation {summary['base']['validation']:.3f}, target "
              f"{summary['target']:.3f} (base + {plan['margin']}); the final policy's greedy test ground truth on "
              f"{plan['test_problems'] or 500} problems (base {summary['base']['test']:.3f}). No arm was tuned: the query "
              "rule (and, in thompson-always, the weight of predictions) is the only difference. 95% Student-t "
              "intervals over seeds; differences: Welch.", "", "## Results", ""]
    rows = []
    for arm, s in summary["arms"].items():
        reached = f"{sum(not c for c in s['censored'])}/{len(s['censored'])}"
        rows.append([arm, len(s["seeds"]), fmt(s["queries_to_target_mean"]), reached,
                     " ".join(str(q) for q in s["queries_to_target"]), fmt(s["final_validation"]), fmt(s["test"]),
                     fmt(s.get("heldout_skill_last_half")),
                     "-" if s.get("prediction_weight_max") is None else f"{s['prediction_weight_max']:.3f}",
                     s["queries"], s["samples"], s["optimizer_steps"], s["trained_tokens"], round(s["wall_seconds"])])
    lines += [tabulate(rows, headers=["arm", "seeds", "queries to target (95% t)", "reached", "per seed",
                                      "final validation", "test (final policy)", "held-out skill, last half",
                                      "max prediction weight", "queries", "samples", "opt. steps",
                                      "trained tokens", "wall s"], tablefmt="github"), "",
              "Held-out skill: 1 - MSE / MSE of the label mean, of the ensemble's predictions for the labels it was "
              "about to be told (per round, mean over the last half of the run, 95% t over seeds); the prediction "
              "weight is what unqueried samples weighed in the policy gradient (the running skill, clipped to [0, 1]; "
              "thompson-always: 1 by design).", "",
              f"A run that never reached the target counts as {plan['queries'] + plan['eval_queries']} queries (censored).",
              "", "![curves and calibration](xu.png)", ""]
    calib = summary["calibration"]
    if calib["spearman"] is not None:
        lines += ["Calibration (thompson, last half of training, every queried sample before its update, "
                  f"{calib['pairs']} pairs over seeds): Spearman(spread, |error|) {fmt(calib['spearman'])} (bootstrap "
                  f"95%, {plan['bootstrap']} resamples); mean spread {calib['mean_spread']:.3f} against RMSE "
                  f"{calib['rmse']:.3f} (ratio {calib['spread_over_rmse']:.2f}). Per spread quintile (spread -> RMSE): "
                  + ", ".join(f"{b['spread']:.3f} -> {b['rmse']:.3f}" for b in calib["bins"]) + ".", ""]
    lines += ["## Verdicts", ""] + verdict_lines(summary["verdicts"], summary["evidence"], DEVIATIONS)
    return "\n".join(lines)
