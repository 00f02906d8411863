"""Labelling: the queues of pairs to judge and the labelling session (agreement statistics are
agreement.py's).

The GUI's Label tab is a thin face on `LabelSession`; the CLI and tests drive the same object.
Every SQL statement is in core/store/labeling.py; this module decides what the queues *mean*.

Words used throughout
---------------------
- A *person* is an annotator whose name does not start with `dataset:`; `dataset:*` annotators
  are labels that came with imported data.
- A *verdict* is an active (not undone) judgment other than a skip. A skip is recorded (it is
  history, and it moves the pair out of the way) but says nothing about the pair: it never makes
  a pair labelled, never counts as a label, and never enters agreement.
- The *settled* verdict of several judgments is `store.settle_verdict`'s (strict majority, skips
  ignored), the same rule the exports use. A pair's *dataset label* is the settled verdict of its
  `dataset:*` judgments; *people's verdict* is the settled verdict of its people's judgments.

The queues (walked in pair-id order unless said otherwise)
---------------------------------------------------------
- "unlabelled": pairs no person has judged (`human_verdicts = 0`, an index look-up).
- "generated": pairs that Generate… sampled from a local model (origin `generated:<model>`,
  core/generate.py) that I have not judged; the origin that got pairs most recently first, an
  origin's pairs in id order. In "unlabelled" they would wait behind every imported pair.
- "others_not_me": pairs with another person's verdict and none of mine, to build overlap for
  agreement.
- "disagreement": pairs whose dataset label and people's verdict both exist and differ, and
  that I have not judged.
- "policy_vs_reference": pairs that "Compare with reference" made for a policy run (origin
  `ppo-vs-ref:<run id>`, A the policy's response, B the reference's; shown on random sides like
  any pair), and that "Compare two policies" made (origin `policies:<a> vs <b>`), that I have not
  judged; the newest run's pairs first, a run's pairs in id order. In
  "unlabelled" they would wait behind every older pair.
- "least_sure": active learning. Pairs a reward model has scored (`pair_scores`: p, its
  probability that A is better) that I have not judged, the ones it is least sure of first:
  |p - 0.5| ascending, then id. The scores followed are those of `store.least_sure_run()` (the
  newest finished run with scores); none scored yet, the queue is empty. core/reward/pair_scores.py
  writes them.

Pairs whose prompt is held out (core/store/evaluations.py: no run trains on it) are in the
"unlabelled" and "least_sure" queues no more (nor scored for the latter), and Generate… answers no
held-out prompt: a verdict there would train nothing. Comparisons of policies are made on held-out prompts on purpose, and
their queue ("policy_vs_reference") offers them.

A session walks a queue in two passes. The first offers the pairs with no judgment of mine (for
"unlabelled": no judgment by any person); a skip records a skip judgment, which takes the pair
out of the first pass, so a skipped pair never comes straight back. When the first pass reaches
the queue's end it looks again from the start, for pairs that entered the queue behind the cursor
(another person's undo, say, or a pair passed over with `next()`). Once the first pass is empty,
the second pass offers, once, in the queue's order, the pairs that were only skipped
(for "unlabelled": pairs people have only skipped; otherwise: pairs I only skipped), except the
pair skipped a moment ago, which would otherwise come straight back when the first pass ends on
it. When that pass reaches its end, `next()` returns None until `set_queue()` starts again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .agreement import is_person
from .errors import WorkbenchError
from .records import DATASET_ANNOTATOR_PREFIX, ExportPair
from .store import VERDICT_WAIT_S, Store, settle_verdict

QUEUES: tuple[str, ...] = (  # menu order
    "unlabelled", "generated", "others_not_me", "disagreement", "policy_vs_reference", "least_sure",
)
QUEUE_TITLES: dict[str, str] = {
    "unlabelled": "Unlabelled pairs first",
    "generated": "Generated responses, newest first",
    "others_not_me": "Labelled by others, not by me",
    "disagreement": "Dataset label and people disagree",
    "policy_vs_reference": "Policies compared (with reference or each other)",
    "least_sure": "Reward model least sure",
}
# What a labeller can say, in screen terms; `verdict_for` turns sides into the stored a/b.
CHOICES: tuple[str, ...] = ("left", "right", "tie", "both_bad", "skip")

_FIRST_PASS, _SECOND_PASS, _DONE = 0, 1, 2
_DISAGREEMENT_BATCH = 256


def verdict_for(choice: str, shown_left: str) -> str:
    """The stored verdict for a choice made on screen: verdicts name the pair's response A or B,
    never a side, so that the random side a response was shown on does not leak into the data."""
    if shown_left not in ("a", "b"):
        raise WorkbenchError(f"shown_left must be 'a' or 'b', not {shown_left!r}")
    if choice == "left":
        return shown_left
    if choice == "right":
        return "b" if shown_left == "a" else "a"
    if choice in CHOICES:
        return choice
    raise WorkbenchError(f"choice must be one of {', '.join(CHOICES)}, not {choice!r}")


def dataset_label(judgments: Iterable[tuple[str, str]]) -> str | None:
    """The settled verdict of a pair's `dataset:*` judgments (None: none, or they conflict)."""
    return settle_verdict([(a, v) for a, v in judgments if not is_person(a)])[0]


