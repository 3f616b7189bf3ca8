"""Contrastive Policy Gradient (Flet-Berliac et al. 2024; ../shared/PAPERS.md, paper 3).

For two completions ``y, y'`` of the same prompt, from *any* behaviour policy, with rewards
``R(y), R(y')`` and ``h(y) = log pi(y|x) - log pi_ref(y|x)`` (summed over tokens), CoPG
minimises the squared contrast

    l(y, y') = ( R(y) - R(y') - beta * (h(y) - h(y')) )^2

whose gradient is ``-2 beta (R_beta(y) - R_beta(y')) (grad log pi(y) - grad log pi(y'))``
with ``R_beta = R - beta h``: a policy gradient in which each sample's baseline is the other
sample's regularised reward, and no importance weight appears. Every pair's loss is zero at
``pi* ∝ pi_ref exp(R / beta)``, whatever policy drew the pair, so the fixed point is the
KL-regularised optimum even from off-policy data. With ``R(y_w) = 1/4, R(y_l) = -1/4`` the
loss is ``beta^2`` times IPO's ``(h_w - h_l - 1/(2 beta))^2`` (:func:`agents.dpo.ipo_loss`, tested).

Data (``data=``): ``"on_policy"`` (every pair of the current rollout's n samples per prompt),
``"replay"`` (pairs from a buffer of the last ``replay_groups`` scored groups, the current
ones included), ``"offline"`` (groups drawn once per iteration from the frozen initial
policy: off-policy data from another policy; or a user's scored samples, ``dataset=``, a jsonl
of ``{"prompt", "completion", "reward"}`` rows, grouped by prompt).

Pairs (``pairing=``): ``"all"`` (every pair within a group: n(n-1)/2 for n samples) or
``"random"`` (disjoint random pairs, at most ``pairs_per_update``: what a one-prompt dataset such
as the paper's bandit needs, where "all" would pair every sample with every other).
``loss="pg"`` swaps the contrast for the regularised policy gradient without importance weights
(``-sg[R - b - beta h] log pi(y)``, ``b`` = 0 or the minibatch's mean reward, ``pg_baseline=``)
on the same samples: the biased off-policy baseline CoPG corrects (the paper's comparison).

Logged: train/reward, train/reward_std_zero_share, losses/copg, train/pairs, train/log_ratio.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from agents.core import Agent, AgentConfig, group_pairs, random_pairs, read_jsonl
from lmgym.generation import make_generator
from lmgym.rollout import Budget


def copg_loss(rewards, rewards_prime, log_ratios, log_ratios_prime, beta: float) -> torch.Tensor:
    """Mean over pairs of ``(R(y) - R(y') - beta (h(y) - h(y')))^2``; all inputs ``(pairs,)``."""
    return ((rewards - rewards_prime) - beta * (log_ratios - log_ratios_prime)).pow(2).mean()


def biased_off_policy_pg_loss(rewards, log_ratios, logprobs, beta: float) -> torch.Tensor:
    """Regularised policy gradient on samples from another policy *without* importance
    weights or a contrastive baseline: ``-mean(sg[R - beta h] * log pi(y))``. Biased off-policy;
    kept as the baseline that CoPG corrects (its fixed point is not pi*)."""
    return -((rewards - beta * log_ratios).detach() * logprobs).mean()


@dataclass
class CoPGConfig(AgentConfig):
    lr: float = 4.369981423046462e-06  # AdamW learning rate of the policy (swept: sweeps/lmgym__Arithmetic-v0/copg.json)
    warmup_steps: int = 5
    prompts_per_iteration: int = 64
    samples_per_prompt: int = 8  # completions sampled per problem (a group) (swept: sweeps/lmgym__Arithmetic-v0/copg.json)
    beta: float = 0.01591634751784352  # KL strength: the fixed point is pi_ref exp(R / beta), normalised (swept: sweeps/lmgym__Arithmetic-v0/copg.json)
    data: str = "on_policy"  # "on_policy" | "replay" | "offline": where pairs come from (module docstring)
    dataset: str | None = None  # offline: a jsonl of scored samples {"prompt", "completion", "reward"}
    replay_groups: int = 512  # replay: groups kept (the oldest leave first)
    updates_per_iteration: int = 1  # gradient steps per iteration (replay / offline draw a fresh minibatch each)
    groups_per_update: int = 64  # replay / offline: groups per minibatch
    pairing: str = "all"  # "all": every pair within a group; "random": disjoint random pairs (random_pairs)
    pairs_per_update: int | None = None  # "random": at most this many pairs per step (None: all it forms)
    loss: str = "copg"  # "copg" | "pg": the policy gradient without CoPG's correction (baseline pg_baseline)
    pg_baseline: str = "zero"  # loss="pg": "zero" or "mean" (the minibatch's mean reward) subtracted from R

    def __post_init__(self):
        if self.data not in ("on_policy", "replay", "offline"):
            raise ValueError(f"data must be 'on_policy', 'replay' or 'offline', got {self.data!r}")
        if self.pairing not in ("all", "random"):
            raise ValueError(f"pairing must be 'all' or 'random', got {self.pairing!r}")
        if self.loss not in ("copg", "pg"):
            raise ValueError(f"loss must be 'copg' or 'pg', got {self.loss!r}")
        if self.pg_baseline not in ("zero", "mean"):
            raise ValueError(f"pg_baseline must be 'zero' or 'mean', got {self.pg_baseline!r}")
        if self.pairs_per_update is not None and self.pairs_per_update < 1:
            raise ValueError(f"pairs_per_update must be >= 1 or None, got {self.pairs_per_update}")
        if self.samples_per_prompt < 2 and self.dataset is None:
            raise ValueError("CoPG contrasts pairs: samples_per_prompt must be >= 2")
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")


class CoPG(Agent):
    name = "copg"
    Config = CoPGConfig
    search_space = {"lr": ("log", 3e-6, 3e-4), "beta": ("log", 0.01, 0.5), "samples_per_prompt": ("choice", [2, 4, 8])}  # lmgym sweep (sweeps/)
    uses_reference = True

    def build(self) -> None:
        self.buffer: deque[list[tuple[list[int], list[int], float]]] = deque(maxlen=self.config.replay_groups)
        self.behaviour = None
        self.offline_groups: list[list[tuple[list[int], list[int], float]]] | None = None
        if self.config.data == "offline" and self.config.dataset is None:
            # the behaviour policy: the initial weights, never updated
            self.behaviour = make_generator(self.reference, backend="hf", tokenizer=self.tokenizer)
        if self.config.dataset is not None:
            self.offline_groups = self._read_dataset(self.config.dataset)

    def _read_dataset(self, path: str) -> list[list[tuple[list[int], list[int], float]]]:
        groups: dict[str, list] = {}
        for row in read_jsonl(path, {"prompt", "completion", "reward"}):
            groups.setdefault(row["prompt"], []).append(row)
        encoded = []
        for prompt, rows in groups.items():
            if len(rows) < 2:
                continue  # nothing to contrast
            prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            encoded.append([(prompt_ids, self.tokenizer(r["completion"], add_special_tokens=False)["input_ids"]
                             + [self.tokenizer.eos_token_id], float(r["reward"])) for r in rows])
        if not encoded:
            raise ValueError(f"{path}: no prompt has two or more scored completions")
        return encoded

    def _collect(self, envs, budget: Budget):
        """This iteration's scored groups, and the batch they came from (for logging)."""
        if self.offline_groups is not None:
            rng = np.random.default_rng([self.config.seed, self.iteration_count, 11])
            chosen = rng.choice(len(self.offline_groups), size=min(self.config.groups_per_update, len(self.offline_groups)),
                                replace=False)
            groups = [self.offline_groups[i] for i in chosen]
            budget.add(sum(map(len, groups)), sum(len(c) for g in groups for _, c, _ in g))
            return groups, None
        batch = self.sample(envs, budget, generator=self.behaviour)
        groups = [[(s.prompt_token_ids, s.token_ids, s.reward) for s in batch.samples[g * batch.n:(g + 1) * batch.n]]
                  for g in range(batch.num_prompts)]
        return groups, batch

    def iteration(self, envs, budget: Budget) -> dict:
        cfg = self.config
        groups, batch = self._collect(envs, budget)
        if cfg.data == "replay":
            self.buffer.extend(groups)
        losses, pair_counts, ratios = [], [], []
        rng = np.random.default_rng([cfg.seed, self.iteration_count, 17])
        for update in range(cfg.updates_per_iteration):
            if cfg.data == "replay":
                pool = list(self.buffer)
                chosen = rng.choice(len(pool), size=min(cfg.groups_per_update, len(pool)), replace=False)
                selected = [pool[i] for i in chosen]
            else:
                selected = groups
            sizes = [len(group) for group in selected]
            pairs = (random_pairs(sizes, rng, cfg.pairs_per_update) if cfg.pairing == "random" else group_pairs(sizes))
            if not pairs:
                raise ValueError("no pair to contrast: every group has a single sample")
            flat = [sample for group in selected for sample in group]
            used = sorted({i for pair in pairs for i in pair})  # the samples in a pair (random pairing may leave some)
            where = {i: j for j, i in enumerate(used)}
            flat = [flat[i] for i in used]
            log_ratios, logprobs = self.sequence_log_ratios([p for p, _, _ in flat], [c for _, c, _ in flat])
            rewards = torch.tensor([r for _, _, r in flat], dtype=log_ratios.dtype, device=log_ratios.device)
            if cfg.loss == "pg":  # every paired sample, no contrast: the uncorrected off-policy gradient
                baseline = rewards.mean() if cfg.pg_baseline == "mean" else 0.0
                loss = biased_off_policy_pg_loss(rewards - baseline, log_ratios, logprobs, cfg.beta)
            else:
                first, second = (torch.tensor([where[i] for i in side], device=log_ratios.device) for side in zip(*pairs))
                loss = copg_loss(rewards[first], rewards[second], log_ratios[first], log_ratios[second], cfg.beta)
            self.optimizer_step(loss)
            losses.append(loss.item())
            pair_counts.append(len(pairs))
            ratios.append(float(log_ratios.detach().mean()))
        self.sync_generator()
        metrics = self.batch_metrics(batch) if batch is not None else {
            "train/reward": float(np.mean([r for g in groups for _, _, r in g]))}
        return {**metrics, "losses/copg": float(np.mean(losses)), "train/pairs": float(np.mean(pair_counts)),
                "train/log_ratio": float(np.mean(ratios))}

    def extra_state(self) -> dict:
        return {"buffer": list(self.buffer)}

    def load_extra_state(self, state: dict) -> None:
        self.buffer.clear()
        self.buffer.extend(state.get("buffer", []))
