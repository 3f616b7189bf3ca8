"""lmgym's tasks in the trainers people already use.

- :mod:`lmgym.integrations.trl`: any lmgym id as a ``datasets.Dataset`` of prompts and a reward
  function in TRL's calling convention (``GRPOTrainer``, ``RLOOTrainer``, ...).
- :mod:`lmgym.integrations.verl`: the same ids as verl's parquet files and a ``compute_score``
  for verl's ``custom_reward_function`` (per item, or batched for ``reward_manager=batch``).

Both score with :class:`EnvScorer`: the env's own task, template, completion checks and reward
(the exact verifier, the sandbox, a judge or the env's reward model), one batched scoring call
per batch, the task built once per process and shared by every caller. The reference never
leaves lmgym: a dataset row carries only the prompt, the env id and the problem's split and
index, and the scorer looks the problem up, so nothing a trainer logs or a policy sees holds an
answer or a unit test.

Single-turn only: a multi-turn env (``*-Feedback-v0``) is scored on its first attempt, as a
trainer that generates one completion per prompt sees it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["EnvScorer", "scorer", "completion_text", "family"]

_SCORERS: dict[str, EnvScorer] = {}
_LOCK = threading.Lock()


def _key(env_id: str, env_kwargs: dict) -> str:
    return json.dumps([env_id, env_kwargs], sort_keys=True, default=str)


def scorer(env_id: str, **env_kwargs: Any) -> EnvScorer:
    """The process-wide :class:`EnvScorer` for ``env_id`` with these kwargs (built on first use:
    a code env's sandbox, a judge's model are loaded once, not once per call)."""
    key = _key(env_id, env_kwargs)
    with _LOCK:
        if key not in _SCORERS:
            _SCORERS[key] = EnvScorer(env_id, **env_kwargs)
        return _SCORERS[key]


def completion_text(completion: Any) -> Any:
    """A trainer's completion as text: a string as it is; a conversational completion (a list of
    messages, as TRL passes for chat datasets) as the content of its last assistant message.
    Anything else is returned unchanged, for the env's own check to reject."""
    if isinstance(completion, list) and completion and all(isinstance(m, dict) for m in completion):
        return str(completion[-1].get("content", ""))
    return completion


def family(task) -> str:
    """The task family (``math``, ``code``, ``summarization``, ``bandit``) from its module."""
    return type(task).__module__.rsplit(".", 1)[-1]


class EnvScorer:
    """Score completions for problems of ``env_id`` (addressed by split and index) exactly as
    ``env.step`` would: the env's completion check (over-long or invalid text scores 0 with
    ``info["error"]``), its task's batched ``score_batch`` and, where the env pays a proxy
    (``reward_fn``, e.g. a learned reward model), that proxy with the ground truth in
    ``info["ground_truth"]``."""

    def __init__(self, env_id: str, **env_kwargs: Any):
        import gymnasium as gym

        import lmgym  # noqa: F401  (registers the ids)
        from lmgym.core import LMEnv

        if env_id not in gym.registry:
            raise ValueError(f"unknown env id {env_id!r}: not registered by this lmgym")
        env = gym.make(env_id, **env_kwargs).unwrapped
        if not isinstance(env, LMEnv):
            raise TypeError(f"{env_id} is not a text env ({type(env).__name__})")
        self.env_id, self.env_kwargs, self.env = env_id, dict(env_kwargs), env
        self.task, self.family = env.task, family(env.task)
        self.calls = 0  # batched scoring calls made (one per trainer batch)
        self._lock = threading.Lock()

    def num_problems(self, split: str) -> int:
        self.task.check_split(split)
        return self.task.num_problems(split)

    def problem(self, split: str, index: int):
        size = self.num_problems(split)
        if isinstance(index, bool) or not 0 <= int(index) < size:
            raise IndexError(f"index {index} out of range for split {split!r} of {self.env_id} ({size} problems)")
        return self.task.problem(split, int(index))

    def score(self, splits: Sequence[str], indices: Sequence[int], completions: Sequence[Any]) -> list[tuple[float, dict]]:
        """``(reward, info)`` per completion, in one scoring call for all valid ones."""
        from lmgym.core import check_completion, score_completions

        if not len(splits) == len(indices) == len(completions):
            raise ValueError(f"{len(completions)} completions for {len(indices)} indices and {len(splits)} splits")
        problems = [self.problem(split, index) for split, index in zip(splits, indices)]
        texts = [completion_text(c) for c in completions]
        errors = [check_completion(text, self.env.max_completion_chars) for text in texts]
        valid = [i for i, error in enumerate(errors) if error is None]
        with self._lock:  # a trainer's reward threads share one task (and its sandbox)
            scored = score_completions(self.task, [problems[i] for i in valid],
                                       [self.env.prompt_for(problems[i]) for i in valid],
                                       [texts[i] for i in valid], self.env.reward_fn) if valid else []
            self.calls += 1
        results: list[tuple[float, dict]] = [(0.0, {"error": error, "ground_truth": 0.0}) for error in errors]
        for i, (reward, info) in zip(valid, scored):
            results[i] = (float(reward), info)
        for (_, info), split, problem in zip(results, splits, problems):
            info["split"], info["index"] = split, problem.index
        return results
