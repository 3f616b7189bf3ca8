"""Statistics across seeds: the intervals, IQM, probability of improvement and tie-aware ranks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from lmgym.metrics import maj_at_k, outcome_shares
from lmgym.rewards.math import verify
from lmgym.stats import difference_interval, iqm_interval, mean_interval, probability_of_improvement, rank_by_intervals


def test_mean_interval_is_the_student_t_interval():
    values = [0.70, 0.72, 0.69]
    interval = mean_interval(values)
    half = scipy_stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / np.sqrt(3)
    assert interval.point == pytest.approx(np.mean(values)) and interval.half_width == pytest.approx(half)
    assert mean_interval([0.5]) == (0.5, 0.5, 0.5) and mean_interval([0.5]).format() == "0.500"
    assert mean_interval([0.5, 0.6, 0.7]).half_width == pytest.approx(4.302652729911275 * 0.1 / np.sqrt(3))  # t_{.975,2} s/sqrt(n)


def test_difference_interval_is_welchs_t_interval():
    x, y = [0.70, 0.72, 0.69], [0.60, 0.66, 0.61, 0.62]
    d = difference_interval(x, y)
    ci = scipy_stats.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
    assert d.point == pytest.approx(np.mean(x) - np.mean(y)) and (d.low, d.high) == pytest.approx((ci.low, ci.high))
    v = np.var(x, ddof=1) / 3 + np.var(y, ddof=1) / 4  # Welch-Satterthwaite, by hand
    dof = v**2 / ((np.var(x, ddof=1) / 3) ** 2 / 2 + (np.var(y, ddof=1) / 4) ** 2 / 3)
    assert d.half_width == pytest.approx(scipy_stats.t.ppf(0.975, dof) * np.sqrt(v))
    assert difference_interval([1, 1, 1], [0, 0, 0]) == (1.0, 1.0, 1.0)  # no spread: the difference alone
    one_sided = difference_interval([0.5, 0.5, 0.5], [0.40, 0.42, 0.41])  # one side without spread is fine
    assert one_sided.low < 0.09 < one_sided.high
    with pytest.raises(ValueError, match=">= 2 values"):
        difference_interval([0.5], [0.4, 0.6])


def test_iqm_discards_the_outer_quartiles_and_its_interval_covers_it():
    values = [0.0, 0.6, 0.61, 0.62, 1.0, 0.6, 0.61, 0.62]
    interval = iqm_interval(values)
    assert interval.point == pytest.approx(0.61, abs=0.01)  # the outliers do not move it
    assert interval.low <= interval.point <= interval.high
    assert iqm_interval([0.3, 0.3, 0.3]) == (0.3, 0.3, 0.3)


def test_probability_of_improvement():
    assert probability_of_improvement([0.8, 0.9], [0.1, 0.2]) == 1.0
    assert probability_of_improvement([0.5, 0.5], [0.5, 0.5]) == 0.5  # ties count half
    assert probability_of_improvement([0.1, 0.9], [0.5, 0.5]) == 0.5


def test_ranks_only_what_the_intervals_separate():
    intervals = {"a": mean_interval([0.70, 0.72, 0.69]), "b": mean_interval([0.60, 0.62, 0.61]),
                 "c": mean_interval([0.55, 0.75, 0.65]), "d": mean_interval([0.9])}
    ranks = rank_by_intervals(intervals, {"a": 3, "b": 3, "c": 3, "d": 1})
    assert ranks == {"a": 1, "c": 1, "b": 2, "d": None}  # c overlaps both a and b: tied with a; d has one seed


def test_outcome_shares_split_the_zero_gradient_prompts_by_cause():
    correct = np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 0, 1]], dtype=bool)
    assert outcome_shares(correct) == {"solved": 0.25, "stuck": 0.5, "mixed": 0.25}


def test_maj_at_k_votes_on_canonical_answers():
    completions = ["#### 18", "#### 18.0", "#### $18", "#### 17", "#### 16"]
    verdicts = [verify(c, "18") for c in completions]
    written = [v.extracted for v in verdicts]
    canonical = [v.canonical for v in verdicts]
    correct = [v.correct for v in verdicts]
    assert len(set(canonical[:3])) == 1 and len(set(written[:3])) == 3
    # as written, 18 / 18.0 / $18 split their votes and the vote is a tie broken by first occurrence;
    # canonical, they are three votes for one answer against one each for 17 and 16
    order = [3, 0, 4, 1, 2]
    assert maj_at_k([canonical[i] for i in order], [correct[i] for i in order], 5) == 1.0
    assert maj_at_k([written[i] for i in order], [correct[i] for i in order], 5) == 0.0


def test_contrast_interval_is_welch_for_two_groups_and_widens_with_more():
    from lmgym.stats import contrast_interval, difference_interval

    x, y = [0.1, 0.3, 0.2], [0.5, 0.4, 0.45, 0.6]
    assert tuple(contrast_interval([x, y], [1, -1])) == pytest.approx(tuple(difference_interval(x, y)))
    both = contrast_interval([x, y, x, y], [1, -1, -1, 1])  # a difference of equal differences
    assert both.point == pytest.approx(0.0) and both.high - both.low > difference_interval(x, y).high - difference_interval(x, y).low
    assert tuple(contrast_interval([[1.0, 1.0], [2.0, 2.0]], [1, -1])) == (-1.0, -1.0, -1.0)  # no spread, no interval
    with pytest.raises(ValueError, match="one weight per group"):
        contrast_interval([x], [1, -1])
    with pytest.raises(ValueError, match=">= 2 values"):
        contrast_interval([x, [0.4]], [1, -1])
