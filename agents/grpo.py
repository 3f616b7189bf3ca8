"""GRPO (Shao et al. 2024) and RLOO (Ahmadian et al. 2024): critic-free policy gradients whose
baseline is the other samples of the same prompt.

For the n samples of a prompt with rewards r_1..r_n:

    GRPO: A_i = (r_i - mean(r)) / (std(r) + eps)      (``scale_rewards=False``: r_i - mean(r))
    RLOO: A_i = r_i - mean_{j != i}(r_j)               (leave-one-out; unbiased)

Every token of sample i gets A_i; the loss is PPO's clipped surrogate against the log-probs the
batch was sampled with (one epoch of one minibatch is plain REINFORCE with that baseline), plus
``beta`` times the k3 estimate of KL(pi || pi_ref) per token (GRPO's regulariser; 0 turns it
off and skips the reference model). ``loss_aggregation="sequence"`` averages over each
sequence's tokens, then over sequences (the GRPO paper); ``"token"`` averages over all tokens
of the batch (DAPO; long completions weigh more).

Logged: train/reward, train/reward_std_zero_share, losses/policy, losses/kl, losses/clipfrac.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.core import Agent, AgentConfig, clip_fraction, kl_penalty, masked_mean
from lmgym.rollout import Budget


def group_advantages(rewards: torch.Tensor, estimator: str = "grpo", scale_rewards: bool = True, eps: float = 1e-4):
    """``rewards`` (prompts, n) -> advantages of the same shape."""
    n = rewards.shape[1]
    if estimator == "rloo":
        if n < 2:
            raise ValueError("RLOO needs at least 2 samples per prompt")
        return rewards - (rewards.sum(1, keepdim=True) - rewards) / (n - 1)
    if estimator != "grpo":
        raise ValueError(f"unknown advantage estimator {estimator!r}: 'grpo' or 'rloo'")
    centered = rewards - rewards.mean(1, keepdim=True)
    if not scale_rewards:
        return centered
    return centered / (rewards.std(1, keepdim=True, unbiased=n > 1) + eps)


def clipped_policy_loss(logprobs, old_logprobs, advantages, mask, clip_range: float, aggregation: str = "sequence"):
    """PPO's clipped surrogate with one advantage per sequence: ``advantages`` is ``(batch,)``."""
    ratio = torch.exp(logprobs - old_logprobs)
    per_token = torch.maximum(-advantages[:, None] * ratio,
                              -advantages[:, None] * torch.clamp(ratio, 1 - clip_range, 1 + clip_range))
    if aggregation == "sequence":
        loss = masked_mean(per_token, mask, dim=1).mean()
    elif aggregation == "token":
        loss = masked_mean(per_token, mask)
    else:
        raise ValueError(f"loss_aggregation must be 'sequence' or 'token', got {aggregation!r}")
    return loss, clip_fraction(ratio, mask, clip_range)


@dataclass
class GRPOConfig(AgentConfig):
    lr: float = 6.360037677240247e-06  # AdamW learning rate of the policy (swept: sweeps/lmgym__Arithmetic-v0/grpo.json)
    warmup_steps: int = 5
    prompts_per_iteration: int = 64
    samples_per_prompt: int = 4
    advantage: str = "grpo"  # "grpo" | "rloo": the group baseline (see the module docstring)
    scale_rewards: bool = True  # GRPO: divide by the group's reward std
    beta: float = 0.0  # KL(pi || pi_ref) coefficient (k3 per token); 0: no reference model (swept: sweeps/lmgym__Arithmetic-v0/grpo.json)
    clip_range: float = 0.2  # epsilon of the clipped surrogate
    epochs: int = 1  # passes over each iteration's rollout (swept: sweeps/lmgym__Arithmetic-v0/grpo.json)
    minibatch_size: int = 256  # sequences per optimizer step (256: the whole default rollout)
    loss_aggregation: str = "sequence"  # "sequence": per-sequence token mean, then batch mean; "token": all tokens
    subset_grad_norms: bool = False  # log the policy-gradient norm of each named subset of problems (costs a backward each)
    # With one optimizer step per rollout (1 epoch, one minibatch) the policy has not moved since
    # sampling, so the old log-probs are the training pass's own, detached: no separate no-grad pass.
    recompute_old_logprobs: bool = False  # True: recompute the old log-probs in a separate no-grad pass anyway

    def __post_init__(self):
        if self.advantage not in ("grpo", "rloo"):
            raise ValueError(f"advantage must be 'grpo' or 'rloo', got {self.advantage!r}")
        if self.samples_per_prompt < 2:
            raise ValueError("group baselines need samples_per_prompt >= 2")


