"""Summarization in the loop: what optimising a learned judge buys on KeyFacts, and where it is
gamed. The same agents, seeds, budget and starting model (``keyfacts-tiny``) train on
(a) ``lmgym/KeyFacts-v0`` (2 facts, 1 filler): the exact key-facts judge is the reward;
(b) ``lmgym/KeyFacts-RM-v0`` (same documents): lmgym's shipped learned reward model
(``keyfacts-rm``) is the reward; both are evaluated by the exact judge (the ground truth). (An
entailment arm waits for an offline NLI judge good enough to ship: lmgym/rewards/nli.py.)

Arm (a) is read from the CPU suite's KeyFacts cells when they are there (``--suite-out``), so it
is not trained twice; arm (b) runs here as ``lmgym bench`` with the suite's KeyFacts settings.
Prints, per agent and arm: the test ground truth (exact judge; mean over seeds, 95% t interval),
the training reward on the same test completions, and their gap (reward - truth: a learned RM
that is gamed shows a large one); writes ``benchmarks/results/keyfacts_judges/summary.json``.

    python benchmarks/keyfacts_judges.py [--agents grpo ppo exit rloo] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
from tabulate import tabulate

from lmgym.bench import run_bench
from lmgym.stats import mean_interval
from lmgym.suite import SUITES, bench_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", default=["grpo", "ppo", "exit", "rloo"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--suite-out", default="runs/suite-cpu")
    parser.add_argument("--out", default="runs/keyfacts-judges")
    args = parser.parse_args()
    exact_env = next(e for e in SUITES["cpu"] if e.env == "lmgym/KeyFacts-v0")
    agents = ["base", *args.agents]
    exact = run_bench(bench_config(exact_env, args.suite_out, agents, args.seeds), progress=True)
    arms = [("exact key facts", exact)]
    for env_id, name in (("lmgym/KeyFacts-RM-v0", "learned RM (keyfacts-rm)"),):
        suite_env = dataclasses.replace(exact_env, env=env_id, env_kwargs={}, label=None)
        arms.append((name, run_bench(bench_config(suite_env, args.out, agents, args.seeds), progress=True)))
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
                           "test_training_reward": reward, "interval": list(truth_iv)})
    print(tabulate(rows, headers=["agent", "trained on", "seeds", "test ground truth: exact key facts (95% t CI)",
                                  "training reward on test", "reward - truth", "opt. steps"], tablefmt="github"))
    out = Path("benchmarks/results/keyfacts_judges")
    out.mkdir(parents=True, exist_ok=True)
    plot(record, out / "keyfacts_judges.png")
    (out / "summary.json").write_text(json.dumps({"command": "python benchmarks/keyfacts_judges.py --agents "
                                                  + " ".join(args.agents) + " --seeds " + " ".join(map(str, args.seeds)),
                                                  "rows": record}, indent=2))


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
        rows = [next(r for r in trained if r["agent"] == a and r["reward"] == arm) for a in agents]
        points = [r["interval"][0] for r in rows]
        errors = [[r["interval"][0] - r["interval"][1] for r in rows], [r["interval"][2] - r["interval"][0] for r in rows]]
        ax.bar(np.arange(len(agents)) + width * (j - (len(arms) - 1) / 2), points, width=width, yerr=errors, capsize=3,
               label=f"trained on {arm}")
    ax.axhline(base, color="grey", ls=":", label="base (untrained)")
    ax.set_xticks(np.arange(len(agents)), agents)
    low = min(min(r["interval"][1] for r in trained), base)
    ax.set_ylim(max(0.0, low - 0.05), None)
    ax.set(ylabel="test ground truth (exact key facts)", title="KeyFacts: exact judge vs learned RM as the reward")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
