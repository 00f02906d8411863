"""The Qt binding keeps Python's reference counts straight.

PySide6 6.12.0 on Python 3.11 dropped a reference to None on every call returning nothing and
to True on every signal emit; after a few thousand the interpreter aborted ("Fatal Python error:
bool_dealloc"), which in the app means a labeller's session dying after some minutes. The pins
avoid that release; this test catches any release that brings it back.
"""

import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel


class _Emitter(QObject):
    fired = Signal(int)


def test_void_calls_and_emits_keep_reference_counts(qapp):
    label = QLabel()
    emitter = _Emitter()
    received = []
    emitter.fired.connect(received.append)
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for n in range(200):
        label.setText("x")
        qapp.processEvents()
        emitter.fired.emit(n)
    # A few references come and go with the interpreter's own work; a leak would be hundreds.
    assert abs(sys.getrefcount(None) - none_before) < 50
    assert abs(sys.getrefcount(True) - true_before) < 50
    assert received == list(range(200))
