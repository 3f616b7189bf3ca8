"""Statistics across seeds for comparisons a reviewer can check: intervals, IQM, ranking.

What the bench summary and the leaderboard show, and how it is computed:

- :func:`mean_interval`: the mean over seeds with a 95% Student-t interval (n - 1 degrees of
  freedom, sample standard deviation). With the 3-5 seeds a CPU bench affords, a bootstrap
  interval of the mean is too narrow (3 values have only 10 distinct resamples), so the
  interval that ranks is the t interval: wider, and stated.
- :func:`difference_interval`: the difference of two means over seeds with Welch's 95% t
  interval (``scipy.stats.ttest_ind(equal_var=False)``): what a claim "X beats Y" is tested on.
- :func:`iqm_interval`: the interquartile mean (rliable's ``aggregate_iqm``) with a percentile
  bootstrap interval over runs (``scipy.stats.bootstrap``; rliable's stratified bootstrap with a
  single task). Shown beside the mean; robust to one outlying seed once there are more runs.
- :func:`probability_of_improvement`: rliable's P(X > Y), the chance that a random run of X
  scores above a random run of Y (ties count half).
- :func:`rank_by_intervals`: an entry's rank is 1 + the number of entries whose whole interval
  lies above its own; entries that no interval separates share a rank (a tie). Entries with
  fewer than ``min_seeds`` seeds are not ranked.

rliable's estimators are used as they are (``rliable.metrics``, numpy only). Its interval code
(``rliable.library``) is not: it needs ``arch``, whose 7.x releases do not import with pandas 3
and whose 8.x releases dropped the ``random_state`` argument rliable 1.2 passes. The bootstrap
is SciPy's instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["Interval", "contrast_interval", "difference_interval", "iqm_interval", "mean_interval", "probability_of_improvement", "rank_by_intervals"]

CONFIDENCE = 0.95
MIN_SEEDS_TO_RANK = 3


class Interval(tuple):
    """``(point, low, high)`` with names; ``low == high == point`` for a single value."""

    __slots__ = ()

    def __new__(cls, point: float, low: float, high: float):
        return super().__new__(cls, (float(point), float(low), float(high)))

    point = property(lambda self: self[0])
    low = property(lambda self: self[1])
    high = property(lambda self: self[2])

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def format(self, digits: int = 3) -> str:
        if self.low == self.high:
            return f"{self.point:.{digits}f}"
        return f"{self.point:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _values(values: Sequence[float]) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("no values")
    return values


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and its Student-t ``confidence`` interval over seeds (no interval for one value)."""
    values = _values(values)
    mean = values.mean()
    if values.size == 1:
        return Interval(mean, mean, mean)
    from scipy import stats

    half = stats.t.ppf(0.5 + confidence / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    return Interval(mean, mean - half, mean + half)


def difference_interval(x: Sequence[float], y: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """``mean(x) - mean(y)`` and its Welch t ``confidence`` interval (unequal variances; seeds of
    two arms are independent runs, not pairs). Both without spread: the difference, no interval;
    a side with one value and the other without spread: no interval can be formed (ValueError)."""
    from scipy import stats

    x, y = _values(x), _values(y)
    point = x.mean() - y.mean()
    if x.std() == 0 and y.std() == 0:
        return Interval(point, point, point)
    if min(x.size, y.size) < 2:
        raise ValueError("a difference interval needs >= 2 values on each side")
    import warnings

    with warnings.catch_warnings():  # one side without spread is fine for Welch; SciPy warns of "precision loss"
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval(confidence)
    return Interval(point, ci.low, ci.high)


def contrast_interval(groups: Sequence[Sequence[float]], weights: Sequence[float],
                      confidence: float = CONFIDENCE) -> Interval:
    """``sum_i w_i mean(groups[i])`` over independent groups (e.g. arms' seeds) and its Welch
    t ``confidence`` interval: standard error ``sqrt(sum_i w_i^2 s_i^2 / n_i)``, degrees of
    freedom by Welch-Satterthwaite. Weights (1, -1) are :func:`difference_interval`; (1/2, 1/2,
    -1, -1/2, -1/2, 1) is a difference of differences (how much an advantage shrinks from one
    task to another). Without spread in any group: the point, no interval; a weighted group
    with one value beside spread elsewhere: ValueError."""
    from scipy import stats

    if len(groups) != len(weights) or not groups:
        raise ValueError("one weight per group, and at least one group")
    arrays = [_values(g) for g in groups]
    point = float(sum(w * a.mean() for w, a in zip(weights, arrays)))
    terms = [w * w * a.var(ddof=1) / a.size if a.size > 1 else 0.0 for w, a in zip(weights, arrays)]
    if sum(terms) == 0:
        return Interval(point, point, point)
    if any(a.size < 2 and w != 0 for w, a in zip(weights, arrays)):
        raise ValueError("a contrast interval needs >= 2 values in every weighted group")
    df = sum(terms) ** 2 / sum(t * t / (a.size - 1) for t, a in zip(terms, arrays) if t > 0)
    half = stats.t.ppf(0.5 + confidence / 2, df) * np.sqrt(sum(terms))
    return Interval(point, point - half, point + half)


def iqm_interval(values: Sequence[float], confidence: float = CONFIDENCE, reps: int = 10_000, seed: int = 0) -> Interval:
    """Interquartile mean (rliable) and a percentile bootstrap interval over runs."""
    from rliable.metrics import aggregate_iqm
    from scipy import stats

    values = _values(values)
    iqm = lambda v, axis=-1: np.apply_along_axis(lambda row: aggregate_iqm(row[:, None]), axis, v)
    point = float(aggregate_iqm(values[:, None]))
    if values.size == 1 or np.all(values == values[0]):
        return Interval(point, point, point)
    result = stats.bootstrap((values,), iqm, confidence_level=confidence, n_resamples=reps, method="percentile",
                             random_state=np.random.default_rng(seed), vectorized=True)
    return Interval(point, result.confidence_interval.low, result.confidence_interval.high)


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """P(a run of X scores above a run of Y), ties counted half (rliable's estimator)."""
    from rliable.metrics import probability_of_improvement as poi

    return float(poi(_values(x)[:, None], _values(y)[:, None]))


def rank_by_intervals(intervals: Mapping[str, Interval], seeds: Mapping[str, int],
                      min_seeds: int = MIN_SEEDS_TO_RANK) -> dict[str, int | None]:
    """Rank = 1 + how many entries' intervals lie wholly above this one's (higher is better);
    equal ranks are ties. Entries with fewer than ``min_seeds`` seeds get None (not ranked)."""
    ranked = {name: iv for name, iv in intervals.items() if seeds[name] >= min_seeds}
    ranks: dict[str, int | None] = {name: None for name in intervals}
    for name, iv in ranked.items():
        ranks[name] = 1 + sum(other.low > iv.high for key, other in ranked.items() if key != name)
    return ranks
