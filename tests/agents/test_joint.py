"""The joint reward-policy agent (agents/joint.py): query choice, the ensemble, its losses, its feedback budget."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from agents import load_agent
from agents.joint import RewardEnsemble, bootstrapped_ensemble_loss, choose_queries, leave_one_out_pg_loss
from lmgym.rollout import Budget
from tests.agents.conftest import ENV, small_config

t = lambda *values: torch.tensor(values, dtype=torch.float64)


def test_joint_query_choice():
    predictions = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.2, 0.2], [0.9, 0.9]])
    rng = np.random.default_rng(0)
    assert choose_queries(predictions, 2, 1, "greedy", rng) == [0, 3]  # ties -> first
    picks = {tuple(choose_queries(predictions, 2, 1, "thompson", np.random.default_rng(s))) for s in range(20)}
    assert {p[0] for p in picks} == {0, 1}  # members disagree on group 0: both get asked about
    assert all(p[1] == 3 for p in picks)  # members agree on group 1
    assert sorted(choose_queries(predictions, 2, 2, "uniform", rng)) == [0, 1, 2, 3]


def test_reward_ensemble_members_differ_through_their_priors():
    ensemble = RewardEnsemble(width=8, size=4, prior_scale=1.0, seed=0)
    out = ensemble(torch.randn(5, 8))
    assert out.shape == (5, 4) and out.std(1).min() > 0


def test_joint_agent_stops_at_its_feedback_budget(warm_model_dir):
    from tests.conftest import EASY_ARITHMETIC

    agent_class = load_agent("joint")
    agent = agent_class(small_config(agent_class, warm_model_dir, exploration="greedy"))
    result = agent.learn(ENV, Budget(max_queries=6), env_kwargs=EASY_ARITHMETIC, progress=False)
    assert result.budget["queries"] == 6 and result.curve[-1]["queries"] == 6
    assert len(agent.labels) == 6


def test_leave_one_out_pg_loss_by_hand():
    # one group of 3: rewards (1, 0, 0) -> advantages (1, -0.5, -0.5); token-mean log-probs (-1, -2, -0.5)
    logprobs = torch.tensor([[-1.0, -1.0], [-2.0, 0.0], [-0.5, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    loss = leave_one_out_pg_loss(t(1.0, 0.0, 0.0).view(1, 3), logprobs, mask)
    assert loss.item() == pytest.approx(-(1.0 * -1.0 + -0.5 * -2.0 + -0.5 * -0.5) / 3)


def test_bootstrapped_ensemble_loss_counts_each_head_on_its_own_share():
    predictions = t(1.0, 0.0, 0.5, 0.5).view(2, 2)  # 2 labels x 2 heads
    masks = torch.tensor([[True, False], [True, True]])
    # head 0 sees both labels: (1-1)^2 + (0.5-0)^2; head 1 only the second: (0.5-0)^2
    assert bootstrapped_ensemble_loss(predictions, t(1.0, 0.0), masks).item() == pytest.approx((0 + 0.25 + 0.25) / 3)
