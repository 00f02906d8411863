"""Reward-model data: which pairs train, the split by prompt, truncation, batches."""

import pytest

from rlhf_workbench.core.models import build_demo_tokenizer
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.records import Message
from rlhf_workbench.core.training.pairs import (
    batches_per_epoch,
    collate,
    encode_pair,
    epoch_batches,
    load_project_pairs,
    split_by_prompt,
)
from rlhf_workbench.core.training.text import encode_response, render, truncate

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau"]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] + ["What is 2 + 3?", "2 + 3 = 5."]
    return build_demo_tokenizer(texts, vocab_size=320)


def _pairs_of(project_path):
    with Project.open(project_path) as project:
        return project, load_project_pairs(project.store, validation_fraction=0.0, seed=0)


def test_settled_a_b_verdicts_train_and_the_rest_do_not(make_project):
    path = make_project(
        "p",
        [
            ("q1", "good", "bad", "t", "a", "dataset:x"),
            ("q2", "bad", "good", "t", "b", "dataset:x"),
            ("q3", "same", "same too", "t", "tie", "dataset:x"),
            ("q4", "awful", "worse", "t", "both_bad", "dataset:x"),
            ("q5", "one", "two", "t", None, None),
        ],
    )
    _, data = _pairs_of(path)
    assert sorted((p[0][0].content, p[1], p[2]) for p in data.train) == [("q1", "good", "bad"), ("q2", "good", "bad")]
    assert data.counts == {"pairs": 5, "decisive": 2, "ties": 1, "both_bad": 1, "unsettled": 1, "held_out": 0}


def test_ties_train_in_both_orders_when_asked_and_never_validate(make_project):
    path = make_project("p", [(f"q{i}", f"x{i}", f"y{i}", "t", "tie", "dataset:x") for i in range(10)])
    with Project.open(path) as project:
        data = load_project_pairs(project.store, validation_fraction=0.3, seed=0, include_ties=True)
    assert data.val == [] and len(data.train) == 2 * len(data.train_ids)
    assert {(p[1], p[2]) for p in data.train} >= {("x0", "y0"), ("y0", "x0")} or len(data.train_ids) < 10


def test_several_judgments_follow_the_strict_majority_and_undone_ones_do_not_count(make_project):
    path = make_project("p", [("q1", "r1", "s1", "t", None, None), ("q2", "r2", "s2", "t", None, None),
                              ("q3", "r3", "s3", "t", None, None)])
    with Project.open(path) as project:
        store = project.store
        p1, p2, p3 = store.pair_ids()
        for who, verdict in (("ann", "b"), ("bob", "b"), ("cy", "a")):  # 2 of 3 say b
            store.add_judgment(p1, who, verdict)
        store.add_judgment(p2, "ann", "a")  # 1-1: people disagree, the pair stays out
        store.add_judgment(p2, "bob", "b")
        undone = store.add_judgment(p3, "ann", "a")  # undone, then the real verdict
        store.undo_judgment(undone)
        store.add_judgment(p3, "ann", "b")
        store.add_judgment(p3, "bob", "skip")  # a skip says nothing
        data = load_project_pairs(store, validation_fraction=0.0, seed=0)
    assert sorted((p[0][0].content, p[1]) for p in data.train) == [("q1", "s1"), ("q3", "s3")]
    assert data.counts["unsettled"] == 1


def test_split_is_by_prompt_seeded_and_near_the_fraction():
    prompts = [f"prompt {i // 3}" for i in range(300)]  # 100 prompts, three pairs each
    train, val = split_by_prompt(prompts, 0.2, seed=7)
    assert sorted(train + val) == list(range(300))
    assert {prompts[i] for i in train}.isdisjoint({prompts[i] for i in val})
    assert 60 <= len(val) <= 63
    assert split_by_prompt(prompts, 0.2, seed=7) == (train, val)
    assert split_by_prompt(prompts, 0.2, seed=8) != (train, val)


def test_split_keeps_both_sides_and_handles_none():
    assert split_by_prompt(["a", "b"], 0.9, seed=0)[0] != []
    assert split_by_prompt(["a", "b"], 0.0, seed=0) == ([0, 1], [])
    assert split_by_prompt(["a", "a"], 0.5, seed=0) == ([0, 1], [])
    conversations = [(Message("user", "hi"),), (Message("user", "hi"),), (Message("user", "yo"),)]
    train, val = split_by_prompt(conversations, 0.3, seed=0)
    assert {0, 1} <= set(train) or {0, 1} <= set(val)


def test_truncate_keeps_the_start_of_the_prompt_and_the_end_of_the_response():
    prompt, response = list(range(100, 110)), list(range(200, 210))
    assert truncate(prompt, response, 20) == prompt + response  # fits: nothing cut
    assert truncate(prompt[:3], response, 8) == prompt[:3] + response[-5:]  # short prompt: response loses its start
    assert truncate(prompt, response[:2], 8) == prompt[:6] + response[:2]  # short response: prompt loses its end
    assert truncate(prompt, response, 9) == prompt[:4] + response[-5:]  # both long: half the window each


def test_encoding_truncates_at_the_boundary_between_prompt_and_response(tokenizer):
    prompt = " ".join(WORDS)
    response = " ".join(reversed(WORDS))
    full = encode_response(tokenizer, prompt, response, 10_000)
    ids = encode_response(tokenizer, prompt, response, 12)
    assert len(ids) == 12
    text = tokenizer.decode(ids)
    assert text.startswith("User: alpha")  # the prompt's start
    assert text.endswith("gamma beta alpha")  # the response's end
    assert "tau" not in tokenizer.decode(ids[:6]) and len(full) > 12


def test_chat_template_and_plain_transcript_render_alike(tokenizer):
    text, boundary, templated = render(tokenizer, "What is 2 + 3?", "2 + 3 = 5.")
    assert templated and text == "User: What is 2 + 3?\n\nAssistant: 2 + 3 = 5."
    assert text[:boundary].endswith("Assistant:")
    template, tokenizer.chat_template = tokenizer.chat_template, None
    try:
        plain, plain_boundary, templated = render(tokenizer, [{"role": "user", "content": "What is 2 + 3?"}], "2 + 3 = 5.")
    finally:
        tokenizer.chat_template = template
    assert not templated and (plain, plain_boundary) == (text, boundary)


def test_epoch_batches_are_a_seeded_length_grouped_permutation():
    lengths = [(i * 37) % 101 + 1 for i in range(1000)]
    batches = epoch_batches(lengths, 8, seed=3, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert len(batches) == batches_per_epoch(1000, 8) == 125
    assert epoch_batches(lengths, 8, seed=3, epoch=0) == batches
    assert epoch_batches(lengths, 8, seed=3, epoch=1) != batches
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # the longest first: OOM shows at once
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.1 * sum(lengths)  # little padding


def test_collate_stacks_chosen_then_rejected_padded_to_the_longest(tokenizer):
    pairs = [("q", "a b c", "a"), ("question two", "x", "y y y y y y", 2.0)]
    encoded = [encode_pair(tokenizer, p, 64) for p in pairs]
    batch = collate(encoded, [0, 1], pad_id=tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 4
    assert batch["input_ids"][0].tolist()[: len(encoded[0][0])] == encoded[0][0]
    assert batch["input_ids"][3].tolist()[: len(encoded[1][1])] == encoded[1][1]
    assert batch["attention_mask"].sum(1).tolist() == [len(encoded[0][0]), len(encoded[1][0]), len(encoded[0][1]), len(encoded[1][1])]
    assert batch["margin"].tolist() == [0.0, 2.0]
    assert collate(encoded, [0], pad_id=0)["margin"] is None
