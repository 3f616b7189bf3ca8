"""``lmgym/Bandit-v0``: the toy bandit of the Contrastive Policy Gradient paper
(Flet-Berliac et al. 2024; ../shared/PAPERS.md, paper 3), as an LM environment.

One prompt; the action is a completion whose first non-blank character names an arm
(``"A"``, ``"B"``, ``"C"`` by default); the reward is that arm's (2.5, 2, 1). A completion that
names no arm scores ``invalid_reward`` (0) with ``info["error"]``. With a uniform reference
policy and ``beta = 0.5``, the KL-regularised optimum

    pi* = argmax_pi E_pi[R] - beta KL(pi || pi_ref),   pi*(a) ∝ pi_ref(a) exp(R(a) / beta)

is (0.705, 0.259, 0.035) (:meth:`BanditTask.optimal_policy`). The paper learns it from
off-policy pairs: ``y`` from (0.1, 0.2, 0.7) and ``y'`` from (0.05, 0.05, 0.9)
(:meth:`BanditTask.sample_pairs`), where CoPG reaches pi* and IPO and the policy gradient
without importance weights do not (tests/agents/test_agents_ii.py shows it with lmgym's losses).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmgym.core import Problem, Task

PAPER_BEHAVIOUR = ((0.1, 0.2, 0.7), (0.05, 0.05, 0.9))


class BanditTask(Task):
    """A k-armed bandit with a known reward and reference policy.

    Args:
        rewards: the reward of each arm.
        arms: the arm names, one character each.
        reference: the reference policy (default: uniform).
        beta: the KL coefficient of the optimum reported in ``info`` and by ``optimal_policy``.
        invalid_reward: the reward of a completion that names no arm.
    """

    name = "Bandit"
    plain_template = "{question}"
    chat_instruction = "Answer with the letter of one arm."

    def __init__(
        self,
        rewards: Sequence[float] = (2.5, 2.0, 1.0),
        arms: str | Sequence[str] = "ABC",
        reference: Sequence[float] | None = None,
        beta: float = 0.5,
        invalid_reward: float = 0.0,
    ):
        self.rewards = np.asarray(rewards, dtype=np.float64)
        self.arms = list(arms)
        if len(self.arms) != len(self.rewards) or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"need one distinct arm name per reward: {self.arms} vs {list(self.rewards)}")
        if any(len(arm) != 1 or arm.isspace() for arm in self.arms):
            raise ValueError(f"arm names must be single non-blank characters, got {self.arms}")
        k = len(self.rewards)
        self.reference = np.full(k, 1.0 / k) if reference is None else np.asarray(reference, dtype=np.float64)
        if self.reference.shape != (k,) or (self.reference <= 0).any() or not np.isclose(self.reference.sum(), 1.0):
            raise ValueError(f"reference must be a positive distribution over {k} arms, got {reference}")
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        self.beta, self.invalid_reward = beta, invalid_reward
        names = ", ".join(self.arms[:-1]) + f" or {self.arms[-1]}"
        best = self.arms[int(np.argmax(self.rewards))]
        self._problem = Problem(index=0, question=f"Choose an arm: {names}.\nArm:", answer=best, solution=" " + best)

    def pretrain_solution(self, problem: Problem, rng) -> str:
        """What lmgym's tiny bandit model is pretrained to answer (``rng``: a ``random.Random``):
        an arm drawn from the paper's first behaviour policy (0.1, 0.2, 0.7), so the shipped
        model starts far from pi* and its greedy choice is the worst arm."""
        weights = PAPER_BEHAVIOUR[0] if len(self.arms) == 3 else self.reference
        return " " + rng.choices(self.arms, weights=weights)[0]

    @property
    def best_reward(self) -> float:
        return float(self.rewards.max())

    def num_problems(self, split: str) -> int:
        self.check_split(split)
        return 1

    def problem(self, split: str, index: int) -> Problem:
        self.check_split(split)
        if index != 0:
            raise IndexError(index)
        return self._problem

    def arm_of(self, completion: str) -> int | None:
        text = completion.lstrip()
        return self.arms.index(text[0]) if text and text[0] in self.arms else None

    def score_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[tuple[float, dict]]:
        results = []
        for completion in completions:
            arm = self.arm_of(completion)
            if arm is None:
                results.append((self.invalid_reward, {"arm": None, "error": "the completion names no arm"}))
            else:
                results.append((float(self.rewards[arm]), {"arm": self.arms[arm]}))
        return results

    def optimal_policy(self, beta: float | None = None, reference: Sequence[float] | None = None) -> np.ndarray:
        """The KL-regularised optimum pi*(a) ∝ pi_ref(a) exp(R(a) / beta), in closed form."""
        beta = self.beta if beta is None else beta
        reference = self.reference if reference is None else np.asarray(reference, dtype=np.float64)
        logits = np.log(reference) + self.rewards / beta
        weights = np.exp(logits - logits.max())
        return weights / weights.sum()

    def regularised_value(self, policy: Sequence[float], beta: float | None = None) -> float:
        """E_pi[R] - beta KL(pi || pi_ref): what pi* maximises."""
        beta = self.beta if beta is None else beta
        policy = np.asarray(policy, dtype=np.float64)
        support = policy > 0
        kl = float(np.sum(policy[support] * np.log(policy[support] / self.reference[support])))
        return float(policy @ self.rewards) - beta * kl

    def sample_pairs(self, n: int, behaviour: Sequence[Sequence[float]] = PAPER_BEHAVIOUR, seed: int = 0):
        """``n`` off-policy pairs: arms ``y`` from ``behaviour[0]``, ``y'`` from ``behaviour[1]``,
        and their rewards: ``(y, y_prime, r, r_prime)`` as numpy arrays."""
        rng = np.random.default_rng(seed)
        k = len(self.rewards)
        y = rng.choice(k, size=n, p=np.asarray(behaviour[0]))
        y_prime = rng.choice(k, size=n, p=np.asarray(behaviour[1]))
        return y, y_prime, self.rewards[y], self.rewards[y_prime]
