"""Joint reward-policy learning with epistemic exploration, after "Shattering the
Agent-Environment Interface for Fine-Tuning Inclusive Language Models" (Xu et al. 2023;
../shared/PAPERS.md, paper 5): the language model is the policy *and* the reward model, and
both are learned in one objective from feedback the agent chooses to ask for.

The reward model is an ensemble of ``ensemble_size`` linear heads on the policy's own trunk
(the final hidden state at the completion's last token), each the sum of a trained head and
a fixed random *prior* head (randomized prior functions, Osband et al. 2018), each trained on
its own bootstrap mask of the labelled data: their disagreement is the epistemic uncertainty.

One iteration:

1. sample ``samples_per_prompt`` completions for each of ``prompts_per_iteration`` prompts
   (charged to the sample budget; nothing is scored yet);
2. choose ``queries_per_prompt`` of each prompt's samples to ask the environment about
   (``exploration``): ``"thompson"`` draws one ensemble member per query and takes its
   favourite (Thompson sampling: uncertain samples get asked about); ``"greedy"`` takes the
   ensemble mean's favourites; ``"uniform"`` picks at random. Only these are scored, and
   only they are charged to ``Budget.queries`` (the feedback budget);
3. one gradient step on the joint objective

       L = L_policy + reward_coef * L_reward,

   ``L_reward``: each head's squared error on its bootstrap share of the labelled samples (this
   round's plus ``replay_labels`` earlier ones); ``L_policy``: a leave-one-out policy gradient
   whose rewards are the environment's for queried samples and the ensemble mean's for the
   rest. With ``reward_grad_to_trunk`` (default) the reward loss trains the shared trunk too.

Logged: train/reward (the environment's reward of what was asked about),
train/predicted_reward, train/ensemble_std, losses/policy, losses/reward, train/labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from agents.core import Agent, AgentConfig, masked_mean
from lmgym.rollout import Budget


class RewardEnsemble(torch.nn.Module):
    """``K`` linear heads with fixed random priors: ``r_k(x) = w_k . x + prior_scale * p_k . x``."""

    def __init__(self, width: int, size: int, prior_scale: float, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.heads = torch.nn.Linear(width, size)
        torch.nn.init.zeros_(self.heads.weight)
        torch.nn.init.zeros_(self.heads.bias)
        self.register_buffer("prior", torch.randn(width, size, generator=generator) / width**0.5)
        self.prior_scale = prior_scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(batch, width)`` -> ``(batch, K)`` reward predictions."""
        return self.heads(features) + self.prior_scale * features.detach() @ self.prior


def choose_queries(predictions: torch.Tensor, group_size: int, per_group: int, exploration: str,
                   rng: np.random.Generator) -> list[int]:
    """Indices (into the flat batch) of the samples to ask the environment about.

    ``predictions``: ``(batch, K)``, consecutive groups of ``group_size`` samples per prompt."""
    chosen = []
    k = predictions.shape[1]
    for start in range(0, predictions.shape[0], group_size):
        group = predictions[start : start + group_size]
        available = list(range(group.shape[0]))
        for _ in range(min(per_group, len(available))):
            if exploration == "thompson":
                scores = group[available, int(rng.integers(k))]
            elif exploration == "greedy":
                scores = group[available].mean(1)
            elif exploration == "uniform":
                scores = torch.as_tensor(rng.random(len(available)))
            else:
                raise ValueError(f"exploration must be 'thompson', 'greedy' or 'uniform', got {exploration!r}")
            pick = available[int(torch.argmax(scores))]
            available.remove(pick)
            chosen.append(start + pick)
    return chosen


