"""The little every agent shares: policy and frozen reference, log-probs and KL, the sampler
and its weight sync, budget accounting, evaluation, checkpoint/resume, and the loop.

An agent subclasses :class:`Agent`, names its config dataclass, and implements
``iteration(envs, budget) -> metrics``: sample (``self.sample``), compute its loss, step the
optimizer (``self.optimizer_step``). The loop around it (``learn``) charges the budget,
evaluates on the validation split every ``eval_every`` samples, keeps the checkpoint that
scores best there, checkpoints atomically after each iteration, resumes from the checkpoint
when it finds one, and at the end evaluates that best checkpoint once on the test split::

    agent = PPO(PPOConfig(lr=1e-4))
    result = agent.learn("lmgym/Arithmetic-v0", Budget(max_samples=20_000), run_dir="runs/ppo")
    result.test["test/ground_truth"]     # the final number: the validation-chosen checkpoint on test

The final score is the greedy ground-truth mean on the whole test split (``test_problems``) of
the checkpoint with the best validation score (``select_on``), so one lucky evaluation cannot
carry it; the curve holds the validation metrics, with pass@k and maj@k when ``eval_k > 1``.

Compute is counted beside samples: optimizer steps, trained tokens, and FLOP estimates
(``6 N T`` for the T prompt+completion tokens of every forward/backward pass through the
N-parameter policy, a prompt that several completions in one micro-batch share counted once as it
is run once (``share_prompts``), ``2 N T`` for forward-only passes, e.g. a frozen reference, and
``2 N (prompt + completion)`` per generated sample; attention ignored), plus wall time
without evaluation (``train_seconds``) and with it.

Budgets are counted in generated samples and tokens, never wall time; the last rollout is
shrunk to what is left of a sample budget (rounded up to whole groups of ``samples_per_prompt``).
Every iteration draws its problems from a generator seeded by ``(seed, iteration)``, and
sampling is seeded the same way, so an interrupted run resumes to the same state as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
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
from lmgym.generation import make_generator
from lmgym.data import read_jsonl
from lmgym.io import atomic_path
from lmgym.models import forward_accepts
from lmgym.metrics import maj_at_k, outcome_shares, pass_at_k, vanishing_gradient_share
from lmgym.pretrain import model_path
from lmgym.rollout import Budget, BudgetSpent, RolloutBatch, rollout
from lmgym.rollout import evaluate as evaluation_rollout
from lmgym.tracking import Tracker
from lmgym import distributed

__all__ = ["Agent", "AgentConfig", "BasePolicy", "LearnResult", "clip_fraction", "completion_logprobs", "config_docs",
           "config_from_dict", "kl_penalty", "masked_mean",
           "masked_whiten", "nll_loss", "read_jsonl", "score_logprobs"]


# --- pure functions -----------------------------------------------------------------------


def completion_logprobs(
    model,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    pad_token_id: int,
    return_hidden: bool = False,
    share_prompts: bool = False,
):
    """Teacher-forced log-probs of each completion token: ``(logprobs, mask[, hidden])``, each
    ``(batch, max_completion_len)`` (hidden: ``(batch, T, d)``, the state that predicts token t).

    Sequences are right-padded; ``mask`` is 1 on real completion tokens. ``share_prompts``: rows
    with the same prompt run that prompt through the model once (:func:`prompt_sharing`), where
    that saves tokens and the model takes a key/value cache; the same numbers up to float rounding.
    """
    if share_prompts and prompt_sharing(prompt_ids, completion_ids) is not None and _takes_cache(model):
        shared = _shared_prompt_logprobs(model, prompt_ids, completion_ids, pad_token_id, return_hidden)
        if shared is not None:
            return shared
    rows = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    width = max(map(len, rows))
    steps = max(max(len(c) for c in completion_ids), 1)
    device = next(model.parameters()).device
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long, device=device)
    attention_mask = torch.zeros_like(input_ids)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, device=device)
        attention_mask[i, : len(row)] = 1
    # Only the positions from the earliest completion start on predict a completion token: ask the
    # model for the logits of those last `keep` positions alone (transformers' `logits_to_keep`),
    # not of every prompt position (the LM head and the softmax there are wasted work: with
    # SmolLM2's 49k vocabulary, 48-token prompts and 16-token completions, skipping them made a
    # forward+backward 1.19x faster). A model without the option returns all.
    first = min(len(p) for p in prompt_ids) - 1
    keep = width - first
    output = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=return_hidden,
                   **({"logits_to_keep": keep} if _keeps_logits(model) else {}))
    offset = first if output.logits.shape[1] == keep else 0
    # position t predicts token t+1: gather each completion's span [len(p) - 1, len(p) - 1 + len(c))
    starts = torch.tensor([len(p) - 1 for p in prompt_ids], device=device)
    positions = starts[:, None] + torch.arange(steps, device=device)[None, :]
    lengths = torch.tensor([len(c) for c in completion_ids], device=device)
    mask = (torch.arange(steps, device=device)[None, :] < lengths[:, None]).float()
    positions = positions.clamp(max=width - 1)
    targets = input_ids.gather(1, (positions + 1).clamp(max=width - 1))
    kept = positions - offset
    logits = output.logits.gather(1, kept[..., None].expand(-1, -1, output.logits.shape[-1])).float()
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1) * mask
    if not return_hidden:
        return logprobs, mask
    hidden = output.hidden_states[-1]
    hidden = hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))
    return logprobs, mask, hidden


def prompt_sharing(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]]):
    """``(owner, unique prompts)`` when computing each distinct prompt once saves padded tokens
    (``owner[i]``: row i's prompt among them), else None. GRPO-style groups (n completions of a
    prompt) are the case it is for: with n = 4 the prompt's tokens go through the model once, not 4
    times. Needs every prompt to have at least 2 tokens (the last one is run with the completion)."""
    if not prompt_ids or min(len(p) for p in prompt_ids) < 2:
        return None
    index: dict[tuple, int] = {}
    owner = [index.setdefault(tuple(p), len(index)) for p in prompt_ids]
    if len(index) == len(owner):
        return None
    rows, steps = len(owner), max(max(len(c) for c in completion_ids), 1)
    plain = rows * max(len(p) + len(c) for p, c in zip(prompt_ids, completion_ids))
    shared = len(index) * (max(map(len, index)) - 1) + rows * steps
    return (owner, list(index)) if shared < plain else None


def processed_tokens(prompt_ids, completion_ids, share_prompts: bool = False) -> int:
    """Tokens :func:`completion_logprobs` runs through the model (unpadded), for FLOP estimates:
    every prompt + completion, or with shared prompts each distinct prompt once."""
    plan = prompt_sharing(prompt_ids, completion_ids) if share_prompts else None
    if plan is None:
        return sum(len(p) + len(c) for p, c in zip(prompt_ids, completion_ids))
    return sum(len(p) - 1 for p in plan[1]) + sum(max(len(c), 1) for c in completion_ids)


def _shared_prompt_logprobs(model, prompt_ids, completion_ids, pad_token_id: int, return_hidden: bool):
    """:func:`completion_logprobs` with each distinct prompt run once. Two passes: the distinct
    prompts without their last token (right-padded, keys/values kept), then for every row its
    prompt's last token and its completion but the last token, attending to its prompt's
    keys/values (the cache rows picked per row: the gradient of a shared prompt is the sum over
    its completions, as in the plain pass). Positions continue each prompt's own length, so the
    padding between prompt and completion is masked and never shifts a position. None when the
    model returned no cache (e.g. a layer that drops it)."""
    owner, unique = prompt_sharing(prompt_ids, completion_ids)
    device = next(model.parameters()).device
    heads = [p[:-1] for p in unique]
    head_ids = torch.full((len(heads), max(map(len, heads))), pad_token_id, dtype=torch.long, device=device)
    head_mask = torch.zeros_like(head_ids)
    for i, head in enumerate(heads):
        head_ids[i, : len(head)] = torch.tensor(head, device=device)
        head_mask[i, : len(head)] = 1
    head = model(input_ids=head_ids, attention_mask=head_mask, use_cache=True,
                 **({"logits_to_keep": 1} if _keeps_logits(model) else {}))
    cache = getattr(head, "past_key_values", None)
    if cache is None or not hasattr(cache, "batch_select_indices") or cache.get_seq_length() != head_ids.shape[1]:
        return None
    rows = torch.tensor(owner, device=device)
    cache.batch_select_indices(rows)  # each row's own copy of its prompt's keys/values (autograd sums them back)
    steps = max(max(len(c) for c in completion_ids), 1)
    tail_ids = torch.full((len(owner), steps), pad_token_id, dtype=torch.long, device=device)
    targets = torch.full_like(tail_ids, pad_token_id)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        tail = [p[-1], *c[:-1]]
        tail_ids[i, : len(tail)] = torch.tensor(tail, device=device)
        targets[i, : len(c)] = torch.tensor(list(c), device=device)
    lengths = torch.tensor([len(c) for c in completion_ids], device=device)
    mask = (torch.arange(steps, device=device)[None, :] < lengths[:, None]).long()
    tail_mask = mask.clone()
    tail_mask[:, 0] = 1  # the prompt's last token is real even before an empty completion
    starts = torch.tensor([len(p) - 1 for p in prompt_ids], device=device)
    output = model(input_ids=tail_ids, attention_mask=torch.cat([head_mask[rows], tail_mask], 1),
                   position_ids=starts[:, None] + torch.arange(steps, device=device)[None, :], past_key_values=cache,
                   use_cache=True, output_hidden_states=return_hidden)
    mask = mask.float()
    logprobs = torch.log_softmax(output.logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1) * mask
    if not return_hidden:
        return logprobs, mask
    return logprobs, mask, output.hidden_states[-1]


def _takes_cache(model) -> bool:
    """Whether ``model``'s forward takes ``past_key_values`` and ``position_ids`` (transformers'
    causal LMs do): what :func:`_shared_prompt_logprobs` needs."""
    return forward_accepts(model, "past_key_values") and forward_accepts(model, "position_ids")


def checkpointing_layers(model) -> list:
    """The layers of ``model`` that ``gradient_checkpointing_enable`` switched on.

    transformers checkpoints a layer only while that layer is in training mode, and lmgym keeps
    its policy in eval mode (no dropout: the trainer's log-probs must be the sampler's), so
    without :func:`layers_in_training_mode` around a pass with gradients the option would
    silently do nothing (it did until this was found by counting forward calls in backward)."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:  # older transformers: every module that carries the flag
        GradientCheckpointingLayer = torch.nn.Module
    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and getattr(m, "gradient_checkpointing", False)]


