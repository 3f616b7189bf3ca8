"""lmgym/TinyCode-v0: the procedural code task, scored by its tests in the real sandbox."""

from __future__ import annotations

import collections

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import lmgym  # noqa: F401
from lmgym.envs.code import TinyCodeTask


@pytest.fixture(scope="module")
def task():
    return TinyCodeTask()


def test_gymnasium_contract():
    env = gym.make("lmgym/TinyCode-v0")
    check_env(env.unwrapped, skip_render_check=True)
    prompt, info = env.reset(seed=0)
    assert prompt.startswith("# ") and prompt.endswith("\n") and "return" not in prompt.split(":", 1)[0]


def test_every_reference_passes_and_wrong_ones_fail(task):
    problems = [task.problem("test", i) for i in range(300)]
    right = task.score_batch(problems, [p.solution for p in problems])
    assert [reward for reward, _ in right] == [1.0] * 300
    assert all(info["tests_total"] == 4 and info["ground_truth"] == 1.0 for _, info in right)
    # off by one in the returned value: every int function fails, and nearly all others
    wrong = [p.solution.replace("return ", "return 1 + " if p.meta["kind"] == "int" else "return 2 * ") for p in problems]
    scored = task.score_batch(problems, wrong)
    int_rewards = [reward for (reward, _), p in zip(scored, problems) if p.meta["kind"] == "int"]
    assert int_rewards and max(int_rewards) == 0.0
    assert sum(reward for reward, _ in scored) <= 0.05 * len(problems)  # e.g. 2 * 0 == 0 for an empty list


def test_expected_values_come_from_the_description_not_from_running_code(task):
    problem = next(task.problem("train", i) for i in range(50) if task.problem("train", i).meta["kind"] == "int")
    name = problem.meta["entry_point"]
    namespace = {}
    exec(problem.solution, namespace)  # the reference, run here only to cross-check the tests
    for test in problem.meta["tests"]:
        call, expected = test.removeprefix("assert ").split(" == ")
        assert namespace[name](eval(call.removeprefix(name))) == eval(expected)


def test_splits_share_no_description_and_follow_trains_mix(task):
    train = [task.problem("train", i) for i in range(5000)]
    test = [task.problem("test", i) for i in range(500)]
    validation = [task.problem("validation", i) for i in range(500)]
    questions = lambda ps: {p.question for p in ps}
    assert not questions(train) & questions(test) and not questions(train) & questions(validation)
    assert not questions(test) & questions(validation)
    for split in (test, validation):
        kinds = collections.Counter(p.meta["kind"] for p in split)
        assert set(kinds) == {"int", "list", "str"} and min(kinds.values()) >= 80  # no kind squeezed out
    assert len(questions(test)) > 200  # repeats allowed, but not a handful of problems


def test_reset_by_index_and_dense_reward():
    env = gym.make("lmgym/TinyCode-v0", split="validation", reward="dense")
    env.reset(options={"index": 7})
    problem = env.unwrapped.task.problem("validation", 7)
    lines = problem.solution.splitlines()
    _, reward, *_, info = env.step(f"{lines[0]}\n    return None")
    assert reward == 0.0 and info["tests_passed"] == 0
    env.reset(options={"index": 7})
    _, reward, *_, info = env.step("```python\n" + problem.solution + "\n```")  # fenced also works
    assert reward == 1.0 and info["mode"] == "full"


def test_bad_knobs_are_clear_errors():
    with pytest.raises(ValueError, match="kinds"):
        TinyCodeTask(kinds=("int", "float"))
    with pytest.raises(ValueError, match="steps"):
        TinyCodeTask(steps=9)
    only_int = TinyCodeTask(kinds=("int",), steps=3)
    assert only_int.problem("test", 0).meta["kind"] == "int" and only_int.problem("test", 0).solution.count(" ") >= 6


def test_a_program_cannot_read_the_tests(task):
    problem = task.problem("test", 0)
    name = problem.meta["entry_point"]
    arg = problem.solution.split("(")[1].split(")")[0]
    hack = (f"import sys\ndef {name}({arg}):\n    frame = sys._getframe(1)\n"
            "    return frame.f_code.co_consts[-1] if frame.f_code.co_consts else None")
    reward, info = task.score_batch([problem], [hack])[0]
    assert reward == 0.0
