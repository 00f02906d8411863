"""Small statistics the workbench reports beside its figures, so that a share comes with how sure
it is: pure Python, no numpy, no torch (the agreement page and the CLI run without them)."""

from __future__ import annotations

import math
from collections.abc import Sequence

# The normal quantile of a two-sided 95% interval.
Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval for a share `successes / n` (Wilson 1927): unlike the normal
    approximation it stays inside [0, 1] and is honest for small n or shares near 0 or 1, which a
    person's few hundred labels often are. None for n = 0."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's correlation of two equally long sequences; None when either does not vary."""
    n = len(xs)
    if n != len(ys):
        raise ValueError(f"pearson: {n} values against {len(ys)}")
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)
