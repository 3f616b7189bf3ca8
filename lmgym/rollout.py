"""Environments + a generator -> scored trajectories, with budget accounting.

The one path from an env to an agent and back, for training and evaluation alike:

1. ``envs.reset(options={"index": [...]})`` puts problem ``indices[g]`` in the ``n``
   consecutive sub-envs of group ``g``;
2. the generator samples ``n`` completions for each group's prompt in one call;
3. ``envs.step(completions)`` scores them all in one batched call;
4. multi-turn tasks: while some episodes go on, the generator answers each running episode's
   new observation and ``envs.step`` scores those answers (sub-envs whose episode has ended
   get the action ``None``: not stepped, see :mod:`lmgym.vector`).

Everything goes through the vector env's public ``reset``/``step``, so vector wrappers (reward
transforms, relabelling, ...) are honoured in training and in evaluation. :func:`evaluate` is
the same rollout over an evaluation split at temperature 0 (or with ``k`` samples).

Every :class:`Sample` carries the sampled token ids and the sampler's log-probs (never
re-tokenized text), so a trainer can compute importance ratios and check the sampler against
its own log-probs. Budgets are counted in generated samples and tokens, as the papers count
them, never in wall time (:class:`Budget`); :meth:`Budget.prompts_left` is the one place where
the last rollout is shrunk to what is left.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmgym.generation.generator import Generation, Generator
from lmgym.vector import LMVectorEnv

__all__ = ["Budget", "RolloutBatch", "Sample", "evaluate", "rollout", "start"]


@dataclass
class Sample:
    """One episode. Its fields are those of the episode's last turn, except ``reward``, the
    episode's return; a multi-turn episode's earlier turns are in ``previous``."""

    prompt: str  # the observation answered (without the agent's prefix/suffix)
    prompt_token_ids: list[int]  # the ids actually conditioned on (prefix and suffix included)
    completion: str
    token_ids: list[int]  # as sampled (EOS included when emitted)
    logprobs: list[float]  # the sampler's log pi(token | prefix), one per token id
    finish_reason: str
    reward: float  # the episode's return: the sum of its steps' rewards
    info: dict  # the last step's info
    group: int  # samples of the same prompt share a group
    problem_index: int
    previous: list[Sample] = field(default_factory=list)  # earlier turns, oldest first (reward: that step's)

    @property
    def turns(self) -> list[Sample]:
        return [*self.previous, self]

    @property
    def num_tokens(self) -> int:
        """Generated tokens over every turn."""
        return sum(len(turn.token_ids) for turn in self.turns)


@dataclass
class RolloutBatch:
    samples: list[Sample]
    num_prompts: int
    n: int
    num_queries: int = 0  # steps scored by the environment (feedback asked for)

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    @property
    def num_tokens(self) -> int:
        """Generated tokens (the prompt tokens are not counted), over every turn."""
        return sum(s.num_tokens for s in self.samples)

    @property
    def rewards(self) -> np.ndarray:
        return np.array([s.reward for s in self.samples], dtype=np.float64)

    def grouped_rewards(self) -> np.ndarray:
        """``(num_prompts, n)`` rewards: row g holds the n samples of prompt g."""
        return self.rewards.reshape(self.num_prompts, self.n)


class BudgetSpent(Exception):
    """Raised when the next rollout cannot take even one whole group: the budget is closed."""


@dataclass
class Budget:
    """A sample/token/feedback budget (``None`` = unlimited), and what has been spent of it.

    ``queries`` counts calls to the environment's reward (feedback). A rollout scores every
    sample, so it charges one query per sample; an agent that chooses which samples to score
    (the joint reward-policy agent) charges only those, and ``max_queries`` bounds them.

    ``trained_tokens`` counts completion tokens behind the optimizer steps (the agent reports
    them after each iteration); ``max_trained_tokens`` caps training compute as ``max_samples``
    caps data. Like every limit it is checked between iterations: the iteration that crosses
    it finishes.
    """

    max_samples: int | None = None
    max_tokens: int | None = None
    samples: int = 0
    tokens: int = 0
    history: list[tuple[int, int]] = field(default_factory=list)  # (samples, tokens) after each charge
    max_queries: int | None = None
    queries: int = 0
    max_trained_tokens: int | None = None
    trained_tokens: int = 0
    closed: bool = False  # set when less than one whole group of samples was left (see prompts_left)

    def __post_init__(self):
        for name in ("max_samples", "max_tokens", "max_queries", "max_trained_tokens"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive number or None, got {value}")

    def charge(self, batch: RolloutBatch) -> None:
        self.add(batch.num_samples, batch.num_tokens)
        self.query(batch.num_queries)

    def prompts_left(self, prompts: int, n: int, queries_per_prompt: int | None = None) -> int:
        """How many of ``prompts`` groups of ``n`` samples the next rollout may take: all of
        them, or what is left of the sample (and, with ``queries_per_prompt``, the query)
        budget in whole groups, rounded down, so a sample or query budget is never exceeded.
        0 when not even one group is left: the run ends there (:meth:`close`; fewer than ``n``
        samples stay unspent)."""
        if self.max_samples is not None:
            prompts = min(prompts, (self.max_samples - self.samples) // n)
        if self.max_queries is not None and queries_per_prompt:
            prompts = min(prompts, (self.max_queries - self.queries) // queries_per_prompt)
        return max(prompts, 0)

    def close(self) -> None:
        """End the run: what is left is less than one group."""
        self.closed = True

    def take_prompts(self, prompts: int, n: int, queries_per_prompt: int | None = None) -> int:
        """:meth:`prompts_left`, for a rollout about to happen: when not one group fits, the
        budget is closed and :class:`BudgetSpent` raised (the agent loop ends the run there)."""
        prompts = self.prompts_left(prompts, n, queries_per_prompt)
        if prompts == 0:
            self.close()
            raise BudgetSpent(f"{(self.max_samples or 0) - self.samples} samples left, fewer than a group of {n}")
        return prompts

    def add(self, samples: int, tokens: int) -> None:
        """Charge samples and tokens that did not come from a rollout (e.g. SFT examples)."""
        self.samples += samples
        self.tokens += tokens
        self.history.append((self.samples, self.tokens))

    def query(self, count: int) -> None:
        """Charge ``count`` reward queries (feedback from the environment)."""
        self.queries += count

    @property
    def exhausted(self) -> bool:
        return (
            self.closed
            or (self.max_samples is not None and self.samples >= self.max_samples)
            or (self.max_tokens is not None and self.tokens >= self.max_tokens)
            or (self.max_queries is not None and self.queries >= self.max_queries)
            or (self.max_trained_tokens is not None and self.trained_tokens >= self.max_trained_tokens)
        )

    def state_dict(self) -> dict[str, Any]:
        return {"max_samples": self.max_samples, "max_tokens": self.max_tokens, "samples": self.samples,
                "tokens": self.tokens, "history": list(self.history), "max_queries": self.max_queries,
                "queries": self.queries, "max_trained_tokens": self.max_trained_tokens,
                "trained_tokens": self.trained_tokens, "closed": self.closed}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Budget:
        return cls(**{**state, "history": [tuple(h) for h in state["history"]]})


def rollout(
    envs,
    generator: Generator,
    n: int = 1,
    *,
    indices: Sequence[int] | None = None,
    seed: int | None = None,
    budget: Budget | None = None,
    prefix: str = "",
    suffix: str = "",
    score: Callable[[list[Sample]], Sequence[bool]] | None = None,
    **sampling: Any,
) -> RolloutBatch:
    """Sample ``n`` completions for each of ``P`` problems and score them through ``envs``.

    Args:
        envs: a vector env from ``gym.make_vec("lmgym/...", num_envs=N)``, wrapped or not,
            with ``N >= P * n``; sub-envs beyond ``P * n`` sit this rollout out.
        generator: any :class:`~lmgym.generation.generator.Generator`.
        n: completions per prompt (consecutive sub-envs form a group).
        indices: the ``P`` problem indices (in order; e.g. a split's first problems for
            evaluation). By default ``P = N // n`` problems drawn from the env's seeded order.
        seed: seeds the problem order (on the first call) and the sampler.
        budget: charged with the samples, tokens and reward queries.
        prefix: text the generator sees before every prompt (e.g. a return-conditioning
            token), joined by ids (:meth:`Generator.encode`); ``Sample.prompt_token_ids`` are
            the ids actually conditioned on.
        suffix: text the generator sees after every prompt, right before the completion.
        score: single-turn tasks: given the unscored samples, which ones to send to the
            env's reward (the others get reward ``nan`` and cost no query). Default: all.
        **sampling: ``temperature``, ``top_p``, ``max_tokens``, ``stop`` for the generator.
    """
    vec = envs.unwrapped
    if not isinstance(vec, LMVectorEnv):
        raise TypeError(f"rollout needs an lmgym vector env (gym.make_vec('lmgym/...')), got {type(vec).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if indices is None:
        if vec.num_envs % n:
            raise ValueError(f"num_envs={vec.num_envs} must be a multiple of n={n}")
        indices = _draw_indices(envs, vec, n, seed)
    indices = [int(i) for i in indices]
    num_prompts, used = len(indices), len(indices) * n

    # 1. every sub-env of group g starts problem indices[g]
    prompts = start(envs, indices, n)
    # 2. n completions per prompt in one generator call
    generations = generator.generate(prompts, n=n, seed=seed, prefix=prefix, suffix=suffix, **sampling)
    running = list(range(used))
    samples = [_sample(prompts[i // n], generations[i // n], generations[i // n].completions[i % n], i // n,
                       indices[i // n]) for i in running]
    if score is not None:
        chosen = list(score(samples))
        if len(chosen) != used:
            raise ValueError(f"score() must return one bool per sample ({used}), got {len(chosen)}")
        running = [i for i in running if chosen[i]]
    returns = [float("nan")] * used  # unscored samples keep nan
    for i in running:
        returns[i] = 0.0
    queries, turn = 0, 0
    while running:
        # 3. one batched step scores every running episode's answer; the others sit out
        actions: list[str | None] = [None] * vec.num_envs
        for i in running:
            actions[i] = samples[i].completion
        observations, rewards, terminated, truncated, infos = envs.step(actions)
        queries += len(running)
        ended = terminated | truncated
        step_infos = _unbatch(infos, vec.num_envs)
        final_infos = _unbatch(infos.get("final_info", {}), vec.num_envs)
        for i in running:
            returns[i] += float(rewards[i])
            samples[i].reward = float(rewards[i])
            samples[i].info = final_infos[i] if ended[i] else step_infos[i]
        running = [i for i in running if not ended[i]]
        if not running:
            break
        # 4. multi-turn: answer each running episode's new observation
        turn += 1
        generations = generator.generate([observations[i] for i in running], n=1, prefix=prefix, suffix=suffix,
                                         seed=None if seed is None else seed + turn, **sampling)
        for i, generation in zip(running, generations):
            earlier = samples[i]
            samples[i] = _sample(observations[i], generation, generation.completions[0], earlier.group,
                                 earlier.problem_index)
            samples[i].previous = [*earlier.previous, dataclasses.replace(earlier, previous=[])]
    for sample, episode_return in zip(samples, returns):
        sample.reward = episode_return
    batch = RolloutBatch(samples, num_prompts, n, num_queries=queries)
    if budget is not None:
        budget.charge(batch)
    return batch


def start(envs, indices: Sequence[int], n: int = 1) -> list[str]:
    """Reset ``envs`` so that the ``n`` consecutive sub-envs of group ``g`` hold problem
    ``indices[g]`` (sub-envs past ``len(indices) * n`` repeat the first one and sit the step
    out); returns each group's prompt."""
    num_envs = envs.unwrapped.num_envs
    if not 1 <= len(indices) * n <= num_envs:
        raise ValueError(f"got {len(indices)} indices x n={n}: needs 1 to {num_envs // n} indices for {num_envs} sub-envs")
    observations, _ = envs.reset(options={"index": [int(indices[min(i // n, len(indices) - 1)]) for i in range(num_envs)]})
    return [observations[g * n] for g in range(len(indices))]


def _draw_indices(envs, vec: LMVectorEnv, n: int, seed: int | None) -> list[int]:
    """The next problem of each group leader's seeded order (seeded on the first call)."""
    first = vec.envs[0].problem is None
    _, infos = envs.reset(seed=seed if first else None)
    return [int(index) for index in infos["index"][::n]]


def _sample(prompt: str, generation: Generation, completion, group: int, problem_index: int) -> Sample:
    return Sample(prompt=prompt, prompt_token_ids=generation.prompt_token_ids, completion=completion.text,
                  token_ids=completion.token_ids, logprobs=completion.logprobs,
                  finish_reason=completion.finish_reason, reward=0.0, info={}, group=group,
                  problem_index=problem_index)


def evaluate(
    envs,
    generator: Generator,
    *,
    problems: int | None = None,
    k: int = 1,
    prefix: str = "",
    suffix: str = "",
    seed: int | None = None,
    progress: Callable[[int], Any] | None = None,
    **sampling: Any,
) -> RolloutBatch:
    """The first ``problems`` problems of ``envs``' split (all by default), ``k`` completions
    each: :func:`rollout` over them in order, ``envs.num_envs // k`` problems at a time
    (``progress(n)`` after each chunk of ``n`` problems, e.g. a tqdm bar's ``update``).
    Greedy (``temperature=0``) unless ``sampling`` says otherwise. Sample groups are problems."""
    vec = envs.unwrapped
    if not isinstance(vec, LMVectorEnv):
        raise TypeError(f"evaluate needs an lmgym vector env (gym.make_vec('lmgym/...')), got {type(vec).__name__}")
    total = vec.num_problems if problems is None else min(problems, vec.num_problems)
    per_rollout = vec.num_envs // k
    if per_rollout < 1:
        raise ValueError(f"num_envs={vec.num_envs} is fewer than k={k}")
    sampling.setdefault("temperature", 0.0)
    samples: list[Sample] = []
    queries = 0
    for first in range(0, total, per_rollout):
        batch = rollout(envs, generator, k, indices=range(first, min(first + per_rollout, total)), seed=seed,
                        prefix=prefix, suffix=suffix, **sampling)
        for sample in batch.samples:
            sample.group += first
        samples += batch.samples
        queries += batch.num_queries
        if progress is not None:
            progress(batch.num_prompts)
    return RolloutBatch(samples, total, k, num_queries=queries)


def _unbatch(infos: dict, num_envs: int) -> list[dict]:
    """Gymnasium's vector info (``{key: array, "_key": mask}``) back to one dict per sub-env."""
    rows: list[dict] = [{} for _ in range(num_envs)]
    for key, values in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get(f"_{key}", np.ones(num_envs, dtype=bool))
        if isinstance(values, dict):
            for i, sub in enumerate(_unbatch(values, num_envs)):
                if mask[i]:
                    rows[i][key] = sub
            continue
        for i in range(num_envs):
            if mask[i]:
                value = values[i]
                rows[i][key] = value.item() if isinstance(value, np.generic) else value
    return rows
