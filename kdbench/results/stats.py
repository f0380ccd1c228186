"""Statistics over seeds: intervals of a mean, paired differences between methods, their test.

Why paired: kdbench trains every method of a pair from the same student initialisation and the same
batch order for a given seed, so ``method(seed) - reference(seed)`` removes the seed's own luck (a
good or bad initialisation lifts every method of that seed alike). The spread of those differences is
what decides whether two methods differ, not the spread of either method alone.

Why the paired t-test, with 3 to 5 seeds: it is the one test of a paired mean difference that can say
anything with so few pairs. The rank-based alternatives cannot reach the usual 5% level at all: with n
pairs the smallest two-sided p-value of the exact Wilcoxon signed-rank test (and of the sign test) is
2 / 2**n, 0.25 for 3 seeds and 0.0625 for 5. The t-test's assumptions: the differences of different
seeds are independent (they are: each seed is its own initialisation and data order) and come from a
normal distribution; with 3-5 seeds normality cannot be checked, and the t quantile with n - 1 degrees
of freedom (4.30 for 3 seeds against 1.96 for a known spread) is what pays for estimating the spread
from so few seeds. Test-set noise within a run is not modelled: every method sees the same test set.

The bootstrap interval (optional) resamples the seeds' differences with replacement (percentile
interval, a fixed generator seed, so reports are reproducible). With 3 seeds there are only 10 distinct
resamples: it is shown for readers who want an interval without the normal assumption, and is never
used to decide a tie.

The Student t distribution is computed here (regularised incomplete beta by its continued fraction,
the quantile by bisection) with the standard library only; the tests check it against scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TEST_NAME = "paired t-test"
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def _incomplete_beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function, by the modified Lentz method."""
    tiny, epsilon = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 1000):
        m2 = 2 * m
        # even step
        numerator = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + numerator / c
        c = c if abs(c) > tiny else tiny
        result *= d * c
        # odd step
        numerator = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + numerator / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        result *= delta
        if abs(delta - 1.0) < epsilon:
            break
    return result


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the CDF of a Beta(a, b) variable at x."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # the fraction converges fast only on one side of the mean; use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _incomplete_beta_fraction(a, b, x) / a
    return 1.0 - front * _incomplete_beta_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    return regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


@lru_cache(maxsize=256)
def t_quantile(probability: float, df: float) -> float:
    """The ``probability`` quantile of Student's t (``t_quantile(0.975, 2)`` = 4.303), by bisection."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    if probability == 0.5:
        return 0.0
    tail = 2.0 * min(probability, 1.0 - probability)  # the two-sided p-value of the quantile
    low, high = 0.0, 1.0
    while t_two_sided_p(high, df) > tail:
        low, high = high, high * 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if t_two_sided_p(middle, df) > tail:
            low = middle
        else:
            high = middle
        if high - low < 1e-13 * max(1.0, high):
            break
    quantile = 0.5 * (low + high)
    return quantile if probability > 0.5 else -quantile


@dataclass(frozen=True)
class Summary:
    """A sample over seeds: its mean, spread, the t interval of the mean and (for differences) the test.

    ``std`` is the sample standard deviation (n - 1), the spread of one seed's value; ``sem`` the standard
    error of the mean, std / sqrt(n), the uncertainty of the mean itself. The interval is the mean plus
    or minus t(0.975, n - 1) * sem; NaN with fewer than two seeds. ``p`` tests mean = 0 (differences).
    """

    n: int
    mean: float
    std: float
    sem: float
    low: float
    high: float
    p: float
    bootstrap_low: float = math.nan
    bootstrap_high: float = math.nan


def summarize(values: Sequence[float], *, confidence: float = CONFIDENCE, bootstrap: bool = False) -> Summary:
    """Mean, std, standard error, t interval and the t-test of mean = 0 of ``values`` (NaNs dropped)."""
    sample = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    n = int(sample.size)
    nan = math.nan
    if n == 0:
        return Summary(0, nan, nan, nan, nan, nan, nan)
    mean = float(sample.mean())
    if n == 1:
        return Summary(1, mean, nan, nan, nan, nan, nan)
    std = float(sample.std(ddof=1))
    sem = std / math.sqrt(n)
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * sem
    if sem > 0:
        p = t_two_sided_p(mean / sem, n - 1)
    else:
        # every seed gave the same value: no spread at all, so the mean is exactly known
        p = 1.0 if mean == 0 else 0.0
    low_boot = high_boot = nan
    if bootstrap:
        low_boot, high_boot = bootstrap_interval(sample, confidence=confidence)
    return Summary(n, mean, std, sem, mean - half, mean + half, p, low_boot, high_boot)


def bootstrap_interval(
    values: Sequence[float], *, confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over seeds (seeds resampled with replacement)."""
    sample = np.asarray(values, dtype=np.float64)
    if sample.size < 2:
        return math.nan, math.nan
    generator = np.random.default_rng(BOOTSTRAP_SEED)
    means = sample[generator.integers(0, sample.size, size=(resamples, sample.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)
