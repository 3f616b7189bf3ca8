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

Logged: train/reward, train/reward_std_zero_share, losses/policy, losses/kl, losses/clipfrac (over the rows
trained on), train/trained_row_share (the rows with an advantage when zero-advantage rows are skipped, else 1).
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


def clipped_policy_loss(logprobs, old_logprobs, advantages, mask, clip_range: float, aggregation: str = "sequence",
                        total: float | None = None):
    """PPO's clipped surrogate with one advantage per sequence: ``advantages`` is ``(batch,)``.

    ``total``: what the mean divides by, when these rows are part of a larger minibatch whose
    other rows add exactly 0 (their advantage is 0): its sequence count (``"sequence"``) or token
    count (``"token"``). Default: these rows' own."""
    ratio = torch.exp(logprobs - old_logprobs)
    per_token = torch.maximum(-advantages[:, None] * ratio,
                              -advantages[:, None] * torch.clamp(ratio, 1 - clip_range, 1 + clip_range))
    if aggregation == "sequence":
        per_sequence = masked_mean(per_token, mask, dim=1)
        loss = per_sequence.mean() if total is None else per_sequence.sum() / total
    elif aggregation == "token":
        loss = masked_mean(per_token, mask) if total is None else (per_token * mask.to(per_token.dtype)).sum() / max(total, 1)
    else:
        raise ValueError(f"loss_aggregation must be 'sequence' or 'token', got {aggregation!r}")
    return loss, clip_fraction(ratio, mask, clip_range)


def zero_subset_norms(batch, indices) -> dict:
    """``train/grad_norm[<subset>]`` = 0.0 for each named subset among these samples: the exact
    value for a subset none of whose samples has an advantage."""
    return {f"train/grad_norm[{name}]": [0.0] for name in {batch.samples[i].info.get("subset") for i in indices} if name}


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
    # Without the KL term (beta 0) a sample whose advantage is 0 (every sample of a group scored
    # the same) adds exactly 0 to the loss and its gradient, whatever its log-probs: such rows get
    # no forward or backward pass, and the loss keeps dividing by the whole minibatch, so the
    # update is the same to float rounding. Where no row of a minibatch carries an advantage the
    # optimizer still steps, on zero gradients, as it would have.
    skip_zero_advantage: bool = True  # False: run every row through the training passes anyway

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
        # the rows the update depends on: all, or (beta 0) those with an advantage (see GRPOConfig)
        skip = cfg.skip_zero_advantage and cfg.beta == 0
        carries = (advantages != 0).tolist() if skip else [True] * len(batch.samples)
        trained = [i for i, keep in enumerate(carries) if keep]
        one_step = cfg.epochs == 1 and cfg.minibatch_size >= len(batch.samples) and not cfg.recompute_old_logprobs
        # old log-probs and their mask, per row of the batch; rows never trained on stay masked out
        width = max(max(len(c) for c in completion_ids), 1)
        old_logprobs = torch.zeros(len(batch.samples), width, device=self.device)
        mask = torch.zeros(len(batch.samples), width, device=self.device)
        ref_logprobs = None
        with torch.no_grad():
            if not one_step and trained:
                values, values_mask = self.logprobs(self.policy, [prompt_ids[i] for i in trained], [completion_ids[i] for i in trained])
                old_logprobs[trained, : values.shape[1]], mask[trained, : values.shape[1]] = values, values_mask
            if cfg.beta > 0:
                ref_logprobs = self.logprobs(self.reference, prompt_ids, completion_ids)[0]
        rng = np.random.default_rng([cfg.seed, self.iteration_count, 23])
        stats = {"losses/policy": [], "losses/kl": [], "losses/clipfrac": []}
        for _ in range(cfg.epochs):
            order = rng.permutation(len(batch.samples))
            for start in range(0, len(order), cfg.minibatch_size):
                minibatch = order[start : start + cfg.minibatch_size].tolist()
                rows = [i for i in minibatch if carries[i]]
                total = None  # when skipping, what the loss divides by: the whole minibatch's sequences or tokens
                if skip:
                    total = len(minibatch) if cfg.loss_aggregation == "sequence" else sum(len(completion_ids[i]) for i in minibatch)
                if not rows:  # nothing here moves the loss: a step on zero gradients, as the full pass would give
                    if cfg.subset_grad_norms and start == 0 and not stats["losses/policy"]:
                        stats.update(zero_subset_norms(batch, minibatch))
                    self.optimizer_step(torch.zeros((), device=self.device))
                    stats["losses/policy"].append(0.0)
                    stats["losses/kl"].append(0.0)
                    continue
                logprobs, rows_mask = self.logprobs(self.policy, [prompt_ids[i] for i in rows], [completion_ids[i] for i in rows])
                span = logprobs.shape[1]
                if one_step:  # the policy the rollout was sampled from: its log-probs are these
                    old_logprobs[rows, :span], mask[rows, :span] = logprobs.detach(), rows_mask
                sub_mask, sub_old = mask[rows, :span], old_logprobs[rows, :span]
                loss, clipfrac = clipped_policy_loss(logprobs, sub_old, advantages[rows], sub_mask, cfg.clip_range,
                                                     cfg.loss_aggregation, total=total)
                if cfg.subset_grad_norms and start == 0 and not stats["losses/policy"]:
                    stats.update(self.subset_gradient_norms(batch, rows, logprobs, sub_old, advantages[rows], sub_mask,
                                                            everyone=minibatch, total=total))
                kl = masked_mean(kl_penalty(logprobs, ref_logprobs[rows, :span], "k3"), sub_mask) if cfg.beta > 0 else torch.zeros(())
                self.optimizer_step(loss + cfg.beta * kl)
                stats["losses/policy"].append(loss.item())
                stats["losses/kl"].append(kl.item())
                stats["losses/clipfrac"].append(clipfrac)
        self.sync_generator()
        metrics = {**self.batch_metrics(batch), **{key: float(np.mean(values)) for key, values in stats.items() if values},
                   "train/trained_row_share": len(trained) / len(batch.samples)}
        if trained:  # the sampler's log-probs against the trainer's, on the rows the trainer ran
            metrics["sampler/logprob_mismatch"] = self.sampler_mismatch(batch, old_logprobs, mask)
        return metrics

    def subset_gradient_norms(self, batch, rows, logprobs, old_logprobs, advantages, mask, everyone=None,
                              total=None) -> dict:
        """``train/grad_norm[<subset>]``: the norm of the part of the minibatch's policy-gradient
        loss that comes from each named subset's samples (the loss is linear in the advantages,
        so that part is the loss with every other sample's advantage set to 0), before clipping;
        the KL term is left out. Razin et al.'s quantity: ~0 for a subset whose rewards do not vary.
        ``everyone``: the whole minibatch when ``rows`` are only those with an advantage (the
        others' part is exactly 0: a subset with no row here gets 0.0); ``total`` as in the loss."""
        subsets = [batch.samples[i].info.get("subset") for i in rows]
        params = [p for p in self.policy.parameters() if p.requires_grad]
        norms = zero_subset_norms(batch, everyone or rows)  # overwritten below for the subsets trained on
        for name in sorted({s for s in subsets if s}):
            keep = torch.tensor([s == name for s in subsets], dtype=advantages.dtype, device=advantages.device)
            part, _ = clipped_policy_loss(logprobs, old_logprobs, advantages * keep, mask, self.config.clip_range,
                                          self.config.loss_aggregation, total=total)
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
