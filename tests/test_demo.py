"""The demo project: counts, determinism, and that every judged pair follows its rule."""

from __future__ import annotations

import re
import socket
from collections import Counter

import pytest

from rlhf_workbench.core import demo
from rlhf_workbench.core.demo import (
    DEMO_ANNOTATOR,
    DEMO_JUDGED_SHARE,
    DEMO_PAIRS_PER_RULE,
    RULE_NAMES,
    TOPICS,
    create_demo_project,
    demo_pairs,
    demo_texts,
    rule_score,
    rule_verdict,
)
from rlhf_workbench.core.errors import ProjectError
from rlhf_workbench.core.project import Project


@pytest.fixture(scope="module")
def pairs():
    return demo_pairs()


def _text(record) -> str:
    (message,) = record.prompt
    assert message.role == "user"
    return message.content


def _better_worse(record):
    verdict = rule_verdict(_text(record), record.response_a, record.response_b)
    assert verdict in ("a", "b"), record
    return (record.response_a, record.response_b) if verdict == "a" else (record.response_b, record.response_a)


def test_counts(pairs):
    assert len(pairs) == 3 * DEMO_PAIRS_PER_RULE
    assert 300 <= len(pairs) <= 400
    assert Counter(p.meta["rule"] for p in pairs) == {rule: DEMO_PAIRS_PER_RULE for rule in RULE_NAMES}
    # Each prompt appears in exactly one pair.
    assert len({_text(p) for p in pairs}) == len(pairs)
    assert all(p.origin == "demo" for p in pairs)


def test_deterministic_for_a_seed_and_different_across_seeds(pairs):
    assert demo_pairs(0) == pairs
    assert demo_pairs(1) == demo_pairs(1)
    assert demo_pairs(1) != pairs
    assert demo_texts(0) == demo_texts(0)


def test_share_of_judged_pairs(pairs):
    judged = [p for p in pairs if p.verdict is not None]
    assert len(judged) == round(len(pairs) * DEMO_JUDGED_SHARE)
    for rule in RULE_NAMES:
        of_rule = [p for p in pairs if p.meta["rule"] == rule]
        assert sum(p.verdict is not None for p in of_rule) == round(len(of_rule) * DEMO_JUDGED_SHARE)
    assert all(p.annotator == DEMO_ANNOTATOR and p.verdict in ("a", "b") for p in judged)
    assert all(p.annotator is None for p in pairs if p.verdict is None)


def test_no_identical_responses(pairs):
    assert all(p.response_a != p.response_b for p in pairs)


def test_better_response_on_the_left_about_half_the_time(pairs):
    for subset in ([p for p in pairs if p.verdict], [p for p in pairs if not p.verdict]):
        left = sum(rule_verdict(_text(p), p.response_a, p.response_b) == "a" for p in subset)
        assert abs(left / len(subset) - 0.5) <= 0.02
    judged = [p for p in pairs if p.verdict]
    assert abs(sum(p.verdict == "a" for p in judged) / len(judged) - 0.5) <= 0.02


def test_every_judged_verdict_follows_the_rules(pairs):
    for p in pairs:
        if p.verdict is not None:
            assert p.verdict == rule_verdict(_text(p), p.response_a, p.response_b), p
        better, worse = _better_worse(p)
        assert rule_score(_text(p), better) > rule_score(_text(p), worse)


_SUM = re.compile(r"(\d+)\s*(?:\+|plus|and)\s*(\d+)")


def test_arithmetic_checked_by_computing(pairs):
    """Independently of rule_score: the better answer's number is the sum, the worse one's is not."""
    arithmetic = [p for p in pairs if p.meta["rule"] == "arithmetic"]
    assert arithmetic
    for p in arithmetic:
        a, b = map(int, _SUM.search(_text(p)).groups())
        numbers_a = re.findall(r"\d+", p.response_a)
        numbers_b = re.findall(r"\d+", p.response_b)
        right_a, right_b = int(numbers_a[-1]) == a + b, int(numbers_b[-1]) == a + b
        assert right_a != right_b, p
        if p.verdict is not None:
            assert p.verdict == ("a" if right_a else "b"), p
        # Same wording, only the number differs.
        assert re.sub(r"\d+", "N", p.response_a) == re.sub(r"\d+", "N", p.response_b)


