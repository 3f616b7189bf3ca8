"""What each memory/scale option saves on a real model: peak memory and step time of one
training step (policy forward/backward on a batch, a reference pass, AdamW) on
SmolLM2-135M-Instruct (``model="smollm2-135m"``), one configuration per fresh process.

    python benchmarks/bench_memory.py [--model smollm2-135m] [--sequences 16] [--prompt 64] [--completion 192]

Configurations: float32 full fine-tuning with a reference copy (the baseline), LoRA (rank 16,
all linear layers; the reference is the base with adapters off), bf16 autocast, gradient
checkpointing, micro-batches of 1,024 tokens with gradient accumulation, and all of them.
Peak memory is the process's peak resident set (CPU) or peak allocated CUDA memory (GPU),
measured after the model is loaded and again after 3 steps; step time is the median of
the 3 steps after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "float32 (baseline)": {},
    "LoRA r=16": {"lora_rank": 16},
    "bf16 autocast": {"bf16": True},
    "gradient checkpointing": {"gradient_checkpointing": True},
    "micro-batches of 1024 tokens": {"micro_batch_tokens": 1024},
    "all of them": {"lora_rank": 16, "bf16": True, "gradient_checkpointing": True, "micro_batch_tokens": 1024},
}


def peak_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(args) -> dict:
    import torch

    from agents import load_agent

    options = json.loads(args.one)
    grpo = load_agent("grpo")
    agent = grpo(grpo.Config(model=args.model, beta=0.04, eval_k=1, **options))  # beta > 0: a reference is kept
    loaded = peak_mb()
    generator = torch.Generator().manual_seed(0)
    vocab = agent.policy.config.vocab_size
    prompts = torch.randint(10, vocab, (args.sequences, args.prompt), generator=generator).tolist()
    completions = torch.randint(10, vocab, (args.sequences, args.completion), generator=generator).tolist()
    advantages = torch.randn(args.sequences, generator=generator)

    def step():
        logprobs, mask = agent.logprobs(agent.policy, prompts, completions)
        with torch.no_grad():
            reference, _ = agent.logprobs(agent.reference, prompts, completions)
        ratio = torch.exp(logprobs - logprobs.detach())
        kl = torch.expm1(reference - logprobs) - (reference - logprobs)
        loss = (-(ratio * advantages[:, None].to(ratio.device)) + 0.04 * kl).mul(mask).sum() / mask.sum()
        agent.optimizer_step(loss)

    step()
    times = []
    for _ in range(3):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    trainable = sum(p.numel() for p in agent.policy.parameters() if p.requires_grad)
    return {"loaded_mb": loaded, "peak_mb": peak_mb(), "step_s": statistics.median(times), "trainable": trainable}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--completion", type=int, default=192)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return
    from tabulate import tabulate

    from lmgym.hub import resolve

    resolve(args.model)  # build a named model once, before the timed processes
    rows, base = [], None
    for name, options in CONFIGS.items():
        command = [sys.executable, __file__, "--model", args.model, "--sequences", str(args.sequences), "--prompt",
                   str(args.prompt), "--completion", str(args.completion), "--one", json.dumps(options)]
        out = subprocess.run(command, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        record = json.loads(out.stdout.strip().splitlines()[-1])
        base = base or record
        rows.append((name, f"{record['trainable'] / 1e6:.2f}M", f"{record['loaded_mb']:.0f}", f"{record['peak_mb']:.0f}",
                     f"{record['peak_mb'] / base['peak_mb']:.2f}", f"{record['step_s']:.2f}",
                     f"{record['step_s'] / base['step_s']:.2f}"))
        print(f"{name}: {record}", file=sys.stderr, flush=True)
    print(f"{args.model}: one GRPO step (policy + reference + AdamW) on {args.sequences} sequences of "
          f"{args.prompt}+{args.completion} tokens")
    print(tabulate(rows, headers=["configuration", "trained params", "loaded MB", "peak MB", "x baseline", "step s",
                                  "x baseline"]))


if __name__ == "__main__":
    main()
