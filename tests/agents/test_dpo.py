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
