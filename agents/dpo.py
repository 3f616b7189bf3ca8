"""Direct Preference Optimization (Rafailov et al. 2023), the offline baseline that "All Roads
Lead to Likelihood" (../shared/PAPERS.md, paper 4) compares against RM + online RL.

For a preference pair (chosen ``y_w``, rejected ``y_l``) of the same prompt, with
``h(y) = log pi(y|x) - log pi_ref(y|x)`` summed over tokens:

    loss = -log sigmoid(beta (h(y_w) - h(y_l)))              (loss="sigmoid", DPO)
    loss = (h(y_w) - h(y_l) - 1 / (2 beta))^2                (loss="ipo", IPO)

Pairs come from a jsonl of ``{"prompt", "chosen", "rejected"}`` rows (``preferences=``; the
budget counts two samples per pair), or are built from scored samples: the n samples of each
prompt give every pair whose rewards differ, the higher-reward one chosen. ``online=False``
(the default, offline DPO) samples from the frozen initial policy and trains on everything
collected so far; ``online=True`` samples from the current policy and trains on the fresh
pairs (online DPO). ``labels="bradley_terry"`` labels scored pairs by sampling, chosen with probability
``sigmoid(R(y) - R(y'))`` (the CoPG paper's IPO baseline); ``pairing="random"`` forms disjoint
random pairs instead of every pair. ``sft_coef`` adds the chosen completions' per-token NLL (Pang et al.
2024's iterative RPO: without it, DPO on reasoning tasks lowers the likelihood of the chosen
answers along with the rejected ones).

Logged: train/reward, train/reward_std_zero_share, losses/dpo, train/pairs, train/dataset,
train/preference_accuracy (share of pairs with h(y_w) > h(y_l)), train/margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from agents.core import Agent, AgentConfig, group_pairs, random_pairs, read_jsonl
from lmgym.generation import make_generator
from lmgym.rollout import Budget


def dpo_loss(log_ratios_chosen, log_ratios_rejected, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean DPO loss; ``label_smoothing`` > 0 is the conservative DPO of Mitchell (2023)."""
    logits = beta * (log_ratios_chosen - log_ratios_rejected)
    return (-(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)).mean()


def ipo_loss(log_ratios_chosen, log_ratios_rejected, tau: float) -> torch.Tensor:
    """IPO (Azar et al. 2023): mean of ``(h_w - h_l - 1/(2 tau))^2``."""
    return (log_ratios_chosen - log_ratios_rejected - 1.0 / (2.0 * tau)).pow(2).mean()


