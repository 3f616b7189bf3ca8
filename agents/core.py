"""The little every agent shares: policy and frozen reference, log-probs and KL, the sampler
and its weight sync, budget accounting, evaluation, checkpoint/resume, and the loop.

An agent subclasses :class:`Agent`, names its config dataclass, and implements
``iteration(envs, budget) -> metrics``: sample (``self.sample``), compute its loss, step the
optimizer (``self.optimizer_step``). The loop around it (``learn``) charges the budget,
evaluates on the test split every ``eval_every`` samples, checkpoints atomically after each
iteration, and resumes from the checkpoint when it finds one::

    agent = PPO(PPOConfig(lr=1e-4))
    result = agent.learn("lmgym/Arithmetic-v0", Budget(max_samples=20_000), run_dir="runs/ppo")

Budgets are counted in generated samples and tokens, never wall time; the last rollout is
shrunk to what is left of a sample budget (rounded up to whole groups of ``samples_per_prompt``).
Every iteration draws its problems from a generator seeded by ``(seed, iteration)``, and
sampling is seeded the same way, so an interrupted run resumes to the same state as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import lmgym  # noqa: F401  (registers the env ids)
from lmgym.generation.generator import make_generator
from lmgym.generation.hf import completion_logprobs
from lmgym.io import atomic_path
from lmgym.metrics import vanishing_gradient_share
from lmgym.rollout import Budget, RolloutBatch, rollout
from lmgym.vector import LMVectorEnv

__all__ = ["Agent", "AgentConfig", "BasePolicy", "LearnResult", "completion_logprobs", "kl_penalty", "masked_mean",
           "masked_whiten", "nll_loss", "read_jsonl"]


# --- pure functions -----------------------------------------------------------------------


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Normalise to zero mean, unit variance over the masked entries (advantage normalisation)."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def read_jsonl(path: str | os.PathLike, required: set[str]) -> list[dict]:
    """The rows of a jsonl file (blank lines skipped); a row missing a ``required`` key is a
    ``ValueError`` naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = required - set(row)
            if missing:
                raise ValueError(f"{path}:{line_number}: missing {sorted(missing)}")
            rows.append(row)
    return rows


