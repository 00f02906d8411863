"""A verdict acknowledged on screen survives SIGKILL of the app.

The app runs in a child process (offscreen), labels through its real window with key presses,
and prints one line per verdict once the view says it is recorded. We kill it with SIGKILL
mid-session, then open the file ourselves: every acknowledged verdict must be there, and the
database must pass `PRAGMA integrity_check`.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from rlhf_workbench.core.demo import create_demo_project

CHILD = textwrap.dedent(
    """
    import sys
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication
    from rlhf_workbench.app.main import configure_application, create_main_window, parse_args

    app = QApplication(sys.argv[:1])
    configure_application(app)
    window = create_main_window(parse_args([sys.argv[1], "--annotator", "kim"]))
    window.show_tab(1)
    page = window.label_view.judge_page
    page.verdict_recorded.connect(lambda jid: print("ACK", jid, flush=True))
    keys = [Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_T, Qt.Key.Key_X]
    n = 0

    def press():
        global n
        QTest.keyClick(page, keys[n % len(keys)])
        n += 1
        if n % 7 == 0:  # now and then an undo, so that undone rows are part of the test too
            QTest.keyClick(page, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
            print("UNDO", flush=True)

    timer = QTimer()
    timer.timeout.connect(press)
    timer.start(5)
    app.exec()
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.slow
def test_every_acknowledged_verdict_survives_sigkill(tmp_path, workbench_home):
    create_demo_project(tmp_path / "demo").close()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", RLHF_WORKBENCH_HOME=str(workbench_home))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    acknowledged: list[int] = []
    deadline = time.monotonic() + 60
    try:
        while len(acknowledged) < 40 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            if line.startswith("ACK"):
                acknowledged.append(int(line.split()[1]))
        # Killed while it keeps labelling: some verdicts may be in flight, none acknowledged is lost.
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert len(acknowledged) >= 40, child.stderr.read()
    assert child.returncode == -signal.SIGKILL

    conn = sqlite3.connect(tmp_path / "demo" / "project.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {row[0] for row in conn.execute("SELECT id FROM judgments WHERE annotator = 'kim'")}
        undone = conn.execute("SELECT count(*) FROM judgments WHERE annotator = 'kim' AND undone = 1").fetchone()[0]
    finally:
        conn.close()
    assert set(acknowledged) <= stored
    assert undone >= 5
