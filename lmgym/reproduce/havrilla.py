"""Havrilla et al. (2024), "Teaching Large Language Models to Reason with Reinforcement
Learning": ``lmgym reproduce havrilla``.

Setup. ``lmgym/MultiStepArithmetic-v0``: 2-3 ``+``/``-`` operations on 2-digit numbers, worked
one operation at a time (``84+38+30-86=`` -> ``84+38=122, 122+30=152, 152-86=66``), so samples
differ in their reasoning (which steps they get right), not only in the final string; the sparse
reward is 1 for the right final value; with ``dense=True`` each correct intermediate value adds
up to 0.5 in all (the dense setting; the ground truth stays the final value). The model is
lmgym's shipped ``multistep-tiny`` (the default model continued on this task's references:
the paper's SFT warm start; its ``lmgym_pretrain.json`` records how its steps were chosen).

Arms (the same sample budget and seeds each; SFT-long four times the samples):
``base`` (no training); ``exit-restart``: Expert Iteration re-trained from the base on all kept
samples each round (the paper's choice); ``exit``: ExIt continuing from the current policy;
``ppo``: PPO on the sparse reward; ``ppo-dense``: the same PPO on the dense reward; ``rcrl``:
return-conditioned RL (good/bad labels); ``sft-short`` / ``sft-long``: SFT on reference
solutions for the RL budget / four times it. Every arm tests its *last* policy (the one the
budget ends with, not a checkpoint chosen on validation), greedy and with K samples per problem.

Choices, made on validation before any test number (seed 0, the arm's budget; ``tuning.json``):
each agent's learning rate from its swept default x (1, 3) -- the same two trials for ExIt
(restart), PPO (sparse), RC-RL and SFT (short): equal tuning effort (not lower rates: at this budget
a smaller step moves a policy less, and a third trial per agent does not fit 30 minutes); ``exit`` takes ExIt's,
``ppo-dense`` PPO's and ``sft-long`` SFT's learning rate.

Claims and tests, declared before any run (:data:`CLAIMS`). maj@1 is greedy accuracy on the
test split; intervals are 95% Student-t over seeds, differences Welch's (``lmgym.stats``):

(a) ExIt performs at least as well as PPO, and RC-RL is not better than both. Test:
    exit-restart - ppo (test maj@1) has its interval's low end above -0.02 (non-inferiority by
    2 points); its high end below -0.02 is "not reproduced"; otherwise inconclusive. And RC-RL's
    interval must not lie wholly above both ExIt's and PPO's ("not reproduced" if it does).
(b) ExIt and PPO need sample counts of the same order to converge. Test: samples until the
    mean validation curve first reaches 90% of its final gain over the start, for exit-restart
    and ppo: the ratio lies within [1/3, 3]. An arm whose final validation gain is < 0.02 has
    nothing to converge to: inconclusive.
(c) Dense (per-step) rewards do not improve the final score over sparse ones. Test: ppo-dense -
    ppo (test maj@1): "not reproduced" if the interval lies wholly above 0, else reproduced.
(d1) RL raises maj@1 without lowering pass@K. Test, for exit-restart and for ppo: maj@1's
    interval lies above base's, and arm - base on pass@K does not lie wholly below 0.
(d2) Longer SFT raises maj@1 and lowers pass@K. Test: sft-long's maj@1 interval lies above
    base's, and sft-long - sft-short on pass@K lies wholly below 0.

Everything else (budget, K, eval sizes, grids) is fixed in :data:`FULL` below, before running.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from lmgym.reproduce import arm, declare, fmt, log, report_head, save_figure, trial, verdict, verdict_lines

ENV = "lmgym/MultiStepArithmetic-v0"
MODEL = "multistep-tiny"
NAME = "havrilla"
MARGIN = 0.02  # claim (a)'s non-inferiority margin and claim (b)'s least gain, in accuracy
CLAIMS = {
    "a": ("ExIt performs at least as well as PPO, and RC-RL is not better than both.",
          f"exit-restart - ppo on test maj@1 (Welch 95%): low end > -{MARGIN} reproduced, high end < -{MARGIN} "
          "not reproduced, else inconclusive; and rcrl's maj@1 interval not wholly above both exit-restart's and "
          "ppo's (else not reproduced)."),
    "b": ("ExIt and PPO need sample counts of the same order to converge.",
          "Samples until the mean validation maj@1 curve first reaches 90% of its final gain: exit-restart / ppo "
          f"within [1/3, 3]; an arm with final validation gain < {MARGIN}: inconclusive."),
    "c": ("Dense (per-step) rewards do not improve the final score over sparse ones.",
          "ppo-dense - ppo on test maj@1 (Welch 95%) wholly above 0: not reproduced; else reproduced."),
    "d1": ("RL raises maj@1 without lowering pass@K.",
           "For exit-restart and ppo: test maj@1 interval above base's, and arm - base on pass@K (Welch 95%) "
           "not wholly below 0."),
    "d2": ("Longer SFT raises maj@1 and lowers pass@K.",
           "sft-long's test maj@1 interval above base's, and sft-long - sft-short on pass@K (Welch 95%) wholly "
           "below 0."),
}


@dataclasses.dataclass(frozen=True)
class Plan:
    samples: int  # budget per RL cell and sft-short (generated samples; SFT: training examples)
    sft_long_factor: int  # sft-long trains on this many times the samples
    seeds: tuple[int, ...]
    k: int  # K of pass@K / maj@K (test: every test problem sampled K times)
    eval_problems: int  # validation problems per evaluation along the curve (greedy)
    eval_k_problems: int  # of which sampled K times along the curve
    eval_every: int  # samples between evaluations along the curve
    test_problems: int | None  # None: the whole test split (500)
    lr_factors: tuple[float, ...]  # the learning rates tried: the agent's swept default times these
    max_new_tokens: int


# Sized to 30 minutes on 2 CPU cores from one measured PPO cell (3,072 samples: 38 s training, 34 s
# evaluating at K=16 and 48 sampled curve problems), before any arm ran: K=8 (the paper's pass@96 does
# not fit), 32 sampled curve problems, two learning rates per agent (12 trials would take ~10 of the 30 min).
FULL = Plan(samples=3072, sft_long_factor=4, seeds=(0, 1, 2), k=8, eval_problems=200, eval_k_problems=32,
            eval_every=768, test_problems=300, lr_factors=(1.0, 3.0), max_new_tokens=40)
QUICK = Plan(samples=128, sft_long_factor=2, seeds=(0,), k=2, eval_problems=16, eval_k_problems=8, eval_every=64,
             test_problems=24, lr_factors=(1.0,), max_new_tokens=40)
TUNED = ("exit", "ppo", "rcrl", "sft")  # the agents whose learning rate is chosen on validation


def _common(plan: Plan) -> dict:
    return {"max_new_tokens": plan.max_new_tokens, "select_on": "last", "eval_every": plan.eval_every,
            "eval_k_problems": plan.eval_k_problems}


def _tune(out: Path, plan: Plan, progress: bool) -> dict:
    """Each tuned agent's learning rate, from the same number of validation trials (seed 0)."""
    from agents import load_agent

    tuning = {}
    extra = {"exit": {"from_base": True}}  # ExIt is tuned as the paper runs it (claim a's arm)
    for name in TUNED:
        default = load_agent(name).Config.lr
        trials = []
        for factor in plan.lr_factors:
            lr = float(f"{default * factor:.3g}")
            log(NAME, f"tuning {name} lr={lr:g} on validation", progress)
            common = {key: v for key, v in _common(plan).items() if key != "eval_every"}  # a trial reads its end only
            overrides = {**common, **extra.get(name, {}), "lr": lr}
            trials.append(trial(out / "tuning" / f"{name}-lr{lr:g}", ENV, name, overrides, model=MODEL,
                                samples=plan.samples, eval_problems=plan.eval_problems, eval_every=0, env_kwargs={},
                                progress=progress))
        best = max(trials, key=lambda t: t["validation_last"])  # the last policy is what every arm tests
        tuning[name] = {"chosen_lr": best["params"]["lr"],
                        "trials": [{"lr": t["params"]["lr"], "validation_ground_truth": t["validation_last"],
                                    "optimizer_steps": t["optimizer_steps"], "trained_tokens": t["trained_tokens"]}
                                   for t in trials]}
    return tuning


