"""Return-Conditioned RL (decision-transformer style; Chen et al. 2021), as run for LM reasoning
in Havrilla et al. 2024 (../shared/PAPERS.md, paper 1): label every sample with a return token,
fine-tune on all labelled samples, and act conditioned on the best return.

Sparse rewards: the label is ``good_prefix`` when the reward reaches ``reward_threshold``, else
``bad_prefix``. Dense (continuous) rewards: ``return_bins > 0`` discretizes the reward into that
many equal-width bins over ``[return_low, return_high]``, labelled ``"[r0] "`` ... and the agent
acts conditioned on the top bin. The label is text put before the prompt, so any tokenizer
works without new embeddings.

Each round fine-tunes on its own labelled samples plus as many replayed from earlier rounds
(the paper fine-tunes on all of them; replay keeps every label in play at constant cost).
The first ``unconditioned_rounds`` rounds sample the plain prompt (the initial policy has never
seen a label); later rounds sample conditioned on the best label, as the policy acts.

Logged: train/reward, train/reward_std_zero_share, train/good_share, train/dataset, losses/sft.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.core import Agent, AgentConfig
from lmgym.rollout import Budget


@dataclass
class RCRLConfig(AgentConfig):
    lr: float = 1e-4
    warmup_steps: int = 10
    prompts_per_iteration: int = 128
    samples_per_prompt: int = 4
    good_prefix: str = "G "
    bad_prefix: str = "B "
    reward_threshold: float = 1.0
    return_bins: int = 0  # > 0: discretized-return labels for dense rewards
    return_low: float = 0.0
    return_high: float = 1.5
    sft_epochs: int = 2
    sft_batch_size: int = 128
    max_dataset: int = 20_000  # keep the most recent labelled samples
    unconditioned_rounds: int = 16  # first rounds sample the plain prompt: the initial policy has
    # never seen a label, and conditioning on one it cannot read yet yields no good samples


def return_label(reward: float, cfg: RCRLConfig) -> str:
    """The conditioning text for a sample's return."""
    if cfg.return_bins <= 0:
        return cfg.good_prefix if reward >= cfg.reward_threshold else cfg.bad_prefix
    fraction = (reward - cfg.return_low) / (cfg.return_high - cfg.return_low)
    return f"[r{int(np.clip(fraction * cfg.return_bins, 0, cfg.return_bins - 1))}] "


class RCRL(Agent):
    name = "rcrl"
    Config = RCRLConfig

    def build(self) -> None:
        self.dataset: list[tuple[list[int], list[int]]] = []  # (label ids + prompt ids, completion ids)

    def prompt_prefix(self) -> str:
        cfg = self.config
        return cfg.good_prefix if cfg.return_bins <= 0 else f"[r{cfg.return_bins - 1}] "

    def iteration(self, envs, budget: Budget) -> dict:
        cfg = self.config
        prefix = self.prompt_prefix() if self.iteration_count >= cfg.unconditioned_rounds else ""
        batch = self.sample(envs, budget, prefix=prefix)
        prefix_length = len(self.tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else 0
        good = 0
        for s in batch.samples:
            label = return_label(s.reward, cfg)
            good += label == self.prompt_prefix()
            label_ids = self.tokenizer(label, add_special_tokens=False)["input_ids"]
            prompt_ids = s.prompt_token_ids[prefix_length:]  # the env prompt's own ids, kept as sampled
            self.dataset.append((label_ids + prompt_ids, s.token_ids))
        self.dataset = self.dataset[-cfg.max_dataset :]
        # fine-tune on this round's labelled samples plus as many replayed from earlier rounds:
        # all labelled data stays in play at a cost that does not grow with the round number
        new, old = self.dataset[-len(batch.samples) :], self.dataset[: -len(batch.samples)]
        rng = np.random.default_rng([cfg.seed, self.iteration_count, 17])
        replay = [old[i] for i in rng.choice(len(old), size=min(len(old), len(new)), replace=False)] if old else []
        loss = self.fit(new + replay, cfg.sft_epochs, cfg.sft_batch_size)
        return {**self.batch_metrics(batch), "train/good_share": good / len(batch.samples),
                "train/dataset": len(self.dataset), "losses/sft": loss}

    def extra_state(self) -> dict:
        return {"dataset": self.dataset}

    def load_extra_state(self, state: dict) -> None:
        self.dataset = [(list(p), list(c)) for p, c in state["dataset"]]