@contextlib.contextmanager
def layers_in_training_mode(layers: list):
    """Set these layers' own ``training`` flag (not their submodules': dropout stays off) while a
    pass with gradients runs, so that transformers checkpoints them; restored afterwards."""
    changed = [m for m in layers if not m.training] if torch.is_grad_enabled() else []
    for module in changed:
        module.training = True
    try:
        yield
    finally:
        for module in changed:
            module.training = False


def _keeps_logits(model) -> bool:
    """Whether ``model``'s forward takes ``logits_to_keep`` (transformers' causal LMs do); looks
    through lmgym's :class:`AdaptersOff` and peft's wrappers to the model that does the work."""
    return forward_accepts(model, "logits_to_keep")


def score_logprobs(
    model, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], pad_token_id: int = 0
) -> list[torch.Tensor]:
    """Teacher-forced ``log pi(completion_t | prompt, completion_<t)`` for each pair, one 1-D
    tensor per pair (:func:`completion_logprobs` without the padding)."""
    logprobs, _ = completion_logprobs(model, prompt_ids, completion_ids, pad_token_id)
    return [logprobs[i, : len(c)] for i, c in enumerate(completion_ids)]


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


def nll_loss(logprobs: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Supervised fine-tuning loss: mean negative log-likelihood per completion token; with
    ``weights`` (one per sequence) each sequence's tokens count that many times, still divided
    by the token count, so weights that average 1 keep the loss's scale."""
    return -masked_mean(logprobs if weights is None else weights[:, None] * logprobs, mask)


def clip_fraction(ratio: torch.Tensor, mask: torch.Tensor, clip_range: float) -> float:
    """The share of tokens whose probability ratio left ``[1 - eps, 1 + eps]`` (CleanRL's
    ``losses/clipfrac``; the same meaning in every agent that clips)."""
    return float(masked_mean(((ratio - 1).abs() > clip_range).float(), mask))


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

    model: str = "default"  # "default": lmgym's pretrained tiny Arithmetic model; else an HF name or folder
    backend: str = "hf"  # sampler: "hf" samples from the policy object; "vllm" syncs after each update
    sampler_dtype: str = "policy"  # vLLM engine's dtype: "policy" (float32, the trained weights' own: on-policy samples) or "bfloat16"/"auto" (vLLM's choice; on CPU it casts float32 models to bfloat16: faster, slightly off-policy)
    lr: float = 5e-5  # learning rate of the policy's optimizer
    optimizer: str = "adamw"  # "adamw" (no weight decay) or "sgd" (plain, no momentum: Razin et al.'s setting)
    warmup_steps: int = 0  # linear LR warm-up over this many optimizer steps, then constant
    max_grad_norm: float = 1.0  # clip each parameter group's gradient norm to this
    prompts_per_iteration: int = 32  # problems drawn per iteration
    samples_per_prompt: int = 4  # completions sampled per problem (a group)
    temperature: float = 1.0  # sampling temperature for training rollouts and sampled evaluation
    top_p: float = 1.0  # nucleus sampling threshold (1: off)
    max_new_tokens: int = 24  # longest completion, in tokens
    micro_batch_size: int = 128  # sequences per forward/backward pass (memory only; not an optimizer step)
    micro_batch_tokens: int = 0  # > 0: micro-batches of at most this many (padded) tokens, gradients accumulated (below)
    lora_rank: int = 0  # > 0: train LoRA adapters of this rank (peft); the reference is the base with adapters off, not a copy
    lora_alpha: float = 16.0  # LoRA scaling numerator (the update is alpha / rank * B A)
    lora_dropout: float = 0.0  # dropout on the adapters' input (the replayed micro-batches draw the same masks)
    lora_target_modules: str = "all-linear"  # peft target_modules: "all-linear" or a comma list (q_proj,v_proj)
    bf16: bool = False  # bfloat16 autocast of forward passes; weights, gradients and optimizer states stay float32
    gradient_checkpointing: bool = False  # recompute activations in the backward pass instead of storing them
    share_prompts: bool = True  # a prompt with several completions goes through the model once, in training passes and HF sampling (same numbers to float rounding)
    eval_every: int = 2000  # samples between evaluations on the validation split (0: start and end only)
    eval_problems: int = 500  # problems of the validation split evaluated (greedy, and eval_k samples each)
    eval_k: int = 4  # samples per problem for pass@k / maj@k at each evaluation and the final test (1: greedy only)
    eval_k_problems: int = 128  # validation problems sampled eval_k times at each evaluation (the test samples all)
    checkpoint_seconds: float = 30.0  # with a run_dir: checkpoint when this long has passed (and at the end)
    select_on: str = "reward"  # the checkpoint tested: best validation "reward" (no gold labels needed), "ground_truth", or "last"
    test_problems: int | None = None  # problems of the test split in the final evaluation (None: all of it)
    seed: int = 0  # seeds problems, sampling, shuffling and initialisation
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", ...
    report_to: str = "none"  # experiment tracking: "none", "tensorboard", "wandb", "all" or a comma list (lmgym.tracking)
    logging_dir: str | None = None  # where tracking writes (None: <run_dir>/tensorboard, else runs/tensorboard/<agent>-seed<k>)


# Config fields renamed when the agents were given one vocabulary: old name -> new name. Old
# result files and leaderboard entries still load (config_from_dict translates them).
RENAMED_FIELDS = {"ppo_epochs": "epochs", "sft_epochs": "epochs", "sft_batch_size": "minibatch_size"}


def config_from_dict(config_class, values: dict):
    """``config_class(**values)``, accepting the field names of earlier lmgym versions
    (:data:`RENAMED_FIELDS`, and ``minibatches``, a count, as ``minibatch_size``); an unknown
    field is a ``ValueError`` that names it."""
    values = {RENAMED_FIELDS.get(key, key): value for key, value in values.items()}
    if "minibatches" in values:
        rollout_size = values.get("prompts_per_iteration", config_class.prompts_per_iteration) * values.get(
            "samples_per_prompt", config_class.samples_per_prompt)
        values["minibatch_size"] = -(-rollout_size // values.pop("minibatches"))
    unknown = set(values) - {f.name for f in dataclasses.fields(config_class)}
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} field(s) {sorted(unknown)}; "
                         f"`lmgym agents NAME` lists the fields")
    return config_class(**values)


