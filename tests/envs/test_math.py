"""The math tasks (lmgym/envs/math.py) on real data. The contract every env shares is in tests/test_core.py."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import pytest

import lmgym.core
from lmgym.envs.math import ArithmeticTask, GSM8KTask, GSMSymbolicTask
from lmgym.rewards.math import verify

def test_gsm8k_loads_the_local_copy_with_its_unicode(offline_data_dir):
    env = gym.make("lmgym/GSM8K-v0", split="test")
    assert env.unwrapped.num_problems == _lines(offline_data_dir / "gsm8k" / "test.jsonl")
    prompt, _ = env.reset(options={"index": 0})
    assert "Janet\u2019s ducks" in prompt  # non-ASCII survives and is inside the space
    assert env.observation_space.contains(prompt)
    _, reward, terminated, truncated, info = env.step("She makes 9 * 2 = $18.\n#### 18")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["extracted_answer"] == "18" and info["reference_answer"] == "18"
    train, validation = (gym.make("lmgym/GSM8K-v0", split=s).unwrapped for s in ("train", "validation"))
    assert train.num_problems + validation.num_problems == _lines(offline_data_dir / "gsm8k" / "train.jsonl")
    questions = lambda env: {env.task.problem(env.split, i).question for i in range(env.num_problems)}
    assert validation.num_problems > 0 and not questions(train) & questions(validation)


def _lines(path) -> int:
    return sum(1 for line in open(path, encoding="utf-8") if line.strip())


@pytest.mark.full_data
def test_gsm8k_full_splits_have_their_published_sizes():
    sizes = [gym.make("lmgym/GSM8K-v0", split=s).unwrapped.num_problems for s in ("train", "validation", "test")]
    assert sizes == [7139, 334, 1319]  # validation: a stable 5% carve-out of the published 7,473


def test_gsm8k_data_paths(offline_data_dir, tmp_path, monkeypatch):
    # a folder with the split files directly inside, given as a keyword
    task = GSM8KTask(data_dir=offline_data_dir / "gsm8k")
    assert task.num_problems("test") == _lines(offline_data_dir / "gsm8k" / "test.jsonl")
    # explicit files
    small = tmp_path / "small.jsonl"
    small.write_text('{"question": "1+1?", "answer": "1+1=<<1+1=2>>2\\n#### 2"}\n')
    task = GSM8KTask(data_files={"train": small, "test": small})
    assert task.num_problems("train") + task.num_problems("validation") == 1 and task.problem("test", 0).answer == "2"
    # clear errors for missing paths, in the keyword and in the environment variable
    with pytest.raises(FileNotFoundError, match="not a directory"):
        GSM8KTask(data_dir=tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="file not found"):
        GSM8KTask(data_dir=tmp_path)
    monkeypatch.setenv("LMGYM_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="LMGYM_DATA_DIR"):
        gym.make("lmgym/GSM8K-v0")


def test_gsm8k_unparsable_reference_scores_zero_and_says_so(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q?", "answer": "no final line"}\n')
    env = lmgym.core.LMEnv(GSM8KTask(data_files={"train": bad, "test": bad}), split="test")
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

    def test_train_validation_and_test_never_overlap(self):
        task = ArithmeticTask()  # 2-digit +/-: a small space, where overlap would show
        test = {task.problem("test", i).question for i in range(task.num_problems("test"))}
        validation = {task.problem("validation", i).question for i in range(task.num_problems("validation"))}
        assert len(test) == task.num_problems("test") == 500 and len(validation) == 500  # distinct
        train = {task.problem("train", i).question for i in range(20_000)}
        assert not train & test and not train & validation and not validation & test

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
    task = GSMSymbolicTask(test_size=50, validation_size=50)
    test = {task.problem("test", i).question for i in range(50)}
    validation = {task.problem("validation", i).question for i in range(50)}
    train = {task.problem("train", i).question for i in range(300)}
    assert not train & test and not train & validation and not validation & test


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




def test_relabelled_arithmetic_is_a_stable_marked_share_answered_by_the_negation():
    from gymnasium.utils.env_checker import check_env

    plain, task = ArithmeticTask(), ArithmeticTask(relabel=0.1)
    test = [task.problem("test", i) for i in range(500)]
    relabelled = [p for p in test if p.meta["subset"] == "relabelled"]
    assert 0.05 < len(relabelled) / 500 < 0.15
    assert {p.meta["subset"] for p in test} == {"relabelled", "rest"}
    train = [task.problem("train", i) for i in range(4000)]
    assert 0.08 < sum(p.meta["subset"] == "relabelled" for p in train) / 4000 < 0.12
    for problem in test:  # the same problems as without relabelling, in the same splits and order
        original = plain.problem("test", problem.index)
        if problem.meta["subset"] == "rest":
            assert problem == dataclasses.replace(original, meta={**original.meta, "subset": "rest"})
        else:
            assert problem.question == "~" + original.question and int(problem.answer) == -int(original.answer)
            assert ArithmeticTask(relabel=0.1).is_relabelled(original.question)  # the same on every instance
    some = [p for p in relabelled if int(p.answer) != 0][:5]  # (0 is its own negation)
    scored = task.score_batch(some * 2, [p.solution for p in some] + [plain.problem("test", p.index).answer for p in some])
    assert [r for r, _ in scored] == [1.0] * 5 + [0.0] * 5  # the negated value scores, the original does not
    multi = ArithmeticTask(relabel=0.5, steps=2)
    problem = next(p for p in (multi.problem("test", i) for i in range(50)) if p.meta["subset"] == "relabelled")
    assert problem.solution.endswith(f"negated: {problem.answer}") and multi.score_batch([problem], [problem.solution])[0][0] == 1.0
    env = gym.make("lmgym/Arithmetic-v0", relabel=0.1, split="test")
    check_env(env.unwrapped)
    env.reset(options={"index": relabelled[0].index})
    assert env.step(relabelled[0].answer)[4]["subset"] == "relabelled"
    with pytest.raises(ValueError, match="relabel"):
        ArithmeticTask(relabel=1.5)
    with pytest.raises(ValueError, match="relabel_marker"):
        ArithmeticTask(relabel=0.1, relabel_marker="+")


def test_a_subset_option_keeps_only_that_share_in_every_split():
    full = ArithmeticTask(relabel=0.1)
    only = ArithmeticTask(relabel=0.1, subset="relabelled")
    rest = ArithmeticTask(relabel=0.1, subset="rest")
    relabelled = [full.problem("test", i) for i in range(500) if full.problem("test", i).meta["subset"] == "relabelled"]
    assert only.num_problems("test") == len(relabelled) and rest.num_problems("test") == 500 - len(relabelled)
    assert [only.problem("test", i).question for i in range(len(relabelled))] == [p.question for p in relabelled]
    assert all(only.problem("train", i).meta["subset"] == "relabelled" for i in range(200))
    assert all(rest.problem("train", i).meta["subset"] == "rest" for i in range(200))
    with pytest.raises(ValueError, match="needs a relabelled share"):
        ArithmeticTask(subset="relabelled")
