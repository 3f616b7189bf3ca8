"""Return-Conditioned RL (decision-transformer style; Chen et al. 2021), as run for LM reasoning
in Havrilla et al. 2024 (../shared/PAPERS.md, paper 1): label every sample with a return token,
fine-tune on all labelled samples, and act conditioned on the best return.

Sparse rewards: the label is ``good_label`` when the reward reaches ``reward_threshold``, else
``bad_label``. Dense (continuous) rewards: ``return_bins > 0`` discretizes the reward into that
many equal-width bins over ``[return_low, return_high]``, labelled ``"[r0] "`` ... and the agent
acts conditioned on the top bin. A label is text, so any tokenizer works without new embeddings.

Where the label goes matters for small models (measurements: README.md, "Agents"):

- ``label_position="completion"`` (default): between the prompt and the completion, where the
  first answer token is predicted, so the model reads the label directly.
- ``label_position="prompt"``: before the prompt, as decision transformers put the return. The
  label has to travel through attention from the far end, which lmgym's tiny model did not
  learn to use.

Each round fine-tunes for ``epochs`` over every labelled sample so far (the paper's choice;
identical label/prompt/completion triples once, as ExIt de-duplicates; the most recent
``max_dataset`` kept). ``balance_labels`` weighs each label's samples equally in the loss: with
few good samples, plain fine-tuning is dominated by the bad label, and a small model cannot
keep that from leaking into its good-conditioned behaviour.

Logged: train/reward, train/reward_std_zero_share, train/good_share, train/dataset, losses/sft.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from agents.core import Agent, AgentConfig
from lmgym.rollout import Budget

LABEL_POSITIONS = ("completion", "prompt")


@dataclass
class RCRLConfig(AgentConfig):
    lr: float = 1.8973254808225412e-05  # AdamW learning rate of the policy (swept: sweeps/lmgym__Arithmetic-v0/rcrl.json)
    warmup_steps: int = 10
    prompts_per_iteration: int = 128
    samples_per_prompt: int = 4
    good_label: str = "G "  # the label of samples whose reward reaches reward_threshold (acted on)
    bad_label: str = "B "  # the label of the others
    label_position: str = "completion"  # "completion": right before the completion; "prompt": before the prompt
    reward_threshold: float = 1.0  # sparse labels: good at or above this reward
    return_bins: int = 0  # > 0: discretized-return labels for dense rewards
    return_low: float = 0.0  # return_bins: the lowest bin's lower edge
    return_high: float = 1.5  # return_bins: the highest bin's upper edge
    balance_labels: bool = True  # every label weighs the same in the loss, however many samples it has
    epochs: int = 1  # passes over the labelled dataset each round (swept: sweeps/lmgym__Arithmetic-v0/rcrl.json)
    minibatch_size: int = 128  # sequences per optimizer step
    max_dataset: int = 2048  # keep the most recent labelled samples (swept: sweeps/lmgym__Arithmetic-v0/rcrl.json)
    unconditioned_rounds: int = 0  # first rounds sample without a label (for a policy that cannot read one yet)


def return_label(reward: float, cfg: RCRLConfig) -> str:
    """The conditioning text for a sample's return."""
    if cfg.return_bins <= 0:
        return cfg.good_label if reward >= cfg.reward_threshold else cfg.bad_label
    fraction = (reward - cfg.return_low) / (cfg.return_high - cfg.return_low)
    return f"[r{int(np.clip(fraction * cfg.return_bins, 0, cfg.return_bins - 1))}] "


def label_weights(labels: list[str]) -> list[float]:
    """Per-sample loss weights under which every label's samples weigh the same in total; they
    average 1, so the loss keeps its scale. ``["G", "B", "B", "B"]`` -> ``[2, 2/3, 2/3, 2/3]``."""
    counts = Counter(labels)
    return [len(labels) / (len(counts) * counts[label]) for label in labels]


