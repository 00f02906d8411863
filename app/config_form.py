"""A settings form built from a job's config dataclass: defaults, ranges and help from the fields.

The config dataclasses (core/training/config.py's conventions) document each field in place
(`field(default=..., metadata={"help": ..., "min": ..., "max": ..., "choices": ...})`); this
form reads that, so a new field shows up in the GUI without GUI code. Validation stays in core
(`config.validate()`): the form only offers widgets that cannot hold a wrong type, and shows the
core's message, which names the field, when a value is out of range.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QLocale, Qt, Signal
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import settings as app_settings
from .widgets import plain_label

_INT_LIMIT = 2**31 - 1


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the type a field holds, whether it may be None) from its resolved annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) == 1:
            return args[0], optional
        return str, optional
    return annotation, False


# Words a field name spells in lower case that a person reads as an acronym or a proper name.
_WORDS = {"kl": "KL", "ppo": "PPO", "eos": "EOS", "lora": "LoRA", "lr": "LR", "vf": "VF", "sft": "SFT"}


def label_for(name: str) -> str:
    words = name.split("_")
    text = " ".join(_WORDS.get(w, w) for w in words)
    return text[0].upper() + text[1:]


class ConfigForm(QWidget):
    """Edits one config dataclass instance. `value()` builds a new instance from the widgets."""

    changed = Signal()

    def __init__(self, config: Any, *, hidden: tuple[str, ...] = (), parent: QWidget | None = None):
        super().__init__(parent)
        self.config_type = type(config)
        self.hints = typing.get_type_hints(self.config_type)
        self.widgets: dict[str, QWidget] = {}
        self.hidden = set(hidden)
        self._base = config  # hidden fields keep this instance's values
        self._folded: set[str] = set()  # shown by no method now (show_only): they keep the base's values too
        self._shown: Callable[[dataclasses.Field], bool] = lambda f: True
        fields = [f for f in dataclasses.fields(config) if f.name not in self.hidden and f.init]
        # A config that marks its basic settings gets two parts: those, then the rest folded under
        # Advanced (open or closed as the person left it last time); one that marks none, one list.
        has_basic = any(f.metadata.get("basic") for f in fields)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self._layout = QFormLayout()
        self._layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        outer.addLayout(self._layout)
        self._advanced_layout = self._layout
        self.advanced_button: QToolButton | None = None
        if has_basic:
            self.advanced_button = QToolButton()
            self.advanced_button.setText("Advanced")
            self.advanced_button.setCheckable(True)
            self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            self.advanced_button.setAutoRaise(True)
            self.advanced_button.setToolTip("The settings most runs leave as they are")
            self.advanced = QWidget()
            self._advanced_layout = QFormLayout(self.advanced)
            self._advanced_layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
            self._advanced_layout.setContentsMargins(0, 0, 0, 0)
            outer.addWidget(self.advanced_button)
            outer.addWidget(self.advanced)
            self.advanced_button.toggled.connect(self._fold_advanced)
            self.advanced_button.setChecked(app_settings.advanced_open(self.config_type.__name__))
            self._fold_advanced(self.advanced_button.isChecked(), remember=False)
        outer.addStretch(1)
        self._rows: dict[str, QFormLayout] = {}
        for f in fields:
            widget = self._widget_for(f)
            help_text = f.metadata.get("help", "")
            if help_text:
                widget.setToolTip(help_text)  # tooltips are plain text here: our own prose
            label = plain_label(label_for(f.name))
            label.setToolTip(help_text)
            layout = self._layout if not has_basic or f.metadata.get("basic") else self._advanced_layout
            layout.addRow(label, widget)
            self._rows[f.name] = layout
            self.widgets[f.name] = widget
        # A field that `requires` a switch (LoRA's rank, LoRA) shows only while the switch is on.
        for f in fields:
            switch = self.widgets.get(f.metadata.get("requires", ""))
            if isinstance(switch, QCheckBox):
                switch.toggled.connect(self._show_rows)
        self.set_value(config)
        self._show_rows()

    def _fold_advanced(self, is_open: bool, *, remember: bool = True) -> None:
        self.advanced.setVisible(is_open)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if is_open else Qt.ArrowType.RightArrow)
        if remember:
            app_settings.set_advanced_open(self.config_type.__name__, is_open)

    def set_advanced_open(self, is_open: bool) -> None:
        if self.advanced_button is not None:
            self.advanced_button.setChecked(is_open)

    def _requirement_met(self, f: dataclasses.Field) -> bool:
        switch = self.widgets.get(f.metadata.get("requires", ""))
        return not isinstance(switch, QCheckBox) or switch.isChecked()

    def _show_rows(self) -> None:
        for f in dataclasses.fields(self.config_type):
            widget = self.widgets.get(f.name)
            if widget is not None:
                self._rows[f.name].setRowVisible(widget, self._shown(f) and self._requirement_met(f))

    def is_visible_field(self, name: str) -> bool:
        """Whether the field's row is on show (its method's, its switch on), folded or not."""
        f = next(f for f in dataclasses.fields(self.config_type) if f.name == name)
        return name in self.widgets and self._shown(f) and self._requirement_met(f)

    def _widget_for(self, f: dataclasses.Field) -> QWidget:
        kind, optional = _base_type(self.hints[f.name])
        meta = f.metadata
        if "choices" in meta:
            box = QComboBox()
            for choice in meta["choices"]:
                box.addItem(str(choice), choice)
            box.currentIndexChanged.connect(self.changed)
            return box
        if kind is bool:
            check = QCheckBox()
            check.toggled.connect(self.changed)
            return check
        if kind is int and not optional:
            spin = QSpinBox()
            spin.setRange(int(meta.get("min", -_INT_LIMIT)), int(min(meta.get("max", _INT_LIMIT), _INT_LIMIT)))
            spin.setGroupSeparatorShown(True)
            spin.valueChanged.connect(self.changed)
            return spin
        if kind is float:
            # A line edit, not a spin box: learning rates like 5e-05 and epochs like 3 both read
            # naturally; the range is checked by the config's validate(), which names the field.
            edit = QLineEdit()
            validator = QDoubleValidator(edit)
            validator.setLocale(QLocale.c())  # Python's float() reads "0.5", never "0,5"
            edit.setValidator(validator)
            if optional:
                edit.setPlaceholderText("(none)")
            edit.textChanged.connect(self.changed)
            return edit
        # Free text (paths, lists, optional numbers): parsed on value(); an empty box is None.
        edit = QLineEdit()
        if optional:
            edit.setPlaceholderText("(none)")
        edit.textChanged.connect(self.changed)
        return edit

    def set_value(self, config: Any) -> None:
        for name, widget in self.widgets.items():
            self._set_widget(widget, getattr(config, name))

    def _set_widget(self, widget: QWidget, value: Any) -> None:
        if isinstance(widget, QComboBox):
            widget.setCurrentIndex(max(widget.findData(value), 0))
        elif isinstance(widget, QCheckBox):
            widget.setChecked(bool(value))
        elif isinstance(widget, QSpinBox):
            widget.setValue(value)
        elif isinstance(widget, QLineEdit):
            if value is None:
                widget.setText("")
            elif isinstance(value, float):
                widget.setText(f"{value:g}")
            elif isinstance(value, (list, tuple)):
                widget.setText(", ".join(str(v) for v in value))
            else:
                widget.setText(str(value))

    def value(self) -> Any:
        """A new config with the widgets' values. Raises ValueError naming the field for text that
        does not parse; ranges are checked by the config's own validate()."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self.config_type):
            if f.name not in self.widgets or f.name in self._folded:
                continue
            widget = self.widgets[f.name]
            if isinstance(widget, QComboBox):
                values[f.name] = widget.currentData()
            elif isinstance(widget, QCheckBox):
                values[f.name] = widget.isChecked()
            elif isinstance(widget, QSpinBox):
                values[f.name] = widget.value()
            else:
                values[f.name] = self._parse_text(f, widget.text().strip())
        return self._replace(values)

    def show_only(self, shown: Callable[[dataclasses.Field], bool]) -> None:
        """Shows the fields `shown` accepts and hides the others (a method's own settings, say);
        `value()` takes a hidden field's value from the base config, so it stays as it was."""
        self._folded = set()
        self._shown = shown
        for f in dataclasses.fields(self.config_type):
            if f.name in self.widgets and not shown(f):
                self._folded.add(f.name)
                self.set_field(f.name, getattr(self._base, f.name))
        self._show_rows()

    def is_shown(self, name: str) -> bool:
        return name in self.widgets and name not in self._folded

    def set_field(self, name: str, value: Any) -> None:
        self._set_widget(self.widgets[name], value)

    def _replace(self, values: dict[str, Any]) -> Any:
        return dataclasses.replace(self._base, **values)

    def set_base(self, config: Any) -> None:
        """The instance whose hidden fields `value()` keeps (the form shows the others)."""
        self._base = config
        self.set_value(config)

    def _parse_text(self, f: dataclasses.Field, text: str) -> Any:
        kind, optional = _base_type(self.hints[f.name])
        if text == "" and optional:
            return None
        origin = typing.get_origin(kind)
        try:
            if origin in (list, tuple):
                items = [part.strip() for part in text.split(",") if part.strip()]
                return tuple(items) if origin is tuple else items
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
        except ValueError:
            raise ValueError(f"{label_for(f.name)}: {text!r} is not a {kind.__name__}") from None
        return text
