"""Import and export from the Data tab: real dialogs, driven as a person would, the work done by
the core in background tasks, on real files (the shared HH-RLHF sample among them)."""

import json
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QMessageBox, QProgressDialog, QPushButton

from rlhf_workbench.app import tasks
from rlhf_workbench.app.views.data_view import DataView
from rlhf_workbench.app.views.import_dialog import ImportDialog, ImportSummary, guess_mapping
from rlhf_workbench.core import import_rows, importing
from rlhf_workbench.core.bulk import BulkWriter
from rlhf_workbench.core.events import Failed, Finished
from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.project import Project

pytestmark = pytest.mark.usefixtures("workbench_home")

HH_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless" / "pairs.jsonl"
FIXTURES = Path(__file__).parent / "fixtures"
PAIRS = [
    ("What is 2 + 2?", "4", "5", "arena", "a", "dataset:arena"),
    ("Say hello.", "Hello!", "Go away.", "arena", None, None),
    ("Name a colour.", "Blue.", "Seven.", "trl", "b", "alice"),
    ("Count to three.", "1 2 3", "one two", "trl", "a", "alice"),
    ("Name a fruit.", "Apple.", "Brick.", "trl", "a", "bob"),
]


@pytest.fixture
def view(qtbot, make_project, request):
    pairs = getattr(request, "param", ())
    project = Project.open(make_project("io", pairs))
    view = DataView()
    qtbot.addWidget(view)
    view.resize(1200, 800)
    view.show()
    view.set_project(project)
    qtbot.waitUntil(lambda: not view.is_loading(), timeout=10_000)
    yield view
    view.set_project(None)
    assert tasks.wait_for_all()
    project.close()


def opened_dialog(qtbot, view, path) -> ImportDialog:
    dialog = view.start_import(path)
    assert dialog is not None and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.look is not None, timeout=10_000)
    return dialog


def finish_import(qtbot, view):
    assert view.import_task is not None and view.import_task.wait(30)
    qtbot.waitUntil(lambda: not view.is_loading(), timeout=10_000)


def visible(view, kind):
    return [w for w in view.findChildren(kind) if w.isVisible()]


def shown_counts(view):
    return {key: label.text() for key, label in view.overview.values.items()}


def test_importing_the_hh_sample_updates_counts_and_table(view, qtbot):
    dialog = opened_dialog(qtbot, view, HH_SAMPLE)
    assert dialog.format.currentData() == "hh-rlhf" and "(detected)" in dialog.format.currentText()
    assert not dialog.mapping.isVisible() and dialog.annotator.isEnabled()
    assert dialog.annotator.placeholderText().startswith("dataset:hh-rlhf")
    assert dialog.preview.columnCount() == 2 and dialog.preview.rowCount() == 5
    assert dialog.import_button.isEnabled()
    dialog.accept()
    finish_import(qtbot, view)

    report = view.last_import
    with Project.create(view.project.path.parent / "check") as check:
        expected = import_file(check, HH_SAMPLE)  # the same import straight through the core
    assert (report.pairs_added, report.judgments_added) == (expected.pairs_added, expected.judgments_added) == (1812, 1812)
    summary = visible(view, ImportSummary)[0]
    assert summary.values["Pairs added"] == "1,812" and summary.values["Rows rejected"] == "0"
    assert not summary.rejected.isVisible()
    assert shown_counts(view)["pairs"] == "1,812" and shown_counts(view)["prompts"] == f"{expected.prompts_added:,}"
    assert view.pairs_model.rowCount() == 1812 and view.tables.tabText(0) == "Pairs (1,812)"
    assert view.filters.annotator.findData("dataset:hh-rlhf") > 0  # the filters know the new annotator
    summary.accept()

    # Again: nothing new, and the summary says they were already there.
    opened_dialog(qtbot, view, HH_SAMPLE).accept()
    finish_import(qtbot, view)
    assert view.last_import.pairs_added == 0 and view.last_import.pairs_existing == 1812
    assert visible(view, ImportSummary)[-1].values["Pairs already in the project"] == "1,812"
    assert view.pairs_model.rowCount() == 1812


def test_an_undetected_file_gets_a_column_mapping_and_an_annotator(view, qtbot):
    dialog = opened_dialog(qtbot, view, FIXTURES / "mapped_verdicts.jsonl")
    assert dialog.format.currentData() == "mapped" and dialog.mapping.isVisible()
    assert "could not be recognised" in dialog.detection.text()
    assert dialog.mapping.mapping() == {"prompt": "question"}  # guessed from the column names
    assert not dialog.import_button.isEnabled() and "response_a" in dialog.problem.text()
    for target, column in (("response_a", "first"), ("response_b", "second"), ("verdict", "preferred")):
        dialog.mapping.set_target(target, column)
    assert dialog.import_button.isEnabled() and dialog.problem.text() == ""
    dialog.annotator.setText("alice")
    dialog.accept()
    finish_import(qtbot, view)
    assert (view.last_import.pairs_added, view.last_import.judgments_added) == (6, 5)
    assert view.overview_data["by_annotator"]["alice"] == {"a": 1, "b": 2, "tie": 1, "both_bad": 1}