class RCRL(Agent):
    name = "rcrl"
    Config = RCRLConfig
    search_space = {"lr": ("log", 1e-5, 1e-3), "max_dataset": ("choice", [2048, 4096, 8192]), "epochs": ("choice", [1, 2])}  # lmgym sweep (sweeps/)

    def build(self) -> None:
        if self.config.label_position not in LABEL_POSITIONS:
            raise ValueError(f"label_position must be one of {LABEL_POSITIONS}, got {self.config.label_position!r}")
        self.dataset: list[tuple[list[int], list[int], str]] = []  # (prompt ids with label, completion ids, label)
        self.seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
        self._label_ids: dict[str, list[int]] = {}

    def best_label(self) -> str:
        cfg = self.config
        return cfg.good_label if cfg.return_bins <= 0 else f"[r{cfg.return_bins - 1}] "

    def prompt_prefix(self) -> str:
        return self.best_label() if self.config.label_position == "prompt" else ""

    def prompt_suffix(self) -> str:
        return self.best_label() if self.config.label_position == "completion" else ""

    def label_ids(self, label: str) -> list[int]:
        """A label's token ids, tokenized on its own: the generator joins it to the prompt by
        ids (``Generator.encode``), so with any tokenizer a sampled prompt's last (or first)
        ``len(label_ids)`` ids are the label and the rest are the env prompt's own."""
        if label not in self._label_ids:
            self._label_ids[label] = self.tokenizer(label, add_special_tokens=False)["input_ids"]
        return self._label_ids[label]

    def labelled(self, prompt_ids: list[int], label: str) -> list[int]:
        """The env prompt's ids with ``label``'s ids where ``label_position`` puts them."""
        ids = self.label_ids(label)
        return ids + prompt_ids if self.config.label_position == "prompt" else prompt_ids + ids

    def iteration(self, envs, budget: Budget) -> dict:
        cfg = self.config
        conditioned = self.iteration_count >= cfg.unconditioned_rounds
        batch = self.sample(envs, budget, prefix=self.prompt_prefix() if conditioned else "",
                            suffix=self.prompt_suffix() if conditioned else "")
        acted_on = len(self.label_ids(self.best_label())) if conditioned else 0
        good = 0
        for s in batch.samples:
            ids = s.prompt_token_ids  # the env prompt's own ids, as sampled, without the label acted on
            ids = ids[acted_on:] if cfg.label_position == "prompt" else ids[: len(ids) - acted_on]
            label = return_label(s.reward, cfg)
            good += label == self.best_label()
            example = (self.labelled(list(ids), label), list(s.token_ids))
            key = (tuple(example[0]), tuple(example[1]))
            if key not in self.seen:
                self.seen.add(key)
                self.dataset.append((*example, label))
        if len(self.dataset) > cfg.max_dataset:
            for prompt_ids, completion_ids, _ in self.dataset[: -cfg.max_dataset]:
                self.seen.discard((tuple(prompt_ids), tuple(completion_ids)))
            self.dataset = self.dataset[-cfg.max_dataset :]
        weights = label_weights([label for _, _, label in self.dataset]) if cfg.balance_labels else None
        loss = self.fit([(p, c) for p, c, _ in self.dataset], cfg.epochs, cfg.minibatch_size, weights)
        return {**self.batch_metrics(batch), "train/good_share": good / len(batch.samples),
                "train/dataset": len(self.dataset), "losses/sft": loss}

    def extra_state(self) -> dict:
        return {"dataset": self.dataset}

    def load_extra_state(self, state: dict) -> None:
        if state["dataset"] and len(state["dataset"][0]) != 3:
            raise ValueError("this RC-RL checkpoint predates stored labels (lmgym <= the tag-free default model); "
                             "delete it to start the run again")
        self.dataset = [(list(p), list(c), label) for p, c, label in state["dataset"]]
        self.seen = {(tuple(p), tuple(c)) for p, c, _ in self.dataset}
