"""Flet-Berliac et al. (2024), "Contrastive Policy Gradient": ``lmgym reproduce copg``.

CoPG regresses a pair's reward difference onto its regularised log-ratio difference,
``(R(y) - R(y') - beta (h(y) - h(y')))^2`` with ``h = log pi - log pi_ref`` (``agents.copg``): its
fixed point is the KL-regularised optimum ``pi* ∝ pi_ref exp(R / beta)`` whatever policy drew the
pairs, so it learns off-policy without importance weights. Two experiments:

(a) The paper's bandit, as a tabular softmax policy trained with lmgym's own losses
    (``agents.copg.copg_loss``, ``agents.dpo.ipo_loss``, ``agents.copg.biased_off_policy_pg_loss``):
    3 arms, R = (2.5, 2, 1), beta = 0.5, uniform pi_ref (so pi* = (0.705, 0.259, 0.035)); every
    step draws fresh random pairs, ``y`` from (0.1, 0.2, 0.7) and ``y'`` from (0.05, 0.05, 0.9)
    (``BanditTask.sample_pairs``). Methods: CoPG; IPO on preferences sampled Bradley-Terry from
    the rewards (``P(y > y') = sigmoid(R(y) - R(y'))``, tau = beta); the policy gradient without
    correction on both halves of each pair, with baseline 0 (``pg-zero``) and with the
    minibatch's mean reward (``pg-mean``). Measured: the regret of the regularised objective,
    ``J(pi*) - J(pi)`` with ``J(pi) = E_pi[R] - beta KL(pi || pi_ref)``, in closed form, along
    training. The tabular policy is the paper's setting: an LM's reference cannot be made
    exactly uniform over three arms.
(b) The same comparison through lmgym's agents on a language task: ``lmgym/Bandit-v0`` from the
    shipped ``bandit-tiny`` (pretrained to sample A/B/C ~ (0.1, 0.2, 0.7): pi_ref is this model),
    every arm trained only on samples of the frozen initial policy (off-policy data), with
    random pairing: ``copg`` (``data="offline", pairing="random"``), ``ipo`` (the DPO agent,
    ``loss="ipo", labels="bradley_terry", pairing="random"``, offline), ``pg-zero`` / ``pg-mean``
    (the CoPG agent with ``loss="pg"``), beta = 0.5 for all. Measured: ``E[R] - beta KL`` from
    sampled (not greedy) test evaluation (``lmgym.metrics.regularised_value``; greedy decoding
    picks one arm and cannot say how far a policy is from pi*).

Choices. (a): one shared Adam learning rate and batch for every method (Adam makes the step
size independent of each loss's scale), fixed before running. (b): each method's learning rate
chosen on the validation split from the same grid, by the same objective: equal tuning effort
(``tuning.json``); everything else shared. The bandit has one prompt, so its validation and test
splits hold the same problem: tuning trains and samples with its own seed (100), never a test seed.

Claims and tests, declared before any run (:data:`CLAIMS`); intervals are 95% Student-t over
seeds, differences Welch's (``lmgym.stats``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from lmgym.reproduce import arm, declare, fmt, log, report_head, save_figure, trial, verdict, verdict_lines

NAME = "copg"
ENV = "lmgym/Bandit-v0"
MODEL = "bandit-tiny"
BETA = 0.5
EPSILON = 0.01  # claim (a): a regret below this is "~0" (J(pi*) = 2.125 here)
NEAR = 0.02  # claim (a): CoPG's final policy within this of pi* on every arm (mean over seeds)
TABULAR = ("copg", "ipo", "pg-zero", "pg-mean")
CLAIMS = {
    "a": ("On the paper's bandit, CoPG's regret of the regularised objective goes to ~0 (it reaches pi* = "
          "(0.705, 0.259, 0.035)); IPO and the off-policy policy gradient without correction (baseline 0, "
          "baseline = mean reward) stay above it.",
          f"Final regret (95% t over seeds): copg's high end < {EPSILON} and its mean final policy within {NEAR} of "
          f"pi* on every arm, and every other method's low end > {EPSILON}: reproduced. copg's low end > {EPSILON}, "
          f"or another method's high end < {EPSILON}: not reproduced. Else inconclusive."),
    "b": ("On a language task with off-policy data from the frozen initial policy, CoPG beats the uncorrected "
          "policy gradient and IPO on E[R] - beta KL (sampled evaluation).",
          "copg - X on the test regularised value (Welch 95%) for X in ipo, pg-zero, pg-mean: all wholly above 0 "
          "reproduced; any wholly below 0 not reproduced; else inconclusive."),
}


@dataclasses.dataclass(frozen=True)
class Plan:
    tabular_seeds: tuple[int, ...]
    tabular_steps: int
    tabular_pairs: int  # fresh pairs per step
    tabular_lr: float  # Adam, shared by every method
    tabular_every: int  # steps between points of the regret curve
    seeds: tuple[int, ...]  # (b)
    samples: int  # (b): samples of the frozen initial policy per cell
    prompts_per_iteration: int
    samples_per_prompt: int
    updates_per_iteration: int
    lrs: tuple[float, ...]  # (b): the grid every method's learning rate is chosen from
    k: int  # (b): samples of the policy in each evaluation (the bandit has one prompt)
    tuning_seed: int = 100  # (b): the bandit's validation and test are one prompt: tuning never uses a test seed


FULL = Plan(tabular_seeds=(0, 1, 2, 3, 4), tabular_steps=3000, tabular_pairs=64, tabular_lr=0.01, tabular_every=50,
            seeds=(0, 1, 2), samples=4096, prompts_per_iteration=16, samples_per_prompt=4, updates_per_iteration=4,
            lrs=(1e-4, 3e-4, 1e-3), k=512)
QUICK = Plan(tabular_seeds=(0, 1), tabular_steps=300, tabular_pairs=64, tabular_lr=0.03, tabular_every=50,
             seeds=(0,), samples=256, prompts_per_iteration=16, samples_per_prompt=4, updates_per_iteration=2,
             lrs=(1e-3,), k=64)
LM_ARMS = {  # (agent, overrides) of claim (b), beside the plan's shared settings and the chosen lr
    "copg": ("copg", {"data": "offline", "pairing": "random", "loss": "copg"}),
    "ipo": ("dpo", {"loss": "ipo", "labels": "bradley_terry", "pairing": "random", "online": False, "sft_coef": 0.0,
                    "pairs_per_update": 32}),  # CoPG's minibatch: 16 prompts x 4 samples in disjoint pairs
    "pg-zero": ("copg", {"data": "offline", "pairing": "random", "loss": "pg", "pg_baseline": "zero"}),
    "pg-mean": ("copg", {"data": "offline", "pairing": "random", "loss": "pg", "pg_baseline": "mean"}),
}


# (a) the tabular bandit ---------------------------------------------------------------------------

def tabular_run(method: str, seed: int, plan: Plan) -> dict:
    """One tabular softmax policy (logits 0: pi_0 = pi_ref, uniform) trained by Adam on fresh
    off-policy pairs every step; its regret curve and final policy."""
    import torch

    from agents.copg import biased_off_policy_pg_loss, copg_loss
    from agents.dpo import ipo_loss
    from lmgym.envs.bandit import PAPER_BEHAVIOUR, BanditTask

    task = BanditTask(beta=BETA)
    best = task.regularised_value(task.optimal_policy())
    rewards = torch.as_tensor(task.rewards)
    log_ref = torch.log(torch.as_tensor(task.reference))
    rng = np.random.default_rng([seed, 31])
    logits = torch.zeros(len(task.rewards), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=plan.tabular_lr)
    curve = []

    def point(step):
        policy = torch.softmax(logits, 0).detach().numpy()
        curve.append((step, best - task.regularised_value(policy)))
        return policy

    point(0)
    for step in range(1, plan.tabular_steps + 1):
        y, y2, _, _ = task.sample_pairs(plan.tabular_pairs, PAPER_BEHAVIOUR, seed=int(rng.integers(2**31)))
        y, y2 = torch.as_tensor(y), torch.as_tensor(y2)
        log_pi = torch.log_softmax(logits, 0)
        h = log_pi - log_ref
        r, r2 = rewards[y], rewards[y2]
        if method == "copg":
            loss = copg_loss(r, r2, h[y], h[y2], BETA)
        elif method == "ipo":  # Bradley-Terry preferences sampled from the rewards
            first_wins = torch.as_tensor(rng.random(len(y))) < torch.sigmoid(r - r2)
            chosen, rejected = torch.where(first_wins, y, y2), torch.where(first_wins, y2, y)
            loss = ipo_loss(h[chosen], h[rejected], tau=BETA)
        elif method in ("pg-zero", "pg-mean"):
            both, arms = torch.cat([r, r2]), torch.cat([y, y2])
            baseline = both.mean() if method == "pg-mean" else 0.0
            loss = biased_off_policy_pg_loss(both - baseline, h[arms], log_pi[arms], BETA)
        else:
            raise ValueError(f"unknown method {method!r}: choose one of {TABULAR}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % plan.tabular_every == 0 or step == plan.tabular_steps:
            policy = point(step)
    return {"method": method, "seed": seed, "curve": curve, "policy": policy.tolist(), "regret": curve[-1][1]}


# (b) the language bandit through the agents -------------------------------------------------------

def _shared(plan: Plan) -> dict:
    return {"beta": BETA, "prompts_per_iteration": plan.prompts_per_iteration, "samples_per_prompt": plan.samples_per_prompt,
            "updates_per_iteration": plan.updates_per_iteration, "max_new_tokens": 2, "select_on": "last",
            "eval_every": 0}


def lm_trial(folder: Path, name: str, lr: float, plan: Plan, progress: bool) -> dict:
    """Train arm ``name`` at ``lr`` on the tuning seed (:func:`lmgym.reproduce.trial`) and measure its
    regularised value on validation (``k`` samples, KL on)."""
    from lmgym.metrics import regularised_value

    def measure(agent) -> dict:
        metrics = agent.evaluate_samples(ENV, k=plan.k, problems=1, split="validation", kl=True)
        return {"arm": name, "lr": lr, "validation_regularised_value": regularised_value(metrics, BETA, "val"),
                "validation_sampled_reward": metrics["val/sampled_mean_reward"],
                "validation_kl": metrics["val/kl_to_reference"]}

    agent_name, overrides = LM_ARMS[name]
    shared = {key: value for key, value in _shared(plan).items() if key != "eval_every"}  # trial sets it
    return trial(folder, ENV, agent_name, {**shared, **overrides, "lr": lr}, model=MODEL, samples=plan.samples,
                 eval_problems=1, eval_every=0, env_kwargs={}, progress=progress, seed=plan.tuning_seed, measure=measure)


def _tune(out: Path, plan: Plan, progress: bool) -> dict:
    tuning = {}
    for name in LM_ARMS:
        trials = []
        for lr in plan.lrs:
            log(NAME, f"(b) tuning {name} lr={lr:g} on validation", progress)
            trials.append(lm_trial(out / "tuning" / f"{name}-lr{lr:g}", name, lr, plan, progress))
        best = max(trials, key=lambda t: t["validation_regularised_value"])
        tuning[name] = {"chosen_lr": best["lr"], "trials": trials}
    return tuning


def _lm_stats(rows: list[dict]) -> dict:
    from lmgym.metrics import regularised_value
    from lmgym.stats import mean_interval

    values = [regularised_value(r["metrics"], BETA) for r in rows]
    reward = [r["metrics"]["test/sampled_mean_reward"] for r in rows]
    kl = [r["metrics"]["test/kl_to_reference"] for r in rows]
    return {"seeds": [r["seed"] for r in rows], "value": list(mean_interval(values)), "value_values": values,
            "reward": list(mean_interval(reward)), "kl": list(mean_interval(kl)),
            "optimizer_steps": int(np.mean([r["compute"]["optimizer_steps"] for r in rows])),
            "trained_tokens": int(np.mean([r["compute"]["trained_tokens"] for r in rows])),
            "samples": int(np.mean([r["budget"]["samples"] for r in rows])),
            "wall_seconds": float(np.mean([r["wall_seconds"] for r in rows]))}


# verdicts, report ------------------------------------------------------------------------------

def _tabular_stats(runs: list[dict]) -> dict:
    from lmgym.stats import mean_interval

    curves = np.array([[y for _, y in r["curve"]] for r in runs])
    return {"regret": list(mean_interval([r["regret"] for r in runs])),
            "policy": np.mean([r["policy"] for r in runs], axis=0).tolist(),
            "curve": {"steps": [x for x, _ in runs[0]["curve"]], "regret": curves.mean(axis=0).tolist(),
                      "low": curves.min(axis=0).tolist(), "high": curves.max(axis=0).tolist()}}


def _verdicts(tabular: dict, lm: dict, optimum: list[float]) -> tuple[dict, dict]:
    from lmgym.stats import difference_interval

    evidence, out = {}, {}
    copg = tabular["copg"]
    distance = float(np.max(np.abs(np.array(copg["policy"]) - np.array(optimum))))
    evidence["(a) copg final regret"] = copg["regret"]
    evidence["(a) copg max |pi - pi*|"] = round(distance, 4)
    others = {m: tabular[m]["regret"] for m in TABULAR if m != "copg"}
    evidence.update({f"(a) {m} final regret": v for m, v in others.items()})
    if copg["regret"][1] > EPSILON or any(v[2] < EPSILON for v in others.values()):
        out["a"] = False
    elif copg["regret"][2] < EPSILON and distance < NEAR and all(v[1] > EPSILON for v in others.values()):
        out["a"] = True
    else:
        out["a"] = None
    if len(lm["copg"]["seeds"]) < 2:
        out["b"] = None
        return out, evidence
    diffs = {}
    for other in ("ipo", "pg-zero", "pg-mean"):
        d = difference_interval(lm["copg"]["value_values"], lm[other]["value_values"])
        diffs[other] = d
        evidence[f"(b) copg - {other} (regularised value)"] = list(d)
    out["b"] = (False if any(d.high < 0 for d in diffs.values())
                else True if all(d.low > 0 for d in diffs.values()) else None)
    return out, evidence


def run(out: str | Path, quick: bool = False, progress: bool = True) -> dict:
    """(a) the tabular bandit, (b) tuning then every LM arm over the seeds; the report."""
    from lmgym.envs.bandit import BanditTask
    from lmgym.io import write_json_atomic

    out, plan = Path(out), QUICK if quick else FULL
    start = time.perf_counter()
    declare(out, CLAIMS, plan)
    task = BanditTask(beta=BETA)
    tabular_file = out / "tabular.json"
    if tabular_file.is_file():
        runs = json.loads(tabular_file.read_text())
    else:
        runs = []
        for method in TABULAR:
            log(NAME, f"(a) tabular {method}: {len(plan.tabular_seeds)} seeds x {plan.tabular_steps} steps", progress)
            runs += [tabular_run(method, seed, plan) for seed in plan.tabular_seeds]
        write_json_atomic(tabular_file, runs)
    tabular = {m: _tabular_stats([r for r in runs if r["method"] == m]) for m in TABULAR}
    tuning = _tune(out, plan, progress)
    write_json_atomic(out / "tuning.json", tuning)
    lm = {}
    for i, name in enumerate(["base", *LM_ARMS]):
        log(NAME, f"(b) arm {i + 1}/{len(LM_ARMS) + 1}: {name} ({len(plan.seeds)} seeds x {plan.samples:,} samples)", progress)
        agent_name, overrides = LM_ARMS.get(name, ("base", {"max_new_tokens": 2}))
        if name != "base":
            overrides = {**_shared(plan), **overrides, "lr": tuning[name]["chosen_lr"]}
        rows = arm(out / "runs" / name, ENV, agent_name, overrides, seeds=plan.seeds, samples=plan.samples, model=MODEL,
                   eval_problems=1, eval_k=plan.k, test_problems=None, env_kwargs={}, progress=progress)
        lm[name] = _lm_stats(rows)
    optimum = task.optimal_policy().tolist()
    verdicts, evidence = _verdicts(tabular, lm, optimum)
    summary = {"claims": CLAIMS, "plan": dataclasses.asdict(plan), "quick": quick, "optimum": optimum,
               "optimal_value": task.regularised_value(task.optimal_policy()), "tabular": tabular, "tuning": tuning,
               "lm": lm, "verdicts": {key: verdict(v) for key, v in verdicts.items()}, "evidence": evidence,
               "seconds": round(time.perf_counter() - start, 1)}
    _plots(out, tabular, lm, optimum)
    write_json_atomic(out / "summary.json", summary)
    (out / "report.md").write_text(report(summary))
    log(NAME, f"report in {out / 'report.md'}", progress)
    return summary


def _plots(out: Path, tabular: dict, lm: dict, optimum: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for method, s in tabular.items():
        curve = s["curve"]
        axes[0].plot(curve["steps"], np.maximum(curve["regret"], 1e-6), label=method)
        axes[0].fill_between(curve["steps"], np.maximum(curve["low"], 1e-6), np.maximum(curve["high"], 1e-6), alpha=0.2)
    axes[0].axhline(EPSILON, color="grey", ls=":", label=f"~0 ({EPSILON})")
    axes[0].set(yscale="log", xlabel="Adam steps", ylabel="regret J(pi*) - J(pi)",
                title="(a) tabular bandit (mean, min-max over seeds)")
    width = 0.8 / (len(tabular) + 1)
    for j, (name, policy) in enumerate([("pi*", optimum), *((m, s["policy"]) for m, s in tabular.items())]):
        axes[1].bar(np.arange(3) + width * j, policy, width=width, label=name)
    axes[1].set_xticks(np.arange(3) + width * len(tabular) / 2, ["A (2.5)", "B (2)", "C (1)"])
    axes[1].set(ylabel="probability", title="(a) final policies (mean over seeds)")
    names = list(lm)
    points = [lm[n]["value"][0] for n in names]
    errors = [[lm[n]["value"][0] - lm[n]["value"][1] for n in names], [lm[n]["value"][2] - lm[n]["value"][0] for n in names]]
    axes[2].bar(names, points, yerr=errors, capsize=3, color="tab:blue")
    axes[2].set(ylabel=f"test E[R] - {BETA} KL (sampled)", title="(b) Bandit-v0 from bandit-tiny (95% t)")
    save_figure(fig, axes[:2], out / "copg.png")


def report(summary: dict) -> str:
    from tabulate import tabulate

    plan = summary["plan"]
    lines = report_head("Flet-Berliac et al. (2024), Contrastive Policy Gradient", "copg", summary, "",
                        f"{summary['seconds'] / 60:.1f} min on 2 CPU cores.")
    optimum = ", ".join(f"{p:.3f}" for p in summary["optimum"])
    lines += ["", "## (a) The paper's bandit, tabular", "",
              f"R = (2.5, 2, 1), beta = {BETA}, uniform pi_ref; pi* = ({optimum}), J(pi*) = {summary['optimal_value']:.3f}. "
              f"Softmax logits from 0 (pi_ref), Adam lr {plan['tabular_lr']:g}, {plan['tabular_steps']:,} steps of "
              f"{plan['tabular_pairs']} fresh pairs (y ~ (0.1, 0.2, 0.7), y' ~ (0.05, 0.05, 0.9)); seeds "
              f"{list(plan['tabular_seeds'])}.", ""]
    rows = [[m, fmt(s["regret"]), ", ".join(f"{p:.3f}" for p in s["policy"])] for m, s in summary["tabular"].items()]
    lines += [tabulate(rows, headers=["method", "final regret (95% t)", "final policy (mean)"], tablefmt="github"), "",
              "## (b) Through the agents: `lmgym/Bandit-v0` from `bandit-tiny`", "",
              f"Off-policy data only (samples of the frozen initial policy), random pairing, beta = {BETA}; "
              f"{plan['samples']:,} samples per cell ({plan['prompts_per_iteration']} prompts x {plan['samples_per_prompt']} "
              f"per iteration, {plan['updates_per_iteration']} steps per iteration); seeds {list(plan['seeds'])}; the last "
              f"policy evaluated with {plan['k']} samples (temperature 1): E[R] - beta KL, KL the per-sequence estimate on "
              f"the same samples. Learning rates chosen on validation (tuning seed {plan['tuning_seed']}) from "
              f"{list(plan['lrs'])}, by the same objective:", ""]
    for name, t in summary["tuning"].items():
        trials = ", ".join(f"lr {x['lr']:g}: {x['validation_regularised_value']:.3f}" for x in t["trials"])
        lines.append(f"- {name}: chose lr {t['chosen_lr']:g} ({trials})")
    rows = [[name, len(s["seeds"]), fmt(s["value"]), fmt(s["reward"]), fmt(s["kl"]), s["samples"], s["optimizer_steps"],
             s["trained_tokens"], round(s["wall_seconds"])] for name, s in summary["lm"].items()]
    lines += ["", tabulate(rows, headers=["arm", "seeds", "E[R] - beta KL", "E[R] (sampled)", "KL to reference",
                                          "samples", "opt. steps", "trained tokens", "wall s"], tablefmt="github"), "",
              "![regret, policies, language bandit](copg.png)", "", "## Verdicts", ""]
    lines += verdict_lines(summary["verdicts"], summary["evidence"])
    return "\n".join(lines)
