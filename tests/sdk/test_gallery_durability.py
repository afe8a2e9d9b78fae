"""A writer killed with SIGKILL mid-enrolment leaves a sound gallery: all of each enrolment or none."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vireid.errors import GalleryError
from vireid.gallery import Gallery

DIM = 256
SPACE = "durability"

CHILD = f"""
import sys
import numpy as np
from vireid.gallery import Gallery

sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_gallery_durability import enrolment

with Gallery(sys.argv[1], embedding_space={SPACE!r}, dim={DIM}) as gallery:
    for i in range(100000):
        name, vectors, modality = enrolment(i)
        print("start", name, flush=True)
        gallery.enroll(name, vectors, modality, camera=i % 4, track_ids=i)
        print("done", name, flush=True)
"""


def enrolment(i: int) -> tuple[str, np.ndarray, str]:
    """The i-th enrolment the child makes: sizes vary so that kills land inside transactions."""
    rng = np.random.default_rng(i)
    count = 20 + 37 * (i % 7)
    return f"id{i:06d}", rng.standard_normal((count, DIM)).astype(np.float32), ("ir", "rgb")[i % 2]


def run_and_kill(path: Path, kill_at: int, delay: float) -> tuple[list[str], list[str]]:
    """Start the child, SIGKILL it `delay` s after it starts enrolment `kill_at`; (started, returned)."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    lines: list[list[str]] = []
    deadline = time.monotonic() + 30.0  # generous: a loaded machine (CI, a parallel run) starts slowly
    while len(lines) <= 2 * kill_at and time.monotonic() < deadline:  # up to "start" of enrolment kill_at
        line = child.stdout.readline()
        if not line:
            break
        lines.append(line.split())
    time.sleep(delay)
    os.kill(child.pid, signal.SIGKILL)
    # the rest through child.stdout, not communicate(): communicate reads the pipe's descriptor and
    # would skip lines readline() had already buffered (a "start" line lost made the test flaky)
    with child.stdout, child.stderr:  # type: ignore[union-attr]
        rest, errors = child.stdout.read(), child.stderr.read()  # type: ignore[union-attr]
    child.wait(timeout=5)
    assert child.returncode == -signal.SIGKILL, errors
    lines += [line.split() for line in rest.splitlines()]
    started = [name for kind, name in lines if kind == "start"]
    returned = [name for kind, name in lines if kind == "done"]
    assert len(started) > kill_at, f"child did not reach enrolment {kill_at}: {errors}"
    return started, returned


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
@pytest.mark.parametrize(("kill_at", "delay"), [(3, 0.0), (8, 0.002), (15, 0.006)])
def test_sigkill_mid_enrolment_keeps_whole_enrolments_only(
    tmp_path: Path, kill_at: int, delay: float
) -> None:
    path = tmp_path / "g.db"
    started, returned = run_and_kill(path, kill_at, delay)

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    with Gallery.open(path, SPACE) as gallery:
        stored = {info.name: info.num_embeddings for info in gallery.identities()}
        assert set(returned) <= set(stored), "an enrolment reported as returned is missing"
        assert set(stored) <= set(started), "more enrolments than the child started"
        for i, name in enumerate(sorted(stored)):
            expected_name, vectors, _ = enrolment(i)
            assert name == expected_name and stored[name] == len(vectors), f"partial enrolment {name}"
        last = gallery.embeddings(sorted(stored)[-1])
        expected = enrolment(len(stored) - 1)[1]
        np.testing.assert_allclose(
            last.vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6
        )
        assert gallery.info().num_embeddings == sum(stored.values())


def test_a_damaged_schema_version_in_the_header_is_a_gallery_error(tmp_path: Path) -> None:
    """SQLite's user_version (header offset 60) is signed: a damaged byte can make it negative, which no
    vireid writes (found by the fuzz test: it used to raise IndexError from the migration table)."""
    from vireid.errors import GalleryError

    path = tmp_path / "g.db"
    with Gallery(path, embedding_space="space-x", dim=4) as gallery:
        gallery.enroll("alice", np.eye(4, dtype=np.float32)[:1], "visible")
    with path.open("r+b") as file:
        file.seek(60)
        file.write(b"\x80\x00\x00\x00")
    with pytest.raises(GalleryError, match=r"schema version reads -2147483648.*header is damaged"):
        Gallery.open(path)


