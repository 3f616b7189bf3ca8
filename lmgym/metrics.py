"""Evaluation metrics as pure functions, shared by agents, the benchmark runner and users.

- :func:`pass_at_k`: the unbiased estimator of Chen et al. 2021 (HumanEval paper, eq. 1):
  ``1 - C(n - c, k) / C(n, k)`` for ``n`` samples of which ``c`` are correct.
- :func:`maj_at_k`: majority vote over the first ``k`` samples' answers (ties broken by first
  occurrence, as in self-consistency). Give it the verifier's canonical answers
  (``info["canonical_answer"]``), so that "18", "18.0" and "$18" are one vote.
- :func:`vanishing_gradient_share`: the share of prompts whose reward standard deviation under
  the policy is below a threshold (Razin et al. 2024, ../shared/PAPERS.md paper 2): their
  expected policy gradient is near zero however wrong the policy is.
- :func:`outcome_shares`: that share split by cause: ``solved`` (every sample correct),
  ``stuck`` (every sample wrong), and the rest, ``mixed``. Both ends have no gradient, for
  opposite reasons.

Statistics across seeds (intervals, IQM, ranking) are in :mod:`lmgym.stats`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["EVALUATE_MATH", "maj_at_k", "outcome_shares", "pass_at_k", "reward_std_per_prompt", "vanishing_gradient_share"]


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Probability that at least one of ``k`` samples drawn without replacement from ``n`` with
    ``c`` correct is correct: ``1 - C(n-c, k) / C(n, k)``, computed stably as a product."""
    if not 0 <= num_correct <= num_samples:
        raise ValueError(f"need 0 <= num_correct <= num_samples, got c={num_correct}, n={num_samples}")
    if not 1 <= k <= num_samples:
        raise ValueError(f"need 1 <= k <= num_samples, got k={k}, n={num_samples}")
    if num_samples - num_correct < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    return float(1.0 - np.prod(1.0 - k / np.arange(num_samples - num_correct + 1, num_samples + 1)))


def maj_at_k(answers: Sequence[Hashable | None], correct: Sequence[bool], k: int) -> float:
    """1.0 if the most frequent non-None answer among the first ``k`` is a correct one, else 0.0.

    ``answers[i]`` is sample i's extracted answer (None when none was found: it never votes),
    ``correct[i]`` whether sample i was scored correct.
    """
    if len(answers) != len(correct):
        raise ValueError("answers and correct must have the same length")
    if not 1 <= k <= len(answers):
        raise ValueError(f"need 1 <= k <= {len(answers)}, got k={k}")
    votes = Counter(a for a in answers[:k] if a is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    winner = next(a for a in answers[:k] if a is not None and votes[a] == top)  # first to reach the top count
    return float(any(c for a, c in zip(answers[:k], correct[:k]) if a == winner))


def reward_std_per_prompt(rewards: np.ndarray) -> np.ndarray:
    """``(num_prompts, n)`` rewards -> the (population) standard deviation per prompt."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 2 or rewards.shape[1] < 2:
        raise ValueError(f"need (num_prompts, n >= 2) rewards, got shape {rewards.shape}")
    return rewards.std(axis=1)


def vanishing_gradient_share(rewards: np.ndarray, threshold: float = 1e-3) -> float:
    """Share of prompts whose reward std under the policy is at most ``threshold``."""
    return float(np.mean(reward_std_per_prompt(rewards) <= threshold))


def outcome_shares(correct: np.ndarray) -> dict[str, float]:
    """``(num_prompts, n)`` booleans -> the shares of prompts with every sample correct
    (``solved``), none correct (``stuck``) and some (``mixed``); they sum to 1."""
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim != 2 or correct.shape[0] == 0:
        raise ValueError(f"need (num_prompts > 0, n) booleans, got shape {correct.shape}")
    solved, stuck = correct.all(axis=1).mean(), (~correct).all(axis=1).mean()
    return {"solved": float(solved), "stuck": float(stuck), "mixed": float(1.0 - solved - stuck)}


def regularised_value(metrics: dict, beta: float, prefix: str = "test") -> float:
    """The KL-regularised objective ``E_pi[R] - beta KL(pi || pi_ref)`` that pi* ∝ pi_ref exp(R / beta)
    maximises, from an agent's sampled evaluation (``Agent.evaluate_samples``): its sampled mean
    reward and its per-sequence KL estimate on the same samples. Greedy decoding cannot measure it."""
    for key in (f"{prefix}/sampled_mean_reward", f"{prefix}/kl_to_reference"):
        if key not in metrics:
            raise KeyError(f"{key} missing: evaluate with eval_k >= 2 (sampled) and the KL estimate on")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    return float(metrics[f"{prefix}/sampled_mean_reward"] - beta * metrics[f"{prefix}/kl_to_reference"])


# The same metrics as a Hugging Face `evaluate` module: evaluate.load(EVALUATE_MATH)
EVALUATE_MATH = str(Path(__file__).with_name("evaluate_modules") / "lmgym_math.py")
