"""gym.make_vec: N completions scored in one batched call, SAME_STEP autoreset."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import lmgym
from lmgym.vector import LMVectorEnv


@pytest.mark.parametrize("env_id", sorted(set(lmgym.TASKS) - lmgym.NEEDS_DOWNLOAD))  # those: test_summarization.py
def test_make_vec_uses_the_batched_vector_env(env_id):
    envs = gym.make_vec(env_id, num_envs=3)
    assert isinstance(envs.unwrapped, LMVectorEnv) and envs.num_envs == 3
    observations, infos = envs.reset(seed=0)
    assert len(observations) == 3 and envs.observation_space.contains(observations)
    # each sub-env is seeded with seed + i, exactly like a single env
    single = [gym.make(env_id).reset(seed=i)[0] for i in range(3)]
    assert list(observations) == single


def test_step_scores_all_actions_in_one_call_and_autoresets(monkeypatch):
    envs = gym.make_vec("lmgym/GSM8K-v0", num_envs=4, split="test")
    observations, _ = envs.reset(options={"index": [0, 1, 2, 3]})
    task = envs.unwrapped.task
    calls = []
    original = task.score_batch
    monkeypatch.setattr(task, "score_batch", lambda p, c: calls.append(len(c)) or original(p, c))

    actions = [task.problem("test", i).solution for i in range(3)] + ["#### -1"]
    next_observations, rewards, terminated, truncated, infos = envs.step(actions)
    assert calls == [4]  # one batched call for the whole vector
    np.testing.assert_array_equal(rewards, [1.0, 1.0, 1.0, 0.0])
    assert terminated.all() and not truncated.any()
    assert list(infos["final_obs"]) == list(observations)  # the ended episodes' prompts
    assert list(infos["final_info"]["correct"]) == [True, True, True, False]
    assert infos["final_info"]["extracted_answer"][3] == "-1"
    assert len(next_observations) == 4  # already the next prompts (SAME_STEP autoreset)


def test_bad_actions_in_a_batch_do_not_spoil_the_others():
    envs = gym.make_vec("lmgym/Arithmetic-v0", num_envs=3, max_completion_chars=100)
    envs.reset(options={"index": [0, 1, 2]})
    task = envs.unwrapped.task
    good = task.problem("train", 0).solution
    _, rewards, *_, infos = envs.step([good, "9" * 1000, "\udcff"])
    assert rewards.tolist() == [1.0, 0.0, 0.0]
    errors = infos["final_info"]["error"]
    assert errors[0] is None and "too long" in errors[1] and "Unicode" in errors[2]
    with pytest.raises(TypeError):
        envs.step([good, 3, good])
    with pytest.raises(ValueError, match="sequence of 3"):
        envs.step("123")


def test_vector_kwargs_reach_the_task_and_env():
    envs = gym.make_vec("lmgym/Arithmetic-v0", num_envs=2, digits=3, operators="*", split="test")
    assert envs.unwrapped.task.digits == (3, 3)
    assert all(env.split == "test" for env in envs.unwrapped.envs)
    observations, _ = envs.reset(seed=1)
    assert all("*" in obs for obs in observations)
