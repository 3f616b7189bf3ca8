"""The math verifier: extraction rules, numeric comparison, attacks, and real GSM8K references."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from lmgym.rewards.math import (
    extract_answer,
    intermediate_results,
    parse_number,
    reference_intermediates,
    split_reference,
    step_rewards,
    verify,
)


@pytest.mark.parametrize(
    "completion, answer",
    [
        ("so the total is 72.\n#### 72", "72"),
        ("The answer is $1,234.50.", "1234.5"),
        ("The answer is: 1,234,567", "1234567"),
        ("We get \\boxed{3/4}", "0.75"),
        ("We get \\boxed{\\frac{3}{4}}.", "3/4"),
        ("\\boxed{\\dfrac{1}{2}}", "0.5"),
        ("\\boxed{-5}", "-5"),
        ("\\boxed{\\$18}", "18"),
        ("The loss is -12 dollars", "-12"),
        ("Temperature fell to −7", "-7"),
        ("It is 50%", "50"),
        ("It is 50%", "0.5"),
        ("#### 72.0", "72"),
        ("#### 72.00", "72"),
        ("She had 3 apples, then 5, then 10", "10"),
        ("ANSWER: 42", "42"),
        ("#### 1,000", "1000"),
        ("x = 0.333333333", "0.333333333"),
    ],
)
def test_correct_answers(completion, answer):
    verdict = verify(completion, answer)
    assert verdict.correct and verdict.reward == 1.0 and verdict.reason == "correct"
    assert bool(verdict)


@pytest.mark.parametrize(
    "completion, answer, reason",
    [
        ("#### 71", "72", "wrong answer"),
        ("the answer is 7", "72", "wrong answer"),
        ("no numbers here", "72", "no answer found"),
        ("", "72", "no answer found"),
        ("#### seventy-two", "72", "unparsable answer"),
        ("\\boxed{}", "72", "unparsable answer"),
        ("#### 72", "", "unparsable reference"),
        ("#### 72", None, "unparsable reference"),
        ("#### 1", True, "unparsable reference"),
        ("#### 72", float("nan"), "unparsable reference"),
        ("#### 1/0", "5", "unparsable answer"),
    ],
)
def test_incorrect_answers_say_why(completion, answer, reason):
    verdict = verify(completion, answer)
    assert not verdict.correct and verdict.reward == 0.0 and verdict.reason == reason


def test_extraction_precedence_and_method():
    assert extract_answer("answer is 3 \\boxed{4} #### 5") == ("5", "####")
    assert extract_answer("answer is 3 \\boxed{4}") == ("4", "boxed")
    assert extract_answer("the answer is 3, not 2") == ("3, not 2", "answer is")
    assert extract_answer("1 and 2 and 3") == ("3", "last number")
    assert extract_answer("#### 1\nthen #### 2\nmore text 9") == ("2", "####")
    assert extract_answer("\\boxed{\\frac{1}{2}} then \\boxed{7}") == ("7", "boxed")
    assert extract_answer("nothing") == (None, None)


def test_subtraction_is_not_a_negative_number():
    assert verify("16-3", "3").correct  # "16-3" is 16 minus 3: last number 3, not -3
    assert not verify("16-3", "-3").correct
    assert verify("(4)-3", "3").correct


def test_numeric_comparison():
    assert verify("#### 0.3333333", Fraction(1, 3), rel_tol=1e-6).correct
    assert not verify("#### 0.33", Fraction(1, 3)).correct
    assert verify("#### 5", 5).correct and verify("#### 2.5", 2.5).correct
    assert parse_number("$1,234.50") == Fraction(246_9, 2)
    assert parse_number("1,2,3") == 1  # not a thousands-grouped number
    assert parse_number("\\frac{6}{8}") == Fraction(3, 4)
    assert parse_number("words") is None


class TestAttacks:
    """A policy under RL pressure tries these; each must score 0."""

    def test_listing_many_answers_only_the_last_marker_counts(self):
        spray = " ".join(f"#### {i}\n" for i in range(100)) + "#### 1000"
        assert not verify(spray, "42").correct

    def test_boxing_every_number(self):
        assert not verify("\\boxed{41} \\boxed{42} \\boxed{43}", "42").correct

    def test_empty_marker_does_not_fall_back_to_an_earlier_number(self):
        assert not verify("42 ####", "42").correct
        assert verify("42 ####", "42").reason == "unparsable answer"

    def test_unbalanced_box_scores_zero(self):
        assert not verify("\\boxed{42", "42").correct

    def test_huge_and_pathological_inputs_are_fast(self):
        import time

        start = time.perf_counter()
        for text in ("1" * 200_000, "1," * 100_000, "- " * 100_000, "\\boxed{" * 10_000, "#" * 100_000):
            verify(text, "42")
        assert time.perf_counter() - start < 5.0  # no catastrophic backtracking


def test_every_gsm8k_reference_scores_one_and_a_changed_answer_scores_zero(gsm8k_rows):
    for split in ("train", "test"):
        for row in gsm8k_rows[split]:
            solution = row["answer"]
            answer = split_reference(solution)[1]
            assert verify(solution, answer).correct, solution
            head, _, final = solution.rpartition("####")
            wrong = head + "#### " + str(int(final.strip().replace(",", "")) + 1)
            assert not verify(wrong, answer).correct, wrong


def test_split_reference_requires_a_marker():
    assert split_reference("a\nb\n#### 1,234") == ("a\nb", "1234")
    with pytest.raises(ValueError, match="####"):
        split_reference("no marker")


def test_dense_step_rewards_pay_each_derived_intermediate_once():
    solution = "He has 3*4=<<3*4=12>>12 eggs and 12+5=<<12+5=17>>17.\n#### 17"
    intermediates = reference_intermediates(solution)
    assert intermediates == (Fraction(12), Fraction(17))
    completion = "3*4=12, again 3*4=12, then 12+5=17"
    paid = step_rewards(completion, intermediates, coef=0.5)
    assert [round(r, 6) for _, r in paid] == [0.25, 0.25]
    assert [completion[:end] for end, _ in paid] == ["3*4=12", completion]
    # numbers merely mentioned, not derived with "=", earn nothing
    assert step_rewards("12 17 12 17", intermediates, coef=0.5) == []
    assert intermediate_results("a = 1,234 b=-5 c = 2.5") == [(9, 1234), (14, -5), (22, Fraction(5, 2))]


def test_verdict_info_is_plain_data():
    info = verify("#### 3", "3").as_info()
    assert info == {"correct": True, "extracted_answer": "3", "extraction": "####", "reason": "correct",
                    "canonical_answer": "3"}
    assert all(not re.search("object at", repr(v)) for v in info.values())


def test_tolerance_only_forgives_rounded_decimals():
    assert not verify("#### 192000001", "192000000").correct
    assert not verify("#### 192000000.5", "192000000").correct
    assert verify("#### 0.6666667", Fraction(2, 3)).correct
