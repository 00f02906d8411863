"""Projects: created, opened, and refused with a clear message when they are not usable."""

import hashlib
import sqlite3

import pytest

from rlhf_workbench.core.errors import ProjectError
from rlhf_workbench.core.project import DB_NAME, Project
from rlhf_workbench.core.store import APPLICATION_ID, SCHEMA_VERSION


def _fingerprint(folder):
    """Names and contents of every file under folder: 'changes nothing' means this stays equal."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_create_then_open(tmp_path):
    with Project.create(tmp_path / "exp", name="Experiment 1") as project:
        assert project.name == "Experiment 1"
        assert (tmp_path / "exp" / DB_NAME).is_file()
        assert project.runs_dir.is_dir()
    with Project.open(tmp_path / "exp") as project:
        assert project.name == "Experiment 1"
        assert project.store.counts() == {"prompts": 0, "responses": 0, "pairs": 0, "judgments": 0, "runs": 0}


def test_the_database_is_configured_for_sharing_and_integrity(tmp_path):
    with Project.create(tmp_path / "p") as project:
        conn = project.store.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO judgments(pair_id, annotator, verdict, created_at) VALUES (999, 'x', 'a', 'now')")


def test_opening_the_db_file_itself_opens_its_project(tmp_path):
    Project.create(tmp_path / "p").close()
    with Project.open(tmp_path / "p" / DB_NAME) as project:
        assert project.path == (tmp_path / "p").absolute()


def test_a_folder_that_is_not_a_project_is_refused_and_left_alone(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8 not really")
    before = _fingerprint(folder)
    with pytest.raises(ProjectError, match="not an RLHF Workbench project"):
        Project.open(folder)
    assert _fingerprint(folder) == before


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(ProjectError, match="does not exist"):
        Project.open(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_a_newer_schema_is_refused_and_left_alone(tmp_path):
    Project.create(tmp_path / "p").close()
    db = tmp_path / "p" / DB_NAME
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = _fingerprint(tmp_path / "p")
    with pytest.raises(ProjectError, match="newer RLHF Workbench"):
        Project.open(tmp_path / "p")
    assert _fingerprint(tmp_path / "p") == before


def test_a_corrupt_database_is_refused_and_left_alone(tmp_path):
    Project.create(tmp_path / "p").close()
    db = tmp_path / "p" / DB_NAME
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\x5a" * (4096 - 100)  # scribble over the first page's b-tree
    db.write_bytes(bytes(data))
    before = _fingerprint(tmp_path / "p")
    with pytest.raises(ProjectError):
        Project.open(tmp_path / "p")
    assert _fingerprint(tmp_path / "p") == before


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / DB_NAME).write_text("hello, I am a text file\n" * 200)
    with pytest.raises(ProjectError, match="not a readable project database"):
        Project.open(folder)


def test_somebody_elses_sqlite_database_is_refused(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    conn = sqlite3.connect(folder / DB_NAME)
    conn.execute("CREATE TABLE notes(text)")
    conn.commit()
    conn.close()
    with pytest.raises(ProjectError, match="not an RLHF Workbench project"):
        Project.open(folder)


def test_creating_over_a_project_is_refused(tmp_path):
    Project.create(tmp_path / "p").close()
    with pytest.raises(ProjectError, match="already a project"):
        Project.create(tmp_path / "p")


def test_an_old_schema_is_migrated_forward(tmp_path):
    """A version-0 file (ours, nothing in it yet) is brought to the current schema on open."""
    folder = tmp_path / "p"
    folder.mkdir()
    conn = sqlite3.connect(folder / DB_NAME)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.close()
    with Project.open(folder) as project:
        assert project.store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert project.store.counts()["pairs"] == 0
