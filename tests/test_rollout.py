"""Rollouts: envs + generator -> scored samples with ids, log-probs and budget counts."""

from __future__ import annotations

import gymnasium as gym
import pytest

from lmgym.generation.hf import HFGenerator
from lmgym.rollout import Budget, rollout


@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    return HFGenerator(tiny_model_dir)


def test_groups_share_a_problem_and_every_sample_is_scored(generator):
    envs = gym.make_vec("lmgym/Arithmetic-v0", num_envs=8)
    budget = Budget(max_samples=16)
    batch = rollout(envs, generator, n=4, seed=0, budget=budget, max_tokens=6)
    assert batch.num_prompts == 2 and batch.num_samples == 8
    assert batch.grouped_rewards().shape == (2, 4)
    for sample in batch.samples:
        leader = batch.samples[sample.group * 4]
        assert sample.problem_index == leader.problem_index and sample.prompt == leader.prompt
        assert len(sample.logprobs) == len(sample.token_ids) >= 1
        assert sample.info["reference_answer"] and "reason" in sample.info
        assert sample.reward in (0.0, 1.0)
    assert budget.samples == 8 and budget.tokens == batch.num_tokens and not budget.exhausted
    rollout(envs, generator, n=4, budget=budget, max_tokens=6)
    assert budget.exhausted and budget.history[-1] == (16, budget.tokens)


def test_rollout_scores_a_correct_completion_as_one(tiny_model_dir):
    """A generator that can only say the right answer: its samples must score 1."""
    from lmgym.generation.generator import Completion, Generation, Generator

    class Oracle(Generator):  # a real Generator subclass, answering from the reference
        def __init__(self, envs):
            self.envs, self.tokenizer, self.max_model_len = envs, HFGenerator(tiny_model_dir).tokenizer, 512

        def _generate(self, generations, n, *args):
            for g, generation in enumerate(generations):
                answer = self.envs.unwrapped.envs[g * n].problem.solution
                generation.completions = [Completion(answer, [0], [0.0], "stop") for _ in range(n)]

        def load_weights(self, state_dict):
            pass

    envs = gym.make_vec("lmgym/Arithmetic-v0", num_envs=6, split="test")
    batch = rollout(envs, Oracle(envs), n=2, indices=[0, 1, 2])
    assert [s.problem_index for s in batch.samples] == [0, 0, 1, 1, 2, 2]
    assert batch.rewards.tolist() == [1.0] * 6


def test_seeded_rollouts_reproduce_and_move_on(generator):
    def run(seed):
        envs = gym.make_vec("lmgym/Arithmetic-v0", num_envs=4)
        first = rollout(envs, generator, n=2, seed=seed, max_tokens=4)
        second = rollout(envs, generator, n=2, max_tokens=4)
        return [s.problem_index for s in first.samples + second.samples]

    a = run(5)
    assert a == run(5) and a != run(6)
    assert a[:4] != a[4:]  # the next rollout moves on to new problems


def test_bad_arguments(generator):
    envs = gym.make_vec("lmgym/Arithmetic-v0", num_envs=6)
    with pytest.raises(ValueError, match="multiple of n=4"):
        rollout(envs, generator, n=4)
    with pytest.raises(ValueError, match="indices"):
        rollout(envs, generator, n=2, indices=[0])
    with pytest.raises(TypeError, match="vector env"):
        rollout(gym.make("lmgym/Arithmetic-v0"), generator)
    with pytest.raises(ValueError, match="max_samples"):
        Budget(max_samples=0)


def test_budget_counts_reward_queries_apart_from_samples():
    budget = Budget(max_queries=3)
    budget.add(10, 50)  # samples generated, none scored yet
    assert not budget.exhausted and budget.queries == 0
    budget.query(3)
    assert budget.exhausted
    restored = Budget.from_state_dict(budget.state_dict())
    assert (restored.queries, restored.max_queries, restored.samples) == (3, 3, 10)
    with pytest.raises(ValueError):
        Budget(max_queries=0)
