"""Razin et al. (ICLR 2024), "Vanishing Gradients in Reinforcement Finetuning of Language Models":
``lmgym reproduce razin``.

Setup. ``lmgym/Arithmetic-v0`` (2-digit ``+``/``-``) with ``relabel=0.1``: a stable hashed 10% of
the problems, in every split, is shown as ``~47+18=`` and answered by the negated value
(``-65``), a rule lmgym's shipped default model (``default``, pretrained on plain arithmetic)
has never seen, so it gives those answers almost zero probability: under it their reward
standard deviation is ~0 although their expected reward (0) is far from the optimum (1). The
marker makes the rule learnable. Every metric is broken down by subset (``relabelled`` /
``rest``): greedy test ground truth, the zero-std share and solved / stuck / mixed shares over 4
samples per test problem, and during GRPO training each subset's policy-gradient norm.

Arms (the same RL budget and seeds each): ``base`` (no training); ``grpo-adam`` and
``grpo-sgd``: GRPO with AdamW, or with plain SGD, each with its learning rate chosen on the
validation split from 3 values (seed 0, the same budget: equal tuning effort; recorded in
``tuning.json``); ``rloo``: RLOO with its swept defaults; ``sft-then-grpo``: SFT on a few
relabelled train problems (about 1% of the RL arm's prompts; its learning rate chosen on
validation from 3 values) saved as a model, then the ``grpo-adam`` arm's GRPO from it.

Claims and tests, declared before any run (:data:`CLAIMS`); 95% Student-t intervals over seeds:

(a) Under policy-gradient RL (GRPO and RLOO, AdamW) the relabelled subset's reward barely moves
    while the rest improves, and its reward std stays near zero. Test: for both agents the
    rest's test ground truth rises above base's (interval above base), the relabelled subset's
    stays below 0.05 (interval's upper end), and its zero-std share stays >= 0.9. "Not
    reproduced" if the relabelled subset rises (lower end >= 0.05) or its std does not stay near
    0; "inconclusive" if the rest does not improve (nothing to contrast).
(b) A few SFT steps on ~1% of the relabelled inputs, then the same RL, fixes most of it. Test:
    in ``sft-then-grpo`` the relabelled subset's test ground truth reaches at least half of the
    rest's, and its interval lies above ``grpo-adam``'s relabelled interval. "Not reproduced" if
    either fails.
(c) With plain SGD the effect is at least as strong as with Adam. Test: under ``grpo-sgd`` the
    relabelled subset's ground truth is at most ``grpo-adam``'s + 0.02 and its zero-std share >=
    0.9, while the rest improves over base (else "inconclusive": an optimizer that learns
    nothing shows no effect either way).

Everything else (the budget, eval sizes, grids) is fixed in :data:`FULL` below, before running.
One change was made after a run (:data:`DEVIATIONS`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from lmgym.reproduce import arm, declare, fmt, log, report_head, save_figure, trial, verdict

ENV = "lmgym/Arithmetic-v0"
RELABEL = {"relabel": 0.1}
CLAIMS = {
    "a": ("Under policy-gradient RL (GRPO, RLOO; AdamW) the relabelled subset's reward barely moves while the "
          "rest improves, and its reward std stays near zero.",
          "For both agents: rest test ground truth interval above base's; relabelled test ground truth upper "
          "end < 0.05; relabelled zero-std share >= 0.9. Relabelled lower end >= 0.05 or zero-std share < 0.9: "
          "not reproduced; rest not above base: inconclusive."),
    "b": ("A few SFT steps on ~1% of the relabelled inputs, then the same RL, fixes most of it.",
          "sft-then-grpo: relabelled test ground truth >= 0.5 x the rest's, and its interval above grpo-adam's "
          "relabelled interval; else not reproduced."),
    "c": ("With plain SGD the effect is at least as strong as with Adam.",
          "grpo-sgd: relabelled ground truth <= grpo-adam's + 0.02 and relabelled zero-std share >= 0.9, with the "
          "rest's interval above base's (else inconclusive)."),
}


@dataclasses.dataclass(frozen=True)
class Plan:
    samples: int  # RL budget per cell (generated samples)
    seeds: tuple[int, ...]
    eval_problems: int  # validation problems per evaluation
    eval_every: int
    test_problems: int | None  # None: the whole test split (500)
    eval_k: int  # samples per test problem for the zero-std and solved/stuck/mixed shares
    adam_lrs: tuple[float, ...]
    sgd_lrs: tuple[float, ...]
    sft_problems: int  # relabelled train problems SFT sees (~1% of the RL arm's prompts)
    sft_epochs: int
    sft_lrs: tuple[float, ...]


FULL = Plan(samples=4096, seeds=(0, 1, 2), eval_problems=200, eval_every=2048, test_problems=None, eval_k=4,
            adam_lrs=(2e-6, 6.36e-6, 2e-5), sgd_lrs=(0.01, 0.03, 0.1), sft_problems=16, sft_epochs=8,
            sft_lrs=(1e-4, 3e-4, 1e-3))
# Changes to the declared plan after a full run had been seen, and why (printed in the report).
DEVIATIONS = ("The first full run (6,144 samples per cell, otherwise this plan) took 61 min on 2 shared cores, over "
              "the 30-minute limit: the budget per cell was cut to 4,096 samples for time, nothing else changed. That "
              "run's verdicts were (a) reproduced, (b) not reproduced, (c) reproduced (git history of reports/razin/).")
QUICK = Plan(samples=256, seeds=(0,), eval_problems=24, eval_every=0, test_problems=48, eval_k=2,
             adam_lrs=(6.36e-6,), sgd_lrs=(0.03,), sft_problems=8, sft_epochs=2, sft_lrs=(3e-4,))


def _log(message: str, progress: bool) -> None:
    log("razin", message, progress)


def _trial(folder: Path, agent_name: str, overrides: dict, plan: Plan, env_kwargs: dict, model: str, samples: int,
           progress: bool, save_model: bool = False) -> dict:
    return trial(folder, ENV, agent_name, overrides, model=model, samples=samples, eval_problems=plan.eval_problems,
                 eval_every=plan.eval_every, env_kwargs=env_kwargs, progress=progress, save_model=save_model)


def _arm(out: Path, name: str, agent_name: str, overrides: dict, plan: Plan, model: str = "default",
         progress: bool = True) -> list[dict]:
    return arm(out / "runs" / name, ENV, agent_name, {"eval_every": plan.eval_every, "eval_k_problems": 64, **overrides},
               seeds=plan.seeds, samples=plan.samples, model=model, eval_problems=plan.eval_problems,
               eval_k=plan.eval_k, test_problems=plan.test_problems, env_kwargs=RELABEL, progress=progress)


def _tune(out: Path, plan: Plan, progress: bool) -> dict:
    """Every choice, on validation (seed 0): GRPO's AdamW and SGD learning rates at the RL budget,
    and SFT's learning rate (its model, from the best one, starts the sft-then-grpo arm)."""
    tuning = {}
    for optimizer, grid in (("adamw", plan.adam_lrs), ("sgd", plan.sgd_lrs)):
        trials = []
        for lr in grid:
            _log(f"tuning GRPO {optimizer} lr={lr:g} on validation", progress)
            trials.append(_trial(out / "tuning" / f"grpo-{optimizer}-lr{lr:g}", "grpo",
                                 {"optimizer": optimizer, "lr": lr}, plan, dict(RELABEL), "default", plan.samples, progress))
        tuning[f"grpo-{optimizer}"] = {"trials": trials, "chosen_lr": max(trials, key=lambda t: t["validation_ground_truth"])["params"]["lr"]}
    trials = []
    for lr in plan.sft_lrs:
        _log(f"tuning SFT lr={lr:g} on {plan.sft_problems} relabelled train problems", progress)
        folder = out / "tuning" / f"sft-lr{lr:g}"
        trial = _trial(folder, "sft", {"lr": lr, "epochs": plan.sft_epochs, "prompts_per_iteration": plan.sft_problems,
                                       "minibatch_size": plan.sft_problems, "select_on": "last"},
                       plan, {**RELABEL, "subset": "relabelled"}, "default", plan.sft_problems, progress, save_model=True)
        # the choice: the SFT model's validation ground truth on *all* problems (relabelled and rest)
        trial["validation_all"] = _validate(folder / "model", plan)
        trials.append(trial)
    best = max(trials, key=lambda t: t["validation_all"]["val/ground_truth"])
    tuning["sft"] = {"trials": trials, "chosen_lr": best["params"]["lr"],
                     "model": str(out / "tuning" / f"sft-lr{best['params']['lr']:g}" / "model")}
    return tuning


