"""What each memory/scale option saves on a real model: peak memory and step time of one
training step (policy forward/backward on a batch, a reference pass, AdamW) on
SmolLM2-135M-Instruct (``model="smollm2-135m"``), one configuration per fresh process.

    python benchmarks/bench_memory.py [--model smollm2-135m] [--sequences 16] [--prompt 64] [--completion 192]
        [--steps 3] [--timeout 900] [--configs NAME ...] [--json FILE]

Configurations: float32 full fine-tuning with a reference copy (the baseline), LoRA (rank 16,
all linear layers; the reference is the base with adapters off), bf16 autocast, gradient
checkpointing, micro-batches of 1,024 tokens with gradient accumulation, and all of them.
Peak memory is the process's peak resident set (CPU) or peak allocated CUDA memory (GPU),
measured after the model is loaded and again after the timed steps; step time is the median of
``--steps`` steps after one warm-up. A configuration that runs past ``--timeout`` seconds is
reported as such and the others still run.
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
KEYS = dict(zip(("baseline", "lora", "bf16", "checkpointing", "micro-batches", "all"), CONFIGS))  # --configs names


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
    for _ in range(args.steps):
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
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after one warm-up)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one configuration may take")
    parser.add_argument("--configs", nargs="+", choices=list(KEYS), default=list(KEYS),
                        help="configurations to run (default: all); the baseline always runs first")
    parser.add_argument("--json", help="also write the measurements to this JSON file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return
    from tabulate import tabulate

    from lmgym.hub import resolve

    resolve(args.model)  # build a named model once, before the timed processes
    rows, base, records = [], None, {}
    names = ["float32 (baseline)"] + [KEYS[key] for key in args.configs if key != "baseline"]
    for name in names:
        options = CONFIGS[name]
        command = [sys.executable, __file__, "--model", args.model, "--sequences", str(args.sequences), "--prompt",
                   str(args.prompt), "--completion", str(args.completion), "--steps", str(args.steps),
                   "--one", json.dumps(options)]
        started = time.perf_counter()
        try:
            out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=args.timeout,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
        except subprocess.TimeoutExpired:
            records[name] = {"options": options, "timed_out_s": args.timeout}
            rows.append((name, "", "", "", "", f"> {args.timeout:.0f} s for 1 + {args.steps} steps", ""))
            print(f"{name}: timed out after {args.timeout:.0f} s", file=sys.stderr, flush=True)
            continue
        record = json.loads(out.stdout.strip().splitlines()[-1])
        record.update(options=options, process_s=time.perf_counter() - started)
        records[name] = record
        base = base or record
        rows.append((name, f"{record['trainable'] / 1e6:.2f}M", f"{record['loaded_mb']:.0f}", f"{record['peak_mb']:.0f}",
                     f"{record['peak_mb'] / base['peak_mb']:.2f}", f"{record['step_s']:.2f}",
                     f"{record['step_s'] / base['step_s']:.2f}"))
        print(f"{name}: {record}", file=sys.stderr, flush=True)
    print(f"{args.model}: one GRPO step (policy + reference + AdamW) on {args.sequences} sequences of "
          f"{args.prompt}+{args.completion} tokens")
    print(tabulate(rows, headers=["configuration", "trained params", "loaded MB", "peak MB", "x baseline", "step s",
                                  "x baseline"]))
    if args.json:
        from lmgym.io import write_json_atomic

        write_json_atomic(args.json, {"command": " ".join(sys.argv), "model": args.model, "sequences": args.sequences,
                                      "prompt": args.prompt, "completion": args.completion, "steps": args.steps,
                                      "configs": records})


if __name__ == "__main__":
    main()
