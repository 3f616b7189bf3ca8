"""PPO (agents/ppo.py): GAE, the clipped losses and token rewards against hand values; the sampler check."""

from __future__ import annotations


import pytest
import torch

from agents import load_agent
from agents.ppo import gae, ppo_losses, token_rewards
from lmgym.rollout import Budget
from tests.agents.conftest import ENV, small_config

t = lambda *values: torch.tensor(values, dtype=torch.float64)


def test_gae_by_hand():
    # one sequence of 3 tokens, gamma 0.9, lambda 0.8
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.2, 0.4, 0.6]])
    mask = torch.ones(1, 3)
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    d2 = 1.0 - 0.6  # last step: no next value
    d1 = 0.0 + 0.9 * 0.6 - 0.4
    d0 = 0.0 + 0.9 * 0.4 - 0.2
    a2, a1 = d2, d1 + 0.72 * d2
    a0 = d0 + 0.72 * a1
    torch.testing.assert_close(advantages, torch.tensor([[a0, a1, a2]]))
    torch.testing.assert_close(returns, advantages + values)


def test_gae_stops_at_the_end_of_each_sequence():
    rewards = torch.tensor([[0.0, 1.0, 5.0], [1.0, 0.0, 0.0]])
    values = torch.tensor([[0.0, 0.0, 9.0], [0.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # lengths 2 and 1
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(advantages, torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert returns[:, 2].abs().sum() == 0 and returns[1, 1] == 0


def test_ppo_clipping_by_hand():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.5, 0.5]]))  # ratios 1.5 and 0.5
    mask = torch.ones(1, 2)
    zeros = torch.zeros(1, 2)
    # positive advantage: the ratio is clipped at 1.2 from above -> -1.2; at 0.5 -> -0.5
    loss, _, stats = ppo_losses(new, old, torch.ones(1, 2), zeros, zeros, zeros, mask, 0.2, 0.2)
    assert loss.item() == pytest.approx((-1.2 - 0.5) / 2)
    assert stats["losses/clipfrac"] == pytest.approx(1.0)  # both ratios (1.5, 0.5) left [0.8, 1.2]
    # negative advantage: pessimistic side is the unclipped 1.5 and the clipped 0.8
    loss, _, _ = ppo_losses(new, old, -torch.ones(1, 2), zeros, zeros, zeros, mask, 0.2, 0.2)
    assert loss.item() == pytest.approx((1.5 + 0.8) / 2)


def test_value_clipping_by_hand():
    zeros = torch.zeros(1, 1)
    mask = torch.ones(1, 1)
    values, old_values, returns = torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([[1.0]])
    # unclipped error 0; clipped prediction 0.2 -> error 0.8^2; the max is taken: 0.5 * 0.64
    _, value_loss, _ = ppo_losses(zeros, zeros, zeros, values, old_values, returns, mask, 0.2, 0.2)
    assert value_loss.item() == pytest.approx(0.5 * 0.64)


def test_token_rewards_place_score_kl_and_dense_steps():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    rewards = token_rewards(torch.tensor([1.0, 0.0]), kl, mask, kl_coef=0.5, dense_positions=[[(0, 0.25)], []])
    torch.testing.assert_close(rewards, torch.tensor([[-0.05 + 0.25, -0.1, -0.15 + 1.0], [-0.25, 0.0, 0.0]]))


def test_ppo_logs_a_near_zero_sampler_mismatch_when_hf_samples_the_policy(tiny_model_dir):
    agent = load_agent("ppo")(small_config(load_agent("ppo"), tiny_model_dir))
    agent.learn(ENV, Budget(max_samples=8), progress=False)
    assert agent.train_log[0]["sampler/logprob_mismatch"] < 1e-4
    assert agent.train_log[0]["train/kl"] == pytest.approx(0.0, abs=1e-5)  # first batch: policy == reference