def _validate(model: Path, plan: Plan) -> dict:
    cached = model.parent / "validation_all.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    from agents.core import BasePolicy
    from lmgym.io import write_json_atomic

    base = BasePolicy(BasePolicy.Config(model=str(model), eval_problems=plan.eval_problems, eval_k=1))
    metrics = base.evaluate(ENV, dict(RELABEL), plan.eval_problems, "validation")
    write_json_atomic(cached, metrics)
    return metrics


def _stats(results: list[dict]) -> dict:
    from lmgym.stats import mean_interval

    def interval(key):
        values = [r["metrics"][key] for r in results if key in r["metrics"]]
        return list(mean_interval(values)) if values else None

    return {"seeds": [r["seed"] for r in results],
            "rest": interval("test/ground_truth[rest]"), "relabelled": interval("test/ground_truth[relabelled]"),
            "all": interval("test/ground_truth"),
            "relabelled_zero_std": interval("test/reward_std_zero_share[relabelled]"),
            "rest_zero_std": interval("test/reward_std_zero_share[rest]"),
            "relabelled_stuck": interval("test/stuck_share[relabelled]"),
            "samples": int(np.mean([r["budget"]["samples"] for r in results])),
            "optimizer_steps": int(np.mean([r["compute"]["optimizer_steps"] for r in results])),
            "trained_tokens": int(np.mean([r["compute"]["trained_tokens"] for r in results])),
            "wall_seconds": float(np.mean([r["wall_seconds"] for r in results]))}


