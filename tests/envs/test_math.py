"""The math environments under the Gymnasium contract, on real data."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import lmgym
from lmgym.core import UnicodeText
from lmgym.envs.math import ArithmeticTask, GSM8KTask, GSMSymbolicTask
from lmgym.rewards.math import verify

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
        assert env.step(solution)[1] == best
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


def test_gsm8k_loads_the_local_copy_with_its_unicode(offline_data_dir):
    env = gym.make("lmgym/GSM8K-v0", split="test")
    assert env.unwrapped.num_problems == 1319
    prompt, _ = env.reset(options={"index": 0})
    assert "Janet\u2019s ducks" in prompt  # non-ASCII survives and is inside the space
    assert env.observation_space.contains(prompt)
    _, reward, terminated, truncated, info = env.step("She makes 9 * 2 = $18.\n#### 18")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["extracted_answer"] == "18" and info["reference_answer"] == "18"
    assert gym.make("lmgym/GSM8K-v0").unwrapped.num_problems == 7473


def test_gsm8k_data_paths(offline_data_dir, tmp_path, monkeypatch):
    # a folder with the split files directly inside, given as a keyword
    task = GSM8KTask(data_dir=offline_data_dir / "gsm8k")
    assert task.num_problems("test") == 1319
    # explicit files
    small = tmp_path / "small.jsonl"
    small.write_text('{"question": "1+1?", "answer": "1+1=<<1+1=2>>2\\n#### 2"}\n')
    task = GSM8KTask(data_files={"train": small, "test": small})
    assert task.num_problems("train") == 1 and task.problem("test", 0).answer == "2"
    # clear errors for missing paths, in the keyword and in the environment variable
    with pytest.raises(FileNotFoundError, match="not a directory"):
        GSM8KTask(data_dir=tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="split not found"):
        GSM8KTask(data_dir=tmp_path)
    monkeypatch.setenv("LMGYM_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="LMGYM_DATA_DIR"):
        gym.make("lmgym/GSM8K-v0")


def test_gsm8k_unparsable_reference_scores_zero_and_says_so(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q?", "answer": "no final line"}\n')
    env = lmgym.core.LMEnv(GSM8KTask(data_files={"train": bad, "test": bad}))
    env.reset(seed=0)
    _, reward, *_, info = env.step("#### 1")
    assert reward == 0.0 and info["reason"] == "unparsable reference"


class TestArithmetic:
    def test_difficulty_knobs(self):
        task = ArithmeticTask(digits=3, operators="*", steps=2)
        for index in range(50):
            problem = task.problem("train", index)
            numbers = problem.question.replace("*", " ").split()
            assert len(numbers) == 3 and all(100 <= int(n) <= 999 for n in numbers)
            assert int(problem.answer) == int(numbers[0]) * int(numbers[1]) * int(numbers[2])
        task = ArithmeticTask(digits=(1, 2), operators="+-*", steps=(1, 3))
        for index in range(200):
            problem = task.problem("train", index)
            assert int(problem.answer) == eval(problem.question)  # our own generated digits and operators
            assert verify(problem.solution, problem.answer).correct

    def test_train_and_test_never_overlap(self):
        task = ArithmeticTask()  # 2-digit +/-: a small space, where overlap would show
        test = {task.problem("test", i).question for i in range(task.num_problems("test"))}
        assert len(test) == task.num_problems("test") == 1000  # distinct
        train = {task.problem("train", i).question for i in range(20_000)}
        assert not train & test

    def test_too_small_a_space_for_test_size_is_an_error(self):
        with pytest.raises(ValueError, match="lower test_size"):
            ArithmeticTask(digits=1, operators="+", test_size=500).problem("test", 0)

    @pytest.mark.parametrize("kwargs", [{"digits": 0}, {"operators": "/"}, {"steps": (3, 1)}, {"test_size": 0}])
    def test_bad_knobs(self, kwargs):
        with pytest.raises(ValueError):
            ArithmeticTask(**kwargs)

    def test_unknown_knob_is_a_clear_error(self):
        with pytest.raises(TypeError, match="digitz"):
            gym.make("lmgym/Arithmetic-v0", digitz=3)


def test_gsm_symbolic_splits_are_disjoint():
    task = GSMSymbolicTask(test_size=50)
    test = {task.problem("test", i).question for i in range(50)}
    train = {task.problem("train", i).question for i in range(300)}
    assert not train & test


class TestPromptTemplates:
    def test_plain(self):
        env = gym.make("lmgym/Arithmetic-v0")
        prompt, _ = env.reset(options={"index": 0})
        assert prompt == env.unwrapped.problem.question + "="

    def test_few_shot_uses_train_exemplars(self):
        env = gym.make("lmgym/GSM8K-v0", split="test", prompt_template="few-shot", num_shots=2)
        prompt, _ = env.reset(options={"index": 0})
        task = env.unwrapped.task
        assert prompt.startswith("Question: " + task.problem("train", 0).question)
        assert "<<" not in prompt  # calculator annotations are stripped from exemplars
        assert prompt.count("Question:") == 3 and prompt.endswith("Answer:")

    def test_chat_template_of_a_tokenizer(self, char_tok):
        env = gym.make("lmgym/Arithmetic-v0", prompt_template="chat", tokenizer=char_tok)
        prompt, _ = env.reset(options={"index": 0})
        assert prompt.startswith("<user>Compute") and prompt.endswith("<assistant>")
        with pytest.raises(ValueError, match="needs tokenizer"):
            gym.make("lmgym/Arithmetic-v0", prompt_template="chat")

    def test_custom_format_and_callable(self):
        env = gym.make("lmgym/Arithmetic-v0", prompt_template="Q: {question}\nA:")
        assert env.reset(options={"index": 0})[0].startswith("Q: ")
        env = gym.make("lmgym/Arithmetic-v0", prompt_template=lambda p: p.question.upper() + "?")
        assert env.reset(options={"index": 0})[0].endswith("?")
        with pytest.raises(ValueError, match="unknown prompt_template"):
            gym.make("lmgym/Arithmetic-v0", prompt_template="fancy")


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
        with pytest.raises(ValueError, match="unknown split 'validation'"):
            gym.make("lmgym/Arithmetic-v0", split="validation")


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
