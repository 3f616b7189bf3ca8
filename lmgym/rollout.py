"""Environments + a generator -> scored trajectories, with budget accounting.

:func:`rollout` takes a vector env of ``P * n`` sub-envs, puts the same problem in each group
of ``n`` consecutive sub-envs, samples ``n`` completions per prompt in one generator call,
and scores all ``P * n`` of them in one batched ``step``. Every :class:`Sample` carries the
sampled token ids and the sampler's log-probs (never re-tokenized text), so a trainer can
compute importance ratios and check the sampler against its own log-probs.

Budgets are counted in generated samples and tokens, as the papers count them, never in
wall time (:class:`Budget`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmgym.generation.generator import Generator
from lmgym.vector import LMVectorEnv

__all__ = ["Budget", "RolloutBatch", "Sample", "rollout"]


@dataclass
class Sample:
    prompt: str
    prompt_token_ids: list[int]
    completion: str
    token_ids: list[int]  # as sampled (EOS included when emitted)
    logprobs: list[float]  # the sampler's log pi(token | prefix), one per token id
    finish_reason: str
    reward: float
    info: dict
    group: int  # samples of the same prompt share a group
    problem_index: int


@dataclass
class RolloutBatch:
    samples: list[Sample]
    num_prompts: int
    n: int

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    @property
    def num_tokens(self) -> int:
        """Generated tokens (the prompt tokens are not counted)."""
        return sum(len(s.token_ids) for s in self.samples)

    @property
    def rewards(self) -> np.ndarray:
        return np.array([s.reward for s in self.samples], dtype=np.float64)

    def grouped_rewards(self) -> np.ndarray:
        """``(num_prompts, n)`` rewards: row g holds the n samples of prompt g."""
        return self.rewards.reshape(self.num_prompts, self.n)


@dataclass
class Budget:
    """A sample/token/feedback budget (``None`` = unlimited), and what has been spent of it.

    ``queries`` counts calls to the environment's reward (feedback). A rollout scores every
    sample, so it charges one query per sample; an agent that chooses which samples to score
    (the joint reward-policy agent) charges only those, and ``max_queries`` bounds them.
    """

    max_samples: int | None = None
    max_tokens: int | None = None
    samples: int = 0
    tokens: int = 0
    history: list[tuple[int, int]] = field(default_factory=list)  # (samples, tokens) after each charge
    max_queries: int | None = None
    queries: int = 0

    def __post_init__(self):
        for name in ("max_samples", "max_tokens", "max_queries"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive number or None, got {value}")

    def charge(self, batch: RolloutBatch) -> None:
        self.add(batch.num_samples, batch.num_tokens)
        self.query(batch.num_samples)

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
            (self.max_samples is not None and self.samples >= self.max_samples)
            or (self.max_tokens is not None and self.tokens >= self.max_tokens)
            or (self.max_queries is not None and self.queries >= self.max_queries)
        )

    def state_dict(self) -> dict[str, Any]:
        return {"max_samples": self.max_samples, "max_tokens": self.max_tokens, "samples": self.samples,
                "tokens": self.tokens, "history": list(self.history), "max_queries": self.max_queries,
                "queries": self.queries}

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
    **sampling: Any,
) -> RolloutBatch:
    """Sample ``n`` completions for each of ``envs.num_envs // n`` prompts and score them.

    Args:
        envs: a vector env from ``gym.make_vec("lmgym/...", num_envs=P * n)``.
        generator: any :class:`~lmgym.generation.generator.Generator`.
        n: completions per prompt (consecutive sub-envs form a group).
        indices: the P problem indices to use (in order; e.g. the test split for evaluation);
            by default each group's first sub-env draws the next problem of its seeded order.
        seed: seeds the problem order (on the first call) and the sampler.
        budget: charged with the samples and tokens generated.
        prefix: text the generator sees before every prompt (e.g. a return-conditioning
            token); ``Sample.prompt_token_ids`` are the ids actually conditioned on.
        suffix: text the generator sees after every prompt, right before the completion.
        **sampling: ``temperature``, ``top_p``, ``max_tokens``, ``stop`` for the generator.
    """
    vec = envs.unwrapped
    if not isinstance(vec, LMVectorEnv):
        raise TypeError(f"rollout needs an lmgym vector env (gym.make_vec('lmgym/...')), got {type(vec).__name__}")
    if n < 1 or vec.num_envs % n:
        raise ValueError(f"num_envs={vec.num_envs} must be a multiple of n={n}")
    num_prompts = vec.num_envs // n
    if indices is not None and len(indices) != num_prompts:
        raise ValueError(f"got {len(indices)} indices for {num_prompts} prompts (num_envs / n)")

    group_indices = []
    for g in range(num_prompts):
        leader = vec.envs[g * n]
        if indices is not None:
            leader.reset(options={"index": int(indices[g])})
        elif leader.needs_reset:
            first = leader.problem is None
            leader.reset(seed=seed + g * n if (first and seed is not None) else None)
        # else: SAME_STEP autoreset after the last rollout already drew the leader's next problem
        group_indices.append(leader.problem.index)
        for follower in vec.envs[g * n + 1 : (g + 1) * n]:
            follower.reset(options={"index": leader.problem.index})

    prompts = [vec.envs[g * n].prompt for g in range(num_prompts)]
    generations = generator.generate([prefix + p + suffix for p in prompts], n=n, seed=seed, **sampling)
    completions = [c for generation in generations for c in generation.completions]
    _, rewards, _, _, infos = vec.step([c.text for c in completions])
    final_infos = _unbatch(infos.get("final_info", {}), vec.num_envs)

    samples = []
    for i, completion in enumerate(completions):
        g = i // n
        samples.append(
            Sample(
                prompt=prompts[g],
                prompt_token_ids=generations[g].prompt_token_ids,
                completion=completion.text,
                token_ids=completion.token_ids,
                logprobs=completion.logprobs,
                finish_reason=completion.finish_reason,
                reward=float(rewards[i]),
                info=final_infos[i],
                group=g,
                problem_index=group_indices[g],
            )
        )
    batch = RolloutBatch(samples, num_prompts, n)
    if budget is not None:
        budget.charge(batch)
    return batch


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
