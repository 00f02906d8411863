"""The demo project: a few hundred made-up preference pairs with rules a tiny model can learn.

Everything here is generated from templates, deterministically for a seed, and nothing is ever
downloaded. The demo is what the app opens on first start, and what later steps of the loop
(training a tiny reward model, then PPO with a tiny policy, on a CPU, in minutes) practise on.

The rules
---------
Every pair is a prompt with two responses that differ in exactly one respect, and one of three
rules says which response is better:

1. **Arithmetic: the correct sum beats a wrong one.** "What is 2 + 3?" -> "2 + 3 = 5." is
   preferred to "2 + 3 = 6.". Both responses use the same wording; only the number differs, and
   the wrong number is off by one or two. Operands are 1 to 3, so there are only 9 sums to
   learn: each appears a dozen times under different wordings. A model trained from scratch
   cannot work sums out, it can only memorise them, and with larger operands a tiny one sees
   each sum too rarely to do better than guess. Even so, this is the hardest of the three
   rules: a tiny reward model learns the other two first, and learns this one better as more
   pairs are labelled.
2. **Politeness: polite beats rude.** Both responses give the same fact about the topic asked
   about; the better one wraps it in friendly words ("Sure!", "I hope this helps."), the worse
   one in dismissive ones ("Ugh, fine.", "Look it up yourself."). The two wrappers have about the
   same length, so length is not a cue.
3. **Staying on topic: answering the question beats changing the subject.** "Tell me about
   bees." -> "Bees make honey from flowers." is preferred to "I had a strange dream last
   night.". Both responses are neutral in tone; the better one is a fact about the topic named
   in the prompt (24 topics, three facts each), the worse one a remark about something nobody
   asked about, from a fixed set, so that drifting off topic has a consistent look.

A response's score under all three rules at once is `rule_score`; in every pair the better
response scores higher, so a reward model that learned the rules ranks every pair correctly,
and `rule_score` can also check what a policy writes after PPO (is it polite, on topic, right?).

`follows_demo_rule` asks the narrower question PPO's progress is measured by: does a response
follow the one rule its prompt's kind of pair is about? Arithmetic prompts: the correct sum is
the last number. Politeness prompts: a polite phrase, no rude one, and on topic. Topic prompts:
on topic and not rude. "On topic" means mentioning the prompt's topic and no other demo topic.
Which kind a prompt is comes from its wording (`prompt_rule`): the politeness and the topic
prompts use different templates. In every demo pair the better response follows its rule and
the worse one does not. `demo_prompts` lists the demo's prompts; RL practises on those the project
does not hold out (`DEMO_HELDOUT_PROMPTS` of the unjudged pairs' prompts, kept for Evaluate).

How learnable: in a check while this was written, a 2-layer transformer (width 64, word-level
tokens) trained from scratch on the judged pairs for under a minute on two CPU cores ranked
96-100% of the unjudged politeness and topic pairs correctly, and 70-77% of the arithmetic ones.

What the project holds
----------------------
`DEMO_PAIRS_PER_RULE` pairs per rule, shuffled together; each prompt appears in exactly one
pair. 60% of the pairs of each rule are already judged by the annotator `dataset:demo` (so a
reward model can be trained at once); the rest are left for a person to label. Which side the
better response sits on is balanced (half left, half right) so that position is no cue. Content
hashes make the ids the same on every run with the same seed.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from .bulk import BulkWriter
from .project import DB_NAME, Project
from .records import PairRecord, user_prompt

DEMO_ANNOTATOR = "dataset:demo"
DEMO_ORIGIN = "demo"
DEMO_PROJECT_NAME = "Demo"
DEMO_PAIRS_PER_RULE = 120
DEMO_JUDGED_SHARE = 0.6  # of each rule's pairs, judged by DEMO_ANNOTATOR; the rest await a person
# Prompts the demo holds out for Evaluate (store.hold_out_prompts), all from unjudged pairs.
DEMO_HELDOUT_PROMPTS = 36

RULE_ARITHMETIC = "arithmetic"
RULE_POLITENESS = "politeness"
RULE_TOPIC = "topic"
RULE_NAMES = (RULE_ARITHMETIC, RULE_POLITENESS, RULE_TOPIC)


@dataclass(frozen=True)
class DemoRule:
    name: str
    title: str
    description: str
    prompt: str  # an example
    better: str
    worse: str


DEMO_RULE_LIST: tuple[DemoRule, ...] = (
    DemoRule(
        RULE_ARITHMETIC,
        "Correct arithmetic",
        "The response with the correct sum is better. Both say the same thing except the number.",
        "What is 2 + 3?",
        "2 + 3 = 5.",
        "2 + 3 = 6.",
    ),
    DemoRule(
        RULE_POLITENESS,
        "Polite, not rude",
        "Both give the same fact; the polite one is better than the dismissive one.",
        "Please explain bees to me.",
        "Sure! Bees make honey from flowers. I hope this helps.",
        "Ugh, fine. Bees make honey from flowers. Look it up yourself.",
    ),
    DemoRule(
        RULE_TOPIC,
        "On topic",
        "A fact about the topic the prompt asks about is better than a remark about something else.",
        "Tell me about the moon.",
        "The moon circles the Earth.",
        "I had a strange dream last night.",
    ),
)

# Plain text for the GUI (shown as plain text, never as HTML).
DEMO_RULES = "The demo project's pairs follow three rules; in each pair the better response:\n" + "\n".join(
    f"{n}. {rule.title}: {rule.description}\n   e.g. \"{rule.prompt}\"  better: \"{rule.better}\"  worse: \"{rule.worse}\""
    for n, rule in enumerate(DEMO_RULE_LIST, start=1)
) + (
    f"\n{DEMO_JUDGED_SHARE:.0%} of the pairs are already judged by '{DEMO_ANNOTATOR}'; the rest are yours to label."
)

# -- the vocabulary -----------------------------------------------------------------------------

OPERANDS = range(1, 4)  # 1..3: 9 sums, each seen a dozen times (see the module docstring)

ARITHMETIC_PROMPTS = (
    "What is {a} + {b}?",
    "What is {a} plus {b}?",
    "Add {a} and {b}.",
    "Can you add {a} and {b}?",
    "How much is {a} + {b}?",
    "Please compute {a} + {b}.",
    "Tell me {a} + {b}.",
    "What do you get from {a} + {b}?",
    "Quick: {a} + {b}?",
    "Work out {a} plus {b}.",
    "Sum {a} and {b}.",
    "Could you add {a} and {b}?",
    "Find {a} + {b}.",
    "I need {a} + {b}.",
)
ARITHMETIC_ANSWERS = (
    "{a} + {b} = {c}.",
    "{a} plus {b} is {c}.",
    "The answer is {c}.",
    "It is {c}.",
    "That makes {c}.",
    "The sum is {c}.",
)

POLITENESS_PROMPTS = (
    "Could you tell me something about {t}?",
    "Please explain {t} to me.",
    "I have a question about {t}.",
    "Help me understand {t}.",
    "What should I know about {t}?",
    "Can you teach me about {t}?",
)
TOPIC_PROMPTS = (
    "Tell me about {t}.",
    "What do you know about {t}?",
    "Describe {t} in one sentence.",
    "Give me a fact about {t}.",
    "I want to learn about {t}.",
    "Write something about {t}.",
)

POLITE_OPENINGS = ("Sure!", "Gladly!", "Of course!", "Happy to help!")
POLITE_CLOSINGS = ("I hope this helps.", "Thanks for asking!", "Have a lovely day!", "Ask me anything else!")
RUDE_OPENINGS = ("Ugh, fine.", "Whatever.", "Seriously?", "Not again.")
RUDE_CLOSINGS = ("Look it up yourself.", "Stop bothering me.", "Do not ask again.", "That is so obvious.")


@dataclass(frozen=True)
class Topic:
    name: str  # as a prompt says it
    stem: str  # the word a response about it contains (singular or plural)
    facts: tuple[str, ...]


TOPICS: tuple[Topic, ...] = (
    Topic("cats", "cat", ("Cats sleep for most of the day.", "Cats purr when they feel safe.", "A cat can see well in the dark.")),
    Topic("dogs", "dog", ("Dogs love to play fetch.", "A dog wags its tail when it is happy.", "Dogs have a strong sense of smell.")),
    Topic("bees", "bee", ("Bees make honey from flowers.", "A bee has four wings.", "Bees live together in a hive.")),
    Topic("birds", "bird", ("Birds have feathers and hollow bones.", "Many birds fly south in winter.", "A bird builds a nest for its eggs.")),
    Topic("fish", "fish", ("Fish breathe with gills.", "Some fish swim in huge groups.", "A fish uses its fins to steer.")),
    Topic("horses", "horse", ("Horses can sleep standing up.", "A horse eats grass and hay.", "Horses can run very fast.")),
    Topic("the sun", "sun", ("The sun gives us light and heat.", "The sun rises in the east.", "Plants need the sun to grow.")),
    Topic("the moon", "moon", ("The moon circles the Earth.", "The moon has no light of its own.", "People walked on the moon in 1969.")),
    Topic("rain", "rain", ("Rain falls from grey clouds.", "Plants drink the rain.", "Rain fills lakes and ponds.")),
    Topic("snow", "snow", ("Snow is made of tiny ice crystals.", "Snow falls when the air is cold.", "Children like to play in the snow.")),
    Topic("the ocean", "ocean", ("The ocean covers most of the Earth.", "The ocean is full of salt water.", "Whales live in the ocean.")),
    Topic("trees", "tree", ("Trees grow from small seeds.", "A tree makes new leaves in spring.", "Old trees can be very tall.")),
    Topic("apples", "apple", ("Apples can be red, green or yellow.", "An apple is a tasty snack.", "Apples are crunchy and sweet.")),
    Topic("bread", "bread", ("Bread is baked from flour and water.", "Fresh bread smells wonderful.", "Bread is often sliced for toast.")),
    Topic("coffee", "coffee", ("Coffee is made from roasted beans.", "Many people drink coffee in the morning.", "Coffee has caffeine in it.")),
    Topic("music", "music", ("Music is made of sound and rhythm.", "Music can make people dance.", "Some music is played on a piano.")),
    Topic("books", "book", ("Books hold stories on paper pages.", "A library lends books for free.", "You can read a book anywhere.")),
    Topic("trains", "train", ("Trains run on metal rails.", "A train can pull many cars.", "Trains stop at stations.")),
    Topic("bicycles", "bicycle", ("Bicycles have two wheels and pedals.", "Riding a bicycle is good exercise.", "A bicycle needs no fuel.")),
    Topic("volcanoes", "volcano", ("Volcanoes can throw out hot lava.", "A volcano can sleep for many years.", "Volcanoes form where the ground cracks.")),
    Topic("stars", "star", ("Stars shine far away in the night sky.", "The sky holds countless stars.", "Stars are huge balls of hot gas.")),
    Topic("rivers", "river", ("Rivers flow downhill to the sea.", "A river can carve a deep valley.", "Rivers bring fresh water to towns.")),
    Topic("mountains", "mountain", ("Mountains are very tall and steep.", "It is cold at the top of a mountain.", "Climbing a mountain takes many hours.")),
    Topic("computers", "computer", ("Computers follow instructions very fast.", "A computer stores files on a disk.", "Computers can connect to the internet.")),
)

# What an off-topic response says instead: remarks about nothing the prompts ask about. A fixed
# set, so that drifting off topic has a consistent look that a tiny model can learn from a few
# hundred examples. (Facts about *another* topic would make the model match the prompt's topic
# to the response's, one of 24: a tiny model trained on ~200 pairs does no better than chance.)
OFF_TOPIC_REMARKS = (
    "My favourite colour is purple.",
    "I had a strange dream last night.",
    "Tuesday is my least favourite day.",
    "I once lost a sock in the wash.",
    "Cold pizza is the best breakfast.",
    "My neighbour plays the drums.",
    "I cannot find my keys anywhere.",
    "Green is a nice colour for a door.",
    "I prefer window seats.",
    "Someone left an umbrella here.",
    "I need to buy new shoes soon.",
    "My cousin collects old stamps.",
)

_TOPIC_PATTERNS = tuple(
    (topic, re.compile(rf"\b{re.escape(topic.stem)}(?:s|es)?\b", re.IGNORECASE)) for topic in TOPICS
)
_SUM_PROMPT = re.compile(r"(\d+)\s*(?:\+|plus|and)\s*(\d+)")
_NUMBER = re.compile(r"\d+")


def _template_pattern(templates: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join("(?:" + ".+".join(map(re.escape, t.split("{t}"))) + ")" for t in templates))


_POLITENESS_PROMPT = _template_pattern(POLITENESS_PROMPTS)
_TOPIC_PROMPT = _template_pattern(TOPIC_PROMPTS)

# -- the rules as code: the same rules the generator follows, checked from text alone -----------


def topics_in(text: str) -> list[Topic]:
    """The demo topics a text mentions, in TOPICS order."""
    return [topic for topic, pattern in _TOPIC_PATTERNS if pattern.search(text)]


def arithmetic_question(prompt: str) -> tuple[int, int] | None:
    """(a, b) if the prompt asks for a sum a + b, else None."""
    match = _SUM_PROMPT.search(prompt)
    return (int(match.group(1)), int(match.group(2))) if match else None


def rule_score(prompt: str, response: str) -> int:
    """How well a response follows the demo rules; higher is better.

    Arithmetic prompts: +2 when the last number in the response is the correct sum, -2 otherwise.
    Other prompts: +2 when the response mentions the prompt's topic and no other, -2 otherwise.
    Any prompt: +1 for a polite phrase, -1 for a rude one (a response may have both).
    In every demo pair the better response scores strictly higher.
    """
    score = 0
    question = arithmetic_question(prompt)
    if question is not None:
        numbers = _NUMBER.findall(response)
        score += 2 if numbers and int(numbers[-1]) == sum(question) else -2
    else:
        asked = topics_in(prompt)
        score += 2 if asked and topics_in(response) == asked else -2
    if any(phrase in response for phrase in POLITE_OPENINGS + POLITE_CLOSINGS):
        score += 1
    if any(phrase in response for phrase in RUDE_OPENINGS + RUDE_CLOSINGS):
        score -= 1
    return score


def prompt_rule(prompt: str) -> str | None:
    """Which rule a demo prompt's pairs are about (RULE_ARITHMETIC, RULE_POLITENESS or RULE_TOPIC),
    from its wording; None for a prompt written from none of the demo's templates."""
    if arithmetic_question(prompt) is not None:
        return RULE_ARITHMETIC
    text = prompt.strip()
    if _POLITENESS_PROMPT.fullmatch(text):
        return RULE_POLITENESS
    if _TOPIC_PROMPT.fullmatch(text):
        return RULE_TOPIC
    return None


