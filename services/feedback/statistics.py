"""The two statistics the feedback loop decides with (pure functions).

* ``mcnemar``: live version A and challenger B scored on the same test
  images, each image right or wrong for each; only the discordant pairs count
  (b = A right and B wrong, c = A wrong and B right). Exact binomial test
  when b + c < 25 (the usual rule), else the continuity-corrected chi-square
  with 1 degree of freedom. Two-sided p-value.
* ``wilson``: the 95 % Wilson score interval of a proportion x/n (the share
  of audited predictions reviewers accepted).

scipy's ``binomtest`` and ``chi2`` do the distribution work; scipy comes with
scikit-learn, a dependency already.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import binomtest, chi2

EXACT_BELOW = 25
Z95 = 1.959964


@dataclass(frozen=True)
class McNemar:
    b: int  # A right, B wrong
    c: int  # A wrong, B right
    p_value: float
    method: str  # "exact" | "chi-square" | "no discordant pairs"
    statistic: float | None = None  # chi-square, when that method was used


def mcnemar(b: int, c: int) -> McNemar:
    if b < 0 or c < 0:
        raise ValueError("discordant counts cannot be negative")
    n = b + c
    if n == 0:
        return McNemar(b, c, 1.0, "no discordant pairs")
    if n < EXACT_BELOW:
        return McNemar(b, c, float(min(1.0, binomtest(min(b, c), n, 0.5).pvalue)), "exact")
    statistic = (abs(b - c) - 1) ** 2 / n
    return McNemar(b, c, float(chi2.sf(statistic, 1)), "chi-square", statistic)


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """(low, high); (0, 1) when nothing was observed."""
    if not 0 <= successes <= trials:
        raise ValueError(f"successes ({successes}) must lie in 0..trials ({trials})")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)