def test_politeness_pairs_differ_only_in_the_wrapping(pairs):
    polite = demo.POLITE_OPENINGS + demo.POLITE_CLOSINGS
    rude = demo.RUDE_OPENINGS + demo.RUDE_CLOSINGS
    for p in (p for p in pairs if p.meta["rule"] == "politeness"):
        better, worse = _better_worse(p)
        assert any(s in better for s in polite) and not any(s in better for s in rude), p
        assert any(s in worse for s in rude) and not any(s in worse for s in polite), p
        asked = demo.topics_in(_text(p))
        assert len(asked) == 1 and demo.topics_in(better) == asked == demo.topics_in(worse)


def test_topic_pairs_one_on_topic_one_off(pairs):
    polite_or_rude = demo.POLITE_OPENINGS + demo.POLITE_CLOSINGS + demo.RUDE_OPENINGS + demo.RUDE_CLOSINGS
    for p in (p for p in pairs if p.meta["rule"] == "topic"):
        better, worse = _better_worse(p)
        asked = demo.topics_in(_text(p))
        assert len(asked) == 1
        assert better in asked[0].facts
        assert worse in demo.OFF_TOPIC_REMARKS and demo.topics_in(worse) == []
        # Neutral in tone: the topic is the only difference.
        assert not any(s in better or s in worse for s in polite_or_rude)
        if p.verdict is not None:
            assert p.verdict == ("a" if better == p.response_a else "b")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_length_is_no_cue(seed):
    """Where the two responses differ in length, the better one is longer in roughly half the pairs."""
    pairs = demo_pairs(seed)
    for rule in ("politeness", "topic"):
        longer = shorter = 0
        for p in (p for p in pairs if p.meta["rule"] == rule):
            better, worse = _better_worse(p)
            longer += len(better) > len(worse)
            shorter += len(better) < len(worse)
        assert 0.35 <= longer / (longer + shorter) <= 0.65, (rule, longer, shorter)


def test_topic_vocabulary_is_unambiguous():
    """Each fact names its own topic and no other, and each prompt template names only its topic."""
    for topic in TOPICS:
        for fact in topic.facts:
            assert demo.topics_in(fact) == [topic], fact
        for template in demo.TOPIC_PROMPTS + demo.POLITENESS_PROMPTS:
            assert demo.topics_in(template.format(t=topic.name)) == [topic]
    for remark in demo.OFF_TOPIC_REMARKS:
        assert demo.topics_in(remark) == [], remark
    for template in demo.ARITHMETIC_PROMPTS:
        assert demo.arithmetic_question(template.format(a=2, b=3)) == (2, 3), template
        assert demo.topics_in(template.format(a=2, b=3)) == []


def test_each_sum_is_seen_many_times(pairs):
    """The arithmetic rule is learnable only by memorising sums: each must recur under several wordings."""
    sums = Counter(demo.arithmetic_question(_text(p)) for p in pairs if p.meta["rule"] == "arithmetic")
    assert len(sums) == len(demo.OPERANDS) ** 2
    assert min(sums.values()) >= 8


def test_texts_are_short(pairs):
    for p in pairs:
        for text in (_text(p), p.response_a, p.response_b):
            assert len(text.split()) <= 20, text


def test_demo_texts_cover_every_text(pairs):
    texts = demo_texts()
    assert len(texts) == len(set(texts))
    expected = {_text(p) for p in pairs} | {p.response_a for p in pairs} | {p.response_b for p in pairs}
    assert set(texts) == expected