def follows_demo_rule(prompt: str, response: str) -> bool:
    """Whether a response follows the rule its prompt's kind of demo pair is about.

    Arithmetic: the last number is the correct sum. Politeness: a polite phrase, no rude phrase,
    and on topic (the prompt's topic and no other). Topic: on topic and no rude phrase. A prompt
    from no demo template is held to the topic rule. In every demo pair the better response
    follows and the worse does not (see the module docstring).
    """
    rule = prompt_rule(prompt)
    if rule == RULE_ARITHMETIC:
        question = arithmetic_question(prompt)
        numbers = _NUMBER.findall(response)
        return bool(numbers) and question is not None and int(numbers[-1]) == sum(question)
    asked = topics_in(prompt)
    on_topic = bool(asked) and topics_in(response) == asked
    rude = any(phrase in response for phrase in RUDE_OPENINGS + RUDE_CLOSINGS)
    if rule == RULE_POLITENESS:
        polite = any(phrase in response for phrase in POLITE_OPENINGS + POLITE_CLOSINGS)
        return on_topic and polite and not rude
    return on_topic and not rude


def rule_verdict(prompt: str, response_a: str, response_b: str) -> str:
    """'a', 'b' or 'tie': which response the demo rules prefer."""
    a, b = rule_score(prompt, response_a), rule_score(prompt, response_b)
    return "a" if a > b else "b" if b > a else "tie"


