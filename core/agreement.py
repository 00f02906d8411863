"""Agreement and quality: how each annotator labels, and how far annotators agree.

Core computes, the GUI's Agreement page only lays the numbers out. Everything is computed on
active judgments (undone ones are history, not opinion), in two statements: per-annotator
figures summed by SQL, and one pass in Python over the verdicts for agreement.

- Skips are no opinion: they count in an annotator's `count` and `skip_rate`, and nowhere else.
- A person who judged a pair twice (two sessions, no undo) counts with the latest verdict.
- Pairwise agreement and Krippendorff's alpha are among people only; `with_dataset` compares
  each person with the pair's dataset label, the settled verdict of its `dataset:*` judgments
  (store.settle_verdict: strict majority, so conflicting dataset labels give none).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .records import DATASET_ANNOTATOR_PREFIX
from .stats import wilson_interval
from .store import Store, settle_verdict


def is_person(annotator: str) -> bool:
    """Not a label that came with data; decided as the schema's triggers do (SQLite's LIKE
    ignores ASCII case), so that statistics and pairs.human_verdicts agree on who is a person."""
    return annotator[: len(DATASET_ANNOTATOR_PREFIX)].lower() != DATASET_ANNOTATOR_PREFIX


@dataclass
class AnnotatorStats:
    """How one annotator labels. Rates are fractions (0 to 1) of `count`, skips included."""

    annotator: str
    count: int  # active judgments, skips included
    mean_seconds: float | None  # None when no judgment carries a timing (imported labels)
    left_pick_rate: float | None  # of a/b verdicts with a known side: share that picked the left one
    tie_rate: float
    both_bad_rate: float
    skip_rate: float

    @property
    def is_person(self) -> bool:
        return is_person(self.annotator)


@dataclass
class PairAgreement:
    annotator_1: str
    annotator_2: str
    shared_pairs: int
    kappa: float
    percent_agreement: float


@dataclass
class DatasetAgreement:
    annotator: str
    shared_pairs: int
    percent_agreement: float
    kappa: float


@dataclass
class LengthBias:
    """How often the longer answer won, among one group's decisive verdicts (a or b) on pairs whose
    answers differ in length: people and reward models tend to prefer the longer answer, and a
    preference for length in the labels becomes the reward model's. 0.5 is no preference."""

    group: str  # an annotator, or an origin (the pairs' dataset)
    decisive: int
    longer_won: int

    @property
    def share(self) -> float | None:
        return self.longer_won / self.decisive if self.decisive else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """95% Wilson interval of the share: it excludes 0.5 when the preference is more than chance."""
        return wilson_interval(self.longer_won, self.decisive)


def length_bias(store: Store) -> tuple[list[LengthBias], list[LengthBias]]:
    """The longer answer's wins per annotator (people first, then the data's own labels) and per
    origin (every annotator's verdicts on that dataset's pairs)."""
    by_annotator: Counter[str] = Counter()
    won_by_annotator: Counter[str] = Counter()
    by_origin: Counter[str] = Counter()
    won_by_origin: Counter[str] = Counter()
    for annotator, origin, decisive, longer_won in store.length_verdicts():
        by_annotator[annotator] += decisive
        won_by_annotator[annotator] += longer_won
        by_origin[origin] += decisive
        won_by_origin[origin] += longer_won
    annotators = sorted(by_annotator, key=lambda a: (not is_person(a), a))
    return (
        [LengthBias(a, by_annotator[a], won_by_annotator[a]) for a in annotators],
        [LengthBias(o, by_origin[o], won_by_origin[o]) for o in sorted(by_origin)],
    )


@dataclass
class AgreementReport:
    annotators: list[AnnotatorStats]
    pairwise: list[PairAgreement]  # people only, pairs of annotators with at least one shared pair
    alpha: float | None  # Krippendorff's alpha (nominal) among people; None without pairable pairs
    alpha_units: int  # pairs with verdicts from two or more people
    with_dataset: list[DatasetAgreement]  # each person against the pair's dataset label
    length_by_annotator: list[LengthBias] = field(default_factory=list)
    length_by_origin: list[LengthBias] = field(default_factory=list)


def cohen_kappa(labels_1: Sequence[str], labels_2: Sequence[str]) -> float:
    """Cohen's kappa for two raters over the same items, nominal categories.

    Computed in integers, (n*agreed - S) / (n^2 - S) with S = sum over categories of the two
    raters' counts multiplied, so the degenerate case is found exactly: when both raters put every
    item in the same one category, chance agreement is 1 and kappa is 0/0; we return 1.0 there,
    since the raters agreed on every item (and no other case can make chance agreement 1).
    """
    if len(labels_1) != len(labels_2):
        raise ValueError(f"kappa needs the same items from both raters ({len(labels_1)} != {len(labels_2)})")
    if not labels_1:
        raise ValueError("kappa needs at least one item")
    return _kappa(Counter(zip(labels_1, labels_2)))


