"""Swamy et al. (2025), "All Roads Lead to Likelihood: The Value of RL in Fine-Tuning":
``lmgym reproduce swamy``.

The paper's question: why does two-stage fine-tuning (a reward model learned from preferences,
then online RL against it) beat offline maximum likelihood (DPO) on the *same* preference data,
when passing through a reward model can only lose information? Its best-supported answer is a
generation-verification gap: where verifying is simpler than generating, the reward model is
learned well from little data, and RL then only searches among policies optimal for a simple
verifier. Where there is no gap (two-word summaries in the paper), the advantage disappears.

Tasks (``lmgym/KeyFacts-v0``, exact ground truth: key-fact coverage minus misstatements, times a
brevity factor):

- ``gap``: documents of 2 key facts and 1 filler sentence. A good summary selects the facts,
  drops the filler and copies each fact exactly; verifying one checks each summary sentence
  against the document. Generating is the harder side.
- ``control``: documents of 1 key fact and 1 filler. The good summary is one of the two
  sentences, copied: generating is no harder than verifying (the "summary of one fact").

Data: one fixed set of preference pairs per task, drawn once from the frozen initial policy
(the shipped ``keyfacts-tiny``): two samples of a train document, labelled Bradley-Terry from
the ground truth (the first chosen with probability ``sigmoid(scale (g1 - g2))``; pairs whose
ground truths tie carry no preference and are skipped; ``agents.dpo.sample_preference_rows``).

Arms, all from ``keyfacts-tiny``, the same sample budget (the offline arm reads each pair once:
two samples a pair), one optimizer step per iteration, the last policy tested:

- ``dpo-offline``: DPO on the pairs (``preferences=``; no likelihood term, ``sft_coef=0``).
- ``rm-grpo``: a reward model (the policy's own trunk with a fresh head: the usual RLHF
  initialisation) trained Bradley-Terry on the same pairs (``train_reward_model``), then GRPO on
  fresh samples scored by it (``judge="reward_model"``).
- ``rm-online-dpo``: online DPO: fresh samples of the current policy, every within-prompt pair
  ranked by that reward model.

Every arm is evaluated by the ground truth (``KeyFactsTask.default_ground_truth = "facts"``),
never by the reward model. One reward model per seed (trained with that seed on the fixed pairs).

Choices: every arm's learning rate from the same grid, on the validation split (greedy ground
truth of the last policy), tuning seed 100 (with the first seed's reward model): equal tuning effort
(``tuning.json``). The reward model's settings and the labelling scale were fixed before any
run and not tuned. Test: greedy ground truth of the final policy on the test split.

Claims and tests, declared before any run (:data:`CLAIMS`); 95% Welch intervals over seeds
(``lmgym.stats``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from lmgym.reproduce import declare, fmt, log, report_head, save_figure, verdict, verdict_lines

NAME = "swamy"
ENV = "lmgym/KeyFacts-v0"
MODEL = "keyfacts-tiny"
TASKS = {"gap": {"facts": 2, "fillers": 1}, "control": {"facts": 1, "fillers": 1}}
RM_ARMS = ("rm-grpo", "rm-online-dpo")
ARMS = {  # arm -> (agent, overrides beside the plan's shared settings and the chosen lr)
    "dpo-offline": ("dpo", {"online": False, "sft_coef": 0.0, "loss": "sigmoid"}),
    "rm-grpo": ("grpo", {}),
    "rm-online-dpo": ("dpo", {"online": True, "sft_coef": 0.0, "loss": "sigmoid", "labels": "reward", "pairing": "all"}),
}
CLAIMS = {
    "a1": ("With a generation-verification gap, a reward model trained on the preference pairs and then online RL "
           "against it (rm-grpo) beats offline DPO on the same pairs and sample budget.",
           "gap task, test ground truth, Welch 95% interval of rm-grpo - dpo-offline: above 0 reproduced; below 0 not "
           "reproduced; containing 0 inconclusive."),
    "a2": ("Online DPO with pairs ranked by that reward model (rm-online-dpo) also beats offline DPO there.",
           "As (a1) for rm-online-dpo - dpo-offline."),
    "b": ("On the control task without a gap the reward-model routes' advantage over offline DPO shrinks or "
          "disappears.",
          "A(task) = mean(rm-grpo, rm-online-dpo) - dpo-offline on test ground truth; Welch-Satterthwaite 95% interval "
          "of A(gap) - A(control): above 0 reproduced; below 0 not reproduced; containing 0 inconclusive."),
    "c": ("The verifier is the easier thing to learn from the pairs: the reward model's held-out preference accuracy "
          "beats DPO's implicit reward accuracy (h(y) = log pi/pi_ref of its trained policy) on the same held-out pairs.",
          "gap task, held-out test-split pairs (sampled like the training pairs, the higher ground truth chosen), per "
          "seed RM accuracy - DPO implicit accuracy, 95% t interval over seeds: above 0 reproduced; below 0 not "
          "reproduced; containing 0 inconclusive."),
}


@dataclasses.dataclass(frozen=True)
class Plan:
    pairs: int  # the fixed preference dataset, per task
    heldout_pairs: int  # accuracy pairs on the test split
    scale: float  # Bradley-Terry labelling: P(first chosen) = sigmoid(scale * (g1 - g2))
    seeds: tuple[int, ...]
    samples: int  # per run (the offline arm: two per pair read)
    lrs: tuple[float, ...]  # every arm's learning rate is chosen from this grid
    prompts_per_iteration: int  # online arms: prompts x samples per iteration (= one optimizer step)
    samples_per_prompt: int
    pairs_per_update: int  # DPO arms: pairs per optimizer step (at most)
    beta: float  # DPO's beta (both DPO arms)
    max_new_tokens: int
    eval_problems: int  # validation problems (greedy) for tuning
    test_problems: int
    rm_epochs: int
    rm_lr: float
    tuning_seed: int = 100


FULL = Plan(pairs=512, heldout_pairs=128, scale=5.0, seeds=(0, 1, 2), samples=1024, lrs=(3e-5, 1e-4),
            prompts_per_iteration=16, samples_per_prompt=4, pairs_per_update=32, beta=0.1, max_new_tokens=80,
            eval_problems=100, test_problems=200, rm_epochs=3, rm_lr=5e-4)
QUICK = Plan(pairs=24, heldout_pairs=12, scale=5.0, seeds=(0, 1), samples=32, lrs=(3e-4,), prompts_per_iteration=4,
             samples_per_prompt=4, pairs_per_update=8, beta=0.1, max_new_tokens=48, eval_problems=6, test_problems=6,
             rm_epochs=1, rm_lr=5e-4)
SEEN_BEFORE = ("Timing runs of GRPO on the ground-truth reward from keyfacts-tiny (1,024 samples, 100 validation "
               "problems): gap task 0.56 -> 0.57 at lr 1e-4, 0.56 -> 0.13 at lr 1e-3 (so the grid is 1e-4, 3e-4); "
               "control task base 0.38. No run of any arm below.")
DEVIATIONS = ("this is the second full run. The first (grid lr 1e-4, 3e-4; 150 validation documents; 256 held-out "
              "pairs; 64 pairs a DPO step; a separate reward model for the tuning seed) took 34.3 min, over the 30-minute "
              "limit, and every arm at both learning rates ended below the initial policy on validation (gap 0.553 -> "
              "0.097-0.283, control 0.367 -> 0.094-0.282; its report is reports/swamy/first-run.md; verdicts a1, a2, c "
              "inconclusive, b not reproduced). After seeing that, the grid moved down one step (3e-5, 1e-4) so that "
              "an arm can stay near its start, and, for time only, validation used 100 documents, the held-out pairs "
              "were cut to 128, DPO steps to 32 pairs (both DPO arms) and tuning uses the seed-0 reward model. The "
              "reward models, the data, the labels, the arms and the tests are as declared.")


def _log(message: str, progress: bool) -> None:
    log(NAME, message, progress)


def _env_kwargs(task: str, plan: Plan, reward_model: str | None = None, test_size: int | None = None) -> dict:
    kwargs = {**TASKS[task], "validation_size": plan.eval_problems, "test_size": test_size or plan.test_problems}
    if reward_model is not None:
        kwargs.update(judge="reward_model", reward_model=reward_model)
    return kwargs


def _base_agent(plan: Plan, seed: int = 0):
    from agents.dpo import DPO, DPOConfig

    return DPO(DPOConfig(model=MODEL, seed=seed, max_new_tokens=plan.max_new_tokens, eval_problems=plan.eval_problems,
                         test_problems=plan.test_problems, eval_k=1, sft_coef=0.0))


def preference_data(out: Path, task: str, plan: Plan, progress: bool) -> dict:
    """The task's fixed pairs (train split) and held-out pairs (test split), sampled once from the
    initial policy and kept in ``out/data/``; also the base policy's greedy test ground truth."""
    from agents.dpo import sample_preference_rows
    from lmgym.io import write_json_atomic

    folder = out / "data" / task
    record_file = folder / "data.json"
    if record_file.is_file():
        return json.loads(record_file.read_text())
    _log(f"{task}: sampling {plan.pairs} preference pairs and {plan.heldout_pairs} held-out pairs from {MODEL}", progress)
    agent = _base_agent(plan)
    train = sample_preference_rows(agent, ENV, plan.pairs, env_kwargs=_env_kwargs(task, plan), split="train",
                                   scale=plan.scale, seed=0)
    # held-out pairs on test documents (the first test_problems of them are also the test set: both
    # are final measurements, neither is chosen on)
    heldout = sample_preference_rows(agent, ENV, plan.heldout_pairs,
                                     env_kwargs=_env_kwargs(task, plan, test_size=max(4 * plan.heldout_pairs, plan.test_problems)),
                                     split="test", scale=None, seed=1)
    base = agent.evaluate(ENV, _env_kwargs(task, plan), split="test")
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("pairs", train), ("heldout", heldout)):
        text = "".join(json.dumps(row) + "\n" for row in rows)
        tmp = folder / f"{name}.jsonl.tmp"
        tmp.write_text(text)
        tmp.replace(folder / f"{name}.jsonl")
    flips = float(np.mean([r["chosen_ground_truth"] < r["rejected_ground_truth"] for r in train]))
    record = {"pairs": str(folder / "pairs.jsonl"), "heldout": str(folder / "heldout.jsonl"),
              "base_test": base["test/ground_truth"], "label_flip_share": flips,
              "mean_gap": float(np.mean([abs(r["chosen_ground_truth"] - r["rejected_ground_truth"]) for r in train]))}
    write_json_atomic(record_file, record)
    return record