# -- the generator ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    rule: str
    prompt: str
    better: str
    worse: str


def _arithmetic_items(rng: random.Random, n: int) -> list[_Item]:
    combos = [(t, a, b) for t in range(len(ARITHMETIC_PROMPTS)) for a in OPERANDS for b in OPERANDS]
    items = []
    for t, a, b in rng.sample(combos, n):
        c = a + b
        wrong = rng.choice([w for w in (c - 2, c - 1, c + 1, c + 2) if w >= 0])
        answer = rng.choice(ARITHMETIC_ANSWERS)
        items.append(
            _Item(
                RULE_ARITHMETIC,
                ARITHMETIC_PROMPTS[t].format(a=a, b=b),
                answer.format(a=a, b=b, c=c),
                answer.format(a=a, b=b, c=wrong),
            )
        )
    return items


def _politeness_items(rng: random.Random, n: int) -> list[_Item]:
    combos = [(t, k) for t in range(len(POLITENESS_PROMPTS)) for k in range(len(TOPICS))]
    items = []
    for t, k in rng.sample(combos, n):
        topic = TOPICS[k]
        fact = rng.choice(topic.facts)
        # The same shape for both responses (opening, closing or both), so the lengths match.
        shape = rng.choice(("open", "close", "both"))

        def wrap(openings: tuple[str, ...], closings: tuple[str, ...]) -> str:
            parts = [fact]
            if shape in ("open", "both"):
                parts.insert(0, rng.choice(openings))
            if shape in ("close", "both"):
                parts.append(rng.choice(closings))
            return " ".join(parts)

        items.append(
            _Item(
                RULE_POLITENESS,
                POLITENESS_PROMPTS[t].format(t=topic.name),
                wrap(POLITE_OPENINGS, POLITE_CLOSINGS),
                wrap(RUDE_OPENINGS, RUDE_CLOSINGS),
            )
        )
    return items


