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

Logged: train/queried_reward (the environment's reward of what was asked about),
train/predicted_reward, train/ensemble_std, losses/policy, losses/reward, train/labels.
"""

from __future__ import annotations

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


@dataclass
class JointConfig(AgentConfig):
    lr: float = 1e-5
    warmup_steps: int = 5
    prompts_per_iteration: int = 32
    samples_per_prompt: int = 4
    queries_per_prompt: int = 1  # feedback asked per prompt per iteration
    exploration: str = "thompson"  # "thompson" | "greedy" | "uniform"
    ensemble_size: int = 8
    prior_scale: float = 1.0
    bootstrap: float = 0.5  # each head trains on each label with this probability
    reward_coef: float = 1.0
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

    def build(self) -> None:
        width = self.policy.config.hidden_size
        self.rewards = RewardEnsemble(width, self.config.ensemble_size, self.config.prior_scale, self.config.seed).to(self.device)
        self.labels: list[tuple[list[int], list[int], float, list[bool]]] = []  # prompt, completion, reward, mask

    def trainable_parameters(self) -> list:
        return [{"params": list(self.policy.parameters())},
                {"params": list(self.rewards.parameters()), "lr": self.config.reward_lr}]

    def make_envs(self, env_id: str, env_kwargs: dict):
        import gymnasium as gym

        return gym.make(env_id, split="train", **env_kwargs).unwrapped  # prompts and the task's scorer

    def _features(self, prompt_ids, completion_ids):
        """Policy log-probs and mask, and the trunk's state at each completion's last token."""
        logprobs, mask, hidden = self.logprobs(self.policy, prompt_ids, completion_ids, return_hidden=True)
        last = (mask.sum(1).long() - 1).clamp(min=0)
        features = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        if not self.config.reward_grad_to_trunk:
            features = features.detach()
        return logprobs, mask, features

    def iteration(self, env, budget: Budget) -> dict:
        cfg = self.config
        n = cfg.samples_per_prompt
        prompts_count = cfg.prompts_per_iteration
        if budget.max_samples is not None:
            prompts_count = max(1, min(prompts_count, -(-(budget.max_samples - budget.samples) // n)))
        if budget.max_queries is not None:
            prompts_count = max(1, min(prompts_count, -(-(budget.max_queries - budget.queries) // cfg.queries_per_prompt)))
        rng = np.random.default_rng([cfg.seed, self.iteration_count, 29])
        problems = [env.task.problem("train", int(i)) for i in rng.integers(env.num_problems, size=prompts_count)]
        generations = self.generator.generate(
            [env.prompt_for(p) for p in problems], n=n, temperature=cfg.temperature, top_p=cfg.top_p,
            max_tokens=cfg.max_new_tokens, seed=self.iteration_seed(),
        )
        prompt_ids = [g.prompt_token_ids for g in generations for _ in g.completions]
        completions = [c for g in generations for c in g.completions]
        completion_ids = [c.token_ids for c in completions]
        budget.add(len(completions), sum(len(ids) for ids in completion_ids))

        logprobs, mask, features = self._features(prompt_ids, completion_ids)
        predictions = self.rewards(features)  # (batch, K)
        queried = choose_queries(predictions.detach(), n, cfg.queries_per_prompt, cfg.exploration, rng)
        scored = env.task.score_batch([problems[i // n] for i in queried], [completions[i].text for i in queried])
        budget.query(len(queried))
        true_rewards = {i: float(reward) for i, (reward, _) in zip(queried, scored)}

        # the policy's rewards: the environment's where asked, the ensemble mean elsewhere
        estimated = predictions.detach().mean(1)
        rewards = torch.tensor([true_rewards.get(i, float(estimated[i])) for i in range(len(completions))],
                               device=self.device).view(-1, n)
        advantages = (rewards - (rewards.sum(1, keepdim=True) - rewards) / (n - 1)).flatten()
        policy_loss = -(advantages * masked_mean(logprobs, mask, dim=1)).mean()

        # the reward model: this round's labels (features with gradients) + replayed ones
        masks = torch.as_tensor(rng.random((len(queried), cfg.ensemble_size)) < cfg.bootstrap, device=self.device)
        targets = torch.tensor([true_rewards[i] for i in queried], device=self.device)
        label_predictions = predictions[queried]
        if self.labels and cfg.replay_labels:
            rows = rng.choice(len(self.labels), size=min(cfg.replay_labels, len(self.labels)), replace=False)
            old = [self.labels[r] for r in rows]
            _, _, old_features = self._features([p for p, _, _, _ in old], [c for _, c, _, _ in old])
            label_predictions = torch.cat([label_predictions, self.rewards(old_features)])
            targets = torch.cat([targets, torch.tensor([r for _, _, r, _ in old], device=self.device)])
            masks = torch.cat([masks, torch.tensor([m for _, _, _, m in old], device=self.device)])
        weights = masks.float()
        reward_loss = (((label_predictions - targets[:, None]) ** 2) * weights).sum() / weights.sum().clamp(min=1)
        self.optimizer_step(policy_loss + cfg.reward_coef * reward_loss)
        self.sync_generator()
        for row, i in enumerate(queried):
            self.labels.append((prompt_ids[i], completion_ids[i], true_rewards[i], masks[row].tolist()))
        return {
            "train/queried_reward": float(np.mean(list(true_rewards.values()))),
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
