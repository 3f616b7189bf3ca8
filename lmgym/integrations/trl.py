"""Any lmgym id in TRL: a ``datasets.Dataset`` of prompts and a reward function in TRL's calling
convention (``GRPOTrainer(reward_funcs=..., train_dataset=...)``, ``RLOOTrainer``, any trainer
that calls ``reward_func(prompts=, completions=, **dataset_columns)``)::

    from trl import GRPOConfig, GRPOTrainer
    from lmgym.integrations.trl import dataset, reward_function

    train = dataset("lmgym/TinyCode-v0", split="train", num_problems=2048, seed=0)
    trainer = GRPOTrainer(model=..., reward_funcs=reward_function("lmgym/TinyCode-v0"),
                          args=GRPOConfig(...), train_dataset=train)

Columns: ``prompt`` (the env's prompt string, or with ``conversational=True`` the task's chat
messages, for TRL to apply the model's chat template), ``lmgym_env``, ``lmgym_split`` and
``lmgym_index``: the reward looks the problem up by those, so no answer or unit test is in the
dataset. The reward scores a whole batch in one call (a code env's programs fan out to the
sandbox's workers; a judge runs one forward pass) with the env's own reward, so what TRL
optimises is what ``env.step`` pays. Rows of another env (a mixed dataset with one reward
function per env) get ``None``, TRL's "not mine". Through TRL's ``log_metric`` it logs the mean
ground truth, the share of rejected completions and the task's numeric ``info`` means
(``<name>/<key>``); through ``log_extra`` a compact ``info`` per completion for TRL's completions
table; the full infos of the last batch are in ``reward.last_infos``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from lmgym.integrations import EnvScorer, scorer

__all__ = ["dataset", "reward_function", "TRLReward"]

# splits larger than this are procedural streams: name how many problems to draw
_MAX_WHOLE_SPLIT = 1_000_000


def dataset(env_id: str, split: str = "train", *, num_problems: int | None = None, seed: int = 0,
            conversational: bool = False, **env_kwargs: Any):
    """``num_problems`` problems of ``split`` as a ``datasets.Dataset`` for TRL.

    ``num_problems=None``: the whole split in its source order (finite splits only). Otherwise
    the problems are drawn reproducibly from ``seed`` the way ``env.reset`` visits a split:
    shuffled epochs of a finite split, uniform draws from a procedural one. ``env_kwargs`` go to
    ``gym.make`` (task options, ``prompt_template``, ``tokenizer``); pass the same ones to
    :func:`reward_function`.
    """
    from datasets import Dataset

    from lmgym.core import ProblemOrder

    env = scorer(env_id, **env_kwargs)
    size = env.num_problems(split)
    if num_problems is None:
        if size > _MAX_WHOLE_SPLIT:
            raise ValueError(f"split {split!r} of {env_id} is procedural ({size:,} problems): pass num_problems=")
        indices = list(range(size))
    else:
        if num_problems < 1:
            raise ValueError(f"num_problems must be >= 1, got {num_problems}")
        order = ProblemOrder(size, np.random.default_rng(seed))
        indices = [order.next() for _ in range(num_problems)]
    prompts = []
    for index in indices:
        problem = env.task.problem(split, index)
        prompts.append(env.task.chat_messages(problem) if conversational else env.env.prompt_for(problem))
    return Dataset.from_dict({"prompt": prompts, "lmgym_env": [env_id] * len(indices),
                              "lmgym_split": [split] * len(indices), "lmgym_index": indices})


def reward_function(env_id: str, **env_kwargs: Any) -> TRLReward:
    """The reward of ``env_id`` (with the same ``env_kwargs`` as its :func:`dataset`) for TRL."""
    return TRLReward(scorer(env_id, **env_kwargs))


def _numeric(value: Any) -> bool:
    return isinstance(value, (bool, int, float, np.number)) and math.isfinite(float(value))


class TRLReward:
    """A TRL reward function over one lmgym env (see the module docstring)."""

    def __init__(self, env_scorer: EnvScorer):
        self.scorer = env_scorer
        # TRL names the reward's logged columns after __name__
        self.__name__ = "lmgym_" + env_scorer.env_id.split("/")[-1].replace("-", "_")
        self.last_infos: list[dict | None] = []

    def __call__(self, prompts=None, completions=None, lmgym_split=None, lmgym_index=None, lmgym_env=None,
                 log_metric=None, log_extra=None, **_: Any) -> list[float | None]:
        if completions is None or lmgym_split is None or lmgym_index is None:
            raise ValueError("the lmgym reward needs the dataset's lmgym_split and lmgym_index columns: "
                             "build the dataset with lmgym.integrations.trl.dataset")
        mine = [i for i in range(len(completions)) if lmgym_env is None or lmgym_env[i] == self.scorer.env_id]
        scored = self.scorer.score([lmgym_split[i] for i in mine], [lmgym_index[i] for i in mine],
                                   [completions[i] for i in mine])
        rewards: list[float | None] = [None] * len(completions)
        self.last_infos = [None] * len(completions)
        for i, (reward, info) in zip(mine, scored):
            rewards[i], self.last_infos[i] = reward, info
        if log_metric is not None and scored:
            infos = [info for _, info in scored]
            log_metric(f"{self.__name__}/ground_truth", float(np.mean([info["ground_truth"] for info in infos])))
            log_metric(f"{self.__name__}/rejected_share", float(np.mean(["error" in info for info in infos])))
            judged = [info for info in infos if "error" not in info]  # what the task itself scored
            keys = set.intersection(*(set(info) for info in judged)) - {"ground_truth", "index", "turn"} if judged else set()
            for key in sorted(keys):
                if all(_numeric(info[key]) for info in judged):
                    log_metric(f"{self.__name__}/{key}", float(np.mean([float(info[key]) for info in judged])))
        if log_extra is not None:
            log_extra(f"{self.__name__}_info", ["" if info is None else _compact(info) for info in self.last_infos])
        return rewards


def _compact(info: dict, limit: int = 300) -> str:
    """One line of an info for TRL's completions table (per-test details dropped)."""
    text = json.dumps({k: v for k, v in info.items() if k not in ("tests", "split", "index")}, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