class GRPO(Agent):
    name = "grpo"
    Config = GRPOConfig
    search_space = {"lr": ("log", 3e-6, 3e-4), "beta": ("choice", [0.0, 0.01, 0.05]), "epochs": ("choice", [1, 2])}  # lmgym sweep (sweeps/)

    @property
    def uses_reference(self) -> bool:  # the reference model is loaded only when the KL term is on
        return self.config.beta > 0

    def iteration(self, envs, budget: Budget) -> dict:
        cfg = self.config
        batch = self.sample(envs, budget)
        rewards = torch.tensor(batch.grouped_rewards(), dtype=torch.float32)
        advantages = group_advantages(rewards, cfg.advantage, cfg.scale_rewards).flatten().to(self.device)
        prompt_ids = [s.prompt_token_ids for s in batch.samples]
        completion_ids = [s.token_ids for s in batch.samples]
        one_step = cfg.epochs == 1 and cfg.minibatch_size >= len(batch.samples) and not cfg.recompute_old_logprobs
        with torch.no_grad():
            old_logprobs, mask = (None, None) if one_step else self.logprobs(self.policy, prompt_ids, completion_ids)
            ref_logprobs = self.logprobs(self.reference, prompt_ids, completion_ids)[0] if cfg.beta > 0 else None
        rng = np.random.default_rng([cfg.seed, self.iteration_count, 23])
        stats = {"losses/policy": [], "losses/kl": [], "losses/clipfrac": []}
        for _ in range(cfg.epochs):
            order = rng.permutation(len(batch.samples))
            for start in range(0, len(order), cfg.minibatch_size):
                rows = order[start : start + cfg.minibatch_size].tolist()
                logprobs, rows_mask = self.logprobs(self.policy, [prompt_ids[i] for i in rows], [completion_ids[i] for i in rows])
                width = logprobs.shape[1]
                if one_step:  # the policy the rollout was sampled from: its log-probs are these
                    old_logprobs, mask = torch.empty_like(logprobs, requires_grad=False), torch.empty_like(rows_mask)
                    old_logprobs[rows], mask[rows] = logprobs.detach(), rows_mask
                sub_mask, sub_old = mask[rows, :width], old_logprobs[rows, :width]
                loss, clipfrac = clipped_policy_loss(logprobs, sub_old, advantages[rows], sub_mask, cfg.clip_range,
                                                     cfg.loss_aggregation)
                if cfg.subset_grad_norms and start == 0 and not stats["losses/policy"]:
                    stats.update(self.subset_gradient_norms(batch, rows, logprobs, sub_old, advantages[rows], sub_mask))
                kl = masked_mean(kl_penalty(logprobs, ref_logprobs[rows, :width], "k3"), sub_mask) if cfg.beta > 0 else torch.zeros(())
                self.optimizer_step(loss + cfg.beta * kl)
                stats["losses/policy"].append(loss.item())
                stats["losses/kl"].append(kl.item())
                stats["losses/clipfrac"].append(clipfrac)
        self.sync_generator()
        return {**self.batch_metrics(batch), **{key: float(np.mean(values)) for key, values in stats.items()},
                "sampler/logprob_mismatch": self.sampler_mismatch(batch, old_logprobs, mask)}

    def subset_gradient_norms(self, batch, rows, logprobs, old_logprobs, advantages, mask) -> dict:
        """``train/grad_norm[<subset>]``: the norm of the part of the minibatch's policy-gradient
        loss that comes from each named subset's samples (the loss is linear in the advantages,
        so that part is the loss with every other sample's advantage set to 0), before clipping;
        the KL term is left out. Razin et al.'s quantity: ~0 for a subset whose rewards do not vary."""
        subsets = [batch.samples[i].info.get("subset") for i in rows]
        params = [p for p in self.policy.parameters() if p.requires_grad]
        norms = {}
        for name in sorted({s for s in subsets if s}):
            keep = torch.tensor([s == name for s in subsets], dtype=advantages.dtype, device=advantages.device)
            part, _ = clipped_policy_loss(logprobs, old_logprobs, advantages * keep, mask, self.config.clip_range,
                                          self.config.loss_aggregation)
            grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
            norms[f"train/grad_norm[{name}]"] = [float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)))]
        return norms


@dataclass
class RLOOConfig(GRPOConfig):
    epochs: int = 1  # passes over each iteration's rollout (swept: sweeps/lmgym__Arithmetic-v0/rloo.json)
    beta: float = 0.01  # KL(pi || pi_ref) coefficient (k3 per token); 0: no reference model (swept: sweeps/lmgym__Arithmetic-v0/rloo.json)
    lr: float = 4.852669843373437e-06  # AdamW learning rate of the policy (swept: sweeps/lmgym__Arithmetic-v0/rloo.json)
    advantage: str = "rloo"
    scale_rewards: bool = False


class RLOO(GRPO):
    """GRPO's loop with the leave-one-out baseline and no std scaling (Ahmadian et al. 2024)."""

    name = "rloo"
    Config = RLOOConfig