def config_docs(config_class) -> list[tuple[str, str, Any, str]]:
    """``(name, type, default, doc)`` per field of a config dataclass; the doc is the comment on
    the line that declares the field (in the class, or the nearest base class that has one)."""
    import inspect
    import io
    import tokenize

    comments: dict[str, str] = {}
    for klass in reversed(config_class.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        lines = inspect.getsource(klass)
        for token in tokenize.generate_tokens(io.StringIO(lines).readline):
            if token.type == tokenize.COMMENT:
                declared = token.line.split(":", 1)[0].strip()
                if declared.isidentifier():
                    comments[declared] = token.string.lstrip("#").strip()
    return [(f.name, f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type)),
             f.default if f.default is not dataclasses.MISSING else f.default_factory(), comments.get(f.name, ""))
            for f in dataclasses.fields(config_class)]


@dataclass
class LearnResult:
    curve: list[dict]  # one row per evaluation: counters, validation metrics, train metrics
    budget: dict
    config: dict
    wall_seconds: float
    eval_seconds: float = 0.0  # of wall_seconds, spent evaluating (validation and the final test)
    test: dict = dataclasses.field(default_factory=dict)  # the final test of the chosen checkpoint ({} if unfinished)
    chosen: dict = dataclasses.field(default_factory=dict)  # which checkpoint: samples, iteration, validation score

    @property
    def final(self) -> dict:
        """The last curve row (validation metrics) with the final test metrics."""
        return {**self.curve[-1], **self.test}


# --- the agent ----------------------------------------------------------------------------


