"""PPO, ExIt and RC-RL from lmgym's pretrained tiny Arithmetic model (issue: Agents I).

Runs each agent x seed under one sample budget on ``lmgym/Arithmetic-v0``, each in its own
subprocess (so peak memory is per run), resumable (finished runs are read back from
``--out``). Prints final test accuracy (mean and spread over seeds) against the untrained
base policy, training throughput and peak memory, and writes ``curves.csv``, ``curves.png``
and ``summary.json`` to ``--out``. ``--trl`` adds TRL's ``GRPOTrainer`` on the same model,
task, reward and budget as a side-by-side peer (needs ``pip install trl``).

    python benchmarks/bench_agents.py --agents ppo exit rcrl --seeds 0 1 2 --samples 8000
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ENV = "lmgym/Arithmetic-v0"


def run_one(agent_name: str, seed: int, samples: int, out: Path, overrides: dict) -> dict:
    from agents import load_agent
    from lmgym.io import write_json_atomic
    from lmgym.rollout import Budget

    agent_class = load_agent(agent_name)
    config = agent_class.Config(seed=seed, eval_every=max(samples // 8, 1), **overrides.get(agent_name, {}))
    agent = agent_class(config)
    start = time.perf_counter()
    result = agent.learn(ENV, Budget(max_samples=samples), run_dir=out / agent_name / f"seed{seed}", progress=False)
    seconds = time.perf_counter() - start
    train_seconds = seconds - result.eval_seconds
    row = {
        "agent": agent_name, "seed": seed, "curve": result.curve, "budget": result.budget, "config": result.config,
        "wall_seconds": seconds,
        "samples_per_s": result.budget["samples"] / max(train_seconds, 1e-9),
        "tokens_per_s": result.budget["tokens"] / max(train_seconds, 1e-9),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    write_json_atomic(out / agent_name / f"seed{seed}.json", row)
    return row


def run_trl(seed: int, samples: int, out: Path) -> dict:
    """TRL's GRPOTrainer on the same model, prompts, reward and sample budget."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from agents.core import BasePolicy
    from lmgym.io import write_json_atomic
    from lmgym.envs.math import ArithmeticTask
    from lmgym.pretrain import default_model
    from lmgym.rewards.math import verify

    path = str(default_model(progress=False))
    task = ArithmeticTask()
    prompts, answers = [], []
    for i in range(samples):
        problem = task.problem("train", 7919 * i + seed)
        prompts.append(problem.question + "=")
        answers.append(problem.answer)
    dataset = Dataset.from_dict({"prompt": prompts, "answer": answers})

    def correctness(completions, answer, **_):
        return [verify(c, a).reward for c, a in zip(completions, answer)]

    generations = 4
    config = GRPOConfig(
        output_dir=str(out / "trl" / f"seed{seed}"), per_device_train_batch_size=32, num_generations=generations,
        max_completion_length=24, learning_rate=2e-5, beta=0.0, max_steps=samples // 32, logging_steps=50,
        report_to=[], seed=seed, use_cpu=True, save_strategy="no", temperature=1.0, bf16=False,
    )
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    trainer = GRPOTrainer(model=model, reward_funcs=correctness, args=config, train_dataset=dataset, processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trained = out / "trl" / f"seed{seed}-model"
    trainer.model.save_pretrained(trained)
    tokenizer.save_pretrained(trained)
    accuracy = BasePolicy(BasePolicy.Config(model=str(trained))).evaluate(ENV)["test/mean_reward"]
    used = config.max_steps * 32  # completions generated: per_device_train_batch_size per step
    row = {"agent": "trl-grpo", "seed": seed, "wall_seconds": seconds, "samples": used,
           "samples_per_s": used / seconds, "final_accuracy": accuracy,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    write_json_atomic(out / "trl" / f"seed{seed}.json", row)
    return row


def spread(values: list[float]) -> str:
    import numpy as np

    return f"{np.mean(values):.1%} ± {np.std(values):.1%}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", nargs="+", default=["ppo", "exit", "rcrl"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=8000)
    parser.add_argument("--out", default="runs/bench_agents")
    parser.add_argument("--overrides", default="{}", help='JSON: {"ppo": {"lr": 1e-5}, ...}')
    parser.add_argument("--trl", action="store_true", help="also run TRL's GRPOTrainer as a peer")
    parser.add_argument("--trl-seeds", nargs="+", type=int, default=[0], help="seeds for the TRL peer (it is slow on CPU)")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    overrides = json.loads(args.overrides)
    if args.one:
        name, seed = args.one[0], int(args.one[1])
        row = run_trl(seed, args.samples, out) if name == "trl-grpo" else run_one(name, seed, args.samples, out, overrides)
        print("RESULT " + json.dumps({k: v for k, v in row.items() if k != "curve"}, default=str))
        return

    import numpy as np
    from tabulate import tabulate

    from agents.core import BasePolicy
    from lmgym.io import write_json_atomic

    base = BasePolicy().evaluate(ENV)["test/mean_reward"]
    rows, runs = [], {}
    jobs = [(a, s) for a in args.agents for s in args.seeds] + ([("trl-grpo", s) for s in args.trl_seeds] if args.trl else [])
    for name, seed in jobs:
        folder = "trl" if name == "trl-grpo" else name
        result_file = out / folder / f"seed{seed}.json"
        if not result_file.is_file():
            print(f"running {name} seed {seed} ...", flush=True)
            command = [sys.executable, __file__, "--one", name, str(seed), "--samples", str(args.samples),
                       "--out", str(out), "--overrides", args.overrides]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{name} seed {seed} failed")
        runs.setdefault(name, []).append(json.loads(result_file.read_text()))

    for name, results in runs.items():
        finals = [r["curve"][-1]["test/mean_reward"] if "curve" in r else r["final_accuracy"] for r in results]
        gains = [f - base for f in finals]
        rows.append([name, len(results), f"{base:.1%}", spread(finals), f"{np.mean(gains):+.1%} (min {min(gains):+.1%})",
                     f"{np.mean([r['samples_per_s'] for r in results]):.0f}",
                     f"{np.mean([r.get('tokens_per_s', float('nan')) for r in results]):.0f}",
                     f"{np.mean([r['wall_seconds'] for r in results]):.0f}", f"{max(r['peak_rss_mib'] for r in results):.0f}"])
    print(f"{ENV}, budget {args.samples} samples, base policy {base:.1%} on 500 test problems (greedy)")
    print(tabulate(rows, headers=["agent", "seeds", "base", "final acc (mean ± sd)", "gain over base", "samples/s",
                                  "tokens/s", "wall s", "peak RSS MiB"]))
    if args.trl and "trl-grpo" in runs:
        ours = {n: np.mean([r["samples_per_s"] for r in rs]) for n, rs in runs.items() if n != "trl-grpo"}
        trl = np.mean([r["samples_per_s"] for r in runs["trl-grpo"]])
        print("throughput vs TRL GRPOTrainer: " + ", ".join(f"{n} {v / trl:.2f}x" for n, v in ours.items()))

    with open(out / "curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["agent", "seed", "samples", "tokens", "test_accuracy"])
        for name, results in runs.items():
            for r in results:
                for point in r.get("curve", []):
                    writer.writerow([name, r["seed"], point["samples"], point["tokens"], point["test/mean_reward"]])
    plot(runs, base, out / "curves.png")
    write_json_atomic(out / "summary.json", {"env": ENV, "samples": args.samples, "base_accuracy": base, "table": rows})


def plot(runs: dict, base: float, path: Path) -> None:
    from lmgym.bench import plot_curves

    cells = [{"env": {"id": ENV}, "agent": {"name": name}, "curve": r["curve"]}
             for name, results in runs.items() for r in results if "curve" in r]
    plot_curves(cells, path, baseline=base)


if __name__ == "__main__":
    main()
