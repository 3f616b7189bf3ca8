"""Wrappers that change how an lmgym task is presented to an agent.

:class:`TokenLevel` turns a sequence-level :class:`~lmgym.core.LMEnv` into a token MDP, for
algorithms that need per-token credit (PPO with a value head, dense rewards).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lmgym.core import LMEnv

__all__ = ["TokenLevel"]


class TokenLevel(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """The same task as a token-level MDP.

    - **observation**: ``np.ndarray`` of int64 token ids, the prompt followed by the tokens
      generated so far (``spaces.Sequence(Discrete(vocab_size), stack=True)``).
    - **action**: one token id (``Discrete(vocab_size)``).
    - **reward**: sparse by default: 0 on every token, the task's sequence reward on the last.
      When the task is dense (e.g. ``gym.make(..., dense=True)`` for math), each token also
      pays the step rewards whose text it completes; the rewards of an episode always sum to
      the sequence-level reward of the same completion.
    - **termination**: ``terminated`` when the action is the EOS token; ``truncated`` after
      ``max_new_tokens`` tokens. Either way the completion (EOS excluded) is scored.

    ``info`` of the last step is the sequence-level info plus ``completion`` (the decoded
    text) and ``completion_ids``.

    Args:
        env: an lmgym env (``gym.make("lmgym/...")``).
        tokenizer: a Hugging Face tokenizer (any object with ``__call__``/``decode``/
            ``eos_token_id``/``__len__`` works).
        max_new_tokens: episode length limit.
        vocab_size: the size of the action space; default ``len(tokenizer)``. Pass the model's
            ``config.vocab_size`` when its embedding matrix is padded past the tokenizer (ids
            beyond the tokenizer decode to nothing).
    """

    def __init__(self, env: gym.Env, tokenizer: Any, max_new_tokens: int = 256, vocab_size: int | None = None):
        gym.utils.RecordConstructorArgs.__init__(self, tokenizer=tokenizer, max_new_tokens=max_new_tokens,
                                                 vocab_size=vocab_size)
        gym.Wrapper.__init__(self, env)
        if not isinstance(env.unwrapped, LMEnv):
            raise TypeError(f"TokenLevel wraps an lmgym LMEnv, got {type(env.unwrapped).__name__}")
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos_token_id; TokenLevel needs one to end episodes")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.tokenizer, self.max_new_tokens = tokenizer, max_new_tokens
        if vocab_size is not None and vocab_size < len(tokenizer):
            raise ValueError(f"vocab_size={vocab_size} is smaller than the tokenizer's {len(tokenizer)} tokens")
        self.vocab_size = len(tokenizer) if vocab_size is None else int(vocab_size)
        self.observation_space = spaces.Sequence(spaces.Discrete(self.vocab_size), stack=True)
        self.action_space = spaces.Discrete(self.vocab_size)
        self._prompt_ids: list[int] = []
        self._completion_ids: list[int] | None = None
        self._paid = 0.0

    @property
    def task(self):
        return self.env.unwrapped.task

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        prompt, info = self.env.reset(seed=seed, options=options)
        self._prompt_ids = list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        self._completion_ids, self._paid = [], 0.0
        return self._observation(), info

    def step(self, action: int):
        if self._completion_ids is None:
            raise gym.error.ResetNeeded("call reset() before step()" if not self._prompt_ids else "the episode is over: call reset()")
        if isinstance(action, bool) or not isinstance(action, (int, np.integer)) or not 0 <= action < self.vocab_size:
            raise ValueError(f"action must be a token id in [0, {self.vocab_size}), got {action!r}")
        action = int(action)
        terminated = action == self.tokenizer.eos_token_id
        if not terminated:
            self._completion_ids.append(action)
        truncated = not terminated and len(self._completion_ids) >= self.max_new_tokens
        completion = self.tokenizer.decode(self._completion_ids, skip_special_tokens=True)

        if terminated or truncated:
            _, total, _, _, info = self.env.step(completion)
            reward = total - self._paid  # whatever the dense steps have not paid yet
            info = dict(info, completion=completion, completion_ids=list(self._completion_ids))
            observation = self._observation()
            self._completion_ids = None
            return observation, reward, terminated, truncated, info

        reward = 0.0
        if getattr(self.task, "dense", False):
            # Pay step rewards whose number is followed by another character: finished.
            earned = sum(r for end, r in self.task.step_events(self.env.unwrapped.problem, completion) if end < len(completion))
            reward, self._paid = earned - self._paid, earned
        return self._observation(), reward, False, False, {}

    def _observation(self) -> np.ndarray:
        return np.asarray(self._prompt_ids + (self._completion_ids or []), dtype=np.int64)