def test_rule_score_for_other_text():
    assert rule_score("What is 2 + 3?", "Sure! 2 + 3 = 5.") == 3
    assert rule_score("What is 2 + 3?", "Whatever. 2 + 3 = 6.") == -3
    assert rule_score("What is 2 + 3?", "I do not know.") == -2
    assert rule_score("Tell me about cats.", "Cats purr.") == 2
    assert rule_score("Tell me about cats.", "Cats and dogs.") == -2
    assert rule_verdict("Tell me about cats.", "Cats purr.", "Cats purr.") == "tie"


def _content(project: Project) -> dict[str, list[tuple]]:
    """Everything in the database except creation times."""
    queries = {
        "prompts": "SELECT id, hash, messages FROM prompts ORDER BY id",
        "responses": "SELECT id, hash, prompt_id, text, source, source_name FROM responses ORDER BY id",
        "pairs": """SELECT id, hash, prompt_id, response_a_id, response_b_id, origin, margin, meta, import_id
                    FROM pairs ORDER BY id""",
        "judgments": """SELECT id, pair_id, annotator, verdict, shown_left, rationale, seconds, undone,
                               import_key, import_id FROM judgments ORDER BY id""",
        "project": "SELECT key, value FROM project WHERE key != 'created_at' ORDER BY key",
    }
    return {name: project.store.conn.execute(sql).fetchall() for name, sql in queries.items()}


def test_create_demo_project(tmp_path, pairs):
    with create_demo_project(tmp_path / "demo") as project:
        counts = project.store.counts()
        assert counts["pairs"] == len(pairs)
        assert counts["prompts"] == len(pairs)
        assert counts["responses"] == 2 * len(pairs)
        judged = sum(p.verdict is not None for p in pairs)
        assert counts["judgments"] == judged
        assert project.store.pairs_by_origin() == {"demo": len(pairs)}
        assert project.store.judgments_by_annotator_and_verdict()[DEMO_ANNOTATOR] == dict(
            Counter(p.verdict for p in pairs if p.verdict)
        )
        # Dataset verdicts do not count as labelled: every pair waits for a person, but those of the
        # 36 prompts held out to evaluate (one pair each), whose verdicts would train nothing.
        assert len(project.store.heldout_prompt_ids()) == 36
        assert project.store.unlabelled_pair_count() == len(pairs) - 36
        sources = project.store.conn.execute("SELECT DISTINCT source FROM responses").fetchall()
        assert sources == [("demo",)]
        # The stored verdicts follow the rules, read back from the database.
        for pair_id in project.store.pair_ids():
            stored = project.store.pair(pair_id)
            (message,) = stored.prompt
            for annotator, verdict in stored.judgments:
                assert annotator == DEMO_ANNOTATOR
                assert verdict == rule_verdict(message.content, stored.response_a, stored.response_b)


def test_demo_twice_in_different_folders_is_identical(tmp_path):
    with create_demo_project(tmp_path / "one") as one, create_demo_project(tmp_path / "two") as two:
        assert _content(one) == _content(two)
        with create_demo_project(tmp_path / "three", seed=3) as three:
            assert _content(three)["pairs"] != _content(one)["pairs"]


def test_demo_refuses_an_existing_project(tmp_path):
    create_demo_project(tmp_path / "demo").close()
    with pytest.raises(ProjectError):
        create_demo_project(tmp_path / "demo")
    with Project.open(tmp_path / "demo") as project:
        assert project.store.counts()["pairs"] == 3 * DEMO_PAIRS_PER_RULE


def test_failed_demo_leaves_no_project(tmp_path, monkeypatch):
    def broken(seed=0):
        raise RuntimeError("boom")

    monkeypatch.setattr(demo, "demo_pairs", broken)
    with pytest.raises(RuntimeError):
        create_demo_project(tmp_path / "demo")
    assert not Project.is_project(tmp_path / "demo")


def test_needs_no_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the demo tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    create_demo_project(tmp_path / "demo").close()
