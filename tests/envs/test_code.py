"""HumanEval and MBPP environments on their real data, scored in the real sandbox."""

from __future__ import annotations

import gymnasium as gym
import pytest

import lmgym  # noqa: F401
from lmgym.envs.code import HumanEvalTask, MBPPTask, build_program, extract_code, split_humaneval_test
from lmgym.sandbox import Job


@pytest.fixture(scope="module")
def humaneval():
    return HumanEvalTask()


@pytest.fixture(scope="module")
def mbpp(offline_data_dir):
    return MBPPTask()


def wrong(solution: str) -> str:
    return "    return '__wrong__'\n" + solution


class TestHumanEval:
    def test_all_canonical_solutions_pass_and_wrong_returns_fail(self, humaneval):
        problems = [humaneval.problem("full", i) for i in range(humaneval.num_problems("full"))]
        assert len(problems) == 164
        scored = humaneval.score_batch(problems, [p.solution for p in problems])
        failing = [p.meta["task_id"] for p, (reward, _) in zip(problems, scored) if reward != 1.0]
        assert failing == []
        scored = humaneval.score_batch(problems, [wrong(p.solution) for p in problems])
        assert [reward for reward, _ in scored] == [0.0] * 164

    def test_splits_partition_the_164_problems(self, humaneval):
        ids = {split: {humaneval.problem(split, i).meta["task_id"] for i in range(humaneval.num_problems(split))}
               for split in ("train", "validation", "test", "full")}
        assert not (ids["train"] & ids["validation"]) and not (ids["train"] & ids["test"]) and not (ids["validation"] & ids["test"])
        assert ids["train"] | ids["validation"] | ids["test"] == ids["full"] and len(ids["full"]) == 164

    def test_check_is_split_into_one_test_per_assert(self):
        setup, tests = split_humaneval_test(
            "METADATA = {}\n\ndef check(candidate):\n    assert True, 'x'\n    xs = [1, 2]\n"
            "    assert candidate(xs) == 3\n    for x in xs:\n        assert candidate([x]) == x\n    print('done')\n",
            "total",
        )
        assert setup == "METADATA = {}\ncandidate = total"
        assert tests == ["assert True, 'x'\nxs = [1, 2]\nassert candidate(xs) == 3",
                         "for x in xs:\n    assert candidate([x]) == x\nprint('done')"]

    def test_index_and_info(self, humaneval):
        assert gym.make("lmgym/HumanEval-v0").unwrapped.split == "train"  # carved out of the 164
        env = gym.make("lmgym/HumanEval-v0", split="full")
        prompt, info = env.reset(options={"index": 0})
        assert prompt.startswith("from typing import List") and "has_close_elements" in prompt
        solution = humaneval.problem("full", 0).solution
        _, reward, terminated, _, info = env.step(solution)
        assert reward == 1.0 and terminated and info["passed"] and info["mode"] == "continuation"
        assert info["tests_passed"] == info["tests_total"] == len(info["tests"]) > 1
        assert {"kind", "message", "stdout", "stderr", "seconds"} <= set(info)
        assert info["reference_answer"] == solution

    def test_dense_reward_is_the_fraction_of_tests_passed(self):
        task = HumanEvalTask(reward="dense")
        problem = task.problem("full", 0)  # has_close_elements: some tests expect False
        reward, info = task.score_batch([problem], ["    return False\n"])[0]
        assert 0 < reward < 1 and reward == info["tests_passed"] / info["tests_total"]
        reward, info = task.score_batch([problem], ["    return (\n"])[0]
        assert reward == 0.0 and info["kind"] == "syntax_error"


class TestExtraction:
    PROMPT = "from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    \"\"\"Sum.\"\"\"\n"

    def test_body_continuation_stops_at_the_next_top_level_statement(self):
        program, mode = build_program("    return sum(xs)\n\ndef helper():\n    pass\nprint('x')", "total", self.PROMPT)
        assert mode == "continuation" and program == self.PROMPT + "    return sum(xs)\n\n"

    def test_full_function_keeps_the_prompts_imports(self):
        completion = "Here you go:\n```python\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```\nDone."
        program, mode = build_program(completion, "total", self.PROMPT)
        assert mode == "full" and program.startswith("from typing import List")
        assert program.endswith("def total(xs: List[int]) -> int:\n    return sum(xs)\n")

    def test_the_block_that_defines_the_entry_point_wins(self):
        completion = "```\nprint('usage')\n```\nthen\n```py\ndef total(xs):\n    return 0\n```"
        assert extract_code(completion, "total") == "def total(xs):\n    return 0\n"
        assert extract_code(completion) == "print('usage')\n"

    def test_unclosed_fence_runs_to_the_end(self):
        assert extract_code("```python\ndef f():\n    return 1\n") == "def f():\n    return 1\n"

    def test_without_a_fence_the_completion_is_the_code(self):
        assert extract_code("def f():\n    return 1") == "def f():\n    return 1"


