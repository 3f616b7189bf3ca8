"""The environment contract every lmgym task shares.

A *task* is data + prompt + reward (:class:`Task`); an *environment* is a task behind the
Gymnasium contract (:class:`LMEnv`). Adding a task means one ``Task`` subclass and one
``register`` line in ``lmgym/__init__.py``.

Sequence-level episodes (the default):

- **observation**: the prompt, a ``str`` (:class:`UnicodeText` space). It never contains
  the reference answer.
- **action**: the completion, a ``str``. ``step`` scores it.
- **reward**: the task's score for the completion (1.0/0.0 for exact-answer tasks).
- **termination**: after one step (``terminated=True``); multi-turn tasks override this.
- **info** (from ``step``): what a researcher needs to debug a reward: the extracted answer,
  why it scored what it did, the reference answer (the episode is over by then), and
  ``ground_truth``: the score by the task's exact judge (the verified answer, all unit tests
  passing, the key facts; see each task). It equals the reward unless the reward is a proxy:
  dense shaping, a learned reward model (``judge="reward_model"``), or ``reward_fn=``.
  Evaluation reports both, so a policy that games its training reward shows up as a gap.

Training on a proxy: ``gym.make(id, reward_fn=f)`` pays ``f(prompts, completions)`` (a list of
floats; a callable or ``"module:function"``) as the reward instead of the task's score, which
stays in ``info["ground_truth"]``; the proxy sees what a reward model sees, never the reference.

Bad input, documented:

- ``step`` before ``reset`` or after the episode ended: ``gymnasium.error.ResetNeeded``.
- a non-``str`` action (``bytes`` included: decode it first): ``TypeError``.
- an action longer than ``max_completion_chars`` (default 65,536): reward 0,
  ``info["error"] = "completion too long: ..."``; it is not scored, so a 10 MB action costs
  microseconds.
- an action that is not valid Unicode (lone surrogates, e.g. from
  ``bytes.decode(errors="surrogateescape")``): reward 0, ``info["error"]``.
- an unknown ``split``: ``ValueError``; a missing local data path: ``FileNotFoundError``.
- ``reset(options={"index": i})`` with ``i`` out of range: ``IndexError``.
"""

from __future__ import annotations

import importlib
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lmgym.data import stable_bucket  # noqa: F401  (re-exported: tasks hash problems into splits)

__all__ = ["LMEnv", "Problem", "Task", "UnicodeText", "check_completion", "load_object", "stable_bucket"]

DEFAULT_MAX_PROMPT_CHARS = 32_768
DEFAULT_MAX_COMPLETION_CHARS = 65_536
_SAMPLE_CHARSET = string.ascii_letters + string.digits + string.punctuation + " \n"


class UnicodeText(spaces.Text):
    """A ``Text`` space that contains any valid Unicode string within its length bounds.

    ``gymnasium.spaces.Text`` only contains strings drawn from an explicit charset, so real
    prompts (GSM8K has ``’``, ``€``, ...) would fall outside any practical one. This space
    samples from printable ASCII (so ``sample()`` stays cheap and readable) but ``contains``
    accepts every string that encodes to UTF-8, i.e. everything except lone surrogates.
    """

    def __init__(self, max_length: int, *, min_length: int = 0, seed: int | np.random.Generator | None = None):
        super().__init__(max_length, min_length=min_length, charset=_SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length and is_valid_unicode(x)

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, UnicodeText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )


