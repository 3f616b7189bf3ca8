"""Final-answer verification for math tasks, shared by every math environment.

Public API (use it to score your own data)::

    from lmgym.rewards.math import verify
    verify("... so she makes $18 a day. #### 18", "18")          # Verdict(reward=1.0, ...)
    verify("The answer is \\boxed{3/4}.", "0.75").correct         # True

Extraction, in order of precedence (the first rule that finds a marker decides; a marker
whose content does not parse scores 0, it never falls through to a later rule):

1. ``#### X``: the GSM8K convention; the last ``####`` in the completion counts.
2. ``\\boxed{X}`` (or ``\\fbox{X}``): the last one; nested braces, ``\\frac{a}{b}``,
   ``\\$``, ``\\%`` and ``\\!``/``\\,`` spacing are understood.
3. ``answer is X`` / ``answer: X`` (case-insensitive): the last such phrase, first number after it.
4. Fallback: the last number anywhere in the completion.

Numbers may carry a sign (``-``, ``−``), a currency sign (``$``), thousands separators
(``1,234``; only well-formed groups of three), decimals (``72.0`` equals ``72``), fractions
(``3/4``) and a percent sign. ``50%`` is compared both as 50 (the GSM8K convention) and as
0.5. Comparison is exact on rationals; only a decimal that rounds a reference it cannot write
exactly with as many decimals may differ, by a relative tolerance (default 1e-6): ``0.3333333``
for 1/3 counts, ``192000000.5`` or ``192000001`` for 192000000 never do. Digit strings longer than 64 digits are not numbers.

Reward hacking: only one extracted answer is ever compared; an unparsable *reference* scores
0 with ``reason="unparsable reference"`` rather than raising inside a training loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "Verdict",
    "extract_answer",
    "intermediate_results",
    "parse_number",
    "reference_intermediates",
    "split_reference",
    "verify",
]

# A number as written in prose. The sign is a sign only when it does not follow a word
# character or a closing bracket ("16-3" is 16 minus 3, not 16 and -3).
_NUMBER = re.compile(
    r"(?:(?<![\w)\]])(?P<sign>[-−]))?"
    r"\$?\s?"
    r"(?P<int>\d{1,3}(?:,\d{3})+(?![\d])|\d+)"
    r"(?:\.(?P<frac>\d+))?"
    r"(?:\s?/\s?(?P<den>\d+))?"
    r"(?P<pct>\s?%)?"
)
_ANSWER_IS = re.compile(r"answer\s*(?:is|:|=)", re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX_NOISE = re.compile(r"\\(?:left|right|!|,|;|:|text\s*\{[^{}]*\}|mathrm\s*\{[^{}]*\})")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of scoring one completion; truthy when correct."""

    reward: float
    correct: bool
    extracted: str | None  # the answer text that was compared, as written
    method: str | None  # which rule found it: "####", "boxed", "answer is", "last number"
    reason: str  # "correct", "wrong answer", "no answer found", "unparsable answer", ...
    canonical: str | None = None  # the parsed value, exact ("18", "-3/4"): "18.0", "$18" and "18" are one vote

    def __bool__(self) -> bool:
        return self.correct

    def as_info(self) -> dict:
        return {
            "correct": self.correct,
            "extracted_answer": self.extracted,
            "extraction": self.method,
            "reason": self.reason,
            "canonical_answer": self.canonical,
        }


_MAX_DIGITS = 64  # longer digit strings are not answers (and int() refuses > 4300 digits)


def _to_fraction(match: re.Match) -> tuple[Fraction, bool, int]:
    """(value, has a percent sign, number of decimal digits written)"""
    int_part = match.group("int").replace(",", "")
    frac_part = match.group("frac")
    den = match.group("den")
    if len(int_part) + len(frac_part or "") + len(den or "") > _MAX_DIGITS:
        raise ValueError("number too long")
    if frac_part:
        value = Fraction(int(int_part + frac_part), 10 ** len(frac_part))
    else:
        value = Fraction(int(int_part))
    if den is not None:
        if int(den) == 0:
            raise ZeroDivisionError
        value /= int(den)
    if match.group("sign"):
        value = -value
    return value, match.group("pct") is not None, len(frac_part or "")


def _clean_latex(text: str) -> str:
    if "\\" not in text:
        return text
    text = _LATEX_FRAC.sub(r"\1/\2", text)
    text = _LATEX_NOISE.sub("", text)
    return text.replace("\\$", "$").replace("\\%", "%").replace("{", "").replace("}", "")


def _first_number(text: str) -> tuple[Fraction, bool, int] | None:
    match = _NUMBER.search(text)
    if match is None:
        return None
    try:
        return _to_fraction(match)
    except (ZeroDivisionError, ValueError):
        return None


def parse_number(text: str) -> Fraction | None:
    """Parse the first number in ``text`` (``"$1,234.50"``, ``"-3/4"``, ``"\\frac{1}{2}"``).

    Returns an exact ``Fraction`` or ``None``; a percent sign is ignored (``"50%"`` -> 50).
    """
    parsed = _first_number(_clean_latex(text))
    return None if parsed is None else parsed[0]


