"""REINFORCE with a leave-one-out baseline, written outside lmgym on its public agent API.

    lmgym bench --agent examples.reinforce:REINFORCE ppo --seeds 0 1 2
"""

from dataclasses import dataclass

import torch

from agents.core import Agent, AgentConfig, masked_mean


@dataclass
class REINFORCEConfig(AgentConfig):
    lr: float = 1e-5
    warmup_steps: int = 5
    prompts_per_iteration: int = 64
    samples_per_prompt: int = 4  # >= 2: each sample's baseline is the mean of the others


class REINFORCE(Agent):
    name = "reinforce"
    Config = REINFORCEConfig

    def iteration(self, envs, budget):
        batch = self.sample(envs, budget)  # problems, sampling, budget: all handled by the core
        rewards = torch.tensor(batch.grouped_rewards(), dtype=torch.float32)
        n = rewards.shape[1]
        baseline = (rewards.sum(1, keepdim=True) - rewards) / (n - 1)  # leave-one-out (RLOO)
        advantages = (rewards - baseline).flatten()
        logprobs, mask = self.logprobs(
            self.policy, [s.prompt_token_ids for s in batch.samples], [s.token_ids for s in batch.samples]
        )
        # grad of -A * log pi(y|x), averaged over tokens of each sequence and over the batch
        loss = -(advantages * masked_mean(logprobs, mask, dim=1)).mean()
        self.optimizer_step(loss)
        self.sync_generator()
        return {**self.batch_metrics(batch), "losses/policy": loss.item()}
