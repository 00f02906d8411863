"""Agreement and quality: per-annotator habits, agreement between people, and with the dataset.

Core computes (core.agreement.agreement_report); this page only lays the numbers out. The report
reads every active judgment, which takes a while on a large project, so it is computed on a
worker thread with its own connection and shown when it arrives.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.agreement import AgreementReport, agreement_report
from rlhf_workbench.core.project import Project

from ..tasks import run_store_task
from ..widgets import plain_label


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _interval(interval: tuple[float, float] | None) -> str:
    return "–" if interval is None else f"{100 * interval[0]:.0f}–{100 * interval[1]:.0f}%"


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setAlternatingRowColors(True)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(True)
    return table


def _fill(table: QTableWidget, rows: list[list[str]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)  # table items are plain text
            if c > 0:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(r, c, item)


class AgreementView(QWidget):
    error = Signal(str)
    updated = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.report: AgreementReport | None = None
        self._generation = 0

        self.status = plain_label("")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.addWidget(self.status, 1)
        top.addWidget(self.refresh_button)

        self.annotators = _table(
            ["Annotator", "Verdicts", "Mean seconds", "Picks left", "Ties", "Both bad", "Skips"]
        )
        self.pairwise = _table(["Annotator", "Annotator", "Shared pairs", "Agreement", "Cohen's κ"])
        self.with_dataset = _table(["Annotator", "Shared pairs", "Agreement with dataset", "Cohen's κ"])
        self.alpha = plain_label("")
        self.length_bias = _table(["Annotator, or the pairs' origin", "Decisive verdicts", "Longer answer won", "95% interval"])
        self.length_bias.setToolTip(
            "Of the A-or-B verdicts on pairs whose answers differ in length: how often the longer one won. 50% is "
            "no preference; an interval that excludes 50% is a preference for length (or brevity) beyond chance, "
            "which a reward model trained on these labels learns too."
        )
        boxes = [
            ("Per annotator (position bias: how often the left response was picked)", self.annotators),
            ("Between people, on pairs both judged", self.pairwise),
            ("People and the dataset's own labels", self.with_dataset),
            ("Length bias: how often the longer answer won (50% is none)", self.length_bias),
        ]
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        for title, table in boxes:
            box = QGroupBox(title)
            inner = QVBoxLayout(box)
            inner.addWidget(table)
            if table is self.pairwise:
                inner.addWidget(self.alpha)
            layout.addWidget(box)

    def set_project(self, project: Project | None) -> None:
        self.project = project
        self.report = None
        self._generation += 1
        for table in (self.annotators, self.pairwise, self.with_dataset, self.length_bias):
            table.setRowCount(0)
        self.alpha.setText("")
        self.status.setText("")
        if project is not None and self.isVisible():
            self.refresh()

    def refresh(self) -> None:
        if self.project is None:
            return
        self._generation += 1
        self.status.setText("Computing…")
        generation = self._generation
        run_store_task(
            self,
            self.project,
            lambda store, sink, stop: agreement_report(store),
            on_done=lambda report: self._show(report, generation),
            on_error=lambda message: self._failed(message, generation),
        )

    def _failed(self, message: str, generation: int) -> None:
        if generation == self._generation:
            self.status.setText("Could not compute agreement.")
            self.error.emit(message)

    def _show(self, report: AgreementReport, generation: int) -> None:
        if generation != self._generation:
            return  # a newer request (or another project) superseded this one
        self.report = report
        _fill(
            self.annotators,
            [
                [
                    s.annotator,
                    f"{s.count:,}",
                    _number(s.mean_seconds, 1),
                    _percent(s.left_pick_rate),
                    _percent(s.tie_rate),
                    _percent(s.both_bad_rate),
                    _percent(s.skip_rate),
                ]
                for s in report.annotators
            ],
        )
        _fill(
            self.pairwise,
            [
                [p.annotator_1, p.annotator_2, f"{p.shared_pairs:,}", _percent(p.percent_agreement / 100 if p.percent_agreement is not None else None), _number(p.kappa)]
                for p in report.pairwise
            ],
        )
        _fill(
            self.with_dataset,
            [
                [d.annotator, f"{d.shared_pairs:,}", _percent(d.percent_agreement / 100 if d.percent_agreement is not None else None), _number(d.kappa)]
                for d in report.with_dataset
            ],
        )
        _fill(
            self.length_bias,
            [
                [b.group if i < len(report.length_by_annotator) else f"all verdicts on pairs from {b.group}",
                 f"{b.decisive:,}",
                 _percent(b.share), _interval(b.interval)]
                for i, b in enumerate(report.length_by_annotator + report.length_by_origin)
            ],
        )
        if report.alpha is None:
            self.alpha.setText("Krippendorff's α (nominal, all people): needs pairs judged by two or more people.")
        else:
            self.alpha.setText(
                f"Krippendorff's α (nominal, all people): {report.alpha:.3f} over {report.alpha_units:,} pairs"
            )
        self.status.setText(f"{len(report.annotators)} annotators")
        self.updated.emit()