class Agent:
    """Shared core. Subclasses set ``name`` and ``Config`` and implement :meth:`iteration`."""

    name = "agent"
    Config = AgentConfig
    uses_reference = False  # True: keep a frozen copy of the initial policy (KL anchors)
    # what `lmgym sweep` tunes: {field: ("log", lo, hi) | ("float", lo, hi) | ("int", lo, hi) | ("choice", [...])};
    # the built-in agents declare three fields each (equal tuning effort)
    search_space: dict = {}

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
        if distributed.is_distributed() and self.config.device == "auto":
            self.device = distributed.device()  # this rank's GPU
        self._set_seed(self.config.seed)
        self.model_path = model_path(self.config.model)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.policy = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32).to(self.device)
        if self.config.lora_rank > 0:
            self.policy = _with_lora(self.policy, self.config)
        self._checkpointed: list = []  # the policy's layers that recompute their activations in backward
        if self.config.gradient_checkpointing:
            self.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            self.policy.config.use_cache = False
            self._checkpointed = checkpointing_layers(self.policy)
        self.reference = None
        if self.uses_reference:
            if self.config.lora_rank > 0:
                self.reference = AdaptersOff(self.policy)  # the base weights the adapters sit on: no second copy
            else:
                self.reference = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32).to(self.device)
                self.reference.requires_grad_(False).eval()
        self._deferred: list = []  # micro-batches whose backward waits for the loss (micro_batch_tokens)
        self.build()  # agent-specific modules (e.g. a value head) before the optimizer sees them
        if self.config.optimizer == "adamw":
            # torch's fused kernel (what HF's Trainer, and so TRL, use by default): one pass over each
            # parameter instead of several; on this CPU 7.7x faster a step for SmolLM2-135M, the
            # same update to float rounding (2e-7 after 20 steps of unit-scale weights)
            fused = self.device.type in ("cpu", "cuda")
            self.optimizer = torch.optim.AdamW(self.trainable_parameters(), lr=self.config.lr, weight_decay=0.0, fused=fused)
        elif self.config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(self.trainable_parameters(), lr=self.config.lr, momentum=0.0)
        else:
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.config.optimizer!r}")
        warmup = max(1, self.config.warmup_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: min(1.0, (step + 1) / warmup))
        if self.config.sampler_dtype not in ("policy", "auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"sampler_dtype must be 'policy', 'auto', 'float32', 'bfloat16' or 'float16', "
                             f"got {self.config.sampler_dtype!r}")
        self.generator = generator if generator is not None else self._make_generator()
        if self.config.select_on not in ("reward", "ground_truth", "last"):
            raise ValueError(f"select_on must be 'reward', 'ground_truth' or 'last', got {self.config.select_on!r}")
        self.iteration_count = 0
        self.optimizer_steps = 0  # compute counters, logged with every iteration and evaluation
        self.trained_tokens = 0  # completion tokens in the forward passes behind each optimizer step
        self.train_flops = 0.0  # estimates (module docstring)
        self.generation_flops = 0.0
        self.train_seconds = 0.0  # wall time in iterations (evaluation excluded)
        self._pending_tokens = 0
        self._evaluating = False  # forward passes made to evaluate are not training compute
        self._parameters: dict[int, int] = {}
        self.curve: list[dict] = []
        self.train_log: list[dict] = []
        self.eval_seconds = 0.0
        self.best: dict | None = None  # the validation-chosen checkpoint: score, samples, iteration, policy state
        self._initial = None  # the initial weights, loaded when KL is measured for an agent without a reference
        self._evaluation_envs: dict[tuple, Any] = {}
        self.tracker = Tracker(None)  # replaced for the length of learn() when report_to asks for one

    # construction helpers ------------------------------------------------------------------

    def _make_generator(self):
        if self.config.backend == "hf":
            return make_generator(self.policy, backend="hf", tokenizer=self.tokenizer, share_prompts=self.config.share_prompts)
        # the policy is trained in float32 whatever the checkpoint's dtype: by default the engine holds
        # the same, so the samples and their log-probs are the trained policy's
        dtype = "float32" if self.config.sampler_dtype == "policy" else self.config.sampler_dtype
        return make_generator(self.model_path, backend=self.config.backend, dtype=dtype)

    @staticmethod
    def _set_seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def build(self) -> None:
        """Create agent-specific modules (called before the optimizer is built)."""

    def trainable_parameters(self) -> list:
        """Parameters (or parameter groups, policy first) the optimizer trains (with LoRA, the
        adapters only)."""
        return [p for p in self.policy.parameters() if p.requires_grad]

    def policy_weights(self) -> dict:
        """The policy as a plain model's state dict, what a sampler loads: with LoRA, every
        adapted weight merged (``W + alpha/r * B A``, computed aside, the policy untouched)."""
        if self.config.lora_rank <= 0:
            return self.policy.state_dict()
        return merged_lora_state_dict(self.policy)

    # sampling, scoring, updating -------------------------------------------------------------

    def iteration_seed(self) -> int:
        return self.config.seed * 1_000_003 + self.iteration_count

    def sample(self, envs, budget: Budget | None, prompts: int | None = None, n: int | None = None, prefix: str = "",
               suffix: str = "", generator=None, score=None, **sampling) -> RolloutBatch:
        """One rollout of ``prompts`` x ``n`` from the current policy (or from ``generator``, e.g. a
        frozen behaviour policy for off-policy agents), problems drawn from the env's split by a
        generator seeded with ``(seed, iteration)``; the last one shrunk to what is left of
        ``budget`` (:meth:`Budget.prompts_left`), and charged to it. ``score``: see
        :func:`lmgym.rollout.rollout`."""
        n = n or self.config.samples_per_prompt
        prompts = prompts or self.config.prompts_per_iteration
        if budget is not None:
            prompts = budget.take_prompts(prompts, n, self.queries_per_prompt())  # never overspends
        rng = np.random.default_rng([self.config.seed, self.iteration_count, 7])
        indices = rng.integers(envs.unwrapped.num_problems, size=prompts).tolist()
        options = dict(temperature=self.config.temperature, top_p=self.config.top_p, max_tokens=self.config.max_new_tokens)
        options.update(sampling)
        batch = rollout(envs, generator or self.generator, n=n, indices=indices, seed=self.iteration_seed(), budget=budget,
                        prefix=prefix, suffix=suffix, score=score, **options)
        tokens = sum(len(t.prompt_token_ids) + len(t.token_ids) for s in batch.samples for t in s.turns)
        self.generation_flops += 2.0 * self.parameter_count(self.policy) * tokens
        return batch

    def parameter_count(self, model) -> int:
        if id(model) not in self._parameters:
            self._parameters[id(model)] = sum(p.numel() for p in model.parameters())
        return self._parameters[id(model)]

    def queries_per_prompt(self) -> int | None:
        """Reward queries a rollout asks per prompt, when an agent asks fewer than it samples
        (the joint agent); None: one per sample (the rollout charges what it scored)."""
        return None

    def logprobs(self, model, prompt_ids, completion_ids, return_hidden: bool = False):
        """``completion_logprobs`` in micro-batches, concatenated (padded to a common length), in
        the rows' order. With ``share_prompts`` the rows are first put in prompt order (rows of
        one prompt side by side, so that they share a micro-batch and its prompt pass)."""
        training = model is self.policy and torch.is_grad_enabled()
        checkpointed = self._checkpointed if model is self.policy else []
        # a checkpointed layer drops the key/value cache (transformers), so no sharing through one
        share = self.config.share_prompts and not (training and checkpointed)
        order = _prompt_order(prompt_ids) if share else None
        if order is not None:
            prompt_ids, completion_ids = [prompt_ids[i] for i in order], [completion_ids[i] for i in order]
        pad_id = self.tokenizer.pad_token_id
        lengths = [len(p) + len(c) for p, c in zip(prompt_ids, completion_ids)]
        sharded = training and distributed.is_distributed()
        size = self.config.micro_batch_size
        if sharded:  # at least one micro-batch per rank
            size = max(1, min(size, -(-len(lengths) // distributed.world_size())))
        spans = micro_batches(lengths, size, self.config.micro_batch_tokens)
        shared = share and _takes_cache(model)  # what completion_logprobs will do, for the FLOP count
        span_tokens = [processed_tokens(prompt_ids[a:b], completion_ids[a:b], shared) for a, b in spans]
        if not self._evaluating:
            if training:  # these tokens will be trained on
                self._pending_tokens += sum(len(ids) for ids in completion_ids)
            self.train_flops += (6.0 if training else 2.0) * self.parameter_count(model) * sum(span_tokens)

        def forward(a, b):
            with layers_in_training_mode(checkpointed):
                return completion_logprobs(model, prompt_ids[a:b], completion_ids[a:b], pad_id, return_hidden, share)

        # Gradient accumulation for any loss: forward without a graph, hand the agent leaf
        # tensors, and after its loss's backward replay each micro-batch with a graph and push
        # the leaves' gradients through it (optimizer_step). One micro-batch's activations are
        # alive at a time, for one extra forward pass. Across processes (lmgym.distributed) each
        # rank runs and replays its own micro-batches and the outputs are all-gathered.
        deferred = training and (self.config.micro_batch_tokens > 0 or sharded)
        mine = set(range(distributed.rank(), len(spans), distributed.world_size())) if sharded else set(range(len(spans)))
        outputs: dict[int, tuple] = {}
        states: dict[int, Any] = {}
        for index, (a, b) in enumerate(spans):
            if index not in mine:
                continue
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16):
                if not deferred:
                    outputs[index] = forward(a, b)
                    continue
                states[index] = _rng_state(self.device)  # the replay must draw the same dropout masks
                with torch.no_grad():
                    outputs[index] = forward(a, b)
        if sharded:
            gathered = distributed.all_gather_objects({i: tuple(t.cpu() for t in out) for i, out in outputs.items()})
            outputs = {i: tuple(t.to(self.device) for t in out) for part in gathered for i, out in part.items()}
        chunks = []
        for index, (a, b) in enumerate(spans):
            if not deferred:
                chunks.append(outputs[index])
                continue
            leaves = tuple(t.detach().requires_grad_(t.is_floating_point() and k != 1) for k, t in enumerate(outputs[index]))
            if index in mine:
                self._deferred.append((lambda a=a, b=b: forward(a, b), leaves, states[index], span_tokens[index]))
            chunks.append(leaves)
        width = max(chunk[0].shape[1] for chunk in chunks)
        pad = lambda t: torch.nn.functional.pad(t, (0, 0) * (t.dim() - 2) + (0, width - t.shape[1]))
        joined = tuple(torch.cat([pad(chunk[k]) for chunk in chunks]) for k in range(len(chunks[0])))
        if order is None:
            return joined
        back = torch.argsort(torch.tensor(order, device=joined[0].device))  # the caller's row order
        return tuple(t[back] for t in joined)

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
        metrics = {"train/reward": float(batch.rewards.mean()),
                   "train/ground_truth": float(np.mean([s.info.get("ground_truth", s.reward) for s in batch.samples]))}
        if batch.n >= 2:
            metrics["train/reward_std_zero_share"] = vanishing_gradient_share(batch.grouped_rewards())
            shares = outcome_shares(correctness(batch))
            metrics.update({f"train/{name}_share": value for name, value in shares.items()})
        metrics.update(subset_metrics(batch, "train"))
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
        crowd out the policy's), step, schedule; returns the policy's pre-clip gradient norm. A
        ``loss`` without a graph (no row of the minibatch moved it, e.g. GRPO's zero-advantage rows)
        steps on zero gradients, what its backward would have left: AdamW's moments still decay and
        the schedule advances."""
        self.optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
        else:
            for group in self.optimizer.param_groups:
                for parameter in group["params"]:
                    parameter.grad = torch.zeros_like(parameter)
        self._replay_deferred()
        if distributed.is_distributed():  # each rank holds its micro-batches' share: the sum is the whole gradient
            distributed.all_reduce_gradients([p for p in self.policy.parameters() if p.requires_grad])
        norms = [torch.nn.utils.clip_grad_norm_(g["params"], self.config.max_grad_norm) for g in self.optimizer.param_groups]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer_steps += 1
        self.trained_tokens += self._pending_tokens
        self._pending_tokens = 0
        return float(norms[0])

    def _replay_deferred(self) -> None:
        """The backward of each deferred micro-batch (see :meth:`logprobs`): its forward again,
        with a graph, then the gradients the loss left on its output leaves pushed through."""
        deferred, self._deferred = self._deferred, []
        for forward, leaves, rng, tokens in deferred:
            wanted = [k for k, leaf in enumerate(leaves) if leaf.requires_grad and leaf.grad is not None]
            if not wanted:
                continue
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                _set_rng_state(self.device, rng)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16):
                    outputs = forward()
            torch.autograd.backward([outputs[k] for k in wanted], [leaves[k].grad for k in wanted])
            self.train_flops += 2.0 * self.parameter_count(self.policy) * tokens  # the recomputed forward

    def fit(self, examples: Sequence[tuple[list[int], list[int]]], epochs: int, minibatch_size: int,
            weights: Sequence[float] | None = None) -> float:
        """Supervised steps on ``(prompt_ids, completion_ids)`` pairs (ExIt, RC-RL, SFT): shuffled
        by a ``(seed, iteration)`` generator, optionally weighted per example; returns the mean loss."""
        rng = np.random.default_rng([self.config.seed, self.iteration_count, 13])
        losses = []
        for _ in range(epochs):
            order = rng.permutation(len(examples))
            for start in range(0, len(order), minibatch_size):
                chosen = order[start : start + minibatch_size]
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
            self.generator.load_weights(self.policy_weights())

    def iteration(self, envs, budget: Budget) -> dict:
        """One round of the algorithm: sample, update, sync. Returns metrics to log."""
        raise NotImplementedError

    def prompt_prefix(self) -> str:
        """Text put before every prompt when acting (return-conditioned agents override it)."""
        return ""

    def prompt_suffix(self) -> str:
        """Text put after every prompt, right before the completion, when acting."""
        return ""

    def conditioned_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        """The ids the agent acts on for ``prompts``: its prefix's, the prompt's and its
        suffix's, each tokenized on its own (:meth:`Generator.encode`)."""
        return self.generator.encode(prompts, prefix=self.prompt_prefix(), suffix=self.prompt_suffix())

    # acting and evaluating ---------------------------------------------------------------------

    def act(self, observations: Sequence[str], greedy: bool = True) -> list[str]:
        """Completions for raw observations (for a user's own env loop)."""
        generations = self.generator.generate(
            list(observations), prefix=self.prompt_prefix(), suffix=self.prompt_suffix(),
            temperature=0.0 if greedy else self.config.temperature,
            max_tokens=self.config.max_new_tokens,
            seed=self.iteration_seed(),
        )
        return [g.completions[0].text for g in generations]

    def evaluation_envs(self, env_id: str, env_kwargs: dict | None = None, k: int = 1, problems: int | None = None,
                        split: str = "validation"):
        """The vector env evaluation runs on: ``problems x k`` sub-envs on ``split`` (all of the
        split when ``problems`` is None or larger), built once per agent and reused."""
        key = (env_id, json.dumps(env_kwargs or {}, sort_keys=True, default=str), k, problems, split)
        if key not in self._evaluation_envs:
            size = problems or 1
            envs = gym.make_vec(env_id, num_envs=size * k, split=split, **(env_kwargs or {}))
            if problems is None or envs.unwrapped.num_problems < problems:  # all of the split, once
                envs = gym.make_vec(env_id, num_envs=envs.unwrapped.num_problems * k, split=split, **(env_kwargs or {}))
            self._evaluation_envs[key] = envs
        return self._evaluation_envs[key]

    def evaluate(self, env_id: str, env_kwargs: dict | None = None, problems: int | None = None,
                 split: str = "validation") -> dict:
        """Greedy mean reward and mean ground truth (``info["ground_truth"]``, the task's exact
        judge) on the first ``problems`` of ``split`` (default ``eval_problems`` of validation):
        the training rollout at temperature 0, on the agent's conditioned prompts. Keys are
        ``val/...`` or ``test/...``."""
        prefix = _prefix(split)
        envs = self.evaluation_envs(env_id, env_kwargs, 1, self._problems(problems, split), split)
        batch = self._evaluation_rollout(envs, 1, temperature=0.0)
        return {f"{prefix}/mean_reward": float(batch.rewards.mean()), f"{prefix}/ground_truth": float(ground_truths(batch).mean()),
                f"{prefix}/problems": batch.num_prompts, **subset_metrics(batch, prefix)}

    KL_PROBLEMS = 128

    def evaluate_samples(self, env_id: str, env_kwargs: dict | None = None, k: int = 4, problems: int | None = None,
                         split: str = "validation", kl: bool = True) -> dict:
        """``k`` samples per problem of ``split`` (at the training temperature), judged by the
        ground truth: pass@k (unbiased), maj@k over the verifier's canonical answers (when the
        task has answers), the sampled mean reward and ground truth, the shares of problems
        solved / stuck / mixed, the reward's zero-std share (vanishing gradients), and
        KL(policy || reference) per sequence (k1 estimate on the samples of the first
        ``KL_PROBLEMS`` problems; with ``kl=True``)."""
        prefix = _prefix(split)
        envs = self.evaluation_envs(env_id, env_kwargs, k, self._problems(problems, split), split)
        batch = self._evaluation_rollout(envs, k, temperature=self.config.temperature, top_p=self.config.top_p)
        rewards = batch.grouped_rewards()
        correct = correctness(batch)
        metrics = {
            f"{prefix}/pass@{k}": float(np.mean([pass_at_k(k, int(c.sum()), k) for c in correct])),
            f"{prefix}/sampled_mean_reward": float(rewards.mean()),
            f"{prefix}/sampled_ground_truth": float(ground_truths(batch).mean()),
        }
        answers = [s.info.get("canonical_answer") for s in batch.samples]
        if any(a is not None for a in answers):
            metrics[f"{prefix}/maj@{k}"] = float(np.mean([maj_at_k(answers[i * k : (i + 1) * k], correct[i], k)
                                                           for i in range(len(correct))]))
        if k >= 2:
            metrics[f"{prefix}/reward_std_zero_share"] = vanishing_gradient_share(rewards)
            metrics.update({f"{prefix}/{name}_share": value for name, value in outcome_shares(correct).items()})
        metrics.update(subset_metrics(batch, prefix, sampled=True))
        if kl:
            metrics[f"{prefix}/kl_to_reference"] = self._kl_to_reference(batch.samples[: self.KL_PROBLEMS * k])
        return metrics

    def _problems(self, problems: int | None, split: str) -> int | None:
        """How many problems an evaluation covers: as asked; else ``eval_problems`` on
        validation and ``test_problems`` (None: all) on test."""
        if problems is not None:
            return problems
        return self.config.eval_problems if split == "validation" else self.config.test_problems

    def _evaluation_rollout(self, envs, k: int, **sampling) -> RolloutBatch:
        return evaluation_rollout(envs, self.generator, problems=envs.unwrapped.num_envs // k, k=k,
                                  prefix=self.prompt_prefix(), suffix=self.prompt_suffix(),
                                  max_tokens=self.config.max_new_tokens, seed=self.iteration_seed(), **sampling)

    def _kl_to_reference(self, samples: list) -> float:
        reference = self.reference
        if reference is None:  # agents without a KL anchor: load the initial weights to measure drift
            if self._initial is None and self.config.lora_rank > 0:
                self._initial = AdaptersOff(self.policy)
            elif self._initial is None:
                from transformers import AutoModelForCausalLM

                self._initial = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32).to(self.device).eval()
            reference = self._initial
        prompt_ids = [s.prompt_token_ids for s in samples]
        completion_ids = [s.token_ids for s in samples]
        self._evaluating = True
        try:
            with torch.no_grad():
                logprobs, mask = self.logprobs(self.policy, prompt_ids, completion_ids)
                ref_logprobs, _ = self.logprobs(reference, prompt_ids, completion_ids)
        finally:
            self._evaluating = False
        return float(((logprobs - ref_logprobs) * mask).sum(1).mean())

    def evaluate_all(self, env_id: str, env_kwargs: dict | None = None, split: str = "validation") -> dict:
        """Greedy evaluation, plus ``eval_k`` samples per problem when ``eval_k > 1``: on the
        first ``eval_k_problems`` of validation along the curve (no KL), on every test problem
        (with KL) in the final test."""
        validation = split == "validation"
        problems = self._problems(None, split)
        metrics = self.evaluate(env_id, env_kwargs, problems, split)
        if self.config.eval_k > 1:
            sampled = min(problems, self.config.eval_k_problems) if validation else problems
            metrics.update(self.evaluate_samples(env_id, env_kwargs, self.config.eval_k, sampled, split, kl=not validation))
        return metrics

    def test(self, env_id: str, env_kwargs: dict | None = None) -> dict:
        """The final number: the validation-chosen checkpoint (:attr:`best`) evaluated once on
        the test split (``test_problems``, default all of it); the policy is restored after."""
        start = time.perf_counter()
        current = None
        if self.best is not None and self.best["iteration"] != self.iteration_count:
            current = {k: v.detach().to("cpu", copy=True) for k, v in self.policy.state_dict().items()}
            self.policy.load_state_dict(self.best["state"])
            self.sync_generator()
        try:
            metrics = self.evaluate_all(env_id, env_kwargs, split="test")
        finally:
            if current is not None:
                self.policy.load_state_dict(current)
                self.sync_generator()
        self.eval_seconds += time.perf_counter() - start
        return metrics

    # the loop -----------------------------------------------------------------------------------

    def learn(
        self,
        env_id: str,
        budget: Budget,
        run_dir: str | os.PathLike | None = None,
        env_kwargs: dict | None = None,
        progress: bool = True,
        stop_after: int | None = None,
        test: bool = True,
    ) -> LearnResult:
        """Train until ``budget`` is spent, evaluating on validation every ``eval_every``
        samples; then test the validation-chosen checkpoint once (``LearnResult.test``;
        ``test=False`` skips it, as a hyper-parameter sweep must).

        With ``run_dir``, a checkpoint is written atomically every ``checkpoint_seconds`` (and
        when the run stops) and an existing one is resumed. ``stop_after`` stops after that many iterations (this call),
        as an interruption would; the test is then not run. Metrics also go to ``report_to``.
        """
        env_kwargs = dict(env_kwargs or {})
        checkpoint = Path(run_dir) / "checkpoint.pt" if run_dir is not None else None
        if checkpoint is not None and checkpoint.is_file():
            state = torch.load(checkpoint, map_location=self.device, weights_only=False)  # read once
            if not self._set_aside_if_other_setup(checkpoint, state, budget):  # else this run starts fresh
                budget = self.load(checkpoint, state)
        self.tracker = self.make_tracker(run_dir)
        try:
            return self._learn(env_id, budget, env_kwargs, checkpoint, progress, stop_after, test)
        finally:
            self.tracker.close()
            self.tracker = Tracker(None)

    def _set_aside_if_other_setup(self, checkpoint: Path, state: dict, budget: Budget) -> bool:
        """A checkpoint resumes only the run it came from: the same agent config and the same
        budget limits. One from another setup (e.g. an earlier, larger budget in the same cell
        folder) would otherwise continue to *its* budget; it is renamed ``*.stale-<time>.pt``
        (nothing is deleted) and True is returned."""
        limits = ("max_samples", "max_tokens", "max_queries", "max_trained_tokens")
        saved = state.get("budget") or {}
        same = (state.get("agent") == self.name and _plain(state.get("config")) == _plain(dataclasses.asdict(self.config))
                and all(saved.get(k) == getattr(budget, k) for k in limits))
        if same:
            return False
        aside = checkpoint.with_name(f"{checkpoint.stem}.stale-{time.strftime('%Y%m%d-%H%M%S')}.pt")
        checkpoint.rename(aside)
        print(f"{checkpoint} is from another setup (config or budget differ): moved to {aside.name}, starting afresh",
              flush=True)
        return True

    def make_tracker(self, run_dir) -> Tracker:
        """The experiment tracker ``report_to`` asks for (a no-op for ``"none"``)."""
        cfg = self.config
        folder = cfg.logging_dir or (Path(run_dir) / "tensorboard" if run_dir is not None else None)
        report_to = cfg.report_to if distributed.is_main() else "none"  # one log, from rank 0
        return Tracker(report_to, folder, run_name=f"{self.name}-seed{cfg.seed}", config=dataclasses.asdict(cfg))

    def _learn(self, env_id, budget, env_kwargs, checkpoint, progress, stop_after, test) -> LearnResult:
        from tqdm.auto import tqdm

        envs = self.make_envs(env_id, env_kwargs)
        start = time.perf_counter()
        if not self.curve:
            self._evaluate_into_curve(env_id, env_kwargs, budget)
        bar = tqdm(total=budget.max_samples, initial=budget.samples, desc=f"{self.name} {env_id}", unit="sample", disable=not progress)
        done_here, saved = 0, time.perf_counter()
        while not budget.exhausted:
            before, started = budget.samples, time.perf_counter()
            try:
                metrics = self.iteration(envs, budget)
            except BudgetSpent:  # the budget closed before this iteration sampled anything
                if self.curve[-1]["samples"] != budget.samples:
                    self._evaluate_into_curve(env_id, env_kwargs, budget)
                if checkpoint is not None and distributed.is_main():
                    self.save(checkpoint, budget)
                break
            self.iteration_count += 1
            self.train_seconds += time.perf_counter() - started
            budget.trained_tokens = self.trained_tokens
            metrics.update(self.counters(budget))
            self.train_log.append(metrics)
            self.tracker.log(metrics, budget.samples)
            bar.update(budget.samples - before)
            bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in metrics.items() if k.startswith("train/")}, refresh=False)
            last_eval = self.curve[-1]["samples"]
            if budget.exhausted or (self.config.eval_every and budget.samples - last_eval >= self.config.eval_every):
                self._evaluate_into_curve(env_id, env_kwargs, budget)
            done_here += 1
            stopping = budget.exhausted or (stop_after is not None and done_here >= stop_after)
            if checkpoint is not None and distributed.is_main() and (
                    stopping or time.perf_counter() - saved >= self.config.checkpoint_seconds):
                self.save(checkpoint, budget)
                saved = time.perf_counter()
            if stopping:
                break
        bar.close()
        final = self.test(env_id, env_kwargs) if test and budget.exhausted else {}
        self.tracker.log(final, budget.samples)
        chosen = {k: v for k, v in (self.best or {}).items() if k != "state"}
        return LearnResult(self.curve, budget.state_dict(), dataclasses.asdict(self.config), time.perf_counter() - start,
                           self.eval_seconds, final, chosen)

    def counters(self, budget: Budget) -> dict:
        """What has been spent so far, logged beside every metric so that curves line up:
        generated samples and tokens, reward queries, iterations, optimizer steps, trained
        tokens, FLOP estimates (training, generation) and training wall time."""
        return {"samples": budget.samples, "tokens": budget.tokens, "queries": budget.queries,
                "iteration": self.iteration_count, "optimizer_steps": self.optimizer_steps,
                "trained_tokens": self.trained_tokens, "train_flops": self.train_flops,
                "generation_flops": self.generation_flops, "train_seconds": round(self.train_seconds, 3)}

    def make_envs(self, env_id: str, env_kwargs: dict):
        return gym.make_vec(env_id, num_envs=self.config.prompts_per_iteration * self.config.samples_per_prompt, **env_kwargs)

    def _evaluate_into_curve(self, env_id, env_kwargs, budget: Budget) -> None:
        """Evaluate on validation, log the row, and keep the policy if it is the best so far
        (ties keep the earlier checkpoint)."""
        start = time.perf_counter()
        row = self.counters(budget)
        row.update(self.evaluate_all(env_id, env_kwargs, split="validation"))
        self.eval_seconds += time.perf_counter() - start
        row["eval_seconds"] = round(self.eval_seconds, 3)
        recent = [m for m in self.train_log if m["iteration"] > (self.curve[-1]["iteration"] if self.curve else 0)]
        for key in {k for m in recent for k in m if k.startswith("train/")}:
            row[key] = float(np.mean([m[key] for m in recent if key in m]))
        self.curve.append(row)
        self.tracker.log({k: v for k, v in row.items() if k.startswith("val/") or k == "eval_seconds"}, row["samples"])
        score = row["val/ground_truth" if self.config.select_on == "ground_truth" else "val/mean_reward"]
        if self.best is None or self.config.select_on == "last" or score > self.best["score"]:
            self.best = {"score": score, "samples": row["samples"], "iteration": row["iteration"],
                         "state": {k: v.detach().to("cpu", copy=True) for k, v in self.policy.state_dict().items()}}

    def save_model(self, path: str | os.PathLike, which: str = "chosen") -> Path:
        """The policy as a plain Hugging Face model folder, what ``model=`` (and ``lmgym bench
        --model``) takes, so another agent can start from it (e.g. SFT, then RL): the
        validation-chosen checkpoint (``which="chosen"``, the one the test scored) or the
        current weights (``"last"``); LoRA adapters merged. Written atomically, with
        ``lmgym_agent.json`` saying which agent, config and checkpoint it is."""
        from transformers import AutoModelForCausalLM

        from lmgym.io import atomic_dir

        if which not in ("chosen", "last"):
            raise ValueError(f"which must be 'chosen' or 'last', got {which!r}")
        chosen = self.best if which == "chosen" and self.best is not None else None
        current = None
        if chosen is not None and chosen["iteration"] != self.iteration_count:
            current = {k: v.detach().to("cpu", copy=True) for k, v in self.policy.state_dict().items()}
            self.policy.load_state_dict(chosen["state"])
        try:
            weights = {k: v.detach().to("cpu") for k, v in self.policy_weights().items()}
        finally:
            if current is not None:
                self.policy.load_state_dict(current)
        plain = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32)  # the architecture
        plain.load_state_dict(weights)
        record = {"agent": self.name, "config": dataclasses.asdict(self.config), "which": which,
                  "iteration": chosen["iteration"] if chosen is not None else self.iteration_count,
                  "samples": chosen["samples"] if chosen is not None else None,
                  "optimizer_steps": self.optimizer_steps, "trained_tokens": self.trained_tokens}
        with atomic_dir(path) as staging:
            plain.save_pretrained(staging)
            self.tokenizer.save_pretrained(staging)
            (staging / "lmgym_agent.json").write_text(json.dumps(record, indent=2, default=str))
        return Path(path)

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
            "optimizer_steps": self.optimizer_steps,
            "trained_tokens": self.trained_tokens,
            "compute": {"train_flops": self.train_flops, "generation_flops": self.generation_flops,
                        "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds},
            "best": self.best,
            "curve": self.curve,
            "train_log": self.train_log,
            "budget": budget.state_dict() if budget is not None else None,
            "extra": self.extra_state(),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def load(self, path: str | os.PathLike, state: dict | None = None) -> Budget | None:
        """Restore a checkpoint written by :meth:`save` (``state``: its contents, already read);
        returns its budget."""
        if state is None:
            state = torch.load(path, map_location=self.device, weights_only=False)
        if state["agent"] != self.name:
            raise ValueError(f"{path} is a checkpoint of {state['agent']!r}, not {self.name!r}")
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration_count, self.curve, self.train_log = state["iteration"], state["curve"], state["train_log"]
        self.optimizer_steps, self.trained_tokens = state.get("optimizer_steps", 0), state.get("trained_tokens", 0)
        compute = state.get("compute", {})
        self.train_flops, self.generation_flops = compute.get("train_flops", 0.0), compute.get("generation_flops", 0.0)
        self.train_seconds, self.eval_seconds = compute.get("train_seconds", 0.0), compute.get("eval_seconds", 0.0)
        self.best = state.get("best")
        self.load_extra_state(state["extra"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        self.sync_generator()
        return Budget.from_state_dict(state["budget"]) if state["budget"] is not None else None


def _rng_state(device: torch.device):
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(device: torch.device, state) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def group_pairs(group_sizes: list[int]) -> list[tuple[int, int]]:
    """Every pair (i, j), i < j, of samples in the same group, as indices into the flat batch."""
    pairs, start = [], 0
    for size in group_sizes:
        pairs.extend(itertools.combinations(range(start, start + size), 2))
        start += size
    return pairs


def random_pairs(group_sizes: list[int], rng: np.random.Generator, limit: int | None = None) -> list[tuple[int, int]]:
    """Disjoint random pairs within each group (a group of n gives n // 2; an odd one out waits
    for another draw), as indices into the flat batch; at most ``limit`` of them, drawn uniformly.
    Unlike :func:`group_pairs` a large group (one prompt with many scored samples, as in the
    paper's bandit) costs pairs linear in its size, and each sample is in one pair, so the
    pairs are independent draws of (y, y') from the behaviour policy."""
    pairs, start = [], 0
    for size in group_sizes:
        order = start + rng.permutation(size)
        pairs.extend((int(order[i]), int(order[i + 1])) for i in range(0, size - 1, 2))
        start += size
    if limit is not None and len(pairs) > limit:
        pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), size=limit, replace=False))]
    return pairs


