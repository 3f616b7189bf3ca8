"""Expert Iteration (Anthony et al. 2017), as run for LM reasoning in Havrilla et al. 2024
(../shared/PAPERS.md, paper 1): sample K completions per prompt from the current policy, keep
the correct ones, de-duplicate, fine-tune on everything kept so far, repeat.

One iteration is one round. ``from_base=True`` re-trains from the initial weights each round
on the whole accumulated set (the paper's choice); ``False`` continues from the current policy.

Logged: train/reward (mean reward of this round's samples), train/reward_std_zero_share, train/kept (new unique correct
samples), train/dataset (accumulated), losses/sft.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.core import Agent, AgentConfig
from lmgym.rollout import Budget


@dataclass
class ExItConfig(AgentConfig):
    lr: float = 1.8973254808225412e-05  # AdamW learning rate of the policy (swept: sweeps/lmgym__Arithmetic-v0/exit.json)
    warmup_steps: int = 10  # a fresh Adam's first full-size steps knock a tiny model off balance
    prompts_per_iteration: int = 128
    samples_per_prompt: int = 2  # K: the paper samples up to 96 per prompt (swept: sweeps/lmgym__Arithmetic-v0/exit.json)
    reward_threshold: float = 1.0  # keep samples whose reward reaches this (correct answers)
    from_base: bool = False  # re-train from the initial weights each round on the accumulated set
    epochs: int = 1  # passes over the accumulated dataset each round (swept: sweeps/lmgym__Arithmetic-v0/exit.json)
    minibatch_size: int = 128  # sequences per optimizer step


class ExIt(Agent):
    name = "exit"
    Config = ExItConfig
    search_space = {"lr": ("log", 1e-5, 1e-3), "samples_per_prompt": ("choice", [2, 4, 8]), "epochs": ("choice", [1, 2])}  # lmgym sweep (sweeps/)

    def build(self) -> None:
        self.dataset: list[tuple[list[int], list[int]]] = []  # (prompt_ids, completion_ids), kept samples
        self.seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
        self.initial_weights = {k: v.detach().clone() for k, v in self.policy.state_dict().items()} if self.config.from_base else None

    def iteration(self, envs, budget: Budget) -> dict:
        cfg = self.config
        batch = self.sample(envs, budget)
        kept = 0
        for s in batch.samples:
            key = (tuple(s.prompt_token_ids), tuple(s.token_ids))
            if s.reward >= cfg.reward_threshold and key not in self.seen:
                self.seen.add(key)
                self.dataset.append((s.prompt_token_ids, s.token_ids))
                kept += 1
        if cfg.from_base:  # start the round from the initial model with a fresh optimizer
            self.policy.load_state_dict(self.initial_weights)
            self.optimizer.state.clear()
        metrics = {**self.batch_metrics(batch), "train/kept": kept, "train/dataset": len(self.dataset)}
        if self.dataset:  # nothing correct yet: no update this round
            metrics["losses/sft"] = self.fit(self.dataset, cfg.epochs, cfg.minibatch_size)
        return metrics

    def extra_state(self) -> dict:
        return {"dataset": self.dataset}

    def load_extra_state(self, state: dict) -> None:
        self.dataset = [(list(p), list(c)) for p, c in state["dataset"]]
        self.seen = {(tuple(p), tuple(c)) for p, c in self.dataset}
