"""Length bias: the statistics against published and hand-worked values, then in a real project's
labels and in a reward model's validation figures."""

from __future__ import annotations

import math
import random

import pytest

from rlhf_workbench.core.agreement import agreement_report, length_bias
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.reward.evaluate import answer_lengths, length_figures
from rlhf_workbench.core.stats import pearson, wilson_interval


@pytest.mark.parametrize(
    "successes, n, low, high",
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I,
        # method 3 (Wilson score, no continuity correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_newcombes_table(successes, n, low, high):
    interval = wilson_interval(successes, n)
    assert interval == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_is_where_the_score_test_stops_rejecting():
    """The interval's ends are the shares p at which |k/n - p| = z sqrt(p (1 - p) / n): found by
    bisection here, an independent route to the same numbers."""
    z = 1.959963984540054

    def edge(k: int, n: int, lo: float, hi: float) -> float:
        f = lambda p: abs(k / n - p) - z * math.sqrt(p * (1 - p) / n)  # noqa: E731
        for _ in range(200):
            mid = (lo + hi) / 2
            if (f(lo) > 0) == (f(mid) > 0):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    for k, n in ((44, 100), (7, 9), (500, 1000)):
        low, high = wilson_interval(k, n)
        assert low == pytest.approx(edge(k, n, 1e-12, k / n), abs=1e-9)
        assert high == pytest.approx(edge(k, n, k / n, 1 - 1e-12), abs=1e-9)
    assert wilson_interval(0, 0) is None


def test_pearson_against_the_textbook_formula_and_degenerate_cases():
    xs, ys = [1, 2, 3, 4, 5], [2, 4, 5, 4, 5]
    # Sxy = 6, Sxx = 10, Syy = 6: r = 6 / sqrt(60)
    assert pearson(xs, ys) == pytest.approx(6 / math.sqrt(60), abs=1e-12)
    assert pearson(xs, [-y for y in ys]) == pytest.approx(-6 / math.sqrt(60), abs=1e-12)
    assert pearson([1, 1, 1], [1, 2, 3]) is None and pearson([1], [2]) is None
    with pytest.raises(ValueError):
        pearson([1, 2], [1])


def test_a_reward_models_length_figures_worked_by_hand():
    # Pair 0: the longer answer was chosen (12 vs 5), rewards right. Pair 1: chosen shorter (10 vs 20),
    # rewards wrong. Pair 2: 10 vs 11 tokens (within 10%), rewards right. Pair 3: 30 vs 31 (within
    # 10%), rewards wrong (a tie is wrong).
    chosen, rejected = [1.0, 0.0, 2.0, 0.5], [0.0, 1.0, 1.0, 0.5]
    chosen_len, rejected_len = [12, 10, 10, 30], [5, 20, 11, 31]
    figures = length_figures(chosen, rejected, chosen_len, rejected_len)
    assert figures["length_baseline_accuracy"] == 0.25  # only pair 0 has the longer answer chosen
    assert figures["accuracy_similar_length"] == 0.5 and figures["similar_length_pairs"] == 2
    assert figures["length_correlation"] == pytest.approx(pearson(chosen + rejected, chosen_len + rejected_len))
    assert length_figures([], [], [], []) == {}
    # A reward that is the length: r = 1, and the model is exactly the length baseline.
    lengths_c, lengths_r = [3, 8, 2], [5, 1, 9]
    exact = length_figures([float(x) for x in lengths_c], [float(x) for x in lengths_r], lengths_c, lengths_r)
    assert exact["length_correlation"] == pytest.approx(1.0) and "accuracy_similar_length" not in exact
    # The answers are what follows the shared prompt.
    assert answer_lengths([1, 2, 3, 4, 5], [1, 2, 3, 9]) == (2, 1)


def test_the_labels_length_bias_per_annotator_and_per_dataset(make_project):
    rng = random.Random(0)
    pairs = []
    # "hh": the dataset's labels pick the longer answer 30 times in 40; ada (a person) 8 in 10 on "mine".
    for i in range(40):
        long, short = "x" * (20 + i), "y" * 5
        a_is_long = rng.random() < 0.5
        a, b = (long, short) if a_is_long else (short, long)
        longer_wins = i < 30
        verdict = ("a" if a_is_long else "b") if longer_wins else ("b" if a_is_long else "a")
        pairs.append((f"q{i}", a, b, "hh", verdict, "dataset:hh"))
    for i in range(10):
        pairs.append((f"m{i}", "z" * (30 + i), "w" * 3, "mine", "a" if i < 8 else "b", "ada"))
    pairs.append(("same length", "abc", "xyz", "mine", "a", "ada"))  # not decisive on length
    pairs.append(("a tie", "abcdef", "x", "mine", "tie", "ada"))  # not decisive at all
    path = make_project("bias", pairs)
    with Project.open(path) as project:
        by_annotator, by_origin = length_bias(project.store)
        report = agreement_report(project.store)
    assert [(b.group, b.decisive, b.longer_won) for b in by_annotator] == [("ada", 10, 8), ("dataset:hh", 40, 30)]
    assert [(b.group, b.decisive, b.longer_won) for b in by_origin] == [("hh", 40, 30), ("mine", 10, 8)]
    assert by_annotator[1].share == 0.75 and by_annotator[1].interval == wilson_interval(30, 40)
    low, high = by_annotator[1].interval
    assert low > 0.5  # the dataset's labels prefer length beyond chance
    assert report.length_by_annotator == by_annotator and report.length_by_origin == by_origin