def _prompt_order(prompt_ids: Sequence[Sequence[int]]) -> list[int] | None:
    """Row indices with rows of the same prompt side by side (prompts in order of first
    appearance, rows of one prompt in their order); None when they already are."""
    first: dict[tuple, int] = {}
    rank = [first.setdefault(tuple(p), len(first)) for p in prompt_ids]
    order = sorted(range(len(rank)), key=rank.__getitem__)
    return None if all(r == i for i, r in enumerate(order)) else order


def micro_batches(lengths: Sequence[int], max_sequences: int, max_tokens: int = 0) -> list[tuple[int, int]]:
    """Consecutive ``(start, end)`` spans of at most ``max_sequences`` sequences and, when
    ``max_tokens > 0``, at most ``max_tokens`` padded tokens (span size x its longest sequence;
    a single longer sequence is a span of its own)."""
    spans, start, longest = [], 0, 0
    for i, length in enumerate(lengths):
        wider = max(longest, length)
        if i > start and (i - start >= max_sequences or (max_tokens > 0 and wider * (i - start + 1) > max_tokens)):
            spans.append((start, i))
            start, wider = i, length
        longest = wider
    if start < len(lengths):
        spans.append((start, len(lengths)))
    return spans


class AdaptersOff:
    """The base model under a LoRA policy: the policy itself with its adapters switched off
    (``peft``'s ``disable_adapter``) for every forward pass and generation, used as the
    reference (and a behaviour policy) without a second copy of the weights. Never trained."""

    def __init__(self, policy):
        self.policy = policy

    def get_base_model(self):  # what does the work (the peft model's base), as peft's wrappers answer
        return self.policy

    @property
    def config(self):
        return self.policy.config

    @property
    def training(self) -> bool:
        return False

    def parameters(self):
        return self.policy.parameters()

    def train(self, mode: bool = True):
        return self

    def eval(self):
        return self

    def requires_grad_(self, requires_grad: bool = True):
        return self

    def __call__(self, *args, **kwargs):
        with self.policy.disable_adapter(), torch.no_grad():
            return self.policy(*args, **kwargs)

    def generate(self, *args, **kwargs):
        was_training = self.policy.training
        self.policy.eval()
        try:
            with self.policy.disable_adapter():
                return self.policy.generate(*args, **kwargs)
        finally:
            self.policy.train(was_training)


