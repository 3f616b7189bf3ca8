"""Code in the RL loop: where GRPO's training time goes on lmgym/TinyCode-v0 (programs scored
by unit tests in the sandbox) against lmgym/Arithmetic-v0 (an exact-answer check), same agent
and settings, each from its shipped tiny model.

Prints, per env: training samples/s (evaluation excluded), the share of training wall time
spent scoring (``Task.score_batch``: for TinyCode, building the programs and running them in
the sandbox; for Arithmetic, the verifier), programs/s inside the scoring calls, and the
validation ground truth before and after. Scoring is timed by wrapping ``score_batch`` of the
two task classes in this script only (instrumentation, not a change to lmgym).

    python benchmarks/bench_code_loop.py [--samples 4000] [--seeds 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from agents.grpo import GRPO, GRPOConfig
from lmgym.envs.code import TinyCodeTask
from lmgym.envs.math import ArithmeticTask
from lmgym.rollout import Budget

TIMES = {"train": 0.0, "train_scored": 0, "eval": 0.0}
STATE = {"evaluating": False}


def timed_scoring(method):
    def wrapper(self, problems, completions):
        start = time.perf_counter()
        try:
            return method(self, problems, completions)
        finally:
            if STATE["evaluating"]:
                TIMES["eval"] += time.perf_counter() - start
            else:
                TIMES["train"] += time.perf_counter() - start
                TIMES["train_scored"] += len(completions)
    return wrapper


def flagged_evaluation(method):
    def wrapper(self, *args, **kwargs):
        STATE["evaluating"] = True
        try:
            return method(self, *args, **kwargs)
        finally:
            STATE["evaluating"] = False
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="benchmarks/results/code_loop.json")
    args = parser.parse_args()
    for task_class in (TinyCodeTask, ArithmeticTask):
        task_class.score_batch = timed_scoring(task_class.score_batch)
    GRPO.evaluate_all = flagged_evaluation(GRPO.evaluate_all)
    setups = [("lmgym/TinyCode-v0", "tinycode-tiny", 80), ("lmgym/Arithmetic-v0", "default", 24)]
    rows, records = [], []
    for env_id, model, max_tokens in setups:
        for seed in args.seeds:
            config = GRPOConfig(model=model, seed=seed, max_new_tokens=max_tokens, eval_every=0, eval_problems=200,
                                eval_k=1)
            agent = GRPO(config)
            TIMES.update(train=0.0, train_scored=0, eval=0.0)
            with tempfile.TemporaryDirectory() as run_dir:
                result = agent.learn(env_id, Budget(max_samples=args.samples), run_dir=run_dir, progress=False, test=False)
            train_seconds = result.curve[-1]["train_seconds"]
            record = {"env": env_id, "model": model, "seed": seed, "samples": result.budget["samples"],
                      "train_seconds": train_seconds, "eval_seconds": result.eval_seconds,
                      "train_scoring_seconds": TIMES["train"], "train_scored": TIMES["train_scored"],
                      "scoring_share": TIMES["train"] / train_seconds,
                      "samples_per_second": result.budget["samples"] / train_seconds,
                      "scored_per_second": TIMES["train_scored"] / max(TIMES["train"], 1e-9),
                      "val_before": result.curve[0]["val/ground_truth"], "val_after": result.curve[-1]["val/ground_truth"]}
            records.append(record)
            rows.append([env_id, seed, record["samples"], f"{train_seconds:.1f}", f"{record['samples_per_second']:.0f}",
                         f"{record['scoring_share']:.1%}", f"{record['scored_per_second']:.0f}",
                         f"{record['val_before']:.3f} -> {record['val_after']:.3f}"])
    print(tabulate(rows, headers=["env", "seed", "samples", "train s", "samples/s", "scoring share of train time",
                                  "scored/s inside scoring", "val ground truth (200, greedy)"], tablefmt="github"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    command = f"python benchmarks/bench_code_loop.py --samples {args.samples} --seeds {' '.join(map(str, args.seeds))}"
    Path(args.out).write_text(json.dumps({"command": command, "runs": records}, indent=2))


if __name__ == "__main__":
    main()