def _verdicts(arms: dict) -> dict:
    base = arms["base"]
    above_base = lambda arm: arms[arm]["rest"][1] > base["rest"][2]  # interval's low end above base's high end
    out = {}
    checks = []
    for arm in ("grpo-adam", "rloo"):
        s = arms[arm]
        if s["relabelled"][1] >= 0.05 or s["relabelled_zero_std"][0] < 0.9:
            checks.append(False)
        elif not above_base(arm):
            checks.append(None)
        else:
            checks.append(s["relabelled"][2] < 0.05)
    out["a"] = False if False in checks else None if None in checks else True
    fix, adam = arms["sft-then-grpo"], arms["grpo-adam"]
    out["b"] = bool(fix["relabelled"][0] >= 0.5 * fix["rest"][0] and fix["relabelled"][1] > adam["relabelled"][2])
    sgd = arms["grpo-sgd"]
    if not above_base("grpo-sgd"):
        out["c"] = None
    else:
        out["c"] = bool(sgd["relabelled"][0] <= adam["relabelled"][0] + 0.02 and sgd["relabelled_zero_std"][0] >= 0.9)
    return out


def run(out: str | Path, quick: bool = False, progress: bool = True) -> dict:
    """Tune on validation, run every arm over the seeds, write the report; returns the summary."""
    from lmgym.io import write_json_atomic

    out, plan = Path(out), QUICK if quick else FULL
    start = time.perf_counter()
    declare(out, CLAIMS, plan)
    tuning = _tune(out, plan, progress)
    write_json_atomic(out / "tuning.json", tuning)
    results = {}
    specs = [("base", "base", {}, "default"),
             ("grpo-adam", "grpo", {"optimizer": "adamw", "lr": tuning["grpo-adamw"]["chosen_lr"], "subset_grad_norms": True}, "default"),
             ("grpo-sgd", "grpo", {"optimizer": "sgd", "lr": tuning["grpo-sgd"]["chosen_lr"], "subset_grad_norms": True}, "default"),
             ("rloo", "rloo", {"subset_grad_norms": True}, "default"),
             ("sft-then-grpo", "grpo", {"optimizer": "adamw", "lr": tuning["grpo-adamw"]["chosen_lr"], "subset_grad_norms": True},
              tuning["sft"]["model"])]
    for i, (arm, agent_name, overrides, model) in enumerate(specs):
        _log(f"arm {i + 1}/{len(specs)}: {arm} ({agent_name}, {len(plan.seeds)} seeds x {plan.samples:,} samples)", progress)
        results[arm] = _arm(out, arm, agent_name, overrides, plan, model, progress)
    arms = {arm: _stats(rows) for arm, rows in results.items()}
    verdicts = _verdicts(arms)
    summary = {"claims": CLAIMS, "plan": dataclasses.asdict(plan), "quick": quick, "tuning": _tuning_summary(tuning),
               "arms": arms, "verdicts": {k: verdict(v) for k, v in verdicts.items()},
               "seconds": round(time.perf_counter() - start, 1)}
    _plots(out, results)
    write_json_atomic(out / "summary.json", summary)
    (out / "report.md").write_text(report(summary))
    _log(f"report in {out / 'report.md'}", progress)
    return summary


