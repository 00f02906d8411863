"""Agreement statistics: checked against textbook values, then on a real project's judgments."""

from __future__ import annotations

import pytest

from rlhf_workbench.core.agreement import (
    agreement_report,
    annotator_stats,
    cohen_kappa,
    krippendorff_alpha_nominal,
)
from rlhf_workbench.core.project import Project


def _table(both_yes: int, yes_no: int, no_yes: int, both_no: int) -> tuple[list[str], list[str]]:
    """Two raters' labels from a 2x2 table: rater 1 said the first word, rater 2 the second."""
    cells = [("yes", "yes", both_yes), ("yes", "no", yes_no), ("no", "yes", no_yes), ("no", "no", both_no)]
    first = [r1 for r1, _, n in cells for _ in range(n)]
    second = [r2 for _, r2, n in cells for _ in range(n)]
    return first, second


# -- Cohen's kappa -----------------------------------------------------------------------------


def test_kappa_of_wikipedias_50_grant_proposals_is_0_4():
    # Wikipedia, "Cohen's kappa", simple example: 50 proposals, A and B both yes 20, A yes B no 5,
    # A no B yes 10, both no 15. p_o = 35/50 = 0.7; A says yes 25/50, B says yes 30/50, so
    # p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    assert cohen_kappa(*_table(20, 5, 10, 15)) == pytest.approx(0.4, abs=1e-12)


@pytest.mark.parametrize(
    "table, kappa",
    [
        # Wikipedia's pair of tables with the same agreement (60 of 100) and different kappas.
        # 45/15/25/15: A yes 60, B yes 70: p_e = .6*.7 + .4*.3 = .54; (.60 - .54)/.46 = 0.130435
        ((45, 15, 25, 15), 0.06 / 0.46),
        # 25/35/5/35: A yes 60, B yes 30: p_e = .6*.3 + .4*.7 = .46; (.60 - .46)/.54 = 0.259259
        ((25, 35, 5, 35), 0.14 / 0.54),
        # Total disagreement with balanced marginals: p_o = 0, p_e = .5: kappa = -1.
        ((0, 10, 10, 0), -1.0),
    ],
)
def test_kappa_of_other_hand_computed_tables(table, kappa):
    assert cohen_kappa(*_table(*table)) == pytest.approx(kappa, abs=1e-12)


def test_kappa_with_three_categories_and_its_symmetry():
    # 8 items. Agreements: items 1, 2, 4, 6, 8 -> 5.
    r1 = ["a", "a", "b", "b", "tie", "tie", "a", "b"]
    r2 = ["a", "a", "a", "b", "b", "tie", "tie", "b"]
    # r1 counts a3 b3 tie2; r2 counts a3 b3 tie2: S = 9 + 9 + 4 = 22;
    # kappa = (n*agreed - S) / (n^2 - S) = (40 - 22) / (64 - 22) = 18/42 = 3/7.
    assert cohen_kappa(r1, r2) == pytest.approx(3 / 7, abs=1e-12)
    assert cohen_kappa(r2, r1) == pytest.approx(3 / 7, abs=1e-12)


def test_kappa_degenerate_and_bad_input():
    # Chance agreement 1 (both raters always said "a"): 0/0; we call it perfect agreement.
    assert cohen_kappa(["a"] * 4, ["a"] * 4) == 1.0
    assert cohen_kappa(["a", "b"], ["a", "b"]) == 1.0
    with pytest.raises(ValueError):
        cohen_kappa(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        cohen_kappa([], [])


# -- Krippendorff's alpha ----------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", example C: 4 observers,
# 12 units, values 1-5, None where an observer gave no value.
_KRIPPENDORFF_C = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


def test_alpha_of_krippendorffs_4_observer_example_is_0_743():
    units = [[coder[u] for coder in _KRIPPENDORFF_C.values()] for u in range(12)]
    # Unit 12 has one value and is not pairable; 40 pairable values remain. The coincidence
    # matrix (rows/columns 1..5):
    #   1: 7    4/3  1/3  1/3  0   | n_1 = 9
    #   2: 4/3  10   4/3  1/3  0   | n_2 = 13
    #   3: 1/3  4/3  8    1/3  0   | n_3 = 10
    #   4: 1/3  1/3  1/3  4    0   | n_4 = 5
    #   5: 0    0    0    0    3   | n_5 = 3
    # Off-diagonal sum 8; sum_{c!=k} n_c n_k = 40^2 - (81 + 169 + 100 + 25 + 9) = 1216;
    # alpha = 1 - (40 - 1) * 8 / 1216 = 113/152 = 0.7434 (the paper: 0.743).
    alpha = krippendorff_alpha_nominal(units)
    assert alpha == pytest.approx(113 / 152, abs=1e-12)
    assert round(alpha, 3) == 0.743


def test_alpha_of_krippendorffs_binary_two_coder_example_is_0_095():
    coder_a = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    coder_b = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    # o_00 = 10, o_11 = 2, o_01 = o_10 = 4; n_0 = 14, n_1 = 6, n = 20.
    # alpha = 1 - 19 * 8 / (2 * 14 * 6) = 1 - 152/168 = 2/21 = 0.0952 (the paper: 0.095).
    alpha = krippendorff_alpha_nominal(zip(coder_a, coder_b))
    assert alpha == pytest.approx(2 / 21, abs=1e-12)


def test_alpha_edge_cases():
    assert krippendorff_alpha_nominal([]) is None
    assert krippendorff_alpha_nominal([["a"], ["b", None], [None, None]]) is None, "nothing pairable"
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "a", None]]) == 1.0, "one category only"
    # Perfect agreement across categories is 1; systematic disagreement is below 0.
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    # [a,b],[b,a]: o_ab = o_ba = 2, n_a = n_b = 2, n = 4: 1 - 3 * 4 / 8 = -0.5
    assert krippendorff_alpha_nominal([["a", "b"], ["b", "a"]]) == pytest.approx(-0.5)


