"""DPO/IPO (agents/dpo.py): losses and pairs against hand values, learning from a preference file."""

from __future__ import annotations

import math

import pytest
import torch

from agents.dpo import chosen_nll, dpo_loss

t = lambda *values: torch.tensor(values, dtype=torch.float64)


def test_dpo_by_hand():
    # beta (h_w - h_l) = 0.1 * 2 = 0.2 -> -log sigmoid(0.2)
    assert dpo_loss(t(1.0), t(-1.0), beta=0.1).item() == pytest.approx(math.log1p(math.exp(-0.2)))
    smoothed = dpo_loss(t(1.0), t(-1.0), beta=0.1, label_smoothing=0.1).item()
    assert smoothed == pytest.approx(0.9 * math.log1p(math.exp(-0.2)) + 0.1 * math.log1p(math.exp(0.2)))


def test_chosen_nll_by_hand():
    # sequences of 2 and 4 tokens with log-likelihoods -1 and -6: per-token NLL 0.5 and 1.5
    assert chosen_nll(t(-1.0, -6.0), t(2.0, 4.0)).item() == pytest.approx(1.0)


def test_preference_rows_from_the_policy_and_the_implicit_reward_that_learns_them(tmp_path):
    import json

    from agents.dpo import DPO, DPOConfig, implicit_reward_accuracy, sample_preference_rows

    agent = DPO(DPOConfig(model="default", seed=0, max_new_tokens=8, eval_problems=4, eval_k=1, sft_coef=0.0))
    rows = sample_preference_rows(agent, "lmgym/Arithmetic-v0", 12, scale=None, seed=0, chunk=16)
    assert len(rows) == 12
    assert all(r["chosen_ground_truth"] > r["rejected_ground_truth"] for r in rows)  # scale=None: the truth orders them
    assert len({r["problem_index"] for r in rows}) == 12  # one pair per problem
    encode = lambda text: agent.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert all(r["question"] in r["prompt"] and encode(r["prompt"]) for r in rows)
    again = sample_preference_rows(agent, "lmgym/Arithmetic-v0", 12, scale=None, seed=0, chunk=16)
    assert again == rows  # seeded
    noisy = sample_preference_rows(agent, "lmgym/Arithmetic-v0", 40, scale=0.01, seed=0, chunk=16)
    flipped = sum(r["chosen_ground_truth"] < r["rejected_ground_truth"] for r in noisy)
    assert 5 < flipped < 35  # Bradley-Terry at a tiny scale: near coin flips
    assert implicit_reward_accuracy(agent, rows) == 0.0  # the policy is its reference: h = 0, no pair is won
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    trained = DPO(DPOConfig(model="default", seed=0, max_new_tokens=8, eval_problems=4, eval_k=1, sft_coef=0.0,
                            preferences=str(path), prompts_per_iteration=12, pairs_per_update=12, lr=1e-3, beta=0.1))
    from lmgym.rollout import Budget

    trained.learn("lmgym/Arithmetic-v0", Budget(max_samples=8 * 24), progress=False, test=False)
    assert implicit_reward_accuracy(trained, rows) > 0.9  # DPO fits the pairs it read
    with pytest.raises(ValueError, match="pairs must be >= 1"):
        sample_preference_rows(agent, "lmgym/Arithmetic-v0", 0)
