"""The checks only a GPU can run, as one table (scripts/gpu_check.sh runs this).

1. vLLM on the GPU beside the trainer: the engine takes ``gpu_memory_utilization`` of the
   memory, an agent trains on the same GPU with backend="vllm", and what vLLM samples after each
   weight sync has the trainer's log-probs (``sampler/logprob_mismatch``).
2. bf16 autocast on the GPU: a training run's weights stay float32, its log-probs are within
   bfloat16 precision of float32's.
3. LoRA on the GPU, synced into vLLM as merged weights: the mismatch again.
4. With 2 or more GPUs: data parallel over 2 GPUs (NCCL) ends with the parameters of 1 GPU
   (tests/distributed/test_ddp.py's check, run with torchrun).

Each check prints ok/FAIL, its numbers and its seconds; the exit status is the number failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def model_dir() -> str:
    """SmolLM2-135M when its weights are installed, else lmgym's shipped tiny model."""
    from lmgym.hub import NAMED, resolve

    try:
        return resolve(next(iter(NAMED)), progress=False)
    except FileNotFoundError:
        return resolve("default")


def vllm_beside_trainer(model, lora_rank=0) -> str:
    from agents import load_agent
    from lmgym.generation.vllm import VLLMGenerator
    from lmgym.rollout import Budget

    generator = VLLMGenerator(model, dtype="float32", gpu_memory_utilization=0.3)
    try:
        agent_class = load_agent("ppo")
        agent = agent_class(agent_class.Config(model=model, backend="vllm", lora_rank=lora_rank, prompts_per_iteration=8,
                                               samples_per_prompt=2, eval_problems=8, eval_k=1, test_problems=8,
                                               max_new_tokens=32, eval_every=0), generator=generator)
        agent.learn("lmgym/Arithmetic-v0", Budget(max_samples=48), progress=False, test=False)
        worst = max(m["sampler/logprob_mismatch"] for m in agent.train_log)
        import torch

        peak = torch.cuda.max_memory_allocated() / 2**30
        assert worst < 1e-3, f"sampler/trainer log-prob mismatch {worst:.2e}"
        return f"log-prob mismatch {worst:.1e}, trainer peak {peak:.1f} GiB beside the engine"
    finally:
        generator.close()


def bf16(model) -> str:
    import torch

    from agents import load_agent
    from lmgym.rollout import Budget

    grpo = load_agent("grpo")
    prompts, completions = [[1, 2, 3, 4, 5]] * 4, [[6, 7, 8, 9]] * 4
    values = []
    for flag in (False, True):
        agent = grpo(grpo.Config(model=model, bf16=flag, prompts_per_iteration=8, samples_per_prompt=2, eval_problems=8,
                                 eval_k=1, test_problems=8, max_new_tokens=16, eval_every=0))
        with torch.no_grad():
            values.append(agent.logprobs(agent.policy, prompts, completions)[0])
        if flag:
            agent.learn("lmgym/Arithmetic-v0", Budget(max_samples=32), progress=False, test=False)
            assert all(p.dtype == torch.float32 for p in agent.policy.parameters())
    gap = (values[0] - values[1]).abs().max().item()
    assert gap < 0.1, f"bf16 log-probs {gap:.3f} from float32"
    return f"weights float32, bf16 log-probs within {gap:.3f}"


def data_parallel(model) -> str:
    import torch

    if torch.cuda.device_count() < 2:
        return "skipped: 1 GPU"
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        worker = ["-m", "tests.distributed.ddp_worker", model, "grpo", f"{folder}/x", json.dumps({"device": "auto"})]
        subprocess.run([sys.executable, *worker], check=True, cwd=ROOT, env={**env, "CUDA_VISIBLE_DEVICES": "0"})
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *worker],
                       check=True, cwd=ROOT, env=env)
        one = torch.load(f"{folder}/x.rank0.pt")["state"]
        two = [torch.load(f"{folder}/x.rank{r}.pt")["state"] for r in (0, 1)]
    worst = max((two[0][k] - v).abs().max().item() for k, v in one.items())
    assert all(torch.equal(two[0][k], two[1][k]) for k in one), "the ranks diverged"
    assert worst < 1e-4, f"2 GPUs differ from 1 by {worst:.1e}"
    return f"2 GPUs = 1 GPU within {worst:.1e}"


def main() -> int:
    import torch
    from tabulate import tabulate

    if not torch.cuda.is_available():
        print("no CUDA device: these checks need a GPU (the CPU checks are the test suite)")
        return 1
    model = model_dir()
    checks = [("vLLM beside the trainer (gpu_memory_utilization=0.3)", lambda: vllm_beside_trainer(model)),
              ("bf16 autocast", lambda: bf16(model)),
              ("LoRA merged into vLLM", lambda: vllm_beside_trainer(model, lora_rank=8)),
              ("data parallel, 2 GPUs (NCCL)", lambda: data_parallel(model))]
    rows, failed = [], 0
    for name, check in checks:
        started = time.perf_counter()
        try:
            rows.append((name, "ok", check(), f"{time.perf_counter() - started:.0f}"))
        except Exception as error:  # one failing check must not hide the others
            failed += 1
            traceback.print_exc()
            rows.append((name, "FAIL", f"{type(error).__name__}: {error}"[:160], f"{time.perf_counter() - started:.0f}"))
    print(f"\n{torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}, model {model}")
    print(tabulate(rows, headers=["check", "result", "numbers", "s"]))
    return failed


if __name__ == "__main__":
    sys.exit(main())
