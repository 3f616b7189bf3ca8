"""The README's table of SmolLM2-135M-Instruct through ``lmgym eval`` (lmgym.evaluation): one
vLLM engine, every env in turn, greedy, the first ``--problems`` test problems of each (a stated
subset, with its Wilson interval), and pass@4/maj@4 on Arithmetic.

    python benchmarks/eval_smollm2.py [--problems 64] [--backend vllm]

Writes benchmarks/results/smollm2_eval.json (every result) and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RUNS = [  # env, prompt template, k, max tokens (None: the family default)
    ("lmgym/Arithmetic-v0", "chat", 4, None),
    ("lmgym/GSMSymbolic-v0", "chat", 1, None),
    ("lmgym/GSM8K-v0", "few-shot", 1, None),
    ("lmgym/GSM8K-v0", "chat", 1, None),
    ("lmgym/MBPP-v0", "chat", 1, None),
    ("lmgym/HumanEval-v0", "chat", 1, None),
    ("lmgym/KeyFacts-v0", "chat", 1, None),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--backend", default="vllm")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "smollm2_eval"))
    args = parser.parse_args()

    from lmgym.evaluation import EvalConfig, evaluate_model
    from lmgym.generation import make_generator
    from lmgym.hub import resolve
    from lmgym.io import write_json_atomic

    path = resolve(args.model)
    generator = make_generator(path, backend=args.backend, **({"dtype": "float32", "seed": 0} if args.backend == "vllm" else {}))
    results, rows = [], []
    try:
        for env, template, k, max_tokens in RUNS:
            started = time.perf_counter()
            config = EvalConfig(model=args.model, env=env, split="test", problems=args.problems, k=k,
                                prompt_template=template, max_tokens=max_tokens, backend=args.backend,
                                out=f"runs/eval/{args.model}/{env.split('/')[1]}-{template}-test")
            result = evaluate_model(config, progress=True, generator=generator)
            m = result["metrics"]
            cell = lambda name: f"{m[f'test/{name}']:.1%} [{m[f'test/{name}_low']:.1%}, {m[f'test/{name}_high']:.1%}]"
            extra = f"pass@4 {cell('pass@4')}, maj@4 {cell('maj@4')}" if k > 1 and "test/maj@4" in m else ""
            rows.append(f"| `{env}` | {template} | {int(m['test/problems'])} | {cell('ground_truth')} | {extra} | "
                        f"{time.perf_counter() - started:.0f} |")
            results.append(result)
            print(rows[-1], flush=True)
    finally:
        generator.close()
    write_json_atomic(Path(args.out).with_suffix(".json"), results)
    print("\n| env | prompt | test problems | greedy accuracy [95% Wilson] | sampled (k=4, T=1) | s |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
