"""Return-conditioned RL (agents/rcrl.py): labels, their weights, where they go, old checkpoints."""

from __future__ import annotations


import pytest
import torch

from agents import load_agent
from agents.rcrl import RCRLConfig, label_weights, return_label
from lmgym.rollout import Budget
from tests.agents.conftest import ENV, small_config

t = lambda *values: torch.tensor(values, dtype=torch.float64)


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


@pytest.mark.parametrize("position", ["completion", "prompt"])
def test_rcrl_labels_every_sample_where_it_acts(position, tiny_model_dir):
    """The label the agent acts on sits where training put it; each sample is stored once, with
    its own return's label in place of the one it was sampled with."""
    agent_class = load_agent("rcrl")
    agent = agent_class(small_config(agent_class, tiny_model_dir, label_position=position, reward_threshold=0.5))
    agent.learn(ENV, Budget(max_samples=16), progress=False)
    assert len(agent.dataset) == len({(tuple(p), tuple(c)) for p, c, _ in agent.dataset}) <= 16
    for prompt_ids, _, label in agent.dataset:
        assert label in ("G ", "B ")
        text = agent.tokenizer.decode(prompt_ids)
        assert text.endswith("=" + label) if position == "completion" else text.startswith(label) and text.endswith("=")
    acted = agent.prompt_prefix() + "12+34=" + agent.prompt_suffix()
    assert acted == ("12+34=G " if position == "completion" else "G 12+34=")
    with pytest.raises(ValueError, match="label_position"):
        agent_class(small_config(agent_class, tiny_model_dir, label_position="middle"))


def test_an_rcrl_checkpoint_without_labels_is_refused_clearly(tiny_model_dir):
    agent_class = load_agent("rcrl")
    agent = agent_class(small_config(agent_class, tiny_model_dir))
    with pytest.raises(ValueError, match="predates stored labels"):
        agent.load_extra_state({"dataset": [([1, 2], [3])]})
    agent.load_extra_state({"dataset": [([1, 2], [3], "G ")]})
    assert agent.dataset == [([1, 2], [3], "G ")] and agent.seen == {((1, 2), (3,))}