def specs(tuning: dict, plan: Plan) -> list[tuple[str, str, dict, dict, int]]:
    """``(arm, agent, overrides, env_kwargs, samples)`` for every arm."""
    lr = {name: tuning[name]["chosen_lr"] for name in TUNED}
    return [("base", "base", {}, {}, plan.samples),
            ("exit-restart", "exit", {"from_base": True, "lr": lr["exit"]}, {}, plan.samples),
            ("exit", "exit", {"from_base": False, "lr": lr["exit"]}, {}, plan.samples),
            ("ppo", "ppo", {"lr": lr["ppo"]}, {}, plan.samples),
            ("ppo-dense", "ppo", {"lr": lr["ppo"]}, {"dense": True}, plan.samples),
            ("rcrl", "rcrl", {"lr": lr["rcrl"]}, {}, plan.samples),
            ("sft-short", "sft", {"lr": lr["sft"]}, {}, plan.samples),
            ("sft-long", "sft", {"lr": lr["sft"]}, {}, plan.samples * plan.sft_long_factor)]


def _stats(results: list[dict], k: int) -> dict:
    from lmgym.stats import mean_interval

    def values(key):
        return [r["metrics"][key] for r in results]

    curves = [[(row["samples"], row["val/ground_truth"]) for row in r["curve"]] for r in results]
    xs = [x for x, _ in curves[0]]
    return {"seeds": [r["seed"] for r in results],
            "maj@1": list(mean_interval(values("test/ground_truth"))), "maj@1_values": values("test/ground_truth"),
            f"pass@{k}": list(mean_interval(values(f"test/pass@{k}"))), f"pass@{k}_values": values(f"test/pass@{k}"),
            f"maj@{k}": list(mean_interval(values(f"test/maj@{k}"))),
            "sampled": list(mean_interval(values("test/sampled_ground_truth"))),
            "validation_curve": {"samples": xs, "maj@1": np.mean([[y for _, y in c] for c in curves], axis=0).tolist()},
            "samples": int(np.mean([r["budget"]["samples"] for r in results])),
            "optimizer_steps": int(np.mean([r["compute"]["optimizer_steps"] for r in results])),
            "trained_tokens": int(np.mean([r["compute"]["trained_tokens"] for r in results])),
            "wall_seconds": float(np.mean([r["wall_seconds"] for r in results]))}