def is_valid_unicode(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_completion(completion: Any, max_chars: int) -> str | None:
    """Validate one action. Raises on caller bugs; returns an error message for bad model output."""
    if not isinstance(completion, str):
        hint = " (decode bytes first)" if isinstance(completion, (bytes, bytearray)) else ""
        raise TypeError(f"action must be a str completion, got {type(completion).__name__}{hint}")
    if len(completion) > max_chars:
        return f"completion too long: {len(completion)} chars > max_completion_chars={max_chars}"
    if not is_valid_unicode(completion):
        return "completion is not valid Unicode (lone surrogate code points)"
    return None


def score_completions(task: Task, problems: Sequence[Problem], prompts: Sequence[str], completions: Sequence[str],
                      reward_fn: Callable | None = None) -> list[tuple[float, dict]]:
    """``task.score_batch`` plus the ground truth: every info gets ``ground_truth`` (the task's
    own when it sets one, else the reward) and, where the problem belongs to one of the task's
    named subsets (``meta["subset"]``), ``subset``; with ``reward_fn`` the reward is the proxy's
    score on ``(prompts, completions)``."""
    scored = task.score_batch(problems, completions)
    for problem, (reward, info) in zip(problems, scored):
        info.setdefault("ground_truth", float(reward))
        if "subset" in problem.meta:  # a task's named subsets (e.g. Arithmetic's relabelled share)
            info["subset"] = problem.meta["subset"]
    if reward_fn is None or not scored:
        return scored
    proxy = [float(r) for r in reward_fn(list(prompts), list(completions))]
    if len(proxy) != len(scored):
        raise ValueError(f"reward_fn returned {len(proxy)} rewards for {len(scored)} completions")
    return [(r, info) for r, (_, info) in zip(proxy, scored)]


def load_object(path: str) -> Any:
    """Import ``"package.module:attr"``."""
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@dataclass(frozen=True)
class Problem:
    """One problem of a split. ``answer`` and ``solution`` never reach an observation."""

    index: int  # position in the split's source order: reset(options={"index": index})
    question: str
    answer: Any  # the reference the scorer compares against
    solution: str | None = None  # a worked reference solution (few-shot exemplars, SFT)
    meta: dict = field(default_factory=dict)  # task-specific data for the scorer (not shown)


class Task:
    """Data + prompt + reward. Subclass it, then register an id whose entry point is
    ``lmgym.core:LMEnv`` with ``kwargs={"task": "your.module:YourTask"}``.

    Subclasses set ``name`` and ``plain_template`` and implement ``num_problems``,
    ``problem`` and ``score_batch``.
    """

    name: str = "task"
    # Splits never share a problem. Training draws from "train"; tuning, early stopping and
    # checkpoint choice use "validation"; "test" is for the final number only.
    splits: tuple[str, ...] = ("train", "validation", "test")
    default_split: str = "train"
    # Multi-turn tasks: up to ``max_turns`` steps per episode; see LMEnv.finish_step.
    max_turns: int = 1
    turn_penalty: float = 0.0
    # How a question becomes a prompt with the "plain" template; "{question}" is substituted.
    plain_template: str = "Question: {question}\nAnswer:"
    # The instruction that precedes the question in the "chat" template.
    chat_instruction: str = "Solve the problem. Finish with a line '#### <answer>'."

    def num_problems(self, split: str) -> int:
        raise NotImplementedError

    def problem(self, split: str, index: int) -> Problem:
        raise NotImplementedError

    def score_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[tuple[float, dict]]:
        """Score completions in one call; returns ``(reward, info)`` per completion."""
        raise NotImplementedError

    def pretrain_solution(self, problem: Problem, rng) -> str:
        """What lmgym's tiny models are pretrained to answer (``rng``: a ``random.Random``):
        the reference solution; a task may draw something else (the bandit draws an arm)."""
        return problem.solution or str(problem.answer)

    def chat_messages(self, problem: Problem) -> list[dict]:
        """The problem as chat messages (the ``"chat"`` template, and the trainers' adapters in
        :mod:`lmgym.integrations`, whose trainers apply the chat template themselves)."""
        return [{"role": "user", "content": f"{self.chat_instruction}\n\n{problem.question}"}]

    def format_exemplar(self, problem: Problem) -> str:
        """A solved problem as it appears in a few-shot prompt."""
        return self.plain_template.format(question=problem.question) + " " + (problem.solution or str(problem.answer))

    def feedback(self, problem: Problem, completion: str, reward: float, info: dict) -> str | None:
        """Multi-turn tasks: the feedback that continues the episode, or None to end it."""
        return None

    def next_prompt(self, prompt: str, completion: str, feedback: str) -> str:
        """Multi-turn tasks: the next observation after ``feedback``."""
        return f"{prompt}{completion}\n\n{feedback}\n"

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r} for {self.name}: choose one of {list(self.splits)}")