def test_the_mapping_page_takes_verdict_values_and_several_annotator_columns(view, qtbot, tmp_path):
    rows = [
        {"instruction": "Q1", "output_1": "x1", "output_2": "y1", "annotator1": 1, "annotator2": 0, "annotator3": 2},
        {"instruction": "Q2", "output_1": "x2", "output_2": "y2", "annotator1": 2, "annotator2": 2, "annotator3": 2},
    ]
    path = tmp_path / "pandalm.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dialog = opened_dialog(qtbot, view, path)
    assert dialog.format.currentData() == "mapped"
    for target, column in (("prompt", "instruction"), ("response_a", "output_1"), ("response_b", "output_2"),
                           ("verdict", "annotator1")):
        dialog.mapping.set_target(target, column)
    dialog.mapping.verdict_values.setText("0=tie,1=a,2=c")
    assert not dialog.import_button.isEnabled()
    assert "verdict values: '2=c': 'c' is not a verdict" in dialog.problem.text()
    dialog.mapping.verdict_values.setText("0=tie,1=a,2=b")
    dialog.mapping.more_verdicts.setText("annotator2+annotator3")
    assert dialog.import_button.isEnabled() and dialog.problem.text() == ""
    assert dialog.choice().mapping["verdict"] == "annotator1+annotator2+annotator3"
    dialog.accept()
    finish_import(qtbot, view)
    assert (view.last_import.pairs_added, view.last_import.pairs_existing, view.last_import.judgments_added) == (2, 0, 6)
    assert view.overview_data["by_annotator"]["dataset:mapped:annotator2"] == {"tie": 1, "b": 1}


def test_the_summary_shows_skipped_rows_and_columns_not_read(view, qtbot, tmp_path):
    rows = [
        {"prompt": "Hi", "response_a": "Hello", "response_b": "Go away", "winner": "model_a", "extra": 1},
        {"prompt": "2+2?", "response_a": "4", "response_b": "4", "winner": "tie", "extra": 2},
    ]
    path = tmp_path / "arena.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    opened_dialog(qtbot, view, path).accept()
    finish_import(qtbot, view)
    summary = visible(view, ImportSummary)[-1]
    assert summary.values["Rows skipped"] == "1" and summary.values["Columns not read"] == "extra"
    assert "1 rows skipped (the two responses are identical)" in summary.headline.text()


def test_a_forced_format_and_the_mapping_guess(view, qtbot):
    assert guess_mapping(["Question", "good", "bad", "score"]) == {"prompt": "Question", "chosen": "good", "rejected": "bad"}
    assert guess_mapping(["prompt", "response_a", "response_b", "winner"]) == {
        "prompt": "prompt", "response_a": "response_a", "response_b": "response_b", "verdict": "winner"
    }
    dialog = opened_dialog(qtbot, view, FIXTURES / "pairs.jsonl")
    detected = dialog.format.currentData()
    dialog.set_format("trl")  # forcing a format that does not fit: the core says why, naming the row
    assert dialog.format.currentData() == "trl" and detected != "trl"
    dialog.accept()
    assert view.import_task.wait(10) and isinstance(view.import_task.result, Failed)
    assert "line 1" in view.import_task.result.message and shown_counts(view)["pairs"] == "0"


def bad_hh_file(tmp_path) -> Path:
    lines = HH_SAMPLE.read_text(encoding="utf-8").splitlines()[:40]
    lines[20] = '{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: there", "rejected": '  # line 21: cut short
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_bad_file_shows_the_core_message_naming_the_line_and_changes_nothing(view, qtbot, tmp_path):
    path = bad_hh_file(tmp_path)
    errors = []
    view.error_shown.connect(errors.append)
    dialog = opened_dialog(qtbot, view, path)
    assert dialog.format.currentData() == "hh-rlhf"
    dialog.accept()
    assert view.import_task.wait(10) and isinstance(view.import_task.result, Failed)
    assert len(errors) == 1 and errors[0].startswith(f"{path}, line 21")
    boxes = visible(view, QMessageBox)
    assert [b.text() for b in boxes] == errors and boxes[0].textFormat() == Qt.TextFormat.PlainText
    assert "Traceback" not in errors[0]
    assert view.project.store.counts()["pairs"] == 0
    assert view.project.store.conn.execute("SELECT count(*) FROM imports").fetchone() == (0,)

    # With "skip bad rows" the good rows go in and the summary lists the bad one.
    boxes[0].accept()
    dialog = opened_dialog(qtbot, view, path)
    dialog.skip_bad.setChecked(True)
    dialog.accept()
    finish_import(qtbot, view)
    summary = visible(view, ImportSummary)[0]
    assert summary.values["Rows rejected"] == "1" and summary.values["Pairs added"] == "39"
    assert summary.rejected.toPlainText().startswith("Rejected line 21: ")