def _kappa(table: Counter[tuple[str, str]]) -> float:
    """Cohen's kappa from a contingency table {(rater 1's label, rater 2's label): items}."""
    n = sum(table.values())
    agreed = sum(count for (x, y), count in table.items() if x == y)
    counts_1: Counter[str] = Counter()
    counts_2: Counter[str] = Counter()
    for (x, y), count in table.items():
        counts_1[x] += count
        counts_2[y] += count
    chance = sum(c * counts_2[k] for k, c in counts_1.items())
    if chance == n * n:
        return 1.0
    return (n * agreed - chance) / (n * n - chance)


def _percent(table: Counter[tuple[str, str]]) -> float:
    return 100.0 * sum(count for (x, y), count in table.items() if x == y) / sum(table.values())


def krippendorff_alpha_nominal(units: Iterable[Sequence[str | None]]) -> float | None:
    """Krippendorff's alpha for nominal data: 1 - (n-1) * sum_{c!=k} o_ck / sum_{c!=k} n_c n_k.

    `units` are the values given to each item by its coders; None marks a missing value. Units
    with fewer than two values cannot be paired and are left out (Krippendorff 2011). None when
    no unit is pairable; 1.0 when every paired value is the same category (expected disagreement
    is zero, so alpha is 0/0, and the coders agreed on everything).
    """
    # Sorted by repr: a canonical order for any mix of value types.
    return _alpha(Counter(tuple(sorted((v for v in unit if v is not None), key=repr)) for unit in units))


def _alpha(shapes: Counter[tuple]) -> float | None:
    """Alpha from units grouped by shape (a unit's values, sorted: how many units have them):
    100,000 pairs judged by a few people have only a few dozen shapes."""
    coincidences: Counter[tuple[str, str]] = Counter()
    for shape, units in shapes.items():
        m = len(shape)
        if m < 2:
            continue
        values = Counter(shape).items()
        for (c, n_c), (k, n_k) in itertools.product(values, repeat=2):
            coincidences[c, k] += units * n_c * (n_k - (c == k)) / (m - 1)
    if not coincidences:
        return None
    totals: Counter[str] = Counter()
    for (c, _), o in coincidences.items():
        totals[c] += o
    n = sum(totals.values())
    observed = sum(o for (c, k), o in coincidences.items() if c != k)
    expected = sum(totals[c] * totals[k] for c, k in itertools.permutations(totals, 2))
    if math.isclose(expected, 0.0, abs_tol=1e-12):
        return 1.0
    return 1.0 - (n - 1) * observed / expected


def annotator_stats(store: Store) -> list[AnnotatorStats]:
    """Per annotator, on active judgments: people first, then `dataset:*` (which have no timings
    and no sides, so those figures are None for them)."""
    stats = [
        AnnotatorStats(
            annotator=name,
            count=count,
            mean_seconds=mean_seconds,
            left_pick_rate=left_picks / sided if sided else None,
            tie_rate=ties / count,
            both_bad_rate=both_bad / count,
            skip_rate=skips / count,
        )
        for name, count, mean_seconds, sided, left_picks, ties, both_bad, skips in store.annotator_figures()
    ]
    stats.sort(key=lambda s: (not s.is_person, s.annotator))  # people first, then the data's labels
    return stats


def agreement_report(store: Store) -> AgreementReport:
    """Who agrees with whom, on active verdicts (skips and undone verdicts excluded), and how
    often the longer answer won."""
    by_annotator, by_origin = length_bias(store)
    # One pass: each pair's people's verdicts (the latest per person) and its dataset votes.
    people: dict[int, dict[str, str]] = {}
    dataset: dict[int, list[tuple[str, str]]] = {}
    person_cache: dict[str, bool] = {}
    for pair_id, annotator, verdict in store.active_verdicts():
        person = person_cache.get(annotator)
        if person is None:
            person = person_cache[annotator] = is_person(annotator)
        if person:
            people.setdefault(pair_id, {})[annotator] = verdict
        else:
            dataset.setdefault(pair_id, []).append((annotator, verdict))

    # Contingency tables rather than label lists: the same figures, a fraction of the memory.
    shared: defaultdict[tuple[str, str], Counter[tuple[str, str]]] = defaultdict(Counter)
    with_data: defaultdict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    shapes: Counter[tuple[str, ...]] = Counter()
    for pair_id, by_person in people.items():
        if len(by_person) > 1:
            for (p1, v1), (p2, v2) in itertools.combinations(sorted(by_person.items()), 2):
                shared[p1, p2][v1, v2] += 1
            shapes[tuple(sorted(by_person.values()))] += 1
        votes = dataset.get(pair_id)
        label = settle_verdict(votes)[0] if votes else None
        if label is not None:
            for person, verdict in by_person.items():
                with_data[person][verdict, label] += 1
    return AgreementReport(
        annotators=annotator_stats(store),
        pairwise=[
            PairAgreement(p1, p2, sum(table.values()), _kappa(table), _percent(table))
            for (p1, p2), table in sorted(shared.items())
        ],
        alpha=_alpha(shapes),
        alpha_units=sum(shapes.values()),
        with_dataset=[
            DatasetAgreement(person, sum(table.values()), _percent(table), _kappa(table))
            for person, table in sorted(with_data.items())
        ],
        length_by_annotator=by_annotator,
        length_by_origin=by_origin,
    )
