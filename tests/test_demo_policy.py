"""The demo policy PPO starts from: what it writes, and the rule check that measures it."""

import hashlib
from collections import Counter

import pytest

from rlhf_workbench.core.demo import (
    RULE_ARITHMETIC,
    RULE_NAMES,
    RULE_POLITENESS,
    RULE_TOPIC,
    demo_pairs,
    demo_prompts,
    demo_texts,
    follows_demo_rule,
    prompt_rule,
    rule_verdict,
)
from rlhf_workbench.core.demo_policy import (
    DEMO_POLICY_SPEC,
    build_demo_policy,
    ensure_demo_policy,
    load_demo_policy,
    sample_demo,
    sample_demo_responses,
    share_following,
    warmup_examples,
)
from rlhf_workbench.core.models import DEMO_MODEL_SPEC, build_demo_tokenizer

# All 360 default demo prompts: on fewer, sampling noise alone moves the share by several points.
PROMPTS = demo_prompts()
TINY = {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "epochs": 1, "batch_size": 128}


@pytest.fixture(scope="module")
def policy_folder(home):
    # The session's real build (the recipe's own spec, see conftest), shared by every test here.
    return ensure_demo_policy()


@pytest.fixture(scope="module")
def policy(policy_folder):
    import torch

    model, tokenizer = load_demo_policy(policy_folder)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small samples fastest on one thread
    yield model, tokenizer
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def samples(policy):
    model, tokenizer = policy
    return sample_demo(model, tokenizer, PROMPTS, temperature=1.0, max_new_tokens=32, seed=0)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _better_worse(record):
    prompt = record.prompt[-1].content
    a, b = record.response_a, record.response_b
    return (prompt, a, b) if rule_verdict(prompt, a, b) == "a" else (prompt, b, a)


# -- the rule check ------------------------------------------------------------------------------


def test_the_better_response_of_every_demo_pair_follows_its_rule_and_the_worse_does_not():
    for record in demo_pairs():
        prompt, better, worse = _better_worse(record)
        assert follows_demo_rule(prompt, better), (prompt, better)
        assert not follows_demo_rule(prompt, worse), (prompt, worse)


def test_the_kind_of_a_prompt_is_told_from_its_wording():
    for record in demo_pairs():
        assert prompt_rule(record.prompt[-1].content) == record.meta["rule"]
    # Look-alike wordings of different kinds.
    assert prompt_rule("What should I know about bees?") == RULE_POLITENESS
    assert prompt_rule("What do you know about bees?") == RULE_TOPIC
    assert prompt_rule("Tell me 2 + 3.") == RULE_ARITHMETIC
    assert prompt_rule("How are you?") is None


def test_follows_demo_rule_by_kind_of_prompt():
    # Arithmetic: only the last number counts.
    assert follows_demo_rule("What is 2 + 3?", "2 + 3 = 5.")
    assert follows_demo_rule("What is 2 + 3?", "Ugh, fine. It is 5.")
    assert not follows_demo_rule("What is 2 + 3?", "It is 5, or 6.")
    assert not follows_demo_rule("What is 2 + 3?", "No idea.")
    # Politeness: polite, not rude, on topic.
    polite_prompt = "Please explain bees to me."
    assert follows_demo_rule(polite_prompt, "Sure! Bees make honey from flowers.")
    assert not follows_demo_rule(polite_prompt, "Bees make honey from flowers.")  # not polite
    assert not follows_demo_rule(polite_prompt, "Sure! Bees make honey from flowers. Look it up yourself.")
    assert not follows_demo_rule(polite_prompt, "Sure! Cats purr when they feel safe.")  # another topic
    assert not follows_demo_rule(polite_prompt, "Sure! Bees and cats are animals.")  # and another
    # Topic: on topic and not rude; politeness is not needed.
    topic_prompt = "Tell me about the moon."
    assert follows_demo_rule(topic_prompt, "The moon circles the Earth.")
    assert not follows_demo_rule(topic_prompt, "I had a strange dream last night.")
    assert not follows_demo_rule(topic_prompt, "Whatever. The moon circles the Earth.")
    assert not follows_demo_rule(topic_prompt, "The sun rises in the east.")