def test_cancel_in_the_middle_of_an_import_leaves_the_project_unchanged(view, qtbot, monkeypatch):
    # Small batches, and the writer held after its first one: the import is surely mid-way
    # (rows written inside its transaction) when Cancel is pressed.
    monkeypatch.setattr(import_rows, "BATCH_ROWS", 100)
    monkeypatch.setenv(importing.PIPELINE_ENV, "0")
    written, release = threading.Event(), threading.Event()
    original = BulkWriter.write_prepared

    def held_write(self, items):
        original(self, items)
        written.set()
        release.wait(10)

    monkeypatch.setattr(BulkWriter, "write_prepared", held_write)
    before = view.project.store.counts()
    opened_dialog(qtbot, view, HH_SAMPLE).accept()
    assert not view.import_button.isEnabled()  # one import at a time
    assert written.wait(10)
    qtbot.waitUntil(lambda: bool(visible(view, QProgressDialog)), timeout=5000)
    progress = visible(view, QProgressDialog)[0]
    assert progress.labelText() == "Importing pairs.jsonl…"
    qtbot.mouseClick(progress.findChild(QPushButton), Qt.MouseButton.LeftButton)
    release.set()
    assert view.import_task.wait(10) and view.import_task.result.stopped
    assert "nothing was imported" in view.import_task.result.summary["message"]
    assert view.filters.status.text() == "Import cancelled" and view.import_button.isEnabled()
    assert view.project.store.counts() == before
    assert view.project.store.conn.execute("SELECT count(*) FROM imports").fetchone() == (0,)
    qtbot.waitUntil(lambda: not visible(view, QProgressDialog), timeout=2000)
    assert not visible(view, ImportSummary) and not visible(view, QMessageBox)


def test_dropping_files_imports_them_one_after_another(view, qtbot):
    text = QMimeData()
    text.setText("just some text")
    refused = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, text, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    refused.setAccepted(False)
    view.dragEnterEvent(refused)
    assert not refused.isAccepted()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(FIXTURES / "pairs.jsonl")), QUrl.fromLocalFile(str(HH_SAMPLE))])
    entering = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    entering.setAccepted(False)
    view.dragEnterEvent(entering)
    assert entering.isAccepted()
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    view.dropEvent(event)
    assert event.isAccepted()
    first = view.import_dialog
    assert first.path == FIXTURES / "pairs.jsonl"
    qtbot.waitUntil(lambda: first.look is not None)
    first.accept()
    finish_import(qtbot, view)
    second = view.import_dialog
    assert second is not first and second.path == HH_SAMPLE  # opened once the first was done
    qtbot.waitUntil(lambda: second.look is not None)
    second.reject()
    assert view.pairs_model.rowCount() == view.last_import.pairs_added > 0


@pytest.mark.parametrize("view", [PAIRS], indirect=True)
def test_export_round_trips_through_the_dialog(view, qtbot, tmp_path, make_project):
    dialog = view.start_export()
    names = [dialog.format.itemData(i) for i in range(dialog.format.count())]
    assert "trl" in names and "hh-rlhf" in names and "arena" not in names  # formats with a writer
    assert [dialog.annotators.item(i).text() for i in range(dialog.annotators.count())] == ["alice", "bob", "dataset:arena"]
    dialog.format.setCurrentIndex(dialog.format.findData("trl"))
    dialog.path.setText(str(tmp_path / "missing" / "out.jsonl"))
    assert not dialog.export_button.isEnabled() and "no such folder" in dialog.problem.text()
    out = tmp_path / "alice.jsonl"
    dialog.path.setText(str(out))
    dialog.set_annotators(["alice"])
    dialog.accept()
    assert view.export_task.wait(10) and isinstance(view.export_task.result, Finished) and not view.export_task.result.stopped
    assert view.last_export.written == 2
    box = visible(view, QMessageBox)[0]
    assert box.text() == view.last_export.summary() and box.textFormat() == Qt.TextFormat.PlainText

    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2
    with Project.open(make_project("again")) as again:
        report = import_file(again, out)
        pairs = {p.response_a: p for p in again.store.iter_export_pairs()}
    assert report.pairs_added == 2
    # alice chose "Seven." over "Blue." (b) and "1 2 3" over "one two" (a): chosen comes back as A.
    assert set(pairs) == {"Seven.", "1 2 3"} and {p.verdict for p in pairs.values()} == {"a"}


@pytest.mark.parametrize("view", [PAIRS], indirect=True)
def test_an_export_over_a_folder_is_refused_before_it_starts(view, tmp_path):
    dialog = view.start_export()
    dialog.path.setText(str(tmp_path))
    assert not dialog.export_button.isEnabled() and "is a folder" in dialog.problem.text()
    dialog.accept()  # refused: the dialog stays open and nothing runs
    assert dialog.isVisible() and view.export_task is None
    dialog.reject()
