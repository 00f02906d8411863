"""Generating candidate pairs from the Data tab: the choices, and the run in a child process.

    GenerateDialog   which model writes (and optionally a second one for response B), which
                     prompts and how many, and the sampling settings (a form of GenerateConfig)
    GenerateControl  the Data tab's Generate… button: the dialog, then core.generate.generate_pairs
                     in a spawned child (tasks.run_in_child: the GUI process never imports torch),
                     waited on by a task with a progress dialog; Cancel adds nothing
"""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.errors import ConfigError, WorkbenchError
from rlhf_workbench.core.generate import GenerateConfig, summary
from rlhf_workbench.core.policies import trained_policies
from rlhf_workbench.core.project import Project

from ..config_form import ConfigForm
from ..dialogs import error_box
from ..tasks import Task, run_in_child, run_store_task
from ..widgets import heading_label, plain_label
from .model_pickers import SpecBox, policy_items

PICKED = ("model", "model_b", "prompt_origin", "n_prompts")  # the GenerateConfig fields chosen above the form
SAME_MODEL = ""  # the second box's "no second model" item


def _help(name: str) -> str:
    return GenerateConfig.__dataclass_fields__[name].metadata["help"]


class GenerateDialog(QDialog):
    """The choices; `config()` is the GenerateConfig they make (ConfigError names a bad setting)."""

    def __init__(self, project: Project, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.setWindowTitle("Generate Responses")
        self.setMinimumWidth(620)
        defaults = GenerateConfig()
        self.model_box = SpecBox(_help("model"))
        self.model_b_box = SpecBox(_help("model_b"))
        self.prompts_box = QComboBox()
        self.prompts_box.setToolTip(_help("prompt_origin"))
        self.count = QSpinBox()
        self.count.setRange(1, 10_000_000)
        self.count.setGroupSeparatorShown(True)
        self.count.setValue(defaults.n_prompts)
        self.count.setMinimumWidth(110)
        self.count.setToolTip(_help("n_prompts"))
        self.form = ConfigForm(defaults, hidden=PICKED)
        self.explanation = plain_label(
            "Each prompt gets two sampled responses, added as a pair to judge in the Label tab "
            "(origin generated:<model>). Prompts without any pair come first."
        )
        self.explanation.setWordWrap(True)
        self.status = plain_label("Reading the models and prompts…")
        self.status.setWordWrap(True)

        choices = QFormLayout()
        choices.addRow("Model", self.model_box.with_browse("model folder"))
        choices.addRow("Second model", self.model_b_box.with_browse("second model folder"))
        choices.addRow("Prompts", self.prompts_box)
        count_row = QHBoxLayout()
        count_row.addWidget(self.count)
        count_row.addWidget(plain_label("prompts, one pair each"))
        count_row.addStretch(1)
        choices.addRow("How many", count_row)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.generate_button = self.buttons.addButton("Generate", QDialogButtonBox.ButtonRole.AcceptRole)
        self.generate_button.setDefault(True)
        self.buttons.accepted.connect(self._accept_if_valid)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(self.explanation)
        layout.addLayout(choices)
        layout.addWidget(heading_label("Sampling"))
        layout.addWidget(scroll, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self.resize(680, 560)
        self.lists_task: Task | None = None
        self._read_lists()

    def _read_lists(self) -> None:
        project_path = self.project.path

        def find(store, sink, stop) -> dict[str, Any]:
            from rlhf_workbench.core.models import discover_models

            return {
                "policies": policy_items(trained_policies(store, project_path), discover_models(project_path)),
                "origins": store.pairs_by_origin(),
                "waiting": store.prompts_without_pairs(),
                "prompts": store.counts()["prompts"],
            }

        self.lists_task = run_store_task(self, self.project, find, on_done=self._show_lists,
                                         on_error=self.status.setText)

    def _show_lists(self, found: dict[str, Any]) -> None:
        self.model_box.set_items(found["policies"])
        self.model_b_box.set_items([("(none: the model samples both responses)", SAME_MODEL), *found["policies"]])
        self.prompts_box.clear()
        waiting = found["waiting"]
        first = f"All prompts, the {waiting:,} without a pair first" if waiting else "All prompts"
        self.prompts_box.addItem(first, None)
        for origin, n in found["origins"].items():
            self.prompts_box.addItem(f"Prompts of pairs from {origin}  ({n:,} pairs)", origin)
        self.status.setText(
            f"The project has {found['prompts']:,} prompts; {waiting:,} have no pair yet."
            if found["prompts"] else "The project has no prompts yet: import some first (a prompt list will do)."
        )
        self.generate_button.setEnabled(bool(found["prompts"]))

    def config(self) -> GenerateConfig:
        """The settings as they stand. Raises ConfigError naming the setting that is wrong."""
        try:
            base = self.form.value()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        model_b = self.model_b_box.spec().strip()
        return dataclasses.replace(
            base, model=self.model_box.spec().strip(), model_b=model_b or None,
            prompt_origin=self.prompts_box.currentData(), n_prompts=self.count.value(),
        ).validate()

    def _accept_if_valid(self) -> None:
        try:
            self.config()
        except ConfigError as exc:
            self.status.setText(str(exc))
            return
        self.accept()


class GenerateControl(QObject):
    """The Data tab's Generate… button: opens the dialog, runs the generation, says what it added."""

    added = Signal(dict)  # generate_pairs' counts, once the pairs are in the project
    error_shown = Signal(str)

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.parent_widget = parent
        self.project: Project | None = None
        self.task: Task | None = None
        self.button = QPushButton("&Generate…")
        self.button.setToolTip(
            "Sample two responses per prompt with a local model and add them as pairs to judge "
            "(prompts without any pair first, e.g. those of an imported prompt list)"
        )
        self.button.clicked.connect(self.open_dialog)
        self.set_project(None)

    def running(self) -> bool:
        return self.task is not None and self.task.is_running()

    def set_project(self, project: Project | None) -> None:
        if project is not self.project and self.running():
            self.task.stop()  # it would add to the project no longer shown: nothing is added
        self.project = project
        self.button.setEnabled(project is not None and not self.running())

    def open_dialog(self) -> GenerateDialog | None:
        """Open the dialog (not modal); the generation starts once it is accepted."""
        if self.project is None or self.running():
            return None
        dialog = GenerateDialog(self.project, self.parent_widget)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        project = self.project
        dialog.accepted.connect(lambda: self.start(project, dialog.config()))
        dialog.open()
        return dialog

    def start(self, project: Project, config: GenerateConfig) -> Task | None:
        """generate_pairs in a child process, behind a progress dialog with Cancel."""
        if project is not self.project or self.running():
            return None
        from rlhf_workbench.core.training.config import config_to_dict

        try:
            self.task = run_in_child(
                self.parent_widget, "rlhf_workbench.core.generate:generate_task", str(project.path),
                config_to_dict(config), what="generation",
                on_done=lambda counts: self._done(project, counts),
                on_error=self._failed,
                on_stopped=lambda message: self._tell(message, "Generating cancelled"),
                progress_title=f"Generating responses with {config.model}",
            )
        except (OSError, WorkbenchError) as exc:
            self._failed(f"Could not start generating: {exc}")
            return None
        self.task.ended.connect(lambda: self.set_project(self.project))
        self.button.setEnabled(False)
        return self.task

    def _done(self, project: Project, counts: dict[str, Any]) -> None:
        if project is self.project:
            self.added.emit(counts)
            self._tell(summary(counts), "Responses generated")

    def _failed(self, message: str) -> None:
        self.error_shown.emit(message)
        error_box(self.parent_widget, message, "Generating failed")

    def _tell(self, message: str, title: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, title, message, QMessageBox.StandardButton.Ok,
                          self.parent_widget)
        box.setTextFormat(Qt.TextFormat.PlainText)  # origins quote model names and paths
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
