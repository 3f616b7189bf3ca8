"""Metrics against hand-computed values."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from lmgym.metrics import maj_at_k, pass_at_k, regularised_value, reward_std_per_prompt, vanishing_gradient_share


@pytest.mark.parametrize("n, c, k", [(10, 3, 1), (10, 3, 5), (96, 7, 32), (5, 0, 2), (5, 5, 1), (20, 18, 3)])
def test_pass_at_k_equals_the_combinatorial_formula(n, c, k):
    expected = 1.0 - comb(n - c, k) / comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_edge_cases():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the mean
    assert pass_at_k(4, 2, 3) == 1.0  # fewer wrong samples than k
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 2, 5)


def test_maj_at_k():
    answers = ["7", "8", "7", None, "8", "8"]
    correct = [True, False, True, False, False, False]
    assert maj_at_k(answers, correct, 3) == 1.0  # 7 wins 2-1
    assert maj_at_k(answers, correct, 6) == 0.0  # 8 wins 3-2
    assert maj_at_k(["8", "7"], [False, True], 2) == 0.0  # tie: the first to reach the top count wins
    assert maj_at_k([None, None], [False, False], 2) == 0.0
    with pytest.raises(ValueError):
        maj_at_k(["1"], [True], 2)


def test_vanishing_gradient_share():
    rewards = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0]])
    np.testing.assert_allclose(reward_std_per_prompt(rewards), [0, 0, 0.5, np.sqrt(3) / 4])
    assert vanishing_gradient_share(rewards) == 0.5
    assert vanishing_gradient_share(rewards, threshold=0.45) == 0.75
    with pytest.raises(ValueError):
        reward_std_per_prompt(np.ones((3, 1)))


def test_the_evaluate_module_agrees_with_the_functions():
    import evaluate

    from lmgym.metrics import EVALUATE_MATH

    metric = evaluate.load(EVALUATE_MATH)
    predictions = [["so #### 5", "#### 4", "5"], ["#### 2", "#### 2", "\\boxed{3}"]]
    out = metric.compute(predictions=predictions, references=["5", "3"], k=[1, 2])
    assert out["mean_reward"] == pytest.approx(3 / 6)
    assert out["pass@1"] == pytest.approx((pass_at_k(3, 2, 1) + pass_at_k(3, 1, 1)) / 2)
    assert out["pass@2"] == pytest.approx((pass_at_k(3, 2, 2) + pass_at_k(3, 1, 2)) / 2)
    assert out["maj@2"] == pytest.approx((1.0 + 0.0) / 2)  # problem 2: "2" and "2" outvote "3"
    assert out["reward_std_zero_share"] == 0.0


def test_regularised_value_reads_the_sampled_reward_and_its_kl():
    metrics = {"test/sampled_mean_reward": 2.0, "test/kl_to_reference": 0.4, "val/sampled_mean_reward": 1.0}
    assert regularised_value(metrics, beta=0.5) == pytest.approx(1.8)
    with pytest.raises(KeyError, match="kl_to_reference"):
        regularised_value(metrics, beta=0.5, prefix="val")  # validation curves carry no KL
    with pytest.raises(ValueError, match="beta"):
        regularised_value(metrics, beta=0.0)