def people_verdict(judgments: Iterable[tuple[str, str]]) -> str | None:
    """The settled verdict of a pair's people's judgments (None: none, or no majority)."""
    return settle_verdict([(a, v) for a, v in judgments if is_person(a)])[0]


def in_disagreement(judgments: Iterable[tuple[str, str]]) -> bool:
    """Whether the data's label and people's verdict both exist and differ. People split among
    themselves, with no majority, are not a disagreement with the data: there is nothing to
    compare the label to."""
    judgments = list(judgments)
    label, people = dataset_label(judgments), people_verdict(judgments)
    return label is not None and people is not None and label != people


@dataclass
class CurrentPair:
    """The pair on screen and how it is shown."""

    pair_id: int
    pair: ExportPair
    shown_left: str  # 'a' or 'b': which stored response is on the left
    shown_at: float  # the session clock (time.monotonic by default) when it was shown
    second_pass: bool = False  # offered again after a skip

    @property
    def left(self) -> str:
        return self.pair.response_a if self.shown_left == "a" else self.pair.response_b

    @property
    def right(self) -> str:
        return self.pair.response_b if self.shown_left == "a" else self.pair.response_a


@dataclass
class QueueProgress:
    labelled_by_me: int  # pairs with an active verdict (not a skip) by this annotator, whole project
    remaining: int  # pairs the queue can still offer this annotator, skipped ones included
    total: int  # pairs in the project
    overlap_percent: float | None = None  # others_not_me only: % of pairs with others' verdicts I also judged


@dataclass
class _Done:
    judgment_id: int
    verdict: str
    shown: CurrentPair