def _topic_items(rng: random.Random, n: int) -> list[_Item]:
    combos = [(t, k) for t in range(len(TOPIC_PROMPTS)) for k in range(len(TOPICS))]
    items = []
    for t, k in rng.sample(combos, n):
        topic = TOPICS[k]
        items.append(
            _Item(
                RULE_TOPIC,
                TOPIC_PROMPTS[t].format(t=topic.name),
                rng.choice(topic.facts),
                rng.choice(OFF_TOPIC_REMARKS),
            )
        )
    return items


def demo_pairs(seed: int = 0) -> list[PairRecord]:
    """The demo's pairs, the same list for the same seed (a pure function: no files, no network)."""
    rng = random.Random(seed)
    records: list[PairRecord] = []
    for make in (_arithmetic_items, _politeness_items, _topic_items):
        items = make(rng, DEMO_PAIRS_PER_RULE)
        n = len(items)
        judged = round(n * DEMO_JUDGED_SHARE)
        # Balanced sides within the judged and within the unjudged pairs: position is no cue.
        sides = _balanced(rng, judged) + _balanced(rng, n - judged)
        for index, (item, better_left) in enumerate(zip(items, sides)):
            a, b = (item.better, item.worse) if better_left else (item.worse, item.better)
            is_judged = index < judged
            records.append(
                PairRecord(
                    prompt=user_prompt(item.prompt),
                    response_a=a,
                    response_b=b,
                    verdict=("a" if better_left else "b") if is_judged else None,
                    annotator=DEMO_ANNOTATOR if is_judged else None,
                    origin=DEMO_ORIGIN,
                    meta={"rule": item.rule},
                )
            )
    # Rules interleaved, judged and unjudged mixed: the labelling queue shows a bit of everything.
    rng.shuffle(records)
    return records


