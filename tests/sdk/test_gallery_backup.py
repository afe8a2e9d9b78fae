"""`Gallery.backup` / `vireid gallery backup`: a consistent copy of a gallery taken with SQLite's online
backup API, also while another process enrols; owner-only, atomic (nothing half-written is ever left at
the target), never onto the gallery itself, and encrypted with the gallery's key when it is encrypted.

Real SQLite (and SQLCipher), real files, a real second process."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vireid import Gallery, GalleryError
from vireid.cli.main import main
from vireid.gallery import backup as backup_module
from vireid.gallery.schema import SQLITE_HEADER
from vireid.gallery.store import GalleryStore

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

SPACE = "backup-space"
DIM = 32
KEY = "correct horse battery staple"

needs_sqlcipher = pytest.mark.skipif(
    importlib.util.find_spec("sqlcipher3") is None,
    reason="encrypted galleries need the sqlcipher3 module (pip install 'vireid[crypto]'; the dev extra "
    "has it), which is not importable here",
)

CHILD = f"""
import sys
import time
from vireid.gallery import Gallery

sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_gallery_backup import enrolment

with Gallery(sys.argv[1], embedding_space={SPACE!r}, dim={DIM}) as gallery:
    for i in range(3000):  # several per millisecond: at most ~40 MB, then it idles until killed
        name, vectors, modality = enrolment(i)
        gallery.enroll(name, vectors, modality, camera=i % 3, track_ids=i)
        print("done", name, flush=True)
