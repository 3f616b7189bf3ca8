"""Summarization in the loop: what optimising a learned judge buys on KeyFacts, and where it is
gamed. The same agents, seeds, budget and starting model (``keyfacts-tiny``) train on
(a) ``lmgym/KeyFacts-v0`` (2 facts, 1 filler): the exact key-facts judge is the reward;
(b) ``lmgym/KeyFacts-RM-v0`` (same documents): lmgym's shipped learned reward model
(``keyfacts-rm``) is the reward; (c) ``judge="entailment"`` with lmgym's shipped offline NLI judge
(``keyfacts-nli``, lmgym/rewards/nli.py): P(document entails each summary sentence), min over
sentences, x brevity. All are evaluated by the exact judge (the ground truth).

Arm (a) is read from the CPU suite's KeyFacts cells when they are there (``--suite-out``), so it
is not trained twice; arm (b) runs here as ``lmgym bench`` with the suite's KeyFacts settings.
Prints, per agent and arm: the test ground truth (exact judge; mean over seeds, 95% t interval),
the training reward on the same test completions, and their gap (reward - truth: a learned RM
that is gamed shows a large one); writes ``benchmarks/results/keyfacts_judges/summary.json``.
``--arms`` runs a subset; the rows of arms not run are kept from the summary already there (each
row says the command that made it).

    python benchmarks/keyfacts_judges.py [--agents grpo ppo exit rloo] [--seeds 0 1 2] [--arms exact rm nli]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
from tabulate import tabulate

from lmgym.bench import run_bench
from lmgym.io import write_json_atomic
from lmgym.stats import mean_interval
from lmgym.suite import SUITES, bench_config


ARMS = {  # key: (name, env id, env kwargs beyond the suite's KeyFacts ones; {} = the registered env's own)
    "exact": ("exact key facts", "lmgym/KeyFacts-v0", None),
    "rm": ("learned RM (keyfacts-rm)", "lmgym/KeyFacts-RM-v0", {}),
    "nli": ("offline NLI judge (keyfacts-nli)", "lmgym/KeyFacts-v0", {"judge": "entailment", "nli_model": "keyfacts-nli"}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", default=["grpo", "ppo", "exit", "rloo"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--suite-out", default="runs/suite-cpu")
    parser.add_argument("--out", default="runs/keyfacts-judges")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    args = parser.parse_args()
    command = ("python benchmarks/keyfacts_judges.py --agents " + " ".join(args.agents) + " --seeds "
               + " ".join(map(str, args.seeds)) + " --arms " + " ".join(args.arms))
    exact_env = next(e for e in SUITES["cpu"] if e.env == "lmgym/KeyFacts-v0")
    agents = ["base", *args.agents]
    arms = []
    for key in args.arms:
        name, env_id, kwargs = ARMS[key]
        if key == "exact":
            arms.append((name, run_bench(bench_config(exact_env, args.suite_out, agents, args.seeds), progress=True)))
            continue
        suite_env = dataclasses.replace(exact_env, env=env_id, env_kwargs={**exact_env.env_kwargs, **kwargs} if kwargs else {},
                                        label=None)
        folder = args.out if key == "rm" else f"{args.out}-{key}"
        arms.append((name, run_bench(bench_config(suite_env, folder, agents, args.seeds), progress=True)))
    rows, record = [], []
    for agent in agents:
        for arm, results in arms:
            runs = [r for r in results if r["agent"]["name"] == agent]
            truth = [r["metrics"]["test/ground_truth"] for r in runs]
            reward = [r["metrics"]["test/mean_reward"] for r in runs]
            truth_iv = mean_interval(truth)
            rows.append([agent, arm if agent != "base" else f"(untrained; scored by {arm})", len(runs), truth_iv.format(),
                         f"{np.mean(reward):.3f}", f"{np.mean(reward) - np.mean(truth):+.3f}",
                         round(np.mean([r["compute"]["optimizer_steps"] for r in runs]))])
            record.append({"agent": agent, "reward": arm, "seeds": [r["seed"] for r in runs], "test_ground_truth": truth,
                           "test_training_reward": reward, "interval": list(truth_iv), "command": command,
                           "optimizer_steps": [r["compute"]["optimizer_steps"] for r in runs],
                           "wall_seconds": [r["wall_seconds"] for r in runs]})
    print(tabulate(rows, headers=["agent", "trained on", "seeds", "test ground truth: exact key facts (95% t CI)",
                                  "training reward on test", "reward - truth", "opt. steps"], tablefmt="github"))
    out = Path("benchmarks/results/keyfacts_judges")
    out.mkdir(parents=True, exist_ok=True)
    ran = {name for name, _ in arms}
    if (out / "summary.json").exists():  # keep the rows of the arms not run this time
        old = json.loads((out / "summary.json").read_text())
        kept = [dict(r, command=r.get("command", old.get("command"))) for r in old["rows"] if r["reward"] not in ran]
        record = kept + record
    plot(record, out / "keyfacts_judges.png")
    write_json_atomic(out / "summary.json", {"rows": record})


def plot(record: list[dict], path: Path) -> None:
    """Test ground truth per agent, one bar per training reward, 95% t intervals; base as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = next(r for r in record if r["agent"] == "base")["interval"][0]
    trained = [r for r in record if r["agent"] != "base"]
    agents = list(dict.fromkeys(r["agent"] for r in trained))
    arms = list(dict.fromkeys(r["reward"] for r in trained))
    fig, ax = plt.subplots(figsize=(7.5, 4))
    width = 0.8 / len(arms)
    for j, arm in enumerate(arms):
        rows = {r["agent"]: r for r in trained if r["reward"] == arm}
        x = [i for i, a in enumerate(agents) if a in rows]  # an arm may have run for some agents only
        points = [rows[agents[i]]["interval"][0] for i in x]
        errors = [[rows[agents[i]]["interval"][0] - rows[agents[i]]["interval"][1] for i in x],
                  [rows[agents[i]]["interval"][2] - rows[agents[i]]["interval"][0] for i in x]]
        ax.bar(np.array(x) + width * (j - (len(arms) - 1) / 2), points, width=width, yerr=errors, capsize=3,
               label=f"trained on {arm}")
    ax.axhline(base, color="grey", ls=":", label="base (untrained)")
    ax.set_xticks(np.arange(len(agents)), agents)
    low = min(min(r["interval"][1] for r in trained), base)
    ax.set_ylim(max(0.0, low - 0.05), None)
    ax.set(ylabel="test ground truth (exact key facts)", title="KeyFacts: which judge is the reward")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
