"""lmgym/Bandit-v0 (lmgym/envs/bandit.py): the CoPG paper's 3-armed bandit and its closed-form optimum.
Agents on it: tests/agents/test_copg.py."""

from __future__ import annotations

import numpy as np

from lmgym.envs.bandit import BanditTask


def test_closed_form_optimum():
    np.testing.assert_allclose(BanditTask().optimal_policy(), [0.705, 0.259, 0.035], atol=1e-3)
    values = [BanditTask().regularised_value(p) for p in ([1, 0, 0], [1 / 3] * 3, BanditTask().optimal_policy())]
    assert values[2] > max(values[:2])  # pi* maximises E[R] - beta KL

def test_env_scores_arms():
    import gymnasium as gym

    env = gym.make("lmgym/Bandit-v0")
    prompt, _ = env.reset(seed=0)
    assert prompt == "Choose an arm: A, B or C.\nArm:"
    assert env.step(" B")[1] == 2.0
    env.reset()
    _, reward, _, _, info = env.step("?")
    assert reward == 0.0 and info["error"] == "the completion names no arm"

