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
Precision is matched too: float32, or with ``--set '{"bf16": true}'`` bfloat16 autocast of both
trainers' training passes. Both sample in float32 either way: TRL 1.16 generates outside its
autocast (checked with a forward hook: its no-grad passes run with autocast off), and lmgym's
vLLM sampler holds the policy's float32 weights unless ``sampler_dtype`` says otherwise (an
lmgym-only field: ``--set '{"sampler_dtype": "bfloat16"}'`` makes lmgym sample in bfloat16 against
TRL's float32, which is not a matched setting).

    python benchmarks/bench_agents.py --seeds 0 1 2            # needs `pip install trl`
    python benchmarks/bench_agents.py --seeds 0 1 2 --ablate-old-logprobs --ablate-shared-prompts

``--ablate-old-logprobs`` also runs lmgym's GRPO with ``recompute_old_logprobs=True`` (a separate
no-grad pass for the old log-probs, as before lmgym reused the training pass's) beside each seed's
default run, and prints the paired speed-up (mean over seeds, 95% t interval);
``--ablate-shared-prompts`` the same with ``share_prompts=False`` (every completion's row runs
its prompt through the model again, as TRL's trainer does); ``--ablate-skip-zero-advantage``
with ``skip_zero_advantage=False`` (rows whose advantage is 0 go through the training passes
too, as in TRL's trainer; how many rows lmgym trained on is printed: with beta 0 the others add
exactly 0 to the gradient, so this saving grows with the share of groups whose samples all
scored the same, a property of the task and the model, not of the loop).

Each run is a subprocess (its own peak memory), and finished runs are read back from ``--out``.

Where lmgym's training time goes is measured in the same runs (:class:`PhaseProfile`): the
methods behind each phase are wrapped and timed exclusively (a phase's time excludes the
wrapped phases inside it), and each phase is printed as a share of the training wall time
(evaluation excluded): generation (``generator.generate``), scoring (``LMVectorEnv.step``:
the env's reward), rollout bookkeeping (the rest of ``lmgym.rollout.rollout``: reset, info
handling, sample records), log-prob forward passes (``Agent.logprobs`` and the reference's),
backward (``torch`` autograd), optimizer (the rest of ``Agent.optimizer_step``: clipping, the
step, the schedule), weight sync to the generator (``Agent.sync_generator``) and other (the
agent's own Python between them: advantages, batching, metrics). Timing adds 0.7 us per
call (measured on a trivial method, this machine).
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


def settings(samples: int, overrides: dict | None = None) -> dict:
    from agents.grpo import GRPOConfig

    config = GRPOConfig(**(overrides or {}))
    if config.minibatch_size != config.prompts_per_iteration * config.samples_per_prompt:
        raise SystemExit("this peer maps one lmgym iteration to one TRL generation batch: minibatch_size must be the rollout")
    iterations = -(-samples // (config.prompts_per_iteration * config.samples_per_prompt))
    return {"lr": config.lr, "warmup_steps": config.warmup_steps, "prompts_per_step": config.prompts_per_iteration,
            "group_size": config.samples_per_prompt, "epochs": config.epochs, "beta": config.beta,
            "clip_range": config.clip_range, "temperature": config.temperature, "max_new_tokens": config.max_new_tokens,
            "max_grad_norm": config.max_grad_norm, "scale_rewards": config.scale_rewards,
            "loss_aggregation": config.loss_aggregation, "bf16": config.bf16, "iterations": iterations,
            "optimizer_steps": iterations * config.epochs}


def one_minibatch(overrides: dict) -> dict:
    """``overrides`` with ``minibatch_size`` set to the rollout (prompts x samples, from GRPOConfig
    with these overrides) unless it is given: one lmgym iteration is one TRL generation batch."""
    from agents.grpo import GRPOConfig

    config = GRPOConfig(**{k: v for k, v in overrides.items() if k != "minibatch_size"})
    return {"minibatch_size": config.prompts_per_iteration * config.samples_per_prompt, **overrides}


def test_accuracy(model: str, env_kwargs: dict | None = None, overrides: dict | None = None) -> float:
    from agents.core import BasePolicy

    keep = {k: v for k, v in (overrides or {}).items() if k in ("max_new_tokens", "test_problems")}
    base = BasePolicy(BasePolicy.Config(model=model, eval_k=1, **keep))
    return base.test(ENV, env_kwargs=env_kwargs or {})["test/ground_truth"]


class PhaseProfile:
    """Exclusive wall time of wrapped functions, by phase name: a call's time minus that of the
    wrapped calls it makes (so nested phases never count twice). Only calls inside a ``root``
    call are counted (the agent's training iterations, so evaluation stays out); the root's
    own exclusive time is the phase ``other``, and the shares are of the roots' total time."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.total = 0.0
        self._stack: list[list] = []  # [phase, start, time of wrapped callees]

    def wrap(self, owner, attribute: str, phase: str, root: bool = False) -> None:
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            if not root and not self._stack:
                return original(*args, **kwargs)  # outside a training iteration: not counted
            self._stack.append([phase, time.perf_counter(), 0.0])
            try:
                return original(*args, **kwargs)
            finally:
                name, started, inner = self._stack.pop()
                elapsed = time.perf_counter() - started
                self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - inner
                if self._stack:
                    self._stack[-1][2] += elapsed
                else:
                    self.total += elapsed

        setattr(owner, attribute, timed)

    def shares(self) -> dict[str, float]:
        return {name: seconds / self.total for name, seconds in self.seconds.items()} if self.total else {}


PHASES = ("generation", "scoring", "rollout bookkeeping", "log-prob forward", "backward", "optimizer", "weight sync", "other")


VARIANTS = {"lmgym": {}, "lmgym-recompute": {"recompute_old_logprobs": True},  # lmgym runs: GRPOConfig overrides
            "lmgym-unshared": {"share_prompts": False}, "lmgym-unskipped": {"skip_zero_advantage": False}}
# the ablations: a variant, what the paired ratio compares (default / variant), the summary key
ABLATIONS = {"lmgym-recompute": ("old log-probs reused vs recomputed", "speedup_reuse_over_recompute", "ablation_old_logprobs"),
             "lmgym-unshared": ("prompts shared vs run for every completion", "speedup_shared_over_unshared",
                                "ablation_shared_prompts"),
             "lmgym-unskipped": ("zero-advantage rows skipped vs trained on", "speedup_skipped_over_unskipped",
                                 "ablation_skip_zero_advantage")}


def run_lmgym(seed: int, samples: int, out: Path, name: str = "lmgym", model: str = "default", backend: str = "hf",
              env_kwargs: dict | None = None, overrides: dict | None = None) -> dict:
    import torch

    import agents.core
    from agents.core import Agent
    from agents.grpo import GRPO, GRPOConfig
    from lmgym.generation.generator import Generator
    from lmgym.rollout import Budget
    from lmgym.vector import LMVectorEnv

    import lmgym.generation.hf  # noqa: F401  (the HF generator this benchmark runs)

    if backend == "vllm":
        import lmgym.generation.vllm  # noqa: F401  (so that its generate is wrapped too)

    profile = PhaseProfile()
    for cls in (Generator, *Generator.__subclasses__()):
        if "generate" in vars(cls):
            profile.wrap(cls, "generate", "generation")
    profile.wrap(GRPO, "iteration", "other", root=True)
    profile.wrap(LMVectorEnv, "step", "scoring")
    profile.wrap(agents.core, "rollout", "rollout bookkeeping")
    profile.wrap(Agent, "logprobs", "log-prob forward")
    profile.wrap(torch.Tensor, "backward", "backward")
    profile.wrap(torch.autograd, "backward", "backward")
    profile.wrap(Agent, "optimizer_step", "optimizer")
    profile.wrap(Agent, "sync_generator", "weight sync")
    agent = GRPO(GRPOConfig(seed=seed, eval_every=0, eval_k=1, select_on="last", model=model, backend=backend,
                            **VARIANTS[name], **(overrides or {})))
    result = agent.learn(ENV, Budget(max_samples=samples), env_kwargs=env_kwargs or {}, progress=False, test=False)
    folder = out / ("lmgym-grpo" if name == "lmgym" else name) / f"seed{seed}-model"
    agent.policy.save_pretrained(folder)
    agent.tokenizer.save_pretrained(folder)
    last = result.curve[-1]
    return {"agent": "lmgym GRPO" + ("" if name == "lmgym" else f" ({name})"), "seed": seed, "samples": result.budget["samples"],
            "optimizer_steps": last["optimizer_steps"], "train_seconds": last["train_seconds"],
            "phase_shares": profile.shares(), "profiled_seconds": profile.total, "backend": backend,
            "trained_row_share": sum(m["train/trained_row_share"] for m in agent.train_log) / len(agent.train_log),
            "reward_std_zero_share": sum(m["train/reward_std_zero_share"] for m in agent.train_log) / len(agent.train_log),
            "test_accuracy": test_accuracy(str(folder), env_kwargs, overrides)}


def run_trl(seed: int, samples: int, out: Path, model: str = "default", env_kwargs: dict | None = None,
            overrides: dict | None = None) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from lmgym.integrations.trl import dataset, reward_function
    from lmgym.pretrain import model_path

    s = settings(samples, overrides)
    # lmgym's public TRL adapter: the env's prompts, and its verifier as a batched TRL reward
    env_kwargs = env_kwargs or {}
    train = dataset(ENV, "train", num_problems=s["iterations"] * s["prompts_per_step"], seed=seed, **env_kwargs)

    batch = s["prompts_per_step"] * s["group_size"]  # completions per optimizer step, as in lmgym
    config = GRPOConfig(
        output_dir=str(out / "trl" / f"seed{seed}"), per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        steps_per_generation=1, num_generations=s["group_size"], num_iterations=s["epochs"], learning_rate=s["lr"],
        lr_scheduler_type="constant_with_warmup", warmup_steps=s["warmup_steps"], weight_decay=0.0,
        max_grad_norm=s["max_grad_norm"], beta=s["beta"], epsilon=s["clip_range"], loss_type="grpo",
        scale_rewards="group" if s["scale_rewards"] else "none", temperature=s["temperature"],
        max_completion_length=s["max_new_tokens"], max_steps=s["optimizer_steps"], logging_steps=10, report_to=[],
        seed=seed, use_cpu=True, save_strategy="no", bf16=s["bf16"], shuffle_dataset=False,
    )
    path = model_path(model)  # "default", a named model, or a folder, as lmgym's agents resolve it
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:  # as lmgym's agents do
        tokenizer.pad_token = tokenizer.eos_token
    trainer = GRPOTrainer(model=policy, reward_funcs=reward_function(ENV, **env_kwargs), args=config, train_dataset=train,
                          processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    folder = out / "trl" / f"seed{seed}-model"
    trainer.model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"agent": "TRL GRPOTrainer", "seed": seed, "samples": s["iterations"] * batch,
            "optimizer_steps": trainer.state.global_step, "train_seconds": seconds,
            "test_accuracy": test_accuracy(str(folder), env_kwargs, overrides)}


def digits(rates) -> int:
    """Decimals to print rates with: none from 100 samples/s up, else 2."""
    return 0 if min(rates) >= 100 else 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--out", default="runs/bench_agents")
    parser.add_argument("--ablate-old-logprobs", action="store_true",
                        help="also run lmgym GRPO with recompute_old_logprobs=True and print the paired speed-up")
    parser.add_argument("--ablate-shared-prompts", action="store_true",
                        help="also run lmgym GRPO with share_prompts=False and print the paired speed-up")
    parser.add_argument("--ablate-skip-zero-advantage", action="store_true",
                        help="also run lmgym GRPO with skip_zero_advantage=False and print the paired speed-up")
    parser.add_argument("--model", default="default", help="both trainers' starting model (default: lmgym's tiny one)")
    parser.add_argument("--backend", default="hf", help="lmgym's generator: hf or vllm (TRL generates with HF)")
    parser.add_argument("--env-kwargs", default="{}", help="JSON: task options for both (e.g. smaller problems)")
    parser.add_argument("--set", default="{}", help="JSON: GRPOConfig fields changed for both (prompts_per_iteration, "
                        "samples_per_prompt, max_new_tokens, lr, ...)")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    env_kwargs, overrides = json.loads(args.env_kwargs), one_minibatch(json.loads(args.set))
    if args.one:
        name, seed = args.one[0], int(args.one[1])
        row = (run_trl(seed, args.samples, out, args.model, env_kwargs, overrides) if name == "trl" else
               run_lmgym(seed, args.samples, out, name, args.model, args.backend, env_kwargs, overrides))
        row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        from lmgym.io import write_json_atomic

        write_json_atomic(out / f"{name}-seed{seed}.json", row)
        return

    from tabulate import tabulate

    from lmgym.io import write_json_atomic
    from lmgym.stats import mean_interval

    print("settings (both):", json.dumps(settings(args.samples, overrides)), "model:", args.model, "env kwargs:",
          json.dumps(env_kwargs), "lmgym backend:", args.backend, flush=True)
    runs: dict[str, list[dict]] = {}
    for seed in args.seeds:
        for name in ("lmgym", "trl", *(["lmgym-recompute"] if args.ablate_old_logprobs else []),
                     *(["lmgym-unshared"] if args.ablate_shared_prompts else []),
                     *(["lmgym-unskipped"] if args.ablate_skip_zero_advantage else [])):
            result_file = out / f"{name}-seed{seed}.json"
            if not result_file.is_file():
                print(f"running {name} seed {seed} ...", flush=True)
                command = [sys.executable, __file__, "--one", name, str(seed), "--samples", str(args.samples), "--out", str(out),
                           "--model", args.model, "--backend", args.backend, "--env-kwargs", args.env_kwargs,
                           "--set", args.set]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"{name} seed {seed} failed")
            runs.setdefault(name, []).append(json.loads(result_file.read_text()))
    rate = lambda r: r["samples"] / r["train_seconds"]
    rows = []
    for name, results in runs.items():
        if name in ABLATIONS:
            continue
        rates = [rate(r) for r in results]
        rows.append({"trainer": results[0]["agent"], "seeds": len(results),
                     "test accuracy (95% t CI)": mean_interval([r["test_accuracy"] for r in results]).format(),
                     "optimizer steps": results[0]["optimizer_steps"], "samples": results[0]["samples"],
                     "samples/s (95% t CI)": mean_interval(rates).format(digits(rates)),
                     "peak RSS MiB": round(max(r["peak_rss_mib"] for r in results))})
    table = tabulate(rows, headers="keys", tablefmt="github")
    ratio = (sum(map(rate, runs["lmgym"])) / len(runs["lmgym"])) / (sum(map(rate, runs["trl"])) / len(runs["trl"]))
    paired = [rate(a) / rate(b) for a, b in zip(runs["lmgym"], runs["trl"])]  # each seed's two runs ran back to back
    print(table + f"\n\nthroughput lmgym / TRL: {ratio:.2f}x (ratio of the mean rates); per-seed ratios "
          f"{mean_interval(paired).format(2)}x (mean, 95% t); same settings, same machine, this run")
    profiled = [r for r in runs["lmgym"] if "phase_shares" in r]
    if profiled:
        phases = [[phase, " ".join(f"{r['phase_shares'].get(phase, 0.0):.1%}" for r in profiled),
                   f"{sum(r['phase_shares'].get(phase, 0.0) for r in profiled) / len(profiled):.1%}"] for phase in PHASES]
        print("\nwhere lmgym GRPO's training time goes (share of wall time without evaluation):\n"
              + tabulate(phases, headers=["phase", "per seed", "mean"], tablefmt="github"))
    if profiled and all("trained_row_share" in r for r in profiled):
        print("rows with an advantage (trained on): " + " ".join(f"{r['trained_row_share']:.1%}" for r in profiled)
              + " per seed; groups whose samples all scored the same: "
              + " ".join(f"{r['reward_std_zero_share']:.1%}" for r in profiled))
    ablations = {}
    for variant, (what, key, summary_key) in ABLATIONS.items():
        if variant not in runs:
            continue
        paired_variant = [rate(a) / rate(b) for a, b in zip(runs["lmgym"], runs[variant])]
        against_trl = [rate(a) / rate(b) for a, b in zip(runs[variant], runs["trl"])]
        ablations[summary_key] = {key: list(mean_interval(paired_variant)), "per_seed": paired_variant,
                                  "variant_over_trl": list(mean_interval(against_trl)), "variant_over_trl_per_seed": against_trl,
                                  "variant_rates": [rate(r) for r in runs[variant]],
                                  "variant_test_accuracy": [r["test_accuracy"] for r in runs[variant]],
                                  "variant_phase_shares": [r.get("phase_shares") for r in runs[variant]]}
        print(f"\n{what}, same seeds in one run: {mean_interval(paired_variant).format(2)}x (mean of per-seed "
              f"ratios, 95% t; {variant}: {mean_interval(ablations[summary_key]['variant_rates']).format(digits(ablations[summary_key]['variant_rates']))} samples/s, "
              f"test accuracy {mean_interval(ablations[summary_key]['variant_test_accuracy']).format()}; {variant} / TRL "
              f"{mean_interval(against_trl).format(2)}x)")
    write_json_atomic(out / "summary.json", {"env": ENV, "settings": settings(args.samples, overrides), "table": rows,
                                             "model": args.model, "lmgym_backend": args.backend, "env_kwargs": env_kwargs,
                                             "command": " ".join(sys.argv),
                                             "throughput_ratio": ratio, "throughput_ratio_per_seed": paired,
                                             "throughput_ratio_interval": list(mean_interval(paired)), **ablations,
                                             "runs": runs})


if __name__ == "__main__":
    main()
