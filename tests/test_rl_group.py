"""RLOO's and GRPO's arithmetic (core/rl/group.py) against values worked out by hand."""

import math

import pytest
import torch

from rlhf_workbench.core.rl import group as grp


def close(a, b, tol=1e-6):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), atol=tol)


def test_rloo_baseline_is_the_mean_of_the_other_responses_to_the_same_prompt():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 14.0])
    advantages = grp.rloo_advantages(rewards, 4)
    # 1 - (2 + 3 + 4) / 3, 2 - (1 + 3 + 4) / 3, ...; the second group: 10 - (10 + 10 + 14) / 3, ...
    assert close(advantages, [-2.0, -2 / 3, 2 / 3, 2.0, -4 / 3, -4 / 3, -4 / 3, 4.0])
    # A group's advantages sum to zero: a baseline moves nothing on average.
    assert close(grp.grouped(advantages, 4).sum(1), [0.0, 0.0])


def test_rloo_normalised_advantages_have_mean_zero_and_unit_std():
    advantages = grp.rloo_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]), 2, normalize=True)
    raw = torch.tensor([-1.0, 1.0, -1.0, 1.0])
    assert close(advantages, raw / (raw.std() + 1e-4))


def test_grpo_advantages_with_and_without_the_std():
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0])
    plain = grp.grpo_advantages(scores, 4)
    assert close(plain.advantages, [-1.5, -0.5, 0.5, 1.5, 0.0, 0.0, 0.0, 0.0])
    sd = math.sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3)  # Bessel's correction, as TRL's nanstd
    assert close(plain.group_std, [sd, 0.0])
    assert plain.zero_std.tolist() == [False, True]  # the second group teaches nothing
    scaled = grp.grpo_advantages(scores, 4, scale_rewards="group")
    assert close(scaled.advantages[:4], torch.tensor([-1.5, -0.5, 0.5, 1.5]) / (sd + 1e-4))
    assert close(scaled.advantages[4:], [0.0] * 4)
    batch = grp.grpo_advantages(scores, 4, scale_rewards="batch")
    assert close(batch.advantages, plain.advantages / (scores.std() + 1e-4))
    with pytest.raises(ValueError, match="whole groups"):
        grp.grpo_advantages(torch.ones(6), 4)


def test_the_sequence_kl_sums_log_ratios_over_real_tokens():
    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 9.0]])
    ref = torch.tensor([[-1.5, -1.0, -3.0], [-1.0, -1.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    assert close(grp.sequence_kl(logprobs, ref, mask), [0.5 - 1.0 + 0.0, 0.5 + 0.5])


def test_the_clipped_surrogate_clips_only_against_the_advantage():
    log_ratio = torch.log(torch.tensor([1.5, 1.5, 0.5, 0.5, 1.1]))
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0, 2.0])
    out = grp.clipped_surrogate(log_ratio, advantages, 0.2, 0.2)
    # r = 1.5, A = 1: min(1.5, 1.2) = 1.2 (clipped high); A = -1: min(-1.5, -1.2) = -1.5 (not clipped);
    # r = 0.5, A = 1: min(0.5, 0.8) = 0.5; A = -1: min(-0.5, -0.8) = -0.8 (clipped low); r = 1.1: inside.
    assert close(out.loss, [-1.2, 1.5, -0.5, 0.8, -2.2])
    assert out.high_clipped.tolist() == [True, False, False, False, False]
    assert out.low_clipped.tolist() == [False, False, False, True, False]
    higher = grp.clipped_surrogate(log_ratio, advantages, 0.2, 0.6)  # DAPO's clip-higher
    assert close(higher.loss[0], -1.5) and not higher.high_clipped[0]


def test_grpo_adds_k3_kl_to_the_loss_and_needs_no_reference_without_beta():
    logprobs = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.0, -1.0]])
    advantages = torch.tensor([0.0])  # only the KL term is left
    clipped, kl = grp.grpo_token_loss(logprobs, logprobs, advantages, epsilon=0.2, epsilon_high=0.2,
                                      ref_logprobs=ref, beta=0.5)
    # k3 = exp(ref - logp) - (ref - logp) - 1: 0 where they agree, e - 2 where ref is 1 nat higher.
    assert close(kl, [[0.0, math.e - 2]])
    assert close(clipped.loss, [[0.0, 0.5 * (math.e - 2)]])
    clipped, kl = grp.grpo_token_loss(logprobs, logprobs, torch.tensor([1.0]), epsilon=0.2, epsilon_high=0.2)
    assert kl is None and close(clipped.loss, [[-1.0, -1.0]])
    with pytest.raises(ValueError, match="reference"):
        grp.grpo_token_loss(logprobs, logprobs, advantages, epsilon=0.2, epsilon_high=0.2, beta=0.1)


def test_the_three_loss_normalisations():
    token_loss = torch.tensor([[1.0, 2.0, 7.0], [3.0, 7.0, 7.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    # grpo: each response's mean, summed (the caller divides by the responses): (1 + 2) / 2 + 3 / 1.
    assert close(grp.grpo_reduce(token_loss, mask, "grpo", max_new_tokens=3, batch_tokens=3), 4.5)
    # dr_grpo: the sum over a constant, max_new_tokens (the caller divides by the responses).
    assert close(grp.grpo_reduce(token_loss, mask, "dr_grpo", max_new_tokens=3, batch_tokens=3), 2.0)
    # dapo: the sum over the tokens of an optimizer step.
    assert close(grp.grpo_reduce(token_loss, mask, "dapo", max_new_tokens=3, batch_tokens=4), 1.5)
    with pytest.raises(ValueError, match="loss_type"):
        grp.grpo_reduce(token_loss, mask, "bnpo", max_new_tokens=3, batch_tokens=3)


def test_rloo_takes_the_ratio_of_whole_responses():
    logprobs = torch.tensor([[-1.0, -1.0, 5.0]])
    old = torch.tensor([[-1.1, -1.1, 0.0]])
    mask = torch.tensor([[True, True, False]])
    out = grp.rloo_sequence_loss(logprobs, old, torch.tensor([1.0]), mask, epsilon=0.2, epsilon_high=0.2)
    ratio = math.exp(0.2)  # (-1 - -1.1) x 2 real tokens; the padding's values do not count
    assert close(out.ratio, [ratio]) and close(out.loss, [-min(ratio, 1.2)])