@pytest.mark.parametrize(
    "damage", ["DELETE FROM meta WHERE key = 'generation'", "UPDATE meta SET value = 'x' WHERE key = 'epoch'"]
)
def test_damaged_change_counters_are_a_gallery_error(tmp_path: Path, damage: str) -> None:
    """Found by the fuzz test (20,000 examples): a corrupted meta key raised KeyError."""
    from vireid.errors import GalleryError

    path = tmp_path / "g.db"
    with Gallery(path, embedding_space="space-x", dim=4) as gallery:
        gallery.enroll("alice", np.eye(4, dtype=np.float32)[:1], "visible")
    with sqlite3.connect(path) as conn:
        conn.execute(damage)
    with (
        pytest.raises(GalleryError, match=r"meta table is damaged \(generation/epoch counters"),
        Gallery.open(path) as gallery,
    ):
        gallery.search(np.eye(4, dtype=np.float32)[:1])


def test_embeddings_of_an_identity_the_table_lacks_are_a_gallery_error(tmp_path: Path) -> None:
    """Found by the fuzz test (20,000 examples): a damaged identities row made search raise KeyError."""
    from vireid.errors import GalleryError

    path = tmp_path / "g.db"
    with Gallery(path, embedding_space="space-x", dim=4) as gallery:
        gallery.enroll("alice", np.eye(4, dtype=np.float32)[:2], "visible")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("UPDATE identities SET id = 7 WHERE name = 'alice'")
    with (
        pytest.raises(GalleryError, match=r"damaged: embeddings belong to identity ids \[1\]"),
        Gallery.open(path) as gallery,
    ):
        gallery.search(np.eye(4, dtype=np.float32)[:1])


def test_removed_identities_leave_no_bytes_in_the_database_or_its_wal(tmp_path: Path) -> None:
    """`remove` / `purge` are how biometric data is erased: the WAL used to keep the enrolment's page
    images (name and metadata readable in `g.db-wal`) until the last connection closed, and SQLite builds
    without SECURE_DELETE (SQLCipher's) left deleted rows in free pages."""
    path = tmp_path / "g.db"
    with Gallery(path, "space", 16) as g:
        g.enroll("kept", np.eye(16, dtype=np.float32)[:1], "ir")
        g.enroll(
            "SECRET_PERSON_NAME", np.eye(16, dtype=np.float32)[1:3], "ir", metadata={"id": "123-45-6789"}
        )
        g.remove("SECRET_PERSON_NAME")
        files = sorted(tmp_path.glob("g.db*"))  # while the gallery is still open
        assert any(f.name == "g.db-wal" for f in files)
        for f in files:
            data = f.read_bytes()
            assert b"SECRET_PERSON_NAME" not in data and b"123-45-6789" not in data, f.name
        assert g._store._conn.execute("PRAGMA secure_delete").fetchone() == (1,)


def test_a_gallery_is_not_created_through_a_dangling_symlink(tmp_path: Path) -> None:
    """SQLite would follow the link and create the target world-readable (the umask's mode)."""
    link = tmp_path / "g.db"
    link.symlink_to(tmp_path / "elsewhere" / "target.db")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(GalleryError, match=r"g\.db: is a symbolic link to a missing file"):
        Gallery(link, "space", 16)
    assert not (tmp_path / "elsewhere" / "target.db").exists()


def test_a_removal_while_another_connection_reads_neither_waits_nor_fails(tmp_path: Path) -> None:
    """The WAL truncation after a removal waited the whole busy timeout for a reader to finish, holding
    the write lock (other processes' writes failed meanwhile); now it is skipped and done at close."""
    import sqlite3

    path = tmp_path / "g.db"
    gallery = Gallery(path, "space", 16, timeout=5.0)
    gallery.enroll("SECRET_PERSON_NAME", np.eye(16, dtype=np.float32)[:1], "ir")
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM identities").fetchall()  # holds a read snapshot
    started = time.monotonic()
    assert gallery.remove("SECRET_PERSON_NAME") == 1
    waited = time.monotonic() - started
    assert waited < 2.5, f"the removal waited {waited:.1f} s for the reader"  # the busy timeout is 5 s
    reader.execute("ROLLBACK")
    reader.close()
    gallery.close()  # the pending truncation happens here
    assert b"SECRET_PERSON_NAME" not in path.read_bytes()
    assert not Path(f"{path}-wal").exists() or b"SECRET_PERSON_NAME" not in Path(f"{path}-wal").read_bytes()
