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
from lmgym.rollout import Budget


@dataclass
class SFTConfig(AgentConfig):
    lr: float = 1e-4
    samples_per_prompt: int = 1  # one reference solution per problem
    sft_batch_size: int = 64


class SFT(Agent):
    name = "sft"
    Config = SFTConfig

    def make_envs(self, env_id, env_kwargs):
        import gymnasium as gym

        return gym.make(env_id, split="train", **env_kwargs).unwrapped  # only its task and prompts are used

    def iteration(self, env, budget: Budget) -> dict:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self.iteration_count, 7])
        size = cfg.prompts_per_iteration
        if budget.max_samples is not None:
            size = max(1, min(size, budget.max_samples - budget.samples))  # spend exactly the budget
        problems = [env.task.problem("train", int(i)) for i in rng.integers(env.num_problems, size=size)]
        prompt_ids = self.generator.encode([env.prompt_for(p) for p in problems])
        eos = [self.tokenizer.eos_token_id]
        solution_ids = [ids + eos for ids in self.tokenizer([p.solution for p in problems], add_special_tokens=False)["input_ids"]]
        budget.add(len(problems), sum(map(len, solution_ids)))
        loss = self.fit(list(zip(prompt_ids, solution_ids)), 1, cfg.sft_batch_size)
        return {"losses/sft": loss}
