"""Every loss and estimator against hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from agents.core import completion_logprobs, kl_penalty, masked_mean, masked_whiten, nll_loss
from agents.ppo import gae, ppo_losses, token_rewards
from agents.rcrl import RCRLConfig, label_weights, return_label


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
    assert stats["losses/clipfrac"] == pytest.approx(0.5)
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


def test_kl_estimators_by_hand():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert kl_penalty(logp, ref, "k1").item() == pytest.approx(math.log(2))
    assert kl_penalty(logp, ref, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert kl_penalty(logp, ref, "k3").item() == pytest.approx(0.5 - 1 + math.log(2))
    assert kl_penalty(ref, ref, "k3").item() == 0.0
    with pytest.raises(ValueError):
        kl_penalty(logp, ref, "k4")


def test_masked_statistics_ignore_padding():
    values = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert masked_mean(values, mask).item() == 2.0
    whitened = masked_whiten(values, mask)
    torch.testing.assert_close(whitened, torch.tensor([[-1.0, 1.0, 0.0]]), atol=1e-4, rtol=0)
    assert nll_loss(torch.log(torch.tensor([[0.5, 0.25, 1e-9]])), mask).item() == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2)


def test_token_rewards_place_score_kl_and_dense_steps():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    rewards = token_rewards(torch.tensor([1.0, 0.0]), kl, mask, kl_coef=0.5, dense_positions=[[(0, 0.25)], []])
    torch.testing.assert_close(rewards, torch.tensor([[-0.05 + 0.25, -0.1, -0.15 + 1.0], [-0.25, 0.0, 0.0]]))


def test_completion_logprobs_mask_the_prompt_and_match_full_sequence_scores(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompts, completions = [[5, 6, 7], [8]], [[9, 10], [11, 12, 13, 2]]

    def one_by_one(prompt, completion):  # each sequence alone, no padding: the reference
        ids = torch.tensor([prompt + completion])
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
        return torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None]).squeeze(-1)

    with torch.no_grad():
        logprobs, mask = completion_logprobs(model, prompts, completions, pad_token_id=0)
        expected = [one_by_one(p, c) for p, c in zip(prompts, completions)]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    torch.testing.assert_close(logprobs[0, :2], expected[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(logprobs[1], expected[1], atol=1e-5, rtol=0)
    assert logprobs[0, 2:].abs().sum() == 0


def test_return_labels():
    cfg = RCRLConfig()
    assert return_label(1.0, cfg) == cfg.good_label and return_label(0.0, cfg) == cfg.bad_label
    dense = RCRLConfig(return_bins=3, return_low=0.0, return_high=1.5)
    assert [return_label(r, dense) for r in (0.0, 0.6, 1.0, 1.5, 9.0)] == ["[r0] ", "[r1] ", "[r2] ", "[r2] ", "[r2] "]


def test_label_weights_balance_labels_and_average_one():
    weights = label_weights(["G ", "B ", "B ", "B "])
    assert weights == pytest.approx([2.0, 2 / 3, 2 / 3, 2 / 3])
    assert sum(weights[:1]) == pytest.approx(sum(weights[1:])) and sum(weights) == pytest.approx(4)
    assert label_weights(["B ", "B "]) == [1.0, 1.0]  # one label present: plain fine-tuning


def test_weighted_nll_by_hand():
    logprobs = torch.tensor([[-1.0, -2.0], [-3.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert nll_loss(logprobs, mask).item() == pytest.approx(2.0)  # (1 + 2 + 3) / 3 tokens
    assert nll_loss(logprobs, mask, torch.ones(2)).item() == pytest.approx(2.0)
    assert nll_loss(logprobs, mask, torch.tensor([2.0, 0.0])).item() == pytest.approx(2.0)  # 2 * (1 + 2) / 3
    assert nll_loss(logprobs, mask, torch.tensor([0.5, 2.0])).item() == pytest.approx((0.5 * 3 + 2 * 3) / 3)

