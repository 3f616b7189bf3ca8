"""The contract every environment shares (lmgym/core.py, lmgym/__init__.py): Gymnasium's
check_env over every registered id, seeding, problem selection, bad input, registration."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import lmgym
from lmgym.core import UnicodeText

ALL_IDS = sorted(set(lmgym.TASKS) - lmgym.NEEDS_DOWNLOAD)  # the others: tests/envs/test_summarization.py


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_check_env_passes_for_every_registered_id(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_seeded_order_is_reproducible_and_seeds_differ(env_id):
    def prompts(seed):
        env = gym.make(env_id)
        first = env.reset(seed=seed)[0]
        return [first] + [env.reset()[0] for _ in range(4)]

    assert prompts(7) == prompts(7)
    if gym.make(env_id).unwrapped.num_problems > 1:  # (the bandit has one prompt)
        assert prompts(7) != prompts(8)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_index_option_selects_problems_in_source_order(env_id):
    env = gym.make(env_id, split="test")
    task = env.unwrapped.task
    for index in sorted({0, min(3, env.unwrapped.num_problems - 1)}):
        prompt, info = env.reset(options={"index": index})
        assert info == {"index": index, "split": "test"}
        assert task.problem("test", index).question in prompt
        # the reference solution, submitted as the completion, scores the best reward
        solution = task.problem("test", index).solution
        best = getattr(task, "best_reward", 1.0)  # (the bandit's best arm pays 2.5)
        _, reward, _, _, info = env.step(solution)
        # a learned RM's reward is unbounded (KeyFacts-RM): there the ground truth must be the best
        assert (info["ground_truth"] if getattr(task, "judge", None) == "reward_model" else reward) == best
    with pytest.raises(IndexError):
        env.reset(options={"index": env.unwrapped.num_problems})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"idx": 0})


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_observation_never_contains_the_reference_solution(env_id):
    env = gym.make(env_id)
    for seed in range(5):
        prompt, info = env.reset(seed=seed)
        problem, task = env.unwrapped.problem, env.unwrapped.task
        assert prompt == task.plain_template.format(question=problem.question)  # the question, nothing more
        if "document" in problem.meta:
            continue  # summaries are extractive: the document holds the reference's sentences by design
        assert problem.solution not in task.plain_template.format(question=problem.question) or len(problem.solution) < 4
        assert "reference_answer" not in info
        assert env.observation_space.contains(prompt)


class TestBadInput:
    """Documented in lmgym.core: caller bugs raise, bad model output scores 0 with info['error']."""

    @pytest.fixture
    def env(self):
        env = gym.make("lmgym/GSM8K-v0")
        env.reset(seed=0)
        return env

    @pytest.mark.parametrize("action", [None, 42, ["#### 1"], b"#### 1"])
    def test_non_str_action_raises_type_error(self, env, action):
        with pytest.raises(TypeError, match="must be a str"):
            env.step(action)

    def test_ten_megabyte_action_scores_zero_quickly(self, env):
        import time

        start = time.perf_counter()
        _, reward, terminated, _, info = env.step("9" * 10_000_000)
        assert time.perf_counter() - start < 1.0
        assert reward == 0.0 and terminated and "too long" in info["error"]

    def test_invalid_surrogates_score_zero(self, env):
        action = b"#### \xff\xfe".decode("utf-8", errors="surrogateescape")
        _, reward, _, _, info = env.step(action)
        assert reward == 0.0 and "Unicode" in info["error"]

    def test_step_before_reset_and_after_the_end(self):
        raw = gym.make("lmgym/Arithmetic-v0").unwrapped
        with pytest.raises(gym.error.ResetNeeded, match="before step"):
            raw.step("1")
        raw.reset(seed=0)
        raw.step("1")
        with pytest.raises(gym.error.ResetNeeded, match="episode is over"):
            raw.step("1")
        with pytest.raises(gym.error.ResetNeeded):
            gym.make("lmgym/Arithmetic-v0").step("1")  # through gym.make's wrappers too

    def test_unknown_split(self):
        with pytest.raises(ValueError, match="unknown split 'dev'"):
            gym.make("lmgym/Arithmetic-v0", split="dev")


def test_unicode_text_space():
    space = UnicodeText(10, min_length=1)
    assert space.contains("naïve €5") and not space.contains("") and not space.contains("x" * 11)
    assert not space.contains("a\udcff") and not space.contains(b"abc")
    space.seed(0)
    assert all(space.contains(space.sample()) for _ in range(20))


def test_render_ansi():
    env = gym.make("lmgym/Arithmetic-v0", render_mode="ansi")
    env.reset(options={"index": 0})
    env.step("12")
    text = env.render()
    assert "reward" in text and env.unwrapped.problem.question in text


def test_importing_lmgym_registers_ids_with_gymnasium():
    import subprocess
    import sys

    code = "import gymnasium as gym; import lmgym; print(sorted(k for k in gym.registry if k.startswith('lmgym/')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == sorted(lmgym.TASKS)
    code = "import gymnasium as gym; gym.make('lmgym:lmgym/Arithmetic-v0')"  # no explicit import
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_registered_id_carries_keyword_arguments_and_make_overrides_them():
    spec = gym.spec("lmgym/MBPP-Feedback-v0")
    assert spec.kwargs == {"task": "lmgym.envs.code:MBPPTask", "max_turns": 3}
    assert gym.make("lmgym/MBPP-Feedback-v0").unwrapped.task.max_turns == 3
    assert gym.make("lmgym/MBPP-Feedback-v0", max_turns=5).unwrapped.task.max_turns == 5
    assert gym.make("lmgym/MBPP-v0").unwrapped.task.max_turns == 1
    vec = gym.make_vec("lmgym/HumanEval-Feedback-v0", num_envs=2)
    assert vec.unwrapped.task.max_turns == 3
    assert gym.spec("lmgym/TLDR-RM-v0").kwargs["judge"] == "reward_model"
