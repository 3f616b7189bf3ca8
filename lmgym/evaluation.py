"""``lmgym eval``: a model on an env's split, scored by the ground truth, with intervals.

What is measured, on the first ``problems`` problems of ``split`` (all by default), in order:

- greedy (temperature 0): ``ground_truth`` (the task's exact judge: the verified answer, the
  unit tests, the facts) and ``mean_reward`` (what an agent trained on the env would be paid);
- with ``k > 1``, ``k`` samples per problem at ``temperature``: ``pass@k`` (a problem counts
  when any of its ``k`` samples is correct; the unbiased estimator with ``n = k``), ``maj@k``
  (majority vote over the verifier's canonical answers, math tasks) and the sampled mean
  ground truth.

Intervals are 95% and over problems (the model is fixed; the problems are the sample): a
metric that is 0/1 per problem (greedy accuracy, pass@k, maj@k) gets the Wilson score interval
(``scipy.stats.binomtest(...).proportion_ci("wilson")``), which stays inside [0, 1] and is
honest at 3 of 32; any other mean (a partial reward) a percentile bootstrap over problems
(``scipy.stats.bootstrap``, 10,000 resamples).

The result is one JSON in the bench's result schema (``lmgym/schemas/result-v2.json``) as the
untrained ``base`` agent with a zero budget and no curve, plus ``evaluation`` (split, k,
sampling, how the intervals were computed, and every problem's outcome, so two models can be
compared problem by problem), and ``samples.jsonl`` beside it with every completion.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmgym.stats import Interval

__all__ = ["EvalConfig", "evaluate_model", "wilson_interval", "bootstrap_interval"]

# Longest completion per env family when --max-tokens is not given: room for the answer format
# each task asks for (a number; a worked solution; a function; a summary).
DEFAULT_MAX_TOKENS = {"Arithmetic": 32, "GSMSymbolic": 320, "GSM8K": 320, "HumanEval": 384, "MBPP": 384,
                      "KeyFacts": 128, "Bandit": 8}
# Few-shot prompts run on into the next exemplar: stop there.
FEW_SHOT_STOP = ("\n\nQuestion:", "\n\n\n")


@dataclass
class EvalConfig:
    model: str = "default"  # "default", a name in lmgym.hub.NAMED ("smollm2-135m"), a folder or a hub id
    env: str = "lmgym/Arithmetic-v0"
    split: str = "test"
    problems: int | None = None  # the first N problems of the split (None: all of it)
    k: int = 1  # > 1: also k samples per problem for pass@k and maj@k
    temperature: float = 1.0  # of the k samples (greedy is always temperature 0)
    top_p: float = 1.0
    max_tokens: int | None = None  # None: DEFAULT_MAX_TOKENS for the env's family
    stop: list[str] | None = None  # None: FEW_SHOT_STOP for prompt_template="few-shot", else none
    prompt_template: str | None = None  # None: the env's default ("plain"); "chat", "few-shot", ...
    env_kwargs: dict = field(default_factory=dict)
    backend: str = "auto"  # "vllm", "hf" or "auto" (vLLM when installed)
    dtype: str = "model"  # a vLLM engine's dtype: "model" scores the weights as saved; "auto" is vLLM's choice (bfloat16 for float32 models on CPU)
    batch: int = 64  # problems per generation call
    seed: int = 0
    out: str | None = None  # folder for result.json and samples.jsonl (None: runs/eval/<model>/<env>-<split>)

    def resolved_max_tokens(self) -> int:
        if self.max_tokens is not None:
            return self.max_tokens
        family = self.env.split("/")[-1].split("-")[0]
        return DEFAULT_MAX_TOKENS.get(family, 256)

    def resolved_stop(self) -> list[str]:
        if self.stop is not None:
            return list(self.stop)
        return list(FEW_SHOT_STOP) if self.prompt_template == "few-shot" else []

    def output_dir(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        name = Path(self.model).name if "/" in self.model else self.model
        template = f"-{self.prompt_template}" if self.prompt_template else ""
        return Path("runs") / "eval" / name / f"{self.env.split('/')[-1]}{template}-{self.split}"


def wilson_interval(successes: np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean of 0/1 outcomes with its Wilson score interval."""
    from scipy.stats import binomtest

    values = np.asarray(successes, dtype=np.float64)
    n, hits = values.size, int(round(values.sum()))
    ci = binomtest(hits, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(hits / n, ci.low, ci.high)


def bootstrap_interval(values: np.ndarray, confidence: float = 0.95, reps: int = 10_000, seed: int = 0) -> Interval:
    """Mean with a percentile bootstrap interval over the values."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if values.size < 2 or np.all(values == values[0]):
        return Interval(mean, mean, mean)
    result = stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=reps, method="percentile",
                             random_state=np.random.default_rng(seed))
    return Interval(mean, result.confidence_interval.low, result.confidence_interval.high)


def interval(values: np.ndarray) -> tuple[Interval, str]:
    values = np.asarray(values, dtype=np.float64)
    if np.isin(values, (0.0, 1.0)).all():
        return wilson_interval(values), "wilson"
    return bootstrap_interval(values), "bootstrap"


def evaluate_model(config: EvalConfig, progress: bool = True, generator=None) -> dict:
    """Evaluate ``config.model`` (see the module docstring); writes and returns the result."""
    import gymnasium as gym
    from tqdm.auto import tqdm

    import lmgym
    from lmgym.bench import _git_commit, environment_record, validate_result
    from lmgym.generation import make_generator, vllm_available
    from lmgym.hub import resolve
    from lmgym.io import weights_hash, write_json_atomic
    from lmgym.metrics import maj_at_k, pass_at_k
    from lmgym.rollout import evaluate

    if config.k < 1:
        raise ValueError(f"k must be >= 1, got {config.k}")
    if config.split not in ("train", "validation", "test"):
        raise ValueError(f"split must be train, validation or test, got {config.split!r}")
    started = time.perf_counter()
    path = resolve(config.model, progress=progress)
    env_kwargs = dict(config.env_kwargs)
    if config.prompt_template is not None:
        env_kwargs["prompt_template"] = config.prompt_template
        if config.prompt_template == "chat":
            env_kwargs.setdefault("tokenizer", path)
    probe = gym.make(config.env, split=config.split, **env_kwargs)
    total = probe.unwrapped.num_problems if config.problems is None else min(config.problems, probe.unwrapped.num_problems)
    probe.close()
    if total < 1:
        raise ValueError(f"{config.env} has no problems in split {config.split!r}")
    batch = max(1, min(config.batch, total))
    own_generator = generator is None
    if own_generator:
        backend = config.backend
        if backend == "auto":
            backend = "vllm" if vllm_available() else "hf"
        generator = make_generator(path, backend=backend, **({"seed": config.seed, "dtype": config.dtype} if backend == "vllm" else {}))
    max_tokens, stop = config.resolved_max_tokens(), config.resolved_stop()
    prefix = "test" if config.split == "test" else "val" if config.split == "validation" else "train"
    metrics: dict[str, float] = {}
    methods: dict[str, str] = {}
    per_problem: list[dict[str, Any]] = [{"index": i} for i in range(total)]
    records: list[dict] = []
    generated = 0
    try:
        runs = [("greedy", 1, dict(temperature=0.0))]
        if config.k > 1:
            runs.append(("sampled", config.k, dict(temperature=config.temperature, top_p=config.top_p)))
        for label, k, sampling in runs:
            envs = gym.make_vec(config.env, num_envs=batch * k, split=config.split, **env_kwargs)
            with tqdm(total=total, desc=f"eval {label} {config.env} {config.split}" + (f" k={k}" if k > 1 else ""),
                      unit="problem", disable=not progress) as bar:
                samples = evaluate(envs, generator, problems=total, k=k, seed=config.seed, progress=bar.update,
                                   max_tokens=max_tokens, stop=stop or None, **sampling).samples
            envs.close()
            generated += sum(len(s.token_ids) for s in samples)
            truth = np.array([s.info.get("ground_truth", s.reward) for s in samples], dtype=np.float64).reshape(total, k)
            reward = np.array([s.reward for s in samples], dtype=np.float64).reshape(total, k)
            correct = truth >= 1.0
            for s in samples:
                records.append({"run": label, "problem": s.problem_index, "prompt": s.prompt, "completion": s.completion,
                                "reward": s.reward, "ground_truth": s.info.get("ground_truth", s.reward),
                                "finish_reason": s.finish_reason, "tokens": len(s.token_ids)})
            if label == "greedy":
                outcomes = {"ground_truth": truth[:, 0], "mean_reward": reward[:, 0]}
                for i in range(total):
                    per_problem[i]["greedy"] = float(truth[i, 0])
            else:
                outcomes = {f"pass@{k}": np.array([pass_at_k(k, int(c.sum()), k) for c in correct]),
                            "sampled_ground_truth": truth.mean(axis=1)}
                answers = [s.info.get("canonical_answer") for s in samples]
                if any(a is not None for a in answers):
                    outcomes[f"maj@{k}"] = np.array([maj_at_k(answers[i * k:(i + 1) * k], correct[i], k) for i in range(total)])
                for i in range(total):
                    per_problem[i]["correct_of_k"] = int(correct[i].sum())
            for name, values in outcomes.items():
                value, method = interval(values)
                metrics[f"{prefix}/{name}"] = value.point
                metrics[f"{prefix}/{name}_low"], metrics[f"{prefix}/{name}_high"] = value.low, value.high
                methods[name] = method
        metrics[f"{prefix}/problems"] = total
    finally:
        if own_generator:
            generator.close()
    seconds = time.perf_counter() - started
    out = config.output_dir()
    env_version = int(config.env.rsplit("-v", 1)[1]) if "-v" in config.env else None
    recorded_kwargs = {k: (v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v))
                       for k, v in env_kwargs.items()}
    result = {
        "schema_version": 2,
        "lmgym_version": lmgym.__version__,
        "git_commit": _git_commit(),
        "env": {"id": config.env, "version": env_version, "kwargs": recorded_kwargs},
        "agent": {"name": "base", "class": "agents.core:BasePolicy",
                  "config": {"model": config.model, "backend": generator.backend, "max_new_tokens": max_tokens,
                             **({"dtype": generator.dtype} if generator.backend == "vllm" else {}),
                             "temperature": config.temperature, "top_p": config.top_p, "stop": stop}},
        "seed": config.seed,
        "budget": {"max_samples": 0, "max_tokens": None, "samples": 0, "tokens": 0, "max_trained_tokens": None,
                   "trained_tokens": 0},
        "model": {"name": config.model, "weights_sha256": weights_hash(path)},
        "metrics": metrics,
        "chosen": {"select_on": "last", "samples": 0, "iteration": 0, "score": metrics[f"{prefix}/ground_truth"]},
        "compute": {"optimizer_steps": 0, "trained_tokens": 0, "generated_tokens": generated, "train_flops": 0,
                    "generation_flops": 0, "train_seconds": 0, "eval_seconds": round(seconds, 3),
                    "wall_seconds": round(seconds, 3)},
        "curve": [],
        "wall_seconds": round(seconds, 3),
        "evaluation": {"config": dataclasses.asdict(config), "split": config.split, "k": config.k,
                       "intervals": {name: ("Wilson score 95% over problems" if m == "wilson" else
                                            "percentile bootstrap 95% over problems, 10,000 resamples")
                                     for name, m in methods.items()},
                       "problems": per_problem},
        **environment_record(),
    }
    if config.split == "test":
        validate_result(result)  # a validation or train evaluation keeps the form but is not a result to submit
    write_json_atomic(out / "result.json", result)
    with open(out / ".samples.jsonl.tmp", "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    (out / ".samples.jsonl.tmp").replace(out / "samples.jsonl")
    return result


def summary(result: dict) -> str:
    """The metrics with their intervals, one per line."""
    metrics = result["metrics"]
    prefix = next(iter(metrics)).split("/")[0]
    split = result["evaluation"]["split"]
    lines = [f"{result['model']['name']} on {result['env']['id']} ({split}, {int(metrics[f'{prefix}/problems'])} problems, "
             f"{result['agent']['config']['backend']}, {result['wall_seconds']:.0f} s)"]
    for key, value in metrics.items():
        name = key.split("/", 1)[1]
        if name.endswith(("_low", "_high")) or name == "problems":
            continue
        low, high = metrics[f"{key}_low"], metrics[f"{key}_high"]
        lines.append(f"  {name:22s} {value:.3f} [{low:.3f}, {high:.3f}]")
    return "\n".join(lines)
