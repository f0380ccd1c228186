"""Statistics over seeds against scipy (an independent implementation): t quantiles, p-values, intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from kdbench.results.stats import bootstrap_interval, summarize, t_quantile, t_two_sided_p


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 30, 200])
def test_t_distribution_matches_scipy(df: int) -> None:
    for probability in (0.5005, 0.6, 0.9, 0.975, 0.995, 0.9995, 0.025):
        assert t_quantile(probability, df) == pytest.approx(scipy_stats.t.ppf(probability, df), rel=1e-9, abs=1e-9)
    for t in (0.0, 0.05, 0.7, 1.96, 4.3, 12.7, 80.0):
        assert t_two_sided_p(t, df) == pytest.approx(2 * scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-15)
    assert t_two_sided_p(math.inf, df) == 0.0


@pytest.mark.parametrize(
    "values",
    [[0.3, -0.1, 0.5], [1.0, 1.1, 0.9], [0.2, 0.4, -0.3, 0.1, 0.25], [-2.0, -1.5], [5.0, 5.5, 4.5, 5.0]],
)
def test_summary_matches_scipy(values: list[float]) -> None:
    """Mean, std (n - 1), standard error, the 95% t interval and the paired t-test's p-value."""
    summary = summarize(values)
    sample = np.asarray(values, dtype=np.float64)
    n = len(values)
    assert summary.n == n and summary.mean == pytest.approx(sample.mean())
    assert summary.std == pytest.approx(sample.std(ddof=1))
    assert summary.sem == pytest.approx(scipy_stats.sem(sample))
    low, high = scipy_stats.t.interval(0.95, n - 1, loc=sample.mean(), scale=scipy_stats.sem(sample))
    assert (summary.low, summary.high) == (pytest.approx(low), pytest.approx(high))
    # a paired t-test of (a - b) is the one-sample test of the differences against 0: both scipy spellings
    assert summary.p == pytest.approx(scipy_stats.ttest_1samp(sample, 0.0).pvalue, rel=1e-9)
    base = np.linspace(70.0, 72.0, n)
    assert summary.p == pytest.approx(scipy_stats.ttest_rel(base + sample, base).pvalue, rel=1e-6)


def test_edge_cases() -> None:
    one = summarize([72.1])
    assert one.n == 1 and one.mean == 72.1 and math.isnan(one.std) and math.isnan(one.low) and math.isnan(one.p)
    assert summarize([]).n == 0 and math.isnan(summarize([math.nan]).mean)
    # an exact tie: every seed the same difference 0 -> no evidence of a difference at all
    tie = summarize([0.0, 0.0, 0.0])
    assert (tie.std, tie.low, tie.high, tie.p) == (0.0, 0.0, 0.0, 1.0)
    # a constant non-zero shift on every seed: known exactly, so significant
    assert summarize([0.5, 0.5, 0.5]).p == 0.0


def test_bootstrap_is_reproducible_and_brackets_the_mean() -> None:
    values = [0.3, -0.1, 0.5, 0.2]
    low, high = bootstrap_interval(values)
    assert (low, high) == bootstrap_interval(values)  # a fixed generator seed: reports are reproducible
    assert min(values) <= low < np.mean(values) < high <= max(values)
    # against a direct percentile bootstrap written here (every resample of 3 seeds, weighted exactly)
    three = [1.0, 2.0, 6.0]
    means = sorted(np.mean([three[i], three[j], three[k]]) for i in range(3) for j in range(3) for k in range(3))
    low, high = bootstrap_interval(three)
    assert means[0] <= low <= means[1] and means[-2] <= high <= means[-1]
    summary = summarize(three, bootstrap=True)
    assert (summary.bootstrap_low, summary.bootstrap_high) == (low, high)
    assert math.isnan(summarize(three).bootstrap_low)