def test_demo_prompts_are_the_pairs_prompts_each_once():
    prompts = demo_prompts()
    assert prompts == demo_prompts(0) and len(prompts) == len(set(prompts)) == len(demo_pairs())
    assert set(prompts) == {r.prompt[-1].content for r in demo_pairs()}
    assert Counter(prompt_rule(p) for p in prompts) == Counter({rule: len(prompts) // 3 for rule in RULE_NAMES})
    assert demo_prompts(1) != prompts


def test_share_following():
    assert share_following(["What is 1 + 1?", "What is 1 + 2?"], ["It is 2.", "It is 4."]) == 0.5
    assert share_following([], []) == 0.0
    with pytest.raises(ValueError):
        share_following(["What is 1 + 1?"], [])


# -- the warm-up data ------------------------------------------------------------------------------


def test_the_warm_up_learns_both_responses_of_every_pair_as_rendered_then_eos():
    tokenizer = build_demo_tokenizer(demo_texts(), DEMO_MODEL_SPEC["vocab_size"])
    examples = warmup_examples(tokenizer)
    records = demo_pairs()
    assert len(examples) == 2 * len(records)
    for record, (ids_a, start_a), (ids_b, start_b) in zip(records, examples[::2], examples[1::2]):
        for (ids, start), response in (((ids_a, start_a), record.response_a), ((ids_b, start_b), record.response_b)):
            assert ids[-1] == tokenizer.eos_token_id
            # The masked part is exactly the generation prompt the sampler conditions on.
            head = tokenizer.apply_chat_template(
                [{"role": "user", "content": record.prompt[-1].content}], tokenize=False, add_generation_prompt=True
            )
            assert ids[:start] == tokenizer(head, add_special_tokens=False)["input_ids"]
            assert tokenizer.decode(ids[start:-1]) == " " + response


@pytest.mark.slow
def test_building_is_deterministic(tmp_path):
    one = build_demo_policy(tmp_path / "one", TINY)
    two = build_demo_policy(tmp_path / "two", TINY)
    assert _digest(one / "model.safetensors") == _digest(two / "model.safetensors")
    assert (one / "tokenizer.json").read_bytes() == (two / "tokenizer.json").read_bytes()


# -- the built policy --------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_policy_is_built_once_atomically_and_reused(home, policy_folder, built_demo_models):
    assert policy_folder.parent == home / "models" and policy_folder.name == f"demo-policy-v{DEMO_POLICY_SPEC['version']}"
    assert (policy_folder / "model.safetensors").is_file() and (policy_folder / "tokenizer.json").is_file()
    # The session's one real build (conftest) went through ensure_demo_policy: nothing temporary left.
    assert (built_demo_models / policy_folder.name / "model.safetensors").is_file()
    assert not list(built_demo_models.glob(".*"))
    stamp = (policy_folder / "model.safetensors").stat().st_mtime_ns
    assert ensure_demo_policy() == policy_folder
    assert (policy_folder / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_the_policy_is_small_and_speaks_the_demo_reward_models_vocabulary(policy):
    model, tokenizer = policy
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    demo_tokenizer = build_demo_tokenizer(demo_texts(), DEMO_MODEL_SPEC["vocab_size"])
    assert tokenizer.get_vocab() == demo_tokenizer.get_vocab()
    assert tokenizer.chat_template == demo_tokenizer.chat_template
    assert model.config.eos_token_id == tokenizer.eos_token_id


@pytest.mark.slow
def test_about_half_of_the_sampled_responses_follow_the_rule(samples):
    texts = [s.text for s in samples]
    share = share_following(PROMPTS, texts)
    assert 0.25 <= share <= 0.75, share
    # Both kinds under every rule, so PPO has something to learn from on each.
    for rule in RULE_NAMES:
        mine = [(p, t) for p, t in zip(PROMPTS, texts) if prompt_rule(p) == rule]
        assert 0.15 <= share_following(*zip(*mine)) <= 0.85, rule


@pytest.mark.slow
def test_sampled_responses_end_and_look_like_demo_answers(samples):
    assert sum(s.ended for s in samples) >= 0.9 * len(samples)
    assert all(s.text for s in samples)
    lengths = [s.num_tokens for s in samples if s.ended]
    assert 5 <= sum(lengths) / len(lengths) <= 20  # demo answers are 4 to 18 tokens, plus the end
    assert sum(s.text.endswith((".", "!", "?")) for s in samples) >= 0.9 * len(samples)


@pytest.mark.slow
def test_sampling_has_entropy(policy, samples):
    model, tokenizer = policy
    texts = [s.text for s in samples]
    assert len(set(texts)) >= 0.5 * len(texts)
    # Not memorised: most answers are not one of the two the warm-up showed for that prompt.
    own = {r.prompt[-1].content: {r.response_a, r.response_b} for r in demo_pairs()}
    assert sum(t in own[p] for p, t in zip(PROMPTS, texts)) <= 0.5 * len(texts)
    # The same prompt, asked again and again, gets different answers.
    for prompt in ("What is 2 + 3?", "Please explain bees to me.", "Tell me about the moon."):
        answers = sample_demo_responses(model, tokenizer, [prompt] * 16, seed=1)
        assert len(set(answers)) >= 3, answers


@pytest.mark.slow
def test_sampling_is_seeded_and_leaves_the_global_rng_alone(policy):
    import torch

    model, tokenizer = policy
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = sample_demo_responses(model, tokenizer, PROMPTS[:8], seed=5)
    after = torch.rand(3)
    assert torch.equal(after, expected)
    assert sample_demo_responses(model, tokenizer, PROMPTS[:8], seed=5) == first
