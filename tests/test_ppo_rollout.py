"""Rollouts on a real tiny Llama (random init, tokenizer trained here): what PPO's numbers rest on."""

from __future__ import annotations

import pytest
import torch

from rlhf_workbench.core.models import build_demo_model, load_reward_model
from rlhf_workbench.core.training import rollout as R
from rlhf_workbench.core.training.policy import load_policy

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 512}
PROMPTS = ["What is 2 + 3?", "Tell me about bees, and then about the ocean and the moon please.", "Hi"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = build_demo_model(tmp_path_factory.mktemp("tiny") / "model", TINY)
    model, tokenizer = load_policy(folder)
    model.eval()
    return folder, model, tokenizer


def _sample(model, tokenizer, prompts, seed=0, **kw):
    ids = R.encode_prompts(tokenizer, prompts, 64)
    options = {"max_new_tokens": 12, "temperature": 1.0} | kw
    return R.sample(model, ids, pad_id=tokenizer.pad_token_id, eos_id=tokenizer.eos_token_id,
                    generator=torch.Generator().manual_seed(seed), **options)


def test_prompts_are_rendered_with_the_generation_prompt(tiny):
    _, _, tokenizer = tiny
    text, templated = R.prompt_text(tokenizer, "What is 2 + 3?")
    assert templated and text == "User: What is 2 + 3?\n\nAssistant:"
    whole = R.encode_prompts(tokenizer, ["What is 2 + 3?"], 64)[0]
    assert tokenizer.decode(whole) == text
    assert R.encode_prompts(tokenizer, ["What is 2 + 3?"], 4)[0] == whole[-4:]  # a long prompt keeps its end


def test_sampling_log_probs_equal_a_full_forward_pass_despite_left_padding(tiny):
    _, model, tokenizer = tiny
    rollout = _sample(model, tokenizer, PROMPTS * 3, temperature=0.7)
    with torch.no_grad():
        full = R.response_logprobs(model, rollout, 0.7)
    mask = rollout.response_mask
    assert mask.any()
    assert torch.allclose(full[mask], rollout.logprobs[mask], atol=1e-4)
    # Padding after the end carries the sentinel, so its KL is zero.
    assert bool((rollout.logprobs[~mask] == R.INVALID_LOGPROB).all())


def test_a_prompt_gets_the_same_first_token_distribution_alone_or_padded_in_a_batch(tiny):
    _, model, tokenizer = tiny
    alone = R.encode_prompts(tokenizer, ["Hi"], 64)
    batch = R.encode_prompts(tokenizer, PROMPTS, 64)
    with torch.no_grad():
        ids, mask = R.left_pad(alone, tokenizer.pad_token_id, "cpu")
        one = model(input_ids=ids, attention_mask=mask).logits[0, -1]
        ids, mask = R.left_pad(batch, tokenizer.pad_token_id, "cpu")
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        many = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[2, -1]
    assert torch.allclose(one, many, atol=1e-4)


def test_responses_stop_at_the_end_of_text_token_which_is_kept(tiny):
    _, model, tokenizer = tiny
    eos = tokenizer.eos_token_id
    rollout = R.sample(model, R.encode_prompts(tokenizer, PROMPTS * 10, 64), pad_id=tokenizer.pad_token_id, eos_id=eos,
                       max_new_tokens=40, temperature=3.0, generator=torch.Generator().manual_seed(3))
    responses = rollout.responses
    for row, length, ended in zip(responses.tolist(), rollout.response_lengths.tolist(), rollout.ended.tolist()):
        real = row[:length]
        assert eos not in real[:-1]
        assert ended == (real[-1] == eos)
        assert all(t == tokenizer.pad_token_id for t in row[length:])
    assert bool(rollout.ended.any()), "a 512-token vocabulary at temperature 3 ends some of 30 responses in 40 tokens"


def test_the_same_seed_samples_the_same_responses(tiny):
    _, model, tokenizer = tiny
    a = _sample(model, tokenizer, PROMPTS, seed=5)
    b = _sample(model, tokenizer, PROMPTS, seed=5)
    c = _sample(model, tokenizer, PROMPTS, seed=6)
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, c.tokens)


def test_top_p_keeps_the_smallest_set_reaching_p():
    logprobs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    probs = R._top_p_probs(logprobs, 0.75)
    assert (probs > 0).tolist() == [[True, True, False, False]]
    probs = R._top_p_probs(logprobs, 0.01)  # the most likely token always stays
    assert (probs > 0).tolist() == [[True, False, False, False]]