def chosen_nll(sequence_logprobs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """RPO's likelihood term: the chosen completions' mean per-token negative log-likelihood,
    ``mean_i(-log pi(y_w,i | x_i) / |y_w,i|)``."""
    return (-sequence_logprobs / lengths).mean()


def preference_pairs(rewards: list[float], group_sizes: list[int]) -> list[tuple[int, int]]:
    """(chosen, rejected) indices into the flat batch: every within-group pair whose rewards differ."""
    return reward_preferences(rewards, group_pairs(group_sizes))


def reward_preferences(rewards: list[float], pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each pair oriented (chosen, rejected) by its rewards; pairs whose rewards tie are dropped."""
    return [(i, j) if rewards[i] > rewards[j] else (j, i) for i, j in pairs if rewards[i] != rewards[j]]


def bradley_terry_pairs(rewards: list[float], pairs: list[tuple[int, int]], rng: np.random.Generator,
                        scale: float = 1.0) -> list[tuple[int, int]]:
    """(chosen, rejected) for each pair (i, j): i is chosen with probability
    ``sigmoid(scale * (R_i - R_j))`` (Bradley-Terry preferences from a reward; ties are coin flips),
    the labels a preference dataset drawn from a known reward has."""
    out = []
    for i, j in pairs:
        p = 1.0 / (1.0 + np.exp(-scale * (rewards[i] - rewards[j])))
        out.append((i, j) if rng.random() < p else (j, i))
    return out


@dataclass
class DPOConfig(AgentConfig):
    lr: float = 4.369981423046462e-06  # AdamW learning rate of the policy (swept: sweeps/lmgym__Arithmetic-v0/dpo.json)
    warmup_steps: int = 5
    prompts_per_iteration: int = 64
    samples_per_prompt: int = 4
    beta: float = 0.04190646623093171  # DPO's inverse temperature (IPO: tau) (swept: sweeps/lmgym__Arithmetic-v0/dpo.json)
    loss: str = "sigmoid"  # "sigmoid" (DPO) | "ipo"
    label_smoothing: float = 0.0  # > 0: conservative DPO (the share of labels assumed flipped)
    sft_coef: float = 1.0  # > 0: add this times the chosen completions' NLL (RPO / iterative RPO for reasoning) (swept: sweeps/lmgym__Arithmetic-v0/dpo.json)
    online: bool = False  # False: offline DPO on samples of the frozen initial policy
    preferences: str | None = None  # a jsonl of {"prompt", "chosen", "rejected"} pairs to use instead
    updates_per_iteration: int = 1  # optimizer steps per iteration, each on freshly drawn pairs
    pairs_per_update: int = 256  # pairs per optimizer step, drawn from the dataset
    labels: str = "reward"  # scored samples: "reward" (higher reward chosen, ties dropped) | "bradley_terry"
    pairing: str = "all"  # scored samples: "all" (every within-group pair) | "random" (disjoint random pairs)

    def __post_init__(self):
        if self.loss not in ("sigmoid", "ipo"):
            raise ValueError(f"loss must be 'sigmoid' or 'ipo', got {self.loss!r}")
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.labels not in ("reward", "bradley_terry"):
            raise ValueError(f"labels must be 'reward' or 'bradley_terry', got {self.labels!r}")
        if self.pairing not in ("all", "random"):
            raise ValueError(f"pairing must be 'all' or 'random', got {self.pairing!r}")


class DPO(Agent):
    name = "dpo"
    Config = DPOConfig
    search_space = {"lr": ("log", 3e-6, 3e-4), "beta": ("log", 0.03, 0.5), "sft_coef": ("choice", [0.0, 0.5, 1.0])}  # lmgym sweep (sweeps/)
    uses_reference = True

    def build(self) -> None:
        self.pairs: list[tuple[list[int], list[int], list[int]]] = []  # (prompt, chosen, rejected) ids
        self.behaviour = None
        self.file_pairs = None
        if self.config.preferences is not None:
            self.file_pairs = self._read_preferences(self.config.preferences)
            self.file_position = 0
        elif not self.config.online:
            self.behaviour = make_generator(self.reference, backend="hf", tokenizer=self.tokenizer)

    def _read_preferences(self, path: str):
        encode = lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"]
        eos = [self.tokenizer.eos_token_id]
        rows = [(encode(row["prompt"]), encode(row["chosen"]) + eos, encode(row["rejected"]) + eos)
                for row in read_jsonl(path, {"prompt", "chosen", "rejected"})]
        if not rows:
            raise ValueError(f"{path} holds no preference pairs")
        return rows

    def _collect(self, envs, budget: Budget):
        cfg = self.config
        if self.file_pairs is not None:
            take = cfg.prompts_per_iteration
            fresh = [self.file_pairs[(self.file_position + i) % len(self.file_pairs)] for i in range(take)]
            self.file_position += take
            budget.add(2 * take, sum(len(c) + len(r) for _, c, r in fresh))
            return fresh, None
        batch = self.sample(envs, budget, generator=self.behaviour)
        rewards = [s.reward for s in batch.samples]
        sizes = [batch.n] * batch.num_prompts
        rng = np.random.default_rng([cfg.seed, self.iteration_count, 23])
        candidates = random_pairs(sizes, rng) if cfg.pairing == "random" else group_pairs(sizes)
        if cfg.labels == "bradley_terry":
            pairs = bradley_terry_pairs(rewards, candidates, rng)
        else:
            pairs = reward_preferences(rewards, candidates)
        fresh = [(batch.samples[w].prompt_token_ids, batch.samples[w].token_ids, batch.samples[l].token_ids)
                 for w, l in pairs]
        return fresh, batch

    def iteration(self, envs, budget: Budget) -> dict:
        cfg = self.config
        fresh, batch = self._collect(envs, budget)
        self.pairs = fresh if cfg.online else self.pairs + fresh
        metrics = self.batch_metrics(batch) if batch is not None else {}
        metrics.update({"train/pairs": len(fresh), "train/dataset": len(self.pairs)})
        if not self.pairs:
            return metrics
        rng = np.random.default_rng([cfg.seed, self.iteration_count, 19])
        losses, accuracies, margins = [], [], []
        for _ in range(cfg.updates_per_iteration):
            chosen_rows = rng.choice(len(self.pairs), size=min(cfg.pairs_per_update, len(self.pairs)), replace=False)
            selected = [self.pairs[i] for i in chosen_rows]
            prompts = [p for p, _, _ in selected] * 2
            completions = [c for _, c, _ in selected] + [r for _, _, r in selected]
            log_ratios, sequence_logprobs = self.sequence_log_ratios(prompts, completions)
            chosen, rejected = log_ratios[: len(selected)], log_ratios[len(selected):]
            if cfg.loss == "sigmoid":
                loss = dpo_loss(chosen, rejected, cfg.beta, cfg.label_smoothing)
            else:
                loss = ipo_loss(chosen, rejected, tau=cfg.beta)
            if cfg.sft_coef:
                lengths = torch.tensor([len(c) for _, c, _ in selected], dtype=loss.dtype, device=loss.device)
                loss = loss + cfg.sft_coef * chosen_nll(sequence_logprobs[: len(selected)], lengths)
            self.optimizer_step(loss)
            losses.append(loss.item())
            accuracies.append(float((chosen > rejected).float().mean().detach()))
            margins.append(float((chosen - rejected).detach().mean()))
        self.sync_generator()
        return {**metrics, "losses/dpo": float(np.mean(losses)), "train/preference_accuracy": float(np.mean(accuracies)),
                "train/margin": float(np.mean(margins))}

    def extra_state(self) -> dict:
        return {"pairs": self.pairs, "file_position": getattr(self, "file_position", 0)}

    def load_extra_state(self, state: dict) -> None:
        self.pairs = [(list(p), list(c), list(r)) for p, c, r in state["pairs"]]
        self.file_position = state.get("file_position", 0)


def sample_preference_rows(agent: Agent, env_id: str, pairs: int, *, env_kwargs: dict | None = None,
                           split: str = "train", scale: float | None = 5.0, seed: int = 0, start: int = 0,
                           chunk: int = 64) -> list[dict]:
    """A preference dataset drawn from ``agent``'s current policy: two samples (at its training
    temperature) per problem of ``split``, problems in order from ``start``, each pair labelled by
    the task's ground truth (``info["ground_truth"]``): Bradley-Terry with ``scale`` (the first
    chosen with probability ``sigmoid(scale (g1 - g2))``), or, with ``scale=None``, the higher
    ground truth chosen (held-out pairs for measuring a reward's accuracy). Pairs whose ground
    truths tie carry no preference and are skipped, so the dataset has exactly ``pairs`` rows.

    Each row: ``prompt`` (the text the policy conditioned on, what ``DPOConfig.preferences``
    reads), ``question`` (the problem as the task's reward model sees it), ``chosen``,
    ``rejected``, their ground truths and the problem's index."""
    import gymnasium as gym

    from lmgym.rollout import rollout

    if pairs < 1:
        raise ValueError(f"pairs must be >= 1, got {pairs}")
    envs = gym.make_vec(env_id, num_envs=2 * chunk, split=split, **(env_kwargs or {}))
    size = envs.unwrapped.num_problems
    rng = np.random.default_rng([seed, 29])
    rows, index, draws = [], start, 0
    while len(rows) < pairs:
        if index - start >= size:
            raise ValueError(f"{env_id} {split} has too few problems with distinct samples for {pairs} pairs")
        indices = [(index + i) % size for i in range(chunk)]
        batch = rollout(envs, agent.generator, n=2, indices=indices, seed=seed * 1_000_003 + draws,
                        temperature=agent.config.temperature, top_p=agent.config.top_p,
                        max_tokens=agent.config.max_new_tokens, prefix=agent.prompt_prefix(), suffix=agent.prompt_suffix())
        index, draws = index + chunk, draws + 1
        for g in range(len(indices)):
            a, b = batch.samples[2 * g], batch.samples[2 * g + 1]
            ga, gb = (float(s.info.get("ground_truth", s.reward)) for s in (a, b))
            if ga == gb:
                continue
            first = rng.random() < 1.0 / (1.0 + np.exp(-scale * (ga - gb))) if scale is not None else ga > gb
            chosen, rejected = (a, b) if first else (b, a)
            prompt = agent.tokenizer.decode(a.prompt_token_ids)
            if agent.tokenizer(prompt, add_special_tokens=False)["input_ids"] != list(a.prompt_token_ids):
                raise ValueError("the policy's prompt ids do not survive decode/encode: the pairs' prompts would differ "
                                 "from what it conditioned on")
            rows.append({"prompt": prompt, "question": a.prompt, "chosen": chosen.completion,
                         "rejected": rejected.completion,
                         "chosen_ground_truth": ga if first else gb, "rejected_ground_truth": gb if first else ga,
                         "problem_index": a.problem_index})
            if len(rows) == pairs:
                break
    envs.close()
    return rows


@torch.no_grad()
def implicit_reward_accuracy(agent: Agent, rows: list[dict], batch_size: int = 128) -> float:
    """DPO's implicit reward ``h(y) = log pi(y|x) - log pi_ref(y|x)`` as a preference classifier:
    the share of ``rows`` (:func:`sample_preference_rows`) whose chosen completion has the higher
    ``h``. ``agent`` must hold a reference (``uses_reference``)."""
    if agent.reference is None:
        raise ValueError(f"{agent.name} keeps no reference model: its implicit reward is undefined")
    encode = lambda text: agent.tokenizer(text, add_special_tokens=False)["input_ids"]
    eos = [agent.tokenizer.eos_token_id]
    wins = []
    agent._evaluating = True  # not training compute
    try:
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            prompts = [encode(r["prompt"]) for r in part] * 2
            completions = [encode(r["chosen"]) + eos for r in part] + [encode(r["rejected"]) + eos for r in part]
            ratios, _ = agent.sequence_log_ratios(prompts, completions)
            wins += (ratios[: len(part)] > ratios[len(part):]).tolist()
    finally:
        agent._evaluating = False
    return float(np.mean(wins)) if wins else float("nan")
