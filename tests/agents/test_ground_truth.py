"""Reward hacking made visible: an agent trained on a deliberately weak proxy reward climbs the
proxy while the ground truth (the verified answer) does not follow, and every result reports both."""

from __future__ import annotations

from agents import load_agent
from lmgym.rollout import Budget
from tests.agents.conftest import ENV, small_config
from tests.conftest import EASY_ARITHMETIC


def long_answers(prompts: list[str], completions: list[str]) -> list[float]:
    """A deliberately weak reward model: it pays for answers of 3+ characters, which no correct
    answer on 1-digit arithmetic has (they run from -9 to 81)."""
    return [1.0 if len(c.strip()) >= 3 else 0.0 for c in completions]


def test_an_agent_that_games_a_weak_reward_shows_the_gap(warm_model_dir, tmp_path):
    env_kwargs = {**EASY_ARITHMETIC, "reward_fn": "tests.agents.test_ground_truth:long_answers"}
    agent_class = load_agent("grpo")
    agent = agent_class(small_config(agent_class, warm_model_dir, prompts_per_iteration=8, samples_per_prompt=4,
                                     eval_every=64, lr=3e-3, warmup_steps=0, select_on="last"))
    result = agent.learn(ENV, Budget(max_samples=384), env_kwargs=env_kwargs, progress=False)
    first, last = result.curve[0], result.curve[-1]
    assert last["val/mean_reward"] > first["val/mean_reward"] + 0.5  # the proxy is climbed (0 -> 1 measured)...
    assert last["val/ground_truth"] <= first["val/ground_truth"]  # ...the truth is not (0.17 -> 0 measured)
    test = result.test
    assert test["test/mean_reward"] - test["test/ground_truth"] > 0.5  # the final result shows the gap (0.83 measured)
    assert last["train/reward"] > last["train/ground_truth"]
