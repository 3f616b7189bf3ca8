"""Math reasoning tasks scored by their verified final answer.

- ``lmgym/Arithmetic-v0`` (:class:`ArithmeticTask`): procedural integer arithmetic, offline.
- ``lmgym/GSMSymbolic-v0`` (:class:`GSMSymbolicTask`): GSM-style word problems generated
  offline by ``reasoning-gym``'s ``gsm_symbolic`` templates.
- ``lmgym/GSM8K-v0`` (:class:`GSM8KTask`): ``openai/gsm8k`` through ``datasets``, or a
  local copy in the original jsonl format.

Observation: the prompt. Action: the completion. Reward: 1.0 when
:func:`lmgym.rewards.math.verify` finds the reference answer as the completion's final answer,
else 0.0; with ``dense=True``, plus up to ``dense_coef`` for the reference's intermediate
results that the completion derives (``= value``; see :func:`lmgym.rewards.math.step_rewards`).
``info`` carries ``correct``, ``extracted_answer``, ``extraction`` (which rule found it) and
``reason``, plus ``step_rewards`` when dense.

Train and test splits never share a problem: the procedural tasks assign every problem to a
split by a stable hash of its text, and GSM8K has its own splits.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Sequence

from lmgym.core import Problem, Task
from lmgym.data import load_hub_rows, local_files, read_jsonl, stable_bucket
from lmgym.rewards.math import parse_number, reference_intermediates, split_reference, step_rewards, verify

class MathTask(Task):
    """Shared scoring for final-answer math tasks.

    Args:
        dense: add the per-step heuristic reward to the final-answer reward.
        dense_coef: the most the intermediate steps can add together.
    """

    chat_instruction = "Solve the problem step by step. Finish with a line '#### <answer>'."

    def __init__(self, dense: bool = False, dense_coef: float = 0.5):
        if dense_coef < 0:
            raise ValueError(f"dense_coef must be >= 0, got {dense_coef}")
        self.dense, self.dense_coef = dense, dense_coef

    def make_problem(self, index: int, question: str, answer: str, solution: str | None) -> Problem:
        meta = {"answer_value": parse_number(answer)}
        if self.dense and solution:
            meta["intermediates"] = reference_intermediates(solution)
        return Problem(index=index, question=question, answer=answer, solution=solution, meta=meta)

    def score_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[tuple[float, dict]]:
        results = []
        for problem, completion in zip(problems, completions, strict=True):
            reference = problem.meta["answer_value"]
            verdict = verify(completion, reference if reference is not None else problem.answer)
            info = verdict.as_info()
            reward = verdict.reward
            if self.dense:
                paid = self.step_events(problem, completion)
                info["step_rewards"] = paid
                reward += sum(r for _, r in paid)
            results.append((reward, info))
        return results

    def step_events(self, problem: Problem, completion: str) -> list[tuple[int, float]]:
        """Dense rewards as ``(end_offset, reward)`` in ``completion``; [] unless ``dense``."""
        if not self.dense:
            return []
        return step_rewards(completion, problem.meta.get("intermediates", ()), self.dense_coef)


# --- Arithmetic ---------------------------------------------------------------------------


class ArithmeticTask(MathTask):
    """Integer arithmetic expressions such as ``47+18`` or ``3+4*5``.

    Args:
        digits: digits per operand: an int (``2`` -> 10..99; ``1`` -> 0..9) or an inclusive
            ``(min, max)`` range, drawn per operand.
        operators: any of ``"+-*"``; precedence is the usual one.
        steps: operations per expression: an int or an inclusive ``(min, max)`` range.
        test_size: problems in the test split (all distinct).
        dense, dense_coef: see :class:`MathTask`.

    With one step the reference solution is the number (``47+18=`` -> ``65``); with more it
    works one operation at a time (``3+4*5=`` -> ``4*5=20, 3+20=23``).
    The plain prompt is ``"{question}="``, the format lmgym's tiny models are trained on.
    """

    name = "Arithmetic"
    plain_template = "{question}="
    chat_instruction = "Compute the value of the expression. Finish with a line '#### <answer>'."
    TRAIN_SIZE = 2**31 - 1  # a procedural stream: problem i is generated from i
    _TEST_BUCKET = 0  # stable_bucket(question, 10) == 0 -> test, else train

    def __init__(
        self,
        digits: int | tuple[int, int] = 2,
        operators: str = "+-",
        steps: int | tuple[int, int] = 1,
        test_size: int = 1000,
        dense: bool = False,
        dense_coef: float = 0.5,
    ):
        super().__init__(dense=dense, dense_coef=dense_coef)
        self.digits = _inclusive_range("digits", digits, low=1, high=18)
        self.steps = _inclusive_range("steps", steps, low=1, high=16)
        if not operators or set(operators) - set("+-*"):
            raise ValueError(f"operators must be a non-empty subset of '+-*', got {operators!r}")
        if test_size < 1:
            raise ValueError(f"test_size must be >= 1, got {test_size}")
        self.operators = "".join(dict.fromkeys(operators))
        self.test_size = test_size
        self._test: list[tuple[str, int, str]] | None = None

    def num_problems(self, split: str) -> int:
        self.check_split(split)
        return self.TRAIN_SIZE if split == "train" else self.test_size

    def problem(self, split: str, index: int) -> Problem:
        self.check_split(split)
        if split == "test":
            question, answer, solution = self._test_problems()[index]
        else:
            attempt = 0
            while True:  # rejection: about 1 in 10 candidates belongs to the test split
                question, answer, solution = self._generate(random.Random(f"train:{index}:{attempt}"))
                if stable_bucket(question) != self._TEST_BUCKET:
                    break
                attempt += 1
        return self.make_problem(index, question, str(answer), solution)

    def format_exemplar(self, problem: Problem) -> str:
        return f"{problem.question}={problem.solution}"

    def _test_problems(self) -> list[tuple[str, int, str]]:
        if self._test is None:
            problems, seen = [], set()
            for attempt in range(200 * self.test_size):
                candidate = self._generate(random.Random(f"test:{attempt}"))
                if candidate[0] not in seen and stable_bucket(candidate[0]) == self._TEST_BUCKET:
                    seen.add(candidate[0])
                    problems.append(candidate)
                    if len(problems) == self.test_size:
                        break
            else:
                raise ValueError(
                    f"only {len(problems)} distinct test problems exist for digits={self.digits}, "
                    f"operators={self.operators!r}, steps={self.steps}: lower test_size"
                )
            self._test = problems
        return self._test

    def _generate(self, rng: random.Random) -> tuple[str, int, str]:
        steps = rng.randint(*self.steps)
        numbers = [self._operand(rng) for _ in range(steps + 1)]
        ops = [rng.choice(self.operators) for _ in range(steps)]
        question = "".join(f"{n}{op}" for n, op in zip(numbers, ops)) + str(numbers[-1])
        answer, work = _evaluate(numbers, ops)
        solution = str(answer) if steps == 1 else ", ".join(work)
        return question, answer, solution

    def _operand(self, rng: random.Random) -> int:
        digits = rng.randint(*self.digits)
        return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def _inclusive_range(name: str, value, low: int, high: int) -> tuple[int, int]:
    lo, hi = (value, value) if isinstance(value, int) else tuple(value)
    if not (isinstance(lo, int) and isinstance(hi, int) and low <= lo <= hi <= high):
        raise ValueError(f"{name} must be an int or (min, max) within [{low}, {high}], got {value!r}")
    return lo, hi


def _evaluate(numbers: list[int], ops: list[str]) -> tuple[int, list[str]]:
    """Value of ``n0 op0 n1 op1 ...`` with * before +/-, and the work one operation at a time."""
    numbers, ops, work = list(numbers), list(ops), []
    while ops:
        i = ops.index("*") if "*" in ops else 0
        a, op, b = numbers[i], ops[i], numbers[i + 1]
        value = a * b if op == "*" else a + b if op == "+" else a - b
        work.append(f"{a}{op}{b}={value}")
        numbers[i : i + 2], ops[i : i + 1] = [value], []
    return numbers[0], work


# --- GSM-Symbolic -------------------------------------------------------------------------


class GSMSymbolicTask(MathTask):
    """GSM-style word problems from ``reasoning-gym``'s ``gsm_symbolic`` generators.

    Args:
        test_size: problems in the test split.
        seed: selects a different (but again reproducible) problem stream.
        dense, dense_coef: see :class:`MathTask`.

    Problem ``i`` of a split is the first of reasoning-gym's items ``16*i, 16*i+1, ...``
    (from a split-specific seed) whose text hashes into that split, so splits never overlap.
    The worked solution is reasoning-gym's ``answer_cot``.
    """

    name = "GSMSymbolic"
    TRAIN_SIZE = 2**18
    _STRIDE = 16

    def __init__(self, test_size: int = 500, seed: int = 0, dense: bool = False, dense_coef: float = 0.5):
        super().__init__(dense=dense, dense_coef=dense_coef)
        if test_size < 1:
            raise ValueError(f"test_size must be >= 1, got {test_size}")
        import reasoning_gym

        self.test_size, self.seed = test_size, seed
        self._datasets = {
            split: reasoning_gym.create_dataset(
                "gsm_symbolic", seed=seed * 1_000_003 + offset, size=self._STRIDE * size
            )
            for split, offset, size in (("train", 17, self.TRAIN_SIZE), ("test", 29, test_size))
        }
        self._cache: dict[tuple[str, int], Problem] = {}

    def num_problems(self, split: str) -> int:
        self.check_split(split)
        return self.TRAIN_SIZE if split == "train" else self.test_size

    def problem(self, split: str, index: int) -> Problem:
        self.check_split(split)
        key = (split, index)
        if key not in self._cache:
            dataset, want = self._datasets[split], int(split == "train")
            position = self._STRIDE * index
            while True:
                item = dataset[position % len(dataset)]
                if stable_bucket(item["question"], 2) == want:
                    break
                position += 1
            solution = item["metadata"].get("answer_cot")
            self._cache[key] = self.make_problem(index, item["question"], str(item["answer"]), solution)
        return self._cache[key]


# --- GSM8K --------------------------------------------------------------------------------

_CALCULATOR_ANNOTATION = re.compile(r"<<[^<>]*>>")


class GSM8KTask(MathTask):
    """Grade-school math word problems (Cobbe et al., 2021).

    Args:
        data_dir: a folder holding ``train.jsonl``/``test.jsonl`` in the original format, or
            a folder with a ``gsm8k/`` subfolder holding them.
        data_files: ``{"train": path, "test": path}``: explicit files (overrides ``data_dir``).
        hub_id, hub_config: the Hub dataset used when no local data is found (the lookup
            order, ``$LMGYM_DATA_DIR/gsm8k/`` included, is :mod:`lmgym.data`'s).
        dense, dense_coef: see :class:`MathTask`; intermediates come from the reference's
            ``<<a*b=c>>`` calculator annotations.

    The reference answer is the number after the solution's ``####``. Few-shot exemplars are
    the first train solutions with their calculator annotations removed.
    """

    name = "GSM8K"

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        data_files: dict[str, str | os.PathLike] | None = None,
        hub_id: str = "openai/gsm8k",
        hub_config: str = "main",
        dense: bool = False,
        dense_coef: float = 0.5,
    ):
        super().__init__(dense=dense, dense_coef=dense_coef)
        self.hub_id, self.hub_config = hub_id, hub_config
        self.files = local_files("gsm8k", {split: f"{split}.jsonl" for split in self.splits},
                                 data_dir=data_dir, data_files=data_files)
        self._columns: dict[str, tuple[list[str], list[str]]] = {}
        self._cache: dict[tuple[str, int], Problem] = {}

    def columns(self, split: str) -> tuple[list[str], list[str]]:
        self.check_split(split)
        if split not in self._columns:
            if self.files is not None:
                rows = read_jsonl(self.files[split], required={"question", "answer"})
            else:
                rows = load_hub_rows("gsm8k", self.hub_id, self.hub_config, split)
            self._columns[split] = [row["question"] for row in rows], [row["answer"] for row in rows]
        return self._columns[split]

    def num_problems(self, split: str) -> int:
        return len(self.columns(split)[0])

    def problem(self, split: str, index: int) -> Problem:
        key = (split, index)
        if key not in self._cache:
            questions, solutions = self.columns(split)
            solution = solutions[index]
            try:
                answer = split_reference(solution)[1]
            except ValueError:
                answer = ""  # scores 0 with reason "unparsable reference"; never raises mid-training
            self._cache[key] = self.make_problem(index, questions[index], answer, solution)
        return self._cache[key]

    def format_exemplar(self, problem: Problem) -> str:
        solution = _CALCULATOR_ANNOTATION.sub("", problem.solution or "")
        return self.plain_template.format(question=problem.question) + " " + solution