def samples_to_converge(curve: dict, least_gain: float = MARGIN) -> int | None:
    """Samples until the curve first reaches 90% of its final gain over its start; None when the
    final gain is below ``least_gain`` (nothing to converge to)."""
    xs, ys = curve["samples"], curve["maj@1"]
    gain = ys[-1] - ys[0]
    if gain < least_gain:
        return None
    return next(x for x, y in zip(xs, ys) if y - ys[0] >= 0.9 * gain)


def _verdicts(arms: dict, k: int) -> tuple[dict, dict]:
    """Each claim's result (True / False / None) and the numbers its test read."""
    from lmgym.stats import difference_interval

    diff = lambda a, b, key="maj@1": difference_interval(arms[a][f"{key}_values"], arms[b][f"{key}_values"])
    above = lambda a, b, key="maj@1": arms[a][key][1] > arms[b][key][2]  # a's interval wholly above b's
    evidence, out = {}, {}
    d = evidence["exit-restart - ppo (maj@1)"] = diff("exit-restart", "ppo")
    first = True if d.low > -MARGIN else False if d.high < -MARGIN else None
    rcrl_above = above("rcrl", "exit-restart") and above("rcrl", "ppo")
    evidence["rcrl above both"] = rcrl_above
    out["a"] = False if (first is False or rcrl_above) else first
    steps = {name: samples_to_converge(arms[name]["validation_curve"]) for name in ("exit-restart", "ppo")}
    evidence["samples to converge"] = steps
    if None in steps.values():
        out["b"] = None
    else:
        evidence["ratio exit-restart / ppo"] = steps["exit-restart"] / steps["ppo"]
        out["b"] = 1 / 3 <= steps["exit-restart"] / steps["ppo"] <= 3
    d = evidence["ppo-dense - ppo (maj@1)"] = diff("ppo-dense", "ppo")
    out["c"] = not d.low > 0
    checks = []
    for name in ("exit-restart", "ppo"):
        d = evidence[f"{name} - base (pass@{k})"] = diff(name, "base", f"pass@{k}")
        checks.append(above(name, "base") and not d.high < 0)
    out["d1"] = all(checks)
    d = evidence[f"sft-long - sft-short (pass@{k})"] = diff("sft-long", "sft-short", f"pass@{k}")
    out["d2"] = above("sft-long", "base") and d.high < 0
    return out, {key: (list(v) if isinstance(v, tuple) else v) for key, v in evidence.items()}


