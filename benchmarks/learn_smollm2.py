"""A learning run on a real pretrained model, small enough for 2 CPU cores (issue: real models).

Task, stated before the run: ``lmgym/Arithmetic-v0`` with sums of 2-3 one-digit numbers
(``digits=1, operators="+", steps=(2, 3)``), the plain prompt ``"9+2+9+1="``, at most 6 new
tokens, scored by the exact verifier (the last number in the completion). SmolLM2-135M-Instruct
greedy: 6% on 100 validation problems (its first number is the sum 7% of the time, and it never
stops after it: "11.\\n\\nThe sum of"). The claim tested: GRPO (full fine-tuning, float32, HF
sampling on the policy) raises greedy validation accuracy above the base model's 95% upper
bound within 30 minutes of wall time on 2 cores. The final number is the greedy test accuracy of
the validation-chosen checkpoint on the 200 test problems, with Wilson intervals for base and
trained.

    python benchmarks/learn_smollm2.py [--samples 4096] [--agent grpo]

Writes benchmarks/results/smollm2_learning.json (curve, test, wall time, samples/s) and .png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ENV = "lmgym/Arithmetic-v0"
TASK = {"digits": 1, "operators": "+", "steps": [2, 3], "validation_size": 200, "test_size": 200}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="grpo")
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "smollm2_learning"))
    args = parser.parse_args()

    from agents import load_agent
    from lmgym.evaluation import wilson_interval
    from lmgym.hub import resolve
    from lmgym.rollout import Budget

    resolve("smollm2-135m")  # built once, outside the timed run
    agent_class = load_agent(args.agent)
    config = agent_class.Config(model="smollm2-135m", lr=args.lr, warmup_steps=5, prompts_per_iteration=16,
                                samples_per_prompt=8, max_new_tokens=6, eval_every=1024, eval_problems=100, eval_k=1,
                                test_problems=200, select_on="reward", seed=0)
    agent = agent_class(config)
    started = time.perf_counter()
    result = agent.learn(ENV, Budget(max_samples=args.samples), env_kwargs=TASK, progress=True)
    wall = time.perf_counter() - started
    base_row, test = result.curve[0], result.test
    # per-problem greedy outcomes for the intervals: the test split, base and trained
    trained_outcomes = test["test/ground_truth"]
    record = {
        "claim": "GRPO raises SmolLM2-135M-Instruct's greedy validation accuracy on 2-3-term one-digit sums above "
                 "the base model's 95% upper bound within 30 minutes on 2 cores",
        "env": ENV, "env_kwargs": TASK, "agent": args.agent, "config": result.config, "wall_seconds": round(wall, 1),
        "train_seconds": result.curve[-1]["train_seconds"], "eval_seconds": round(result.eval_seconds, 1),
        "samples": result.budget["samples"], "samples_per_second": round(result.budget["samples"] / wall, 2),
        "optimizer_steps": result.curve[-1]["optimizer_steps"], "trained_tokens": result.curve[-1]["trained_tokens"],
        "curve": [{k: v for k, v in row.items() if isinstance(v, (int, float))} for row in result.curve],
        "chosen": result.chosen, "test": test,
    }
    n = int(test["test/problems"])
    record["test_interval"] = list(wilson_interval(np.array([1] * round(trained_outcomes * n) + [0] * (n - round(trained_outcomes * n)))))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from lmgym.io import write_json_atomic

    write_json_atomic(out.with_suffix(".json"), record)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [row["samples"] for row in result.curve]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(xs, [row["val/ground_truth"] for row in result.curve], marker="o", label="validation, greedy (100 problems)")
    ax.axhline(base_row["val/ground_truth"], color="grey", linestyle=":", label="base model")
    ax.set_xlabel("generated samples")
    ax.set_ylabel("accuracy (exact verifier)")
    ax.set_title(f"{args.agent} on SmolLM2-135M-Instruct, 1-digit sums ({wall / 60:.0f} min, 2 cores)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print(json.dumps({k: record[k] for k in ("wall_seconds", "samples", "samples_per_second", "optimizer_steps", "test",
                                             "test_interval")}, indent=1))
    print("curve:", [(row["samples"], round(row["val/ground_truth"], 3)) for row in result.curve])


if __name__ == "__main__":
    main()
