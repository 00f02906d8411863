"""Small statistics the workbench reports beside its figures, so that a share comes with how sure
it is: pure Python, no numpy, no torch (the agreement page and the CLI run without them)."""

from __future__ import annotations

import math
import random
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


# -- Bradley-Terry ratings ----------------------------------------------------------------------------

# On Chatbot Arena's scale: 400 points are a factor of 10 in the odds of winning, 1000 the anchor.
ELO_SCALE = 400.0
ELO_ANCHOR = 1000.0
# Virtual games each player ties against a fixed player of log-strength 0: a weak prior that keeps
# a player who has only won (or only lost) at a finite rating, as a handful of verdicts often leaves
# one. Its pull fades as real verdicts accumulate.
PRIOR_TIES = 1.0


def bradley_terry(
    games: Sequence[tuple[str, str, float]],
    *,
    anchor: str | None = None,
    prior_ties: float = PRIOR_TIES,
    iterations: int = 100,
) -> dict[str, float]:
    """Bradley-Terry ratings from games (player a, player b, a's score: 1 a won, 0 b won, 0.5 a tie),
    on the Elo scale: P(i beats j) = 1 / (1 + 10 ** ((r_j - r_i) / 400)).

    The maximum of the log-likelihood (ties as half a win each, as Chatbot Arena counts them) plus
    `prior_ties` virtual ties of each player against a fixed player of log-strength 0, by Newton's
    method on the log-strengths (a few steps: the log-likelihood is concave). `anchor` (a player)
    is set to 1000 and the others follow; without one, the fixed player is at 1000. With
    prior_ties = 0 the first player is held at 0 instead, and a player who never lost (or never won)
    has no finite rating: ValueError.
    """
    players = sorted({p for a, b, _ in games for p in (a, b)})
    if not players:
        return {}
    index = {p: i for i, p in enumerate(players)}
    n = len(players)
    wins = [prior_ties / 2] * n
    counts: dict[tuple[int, int], float] = {}
    for a, b, score in games:
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"bradley_terry: a game's score is 1, 0 or 0.5 (a tie), not {score!r}")
        i, j = index[a], index[b]
        if i == j:
            continue  # a player against itself says nothing about its strength
        wins[i] += score
        wins[j] += 1.0 - score
        key = (min(i, j), max(i, j))
        counts[key] = counts.get(key, 0.0) + 1.0
    if prior_ties <= 0:
        played = [0.0] * n
        for (i, j), count in counts.items():
            played[i] += count
            played[j] += count
        for i in range(n):
            if wins[i] <= 0 or wins[i] >= played[i]:
                raise ValueError(f"bradley_terry: {players[i]} never {'won' if wins[i] <= 0 else 'lost'} and there is "
                                 "no prior; its rating would be infinite")
    free = list(range(n)) if prior_ties > 0 else list(range(1, n))  # without a prior, player 0 is the origin
    theta = [0.0] * n
    for _ in range(iterations):
        gradient = [w - prior_ties * _sigmoid(t) for w, t in zip(wins, theta)]
        hessian = [[0.0] * n for _ in range(n)]  # of minus the log-likelihood: positive (semi)definite
        for i in range(n):
            hessian[i][i] = prior_ties * _sigmoid(theta[i]) * (1 - _sigmoid(theta[i]))
        for (i, j), count in counts.items():
            p = _sigmoid(theta[i] - theta[j])
            gradient[i] -= count * p
            gradient[j] -= count * (1 - p)
            curvature = count * p * (1 - p)
            hessian[i][i] += curvature
            hessian[j][j] += curvature
            hessian[i][j] -= curvature
            hessian[j][i] -= curvature
        step = _solve([[hessian[i][j] for j in free] for i in free], [gradient[i] for i in free])
        if step is None:
            raise ValueError("bradley_terry: the games do not connect every player; give a prior (prior_ties > 0)")
        for k, i in enumerate(free):
            theta[i] += step[k]
        if max((abs(x) for x in step), default=0.0) < 1e-12:
            break
    zero = theta[index[anchor]] if anchor is not None and anchor in index else 0.0
    return {p: ELO_ANCHOR + ELO_SCALE * (t - zero) / math.log(10) for p, t in zip(players, theta)}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float] | None:
    """x with matrix @ x = vector, by Gaussian elimination with partial pivoting; None if singular."""
    n = len(vector)
    rows = [row[:] + [value] for row, value in zip(matrix, vector)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(rows[r][col]))
        if abs(rows[pivot][col]) < 1e-12:
            return None
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(col + 1, n):
            factor = rows[r][col] / rows[col][col]
            if factor:
                for c in range(col, n + 1):
                    rows[r][c] -= factor * rows[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (rows[r][n] - sum(rows[r][c] * x[c] for c in range(r + 1, n))) / rows[r][r]
    return x


def bootstrap_ratings(
    games: Sequence[tuple[str, str, float]],
    *,
    rounds: int = 200,
    seed: int = 0,
    anchor: str | None = None,
    prior_ties: float = PRIOR_TIES,
    confidence: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """A `confidence` interval for each player's bradley_terry rating, by the percentile bootstrap
    over games (Chatbot Arena's way): refit on `rounds` resamples of the games with replacement."""
    if not games:
        return {}
    rng = random.Random(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(rounds):
        sample = [games[rng.randrange(len(games))] for _ in games]
        for player, rating in bradley_terry(sample, anchor=anchor, prior_ties=prior_ties).items():
            draws.setdefault(player, []).append(rating)
    tail = (1.0 - confidence) / 2
    return {player: (_quantile(values, tail), _quantile(values, 1.0 - tail)) for player, values in draws.items()}


def _quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by linear interpolation between the order statistics (numpy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def distinct_n(texts: Sequence[str], n: int = 2) -> float | None:
    """Distinct-n (Li et al. 2016): distinct word n-grams over all n-grams of the texts, 0 to 1; low
    when a policy says the same things over and over. None when the texts hold no n-gram."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        words = text.split()
        for i in range(len(words) - n + 1):
            seen.add(tuple(words[i : i + n]))
            total += 1
    return len(seen) / total if total else None
