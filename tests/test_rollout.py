"""Rollouts: envs + generator -> scored samples with ids, log-probs and budget counts."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from lmgym.generation.hf import HFGenerator
from lmgym.rollout import Budget, evaluate, rollout


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
        rollout(envs, generator, n=2, indices=[0, 1, 2, 3])  # 4 x 2 sub-envs needed, 6 there
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


def test_fewer_problems_than_sub_envs_leave_the_rest_out(generator):
    envs = gym.make_vec("lmgym/Arithmetic-v0", num_envs=8, split="test")
    budget = Budget()
    batch = rollout(envs, generator, n=2, indices=[3], budget=budget, max_tokens=4)
    assert batch.num_samples == 2 and [s.problem_index for s in batch.samples] == [3, 3]
    assert budget.samples == 2 and budget.queries == 2


def test_the_last_rollout_is_shrunk_to_the_budget_in_whole_groups():
    budget = Budget(max_samples=10, max_queries=7)
    assert budget.prompts_left(64, 4) == 2  # 10 samples left: 2 whole groups of 4 (never more than the budget)
    budget.add(8, 0)
    assert budget.prompts_left(64, 4) == 0 and not budget.exhausted  # 2 left: not one group
    assert budget.prompts_left(64, 1, queries_per_prompt=1) == 2
    budget.query(6)
    assert budget.prompts_left(64, 1, queries_per_prompt=1) == 1
    budget.close()
    assert budget.exhausted and Budget.from_state_dict(budget.state_dict()).exhausted


def test_a_budget_that_groups_do_not_divide_is_never_exceeded(tiny_model_dir):
    """Groups of 8 (as CoPG on KeyFacts draws): a 100-sample budget ends at 96 (12 groups), not 104."""
    from agents import load_agent
    from tests.agents.conftest import small_config

    agent_class = load_agent("grpo")
    agent = agent_class(small_config(agent_class, tiny_model_dir, prompts_per_iteration=5, samples_per_prompt=8))
    result = agent.learn("lmgym/Arithmetic-v0", Budget(max_samples=100), progress=False, test=False)
    assert result.budget["samples"] == 96 and result.budget["closed"]
    assert result.curve[-1]["samples"] == 96  # evaluated where it ended


def test_vector_wrappers_are_honoured_in_training_and_evaluation(generator):
    """A reward wrapper around the vector env changes what rollout and evaluate report."""
    from gymnasium.wrappers.vector import TransformReward

    envs = gym.make_vec("lmgym/Arithmetic-v0", num_envs=4, split="test")
    plain = evaluate(envs, generator, problems=8, max_tokens=4)
    shifted = evaluate(TransformReward(envs, lambda r: r + 10.0), generator, problems=8, max_tokens=4)
    assert plain.num_samples == shifted.num_samples == 8
    assert shifted.rewards.tolist() == (plain.rewards + 10.0).tolist()
    batch = rollout(TransformReward(envs, lambda r: r - 1.0), generator, n=2, indices=[0, 1], max_tokens=4)
    assert all(s.reward <= 0.0 for s in batch.samples)


def test_evaluate_goes_over_the_split_in_order_and_greedy_by_default(generator):
    envs = gym.make_vec("lmgym/Arithmetic-v0", num_envs=6, split="test", test_size=10)
    batch = evaluate(envs, generator, max_tokens=4)
    assert [s.problem_index for s in batch.samples] == list(range(10)) and batch.num_prompts == 10
    assert [s.group for s in batch.samples] == list(range(10))
    again = evaluate(envs, generator, max_tokens=4)
    assert [s.completion for s in again.samples] == [s.completion for s in batch.samples]  # greedy
    sampled = evaluate(envs, generator, k=3, problems=4, temperature=1.0, max_tokens=4, seed=0)
    assert sampled.grouped_rewards().shape == (4, 3)
    assert [s.problem_index for s in sampled.samples] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_score_selects_which_samples_the_env_scores(generator):
    envs = gym.make_vec("lmgym/Arithmetic-v0", num_envs=4)
    budget = Budget()
    batch = rollout(envs, generator, n=2, indices=[0, 1], budget=budget, max_tokens=4,
                    score=lambda samples: [i % 2 == 0 for i in range(len(samples))])
    rewards = batch.rewards
    assert np.isnan(rewards[1]) and np.isnan(rewards[3]) and not np.isnan(rewards[0]) and not np.isnan(rewards[2])
    assert budget.samples == 4 and budget.queries == 2
    assert batch.samples[1].info == {} and "reason" in batch.samples[0].info


def test_multi_turn_episodes_run_to_their_end_through_the_same_rollout(tiny_model_dir):
    """MBPP-Feedback: an episode that fails its tests goes on with the feedback as its next
    observation; one that passes ends. Each sample is an episode with its turns."""
    from lmgym.generation.generator import Completion, Generator

    class Scripted(Generator):  # a wrong answer, then the reference solution
        def __init__(self, solutions):
            self.solutions, self.tokenizer, self.max_model_len = solutions, HFGenerator(tiny_model_dir).tokenizer, 1 << 20

        def _generate(self, generations, n, *args):
            for generation in generations:
                first_turn = "Feedback:" not in generation.prompt
                problem = next(k for k in self.solutions if k in generation.prompt)
                text = "def nothing():\n    return None\n" if first_turn else self.solutions[problem]
                generation.completions = [Completion(text, [0, 1], [0.0, 0.0], "stop") for _ in range(n)]

        def load_weights(self, state_dict):
            pass

    envs = gym.make_vec("lmgym/MBPP-Feedback-v0", num_envs=2, split="test", turn_penalty=0.1)
    task = envs.unwrapped.task
    first, second = task.problem("test", 0), task.problem("test", 1)
    solutions = {first.meta["tests"][0]: "```python\n" + first.solution + "\n```"}
    solutions[second.meta["tests"][0]] = "```python\n" + second.solution + "\n```"
    budget = Budget()
    batch = rollout(envs, Scripted(solutions), n=1, indices=[0, 1], budget=budget)
    for sample in batch.samples:
        assert len(sample.turns) == 2 and sample.previous[0].reward == pytest.approx(-0.1)
        assert "Feedback:" in sample.prompt and sample.info["passed"] and sample.info["turn"] == 2
        assert sample.reward == pytest.approx(1.0 - 0.1)  # the return: the penalty, then the pass
    assert budget.samples == 2 and budget.queries == 4 and budget.tokens == 8