def _rows(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def reward_model(out: Path, task: str, seed: int, data: dict, plan: Plan, progress: bool) -> dict:
    """The task's reward model for ``seed``: the initial policy's trunk with a fresh head, trained
    Bradley-Terry on the fixed pairs; its held-out accuracy on the held-out pairs."""
    from lmgym.pretrain import shipped_model
    from lmgym.rewards.summarization import PreferencePair, RewardModelConfig, train_reward_model

    folder = out / "rm" / f"{task}-seed{seed}"
    if (folder / "lmgym_rm.json").is_file():
        return json.loads((folder / "lmgym_rm.json").read_text()) | {"path": str(folder)}
    _log(f"{task}: training the reward model of seed {seed} on {plan.pairs} pairs", progress)
    as_pairs = lambda rows: [PreferencePair(r["question"], r["chosen"], r["rejected"]) for r in rows]
    heldout = as_pairs(_rows(data["heldout"]))
    config = RewardModelConfig(heads=1, members=1, bootstrap=1.0, lr=plan.rm_lr, epochs=plan.rm_epochs, seed=seed)
    started = time.perf_counter()
    rm, train_log = train_reward_model(as_pairs(_rows(data["pairs"])), str(shipped_model(MODEL)), config,
                                       progress=progress)
    meta = {"seed": seed, "task": task, "pairs": plan.pairs, "heldout_accuracy": rm.accuracy(heldout),
            "train_accuracy": rm.accuracy(as_pairs(_rows(data["pairs"]))), "steps": len(train_log),
            "seconds": round(time.perf_counter() - started, 1)}
    rm.save(folder, extra=meta)
    return meta | {"path": str(folder)}


def _overrides(name: str, lr: float, plan: Plan, data: dict) -> dict:
    agent_name, extra = ARMS[name]
    shared = {"lr": lr, "max_new_tokens": plan.max_new_tokens, "select_on": "last", "eval_every": 0,
              "prompts_per_iteration": plan.prompts_per_iteration, "samples_per_prompt": plan.samples_per_prompt,
              "warmup_steps": 0}
    if agent_name == "dpo":
        shared.update(beta=plan.beta, pairs_per_update=plan.pairs_per_update)
    if name == "dpo-offline":  # pairs per iteration so that one iteration reads as many samples as the online arms
        shared.update(preferences=data["pairs"],
                      prompts_per_iteration=plan.prompts_per_iteration * plan.samples_per_prompt // 2)
    return {**shared, **extra}


def cell(folder: Path, task: str, name: str, lr: float, seed: int, data: dict, rm: dict, plan: Plan, *,
         test: bool, progress: bool) -> dict:
    """One run of arm ``name`` (resumable: the agent checkpoints into ``folder``; skipped once its
    record exists): the last policy's greedy validation ground truth, and with ``test`` its test
    ground truth and, for DPO arms, the implicit reward accuracy on the held-out pairs."""
    from agents import load_agent
    from agents.dpo import implicit_reward_accuracy
    from lmgym.io import write_json_atomic
    from lmgym.rollout import Budget

    record_file = folder / "result.json"
    if record_file.is_file():
        return json.loads(record_file.read_text())
    agent_name, _ = ARMS[name]
    overrides = _overrides(name, lr, plan, data)
    agent_class = load_agent(agent_name)
    agent = agent_class(agent_class.Config(model=MODEL, seed=seed, eval_problems=plan.eval_problems, eval_k=1,
                                           test_problems=plan.test_problems, **overrides))
    env_kwargs = _env_kwargs(task, plan, rm["path"] if name in RM_ARMS else None)
    learned = agent.learn(ENV, Budget(max_samples=plan.samples), run_dir=folder, env_kwargs=env_kwargs,
                          progress=progress, test=test)
    record = {"task": task, "arm": name, "seed": seed, "lr": lr, "params": {k: v for k, v in overrides.items()},
              "validation_base": learned.curve[0]["val/ground_truth"],
              "validation": learned.curve[-1]["val/ground_truth"],
              "validation_reward": learned.curve[-1]["val/mean_reward"],
              "optimizer_steps": agent.optimizer_steps, "trained_tokens": agent.trained_tokens,
              "samples": learned.budget["samples"], "wall_seconds": learned.wall_seconds}
    if test:
        record.update(test=learned.test["test/ground_truth"], test_reward=learned.test["test/mean_reward"])
        if agent_name == "dpo":
            record["implicit_accuracy"] = implicit_reward_accuracy(agent, _rows(data["heldout"]))
    write_json_atomic(record_file, record)
    return record


def tune(out: Path, task: str, data: dict, plan: Plan, progress: bool) -> dict:
    """Every arm's learning rate, chosen on validation with the tuning seed (and its reward model)."""
    rm = reward_model(out, task, plan.seeds[0], data, plan, progress)  # the tuning seed's runs share seed 0's RM
    tuning = {}
    for name in ARMS:
        trials = []
        for lr in plan.lrs:
            _log(f"{task}: tuning {name} lr={lr:g} on validation", progress)
            trials.append(cell(out / "tuning" / task / f"{name}-lr{lr:g}", task, name, lr, plan.tuning_seed, data, rm,
                               plan, test=False, progress=progress))
        best = max(trials, key=lambda t: t["validation"])  # ties: the first (smaller) lr
        tuning[name] = {"chosen_lr": best["lr"],
                        "trials": [{"lr": t["lr"], "validation": t["validation"], "validation_base": t["validation_base"]}
                                   for t in trials]}
    return tuning


def _arm_stats(records: list[dict]) -> dict:
    from lmgym.stats import mean_interval

    values = [r["test"] for r in records]
    stats = {"seeds": [r["seed"] for r in records], "test": list(mean_interval(values)), "test_values": values,
             "test_reward": list(mean_interval([r["test_reward"] for r in records])),
             "validation": list(mean_interval([r["validation"] for r in records])),
             "optimizer_steps": int(np.mean([r["optimizer_steps"] for r in records])),
             "trained_tokens": int(np.mean([r["trained_tokens"] for r in records])),
             "samples": int(np.mean([r["samples"] for r in records])),
             "wall_seconds": float(np.mean([r["wall_seconds"] for r in records]))}
    if all("implicit_accuracy" in r for r in records):
        stats["implicit_accuracy_values"] = [r["implicit_accuracy"] for r in records]
        stats["implicit_accuracy"] = list(mean_interval(stats["implicit_accuracy_values"]))
    return stats


def _sided(interval) -> bool | None:
    return True if interval[1] > 0 else False if interval[2] < 0 else None


def verdicts(results: dict, rms: dict, seeds: int) -> tuple[dict, dict]:
    """The declared tests (:data:`CLAIMS`) on the per-task arm statistics and reward models."""
    from lmgym.stats import contrast_interval, difference_interval, mean_interval

    out, evidence = {}, {}
    if seeds < 2:
        return {key: None for key in CLAIMS}, {"seeds": "fewer than 2 seeds: no interval, no verdict"}
    gap, control = results["gap"], results["control"]
    for key, name in (("a1", "rm-grpo"), ("a2", "rm-online-dpo")):
        d = list(difference_interval(gap[name]["test_values"], gap["dpo-offline"]["test_values"]))
        evidence[f"({key}) gap: {name} - dpo-offline (test ground truth)"] = d
        out[key] = _sided(d)
    for task, stats in results.items():
        a = contrast_interval([stats["rm-grpo"]["test_values"], stats["rm-online-dpo"]["test_values"],
                               stats["dpo-offline"]["test_values"]], [0.5, 0.5, -1.0])
        evidence[f"(b) A({task}) = mean(rm routes) - dpo-offline"] = list(a)
    groups = [gap["rm-grpo"]["test_values"], gap["rm-online-dpo"]["test_values"], gap["dpo-offline"]["test_values"],
              control["rm-grpo"]["test_values"], control["rm-online-dpo"]["test_values"],
              control["dpo-offline"]["test_values"]]
    b = list(contrast_interval(groups, [0.5, 0.5, -1.0, -0.5, -0.5, 1.0]))
    evidence["(b) A(gap) - A(control)"] = b
    out["b"] = _sided(b)
    for task in results:
        rm = [rms[task][seed]["heldout_accuracy"] for seed in results[task]["dpo-offline"]["seeds"]]
        implicit = results[task]["dpo-offline"]["implicit_accuracy_values"]
        c = list(mean_interval(np.array(rm) - np.array(implicit)))
        evidence[f"(c) {task}: RM held-out accuracy - DPO implicit accuracy (paired by seed)"] = c
        if task == "gap":
            out["c"] = _sided(c)
    return out, evidence


def run(out: str | Path, quick: bool = False, progress: bool = True) -> dict:
    """Per task: the fixed pairs, the reward models, tuning, then every arm over the seeds; the report."""
    from lmgym.io import write_json_atomic

    out, plan = Path(out), QUICK if quick else FULL
    start = time.perf_counter()
    declare(out, CLAIMS, plan)
    data, rms, tuning, results, records = {}, {}, {}, {}, {}
    for task in TASKS:
        data[task] = preference_data(out, task, plan, progress)
        tuning[task] = tune(out, task, data[task], plan, progress)
        rms[task] = {seed: reward_model(out, task, seed, data[task], plan, progress) for seed in plan.seeds}
        results[task], records[task] = {}, {}
        for i, name in enumerate(ARMS):
            lr = tuning[task][name]["chosen_lr"]
            _log(f"{task}: arm {i + 1}/{len(ARMS)} {name} (lr {lr:g}, {len(plan.seeds)} seeds x {plan.samples:,} samples)",
                 progress)
            rows = [cell(out / "runs" / task / name / f"seed{seed}", task, name, lr, seed, data[task], rms[task][seed],
                         plan, test=True, progress=progress) for seed in plan.seeds]
            records[task][name] = rows
            results[task][name] = _arm_stats(rows)
    write_json_atomic(out / "tuning.json", tuning)
    found, evidence = verdicts(results, rms, len(plan.seeds))
    summary = {"claims": CLAIMS, "plan": dataclasses.asdict(plan), "quick": quick, "tasks": TASKS, "data": data,
               "reward_models": {task: {str(s): {k: v for k, v in m.items() if k != "path"} for s, m in by_seed.items()}
                                 for task, by_seed in rms.items()},
               "tuning": tuning, "results": results, "verdicts": {key: verdict(v) for key, v in found.items()},
               "evidence": evidence, "seen_before": SEEN_BEFORE, "deviations": DEVIATIONS,
               "seconds": round(time.perf_counter() - start, 1),
               "run_seconds": round(sum(r["wall_seconds"] for by_arm in records.values() for rows in by_arm.values()
                                        for r in rows), 1)}
    _plots(out, summary)
    write_json_atomic(out / "summary.json", summary)
    (out / "report.md").write_text(report(summary))
    _log(f"report in {out / 'report.md'}", progress)
    return summary


def _plots(out: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(ARMS)
    for j, name in enumerate(ARMS):
        points = [summary["results"][t][name]["test"] for t in TASKS]
        axes[0].bar(np.arange(len(TASKS)) + width * j, [p[0] for p in points], width=width, label=name,
                    yerr=[[p[0] - p[1] for p in points], [p[2] - p[0] for p in points]], capsize=3)
    for k, task in enumerate(TASKS):
        axes[0].hlines(summary["data"][task]["base_test"], k - width / 2, k + width * (len(ARMS) - 0.5), colors="grey",
                       linestyles=":", label="initial policy" if k == 0 else None)
    axes[0].set_xticks(np.arange(len(TASKS)) + width, list(TASKS))
    axes[0].set(ylabel="test ground truth (greedy)", title="arms on the same pairs and budget (95% t over seeds)")
    seeds = summary["plan"]["seeds"]
    for j, task in enumerate(TASKS):
        rm = [summary["reward_models"][task][str(s)]["heldout_accuracy"] for s in seeds]
        implicit = summary["results"][task]["dpo-offline"].get("implicit_accuracy_values", [np.nan] * len(seeds))
        axes[1].scatter([j - 0.1] * len(rm), rm, color="tab:green", label="reward model" if j == 0 else None)
        axes[1].scatter([j + 0.1] * len(implicit), implicit, color="tab:blue", label="DPO implicit reward" if j == 0 else None)
    axes[1].axhline(0.5, color="grey", ls=":")
    axes[1].set_xticks(range(len(TASKS)), list(TASKS))
    axes[1].set(ylabel="held-out preference accuracy", title="verifier vs DPO's implicit reward (per seed)")
    save_figure(fig, axes, out / "swamy.png")


def report(summary: dict) -> str:
    from tabulate import tabulate

    plan = summary["plan"]
    timing = (f"this invocation {summary['seconds'] / 60:.1f} min on 2 CPU cores (the test runs' own wall time: "
              f"{summary['run_seconds'] / 60:.1f} min; work finished earlier is read back).")
    lines = report_head("Swamy et al. (2025), the generation-verification gap", NAME, summary,
                        f" ({plan['pairs']} pairs, {plan['samples']} samples a run)", timing)
    lines += ["", f"Seen before declaring: {summary['seen_before']}", "", "## Setup", "",
              f"`{ENV}` from `{MODEL}`: gap task {TASKS['gap']}, control task {TASKS['control']} (facts, fillers). "
              f"Per task one fixed set of {plan['pairs']} preference pairs from the initial policy (temperature 1, "
              f"Bradley-Terry labels with scale {plan['scale']:g} on the ground truth, ties skipped) and "
              f"{plan['heldout_pairs']} held-out pairs on test documents (the higher ground truth chosen). "
              f"{plan['samples']:,} samples a run ({plan['prompts_per_iteration']} prompts x {plan['samples_per_prompt']} "
              f"a step for the online arms; the offline arm reads {plan['prompts_per_iteration'] * plan['samples_per_prompt'] // 2} "
              f"pairs a step, each pair once); DPO beta {plan['beta']:g}, at most {plan['pairs_per_update']} pairs a "
              f"step; reward models: the policy's trunk with one fresh head, {plan['rm_epochs']} epochs at lr "
              f"{plan['rm_lr']:g}, one per seed. Seeds {list(plan['seeds'])}; greedy ground truth of the last policy on "
              f"{plan['test_problems']} test documents. Learning rates chosen on {plan['eval_problems']} validation "
              f"documents (seed {plan['tuning_seed']}, the reward model of seed {plan['seeds'][0]}) from {list(plan['lrs'])}, the same grid and objective for every arm:", ""]
    for task, by_arm in summary["tuning"].items():
        for name, t in by_arm.items():
            trials = ", ".join(f"lr {x['lr']:g}: {x['validation']:.3f}" for x in t["trials"])
            lines.append(f"- {task} / {name}: chose lr {t['chosen_lr']:g} ({trials}; initial {t['trials'][0]['validation_base']:.3f})")
    lines += ["", "## Results", ""]
    for task in TASKS:
        d = summary["data"][task]
        rms = summary["reward_models"][task]
        accuracy = [rms[str(s)]["heldout_accuracy"] for s in plan["seeds"]]
        lines += [f"### {task}", "",
                  f"Initial policy: test ground truth {d['base_test']:.3f}. Pairs: mean ground-truth gap "
                  f"{d['mean_gap']:.3f}, {100 * d['label_flip_share']:.1f}% labelled against the ground truth (the "
                  f"Bradley-Terry noise). Reward models' held-out accuracy per seed: "
                  f"{', '.join(f'{a:.3f}' for a in accuracy)}.", ""]
        rows = []
        for name, s in summary["results"][task].items():
            rows.append([name, len(s["seeds"]), fmt(s["test"]), fmt(s["test_reward"]) if name in RM_ARMS else "-",
                         fmt(s.get("implicit_accuracy")), fmt(s["validation"]), s["samples"], s["optimizer_steps"],
                         s["trained_tokens"], round(s["wall_seconds"])])
        lines += [tabulate(rows, headers=["arm", "seeds", "test ground truth (95% t)", "test RM score", "DPO implicit acc.",
                                          "validation", "samples", "opt. steps", "trained tokens", "wall s"],
                           tablefmt="github"), ""]
    lines += ["The RM score is what the reward model the arm trained on says of its test summaries (not a verdict: "
              "every verdict reads the ground truth).", "", "![arms and accuracies](swamy.png)", "", "## Verdicts", ""]
    lines += verdict_lines(summary["verdicts"], summary["evidence"], summary["deviations"])
    return "\n".join(lines)