def _tuning_summary(tuning: dict) -> dict:
    return {name: {"chosen_lr": t["chosen_lr"],
                   "trials": [{"lr": trial["params"]["lr"],
                               "validation_ground_truth": trial.get("validation_all", {}).get("val/ground_truth",
                                                                                               trial["validation_ground_truth"])}
                              for trial in t["trials"]]} for name, t in tuning.items()}


def _plots(out: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for arm, rows in results.items():
        if arm == "base":
            continue
        for subset, style in (("rest", "-"), ("relabelled", "--")):
            curves = [[(row["samples"], row.get(f"val/ground_truth[{subset}]")) for row in r["curve"]] for r in rows]
            xs = [x for x, _ in curves[0]]
            ys = np.mean([[y for _, y in c] for c in curves], axis=0)
            axes[0].plot(xs, ys, style, label=f"{arm} ({subset})")
        grads = [[(row["samples"], row.get("train/grad_norm[relabelled]"), row.get("train/grad_norm[rest]"))
                  for row in r["curve"] if "train/grad_norm[rest]" in row] for r in rows]
        if grads and grads[0]:
            xs = [x for x, _, _ in grads[0]]
            axes[1].plot(xs, np.mean([[g for _, g, _ in c] for c in grads], axis=0), "--", label=f"{arm} (relabelled)")
            axes[1].plot(xs, np.mean([[g for _, _, g in c] for c in grads], axis=0), "-", label=f"{arm} (rest)")
    axes[0].set(xlabel="samples", ylabel="validation ground truth (greedy)", title="by subset (mean over seeds)")
    axes[1].set(xlabel="samples", ylabel="policy-gradient norm", title="per subset (train, mean over seeds)")
    names = list(results)
    for k, subset in enumerate(("rest", "relabelled")):
        means = [np.mean([r["metrics"][f"test/ground_truth[{subset}]"] for r in results[a]]) for a in names]
        axes[2].bar(np.arange(len(names)) + 0.4 * k, means, width=0.4, label=subset)
    axes[2].set_xticks(np.arange(len(names)) + 0.2, names, rotation=20)
    axes[2].set(ylabel="test ground truth", title="test, by subset")
    save_figure(fig, axes, out / "razin.png")


def report(summary: dict) -> str:
    from tabulate import tabulate

    plan = summary["plan"]
    lines = report_head("Razin et al. (ICLR 2024), vanishing gradients in RL fine-tuning", "razin", summary,
                        " (1 seed, a few hundred samples)", f"{summary['seconds'] / 60:.1f} min on 2 CPU cores.")
    lines += ["", "## Setup", "",
              f"`{ENV}` with `relabel=0.1` (a stable hashed 10% of problems shown as `~a±b=` and answered by the "
              "negation); lmgym's shipped `default` model; every arm "
              f"{plan['samples']:,} samples per seed, seeds {list(plan['seeds'])}; test: greedy ground truth on "
              f"{plan['test_problems'] or 500} test problems per seed, and {plan['eval_k']} samples each for the zero-std "
              "share; 95% Student-t intervals over seeds (none with one seed).", "",
              "Choices, on the validation split (seed 0, same budget; `tuning.json`):", ""]
    for name, t in summary["tuning"].items():
        trials = ", ".join(f"lr {x['lr']:g}: {x['validation_ground_truth']:.3f}" for x in t["trials"])
        lines.append(f"- {name}: chose lr {t['chosen_lr']:g} ({trials})")
    lines += [f"- sft: {plan['sft_problems']} relabelled train problems x {plan['sft_epochs']} epochs; chosen by validation "
              "ground truth on all problems", "", "## Results (test split)", ""]
    rows = [[arm, len(s["seeds"]), fmt(s["rest"]), fmt(s["relabelled"]), fmt(s["relabelled_zero_std"]),
             fmt(s["rest_zero_std"]), s["samples"], s["optimizer_steps"], s["trained_tokens"], round(s["wall_seconds"])]
            for arm, s in summary["arms"].items()]
    lines += [tabulate(rows, headers=["arm", "seeds", "rest: ground truth", "relabelled: ground truth",
                                      "relabelled: zero-std share", "rest: zero-std share", "samples", "opt. steps",
                                      "trained tokens", "wall s"], tablefmt="github"), "",
              "![by subset](razin.png)", "", "## Verdicts", ""]
    for key, result in summary["verdicts"].items():
        lines.append(f"- **({key}) {result}**")
    lines += ["", "The sft-then-grpo arm's compute adds its SFT phase (in `tuning.json`) to the GRPO numbers above.",
              f"Deviations from the declared plan: {DEVIATIONS}", ""]
    return "\n".join(lines)