def test_values_and_scores_come_from_the_right_positions(tiny):
    folder, model, tokenizer = tiny
    reward, reward_tokenizer = load_reward_model(folder, trainable=False)
    reward.eval()
    rollout = _sample(model, tokenizer, PROMPTS)
    with torch.no_grad():
        values = R.token_values(reward, rollout)
        assert values.shape == rollout.logprobs.shape
        # The value before response token t is the head on the hidden state at position P + t - 1.
        hidden = reward.model(input_ids=rollout.tokens, attention_mask=rollout.attention_mask,
                              position_ids=rollout.position_ids).last_hidden_state
        expected = reward.score(hidden[:, rollout.prompt_length - 1 : -1]).squeeze(-1)
        assert torch.allclose(values, expected, atol=1e-5)
        texts = R.decode_responses(tokenizer, rollout)
        scores = R.reward_scores(reward, reward_tokenizer, PROMPTS, texts, max_length=256)
        # The same as scoring each rendered text alone, the way the reward model was trained.
        from rlhf_workbench.core.reward.evaluate import score_with

        alone = score_with(reward, reward_tokenizer, [(p, t.strip()) for p, t in zip(PROMPTS, texts)], max_length=256,
                           batch_size=1, device=torch.device("cpu"))
    assert scores.tolist() == pytest.approx(list(alone), abs=1e-4)


def test_sample_responses_returns_one_text_per_prompt(tiny):
    _, model, tokenizer = tiny
    texts = R.sample_responses(model, tokenizer, PROMPTS * 5, max_new_tokens=8, temperature=1.0, batch_size=4)
    assert len(texts) == 15 and all(isinstance(t, str) for t in texts)
    assert texts == R.sample_responses(model, tokenizer, PROMPTS * 5, max_new_tokens=8, temperature=1.0, batch_size=4)


def test_rows_grouped_by_length_give_the_same_numbers_with_less_padding(tiny):
    _, model, tokenizer = tiny
    prompts = ["Hi"] * 6 + ["Tell me everything about " + "the deep blue ocean and " * 8 + "bees."] * 2
    rollout = _sample(model, tokenizer, prompts, max_new_tokens=10)
    rows = torch.arange(len(prompts))
    groups = R.length_groups(rollout.lengths, rows)
    assert len(groups) > 1, "six short prompts and two long ones are worth two passes"
    assert sorted(torch.cat(groups).tolist()) == rows.tolist()
    with torch.no_grad():
        whole = R.response_logprobs(model, rollout, 1.0)
        values_whole = R.token_values(model_value := load_reward_model(tiny[0], trainable=False)[0], rollout)
        padded_cells = 0
        for group in groups:
            part = rollout.select(group)
            padded_cells += part.tokens.numel()
            width = part.responses.shape[1]
            assert torch.allclose(R.response_logprobs(model, part, 1.0)[part.response_mask],
                                  whole[group, :width][part.response_mask], atol=1e-4)
            assert torch.allclose(R.token_values(model_value, part)[part.response_mask],
                                  values_whole[group, :width][part.response_mask], atol=1e-4)
    assert padded_cells < 0.7 * rollout.tokens.numel()


LONG = "Tell me everything about " + "the deep blue ocean and " * 8 + "bees."


def test_a_groups_shared_prompt_is_computed_once_with_the_same_logits_and_gradients(tiny):
    _, model, tokenizer = tiny
    rollout = _sample(model, tokenizer, ["Hi"] * 4 + [LONG] * 4 + ["What is 2 + 3?"], max_new_tokens=10)
    first, inverse = R.shared_prompts(rollout)
    assert len(first) == 3 and inverse.tolist() == [inverse[0]] * 4 + [inverse[4]] * 4 + [inverse[8]]
    assert rollout.tokens[first[inverse], : rollout.prompt_length].equal(rollout.tokens[:, : rollout.prompt_length])
    mask = rollout.response_mask

    def logits_and_grads(n_params):
        model.zero_grad()
        logits = R.response_logits(model, rollout, n_params=n_params)
        (R.logprobs_of(logits, rollout.responses, 1.0)[mask].sum()).backward()
        return logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}

    calls = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs["input_ids"].shape),
                                           with_kwargs=True)
    try:
        shared, shared_grads = logits_and_grads(0)  # n_params 0: sharing always pays
        # The distinct prompts but their last token, then each row's last prompt token and response.
        assert calls == [(3, rollout.prompt_length - 1), (9, rollout.responses.shape[1])]
        calls.clear()
        full, full_grads = logits_and_grads(1)  # a pass costing 1e8 tokens: never worth it
        assert calls == [tuple(rollout.tokens.shape)]
    finally:
        hook.remove()
        model.zero_grad()
    assert torch.allclose(shared[mask], full[mask], atol=1e-5)
    for name, grad in full_grads.items():
        assert torch.allclose(shared_grads[name], grad, atol=1e-5), name
    # Sampling read each distinct prompt once too, and its log-probs are still the policy's.
    with torch.no_grad():
        assert torch.allclose(R.response_logprobs(model, rollout, 1.0)[mask], rollout.logprobs[mask], atol=1e-4)


