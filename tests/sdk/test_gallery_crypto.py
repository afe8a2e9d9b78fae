"""Encrypted galleries (SQLCipher, extra `crypto`): keys from a private file or the environment, never
the command line; nothing readable on disk without the key; clear errors for a missing or wrong key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sqlcipher3")

from vireid import Gallery, GalleryError
from vireid.cli.main import main

VECS = np.eye(8, dtype=np.float32)


def key_file(tmp_path: Path, text: str = "correct horse battery staple", mode: int = 0o600) -> Path:
    path = tmp_path / "gallery.key"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def test_encrypted_gallery_round_trip_and_nothing_readable_on_disk(tmp_path: Path) -> None:
    db, key = tmp_path / "secure.db", key_file(tmp_path)
    with Gallery(db, embedding_space="space-x", dim=8, key_file=key) as gallery:
        gallery.enroll("alice-smith", VECS[:2], "visible", camera="gate-7")
        on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("secure.db*"))  # db, -wal, -shm
    assert (
        not on_disk.startswith(b"SQLite format 3")
        and b"alice-smith" not in on_disk
        and b"gate-7" not in on_disk
    )
    with Gallery.open(db, "space-x", key_file=key) as gallery:
        assert [i.name for i in gallery.identities()] == ["alice-smith"]
        assert gallery.search(VECS[:1], k=1)[0][0].identity == "alice-smith"


def test_missing_or_wrong_key_is_a_clear_error(tmp_path: Path, monkeypatch, capfd) -> None:
    db = tmp_path / "secure.db"
    with Gallery(db, embedding_space="space-x", dim=8, key_file=key_file(tmp_path)) as gallery:
        gallery.enroll("bob", VECS[:1], "infrared")
    monkeypatch.delenv("VIREID_GALLERY_KEY", raising=False)
    with pytest.raises(GalleryError, match="encrypted gallery give its key"):
        Gallery.open(db)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    with pytest.raises(GalleryError, match="cannot be decrypted; the key is wrong"):
        Gallery.open(db, key_file=key_file(wrong, "not the key"))
    assert "ERROR CORE" not in capfd.readouterr().err  # SQLCipher's own log (C stderr) stays quiet
    monkeypatch.setenv("VIREID_GALLERY_KEY", "correct horse battery staple")
    with Gallery.open(db) as gallery:  # the environment supplies the key (how `vireid run` gets it)
        assert [i.name for i in gallery.identities()] == ["bob"]


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match=r"readable by other users.*chmod 600"):
        Gallery(tmp_path / "g.db", embedding_space="s", dim=8, key_file=key_file(tmp_path, mode=0o644))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GalleryError, match="key file is empty"):
        Gallery(tmp_path / "g.db", embedding_space="s", dim=8, key_file=key_file(empty, ""))


def test_cli_reads_the_key_from_a_file(tmp_path: Path, capsys) -> None:
    db, key = tmp_path / "secure.db", key_file(tmp_path)
    with Gallery(db, embedding_space="space-x", dim=8, key_file=key) as gallery:
        gallery.enroll("carol", VECS[:3], "visible")
    assert main(["gallery", "list", "-g", str(db), "--key-file", str(key)]) == 0
    assert "carol" in capsys.readouterr().out
    assert main(["gallery", "list", "-g", str(db)]) == 1
    assert "--key-file" in capsys.readouterr().err


@pytest.mark.parametrize("ending", ["\n", "\r\n", "  \n"])
def test_the_environment_key_is_stripped_like_the_key_file(tmp_path: Path, monkeypatch, ending: str) -> None:
    """A secret delivered with its file's newline (a Kubernetes secret made from the key file) used to
    open with "the key is wrong": the file's line was stripped, the variable was not."""
    db = tmp_path / "secure.db"
    with Gallery(db, embedding_space="space-x", dim=8, key_file=key_file(tmp_path)) as gallery:
        gallery.enroll("dave", VECS[:1], "visible")
    monkeypatch.delenv("VIREID_GALLERY_KEY_FILE", raising=False)
    monkeypatch.setenv("VIREID_GALLERY_KEY", "correct horse battery staple" + ending)
    with Gallery.open(db) as gallery:
        assert [i.name for i in gallery.identities()] == ["dave"]


def test_a_blank_environment_key_is_refused_as_empty(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("VIREID_GALLERY_KEY_FILE", raising=False)
    monkeypatch.setenv("VIREID_GALLERY_KEY", "\n")
    with pytest.raises(GalleryError, match=r"\$VIREID_GALLERY_KEY is set but empty"):
        Gallery(tmp_path / "g.db", embedding_space="s", dim=8)
    assert not (tmp_path / "g.db").exists()


def test_a_gallery_keyed_with_the_variables_newline_by_an_older_vireid_still_opens(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    """Older vireid keyed a gallery with `$VIREID_GALLERY_KEY` as is, newline included; stripping the
    variable must not lock such a gallery out."""
    from vireid.gallery.store import GalleryStore

    db, secret = tmp_path / "old.db", "correct horse battery staple\n"
    store = GalleryStore(db, embedding_space="space-x", dim=8, key=secret)  # the key an older vireid used
    store.close()
    monkeypatch.delenv("VIREID_GALLERY_KEY_FILE", raising=False)
    monkeypatch.setenv("VIREID_GALLERY_KEY", secret)
    with Gallery.open(db) as gallery:
        assert gallery.identities() == []
    assert any("including its surrounding whitespace" in r.getMessage() for r in caplog.records)
    monkeypatch.delenv("VIREID_GALLERY_KEY")
    with pytest.raises(GalleryError, match="the key is wrong"):  # the stripped key alone does not open it
        Gallery.open(db, key_file=key_file(tmp_path))