# --- prompt templates ---------------------------------------------------------------------


def build_template(
    task: Task, template: str | Callable[[Problem], str], *, tokenizer: Any = None, num_shots: int = 4
) -> Callable[[Problem], str]:
    """Turn a template spec into ``problem -> prompt``.

    ``"plain"``: the task's own format. ``"few-shot"``: ``num_shots`` solved problems from the
    start of the train split, then the question. ``"chat"``: the tokenizer's chat template
    with the task's instruction (``tokenizer`` is a tokenizer or a name/path for
    ``AutoTokenizer``). A ``str`` containing ``{question}`` is a custom format; a callable is
    used as it is.
    """
    if callable(template):
        return template
    if template == "plain":
        fmt = task.plain_template
        return lambda problem: fmt.format(question=problem.question)
    if template == "few-shot":
        if num_shots < 1:
            raise ValueError(f"num_shots must be >= 1 for the few-shot template, got {num_shots}")
        shots = [task.problem("train", i) for i in range(num_shots)]
        header = "\n\n".join(task.format_exemplar(shot) for shot in shots) + "\n\n"
        fmt = task.plain_template
        return lambda problem: header + fmt.format(question=problem.question)
    if template == "chat":
        if tokenizer is None:
            raise ValueError("prompt_template='chat' needs tokenizer=<a tokenizer, or its name or path>")
        if isinstance(tokenizer, str):
            from transformers import AutoTokenizer

            from lmgym.hub import resolve

            tokenizer = AutoTokenizer.from_pretrained(resolve(tokenizer))  # "smollm2-135m", a folder or a hub id
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"{type(tokenizer).__name__} has no chat_template; use prompt_template='plain'")

        def chat(problem: Problem) -> str:
            return tokenizer.apply_chat_template(task.chat_messages(problem), tokenize=False, add_generation_prompt=True)

        return chat
    if isinstance(template, str) and "{question}" in template:
        return lambda problem: template.format(question=problem.question)
    raise ValueError(
        f"unknown prompt_template {template!r}: use 'plain', 'few-shot', 'chat', a format string "
        "with '{question}', or a callable(problem) -> str"
    )


class ProblemOrder:
    """The order in which ``reset()`` visits a split: reproducible from the env's ``np_random``.

    Finite splits are visited in shuffled epochs (every problem once per epoch); splits too
    large to permute (procedural streams) are sampled uniformly.
    """

    _MAX_PERMUTED = 1 << 22

    def __init__(self, size: int, rng: np.random.Generator):
        self.size, self.rng = size, rng
        self._permutation: np.ndarray | None = None
        self._position = 0

    def next(self) -> int:
        if self.size > self._MAX_PERMUTED:
            return int(self.rng.integers(self.size))
        if self._permutation is None or self._position == self.size:
            self._permutation, self._position = self.rng.permutation(self.size), 0
        index = int(self._permutation[self._position])
        self._position += 1
        return index


# --- the environment ----------------------------------------------------------------------