def test_a_one_token_prompt_shares_nothing_but_its_group_still_gets_its_logits(tiny):
    # Left-padded beside a longer prompt, a one-token prompt's shared part is all padding: its
    # keys must not spoil the rows (no NaN), and the logits equal a full pass's.
    _, model, tokenizer = tiny
    ids = [[5]] * 3 + [[7, 8, 9, 10, 11]] * 3
    rollout = R.sample(model, ids, pad_id=tokenizer.pad_token_id, eos_id=None, max_new_tokens=6, temperature=1.0,
                       generator=torch.Generator().manual_seed(0))
    mask = rollout.response_mask
    with torch.no_grad():
        shared = R.response_logits(model, rollout, n_params=0)
        full = R.response_logits(model, rollout, n_params=1)
    assert torch.isfinite(shared).all()
    assert torch.allclose(shared[mask], full[mask], atol=1e-5)
    assert torch.allclose(R.logprobs_of(shared, rollout.responses, 1.0)[mask], rollout.logprobs[mask], atol=1e-4)


def test_a_groups_responses_are_scored_with_their_prompt_read_once(tiny):
    folder, model, tokenizer = tiny
    reward, reward_tokenizer = load_reward_model(folder, trainable=False)
    reward.eval()
    prompts = ["Hi"] * 4 + [LONG] * 4 + ["What is 2 + 3?"] * 4
    texts = R.decode_responses(tokenizer, _sample(model, tokenizer, prompts, max_new_tokens=10))
    calls = []
    hook = reward.model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    try:
        shared = R.reward_scores(reward, reward_tokenizer, prompts, texts, max_length=256,
                                 together=R.prompt_groups(len(prompts), 4))
    finally:
        hook.remove()
    # Per pass of a length group: its distinct prompts (each once), then the 4 rests of each.
    assert len(calls) % 2 == 0 and [4 * rows for rows, _ in calls[0::2]] == [rows for rows, _ in calls[1::2]]
    assert sum(rows for rows, _ in calls[0::2]) == 3
    apart = R.reward_scores(reward, reward_tokenizer, prompts, texts, max_length=256)
    assert shared.tolist() == pytest.approx(apart.tolist(), abs=1e-4)


def test_rows_kept_together_stay_in_one_length_group():
    lengths = torch.tensor([5, 90, 6, 88, 7, 91, 4, 89])
    together = R.prompt_groups(8, 2)  # rows 0-1, 2-3, ...: a short and a long response each
    assert together.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    rows = torch.arange(8)
    alone = R.length_groups(lengths, rows)
    assert len(alone) == 2 and sorted(alone[1].tolist()) == [0, 2, 4, 6]  # short rows apart from their group
    kept = R.length_groups(lengths, rows, together=together)
    assert sorted(torch.cat(kept).tolist()) == rows.tolist()
    for part in kept:
        members = set(part.tolist())
        assert all({2 * (r // 2), 2 * (r // 2) + 1} <= members for r in members)  # whole groups only
    # Rank 1 of 2 holds global rows 1, 3, 5, ...: groups of 4 are global rows 0-3, 4-7, ...
    assert R.prompt_groups(4, 4, rank=1, world=2).tolist() == [0, 0, 1, 1]
    assert R.prompt_groups(4, 1) is None


def test_the_parts_of_a_batch_add_up_to_its_loss():
    from rlhf_workbench.core.rl import algorithm as alg

    torch.manual_seed(0)
    logp, old, adv = torch.randn(6, 5), torch.randn(6, 5), torch.randn(6, 5)
    mask = torch.rand(6, 5) > 0.3
    whole, _ = alg.policy_loss(logp, old, adv, mask, 0.2)
    n = float(mask.sum())
    parts = sum(alg.policy_loss(logp[r], old[r], adv[r], mask[r], 0.2, n)[0] for r in (slice(0, 2), slice(2, 6)))
    assert float(parts) == pytest.approx(float(whole), abs=1e-6)


def test_drawing_follows_the_distribution_and_never_draws_an_impossible_token():
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2]]).repeat(40_000, 1)
    drawn = R._draw(probs, torch.Generator().manual_seed(0))
    counts = torch.bincount(drawn, minlength=4).float() / len(drawn)
    assert counts[1] == 0
    assert torch.allclose(counts, probs[0], atol=0.01)
