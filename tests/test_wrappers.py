"""The token-level view of a task."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from lmgym.wrappers import TokenLevel


def play(env, tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    rewards = []
    for token in ids:
        observation, reward, terminated, truncated, info = env.step(token)
        rewards.append(reward)
    return rewards, terminated, truncated, info


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped")
def test_check_env(char_tok):
    check_env(TokenLevel(gym.make("lmgym/Arithmetic-v0"), char_tok, max_new_tokens=8))


def test_sparse_reward_at_end_of_sequence(char_tok):
    env = TokenLevel(gym.make("lmgym/Arithmetic-v0", split="test"), char_tok)
    observation, _ = env.reset(options={"index": 0})
    problem = env.unwrapped.problem
    assert char_tok.decode(observation) == problem.question + "="
    rewards, terminated, truncated, info = play(env, char_tok, problem.solution)
    assert rewards[:-1] == [0.0] * (len(rewards) - 1) and rewards[-1] == 1.0
    assert terminated and not truncated and info["completion"] == problem.solution
    with pytest.raises(gym.error.ResetNeeded):
        env.step(5)


def test_dense_rewards_arrive_with_their_steps_and_sum_to_the_sequence_reward(char_tok):
    env = TokenLevel(gym.make("lmgym/Arithmetic-v0", steps=3, operators="+*", dense=True), char_tok)
    env.reset(seed=3)
    problem = env.unwrapped.problem
    rewards, terminated, _, info = play(env, char_tok, problem.solution)
    sequence_reward = env.unwrapped.task.score_batch([problem], [problem.solution])[0][0]
    assert sum(rewards) == pytest.approx(sequence_reward) == pytest.approx(1.5)
    assert sum(r > 0 for r in rewards[:-1]) == 2  # the first two steps pay as they finish
    paid_at = [i for i, r in enumerate(rewards) if r > 0]
    assert problem.solution[paid_at[0]] == ","  # paid once the number is followed by ','


def test_truncation_still_scores(char_tok):
    env = TokenLevel(gym.make("lmgym/Arithmetic-v0"), char_tok, max_new_tokens=2)
    env.reset(seed=0)
    digit = char_tok.convert_tokens_to_ids("1")
    env.step(digit)
    observation, reward, terminated, truncated, info = env.step(digit)
    assert truncated and not terminated and info["completion"] == "11"
    assert isinstance(observation, np.ndarray) and observation.dtype == np.int64


def test_bad_token_ids(char_tok):
    env = TokenLevel(gym.make("lmgym/Arithmetic-v0"), char_tok)
    env.reset(seed=0)
    for bad in (-1, len(char_tok), 2.0, "1"):
        with pytest.raises(ValueError, match="token id"):
            env.step(bad)
