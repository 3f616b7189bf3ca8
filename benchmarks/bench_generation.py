"""Generation backends side by side (issue: Generation).

For each model: tokens/s of the HF and vLLM backends on the same prompts and settings (and
their ratio), the overhead of ``lmgym.rollout`` over the bare ``generate`` call, and the
seconds one weight sync takes. Each model runs in its own subprocess (one vLLM engine each).

    python benchmarks/bench_generation.py [--models tiny-pretrained small] [--prompts 32] [--n 4]

Models: ``tiny-pretrained`` (lmgym's default policy, ~0.9M parameters, short answers: overhead
bound), ``tiny`` / ``small`` / ``medium`` (random ~0.9M / ~20M / ~85M Llamas; random weights
rarely emit EOS, so completions run to ``--max-tokens``: compute bound), and the named real
models (``smollm2-135m``: on the plain Arithmetic prompts it runs on past the answer, so
completions run to ``--max-tokens`` too). "raw vLLM" gets the same requests as lmgym's path
(token ids, sampling, the sampled tokens' log-probs) without lmgym's code around them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SIZES = {"tiny": "tiny", "small": "small"}


def build_model(name: str, folder: str) -> str:
    from lmgym.hub import NAMED, resolve

    if name in NAMED:  # a real pretrained model (smollm2-135m); its plain prompts rarely end early
        return resolve(name, progress=False)
    if name == "tiny-pretrained":
        from lmgym.pretrain import default_model

        return str(default_model(progress=False))
    from lmgym.models import TINY_SHAPES, tiny_llama

    if name == "medium" and "medium" not in TINY_SHAPES:
        TINY_SHAPES["medium"] = dict(hidden_size=768, intermediate_size=2304, num_hidden_layers=12, num_attention_heads=12)
    model, tokenizer = tiny_llama(size=name, seed=0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def measure(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def one_model(args) -> dict:
    import gymnasium as gym
    import torch
    from transformers import AutoModelForCausalLM

    import lmgym  # noqa: F401
    from lmgym.generation.hf import HFGenerator
    from lmgym.generation.vllm import VLLMGenerator
    from lmgym.rollout import rollout

    with tempfile.TemporaryDirectory() as folder:
        path = build_model(args.one, folder)
        task_env = gym.make("lmgym/Arithmetic-v0", split="test")
        prompts = [task_env.unwrapped.prompt_for(task_env.unwrapped.task.problem("test", i)) for i in range(args.prompts)]
        sampling = dict(n=args.n, temperature=1.0, top_p=1.0, max_tokens=args.max_tokens)
        torch.set_num_threads(os.cpu_count())
        result = {"model": args.one}
        hf = HFGenerator(path, batch_size=args.prompts)
        result["parameters"] = sum(p.numel() for p in hf.model.parameters())
        seconds, generations = measure(lambda: hf.generate(prompts, seed=0, **sampling), args.repeats)
        tokens = sum(c.num_tokens for g in generations for c in g.completions)
        result["hf_tokens_per_s"] = tokens / seconds

        start = time.perf_counter()
        vllm = VLLMGenerator(path, dtype="float32")
        result["vllm_start_s"] = time.perf_counter() - start
        seconds, generations = measure(lambda: vllm.generate(prompts, seed=0, **sampling), args.repeats)
        tokens = sum(c.num_tokens for g in generations for c in g.completions)
        result["vllm_tokens_per_s"] = tokens / seconds
        result["vllm_over_hf"] = result["vllm_tokens_per_s"] / result["hf_tokens_per_s"]

        # raw vLLM on the same requests (the same token ids, sampling and sampled-token
        # log-probs, no lmgym code): what lmgym's path must stay within 5% of; and raw vLLM
        # without log-probs, the ceiling
        from vllm import SamplingParams, TokensPrompt

        token_prompts = [TokensPrompt(prompt_token_ids=ids) for ids in vllm.encode(prompts)]
        same = SamplingParams(n=args.n, temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, seed=0, logprobs=0)
        seconds, outputs = measure(lambda: vllm.llm.generate(token_prompts, same, use_tqdm=False), args.repeats)
        result["raw_vllm_tokens_per_s"] = sum(len(o.token_ids) for r in outputs for o in r.outputs) / seconds
        bare_params = SamplingParams(n=args.n, temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, seed=0)
        seconds, outputs = measure(lambda: vllm.llm.generate(prompts, bare_params, use_tqdm=False), args.repeats)
        result["raw_nologprobs_tokens_per_s"] = sum(len(o.token_ids) for r in outputs for o in r.outputs) / seconds

        # rollout over the same prompts vs the bare generator call on them
        envs = gym.make_vec("lmgym/Arithmetic-v0", num_envs=args.prompts * args.n, split="test")
        indices = list(range(args.prompts))
        bare, _ = measure(lambda: vllm.generate(prompts, seed=0, **sampling), args.repeats)
        full, _ = measure(lambda: rollout(envs, vllm, indices=indices, seed=0, **sampling), args.repeats)
        result["rollout_overhead"] = full / bare - 1

        state_dict = AutoModelForCausalLM.from_pretrained(path).state_dict()
        syncs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            vllm.load_weights(state_dict)
            syncs.append(time.perf_counter() - start)
        result["sync_s"] = statistics.median(syncs)
        vllm.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny-pretrained", "tiny", "small"])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one_model(args)), flush=True)
        return

    from tabulate import tabulate

    rows = []
    for model in args.models:
        command = [sys.executable, __file__, "--one", model, "--prompts", str(args.prompts), "--n", str(args.n),
                   "--max-tokens", str(args.max_tokens), "--repeats", str(args.repeats)]
        output = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, VLLM_LOGGING_LEVEL="ERROR"))
        lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
        if not lines:
            print(output.stdout[-2000:], output.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"benchmark of {model} failed")
        r = json.loads(lines[0][7:])
        rows.append([r["model"], f"{r['parameters']:,}", f"{r['hf_tokens_per_s']:,.0f}", f"{r['vllm_tokens_per_s']:,.0f}",
                     f"{r['vllm_over_hf']:.2f}x", f"{r['raw_vllm_tokens_per_s']:,.0f}",
                     f"{r['vllm_tokens_per_s'] / r['raw_vllm_tokens_per_s']:.0%}", f"{r['raw_nologprobs_tokens_per_s']:,.0f}",
                     f"{r['rollout_overhead']:+.1%}", f"{r['sync_s']:.3f}", f"{r['vllm_start_s']:.0f}"])
    print(f"{args.prompts} prompts x n={args.n}, temperature 1, max_tokens {args.max_tokens}, median of {args.repeats}")
    print(tabulate(rows, headers=["model", "params", "HF tok/s", "vLLM tok/s", "vLLM/HF", "raw vLLM tok/s",
                                  "lmgym/raw", "raw, no log-probs", "rollout overhead",
                                  "weight sync s", "engine start s"]))


if __name__ == "__main__":
    main()