# -- on a project ------------------------------------------------------------------------------

# Pairs q1..q11; the data labels q1..q6 (a a a a a tie).
_DATA = ["a", "a", "a", "a", "a", "tie", None, None, None, None, None]
# Verdicts of two people on q1..q10 (bob also skips q11), with the side ada saw on the left.
_ADA = ["a", "a", "a", "b", "b", "tie", "a", "b", "both_bad", "a"]
_ADA_LEFT = ["a", "a", "a", "b", "b", "a", "b", "a", "b", "a"]
_BOB = ["a", "a", "b", "b", "b", "tie", "b", "b", "tie", "a"]


@pytest.fixture
def judged(make_project):
    """A project with ada's, bob's and carol's verdicts (and some noise that must not count)."""
    rows = [
        (f"q{i + 1}", f"a{i + 1}", f"b{i + 1}", "test", v, "dataset:test" if v else None) for i, v in enumerate(_DATA)
    ]
    with Project.open(make_project("agree", rows)) as project:
        store = project.store
        ids = {p.prompt[0].content: p.pair_id for p in store.iter_export_pairs()}
        pid = [ids[f"q{i + 1}"] for i in range(11)]
        for i in range(10):
            if i == 2:  # a verdict ada took back: its side, its seconds and its verdict must not count
                store.undo_judgment(store.add_judgment(pid[i], "ada", "b", shown_left="b", seconds=100.0))
            store.add_judgment(pid[i], "ada", _ADA[i], shown_left=_ADA_LEFT[i], seconds=float(i + 1))
            store.add_judgment(pid[i], "bob", _BOB[i])  # as imported under a person's name: no side, no time
        store.add_judgment(pid[10], "ada", "a", shown_left="a", seconds=1.0)
        store.undo_judgment(store.add_judgment(pid[10], "bob", "b"))
        store.add_judgment(pid[10], "bob", "skip")  # a skip is no opinion: q11 is shared by nobody
        store.add_judgment(pid[0], "carol", "a", shown_left="b", seconds=2.0)
        yield store


def test_report_matches_hand_computed_kappa_alpha_and_dataset_agreement(judged):
    report = agreement_report(judged)
    ada_bob, ada_carol, bob_carol = report.pairwise
    assert (ada_bob.annotator_1, ada_bob.annotator_2, ada_bob.shared_pairs) == ("ada", "bob", 10)
    # Agreements on q1 q2 q4 q5 q6 q8 q10 = 7 of 10. ada: a5 b3 tie1 both_bad1; bob: a3 b5 tie2.
    # S = 5*3 + 3*5 + 1*2 + 1*0 = 32; kappa = (10*7 - 32) / (100 - 32) = 38/68.
    assert ada_bob.percent_agreement == pytest.approx(70.0)
    assert ada_bob.kappa == pytest.approx(38 / 68, abs=1e-12)
    assert (ada_carol.shared_pairs, ada_carol.percent_agreement, ada_carol.kappa) == (1, 100.0, 1.0)
    assert (bob_carol.annotator_1, bob_carol.annotator_2, bob_carol.shared_pairs) == ("bob", "carol", 1)

    # Units: q1 [a a a], q2 q10 [a a], q3 q7 [a b], q4 q5 q8 [b b], q6 [tie tie], q9 [both_bad tie].
    # o_aa = 3 + 2 + 2 = 7, o_ab = o_ba = 2, o_bb = 6, o_tt = 2, o_xt = o_tx = 1;
    # n_a = 9, n_b = 8, n_t = 3, n_x = 1, n = 21; sum_{c!=k} n_c n_k = 441 - 155 = 286;
    # alpha = 1 - 20 * 6 / 286 = 83/143.
    assert report.alpha_units == 10
    assert report.alpha == pytest.approx(83 / 143, abs=1e-12)

    by_person = {d.annotator: d for d in report.with_dataset}
    assert set(by_person) == {"ada", "bob", "carol"}
    # ada vs data on q1..q6: a a a b b tie vs a a a a a tie: agreed 4 of 6; ada a3 b2 tie1, data
    # a5 tie1: S = 15 + 1 = 16; kappa = (24 - 16) / (36 - 16) = 0.4.
    assert by_person["ada"].shared_pairs == 6
    assert by_person["ada"].percent_agreement == pytest.approx(400 / 6)
    assert by_person["ada"].kappa == pytest.approx(0.4, abs=1e-12)
    # bob: a a b b b tie: agreed 3; bob a2 b3 tie1: S = 10 + 1 = 11; (18 - 11) / (36 - 11) = 0.28.
    assert by_person["bob"].percent_agreement == pytest.approx(50.0)
    assert by_person["bob"].kappa == pytest.approx(0.28, abs=1e-12)
    assert (by_person["carol"].shared_pairs, by_person["carol"].kappa) == (1, 1.0)


