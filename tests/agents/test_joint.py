"""The joint reward-policy agent (agents/joint.py): query choice, the ensemble, its losses, its feedback budget."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from agents import load_agent
from agents.joint import RewardEnsemble, bootstrapped_ensemble_loss, choose_queries, heldout_skill, leave_one_out_pg_loss
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
    assert choose_queries(predictions, 2, 1, "disagreement", rng) == [0, 2]  # the largest spread in each group
    with pytest.raises(ValueError, match="exploration"):
        choose_queries(predictions, 2, 1, "optimism", rng)


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


def test_weighted_leave_one_out_pg_loss_by_hand():
    # one group of 3, weights (1, 0.5, 0): sample 2 weighs nothing; baselines are the weighted
    # means of the others: b0 = 0 (only sample 1 counts), b1 = 1, b2 = (1 + 0.5 * 0) / 1.5
    logprobs = torch.tensor([[-1.0, -1.0], [-2.0, 0.0], [-0.5, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    loss = leave_one_out_pg_loss(t(1.0, 0.0, 0.0).view(1, 3), logprobs, mask, t(1.0, 0.5, 0.0).view(1, 3))
    assert loss.item() == pytest.approx(-(1.0 * 1.0 * -1.0 + 0.5 * (0.0 - 1.0) * -2.0) / 1.5)
    # a sample whose group-mates all weigh nothing is measured against the fallback baseline
    alone = leave_one_out_pg_loss(t(1.0, 0.0).view(1, 2), logprobs[:2], mask[:2], t(1.0, 0.0).view(1, 2), fallback=0.25)
    assert alone.item() == pytest.approx(-(1.0 - 0.25) * -1.0)
    # unit weights: the plain leave-one-out loss
    plain = leave_one_out_pg_loss(t(1.0, 0.0, 0.0).view(1, 3), logprobs, mask)
    assert leave_one_out_pg_loss(t(1.0, 0.0, 0.0).view(1, 3), logprobs, mask, torch.ones(1, 3, dtype=torch.float64)).item() == pytest.approx(plain.item())


def test_heldout_skill():
    observed = t(1.0, 0.0, 1.0, 0.0)
    assert heldout_skill(observed.clone(), observed, 0.5) == pytest.approx(1.0)  # perfect
    assert heldout_skill(torch.full((4,), 0.5, dtype=torch.float64), observed, 0.5) == pytest.approx(0.0)  # a constant
    assert heldout_skill(1 - observed, observed, 0.5) == pytest.approx(-3.0)  # worse than a constant
    assert heldout_skill(observed, t(0.5, 0.5), 0.5) is None  # nothing to tell apart


def test_untrained_ensemble_predictions_never_reach_the_policy(warm_model_dir):
    """The review's defect: the policy was trained on the random priors' predictions from the
    first round. With the default ``predicted_rewards="skill"`` an unqueried sample weighs
    nothing until the ensemble predicts fresh labels better than their mean; ``"always"`` keeps
    the old behaviour (weight 1 from the start)."""
    from tests.conftest import EASY_ARITHMETIC

    agent_class = load_agent("joint")
    for mode, first_weight in (("skill", 0.0), ("always", 1.0)):
        agent = agent_class(small_config(agent_class, warm_model_dir, predicted_rewards=mode, eval_every=0))
        agent.learn(ENV, Budget(max_queries=8), env_kwargs=EASY_ARITHMETIC, progress=False, test=False)
        assert agent.train_log[0]["train/prediction_weight"] == first_weight
        assert len(agent.calibration) == 8 and all(spread >= 0 and error >= 0 for spread, error in agent.calibration)
        if mode == "skill":  # later weights are the running skill, clipped into [0, 1]
            assert all(0.0 <= row["train/prediction_weight"] <= 1.0 for row in agent.train_log)
    with pytest.raises(ValueError, match="predicted_rewards"):
        agent_class.Config(predicted_rewards="sometimes")