def nll_loss(logprobs: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Supervised fine-tuning loss: mean negative log-likelihood per completion token; with
    ``weights`` (one per sequence) each sequence's tokens count that many times, still divided
    by the token count, so weights that average 1 keep the loss's scale."""
    return -masked_mean(logprobs if weights is None else weights[:, None] * logprobs, mask)


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi (Schulman's k1/k2/k3).

    k1 = log pi - log pi_ref (unbiased, can be negative; the PPO-RLHF reward penalty),
    k2 = (log pi - log pi_ref)^2 / 2, k3 = exp(log pi_ref - log pi) - 1 - (log pi_ref - log pi)
    (unbiased and non-negative; the GRPO loss term).
    """
    log_ratio = logprobs - ref_logprobs
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio.pow(2)
    if kind == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {kind!r}: k1, k2 or k3")


# --- configuration and results ------------------------------------------------------------


@dataclass
class AgentConfig:
    """What every agent has. Agents subclass it and add their own fields."""

    model: str = "default"  # "default": lmgym's pretrained tiny Arithmetic model; else HF name/path
    backend: str = "hf"  # sampler: "hf" samples from the policy object; "vllm" syncs after each update
    lr: float = 5e-5
    warmup_steps: int = 0  # linear LR warm-up, then constant
    max_grad_norm: float = 1.0
    prompts_per_iteration: int = 32
    samples_per_prompt: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 24
    micro_batch_size: int = 128  # sequences per forward/backward
    eval_every: int = 2000  # samples between evaluations on the test split (0: start and end only)
    eval_problems: int = 500  # greedy accuracy on the first problems of the test split
    seed: int = 0
    device: str = "auto"


@dataclass
class LearnResult:
    curve: list[dict]  # one row per evaluation: samples, tokens, iteration, test metrics, train metrics
    budget: dict
    config: dict
    wall_seconds: float
    eval_seconds: float = 0.0  # of wall_seconds, spent evaluating (for throughput numbers)

    @property
    def final(self) -> dict:
        return self.curve[-1]


# --- the agent ----------------------------------------------------------------------------


class Agent:
    """Shared core. Subclasses set ``name`` and ``Config`` and implement :meth:`iteration`."""

    name = "agent"
    Config = AgentConfig
    uses_reference = False  # True: keep a frozen copy of the initial policy (KL anchors)

    def __init__(self, config: AgentConfig | None = None, generator=None, **overrides: Any):
        """``generator``: an existing sampler to use (e.g. one vLLM engine shared by several
        agents); it must hold the same weights as ``config.model``."""
        config = config or self.Config()
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}, got {type(config).__name__}")
        self.config = dataclasses.replace(config, **overrides) if overrides else config
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if self.config.device == "auto" else self.config.device
        )
        self._set_seed(self.config.seed)
        self.model_path = self._resolve_model(self.config.model)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.policy = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32).to(self.device)
        self.reference = None
        if self.uses_reference:
            self.reference = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32).to(self.device)
            self.reference.requires_grad_(False).eval()
        self.build()  # agent-specific modules (e.g. a value head) before the optimizer sees them
        self.optimizer = torch.optim.AdamW(self.trainable_parameters(), lr=self.config.lr, weight_decay=0.0)
        warmup = max(1, self.config.warmup_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: min(1.0, (step + 1) / warmup))
        self.generator = generator if generator is not None else self._make_generator()
        self.iteration_count = 0
        self.curve: list[dict] = []
        self.train_log: list[dict] = []
        self.eval_seconds = 0.0

    # construction helpers ------------------------------------------------------------------

    @staticmethod
    def _resolve_model(model: str) -> str:
        if model == "default":
            from lmgym.pretrain import default_model

            return str(default_model())
        return model

    def _make_generator(self):
        if self.config.backend == "hf":
            return make_generator(self.policy, backend="hf", tokenizer=self.tokenizer)
        return make_generator(self.model_path, backend=self.config.backend)

    @staticmethod
    def _set_seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def build(self) -> None:
        """Create agent-specific modules (called before the optimizer is built)."""

    def trainable_parameters(self) -> list:
        """Parameters (or parameter groups, policy first) the optimizer trains."""
        return list(self.policy.parameters())

    # sampling, scoring, updating -------------------------------------------------------------

    def iteration_seed(self) -> int:
        return self.config.seed * 1_000_003 + self.iteration_count

    def sample(self, envs, budget: Budget | None, prompts: int | None = None, n: int | None = None, prefix: str = "",
               suffix: str = "", generator=None, **sampling) -> RolloutBatch:
        """One rollout of ``prompts`` x ``n`` from the current policy (or from ``generator``, e.g. a
        frozen behaviour policy for off-policy agents), problems drawn from the train split by a
        generator seeded with ``(seed, iteration)``; charged to ``budget``."""
        n = n or self.config.samples_per_prompt
        prompts = prompts or self.config.prompts_per_iteration
        vec = envs.unwrapped
        if budget is not None and budget.max_samples is not None:
            remaining = budget.max_samples - budget.samples
            if 0 < remaining < prompts * n:  # the last rollout spends only what is left (whole groups)
                prompts = -(-remaining // n)
                first = vec.envs[0]
                vec = LMVectorEnv(prompts * n, vec.task, split=first.split, prompt_template=first.prompt_for,
                                  max_completion_chars=first.max_completion_chars)
        if vec.num_envs != prompts * n:
            raise ValueError(f"envs has {vec.num_envs} sub-envs; this rollout needs {prompts} x {n}")
        rng = np.random.default_rng([self.config.seed, self.iteration_count, 7])
        indices = rng.integers(vec.envs[0].num_problems, size=prompts).tolist()
        options = dict(temperature=self.config.temperature, top_p=self.config.top_p, max_tokens=self.config.max_new_tokens)
        options.update(sampling)
        return rollout(vec, generator or self.generator, n=n, indices=indices, seed=self.iteration_seed(), budget=budget,
                       prefix=prefix, suffix=suffix, **options)

    def logprobs(self, model, prompt_ids, completion_ids, return_hidden: bool = False):
        """``completion_logprobs`` in micro-batches, concatenated (padded to a common length)."""
        size = self.config.micro_batch_size
        chunks = [
            completion_logprobs(model, prompt_ids[i : i + size], completion_ids[i : i + size], self.tokenizer.pad_token_id, return_hidden)
            for i in range(0, len(prompt_ids), size)
        ]
        width = max(chunk[0].shape[1] for chunk in chunks)
        pad = lambda t: torch.nn.functional.pad(t, (0, 0) * (t.dim() - 2) + (0, width - t.shape[1]))
        return tuple(torch.cat([pad(chunk[k]) for chunk in chunks]) for k in range(len(chunks[0])))

    def sequence_log_ratios(self, prompt_ids, completion_ids) -> tuple[torch.Tensor, torch.Tensor]:
        """``h(y) = log pi(y|x) - log pi_ref(y|x)`` per sequence (summed over its tokens), with
        gradients through the policy; and the policy's ``log pi(y|x)``. Needs ``uses_reference``."""
        logprobs, mask = self.logprobs(self.policy, prompt_ids, completion_ids)
        with torch.no_grad():
            ref_logprobs, _ = self.logprobs(self.reference, prompt_ids, completion_ids)
        sequence = (logprobs * mask).sum(1)
        return sequence - (ref_logprobs * mask).sum(1), sequence

    @staticmethod
    def batch_metrics(batch: RolloutBatch) -> dict:
        """Reward mean, and the share of prompts whose n samples all scored the same: their
        policy gradient vanishes (Razin et al. 2024; logged as in ../shared/PAPERS.md)."""
        metrics = {"train/reward": float(batch.rewards.mean())}
        if batch.n >= 2:
            metrics["train/reward_std_zero_share"] = vanishing_gradient_share(batch.grouped_rewards())
        return metrics

    def sampler_mismatch(self, batch: RolloutBatch, trainer_logprobs: torch.Tensor, mask: torch.Tensor) -> float:
        """Mean |sampler log-prob - trainer log-prob| over the batch's tokens: ~0 when the
        sampler follows the trainer; a jump means a broken weight sync or numerics drift."""
        sampler = torch.zeros_like(trainer_logprobs)
        for i, sample in enumerate(batch.samples):
            sampler[i, : len(sample.logprobs)] = torch.tensor(sample.logprobs, dtype=sampler.dtype)
        return float(masked_mean((sampler - trainer_logprobs).abs(), mask))

    def optimizer_step(self, loss: torch.Tensor) -> float:
        """Backward, clip (each parameter group on its own, so a value head's gradients cannot
        crowd out the policy's), step, schedule; returns the policy's pre-clip gradient norm."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norms = [torch.nn.utils.clip_grad_norm_(g["params"], self.config.max_grad_norm) for g in self.optimizer.param_groups]
        self.optimizer.step()
        self.scheduler.step()
        return float(norms[0])

    def fit(self, examples: Sequence[tuple[list[int], list[int]]], epochs: int, batch_size: int,
            weights: Sequence[float] | None = None) -> float:
        """Supervised steps on ``(prompt_ids, completion_ids)`` pairs (ExIt, RC-RL, SFT): shuffled
        by a ``(seed, iteration)`` generator, optionally weighted per example; returns the mean loss."""
        rng = np.random.default_rng([self.config.seed, self.iteration_count, 13])
        losses = []
        for _ in range(epochs):
            order = rng.permutation(len(examples))
            for start in range(0, len(order), batch_size):
                chosen = order[start : start + batch_size]
                chunk = [examples[i] for i in chosen]
                logprobs, mask = self.logprobs(self.policy, [p for p, _ in chunk], [c for _, c in chunk])
                chunk_weights = None if weights is None else torch.tensor([weights[i] for i in chosen], dtype=logprobs.dtype, device=logprobs.device)
                loss = nll_loss(logprobs, mask, chunk_weights)
                self.optimizer_step(loss)
                losses.append(loss.item())
        self.sync_generator()
        return float(np.mean(losses)) if losses else float("nan")

    def sync_generator(self) -> None:
        """Push the policy's weights into the sampler (a no-op when HF samples the policy itself)."""
        if self.config.backend != "hf":
            self.generator.load_weights(self.policy.state_dict())

    def iteration(self, envs, budget: Budget) -> dict:
        """One round of the algorithm: sample, update, sync. Returns metrics to log."""
        raise NotImplementedError

    def prompt_prefix(self) -> str:
        """Text put before every prompt when acting (return-conditioned agents override it)."""
        return ""

    def prompt_suffix(self) -> str:
        """Text put after every prompt, right before the completion, when acting."""
        return ""

    def conditioned(self, prompts: Sequence[str]) -> list[str]:
        """``prompts`` as the agent acts on them: between its prefix and its suffix."""
        prefix, suffix = self.prompt_prefix(), self.prompt_suffix()
        return [prefix + p + suffix for p in prompts]

    # acting and evaluating ---------------------------------------------------------------------

    def act(self, observations: Sequence[str], greedy: bool = True) -> list[str]:
        generations = self.generator.generate(
            self.conditioned(observations),
            temperature=0.0 if greedy else self.config.temperature,
            max_tokens=self.config.max_new_tokens,
            seed=self.iteration_seed(),
        )
        return [g.completions[0].text for g in generations]

    def evaluate(self, env_id: str, env_kwargs: dict | None = None, problems: int | None = None) -> dict:
        """Greedy mean reward (accuracy for exact-answer tasks) on the first test problems."""
        problems = problems or self.config.eval_problems
        env = gym.make(env_id, split="test", **(env_kwargs or {})).unwrapped
        problems = min(problems, env.num_problems)
        selected = [env.task.problem("test", i) for i in range(problems)]
        completions = self.act([env.prompt_for(p) for p in selected])
        rewards = [reward for reward, _ in env.task.score_batch(selected, completions)]
        return {"test/mean_reward": float(np.mean(rewards)), "test/problems": problems}

    def evaluate_samples(self, env_id: str, env_kwargs: dict | None = None, k: int = 4, problems: int | None = None) -> dict:
        """``k`` samples per test problem (at the training temperature): pass@k (unbiased),
        maj@k, mean reward, the vanishing-gradient share, and KL(policy || reference) per
        sequence (k1 estimate on the samples)."""
        from lmgym.metrics import maj_at_k, pass_at_k

        problems = problems or self.config.eval_problems
        env = gym.make(env_id, split="test", **(env_kwargs or {})).unwrapped
        selected = [env.task.problem("test", i) for i in range(min(problems, env.num_problems))]
        generations = self.generator.generate(
            self.conditioned([env.prompt_for(p) for p in selected]), n=k, temperature=self.config.temperature,
            top_p=self.config.top_p, max_tokens=self.config.max_new_tokens, seed=self.iteration_seed(),
        )
        completions = [c for g in generations for c in g.completions]
        scored = env.task.score_batch([p for p in selected for _ in range(k)], [c.text for c in completions])
        rewards = np.array([r for r, _ in scored]).reshape(len(selected), k)
        correct = np.array([bool(info.get("correct", r >= 1.0)) for r, info in scored]).reshape(len(selected), k)
        answers = [info.get("extracted_answer") for _, info in scored]
        reference = self.reference
        if reference is None:  # agents without a KL anchor: load the initial weights to measure drift
            from transformers import AutoModelForCausalLM

            reference = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32).to(self.device).eval()
        prompt_ids = [g.prompt_token_ids for g in generations for _ in g.completions]
        completion_ids = [c.token_ids for c in completions]
        with torch.no_grad():
            logprobs, mask = self.logprobs(self.policy, prompt_ids, completion_ids)
            ref_logprobs, _ = self.logprobs(reference, prompt_ids, completion_ids)
        kl = float(((logprobs - ref_logprobs) * mask).sum(1).mean())
        return {
            f"test/pass@{k}": float(np.mean([pass_at_k(k, int(c.sum()), k) for c in correct])),
            f"test/maj@{k}": float(np.mean([maj_at_k(answers[i * k : (i + 1) * k], correct[i], k) for i in range(len(selected))])),
            "test/sampled_mean_reward": float(rewards.mean()),
            "test/reward_std_zero_share": vanishing_gradient_share(rewards) if k >= 2 else float("nan"),
            "test/kl_to_reference": kl,
        }

    # the loop -----------------------------------------------------------------------------------

    def learn(
        self,
        env_id: str,
        budget: Budget,
        run_dir: str | os.PathLike | None = None,
        env_kwargs: dict | None = None,
        progress: bool = True,
        stop_after: int | None = None,
    ) -> LearnResult:
        """Train until ``budget`` is spent, evaluating every ``eval_every`` samples.

        With ``run_dir``, a checkpoint is written atomically after every iteration and an
        existing one is resumed. ``stop_after`` stops after that many iterations (this call),
        as an interruption would.
        """
        from tqdm.auto import tqdm

        env_kwargs = dict(env_kwargs or {})
        checkpoint = Path(run_dir) / "checkpoint.pt" if run_dir is not None else None
        if checkpoint is not None and checkpoint.is_file():
            budget = self.load(checkpoint)
        envs = self.make_envs(env_id, env_kwargs)
        start = time.perf_counter()
        if not self.curve:
            self._evaluate_into_curve(env_id, env_kwargs, budget)
        bar = tqdm(total=budget.max_samples, initial=budget.samples, desc=f"{self.name} {env_id}", unit="sample", disable=not progress)
        done_here = 0
        while not budget.exhausted:
            before = budget.samples
            metrics = self.iteration(envs, budget)
            self.iteration_count += 1
            metrics.update({"samples": budget.samples, "tokens": budget.tokens, "queries": budget.queries,
                            "iteration": self.iteration_count})
            self.train_log.append(metrics)
            bar.update(budget.samples - before)
            bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in metrics.items() if k.startswith("train/")}, refresh=False)
            last_eval = self.curve[-1]["samples"]
            if budget.exhausted or (self.config.eval_every and budget.samples - last_eval >= self.config.eval_every):
                self._evaluate_into_curve(env_id, env_kwargs, budget)
            if checkpoint is not None:
                self.save(checkpoint, budget)
            done_here += 1
            if stop_after is not None and done_here >= stop_after:
                break
        bar.close()
        return LearnResult(self.curve, budget.state_dict(), dataclasses.asdict(self.config), time.perf_counter() - start, self.eval_seconds)

    def make_envs(self, env_id: str, env_kwargs: dict):
        return gym.make_vec(env_id, num_envs=self.config.prompts_per_iteration * self.config.samples_per_prompt, **env_kwargs)

    def _evaluate_into_curve(self, env_id, env_kwargs, budget: Budget) -> None:
        start = time.perf_counter()
        row = {"samples": budget.samples, "tokens": budget.tokens, "queries": budget.queries,
               "iteration": self.iteration_count}
        row.update(self.evaluate(env_id, env_kwargs))
        self.eval_seconds += time.perf_counter() - start
        recent = [m for m in self.train_log if m["iteration"] > (self.curve[-1]["iteration"] if self.curve else 0)]
        for key in {k for m in recent for k in m if k.startswith("train/")}:
            row[key] = float(np.mean([m[key] for m in recent if key in m]))
        self.curve.append(row)

    # checkpoints --------------------------------------------------------------------------------

    def extra_state(self) -> dict:
        """Agent-specific state for checkpoints (datasets, controllers, extra modules)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def save(self, path: str | os.PathLike, budget: Budget | None = None) -> None:
        """Everything needed to resume, written to a temp file then renamed (atomic)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "agent": self.name,
            "config": dataclasses.asdict(self.config),
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "iteration": self.iteration_count,
            "curve": self.curve,
            "train_log": self.train_log,
            "budget": budget.state_dict() if budget is not None else None,
            "extra": self.extra_state(),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def load(self, path: str | os.PathLike) -> Budget | None:
        """Restore a checkpoint written by :meth:`save`; returns its budget."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state["agent"] != self.name:
            raise ValueError(f"{path} is a checkpoint of {state['agent']!r}, not {self.name!r}")
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration_count, self.curve, self.train_log = state["iteration"], state["curve"], state["train_log"]
        self.load_extra_state(state["extra"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        self.sync_generator()
        return Budget.from_state_dict(state["budget"]) if state["budget"] is not None else None


@dataclass
class BasePolicyConfig(AgentConfig):
    pass


class BasePolicy(Agent):
    """The untrained base policy: the baseline every agent must beat. ``learn`` spends no
    budget and only evaluates."""

    name = "base"
    Config = BasePolicyConfig

    def learn(self, env_id, budget, run_dir=None, env_kwargs=None, progress=True, stop_after=None) -> LearnResult:
        start = time.perf_counter()
        if not self.curve:
            self._evaluate_into_curve(env_id, dict(env_kwargs or {}), budget)
        return LearnResult(self.curve, budget.state_dict(), dataclasses.asdict(self.config), time.perf_counter() - start)


