"""Bradley-Terry ratings, their bootstrap intervals and distinct-n (core/stats.py), against worked
examples and an independent fit of the same likelihood by gradient ascent in torch."""

from __future__ import annotations

import math
import random

import pytest

from rlhf_workbench.core.stats import ELO_SCALE, bootstrap_ratings, bradley_terry, distinct_n


def test_two_players_rating_gap_is_the_log_odds_of_their_record():
    # A won 30 of 40 against B: the likelihood's maximum has P(A beats B) = 0.75, a gap of
    # 400 * log10(3) Elo points, whoever is anchored.
    games = [("a", "b", 1.0)] * 30 + [("a", "b", 0.0)] * 10
    ratings = bradley_terry(games, anchor="b", prior_ties=0)
    assert ratings["b"] == 1000.0
    assert ratings["a"] == pytest.approx(1000 + 400 * math.log10(3), abs=1e-6)
    # Ties are half a win each (as Chatbot Arena counts them): 20 wins and 20 ties are 30 of 40.
    tied = [("a", "b", 1.0)] * 20 + [("a", "b", 0.5)] * 20
    assert bradley_terry(tied, anchor="b", prior_ties=0)["a"] == pytest.approx(ratings["a"], abs=1e-6)
    # Which side a player was on does not matter.
    swapped = [("b", "a", 1.0 - s) for _, _, s in games]
    assert bradley_terry(swapped, anchor="b", prior_ties=0)["a"] == pytest.approx(ratings["a"], abs=1e-6)


def _torch_fit(games, prior_ties):
    """The same penalised likelihood maximised by plain gradient ascent (LBFGS) in torch: an
    independent implementation of what bradley_terry's Newton steps compute."""
    import torch

    players = sorted({p for a, b, _ in games for p in (a, b)})
    index = {p: i for i, p in enumerate(players)}
    a = torch.tensor([index[g[0]] for g in games])
    b = torch.tensor([index[g[1]] for g in games])
    s = torch.tensor([g[2] for g in games], dtype=torch.float64)
    theta = torch.zeros(len(players), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([theta], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                                  line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        diff = theta[a] - theta[b]
        ll = (s * torch.nn.functional.logsigmoid(diff) + (1 - s) * torch.nn.functional.logsigmoid(-diff)).sum()
        # prior_ties ties of each player against a fixed player at 0
        ll = ll + prior_ties * (0.5 * torch.nn.functional.logsigmoid(theta) + 0.5 * torch.nn.functional.logsigmoid(-theta)).sum()
        (-ll).backward()
        return -ll

    optimizer.step(loss)
    return {p: 1000 + ELO_SCALE * float(theta[i].detach()) / math.log(10) for p, i in index.items()}


def test_several_players_agree_with_an_independent_fit():
    rng = random.Random(3)
    strengths = {"ppo": 1.2, "grpo": 0.8, "dpo": 0.3, "reference": 0.0, "sft": 0.1}
    names = list(strengths)
    games = []
    for _ in range(400):
        x, y = rng.sample(names, 2)
        p = 1 / (1 + math.exp(strengths[y] - strengths[x]))
        r = rng.random()
        games.append((x, y, 1.0 if r < p * 0.9 else 0.5 if r < p * 0.9 + 0.1 else 0.0))
    ours = bradley_terry(games, prior_ties=1.0)
    theirs = _torch_fit(games, prior_ties=1.0)
    for name in names:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-3)
    # Anchoring moves every rating by the same amount.
    anchored = bradley_terry(games, prior_ties=1.0, anchor="reference")
    shift = anchored["reference"] - ours["reference"]
    assert all(anchored[n] == pytest.approx(ours[n] + shift, abs=1e-6) for n in names)
    assert anchored["reference"] == 1000.0
    # The order found is the order the games were drawn from, where the strengths are far apart.
    order = sorted(names, key=ours.get, reverse=True)
    assert order[:3] == ["ppo", "grpo", "dpo"] and set(order[3:]) == {"sft", "reference"}


def test_the_prior_keeps_an_unbeaten_player_finite_and_without_it_says_why():
    games = [("a", "b", 1.0)] * 3
    ratings = bradley_terry(games)
    assert math.isfinite(ratings["a"]) and ratings["a"] > ratings["b"]
    assert ratings == pytest.approx(_torch_fit(games, prior_ties=1.0), abs=1e-3)
    with pytest.raises(ValueError, match="never lost"):
        bradley_terry(games, prior_ties=0)
    with pytest.raises(ValueError, match="1, 0 or 0.5"):
        bradley_terry([("a", "b", 2.0)])
    assert bradley_terry([]) == {}


def test_bootstrap_intervals_cover_the_estimate_and_match_the_normal_approximation():
    games = [("a", "b", 1.0)] * 120 + [("a", "b", 0.0)] * 80
    ratings = bradley_terry(games, anchor="b", prior_ties=0)
    intervals = bootstrap_ratings(games, rounds=400, seed=1, anchor="b", prior_ties=0)
    low, high = intervals["a"]
    assert low < ratings["a"] < high
    assert intervals["b"] == (1000.0, 1000.0)  # the anchor does not move
    # The delta method: the log-odds of a 0.6 share of 200 has standard error 1/sqrt(n p (1-p)).
    se = ELO_SCALE / math.log(10) / math.sqrt(200 * 0.6 * 0.4)
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.15)
    # Seeded: the same intervals again; four times the verdicts, about half the width.
    assert bootstrap_ratings(games, rounds=400, seed=1, anchor="b", prior_ties=0) == intervals
    wide = high - low
    narrow = bootstrap_ratings(games * 4, rounds=400, seed=1, anchor="b", prior_ties=0)["a"]
    assert (narrow[1] - narrow[0]) == pytest.approx(wide / 2, rel=0.2)


def test_distinct_n_worked_by_hand():
    # "the cat sat" and "the cat ran": bigrams (the cat) twice, (cat sat), (cat ran): 3 distinct of 4.
    assert distinct_n(["the cat sat", "the cat ran"], 2) == pytest.approx(3 / 4)
    assert distinct_n(["same words", "same words", "same words"], 2) == pytest.approx(1 / 3)
    assert distinct_n(["one", ""], 2) is None
    assert distinct_n(["a b c"], 1) == 1.0
