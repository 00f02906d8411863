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

from PySide6.QtCore import QLocale, Signal
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QWidget,
)

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
        self._layout = layout = QFormLayout(self)
        layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        for f in dataclasses.fields(config):
            if f.name in self.hidden or not f.init:
                continue
            widget = self._widget_for(f)
            help_text = f.metadata.get("help", "")
            if help_text:
                widget.setToolTip(help_text)  # tooltips are plain text here: our own prose
            label = plain_label(label_for(f.name))
            label.setToolTip(help_text)
            layout.addRow(label, widget)
            self.widgets[f.name] = widget
        self.set_value(config)

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
        for f in dataclasses.fields(self.config_type):
            widget = self.widgets.get(f.name)
            if widget is None:
                continue
            visible = shown(f)
            self._layout.setRowVisible(widget, visible)
            if not visible:
                self._folded.add(f.name)
                self.set_field(f.name, getattr(self._base, f.name))

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