time.sleep(600)
"""


def enrolment(i: int) -> tuple[str, np.ndarray, str]:
    """The i-th enrolment the writer process makes, each one transaction of a different size."""
    rng = np.random.default_rng(i)
    count = 10 + 29 * (i % 5)
    return f"id{i:06d}", rng.standard_normal((count, DIM)).astype(np.float32), ("rgb", "ir")[i % 2]


def contents(gallery: Gallery) -> dict[str, Any]:
    """Everything a gallery holds, comparable with ==: binding, identities and every embedding."""
    info = gallery.info()
    out: dict[str, Any] = {
        "info": (info.embedding_space, info.dim, info.schema_version, info.created_at, info.vireid_version),
        "counts": (info.num_identities, info.num_embeddings),
        "identities": [
            (i.name, dict(i.metadata), {str(m): n for m, n in i.counts.items()}, i.created_at)
            for i in gallery.identities()
        ],
    }
    for item in gallery.identities():
        stored = gallery.embeddings(item.name)
        out[item.name] = (
            stored.ids.tolist(),
            stored.vectors.tolist(),
            stored.modalities.tolist(),
            stored.timestamps.tolist(),
            stored.cameras,
            stored.track_ids,
            stored.sources,
        )
    return out


def key_file(folder: Path) -> Path:
    path = folder / "gallery.key"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def gallery_path(tmp_path: Path) -> Path:
    """A gallery with both modalities, cameras, tracks, sources, metadata, a removal and a rename."""
    rng = np.random.default_rng(0)
    path = tmp_path / "site.db"
    with Gallery(path, SPACE, DIM) as g:
        sources = ["a.png", "b.png", "c.png"]
        g.enroll("alice", rng.standard_normal((3, DIM)), ["rgb", "ir", "ir"], camera="gate-1",
                 track_ids=[1, 2, 3], sources=sources, metadata={"team": "red"})  # fmt: skip
        g.enroll("bob", rng.standard_normal((2, DIM)), "visible", camera=7)
        g.enroll("carol", rng.standard_normal((2, DIM)), "infrared")
        g.remove_embeddings(g.embeddings("bob").ids[:1])
        g.rename("carol", "caroline")
    return path


def leftovers(folder: Path, *keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# ----- content ------------------------------------------------------------------------------------
def test_a_backup_is_the_same_gallery_and_independent_of_it(gallery_path: Path, tmp_path: Path) -> None:
    target = tmp_path / "backups" / "site-copy.db"  # the folder is created, as for an export
    with Gallery.open(gallery_path) as gallery:
        assert gallery.backup(target) == target
        original = contents(gallery)
        query = np.random.default_rng(1).standard_normal((2, DIM))
        expected = gallery.search_identities(query, k=3), gallery.search(query, k=5, modality="ir")
    with Gallery.open(target, SPACE, DIM) as copy:
        assert contents(copy) == original
        assert (copy.search_identities(query, k=3), copy.search(query, k=5, modality="ir")) == expected
        new_ids = copy.enroll("dave", np.ones((1, DIM)), "rgb")
    assert new_ids[0] > max(max(original[n][0]) for n in ("alice", "bob", "caroline"))  # ids never reused
    with Gallery.open(gallery_path) as gallery:
        assert contents(gallery) == original  # the copy is a file of its own
    with pytest.raises(GalleryError, match="other-space"):  # the copy keeps the embedding-space binding
        Gallery.open(target, "other-space")
    assert leftovers(target.parent) == ["site-copy.db"]  # no temporary file, no -wal / -shm


def test_the_copy_is_owner_only_whatever_the_umask(gallery_path: Path, tmp_path: Path) -> None:
    replaced = tmp_path / "replaced.db"
    replaced.write_bytes(b"an older file")
    replaced.chmod(0o644)
    old_umask = os.umask(0)
    try:
        with Gallery.open(gallery_path) as gallery:
            fresh = gallery.backup(tmp_path / "fresh.db")
            gallery.backup(replaced, overwrite=True)
    finally:
        os.umask(old_umask)
    assert fresh.stat().st_mode & 0o777 == 0o600
    assert replaced.stat().st_mode & 0o777 == 0o600


def test_a_memory_gallery_backs_up_to_a_file(tmp_path: Path) -> None:
    with Gallery(":memory:", SPACE, DIM) as gallery:
        gallery.enroll("alice", np.eye(DIM)[:2], "rgb")
        gallery.backup(tmp_path / "kept.db")
        original = contents(gallery)
    with Gallery.open(tmp_path / "kept.db", SPACE) as copy:
        assert contents(copy) == original


# ----- a writer in another process ----------------------------------------------------------------
def test_a_backup_taken_while_another_process_enrols_is_one_committed_state(tmp_path: Path) -> None:
    """Every backup is the gallery after some whole number of enrolments, one it held while the backup
    ran: identities id000000..k-1, each with all of its vectors, the change counter at k (one commit per
    enrolment), and k between the counts seen just before and just after the backup (commits still in
    the WAL included)."""
    path = tmp_path / "live.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    taken: list[tuple[Path, int, int]] = []  # (backup, identities before it, identities after it)
    try:
        for _ in range(3):  # the writer has created the gallery and goes on
            assert writer.stdout.readline().startswith("done"), "the writer process did not start"
        with Gallery.open(path) as gallery:
            deadline = time.monotonic() + 60.0
            while time.monotonic() < deadline and (len(taken) < 4 or len({t[1] for t in taken}) < 2):
                before = gallery.info().num_identities
                backup = gallery.backup(tmp_path / f"backup{len(taken)}.db")
                taken.append((backup, before, gallery.info().num_identities))
                assert writer.poll() is None, f"the writer process failed: {writer.stderr.read()}"  # type: ignore[union-attr]
                time.sleep(0.05)
    finally:
        writer.kill()
        with writer.stdout, writer.stderr:  # type: ignore[union-attr]
            errors = writer.stderr.read()  # type: ignore[union-attr]
        writer.wait(timeout=10)
    assert len({t[1] for t in taken}) >= 2, f"the writer made no progress between backups ({errors})"
    for backup, before, after in taken:
        with contextlib.closing(sqlite3.connect(backup)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            (generation,) = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        with Gallery.open(backup, SPACE, DIM) as copy:
            stored = {item.name: item.num_embeddings for item in copy.identities()}
            names = [enrolment(i)[0] for i in range(len(stored))]
            assert sorted(stored) == names, f"{backup.name}: not a prefix of the enrolments"
            for i, name in enumerate(names):
                assert stored[name] == len(enrolment(i)[1]), f"{backup.name}: partial enrolment {name}"
            assert int(generation) == len(stored), f"{backup.name}: not a commit boundary"
            assert before <= len(stored) <= after, (
                f"{backup.name}: not a state of the gallery during the backup"
            )
            last = copy.embeddings(names[-1]).vectors
            vectors = enrolment(len(names) - 1)[1]
            np.testing.assert_allclose(
                last, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), atol=1e-6
            )


# ----- refusals and failures ----------------------------------------------------------------------
def test_an_existing_file_is_replaced_only_with_overwrite(gallery_path: Path, tmp_path: Path) -> None:
    target = tmp_path / "kept.db"
    target.write_bytes(b"someone's file")
    with Gallery.open(gallery_path) as gallery:
        with pytest.raises(GalleryError, match=r"kept\.db: exists; .*overwrite=True \(CLI: --overwrite\)"):
            gallery.backup(target)
        assert target.read_bytes() == b"someone's file"
        gallery.backup(target, overwrite=True)
        original = contents(gallery)
    with Gallery.open(target) as copy:
        assert contents(copy) == original


def test_a_target_in_use_or_with_a_stale_wal_is_refused(gallery_path: Path, tmp_path: Path) -> None:
    """A stale -wal would be applied to the new file by SQLite; an open one belongs to a live gallery."""
    in_use = tmp_path / "in-use.db"
    with (
        Gallery.open(gallery_path) as gallery,
        Gallery(in_use, "other", 4),
        pytest.raises(GalleryError, match=r"in-use\.db: is in use \(in-use\.db-wal exists"),
    ):
        gallery.backup(in_use, overwrite=True)
    with Gallery.open(in_use, "other") as other:
        assert other.identities() == []  # untouched
    stale = tmp_path / "stale.db"
    Path(f"{stale}-wal").write_bytes(b"frames of a deleted gallery")
    with (
        Gallery.open(gallery_path) as gallery,
        pytest.raises(GalleryError, match=r"stale\.db-wal: a leftover"),
    ):
        gallery.backup(stale)
    assert not stale.exists()


def test_the_gallery_itself_is_refused_however_it_is_named(gallery_path: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.db"
    link.symlink_to(gallery_path)
    hard = tmp_path / "hard.db"
    os.link(gallery_path, hard)
    (tmp_path / "sub").mkdir()
    with Gallery.open(gallery_path) as gallery:
        original = contents(gallery)
        for same in (gallery_path, tmp_path / "sub" / ".." / "site.db", link, hard, f"{gallery_path}-wal"):
            with pytest.raises(GalleryError, match="is the gallery being backed up"):
                gallery.backup(same, overwrite=True)
        with pytest.raises(GalleryError, match=r"is a folder; name the backup file"):
            gallery.backup(tmp_path / "sub")
    with Gallery.open(gallery_path) as gallery:
        assert contents(gallery) == original


def test_a_symlinked_target_is_refused_and_its_real_file_checked_for_use(
    gallery_path: Path, tmp_path: Path
) -> None:
    """SQLite follows links, so a database opened through `links/g.db` keeps its -wal/-shm next to
    `real/g.db`: the in-use check looks there too. A link itself is refused whether or not its file is
    in use (replacing it would turn the link into a regular file and leave the real one as it was); the
    message names the real file, which is then a valid target and shows through the link."""
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    real, link = tmp_path / "real" / "g.db", tmp_path / "links" / "g.db"
    link.symlink_to(real)
    with Gallery.open(gallery_path) as gallery:
        original = contents(gallery)
        with Gallery(real, "other", 4) as elsewhere:  # open in WAL mode, through its real name
            elsewhere.enroll("zed", np.eye(4)[:1], "rgb")
            for overwrite in (True, False):
                with pytest.raises(
                    GalleryError, match=rf"g\.db: is in use \({re.escape(str(real))}-wal exists"
                ):
                    gallery.backup(link, overwrite=overwrite)
        assert link.is_symlink() and os.readlink(link) == str(real)
        with Gallery.open(real, "other") as elsewhere:
            assert [i.name for i in elsewhere.identities()] == ["zed"]  # untouched
        for overwrite in (True, False):
            with pytest.raises(
                GalleryError,
                match=rf"g\.db: is a symbolic link to {re.escape(str(real))}; .* Write the backup to "
                rf"{re.escape(str(real))} itself",
            ):
                gallery.backup(link, overwrite=overwrite)
        assert link.is_symlink() and os.readlink(link) == str(real)
        gallery.backup(real, overwrite=True)  # the real file, as the message says
        dangling = tmp_path / "links" / "dangling.db"
        dangling.symlink_to(tmp_path / "real" / "missing.db")
        with pytest.raises(GalleryError, match=r"dangling\.db: is a symbolic link to .*missing\.db"):
            gallery.backup(dangling)
        assert not (tmp_path / "real" / "missing.db").exists()
        folder_link = tmp_path / "via-folder-link"
        folder_link.symlink_to(tmp_path / "real", target_is_directory=True)
        gallery.backup(folder_link / "copy.db")  # a link in the folders above is fine
    with Gallery.open(link) as copy, Gallery.open(tmp_path / "real" / "copy.db") as other:
        assert contents(copy) == original == contents(other)
    assert leftovers(tmp_path / "real") == ["copy.db", "g.db"]
    assert leftovers(tmp_path / "links") == ["dangling.db", "g.db"]


def test_the_sameness_check_survives_a_change_of_folder_and_a_renamed_gallery(
    gallery_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gallery opened by a relative path, then the process changes folder, and the file is renamed
    while open: the gallery is still recognised (by the names SQLite gave its files and by the file's
    identity taken when it was opened), and other targets are backed up, never a FileNotFoundError."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)
    with Gallery.open("site.db") as gallery:
        original = contents(gallery)
        monkeypatch.chdir(elsewhere)
        with pytest.raises(GalleryError, match="is the gallery being backed up"):
            gallery.backup(gallery_path, overwrite=True)
        gallery.backup("site.db")  # relative to the folder now: elsewhere/site.db, another file
        gallery.backup("site.db", overwrite=True)  # exists now, and is still not the gallery
        moved = tmp_path / "moved.db"
        os.rename(gallery_path, moved)
        for same in (moved, gallery_path, f"{gallery_path}-wal"):  # new name; SQLite's names for its files
            with pytest.raises(GalleryError, match="is the gallery being backed up"):
                gallery.backup(same, overwrite=True)
        gallery.backup(tmp_path / "after-rename.db")
    for copy_path in (elsewhere / "site.db", tmp_path / "after-rename.db"):
        with Gallery.open(copy_path) as copy:
            assert contents(copy) == original
    with Gallery.open(moved) as gallery:
        assert contents(gallery) == original


def test_a_damaged_gallery_is_not_backed_up_and_leaves_nothing(tmp_path: Path) -> None:
    """The copy is checked before it is renamed into place: a gallery with a damaged page (the copy is
    page for page the same) makes the backup fail after its temporary file was written, which goes."""
    path = tmp_path / "damaged.db"
    with Gallery(path, SPACE, 64) as g:
        g.enroll("alice", np.random.default_rng(0).standard_normal((200, 64)), "rgb")
    with path.open("r+b") as fh:  # a page of the vectors table, which opening the gallery never reads
        fh.seek(path.stat().st_size - 2 * 4096)
        fh.write(b"\xff" * 16)
    out = tmp_path / "out"
    with (
        Gallery.open(path) as gallery,
        pytest.raises(GalleryError, match=r"damaged\.db: the gallery is damaged .* no backup was written"),
    ):
        gallery.backup(out / "copy.db")
    assert leftovers(out) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_failed_rename_or_link_leaves_no_temporary_file(
    gallery_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overwrite: bool
) -> None:
    """The last step (a rename with overwrite, a hard link without) failing, as on a full or vanished
    file system."""

    def fail(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "out"
    out.mkdir()
    with Gallery.open(gallery_path) as gallery:
        monkeypatch.setattr(os, "replace", fail)
        monkeypatch.setattr(os, "link", fail)
        with pytest.raises(
            GalleryError, match=r"copy\.db: writing the backup .*\(No space left on device\); nothing was"
        ):
            gallery.backup(out / "copy.db", overwrite=overwrite)
    assert leftovers(out) == []


def test_a_file_created_at_the_target_during_the_copy_is_kept__our_publish_wrapped(
    gallery_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without overwrite the copy is hard-linked into place, which fails if a file appeared there after
    the up-front check (a rename would replace it): `backup._publish` is wrapped to create that file
    first (another process racing this one), then the real publish runs on real files."""
    real_publish = backup_module._publish

    def late_file_first(tmp: Path, target: Path, overwrite: bool) -> None:
        target.write_bytes(b"someone's file")
        real_publish(tmp, target, overwrite)

    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(backup_module, "_publish", late_file_first)
    with Gallery.open(gallery_path) as gallery:
        with pytest.raises(GalleryError, match=r"late\.db: exists; .*overwrite=True \(CLI: --overwrite\)"):
            gallery.backup(out / "late.db")
        assert (out / "late.db").read_bytes() == b"someone's file"
        assert leftovers(out) == ["late.db"]  # the temporary copy went
        gallery.backup(out / "replaced.db", overwrite=True)  # overwrite: replaced, as asked
        original = contents(gallery)
    with Gallery.open(out / "replaced.db") as copy:
        assert contents(copy) == original
    assert leftovers(out) == ["late.db", "replaced.db"]