class LabelSession:
    """One annotator labelling one queue; the GUI's back end. Holds the undo history of this session.

    A new session shows nothing until its first `next()`; `set_queue()` shows the new queue's
    first pair at once. Each verdict is committed before `judge()` returns (DESIGN: a verdict is
    committed before the next pair is shown). `clock` is for tests; it must be monotonic.
    """

    def __init__(
        self,
        store: Store,
        annotator: str,
        queue: str = "unlabelled",
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        annotator = annotator.strip()
        if not annotator:
            raise WorkbenchError("an annotator name is needed to label pairs")
        if not is_person(annotator):
            raise WorkbenchError(
                f"annotator names starting with {DATASET_ANNOTATOR_PREFIX!r} are reserved for labels "
                f"that came with data; choose another name than {annotator!r}"
            )
        self.store = store
        self.annotator = annotator
        self.rng = rng if rng is not None else random.Random()
        self.clock = clock
        self.current: CurrentPair | None = None
        self._history: list[_Done] = []  # this session's verdicts that are still active
        self._pushed_back: list[CurrentPair] = []  # pairs an undo took off the screen
        self._started_at: float | None = None  # when the first pair was shown
        self._last_verdict_at: float | None = None
        self._reset(queue)

    # -- walking the queue -------------------------------------------------------------------

    def set_queue(self, queue: str) -> None:
        """Switch queue (or restart this one) and show its first pair (`current`; None if it is
        empty). The walk starts again from the queue's start, both passes; the undo history is kept,
        so a verdict given in the previous queue can still be undone."""
        self._reset(queue)
        self.next()

    def _reset(self, queue: str) -> None:
        if queue not in QUEUES:
            raise WorkbenchError(f"queue must be one of {', '.join(QUEUES)}, not {queue!r}")
        self.queue = queue
        # Where the walk is: None before the first pair, else the last pair's place in the
        # queue's order (its id, or the sort key the store's look-up returned with it).
        self._pass, self._after = _FIRST_PASS, None
        self._just_skipped: int | None = None  # a deliberate restart offers everything again
        self._pushed_back.clear()
        self.current = None

    def next(self) -> CurrentPair | None:
        """Show the next pair of the queue, without recording anything about the current one (a
        pair passed over this way stays in the queue and comes back when the walk wraps)."""
        if self._pushed_back:
            # Back to where the labeller was before undoing: the pair an undo displaced.
            self.current = self._show(self._pushed_back.pop())
            return self.current
        pair_id = self._find()
        self.current = None if pair_id is None else self._show(pair_id, second_pass=self._pass == _SECOND_PASS)
        return self.current

    def _find(self) -> int | None:
        if self._pass == _FIRST_PASS:
            found = self._lookup(self._after, second_pass=False)
            if found is None and self._after is not None:
                found = self._lookup(None, second_pass=False)  # pairs that entered behind the cursor
            if found is not None:
                self._after = found[1]
                return found[0]
            self._pass, self._after = _SECOND_PASS, None
        if self._pass == _SECOND_PASS:
            found = self._lookup(self._after, second_pass=True)
            if found is not None and found[0] == self._just_skipped:
                found = self._lookup(found[1], second_pass=True)  # never straight back
            if found is not None:
                self._after = found[1]
                return found[0]
            self._pass = _DONE
        return None

    def _lookup(self, after, *, second_pass: bool) -> tuple[int, object] | None:
        """(pair id, its place) of the queue's next pair after place `after` (None: from the start)."""
        store, me = self.store, self.annotator
        if self.queue == "policy_vs_reference":
            return store.next_policy_vs_reference_pair(me, after, skipped_by_me=second_pass)
        if self.queue == "generated":
            return store.next_generated_pair(me, after, skipped_by_me=second_pass)
        if self.queue == "least_sure":
            run_id = store.least_sure_run()
            if run_id is None:
                return None
            return store.next_least_sure_pair(me, run_id, after, skipped_by_me=second_pass)
        pair_id = self._lookup_by_id(after or 0, second_pass=second_pass)
        return None if pair_id is None else (pair_id, pair_id)

    def _lookup_by_id(self, after_id: int, *, second_pass: bool) -> int | None:
        store, me = self.store, self.annotator
        if self.queue == "unlabelled":
            return store.next_skipped_only_pair_id(after_id) if second_pass else store.next_unlabelled_pair_id(after_id)
        if self.queue == "others_not_me":
            return store.next_pair_judged_by_others(me, after_id, skipped_by_me=second_pass)
        while True:  # disagreement: SQL narrows to candidates, the settling rule decides
            batch = store.disagreement_candidates(me, after_id, skipped_by_me=second_pass, limit=_DISAGREEMENT_BATCH)
            for pair_id, judgments in batch:
                if in_disagreement(judgments):
                    return pair_id
            if len(batch) < _DISAGREEMENT_BATCH:
                return None
            after_id = batch[-1][0]

    def _show(self, item: int | CurrentPair, *, second_pass: bool = False) -> CurrentPair:
        now = self.clock()
        if self._started_at is None:
            self._started_at = now
        if isinstance(item, CurrentPair):  # shown again: same side as before, time counted afresh
            item.shown_at = now
            item.pair = self.store.pair(item.pair_id) or item.pair
            return item
        pair = self.store.pair(item)
        if pair is None:
            raise WorkbenchError(f"pair {item} is not in this project")
        return CurrentPair(item, pair, self.rng.choice("ab"), now, second_pass)

    # -- verdicts ------------------------------------------------------------------------------

    def judge(
        self,
        choice: str,
        *,
        rationale: str | None = None,
        wait_s: float = VERDICT_WAIT_S,
        decided_at: float | None = None,
    ) -> int:
        """Record the labeller's choice for the current pair, committed before this returns, then
        move to the next pair. Returns the judgment's id.

        While another program holds the database it waits up to `wait_s`, then raises
        DatabaseBusy with nothing recorded and the same pair current: the app tries again with a
        short `wait_s` and the `decided_at` (self.clock()) of its first try, so the seconds spent
        are the person's, not the wait's."""
        shown = self.current
        if shown is None:
            raise WorkbenchError("there is no pair to judge: the queue is empty")
        verdict = verdict_for(choice, shown.shown_left)
        now = self.clock() if decided_at is None else decided_at
        judgment_id = self.store.add_judgment(
            shown.pair_id,
            self.annotator,
            verdict,
            shown_left=shown.shown_left,
            rationale=(rationale or "").strip() or None,
            seconds=max(now - shown.shown_at, 0.0),
            wait_s=wait_s,
        )
        self._history.append(_Done(judgment_id, verdict, shown))
        self._last_verdict_at = now
        self._just_skipped = shown.pair_id if verdict == "skip" else None
        self.next()
        return judgment_id

    def undo(self) -> CurrentPair | None:
        """Mark this session's last active verdict undone and show its pair again, on the same
        side. Repeatable back to the session's first verdict; None when there is nothing to undo.
        The pair that was on screen comes back right after the undone pair is judged again."""
        if not self._history:
            return None
        done = self._history.pop()
        self.store.undo_judgment(done.judgment_id)
        if self.current is not None:
            self._pushed_back.append(self.current)
        self.current = self._show(done.shown)
        return self.current

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    # -- figures -------------------------------------------------------------------------------

    def progress(self) -> QueueProgress:
        return queue_progress(self.store, self.annotator, self.queue)

    def labels_per_hour(self) -> float | None:
        """This session's active verdicts (skips are not labels) per hour, from the moment its
        first pair was shown to its latest verdict: a pause after a verdict does not drag the
        figure down while nobody is labelling. None before the first verdict."""
        labels = sum(1 for done in self._history if done.verdict != "skip")
        if not labels or self._started_at is None or self._last_verdict_at is None:
            return None
        hours = (self._last_verdict_at - self._started_at) / 3600.0
        return labels / hours if hours > 0 else None


def queue_progress(store: Store, annotator: str, queue: str) -> QueueProgress:
    """Where `annotator` stands in `queue`. Counts over the whole project (tens of ms at 100,000
    pairs): the GUI runs it on a worker with its own connection, never between two pairs."""
    overlap = None
    if queue == "unlabelled":
        remaining = store.unlabelled_pair_count() + store.skipped_only_pair_count()
    elif queue == "others_not_me":
        by_others, also_mine = store.overlap_with_others(annotator)
        remaining = by_others - also_mine
        overlap = 100.0 * also_mine / by_others if by_others else None
    elif queue == "policy_vs_reference":
        remaining = store.policy_vs_reference_left(annotator)
    elif queue == "generated":
        remaining = store.generated_left(annotator)
    elif queue == "least_sure":
        run_id = store.least_sure_run()
        remaining = store.least_sure_left(annotator, run_id) if run_id is not None else 0
    else:
        candidates = store.disagreement_candidates(annotator, skipped_by_me=None)  # both passes
        remaining = sum(in_disagreement(judgments) for _, judgments in candidates)
    return QueueProgress(store.labelled_pair_count(annotator), remaining, store.pair_count(), overlap)