def leave_one_out_pg_loss(rewards: torch.Tensor, logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``-mean_i (r_i - mean_{j != i} r_j) * mean_t log pi(y_i,t)`` over groups: ``rewards``
    ``(prompts, n)``, ``logprobs``/``mask`` ``(prompts * n, T)`` in the same order."""
    n = rewards.shape[1]
    advantages = (rewards - (rewards.sum(1, keepdim=True) - rewards) / (n - 1)).flatten()
    return -(advantages * masked_mean(logprobs, mask, dim=1)).mean()


def bootstrapped_ensemble_loss(predictions: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Each head's squared error on its bootstrap share: ``sum_{i,k} m_ik (p_ik - y_i)^2 / sum m``;
    ``predictions``/``masks`` ``(labels, K)``, ``targets`` ``(labels,)``."""
    weights = masks.float()
    return (((predictions - targets[:, None]) ** 2) * weights).sum() / weights.sum().clamp(min=1)


@dataclass
class JointConfig(AgentConfig):
    lr: float = 4.93827892427854e-06  # AdamW learning rate of the policy (swept: sweeps/lmgym__Arithmetic-v0/joint.json)
    warmup_steps: int = 5
    prompts_per_iteration: int = 32
    samples_per_prompt: int = 4
    queries_per_prompt: int = 1  # feedback asked per prompt per iteration
    exploration: str = 'thompson'  # "thompson" | "greedy" | "uniform" (swept: sweeps/lmgym__Arithmetic-v0/joint.json)
    ensemble_size: int = 8  # K reward heads
    prior_scale: float = 1.0  # weight of each head's fixed random prior (randomized prior functions)
    bootstrap: float = 0.5  # each head trains on each label with this probability
    reward_coef: float = 0.1540114541342797  # weight of the reward loss in the joint objective (swept: sweeps/lmgym__Arithmetic-v0/joint.json)
    reward_lr: float = 1e-3  # the heads' own learning rate
    reward_grad_to_trunk: bool = True  # the reward loss shapes the shared trunk (the joint objective)
    replay_labels: int = 256  # earlier labelled samples replayed in each reward update

    def __post_init__(self):
        if not 1 <= self.queries_per_prompt <= self.samples_per_prompt:
            raise ValueError("queries_per_prompt must be between 1 and samples_per_prompt")
        if self.samples_per_prompt < 2:
            raise ValueError("the leave-one-out policy gradient needs samples_per_prompt >= 2")
        if self.ensemble_size < 1 or not 0 < self.bootstrap <= 1:
            raise ValueError("ensemble_size must be >= 1 and bootstrap in (0, 1]")


class Joint(Agent):
    name = "joint"
    Config = JointConfig
    search_space = {"lr": ("log", 3e-6, 3e-4), "reward_coef": ("log", 0.1, 3.0), "exploration": ("choice", ["thompson", "greedy"])}  # lmgym sweep (sweeps/)

    def build(self) -> None:
        width = self.policy.config.hidden_size
        self.rewards = RewardEnsemble(width, self.config.ensemble_size, self.config.prior_scale, self.config.seed).to(self.device)
        self.labels: list[tuple[list[int], list[int], float, list[bool]]] = []  # prompt, completion, reward, mask

    def trainable_parameters(self) -> list:
        return [{"params": list(self.policy.parameters())},
                {"params": list(self.rewards.parameters()), "lr": self.config.reward_lr}]

    def queries_per_prompt(self) -> int:
        return self.config.queries_per_prompt

    def _features(self, prompt_ids, completion_ids):
        """Policy log-probs and mask, and the trunk's state at each completion's last token."""
        logprobs, mask, hidden = self.logprobs(self.policy, prompt_ids, completion_ids, return_hidden=True)
        last = (mask.sum(1).long() - 1).clamp(min=0)
        features = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        if not self.config.reward_grad_to_trunk:
            features = features.detach()
        return logprobs, mask, features

    def iteration(self, envs, budget: Budget) -> dict:
        cfg = self.config
        n = cfg.samples_per_prompt
        rng = np.random.default_rng([cfg.seed, self.iteration_count, 29])
        forward = {}

        def ask_about(samples) -> list[bool]:
            """Steps 1-2: the ensemble's predictions on the fresh samples choose what to ask."""
            forward["logprobs"], forward["mask"], features = self._features(
                [s.prompt_token_ids for s in samples], [s.token_ids for s in samples])
            forward["predictions"] = self.rewards(features)  # (batch, K)
            queried = set(choose_queries(forward["predictions"].detach(), n, cfg.queries_per_prompt, cfg.exploration, rng))
            return [i in queried for i in range(len(samples))]

        batch = self.sample(envs, budget, score=ask_about)  # only the chosen samples are scored and charged
        logprobs, mask, predictions = forward["logprobs"], forward["mask"], forward["predictions"]
        queried = [i for i, s in enumerate(batch.samples) if not math.isnan(s.reward)]
        true_rewards = torch.tensor([batch.samples[i].reward for i in queried], device=self.device)

        # the policy's rewards: the environment's where asked, the ensemble mean elsewhere
        estimated = predictions.detach().mean(1)
        rewards = estimated.clone()
        rewards[queried] = true_rewards
        policy_loss = leave_one_out_pg_loss(rewards.view(-1, n), logprobs, mask)

        # the reward model: this round's labels (features with gradients) + replayed ones
        masks = torch.as_tensor(rng.random((len(queried), cfg.ensemble_size)) < cfg.bootstrap, device=self.device)
        targets, label_predictions = true_rewards, predictions[queried]
        if self.labels and cfg.replay_labels:
            rows = rng.choice(len(self.labels), size=min(cfg.replay_labels, len(self.labels)), replace=False)
            old = [self.labels[r] for r in rows]
            _, _, old_features = self._features([p for p, _, _, _ in old], [c for _, c, _, _ in old])
            label_predictions = torch.cat([label_predictions, self.rewards(old_features)])
            targets = torch.cat([targets, torch.tensor([r for _, _, r, _ in old], device=self.device)])
            masks = torch.cat([masks, torch.tensor([m for _, _, _, m in old], device=self.device)])
        reward_loss = bootstrapped_ensemble_loss(label_predictions, targets, masks)
        self.optimizer_step(policy_loss + cfg.reward_coef * reward_loss)
        self.sync_generator()
        for row, i in enumerate(queried):
            sample = batch.samples[i]
            self.labels.append((sample.prompt_token_ids, sample.token_ids, sample.reward, masks[row].tolist()))
        return {
            "train/reward": float(true_rewards.mean()),
            "train/predicted_reward": float(estimated.mean()),
            "train/ensemble_std": float(predictions.detach().std(1).mean()) if cfg.ensemble_size > 1 else 0.0,
            "losses/policy": policy_loss.item(),
            "losses/reward": reward_loss.item(),
            "train/labels": len(self.labels),
        }

    def extra_state(self) -> dict:
        return {"rewards": self.rewards.state_dict(), "labels": self.labels}

    def load_extra_state(self, state: dict) -> None:
        self.rewards.load_state_dict(state["rewards"])
        self.labels = [(list(p), list(c), float(r), list(m)) for p, c, r, m in state["labels"]]