def _with_lora(model, config: AgentConfig):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ImportError("lora_rank > 0 needs peft: pip install 'lmgym[train]'") from None
    targets = config.lora_target_modules
    targets = targets if targets == "all-linear" else [name.strip() for name in targets.split(",") if name.strip()]
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM", bias="none")
    return get_peft_model(model, lora)


def merged_lora_state_dict(policy) -> dict:
    """A peft LoRA model's weights as the base model's state dict with the adapters merged in,
    computed beside the model (merge_adapter/unmerge_adapter would add and subtract the update
    in place every sync, and the float rounding would drift the frozen base weights)."""
    from peft.tuners.lora import LoraLayer

    base = policy.get_base_model()
    deltas = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer) and module.active_adapters:
            with torch.no_grad():
                delta = sum(module.get_delta_weight(adapter) for adapter in module.active_adapters
                            if adapter in module.lora_A)
            deltas[f"{name}.base_layer.weight"] = (f"{name}.weight", delta)
    merged = {}
    for key, value in base.state_dict().items():
        if "lora_" in key:
            continue
        if key in deltas:
            plain, delta = deltas[key]
            merged[plain] = value + delta.to(value.dtype)
        else:
            merged[key.replace(".base_layer.", ".")] = value
    return merged


def _prefix(split: str) -> str:
    return {"validation": "val", "test": "test"}.get(split, split)