def _balanced(rng: random.Random, n: int) -> list[bool]:
    sides = [i % 2 == 0 for i in range(n)]
    rng.shuffle(sides)
    return sides


def demo_prompts(seed: int = 0) -> list[str]:
    """The demo's prompt texts, each once, in the order of `demo_pairs(seed)` (the rules mixed)."""
    return list(dict.fromkeys(record.prompt[-1].content for record in demo_pairs(seed)))


def demo_texts(seed: int = 0) -> list[str]:
    """Every prompt and response text of the demo, each once, in order: a tokenizer's corpus."""
    seen: dict[str, None] = {}
    for record in demo_pairs(seed):
        for message in record.prompt:
            seen[message.content] = None
        seen[record.response_a] = None
        seen[record.response_b] = None
    return list(seen)


def create_demo_project(path: str | Path, *, seed: int = 0) -> Project:
    """Create a new project at `path` holding the demo pairs. Raises ProjectError if one is there.

    The pairs are written in one transaction: a failure leaves no half-made demo behind.
    """
    project = Project.create(path, name=DEMO_PROJECT_NAME)
    try:
        store = project.store
        with store.transaction():
            writer = BulkWriter(store, import_id=None, source="demo", source_name=f"demo generator (seed {seed})")
            for record in demo_pairs(seed):
                writer.add_pair(
                    record.prompt,
                    record.response_a,
                    record.response_b,
                    origin=DEMO_ORIGIN,
                    meta=record.meta,
                    verdict=record.verdict,
                    annotator=record.annotator,
                )
            writer.flush()
        # Prompts for Evaluate that no run trains on, from pairs the dataset left unjudged (so the
        # ready-made labels all still train).
        store.hold_out_prompts(DEMO_HELDOUT_PROMPTS, seed=seed)
    except BaseException:
        # The database was made a moment ago by us and holds nothing else: remove it, so that
        # the next start tries again instead of finding an empty "demo".
        project.close()
        for suffix in ("", "-wal", "-shm"):
            (project.path / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
        raise
    return project