class LMEnv(gym.Env[str, str]):
    """A language task as a Gymnasium environment (see the module docstring for the contract).

    Args:
        task: a :class:`Task`, or ``"module:Class"`` to build one from ``task_kwargs``.
        split: ``"train"``, ``"validation"`` or ``"test"`` (default: the task's ``default_split``, ``"train"``
            except for test-only sets such as HumanEval).
        prompt_template: ``"plain"``, ``"few-shot"``, ``"chat"``, a format string or a callable.
        tokenizer: for the ``"chat"`` template.
        num_shots: exemplars in the ``"few-shot"`` template.
        max_completion_chars: longer actions score 0 with ``info["error"]``.
        reward_fn: a proxy reward paid instead of the task's score (module docstring).
        **task_kwargs: passed to the task class (e.g. ``digits=3`` for Arithmetic).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        task: Task | str,
        split: str | None = None,
        prompt_template: str | Callable[[Problem], str] = "plain",
        tokenizer: Any = None,
        num_shots: int = 4,
        max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS,
        render_mode: str | None = None,
        reward_fn: str | Callable | None = None,
        **task_kwargs: Any,
    ):
        if isinstance(task, str):
            task = load_object(task)(**task_kwargs)
        elif task_kwargs:
            raise TypeError(f"unexpected keyword arguments for a ready-made task: {sorted(task_kwargs)}")
        split = task.default_split if split is None else split
        task.check_split(split)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.task, self.split, self.render_mode = task, split, render_mode
        self.max_completion_chars = max_completion_chars
        self.reward_fn = load_object(reward_fn) if isinstance(reward_fn, str) else reward_fn
        self.prompt_for = build_template(task, prompt_template, tokenizer=tokenizer, num_shots=num_shots)
        self.num_problems = task.num_problems(split)
        self.observation_space = UnicodeText(DEFAULT_MAX_PROMPT_CHARS, min_length=1)
        self.action_space = UnicodeText(max_completion_chars)
        self._order: ProblemOrder | None = None
        self.problem: Problem | None = None  # the current problem; None before reset
        self.prompt: str | None = None
        self._done = True
        self.turn = 0
        self._last: tuple[str, float, dict] | None = None

    @property
    def needs_reset(self) -> bool:
        """True before the first reset and after an episode ended."""
        return self._done

    # reset / step -------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        if seed is not None or self._order is None:
            self._order = ProblemOrder(self.num_problems, self.np_random)
        options = options or {}
        unknown = set(options) - {"index"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; supported: 'index'")
        if "index" in options:
            index = options["index"]
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise TypeError(f"options['index'] must be an int, got {type(index).__name__}")
            if not 0 <= index < self.num_problems:
                raise IndexError(f"index {index} out of range for split {self.split!r} of {self.num_problems} problems")
            index = int(index)
        else:
            index = self._order.next()
        self.problem = self.task.problem(self.split, index)
        self.prompt = self.prompt_for(self.problem)
        self._done, self._last, self.turn = False, None, 1
        return self.prompt, {"index": index, "split": self.split}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        error = self.begin_step(action)
        if error is None:
            reward, info = score_completions(self.task, [self.problem], [self.prompt], [action], self.reward_fn)[0]
        else:
            reward, info = 0.0, {"error": error}
        return self.finish_step(action, reward, info)

    # The two halves of `step`, so that a vector env can score many completions in one
    # batched call between them.

    def begin_step(self, action: Any) -> str | None:
        if self._done:
            raise gym.error.ResetNeeded(
                "call reset() before step()" if self.problem is None else "the episode is over: call reset()"
            )
        return check_completion(action, self.max_completion_chars)

    def finish_step(self, action: str, reward: float, info: dict) -> tuple[str, float, bool, bool, dict]:
        """Multi-turn tasks (``task.max_turns > 1``): while turns remain and the task has
        feedback for the attempt, the episode continues: the next observation is
        ``task.next_prompt(prompt, action, feedback)``, the reward is ``-task.turn_penalty``
        and ``info["score"]`` holds the attempt's score. The final turn pays the score.
        An observation that would outgrow the observation space truncates the episode."""
        info["index"], info["split"] = self.problem.index, self.split
        info["turn"] = self.turn
        info.setdefault("ground_truth", float(reward))  # an unscored (invalid) action: 0
        self._last = (action, reward, info)
        if self.turn < self.task.max_turns:
            feedback = self.task.feedback(self.problem, action, reward, info)
            if feedback is not None:
                next_prompt = self.task.next_prompt(self.prompt, action, feedback)
                info["score"], info["feedback"] = reward, feedback
                if len(next_prompt) > self.observation_space.max_length:
                    self._done = True
                    info["reference_answer"] = self.problem.answer
                    return self.prompt, float(reward), False, True, info
                self.prompt, self.turn = next_prompt, self.turn + 1
                return self.prompt, -float(self.task.turn_penalty), False, False, info
        self._done = True
        info["reference_answer"] = self.problem.answer
        return self.prompt, float(reward), True, False, info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.prompt is None:
            return None
        text = f"[{self.task.name} {self.split}#{self.problem.index}]\n{self.prompt}"
        if self._last is not None:
            completion, reward, info = self._last
            text += f"{completion}\n-> reward {reward} ({info.get('reason', info.get('error', ''))})"
        return text