def run(out: str | Path, quick: bool = False, progress: bool = True) -> dict:
    """Tune on validation, run every arm over the seeds, write the report; returns the summary."""
    from lmgym.io import write_json_atomic

    out, plan = Path(out), QUICK if quick else FULL
    start = time.perf_counter()
    declare(out, CLAIMS, plan)
    tuning = _tune(out, plan, progress)
    write_json_atomic(out / "tuning.json", tuning)
    results = {}
    arm_specs = specs(tuning, plan)
    for i, (name, agent_name, overrides, env_kwargs, samples) in enumerate(arm_specs):
        log(NAME, f"arm {i + 1}/{len(arm_specs)}: {name} ({agent_name}, {len(plan.seeds)} seeds x {samples:,} samples)",
            progress)
        results[name] = arm(out / "runs" / name, ENV, agent_name, {**_common(plan), **overrides}, seeds=plan.seeds,
                            samples=samples, model=MODEL, eval_problems=plan.eval_problems, eval_k=plan.k,
                            test_problems=plan.test_problems, env_kwargs=env_kwargs, progress=progress)
    arms = {name: _stats(rows, plan.k) for name, rows in results.items()}
    verdicts, evidence = _verdicts(arms, plan.k) if len(plan.seeds) > 1 else ({key: None for key in CLAIMS}, {})
    summary = {"claims": CLAIMS, "plan": dataclasses.asdict(plan), "quick": quick, "tuning": tuning, "arms": arms,
               "verdicts": {key: verdict(v) for key, v in verdicts.items()}, "evidence": evidence,
               "seconds": round(time.perf_counter() - start, 1)}
    _plots(out, arms, plan.k)
    write_json_atomic(out / "summary.json", summary)
    (out / "report.md").write_text(report(summary))
    log(NAME, f"report in {out / 'report.md'}", progress)
    return summary


def _plots(out: Path, arms: dict, k: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for name, s in arms.items():
        if name != "base":
            curve = s["validation_curve"]
            axes[0].plot(curve["samples"], curve["maj@1"], marker="o", ms=3, label=name)
    axes[0].axhline(arms["base"]["maj@1"][0], color="grey", ls=":", label="base (test)")
    axes[0].set(xlabel="samples (SFT: training examples)", ylabel="validation maj@1 (greedy)",
                title="learning curves (mean over seeds)")
    names = list(arms)
    for j, key in enumerate(("maj@1", f"maj@{k}", f"pass@{k}")):
        points = [arms[n][key][0] for n in names]
        errors = [[arms[n][key][0] - arms[n][key][1] for n in names], [arms[n][key][2] - arms[n][key][0] for n in names]]
        axes[1].bar(np.arange(len(names)) + 0.27 * j, points, width=0.27, yerr=errors, capsize=2, label=key)
    axes[1].set_xticks(np.arange(len(names)) + 0.27, names, rotation=25)
    axes[1].set(ylabel="test accuracy", title="test: maj@1, maj@K, pass@K (95% t intervals)")
    save_figure(fig, axes, out / "havrilla.png")


def report(summary: dict) -> str:
    from tabulate import tabulate

    plan, k = summary["plan"], summary["plan"]["k"]
    lines = report_head("Havrilla et al. (2024), teaching LLMs to reason with RL", "havrilla", summary,
                        " (1 seed, a few hundred samples)", f"{summary['seconds'] / 60:.1f} min on 2 CPU cores.",
                        preamble=[f"maj@1 = greedy test accuracy; K = {k}.", ""])
    lines += ["", "## Setup", "",
              f"`{ENV}` (2-3 `+`/`-` steps on 2-digit numbers, worked one step at a time); lmgym's shipped `{MODEL}`; "
              f"every RL arm and sft-short {plan['samples']:,} samples per seed, sft-long {plan['sft_long_factor']}x; "
              f"seeds {list(plan['seeds'])}; each arm's last policy tested on {plan['test_problems'] or 500} test "
              f"problems, greedy and {k} samples each (temperature 1); validation curve every {plan['eval_every']} "
              f"samples on {plan['eval_problems']} problems. 95% Student-t intervals over seeds; differences Welch's.",
              "", "Choices, on the validation split (seed 0, the arm's budget, the last policy; `tuning.json`):", ""]
    for name, t in summary["tuning"].items():
        trials = ", ".join(f"lr {x['lr']:g}: {x['validation_ground_truth']:.3f}" for x in t["trials"])
        lines.append(f"- {name}: chose lr {t['chosen_lr']:g} ({trials})")
    lines += ["", "## Results (test split)", ""]
    rows = [[name, len(s["seeds"]), fmt(s["maj@1"]), fmt(s["sampled"]), fmt(s[f"maj@{k}"]), fmt(s[f"pass@{k}"]),
             s["samples"], s["optimizer_steps"], s["trained_tokens"], round(s["wall_seconds"])]
            for name, s in summary["arms"].items()]
    lines += [tabulate(rows, headers=["arm", "seeds", "maj@1 (greedy)", "sampled accuracy", f"maj@{k}", f"pass@{k}",
                                      "samples", "opt. steps", "trained tokens", "wall s"], tablefmt="github"), "",
              "![curves and test](havrilla.png)", "", "## Verdicts", ""]
    lines += verdict_lines(summary["verdicts"], summary["evidence"])
    return "\n".join(lines)
