"""lmgym's GRPO against TRL's GRPOTrainer at the same settings, on lmgym/Arithmetic-v0.

The peer must be a fair one: TRL's ``GRPOTrainer`` gets lmgym GRPO's model (the shipped tiny
model), prompts per step, group size, learning rate and warm-up, epochs per batch, KL coefficient,
clip range, loss aggregation (``loss_type="grpo"``: per-sequence token mean, then batch mean),
std-scaled group advantages, temperature, completion length and number of optimizer steps, all
read from :class:`agents.grpo.GRPOConfig`'s defaults (printed before the run). Both train on
lmgym's Arithmetic train split and are scored the same way: greedy ground truth on the whole test
split of the *last* checkpoint (TRL has no validation-based checkpoint choice here, so lmgym's
GRPO runs with ``select_on="last"`` too). Accuracy is the mean over seeds with a 95% t interval;
throughput is training samples per second without evaluation, both measured in this run.

    python benchmarks/bench_agents.py --seeds 0 1 2            # needs `pip install trl`

Each run is a subprocess (its own peak memory), and finished runs are read back from ``--out``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ENV = "lmgym/Arithmetic-v0"


def settings(samples: int) -> dict:
    from agents.grpo import GRPOConfig

    config = GRPOConfig()
    if config.minibatch_size != config.prompts_per_iteration * config.samples_per_prompt:
        raise SystemExit("this peer maps one lmgym iteration to one TRL generation batch: minibatch_size must be the rollout")
    iterations = -(-samples // (config.prompts_per_iteration * config.samples_per_prompt))
    return {"lr": config.lr, "warmup_steps": config.warmup_steps, "prompts_per_step": config.prompts_per_iteration,
            "group_size": config.samples_per_prompt, "epochs": config.epochs, "beta": config.beta,
            "clip_range": config.clip_range, "temperature": config.temperature, "max_new_tokens": config.max_new_tokens,
            "max_grad_norm": config.max_grad_norm, "scale_rewards": config.scale_rewards,
            "loss_aggregation": config.loss_aggregation, "iterations": iterations,
            "optimizer_steps": iterations * config.epochs}


def test_accuracy(model: str) -> float:
    from agents.core import BasePolicy

    base = BasePolicy(BasePolicy.Config(model=model, eval_k=1))
    return base.test(ENV)["test/ground_truth"]


def run_lmgym(seed: int, samples: int, out: Path) -> dict:
    from agents.grpo import GRPO, GRPOConfig
    from lmgym.rollout import Budget

    agent = GRPO(GRPOConfig(seed=seed, eval_every=0, eval_k=1, select_on="last"))
    result = agent.learn(ENV, Budget(max_samples=samples), progress=False, test=False)
    folder = out / "lmgym-grpo" / f"seed{seed}-model"
    agent.policy.save_pretrained(folder)
    agent.tokenizer.save_pretrained(folder)
    last = result.curve[-1]
    return {"agent": "lmgym GRPO", "seed": seed, "samples": result.budget["samples"],
            "optimizer_steps": last["optimizer_steps"], "train_seconds": last["train_seconds"],
            "test_accuracy": test_accuracy(str(folder))}


def run_trl(seed: int, samples: int, out: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from lmgym.integrations.trl import dataset, reward_function
    from lmgym.pretrain import default_model

    s = settings(samples)
    # lmgym's public TRL adapter: the env's prompts, and its verifier as a batched TRL reward
    train = dataset(ENV, "train", num_problems=s["iterations"] * s["prompts_per_step"], seed=seed)

    batch = s["prompts_per_step"] * s["group_size"]  # completions per optimizer step, as in lmgym
    config = GRPOConfig(
        output_dir=str(out / "trl" / f"seed{seed}"), per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        steps_per_generation=1, num_generations=s["group_size"], num_iterations=s["epochs"], learning_rate=s["lr"],
        lr_scheduler_type="constant_with_warmup", warmup_steps=s["warmup_steps"], weight_decay=0.0,
        max_grad_norm=s["max_grad_norm"], beta=s["beta"], epsilon=s["clip_range"], loss_type="grpo",
        scale_rewards="group" if s["scale_rewards"] else "none", temperature=s["temperature"],
        max_completion_length=s["max_new_tokens"], max_steps=s["optimizer_steps"], logging_steps=10, report_to=[],
        seed=seed, use_cpu=True, save_strategy="no", bf16=False, shuffle_dataset=False,
    )
    path = str(default_model())
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    trainer = GRPOTrainer(model=model, reward_funcs=reward_function(ENV), args=config, train_dataset=train,
                          processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    folder = out / "trl" / f"seed{seed}-model"
    trainer.model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"agent": "TRL GRPOTrainer", "seed": seed, "samples": s["iterations"] * batch,
            "optimizer_steps": trainer.state.global_step, "train_seconds": seconds, "test_accuracy": test_accuracy(str(folder))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--out", default="runs/bench_agents")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    if args.one:
        name, seed = args.one[0], int(args.one[1])
        row = (run_trl if name == "trl" else run_lmgym)(seed, args.samples, out)
        row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        from lmgym.io import write_json_atomic

        write_json_atomic(out / f"{name}-seed{seed}.json", row)
        return

    from tabulate import tabulate

    from lmgym.io import write_json_atomic
    from lmgym.stats import mean_interval

    print("settings (both):", json.dumps(settings(args.samples)), flush=True)
    runs: dict[str, list[dict]] = {}
    for seed in args.seeds:
        for name in ("lmgym", "trl"):
            result_file = out / f"{name}-seed{seed}.json"
            if not result_file.is_file():
                print(f"running {name} seed {seed} ...", flush=True)
                command = [sys.executable, __file__, "--one", name, str(seed), "--samples", str(args.samples), "--out", str(out)]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"{name} seed {seed} failed")
            runs.setdefault(name, []).append(json.loads(result_file.read_text()))
    rows = []
    for name, results in runs.items():
        rate = [r["samples"] / r["train_seconds"] for r in results]
        rows.append({"trainer": results[0]["agent"], "seeds": len(results),
                     "test accuracy (95% t CI)": mean_interval([r["test_accuracy"] for r in results]).format(),
                     "optimizer steps": results[0]["optimizer_steps"], "samples": results[0]["samples"],
                     "samples/s (95% t CI)": mean_interval(rate).format(0),
                     "peak RSS MiB": round(max(r["peak_rss_mib"] for r in results))})
    table = tabulate(rows, headers="keys", tablefmt="github")
    ratio = (sum(r["samples"] / r["train_seconds"] for r in runs["lmgym"]) / len(runs["lmgym"])) / (
        sum(r["samples"] / r["train_seconds"] for r in runs["trl"]) / len(runs["trl"]))
    print(table + f"\n\nthroughput lmgym / TRL: {ratio:.2f}x (same settings, same machine, this run)")
    write_json_atomic(out / "summary.json", {"env": ENV, "settings": settings(args.samples), "table": rows,
                                             "throughput_ratio": ratio, "runs": runs})


if __name__ == "__main__":
    main()