class TestMBPP:
    def test_splits_as_published(self, mbpp):
        sizes = {split: mbpp.num_problems(split) for split in mbpp.splits}
        assert sizes == {"test": 500, "train": 374, "validation": 90, "prompt": 10}
        assert mbpp.problem("test", 0).meta["task_id"] == 11
        assert mbpp.problem("train", 0).meta["task_id"] == 601

    def test_every_reference_solution_passes(self, mbpp):
        problems = [mbpp.problem(split, i) for split in mbpp.splits for i in range(mbpp.num_problems(split))]
        assert len(problems) == 974
        scored = mbpp.score_batch(problems, [p.solution for p in problems])
        failing = [(p.meta["task_id"], info["kind"]) for p, (reward, info) in zip(problems, scored) if reward != 1.0]
        assert failing == []
        scored = mbpp.score_batch(problems[:50], [p.solution + "\n\ndef __unused():\n    pass\n" for p in problems[:50]])
        assert all(reward == 1.0 for reward, _ in scored)

    def test_references_that_need_their_setup_after_the_program(self, mbpp):
        """Tasks 367 and 927: test_setup_code builds trees from the `Node` class the solution
        defines; harnesses that run the setup first fail them. lmgym runs it after."""
        problems = [p for p in (mbpp.problem("test", i) for i in range(500)) if p.meta["setup"]]
        problems += [p for p in (mbpp.problem("train", i) for i in range(374)) if p.meta["setup"]]
        assert sorted(p.meta["task_id"] for p in problems) == [367, 927]
        for problem in problems:
            right_order = mbpp.sandbox.run(problem.solution, problem.meta["tests"], setup=problem.meta["setup"])
            setup_first = mbpp.sandbox.run(problem.meta["setup"] + "\n" + problem.solution, problem.meta["tests"])
            assert right_order.passed and setup_first.kind == "exception" and "Node" in setup_first.message

    def test_prompt_shows_the_task_and_its_tests(self, mbpp):
        problem = mbpp.problem("test", 0)
        assert problem.question.startswith("You are an expert Python programmer, and here is your task: ")
        assert all(test in problem.question for test in problem.meta["tests"])
        assert problem.meta["entry_point"] == "remove_Occ"

    def test_a_wrong_return_value_fails(self, mbpp):
        problem = mbpp.problem("test", 0)
        program = problem.solution.replace("return s", "return s + 'x'", 1)
        reward, info = mbpp.score_batch([problem], [program])[0]
        assert reward == 0.0 and info["kind"] == "assertion"

    def test_missing_local_file_is_a_clear_error(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="mbpp.jsonl"):
            MBPPTask(data_dir=tmp_path)

    def test_vector_env_runs_programs_concurrently(self, mbpp):
        envs = gym.make_vec("lmgym/MBPP-v0", num_envs=4, split="test")
        envs.reset(options={"index": [0, 1, 2, 3]})
        spans = []
        program = ("import os, time\nSTART = time.time()\ntime.sleep(0.3)\n"
                   "print(os.getppid(), START, time.time())\n")
        _, rewards, terminated, _, infos = envs.step([program] * 4)
        assert list(rewards) == [0.0] * 4 and terminated.all()
        for stdout in infos["final_info"]["stdout"]:
            parent, start, end = stdout.split()
            spans.append((int(parent), float(start), float(end)))
        assert len({parent for parent, _, _ in spans}) == mbpp.sandbox.num_workers  # all workers used
        assert any(a[1] < b[2] and b[1] < a[2] for i, a in enumerate(spans) for b in spans[i + 1:])


class TestFeedback:
    def test_failing_attempt_continues_with_the_failing_test(self):
        env = gym.make("lmgym/MBPP-Feedback-v0", split="test", turn_penalty=0.1)
        prompt, _ = env.reset(options={"index": 0})
        task, problem = env.unwrapped.task, env.unwrapped.problem
        observation, reward, terminated, truncated, info = env.step("def remove_Occ(s, ch):\n    return s\n")
        assert (reward, terminated, truncated) == (-0.1, False, False)
        assert info["score"] == 0.0 and info["turn"] == 1 and "reference_answer" not in info
        assert observation.startswith(prompt) and "Feedback: The program failed test 1 of 3" in observation
        assert problem.meta["tests"][0] in observation
        observation, reward, terminated, _, info = env.step("```python\n" + problem.solution + "\n```")
        assert (reward, terminated, info["turn"]) == (1.0, True, 2)
        assert info["reference_answer"] == problem.solution
        assert task.max_turns == 3

    def test_episode_ends_after_max_turns(self):
        env = gym.make("lmgym/HumanEval-Feedback-v0", max_turns=2)
        env.reset(options={"index": 0})
        _, _, terminated, _, _ = env.step("    return None\n")
        assert not terminated
        _, reward, terminated, _, info = env.step("    return None\n")
        assert terminated and reward == 0.0 and info["turn"] == 2

    def test_vector_env_keeps_unfinished_episodes(self):
        envs = gym.make_vec("lmgym/MBPP-Feedback-v0", num_envs=2, split="test")
        prompts, _ = envs.reset(options={"index": [0, 0]})
        solution = envs.unwrapped.task.problem("test", 0).solution if hasattr(envs.unwrapped, "task") else None
        solution = solution or MBPPTask().problem("test", 0).solution
        observations, rewards, terminated, _, _ = envs.step([solution, "def remove_Occ(s, ch):\n    return ''\n"])
        assert list(terminated) == [True, False] and list(rewards) == [1.0, 0.0]
        assert observations[1].startswith(prompts[1]) and "Feedback:" in observations[1]


def test_job_round_trip_through_the_task(humaneval):
    job, mode = humaneval.job(humaneval.problem("full", 2), "    return number % 1.0\n")
    assert isinstance(job, Job) and mode == "continuation" and job.tests and job.setup.endswith("candidate = truncate_number")
