"""A pair's prompt computed once (core/training/prefix.py) gives what two separate sequences give:
the same DPO log-probs and reward-model rewards, and the same gradients, to float tolerance."""

from __future__ import annotations

import random

import pytest
import torch

from rlhf_workbench.core.offline.train import ResponseLogits, _shared_pairs, sequence_logprobs
from rlhf_workbench.core.training.prefix import common_prefix, shared_batch, worth_sharing

PAD = 0


def _llama(kind: str, seed: int = 0, attention: str = "sdpa"):
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=PAD, num_labels=1, attn_implementation=attention)
    model = (LlamaForCausalLM if kind == "lm" else LlamaForSequenceClassification)(config)
    return model.float()


def _attention(rest_passes: str) -> str:
    return "eager" if rest_passes == "packed eager" else "sdpa"


def _pairs(n: int, seed: int = 1):
    """(chosen, rejected) token rows with a shared prompt of 20-40 tokens and different responses,
    some of whose first tokens agree too; response starts as encode_sequence gives them."""
    rng = random.Random(seed)
    chosen, rejected = [], []
    for _ in range(n):
        prompt = [rng.randrange(1, 97) for _ in range(rng.randrange(20, 40))]
        common = [rng.randrange(1, 97) for _ in range(rng.randrange(0, 3))]
        a = common + [rng.randrange(1, 97) for _ in range(rng.randrange(2, 12))]
        b = common + [rng.randrange(1, 97) for _ in range(rng.randrange(2, 12))]
        chosen.append((prompt + a, len(prompt)))
        rejected.append((prompt + b, len(prompt)))
    return chosen + rejected


def _grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_common_prefix_stops_at_the_first_difference_and_at_the_limit():
    assert common_prefix([1, 2, 3, 4], [1, 2, 5], 10) == 2
    assert common_prefix([1, 2, 3], [1, 2, 3], 2) == 2
    assert common_prefix([7], [8], 5) == 0
    assert shared_batch([[1, 2]], [[7, 3]], [1], PAD) is None  # nothing in common: two sequences it is
    assert shared_batch([[1, 2]], [[1, 3]], [1], PAD) is not None
    assert not worth_sharing([1, 2, 3]) and worth_sharing([8, 8, 8]) and not worth_sharing([])


@pytest.fixture(params=["one rest pass", "rests in groups", "packed sdpa", "packed eager"])
def rest_passes(request, monkeypatch):
    """How the answers after the shared prompts go through: after the prompts' KV cache, in one pass
    or in groups of similar length (what a larger model gets: the extra passes' fixed cost then pays);
    or each pair packed in one row under a block mask, with each attention that takes one."""
    monkeypatch.setattr("rlhf_workbench.core.training.prefix.PACK", request.param.startswith("packed"))
    if request.param == "rests in groups":
        monkeypatch.setattr("rlhf_workbench.core.training.rollout.PASS_COST_PARAM_TOKENS", 0.0)
    return request.param


def test_rests_go_in_groups_when_extra_passes_cost_nothing(rest_passes):
    from rlhf_workbench.core.offline.train import _backbone_and_head
    from rlhf_workbench.core.training.prefix import shared_hidden

    rows = _pairs(6)
    batch = _shared_pairs(rows, PAD)["shared"]
    model = _llama("lm", attention=_attention(rest_passes))
    backbone = _backbone_and_head(model)[0]
    masks = []  # the attention mask of each pass: 2D with a KV cache, the 4D block mask when packed
    backbone.register_forward_pre_hook(lambda _, args, kwargs: masks.append(kwargs["attention_mask"].dim()),
                                       with_kwargs=True)
    groups = shared_hidden(backbone, batch, n_params=sum(p.numel() for p in model.parameters()))
    assert sorted(torch.cat([r for r, _ in groups]).tolist()) == list(range(len(rows)))
    assert (len(groups) > 1) == (rest_passes == "rests in groups")
    assert masks == ([4] if rest_passes.startswith("packed") else [2] * (1 + len(groups)))


def test_dpo_log_probs_and_gradients_are_those_of_separate_sequences(rest_passes):
    rows = _pairs(6)
    assert _shared_pairs(rows, PAD) is not None  # the batch does share
    results = []
    for share in (False, True):
        model = _llama("lm", attention=_attention(rest_passes))
        net = ResponseLogits(model)
        logps, counts, tokens = sequence_logprobs(net, rows, PAD, "fp32", torch.device("cpu"), pairs=True, share=share)
        (logps * torch.linspace(-1, 1, len(rows))).sum().backward()  # a loss that weighs every row differently
        results.append((logps.detach(), counts, tokens, _grads(model)))
    (plain, plain_counts, plain_tokens, plain_grads), (shared, shared_counts, shared_tokens, shared_grads) = results
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-5)
    assert torch.equal(shared_counts, plain_counts) and shared_tokens == plain_tokens
    assert plain_grads.keys() == shared_grads.keys() and plain_grads
    for name in plain_grads:
        torch.testing.assert_close(shared_grads[name], plain_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_the_response_logits_gathered_from_the_backbone_are_the_full_forward_passes():
    model = _llama("lm")
    rows = _pairs(3)
    from rlhf_workbench.core.offline.data import collate

    batch = collate(rows, PAD)
    logits, wanted, row_of = ResponseLogits(model)(batch)
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][batch["targets"][:, 1:]]
    torch.testing.assert_close(logits, full, rtol=1e-5, atol=1e-5)
    assert len(wanted) == len(row_of) == sum(len(ids) - start for ids, start in rows)


def test_reward_model_rewards_and_gradients_are_those_of_separate_sequences(rest_passes):
    margin = 0.5
    from rlhf_workbench.core.reward.evaluate import forward_rewards, shared_pair_rewards
    from rlhf_workbench.core.reward.loss import reward_loss
    from rlhf_workbench.core.training.pairs import collate as pair_collate

    rows = _pairs(5)
    n = len(rows) // 2
    encoded = [(rows[i][0], rows[n + i][0], margin) for i in range(n)]
    results = []
    for share in (False, True):
        model = _llama("rm", attention=_attention(rest_passes))
        if share:
            rewards = shared_pair_rewards(model, encoded, list(range(n)), PAD, torch.device("cpu"), "fp32")
            assert rewards is not None
        else:
            rewards = forward_rewards(model, pair_collate(encoded, list(range(n)), PAD), torch.device("cpu"), "fp32")
        loss = reward_loss(rewards[:n], rewards[n:], margin=None if margin is None else torch.full((n,), margin))
        loss.backward()
        results.append((rewards.detach(), _grads(model)))
    (plain, plain_grads), (shared, shared_grads) = results
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-5)
    for name in plain_grads:
        torch.testing.assert_close(shared_grads[name], plain_grads[name], rtol=1e-4, atol=1e-6, msg=name)
