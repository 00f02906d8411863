"""PPO's arithmetic (core/rl/algorithm.py) against hand-worked values, TRL's helpers, and the
properties that must hold whatever the inputs."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_workbench.core.rl import algorithm as alg

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # we import trl.experimental on purpose


def test_gae_matches_the_recursion_worked_by_hand():
    # One response of 3 tokens, gamma 0.9, lambda 0.5:
    # deltas: d2 = r2 - v2, d1 = r1 + .9 v2 - v1, d0 = r0 + .9 v1 - v0; A_t = d_t + .45 A_{t+1}.
    rewards = torch.tensor([[0.0, -0.1, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.4]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    adv, ret = alg.gae(rewards, values, mask, gamma=0.9, lam=0.5)
    d2 = 1.0 - 0.4
    d1 = -0.1 + 0.9 * 0.4 - 0.2
    d0 = 0.0 + 0.9 * 0.2 - 0.5
    a2 = d2
    a1 = d1 + 0.45 * a2
    a0 = d0 + 0.45 * a1
    assert adv.tolist()[0] == pytest.approx([a0, a1, a2], abs=1e-6)
    assert ret.tolist()[0] == pytest.approx([a0 + 0.5, a1 + 0.2, a2 + 0.4], abs=1e-6)


def test_gae_ignores_padding_and_does_not_bootstrap_from_it():
    rewards = torch.tensor([[0.0, 2.0, 7.0, 7.0]])
    values = torch.tensor([[1.0, 1.0, 9.0, 9.0]])  # values past the end must not leak in
    mask = torch.tensor([[True, True, False, False]])
    adv, ret = alg.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # Monte Carlo with lambda = gamma = 1: A_t = sum of later rewards - V_t.
    assert adv.tolist()[0] == pytest.approx([2.0 - 1.0, 2.0 - 1.0, 0.0, 0.0])
    assert ret.tolist()[0] == pytest.approx([2.0, 2.0, 0.0, 0.0])


def test_the_score_lands_on_the_last_real_token_and_the_kl_penalty_on_every_real_one():
    scores = torch.tensor([3.0, -1.0])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    lengths = torch.tensor([3, 1])
    rewards, non_score = alg.token_rewards(scores, kl * mask, mask, lengths, kl_coef=0.5)
    assert torch.allclose(non_score, torch.tensor([[-0.05, -0.1, -0.15], [-0.25, 0.0, 0.0]]))
    assert torch.allclose(rewards, torch.tensor([[-0.05, -0.1, 2.85], [-1.25, 0.0, 0.0]]))


def test_kl_estimators():
    logp = torch.tensor([-1.0, -2.0, -0.5])
    ref = torch.tensor([-1.5, -2.0, -0.1])
    assert alg.kl_per_token(logp, ref, "k1").tolist() == pytest.approx([0.5, 0.0, -0.4])
    k3 = alg.kl_per_token(logp, ref, "k3")
    r = torch.exp(ref - logp)
    assert k3.tolist() == pytest.approx(((r - 1) - torch.log(r)).tolist(), abs=1e-6)
    assert bool((k3 >= 0).all())
    with pytest.raises(ValueError, match="k2"):
        alg.kl_per_token(logp, ref, "k2")


def test_both_estimators_are_unbiased_for_the_true_kl():
    # Sampled from p, the mean of k1 and of k3 approach KL(p || q).
    torch.manual_seed(0)
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.2, 0.5, 0.3])
    true_kl = float((p * (p / q).log()).sum())
    draws = torch.multinomial(p, 200_000, replacement=True)
    logp, logq = p.log()[draws], q.log()[draws]
    for estimator in ("k1", "k3"):
        assert float(alg.kl_per_token(logp, logq, estimator).mean()) == pytest.approx(true_kl, abs=0.01)


def test_policy_loss_is_minus_the_mean_advantage_at_ratio_one_and_clips_beyond_the_range():
    adv = torch.tensor([[1.0, -2.0, 0.5]])
    mask = torch.tensor([[True, True, False]])
    same = torch.tensor([[-1.0, -1.0, -1.0]])
    loss, stats = alg.policy_loss(same, same, adv, mask, cliprange=0.2)
    assert float(loss) == pytest.approx(-(1.0 - 2.0) / 2)
    assert float(stats["clipfrac"]) == 0.0 and float(stats["ratio"]) == pytest.approx(1.0)
    # Ratio e^0.5 ~ 1.65 on a positive advantage: the clipped term (1.2 x A) is the max of the negatives.
    new = same + torch.tensor([[0.5, 0.0, 0.0]])
    loss, stats = alg.policy_loss(new, same, adv, mask, cliprange=0.2)
    assert float(loss) == pytest.approx((-1.2 * 1.0 + 2.0) / 2)
    assert float(stats["clipfrac"]) == pytest.approx(0.5)


def test_value_loss_takes_the_worse_of_clipped_and_unclipped():
    old = torch.tensor([[0.0, 0.0]])
    returns = torch.tensor([[1.0, 1.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    # 0.9 moved too far from 0 (clip 0.2): the clipped prediction 0.2 is further from the return.
    loss, stats = alg.value_loss(torch.tensor([[0.9, 0.1]]), old, returns, mask, cliprange_value=0.2)
    assert float(loss) == pytest.approx(0.5 * ((1 - 0.2) ** 2 + (1 - 0.1) ** 2) / 2)
    assert float(stats["clipfrac"]) == pytest.approx(0.5)


def test_masked_whiten_matches_trl():
    from trl.experimental.ppo.ppo_trainer import masked_whiten as trl_whiten

    torch.manual_seed(1)
    values = torch.randn(4, 7) * 3 + 2
    mask = torch.rand(4, 7) > 0.3
    ours = alg.masked_whiten(values, mask)
    theirs = trl_whiten(values, mask)
    assert torch.allclose(ours[mask], theirs[mask], atol=1e-5)
    ours = alg.masked_whiten(values, mask, shift_mean=False)
    theirs = trl_whiten(values, mask, shift_mean=False)
    assert torch.allclose(ours[mask], theirs[mask], atol=1e-5)
    assert bool((ours[~mask] == 0).all())


def test_adaptive_kl_moves_towards_the_target_by_at_most_20_percent_per_horizon():
    ctl = alg.AdaptiveKLController(0.1, target=6.0, horizon=1000)
    ctl.update(60.0, n_episodes=1000)  # far above: +20%
    assert ctl.value == pytest.approx(0.12)
    ctl.update(0.0, n_episodes=500)  # far below: -20% x 0.5
    assert ctl.value == pytest.approx(0.12 * 0.9)
    ctl.update(float("nan"), n_episodes=500)
    assert ctl.value == pytest.approx(0.12 * 0.9)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=20), min_size=1, max_size=6))
def test_running_moments_equal_the_moments_of_everything_seen(chunks):
    moments = alg.RunningMoments()
    for chunk in chunks:
        moments.update(torch.tensor(chunk, dtype=torch.float64))
    everything = np.concatenate([np.array(c) for c in chunks])
    assert moments.count == len(everything)
    assert moments.mean == pytest.approx(float(everything.mean()), abs=1e-6)
    assert moments.var == pytest.approx(float(everything.var()), rel=1e-6, abs=1e-6)
    assert math.isfinite(moments.std)
