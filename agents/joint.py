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
   ensemble mean's favourites; ``"disagreement"`` the samples the heads disagree on most
   (largest spread: pure information seeking); ``"uniform"`` picks at random. Only these are
   scored, and only they are charged to ``Budget.queries`` (the feedback budget);
3. one gradient step on the joint objective

       L = L_policy + reward_coef * L_reward,

   ``L_reward``: each head's squared error on its bootstrap share of the labelled samples (this
   round's plus ``replay_labels`` earlier ones); ``L_policy``: a leave-one-out policy gradient
   whose rewards are the environment's for queried samples and the ensemble mean's for the
   rest, each sample weighted by how far its reward can be trusted (``predicted_rewards``).
   With ``reward_grad_to_trunk`` (default) the reward loss trains the shared trunk too.

How far predictions are trusted (``predicted_rewards="skill"``, the default). A queried
sample's reward is the environment's: weight 1. An unqueried one's is the ensemble mean, and
it is only as good as the ensemble's *held-out skill*: each round, before the update, the
ensemble predicts the rewards it is about to be told (fresh labels it has never trained on),
and ``skill = 1 - MSE(ensemble mean) / MSE(mean of earlier labels)`` on them (1: perfect; 0:
no better than a constant; negative: worse), smoothed over rounds (``skill_smoothing``).
Unqueried samples get weight ``clip(skill, 0, 1)``: none at all while the heads are their
random priors (skill <= 0), and full weight only for an ensemble that predicts fresh labels
well. The leave-one-out baseline of a sample is the weighted mean of its group's others (the
mean reward of this round's queried samples where they weigh nothing). ``"always"`` gives
every prediction weight 1 from the first round (the agent's earlier behaviour: it trained
the policy on the untrained heads' random priors); ``"never"`` uses queried samples only.

Logged: train/reward (the environment's reward of what was asked about),
train/predicted_reward, train/ensemble_std, train/heldout_skill (this round's, before the
smoothing), train/prediction_weight, train/abs_error (|ensemble mean - reward| on the fresh
labels), losses/policy, losses/reward, train/labels. The agent keeps every queried sample's
``(ensemble spread, |error|)`` before its update in ``calibration`` (is the spread calibrated?).
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


EXPLORATION = ("thompson", "greedy", "disagreement", "uniform")


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
            elif exploration == "disagreement":
                scores = group[available].std(1) if k > 1 else torch.as_tensor(rng.random(len(available)))
            elif exploration == "uniform":
                scores = torch.as_tensor(rng.random(len(available)))
            else:
                raise ValueError(f"exploration must be one of {EXPLORATION}, got {exploration!r}")
            pick = available[int(torch.argmax(scores))]
            available.remove(pick)
            chosen.append(start + pick)
    return chosen


def leave_one_out_pg_loss(rewards: torch.Tensor, logprobs: torch.Tensor, mask: torch.Tensor,
                          weights: torch.Tensor | None = None, fallback: float = 0.0) -> torch.Tensor:
    """``-sum_i w_i (r_i - b_i) * mean_t log pi(y_i,t) / sum_i w_i`` over groups, ``b_i`` the
    ``w``-weighted mean reward of the others in ``i``'s group (``fallback`` where they weigh
    nothing): ``rewards``/``weights`` ``(prompts, n)``, ``logprobs``/``mask`` ``(prompts * n, T)``
    in the same order. Unit weights: the plain leave-one-out policy gradient."""
    if weights is None:
        weights = torch.ones_like(rewards)
    others = weights.sum(1, keepdim=True) - weights
    weighted = (weights * rewards).sum(1, keepdim=True) - weights * rewards
    baseline = torch.where(others > 0, weighted / others.clamp(min=1e-12), torch.full_like(rewards, fallback))
    advantages = ((rewards - baseline) * weights).flatten()
    return -(advantages * masked_mean(logprobs, mask, dim=1)).sum() / weights.sum().clamp(min=1e-12)


def heldout_skill(predicted: torch.Tensor, observed: torch.Tensor, reference: float) -> float | None:
    """``1 - MSE(predicted) / MSE(reference)`` on fresh labels ``observed`` (never trained on);
    None when the reference's error is 0 (every label equal to it: nothing to tell apart)."""
    baseline = float(((observed - reference) ** 2).mean())
    if baseline <= 0:
        return None
    return 1.0 - float(((predicted - observed) ** 2).mean()) / baseline


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
    exploration: str = 'thompson'  # "thompson" | "greedy" | "disagreement" | "uniform" (swept: sweeps/lmgym__Arithmetic-v0/joint.json)
    ensemble_size: int = 8  # K reward heads
    prior_scale: float = 1.0  # weight of each head's fixed random prior (randomized prior functions)
    bootstrap: float = 0.5  # each head trains on each label with this probability
    reward_coef: float = 0.1540114541342797  # weight of the reward loss in the joint objective (swept: sweeps/lmgym__Arithmetic-v0/joint.json)
    reward_lr: float = 1e-3  # the heads' own learning rate
    reward_grad_to_trunk: bool = True  # the reward loss shapes the shared trunk (the joint objective)
    replay_labels: int = 256  # earlier labelled samples replayed in each reward update
    predicted_rewards: str = "skill"  # unqueried samples' weight: "skill" (held-out skill) | "always" (1) | "never" (0)
    skill_smoothing: float = 0.3  # weight of this round's held-out skill in its running estimate

    def __post_init__(self):
        if self.exploration not in EXPLORATION:
            raise ValueError(f"exploration must be one of {EXPLORATION}, got {self.exploration!r}")
        if self.predicted_rewards not in ("skill", "always", "never"):
            raise ValueError(f"predicted_rewards must be 'skill', 'always' or 'never', got {self.predicted_rewards!r}")
        if not 0 < self.skill_smoothing <= 1:
            raise ValueError("skill_smoothing must be in (0, 1]")
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
        self.skill: float | None = None  # running held-out skill of the ensemble (None: not measured yet)
        self.calibration: list[tuple[float, float]] = []  # (ensemble spread, |mean - reward|) per queried sample

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

        # held out: what the ensemble predicted for the labels it is about to be told
        estimated = predictions.detach().mean(1)
        spread = predictions.detach().std(1) if cfg.ensemble_size > 1 else torch.zeros_like(estimated)
        fresh_error = (estimated[queried] - true_rewards).abs()
        self.calibration.extend(zip(spread[queried].tolist(), fresh_error.tolist()))
        reference = float(np.mean([r for _, _, r, _ in self.labels])) if self.labels else 0.0
        skill_now = heldout_skill(estimated[queried], true_rewards, reference) if self.labels else None
        if skill_now is not None:
            self.skill = skill_now if self.skill is None else (
                (1 - cfg.skill_smoothing) * self.skill + cfg.skill_smoothing * skill_now)

        # the policy's rewards: the environment's where asked, the ensemble mean elsewhere,
        # each weighted by how far it can be trusted
        rewards = estimated.clone()
        rewards[queried] = true_rewards
        trust = {"always": 1.0, "never": 0.0}.get(cfg.predicted_rewards, min(1.0, max(0.0, self.skill or 0.0)))
        weights = torch.full_like(rewards, trust)
        weights[queried] = 1.0
        policy_loss = leave_one_out_pg_loss(rewards.view(-1, n), logprobs, mask, weights.view(-1, n),
                                            fallback=float(true_rewards.mean()))

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
            "train/ensemble_std": float(spread.mean()),
            "train/prediction_weight": trust,
            "train/abs_error": float(fresh_error.mean()),
            "losses/policy": policy_loss.item(),
            "losses/reward": reward_loss.item(),
            "train/labels": len(self.labels),
            **({} if skill_now is None else {"train/heldout_skill": skill_now}),  # none in the first round
        }

    def extra_state(self) -> dict:
        return {"rewards": self.rewards.state_dict(), "labels": self.labels, "skill": self.skill,
                "calibration": self.calibration}

    def load_extra_state(self, state: dict) -> None:
        self.rewards.load_state_dict(state["rewards"])
        self.labels = [(list(p), list(c), float(r), list(m)) for p, c, r, m in state["labels"]]
        self.skill = state.get("skill")
        self.calibration = [tuple(pair) for pair in state.get("calibration", [])]
