"""PPO for language models, token level (Schulman et al. 2017; Ziegler et al. 2019), as compared
with Expert Iteration and RC-RL in Havrilla et al. 2024 (../shared/PAPERS.md, paper 1).

Each iteration samples ``prompts_per_iteration x samples_per_prompt`` completions, turns them
into a token MDP (sparse sequence reward on the last token, or the env's dense step rewards on
the tokens that complete each step, minus a per-token KL penalty to the frozen reference),
estimates advantages with GAE from a value head on the policy's trunk, and takes
clipped-surrogate steps on minibatches of ``minibatch_size`` sequences for ``epochs`` passes.

Logged: train/reward, train/reward_std_zero_share, train/kl, losses/policy, losses/value, losses/approx_kl, losses/clipfrac,
sampler/logprob_mismatch (sampler vs trainer log-probs of the same tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.core import Agent, AgentConfig, clip_fraction, kl_penalty, masked_mean, masked_whiten
from lmgym.rollout import Budget


@dataclass
class PPOConfig(AgentConfig):
    lr: float = 4.801664357791839e-06  # AdamW learning rate of the policy (swept: sweeps/lmgym__Arithmetic-v0/ppo.json)
    warmup_steps: int = 5
    prompts_per_iteration: int = 64
    samples_per_prompt: int = 4
    epochs: int = 2  # passes over each iteration's rollout (swept: sweeps/lmgym__Arithmetic-v0/ppo.json)
    minibatch_size: int = 128  # sequences per optimizer step
    clip_range: float = 0.2  # epsilon in min(r A, clip(r, 1-eps, 1+eps) A)
    clip_range_value: float = 0.2  # value predictions move at most this far from the rollout's
    vf_coef: float = 0.5  # weight of the value loss in the total loss
    value_lr: float = 1e-3  # the value head's own learning rate: it starts from zero and must catch up fast
    gamma: float = 1.0  # discount per token
    lam: float = 1.0  # GAE lambda: 1 = Monte-Carlo returns (the linear value head is a weak critic)
    kl_coef: float = 0.00965570194405943  # beta in r_t = -beta (log pi - log pi_ref) (+ the task reward) (swept: sweeps/lmgym__Arithmetic-v0/ppo.json)
    adaptive_kl: bool = False  # Ziegler et al.'s controller: move beta towards target_kl
    target_kl: float = 1.0  # nats per sequence, for the adaptive controller
    kl_horizon: int = 10_000  # samples, for the adaptive controller
    whiten_rewards: bool = False  # normalise sequence rewards over the batch before GAE
    value_grad_to_trunk: bool = False  # let the value loss train the trunk (False: early, noisy value gradients cannot hurt the LM)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation over right-padded token sequences (Schulman et al. 2016).

    delta_t = r_t + gamma V(s_{t+1}) - V(s_t);  A_t = delta_t + gamma lam A_{t+1}; the value after
    the last real token is 0. Returns ``(advantages, returns = advantages + values)``, masked.
    """
    batch, steps = rewards.shape
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(batch, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(steps)):
        next_mask = mask[:, t + 1] if t + 1 < steps else torch.zeros_like(running)
        next_value = values[:, t + 1] * next_mask if t + 1 < steps else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * next_mask * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def ppo_losses(
    logprobs, old_logprobs, advantages, values, old_values, returns, mask, clip_range: float, clip_range_value: float
):
    """The clipped surrogate and clipped value losses (PPO paper eq. 7; value clipping as in
    OpenAI's baselines). All inputs ``(batch, T)``; returns ``(policy_loss, value_loss, stats)``."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    policy_loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    values_clipped = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    value_loss = 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (values_clipped - returns) ** 2), mask)
    with torch.no_grad():
        stats = {
            "losses/approx_kl": float(masked_mean(0.5 * (logprobs - old_logprobs) ** 2, mask)),
            "losses/clipfrac": clip_fraction(ratio, mask, clip_range),
        }
    return policy_loss, value_loss, stats


def token_rewards(scores, kl, mask, kl_coef: float, dense_positions=None) -> torch.Tensor:
    """Per-token rewards: ``-kl_coef * kl`` everywhere, the sequence score on the last token,
    plus dense step rewards ``[(token_index, reward), ...]`` per sequence."""
    rewards = -kl_coef * kl * mask
    last = mask.sum(1).long() - 1
    rewards[torch.arange(len(scores)), last] += scores
    for i, steps in enumerate(dense_positions or []):
        for t, r in steps:
            rewards[i, t] += r
    return rewards


class PPO(Agent):
    name = "ppo"
    Config = PPOConfig
    search_space = {"lr": ("log", 3e-6, 3e-4), "kl_coef": ("log", 0.005, 0.2), "epochs": ("choice", [1, 2])}  # lmgym sweep (sweeps/)
    uses_reference = True

    def build(self) -> None:
        hidden = self.policy.config.hidden_size
        # zero-initialised: V = 0 at first, so the first advantages are the returns themselves
        # rather than noise from a random head
        self.value_head = torch.nn.Linear(hidden, 1).to(self.device)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)
        self.kl_coef = self.config.kl_coef

    def trainable_parameters(self):
        return [{"params": list(self.policy.parameters())},
                {"params": list(self.value_head.parameters()), "lr": self.config.value_lr}]

    def iteration(self, envs, budget: Budget) -> dict:
        cfg = self.config
        batch = self.sample(envs, budget)
        prompt_ids = [s.prompt_token_ids for s in batch.samples]
        completion_ids = [s.token_ids for s in batch.samples]
        scores = torch.tensor([s.reward for s in batch.samples], device=self.device)

        with torch.no_grad():
            old_logprobs, mask, hidden = self.logprobs(self.policy, prompt_ids, completion_ids, return_hidden=True)
            old_values = self.value_head(hidden).squeeze(-1) * mask
            ref_logprobs = self.logprobs(self.reference, prompt_ids, completion_ids)[0]
            kl = kl_penalty(old_logprobs, ref_logprobs, "k1") * mask
            dense = [self.dense_positions(s) for s in batch.samples]
            sparse_scores = scores - torch.tensor([sum(r for _, r in d) for d in dense], device=self.device)
            if cfg.whiten_rewards:
                sparse_scores = (sparse_scores - sparse_scores.mean()) / (sparse_scores.std() + 1e-8)
            rewards = token_rewards(sparse_scores, kl, mask, self.kl_coef, dense)
            advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
            advantages = masked_whiten(advantages, mask)
            mismatch = self.sampler_mismatch(batch, old_logprobs, mask)

        stats: dict[str, list[float]] = {}
        order_rng = np.random.default_rng([cfg.seed, self.iteration_count, 11])
        size = len(batch.samples)
        for _ in range(cfg.epochs):
            order = order_rng.permutation(size)
            for start in range(0, size, cfg.minibatch_size):
                idx = order[start : start + cfg.minibatch_size].tolist()
                logprobs, mb_mask, hidden = self.logprobs(
                    self.policy, [prompt_ids[i] for i in idx], [completion_ids[i] for i in idx], return_hidden=True
                )
                width = logprobs.shape[1]
                features = hidden if cfg.value_grad_to_trunk else hidden.detach()
                values = self.value_head(features).squeeze(-1) * mb_mask
                policy_loss, value_loss, mb_stats = ppo_losses(
                    logprobs, old_logprobs[idx, :width], advantages[idx, :width], values, old_values[idx, :width],
                    returns[idx, :width], mb_mask, cfg.clip_range, cfg.clip_range_value,
                )
                grad_norm = self.optimizer_step(policy_loss + cfg.vf_coef * value_loss)
                mb_stats.update({"losses/policy": policy_loss.item(), "losses/value": value_loss.item(), "losses/grad_norm": grad_norm})
                for key, value in mb_stats.items():
                    stats.setdefault(key, []).append(value)
        self.sync_generator()

        sequence_kl = float(kl.sum(1).mean())
        if cfg.adaptive_kl:  # Ziegler et al. 2019: proportional controller on the KL error
            error = np.clip(sequence_kl / cfg.target_kl - 1, -0.2, 0.2)
            self.kl_coef *= 1 + error * size / cfg.kl_horizon
        metrics = {key: float(np.mean(values)) for key, values in stats.items()}
        metrics.update({
            **self.batch_metrics(batch),
            "train/kl": sequence_kl,
            "train/kl_coef": self.kl_coef,
            "sampler/logprob_mismatch": mismatch,
        })
        return metrics

    def dense_positions(self, sample) -> list[tuple[int, float]]:
        """The env's dense step rewards (character offsets in the completion) moved to the token
        that completes each step."""
        steps = sample.info.get("step_rewards") or []
        if not steps:
            return []
        ends, text_length = [], 0
        for k in range(1, len(sample.token_ids) + 1):
            text_length = len(self.tokenizer.decode(sample.token_ids[:k], skip_special_tokens=True))
            ends.append(text_length)
        positions = []
        for offset, reward in steps:
            token = next((k for k, end in enumerate(ends) if end >= offset), len(ends) - 1)
            positions.append((token, float(reward)))
        return positions

    def extra_state(self) -> dict:
        return {"value_head": self.value_head.state_dict(), "kl_coef": self.kl_coef}

    def load_extra_state(self, state: dict) -> None:
        self.value_head.load_state_dict(state["value_head"])
        self.kl_coef = state["kl_coef"]