def test_annotator_stats_on_known_judgments(judged):
    stats = {s.annotator: s for s in annotator_stats(judged)}
    assert [s.annotator for s in annotator_stats(judged)] == ["ada", "bob", "carol", "dataset:test"]
    ada = stats["ada"]
    assert ada.count == 11  # q1..q10 and q11; the undone one is not active
    # seconds 1..10 and 1 (q11): 56 / 11; the undone verdict's 100 s does not count.
    assert ada.mean_seconds == pytest.approx(56 / 11)
    # a/b verdicts with a side: q1 q2 q3 q4 q5 q7 q8 q10 q11 (9). Picked the left one (verdict ==
    # shown_left): q1 q2 q3 q4 q5 q10 q11 = 7; q7 (a, b on the left) and q8 (b, a on the left) not.
    assert ada.left_pick_rate == pytest.approx(7 / 9)
    assert (ada.tie_rate, ada.both_bad_rate, ada.skip_rate) == pytest.approx((1 / 11, 1 / 11, 0.0))
    bob = stats["bob"]
    assert bob.count == 11 and bob.mean_seconds is None and bob.left_pick_rate is None
    assert (bob.tie_rate, bob.skip_rate) == pytest.approx((2 / 11, 1 / 11))
    assert stats["carol"].left_pick_rate == 0.0  # said a with b on the left
    data = stats["dataset:test"]
    assert (data.count, data.mean_seconds, data.left_pick_rate) == (6, None, None)
    assert data.tie_rate == pytest.approx(1 / 6)
    assert not data.is_person and ada.is_person


def test_undoing_changes_the_report(judged):
    before = agreement_report(judged)
    [(jid,)] = judged.conn.execute(
        "SELECT j.id FROM judgments j JOIN pairs p ON p.id = j.pair_id JOIN prompts q ON q.id = p.prompt_id "
        "WHERE j.annotator = 'bob' AND j.undone = 0 AND q.messages LIKE '%\"q3\"%'"
    ).fetchall()
    judged.undo_judgment(jid)  # bob's "b" on q3, the one disagreement there
    after = agreement_report(judged)
    assert before.pairwise[0].shared_pairs == 10 and after.pairwise[0].shared_pairs == 9
    assert after.pairwise[0].percent_agreement == pytest.approx(700 / 9)
    assert after.alpha_units == 9
    # bob now: a a b b tie (q1 q2 q4 q5 q6) against the data: agreed 3 of 5
    bob = next(d for d in after.with_dataset if d.annotator == "bob")
    assert (bob.shared_pairs, bob.percent_agreement) == (5, pytest.approx(60.0))


def test_a_project_without_judgments_has_an_empty_report(project):
    report = agreement_report(project.store)
    assert (report.annotators, report.pairwise, report.alpha, report.alpha_units, report.with_dataset) == (
        [],
        [],
        None,
        0,
        [],
    )


def test_a_person_who_judged_a_pair_twice_counts_with_the_latest_verdict(make_project):
    rows = [(f"q{i}", f"a{i}", f"b{i}", "test", None, None) for i in (1, 2)]
    with Project.open(make_project("twice", rows)) as project:
        store = project.store
        p1, p2 = store.pair_ids()
        store.add_judgment(p1, "ada", "a")
        store.add_judgment(p1, "ada", "b")  # changed her mind in another session, without undo
        store.add_judgment(p1, "bob", "b")
        store.add_judgment(p2, "ada", "a")
        store.add_judgment(p2, "bob", "a")
        [pair] = agreement_report(store).pairwise
        assert (pair.shared_pairs, pair.percent_agreement, pair.kappa) == (2, 100.0, 1.0)
        assert annotator_stats(store)[0].count == 3  # every active judgment is one of her figures
