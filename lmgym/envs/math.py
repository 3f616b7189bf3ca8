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

Splits (``train``, ``validation``, ``test``) never share a problem: the procedural tasks assign
every problem to a split by a stable hash of its text (:func:`lmgym.data.held_out_split`);
GSM8K has its own train and test, and its validation split is a stable carve-out of train (the
questions with ``stable_bucket(question, 20) == 0``, about 5%).
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Sequence

from lmgym.core import Problem, Task
from lmgym.data import held_out_split, load_hub_rows, local_files, read_jsonl, stable_bucket
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
            info["ground_truth"] = verdict.reward  # the verified answer, without dense shaping
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
        validation_size: problems in the validation split (all distinct).
        dense, dense_coef: see :class:`MathTask`.
        relabel: the share of problems (chosen by a stable hash of the expression, the same in
            every split and on every machine) that are *relabelled*: shown as
            ``relabel_marker + expression`` (``~47+18=``) and answered by the negated value
            (``-65``), a rule the pretrained model has never seen, so it gives the right
            answer almost zero probability: a subset with near-zero reward standard deviation
            although its expected reward is far from optimal (Razin et al. 2024). Every problem
            then has ``meta["subset"]`` (``"relabelled"`` or ``"rest"``), which evaluation and
            training logs break their metrics down by.
        relabel_marker: the visible cue of a relabelled problem (so the rule is learnable).
        subset: ``"relabelled"`` or ``"rest"``: only that subset's problems, in every split
            (e.g. SFT on relabelled problems alone); None: all.

    With one step the reference solution is the number (``47+18=`` -> ``65``); with more it
    works one operation at a time (``3+4*5=`` -> ``4*5=20, 3+20=23``).
    The plain prompt is ``"{question}="``, the format lmgym's tiny models are trained on.
    """

    name = "Arithmetic"
    plain_template = "{question}="
    chat_instruction = "Compute the value of the expression. Finish with a line '#### <answer>'."
    TRAIN_SIZE = 2**31 - 1  # a procedural stream: problem i is generated from i
    HELD_OUT = ("validation", "test")  # generated and de-duplicated up front; train is a stream

    def __init__(
        self,
        digits: int | tuple[int, int] = 2,
        operators: str = "+-",
        steps: int | tuple[int, int] = 1,
        test_size: int = 500,
        validation_size: int = 500,
        dense: bool = False,
        dense_coef: float = 0.5,
        relabel: float = 0.0,
        relabel_marker: str = "~",
        subset: str | None = None,
    ):
        super().__init__(dense=dense, dense_coef=dense_coef)
        if subset not in (None, "relabelled", "rest"):
            raise ValueError(f"subset must be None, 'relabelled' or 'rest', got {subset!r}")
        if subset is not None and not 0 < relabel < 1:
            raise ValueError(f"subset={subset!r} needs a relabelled share 0 < relabel < 1, got {relabel}")
        self.subset = subset
        if not 0.0 <= relabel <= 1.0:
            raise ValueError(f"relabel must be a share in [0, 1], got {relabel}")
        if relabel and (not relabel_marker or set(relabel_marker) & set("0123456789+-*= \n")):
            raise ValueError(f"relabel_marker must be a non-empty cue that is not part of an expression, got {relabel_marker!r}")
        self.relabel, self.relabel_marker = relabel, relabel_marker
        self.digits = _inclusive_range("digits", digits, low=1, high=18)
        self.steps = _inclusive_range("steps", steps, low=1, high=16)
        if not operators or set(operators) - set("+-*"):
            raise ValueError(f"operators must be a non-empty subset of '+-*', got {operators!r}")
        if test_size < 1 or validation_size < 1:
            raise ValueError(f"test_size and validation_size must be >= 1, got {test_size}, {validation_size}")
        self.operators = "".join(dict.fromkeys(operators))
        self.sizes = {"test": test_size, "validation": validation_size}  # the held-out splits; train is a stream
        self._held_out: dict[str, list[tuple[str, int, str]]] = {}

    def num_problems(self, split: str) -> int:
        self.check_split(split)
        return self.TRAIN_SIZE if split == "train" else len(self._held_out_problems(split))

    def _in_subset(self, question: str) -> bool:
        return self.subset is None or self.is_relabelled(question) == (self.subset == "relabelled")

    def problem(self, split: str, index: int) -> Problem:
        self.check_split(split)
        if split in self.HELD_OUT:
            question, answer, solution = self._held_out_problems(split)[index]
        else:
            attempt = 0
            while True:  # rejection: about 1 in 10 candidates is held out (validation or test), or outside `subset`
                question, answer, solution = self._generate(random.Random(f"train:{index}:{attempt}"))
                if held_out_split(question) == "train" and self._in_subset(question):
                    break
                attempt += 1
        if not self.relabel:
            return self.make_problem(index, question, str(answer), solution)
        if not self.is_relabelled(question):
            problem = self.make_problem(index, question, str(answer), solution)
            problem.meta["subset"] = "rest"
            return problem
        negated = -answer
        solution = str(negated) if solution == str(answer) else f"{solution}, negated: {negated}"
        problem = self.make_problem(index, self.relabel_marker + question, str(negated), solution)
        problem.meta["subset"] = "relabelled"
        return problem

    def is_relabelled(self, expression: str) -> bool:
        """Whether an expression is in the relabelled share (a stable hash, independent of the
        hash that assigns splits)."""
        return self.relabel > 0 and stable_bucket(f"relabel:{expression}", 1_000_000) < self.relabel * 1_000_000

    def format_exemplar(self, problem: Problem) -> str:
        return f"{problem.question}={problem.solution}"

    def _held_out_problems(self, split: str) -> list[tuple[str, int, str]]:
        if split not in self._held_out:
            problems, seen, size = [], set(), self.sizes[split]
            for attempt in range(400 * size):
                candidate = self._generate(random.Random(f"{split}:{attempt}"))
                if candidate[0] not in seen and held_out_split(candidate[0]) == split:
                    seen.add(candidate[0])
                    problems.append(candidate)
                    if len(problems) == size:
                        break
            else:
                raise ValueError(
                    f"only {len(problems)} distinct {split} problems exist for digits={self.digits}, "
                    f"operators={self.operators!r}, steps={self.steps}: lower {split}_size"
                )
            self._held_out[split] = [p for p in problems if self._in_subset(p[0])]  # the same problems, filtered
        return self._held_out[split]

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
        validation_size: problems in the validation split.
        seed: selects a different (but again reproducible) problem stream.
        dense, dense_coef: see :class:`MathTask`.

    Problem ``i`` of a split is the first of reasoning-gym's items ``16*i, 16*i+1, ...``
    (from a split-specific seed) whose text hashes into that split
    (``held_out_split(question, 2)``: half of all texts train, a quarter each validation and
    test), so splits never overlap. The worked solution is reasoning-gym's ``answer_cot``.
    """

    name = "GSMSymbolic"
    TRAIN_SIZE = 2**18
    _STRIDE = 16
    _SEED_OFFSETS = {"train": 17, "test": 29, "validation": 41}

    def __init__(self, test_size: int = 500, validation_size: int = 500, seed: int = 0, dense: bool = False,
                 dense_coef: float = 0.5):
        super().__init__(dense=dense, dense_coef=dense_coef)
        if test_size < 1 or validation_size < 1:
            raise ValueError(f"test_size and validation_size must be >= 1, got {test_size}, {validation_size}")
        import reasoning_gym

        self.seed = seed
        self.sizes = {"train": self.TRAIN_SIZE, "validation": validation_size, "test": test_size}
        self._datasets = {
            split: reasoning_gym.create_dataset(
                "gsm_symbolic", seed=seed * 1_000_003 + self._SEED_OFFSETS[split], size=self._STRIDE * size
            )
            for split, size in self.sizes.items()
        }
        self._cache: dict[tuple[str, int], Problem] = {}

    def num_problems(self, split: str) -> int:
        self.check_split(split)
        return self.sizes[split]

    def problem(self, split: str, index: int) -> Problem:
        self.check_split(split)
        key = (split, index)
        if key not in self._cache:
            dataset = self._datasets[split]
            position = self._STRIDE * index
            while True:
                item = dataset[position % len(dataset)]
                if held_out_split(item["question"], 2) == split:
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
    the first train solutions with their calculator annotations removed. ``validation`` is the
    source train file's questions with ``stable_bucket(question, 20) == 0`` (334 of 7,473), in
    source order; ``train`` is the rest of it.
    """

    name = "GSM8K"
    SOURCE_SPLITS = ("train", "test")
    VALIDATION_BUCKETS = 20

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
        self.files = local_files("gsm8k", {split: f"{split}.jsonl" for split in self.SOURCE_SPLITS},
                                 data_dir=data_dir, data_files=data_files)
        self._columns: dict[str, tuple[list[str], list[str]]] = {}
        self._cache: dict[tuple[str, int], Problem] = {}

    def columns(self, split: str) -> tuple[list[str], list[str]]:
        self.check_split(split)
        if split not in self._columns:
            source = "test" if split == "test" else "train"
            if self.files is not None:
                rows = read_jsonl(self.files[source], required={"question", "answer"})
            else:
                rows = load_hub_rows("gsm8k", self.hub_id, self.hub_config, source)
            if source == "train":  # the validation carve-out, by a stable hash of the question
                held_out = split == "validation"
                rows = [row for row in rows if (stable_bucket(row["question"], self.VALIDATION_BUCKETS) == 0) == held_out]
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
