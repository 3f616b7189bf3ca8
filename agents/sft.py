"""Supervised fine-tuning on reference solutions: the warm start that Havrilla et al. 2024 find
essential before RL (../shared/PAPERS.md, paper 1), and a baseline for every RL agent.

Each iteration fine-tunes on ``prompts_per_iteration`` train problems' reference solutions
(no sampling); the budget counts each example as one sample and its solution tokens as tokens,
so SFT is compared with RL agents at equal numbers of training sequences.

Logged: losses/sft.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.core import Agent, AgentConfig
from lmgym.rollout import Budget, start


@dataclass
class SFTConfig(AgentConfig):
    lr: float = 1.3717293777223979e-05  # AdamW learning rate of the policy (swept: sweeps/lmgym__Arithmetic-v0/sft.json)
    samples_per_prompt: int = 1  # one reference solution per problem
    epochs: int = 1  # passes over each iteration's examples (swept: sweeps/lmgym__Arithmetic-v0/sft.json)
    minibatch_size: int = 32  # sequences per optimizer step (swept: sweeps/lmgym__Arithmetic-v0/sft.json)


class SFT(Agent):
    name = "sft"
    Config = SFTConfig
    search_space = {"lr": ("log", 1e-5, 1e-3), "minibatch_size": ("choice", [16, 32, 64]), "epochs": ("choice", [1, 2])}  # lmgym sweep (sweeps/)

    def iteration(self, envs, budget: Budget) -> dict:
        cfg = self.config
        size = budget.take_prompts(cfg.prompts_per_iteration, 1)  # spend exactly the budget
        rng = np.random.default_rng([cfg.seed, self.iteration_count, 7])
        prompts = start(envs, rng.integers(envs.unwrapped.num_problems, size=size).tolist())
        solutions = envs.unwrapped.reference_solutions()[:size]
        prompt_ids = self.conditioned_ids(prompts)
        eos = [self.tokenizer.eos_token_id]
        solution_ids = [ids + eos for ids in self.tokenizer(solutions, add_special_tokens=False)["input_ids"]]
        budget.add(size, sum(map(len, solution_ids)))
        loss = self.fit(list(zip(prompt_ids, solution_ids)), cfg.epochs, cfg.minibatch_size)
        return {"losses/sft": loss}