def test_without_hard_links_the_copy_is_renamed_into_place_after_a_second_look(
    gallery_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system without hard links (FAT, exFAT, some network shares: link() fails with EPERM):
    the backup is still written, by a rename right after looking again; a file that appeared before that
    look is kept (`backup._publish` wrapped to create it, as above)."""

    def no_hard_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    out = tmp_path / "out"
    monkeypatch.setattr(os, "link", no_hard_links)
    with Gallery.open(gallery_path) as gallery:
        gallery.backup(out / "copy.db")
        original = contents(gallery)
        real_publish = backup_module._publish

        def late_file_first(tmp: Path, target: Path, overwrite: bool) -> None:
            target.write_bytes(b"someone's file")
            real_publish(tmp, target, overwrite)

        monkeypatch.setattr(backup_module, "_publish", late_file_first)
        with pytest.raises(GalleryError, match=r"late\.db: exists; choose another path"):
            gallery.backup(out / "late.db")
    assert (out / "late.db").read_bytes() == b"someone's file"
    assert leftovers(out) == ["copy.db", "late.db"]
    with Gallery.open(out / "copy.db") as copy:
        assert contents(copy) == original


@pytest.mark.skipif(fcntl is None, reason="reading a descriptor's access mode needs fcntl (POSIX)")
def test_the_copy_is_fsynced_through_a_writable_descriptor(
    gallery_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows refuses to flush a descriptor opened read-only: the copy is fsynced, as `atomic_file` does,
    through the descriptor that created it (os.fsync wrapped to note each file's access mode)."""
    modes: list[int] = []
    real_fsync = os.fsync

    def noting(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # the folder's fsync is best effort, and not on Windows
            modes.append(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE)  # type: ignore[union-attr]
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", noting)
    with Gallery.open(gallery_path) as gallery:
        gallery.backup(tmp_path / "copy.db")
    assert modes and all(mode in (os.O_WRONLY, os.O_RDWR) for mode in modes), modes


def test_the_copy_is_checked_without_a_shm_or_journal_beside_it_and_opens_as_wal(
    gallery_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checking connection holds the copy in exclusive locking mode with an in-memory journal: no
    `-shm` (what fails on network shares) and no `-journal` appear beside it at any point, only the
    `-wal` of the checks, gone at the end (`backup._check_copy` wrapped to list the folder while the
    connection is open). The copy then opens as a normal WAL gallery, shared by several connections."""
    seen: list[list[str]] = []
    real_check = backup_module._check_copy
    real_copy_into = GalleryStore.copy_into

    def listing(*args: Any) -> None:
        seen.append(leftovers(out))
        real_check(*args)
        seen.append(leftovers(out))

    def copy_into(self: GalleryStore, target: Any) -> None:
        real_copy_into(self, target)
        seen.append(leftovers(out))

    out = tmp_path / "out"
    monkeypatch.setattr(backup_module, "_check_copy", listing)
    monkeypatch.setattr(GalleryStore, "copy_into", copy_into)
    with Gallery.open(gallery_path) as gallery:
        gallery.backup(out / "copy.db")
        original = contents(gallery)
    assert len(seen) == 3 and any(name.endswith(".tmp-wal") for name in seen[-1]), seen
    assert not [name for names in seen for name in names if name.endswith(("-shm", "-journal"))], seen
    assert leftovers(out) == ["copy.db"]
    with Gallery.open(out / "copy.db") as copy, contextlib.closing(sqlite3.connect(out / "copy.db")) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("SELECT count(*) FROM identities").fetchone() == (3,)  # no lock held on it
        assert contents(copy) == original
        copy.enroll("dave", np.ones((1, DIM)), "rgb")
        assert {"copy.db-wal", "copy.db-shm"} <= set(leftovers(out))  # shared WAL mode, as any gallery
    assert leftovers(out) == ["copy.db"]


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: a folder's permissions do not stop root from writing in it, so an unwritable "
    "target folder cannot be made here (the other failure tests check that nothing is left behind)",
)
def test_an_unwritable_folder_is_a_gallery_error_and_leaves_nothing(
    gallery_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o500)
    try:
        with (
            Gallery.open(gallery_path) as gallery,
            pytest.raises(GalleryError, match=r"cannot write the backup there .*writable by this user"),
        ):
            gallery.backup(out / "copy.db")
        assert leftovers(out) == []
    finally:
        out.chmod(0o700)


# ----- encrypted galleries ------------------------------------------------------------------------
@needs_sqlcipher
def test_an_encrypted_gallerys_backup_is_encrypted_with_its_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("VIREID_GALLERY_KEY", raising=False)
    monkeypatch.delenv("VIREID_GALLERY_KEY_FILE", raising=False)
    path, key = tmp_path / "secure.db", key_file(tmp_path)
    with Gallery(path, SPACE, DIM, key_file=key) as gallery:
        gallery.enroll("alice-smith", np.eye(DIM)[:3], "visible", camera="gate-7", metadata={"badge": 7})
        target = gallery.backup(tmp_path / "copy.db")
        original = contents(gallery)
    data = target.read_bytes()
    assert data[:16] != SQLITE_HEADER and b"alice-smith" not in data and b"gate-7" not in data
    assert target.stat().st_mode & 0o777 == 0o600
    with Gallery.open(target, SPACE, DIM, key_file=key) as copy:
        assert contents(copy) == original
    with pytest.raises(GalleryError, match="encrypted gallery give its key"):
        Gallery.open(target)
    other = tmp_path / "other"
    other.mkdir()
    (other / "gallery.key").write_text("not the key\n")
    (other / "gallery.key").chmod(0o600)
    with pytest.raises(GalleryError, match="cannot be decrypted; the key is wrong"):
        Gallery.open(target, key_file=other / "gallery.key")
    with sqlite3.connect(target) as conn, pytest.raises(sqlite3.DatabaseError):
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # not plain SQLite either


@needs_sqlcipher
def test_a_gallery_opened_by_the_older_whitespace_key_backs_up_with_that_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy is keyed with the key that actually opened the gallery, so it opens the same way."""
    from vireid.gallery.store import GalleryStore

    path, secret = tmp_path / "old.db", KEY + "\n"
    GalleryStore(path, embedding_space=SPACE, dim=DIM, key=secret).close()  # as an older vireid keyed it
    monkeypatch.delenv("VIREID_GALLERY_KEY_FILE", raising=False)
    monkeypatch.setenv("VIREID_GALLERY_KEY", secret)
    with Gallery.open(path) as gallery:
        gallery.enroll("bob", np.eye(DIM)[:1], "ir")
        gallery.backup(tmp_path / "copy.db")
    with Gallery.open(tmp_path / "copy.db") as copy:
        assert [i.name for i in copy.identities()] == ["bob"]


# ----- command line -------------------------------------------------------------------------------
def test_cli_backup_prints_what_it_wrote_and_refuses_to_overwrite(
    gallery_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "copy.db"
    assert main(["gallery", "backup", str(gallery_path), str(out)]) == 0
    said = capsys.readouterr().out
    assert f"backed up 3 identities, 6 embeddings of {gallery_path} to {out} (" in said and "KiB" in said
    assert out.stat().st_mode & 0o777 == 0o600
    assert main(["gallery", "backup", str(gallery_path), str(out)]) == 1
    assert "exists; choose another path" in capsys.readouterr().err
    assert main(["gallery", "backup", "--overwrite", "-g", str(gallery_path), str(out)]) == 0  # like siblings
    assert main(["gallery", "backup", str(gallery_path)]) == 1
    said = capsys.readouterr().err
    assert f"backup needs OUT, the backup file to write, after the gallery (got only {gallery_path})" in said
    assert main(["gallery", "backup", "-g", str(gallery_path)]) == 1
    assert (
        f"backup needs OUT, the backup file to write, after the gallery (got only --gallery {gallery_path})"
        in (capsys.readouterr().err)
    )
    assert main(["gallery", "backup"]) == 1
    assert "backup needs GALLERY, the gallery database, and OUT" in capsys.readouterr().err
    assert main(["gallery", "backup", "-g", str(gallery_path), str(out), str(tmp_path / "y.db")]) == 1
    assert "backup takes the gallery and the backup file, got: " in capsys.readouterr().err
    assert main(["gallery", "backup", str(tmp_path / "missing.db"), str(tmp_path / "x.db")]) == 1
    assert "no gallery file here" in capsys.readouterr().err and not (tmp_path / "x.db").exists()
    with Gallery.open(gallery_path) as gallery, Gallery.open(out) as copy:
        assert contents(copy) == contents(gallery)
    with pytest.raises(SystemExit) as shown:
        main(["gallery", "--help"])
    assert shown.value.code == 0
    assert "backup    write a consistent copy of the gallery database" in capsys.readouterr().out


@needs_sqlcipher
def test_cli_backup_of_an_encrypted_gallery_takes_the_key_file(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("VIREID_GALLERY_KEY", raising=False)
    monkeypatch.delenv("VIREID_GALLERY_KEY_FILE", raising=False)
    path, key = tmp_path / "secure.db", key_file(tmp_path)
    with Gallery(path, SPACE, DIM, key_file=key) as gallery:
        gallery.enroll("carol", np.eye(DIM)[:2], "ir")
    out = tmp_path / "copy.db"
    assert main(["gallery", "backup", str(path), str(out)]) == 1
    assert "--key-file" in capsys.readouterr().err and not out.exists()
    assert main(["gallery", "backup", "--key-file", str(key), str(path), str(out)]) == 0
    assert "backed up 1 identities, 2 embeddings" in capsys.readouterr().out
    assert out.read_bytes()[:16] != SQLITE_HEADER
    with Gallery.open(out, key_file=key) as copy:
        assert [i.name for i in copy.identities()] == ["carol"]