def _plain(value):
    """A config as JSON would hold it (tuples as lists), for comparing configs."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def ground_truths(batch: RolloutBatch) -> np.ndarray:
    """Each sample's ground truth (``info["ground_truth"]``; the reward where a task sets none)."""
    return np.array([s.info.get("ground_truth", s.reward) for s in batch.samples], dtype=np.float64)


def correctness(batch: RolloutBatch) -> np.ndarray:
    """``(num_prompts, n)`` booleans: a sample is correct when its ground truth reaches 1."""
    return (ground_truths(batch) >= 1.0).reshape(batch.num_prompts, batch.n)


def subset_metrics(batch: RolloutBatch, prefix: str, sampled: bool = False) -> dict:
    """Per named subset of the task's problems (``info["subset"]``, e.g. Arithmetic's
    ``relabel``): ``<prefix>/ground_truth[<subset>]`` (``sampled_ground_truth`` with
    ``sampled``), the subset's share of prompts, and with groups of n >= 2 its reward zero-std
    share and solved / stuck / mixed shares. Empty when the task names no subsets."""
    subsets = [batch.samples[i * batch.n].info.get("subset") for i in range(batch.num_prompts)]
    if not any(subsets):
        return {}
    truth = ground_truths(batch).reshape(batch.num_prompts, batch.n)
    rewards, correct = batch.grouped_rewards(), correctness(batch)
    metrics = {}
    for name in sorted({s for s in subsets if s}):
        rows = np.array([s == name for s in subsets])
        metrics[f"{prefix}/{'sampled_' if sampled else ''}ground_truth[{name}]"] = float(truth[rows].mean())
        metrics[f"{prefix}/prompt_share[{name}]"] = float(rows.mean())
        if batch.n >= 2:
            metrics[f"{prefix}/reward_std_zero_share[{name}]"] = vanishing_gradient_share(rewards[rows])
            for outcome, value in outcome_shares(correct[rows]).items():
                metrics[f"{prefix}/{outcome}_share[{name}]"] = value
    return metrics


@dataclass
class BasePolicyConfig(AgentConfig):
    pass


class BasePolicy(Agent):
    """The untrained base policy: the baseline every agent must beat. ``learn`` spends no
    budget and only evaluates."""

    name = "base"
    Config = BasePolicyConfig

    def learn(self, env_id, budget, run_dir=None, env_kwargs=None, progress=True, stop_after=None, test=True) -> LearnResult:
        start = time.perf_counter()
        env_kwargs = dict(env_kwargs or {})
        self.tracker = self.make_tracker(run_dir)
        try:
            if not self.curve:
                self._evaluate_into_curve(env_id, env_kwargs, budget)
            final = self.test(env_id, env_kwargs) if test else {}
            self.tracker.log(final, budget.samples)
        finally:
            self.tracker.close()
            self.tracker = Tracker(None)
        chosen = {k: v for k, v in self.best.items() if k != "state"}
        return LearnResult(self.curve, budget.state_dict(), dataclasses.asdict(self.config), time.perf_counter() - start,
                           self.eval_seconds, final, chosen)


