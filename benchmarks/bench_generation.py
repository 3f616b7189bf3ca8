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
    from lmgym.stats import mean_interval

    with tempfile.TemporaryDirectory() as folder:
        path = build_model(args.one, folder)
        task_env = gym.make("lmgym/Arithmetic-v0", split="test")
        prompts = [task_env.unwrapped.prompt_for(task_env.unwrapped.task.problem("test", i)) for i in range(args.prompts)]
        sampling = dict(n=args.n, temperature=1.0, top_p=1.0, max_tokens=args.max_tokens)
        torch.set_num_threads(os.cpu_count())
        result = {"model": args.one}
        hf = HFGenerator(path, batch_size=args.prompts)
        result["parameters"] = sum(p.numel() for p in hf.model.parameters())
        start = time.perf_counter()
        vllm = VLLMGenerator(path, dtype="float32")
        result["vllm_start_s"] = time.perf_counter() - start

        # raw vLLM on the same requests (the same token ids, sampling and sampled-token
        # log-probs, no lmgym code): what lmgym's path must stay within 5% of; and raw vLLM
        # without log-probs, the ceiling
        from vllm import SamplingParams, TokensPrompt

        token_prompts = [TokensPrompt(prompt_token_ids=ids) for ids in vllm.encode(prompts)]
        same = SamplingParams(n=args.n, temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, seed=0, logprobs=0)
        bare_params = SamplingParams(n=args.n, temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, seed=0)

        def completion_tokens(generations):
            return sum(c.num_tokens for g in generations for c in g.completions)

        def raw_tokens(outputs):
            return sum(len(o.token_ids) for r in outputs for o in r.outputs)

        paths = {
            "hf": (lambda: hf.generate(prompts, seed=0, **sampling), completion_tokens),
            "vllm": (lambda: vllm.generate(prompts, seed=0, **sampling), completion_tokens),
            "raw_vllm": (lambda: vllm.llm.generate(token_prompts, same, use_tqdm=False), raw_tokens),
            "raw_nologprobs": (lambda: vllm.llm.generate(prompts, bare_params, use_tqdm=False), raw_tokens),
        }
        rates = {name: [] for name in paths}
        for name, (fn, _) in paths.items():
            fn()  # warm-up
        for _ in range(args.repeats):  # interleaved, so that machine noise hits every path alike
            for name, (fn, count) in paths.items():
                start = time.perf_counter()
                tokens = count(fn())
                rates[name].append(tokens / (time.perf_counter() - start))
        for name in paths:
            result[f"{name}_tokens_per_s"] = statistics.median(rates[name])
        result["rates"] = rates
        for key, (top, bottom) in {"vllm_over_hf": ("vllm", "hf"), "lmgym_over_raw": ("vllm", "raw_vllm")}.items():
            ratios = [a / b for a, b in zip(rates[top], rates[bottom])]  # paired by repeat
            interval = mean_interval(ratios)
            result[key] = statistics.median(ratios)
            result[key + "_interval"] = [interval.point, interval.low, interval.high]

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
    parser.add_argument("--json", help="also write every model's measurements to this JSON file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one_model(args)), flush=True)
        return

    from tabulate import tabulate

    rows, records = [], []
    for model in args.models:
        command = [sys.executable, __file__, "--one", model, "--prompts", str(args.prompts), "--n", str(args.n),
                   "--max-tokens", str(args.max_tokens), "--repeats", str(args.repeats)]
        output = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, VLLM_LOGGING_LEVEL="ERROR"))
        lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
        if not lines:
            print(output.stdout[-2000:], output.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"benchmark of {model} failed")
        r = json.loads(lines[0][7:])
        low, high = r["vllm_over_hf_interval"][1:]
        raw_low, raw_high = r["lmgym_over_raw_interval"][1:]
        rows.append([r["model"], f"{r['parameters']:,}", f"{r['hf_tokens_per_s']:,.0f}", f"{r['vllm_tokens_per_s']:,.0f}",
                     f"{r['vllm_over_hf']:.2f}x [{low:.2f}, {high:.2f}]", f"{r['raw_vllm_tokens_per_s']:,.0f}",
                     f"{r['lmgym_over_raw']:.0%} [{raw_low:.0%}, {raw_high:.0%}]",
                     f"{r['raw_nologprobs_tokens_per_s']:,.0f}",
                     f"{r['rollout_overhead']:+.1%}", f"{r['sync_s']:.3f}", f"{r['vllm_start_s']:.0f}"])
        if args.json:
            records.append({**r, "prompts": args.prompts, "n": args.n, "max_tokens": args.max_tokens,
                            "repeats": args.repeats})
    print(f"{args.prompts} prompts x n={args.n}, temperature 1, max_tokens {args.max_tokens}, median of {args.repeats} "
          f"interleaved repeats (ratios: median of the paired per-repeat ratios, [95% t interval of their mean])")
    print(tabulate(rows, headers=["model", "params", "HF tok/s", "vLLM tok/s", "vLLM/HF", "raw vLLM tok/s",
                                  "lmgym/raw", "raw, no log-probs", "rollout overhead",
                                  "weight sync s", "engine start s"]))
    if args.json:
        from lmgym.io import write_json_atomic

        write_json_atomic(args.json, {"command": " ".join(sys.argv), "results": records})


if __name__ == "__main__":
    main()