def _boxed_content(text: str, start: int) -> str | None:
    """Content of the brace group that opens just before ``start``; None if unbalanced."""
    depth = 1
    for i in range(start, len(text)):
        char = text[i]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def extract_answer(completion: str) -> tuple[str | None, str | None]:
    """Return ``(answer_text, method)`` by the rules in the module docstring.

    ``answer_text`` is None when no rule applies; when a marker was found but has no content,
    ``answer_text`` is the (possibly empty) content and ``method`` names the marker.
    """
    marker = completion.rfind("####")
    if marker != -1:
        line_end = completion.find("\n", marker)
        return completion[marker + 4 : line_end if line_end != -1 else None].strip(), "####"
    if "box" in completion:
        boxes = list(_BOXED.finditer(completion))
        if boxes:
            content = _boxed_content(completion, boxes[-1].end())
            return (content.strip() if content is not None else ""), "boxed"
    if "nswer" in completion or "NSWER" in completion:
        phrases = list(_ANSWER_IS.finditer(completion))
        if phrases:
            rest = completion[phrases[-1].end() :]
            line_end = rest.find("\n")
            return (rest if line_end == -1 else rest[:line_end]).strip(), "answer is"
    last = None
    for last in _NUMBER.finditer(completion):
        pass
    if last is not None:
        return last.group(0).strip(), "last number"
    return None, None


def _close(predicted: Fraction, reference: Fraction, decimals: int, rel_tol: float) -> bool:
    """Exact, except that a decimal may round a reference that it cannot write exactly
    with that many decimals (``0.6666667`` for 2/3), within ``rel_tol``."""
    if predicted == reference:
        return True
    if not decimals or (reference * 10**decimals).denominator == 1:
        return False
    return abs(predicted - reference) <= rel_tol * abs(reference)


def _parse_reference(answer) -> tuple[Fraction, bool, int] | None:
    if isinstance(answer, Fraction):
        return answer, False, 0
    if isinstance(answer, bool):  # bool is an int; it is never a valid math answer
        return None
    if isinstance(answer, int):
        return Fraction(answer), False, 0
    if isinstance(answer, float):
        return (Fraction(answer), False, 0) if answer == answer and abs(answer) != float("inf") else None
    if isinstance(answer, str):
        return _first_number(_clean_latex(answer))
    return None


def verify(completion: str, answer, *, rel_tol: float = 1e-6) -> Verdict:
    """Score ``completion`` against the reference ``answer`` (str, int, float or Fraction).

    Returns a :class:`Verdict` with reward 1.0 when the extracted final answer equals the
    reference numerically, else 0.0 and a ``reason``.
    """
    reference = _parse_reference(answer)
    if reference is None:
        return Verdict(0.0, False, None, None, "unparsable reference")
    text, method = extract_answer(completion)
    if text is None:
        return Verdict(0.0, False, None, None, "no answer found")
    predicted = _first_number(_clean_latex(text))
    if predicted is None:
        return Verdict(0.0, False, text, method, "unparsable answer")
    value, value_pct, decimals = predicted
    ref, ref_pct, _ = reference
    candidates = (value, value / 100) if value_pct else (value,)
    targets = (ref, ref / 100) if ref_pct else (ref,)
    canonical = str(value)
    if any(_close(c, t, decimals, rel_tol) for c in candidates for t in targets):
        return Verdict(1.0, True, text, method, "correct", canonical)
    return Verdict(0.0, False, text, method, "wrong answer", canonical)


def split_reference(solution: str) -> tuple[str, str]:
    """Split a GSM8K-style solution into ``(reasoning, final_answer)`` at its last ``####``."""
    head, sep, tail = solution.rpartition("####")
    if not sep:
        raise ValueError(f"reference solution has no '#### <answer>' line: {solution[-80:]!r}")
    return head.rstrip(), tail.strip().replace(",", "")


# --- dense (per-step) rewards ------------------------------------------------------------

_RESULT = re.compile(r"=\s*\$?\s*(?P<num>[-−]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?)(?![\d.]*\d)")
_CALCULATOR = re.compile(r"<<[^<>=]*=([^<>]*)>>")


def intermediate_results(completion: str) -> list[tuple[int, Fraction]]:
    """Every ``= <number>`` in the completion as ``(end_offset, value)``: its worked steps.

    A step counts once the number is finished, so ``end_offset`` is the offset just past
    the number's last character; the token-level wrapper pays a step's reward from there.
    """
    results = []
    for match in _RESULT.finditer(completion):
        number = match.group("num").replace(",", "").replace("−", "-")
        if len(number) > _MAX_DIGITS:
            continue
        try:
            results.append((match.end(), Fraction(number)))
        except ValueError:
            continue
    return results


def reference_intermediates(solution: str) -> tuple[Fraction, ...]:
    """The intermediate values of a reference solution.

    GSM8K annotates every calculation as ``<<48/2=24>>``; solutions without annotations
    (e.g. procedural ones written as ``a = b``) fall back to their ``= <number>`` results.
    """
    values = []
    for text in _CALCULATOR.findall(solution):
        parsed = parse_number(text)
        if parsed is not None:
            values.append(parsed)
    if not values:
        values = [value for _, value in intermediate_results(solution)]
    return tuple(dict.fromkeys(values))  # ordered, de-duplicated


def step_rewards(completion: str, intermediates, coef: float) -> list[tuple[int, float]]:
    """Dense heuristic reward: ``coef / len(intermediates)`` for each reference intermediate
    value that the completion derives as ``= value``, each value paid at most once.

    Returns ``[(end_offset, reward), ...]`` in order; the total is at most ``coef``. Numbers
    merely mentioned (not derived with ``=``) earn nothing, so listing numbers is no exploit.
    """
    if not intermediates or coef == 0:
        return []
    remaining = set(intermediates)
    share = coef / len(intermediates)
    paid = []
    for offset, value in intermediate_results(completion):
        if value in remaining:
            remaining.discard(value)
            paid.append((offset, share))
    return paid
