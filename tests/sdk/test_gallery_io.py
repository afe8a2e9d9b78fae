"""The gallery across files and processes: export/import, multi-process access, the faiss backend."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_gallery import DIM, SPACE, unit

from vireid import GalleryError, MissingDependencyError
from vireid.gallery import Gallery


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


@pytest.fixture
def gallery(tmp_path: Path):
    with Gallery(tmp_path / "g.db", embedding_space=SPACE, dim=DIM) as g:
        yield g


# ----- export / import ----------------------------------------------------------------------------
def test_export_import_round_trip(tmp_path: Path, rng) -> None:
    out = tmp_path / "export.npz"
    with Gallery(tmp_path / "a.db", SPACE, DIM) as a:
        a.enroll("alice", unit(rng, 3), ["ir", "rgb", "ir"], camera=[1, None, "x"], metadata={"k": [1]})
        a.enroll("bob", unit(rng, 1), "visible", track_ids=9, sources="s.png", timestamps=5.5)
        a.export_npz(out)
        before = {n: a.embeddings(n) for n in ("alice", "bob")}
    with Gallery(tmp_path / "b.db", SPACE, DIM) as b:
        assert b.import_npz(out) == 4
        assert [(i.name, dict(i.metadata)) for i in b.identities()] == [("alice", {"k": [1]}), ("bob", {})]
        for name, old in before.items():
            new = b.embeddings(name)
            np.testing.assert_array_equal(new.vectors, old.vectors)
            np.testing.assert_array_equal(new.modalities, old.modalities)
            np.testing.assert_array_equal(new.timestamps, old.timestamps)
            assert (new.cameras, new.track_ids, new.sources) == (old.cameras, old.track_ids, old.sources)
        with pytest.raises(GalleryError, match="'alice' is already enrolled"):
            b.import_npz(out)
        assert b.info().num_embeddings == 4  # nothing of the failed import was written
        assert b.import_npz(out, on_conflict="skip") == 0
        b.enroll("bob", unit(rng, 1), "ir", metadata={"badge": 99})
        # merge adds only what is not held yet: nothing here, the first import brought every row
        assert b.import_npz(out, on_conflict="merge") == 0 and b.info().num_embeddings == 5
        # the gallery's metadata wins and the export only adds keys it lacks
        assert {i.name: dict(i.metadata) for i in b.identities()} == {
            "alice": {"k": [1]},
            "bob": {"badge": 99},
        }


def test_merge_import_adds_missing_rows_once_and_keeps_creation_times(tmp_path: Path, rng) -> None:
    out = tmp_path / "export.npz"
    with Gallery(tmp_path / "a.db", SPACE, DIM) as a:
        a.enroll("alice", unit(rng, 2), "ir", timestamps=7.0)  # same tags, different vectors
        a.enroll("bob", unit(rng, 1), "visible")
        a.export_npz(out)
        created = {i.name: i.created_at for i in a.identities()}
        alice = a.embeddings("alice")
    with Gallery(tmp_path / "b.db", SPACE, DIM) as b:
        b.enroll("alice", alice.vectors[:1], "ir", timestamps=7.0)  # holds one of alice's two rows
        assert b.import_npz(out, on_conflict="merge") == 2  # alice's other row and bob's
        assert b.import_npz(out, on_conflict="merge") == 0  # a repeated merge doubles nothing
        assert {i.name: i.num_embeddings for i in b.identities()} == {"alice": 2, "bob": 1}
        np.testing.assert_allclose(
            np.sort(b.embeddings("alice").vectors, axis=0), np.sort(alice.vectors, axis=0)
        )
        assert b.identities()[1].created_at == created["bob"]  # an imported identity keeps its time
        assert b.identities()[0].created_at != created["alice"]  # alice was created here


def test_import_refuses_other_embedding_space(tmp_path: Path, rng) -> None:
    out = tmp_path / "e.npz"
    with Gallery(tmp_path / "a.db", SPACE, DIM) as a:
        a.enroll("a", unit(rng, 1), "ir")
        a.export_npz(out)
    with Gallery(tmp_path / "b.db", "space-b", DIM) as b, pytest.raises(GalleryError) as info:
        b.import_npz(out)
    assert "space-a" in str(info.value) and "space-b" in str(info.value)


def _valid_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    manifest = {"format": "vireid-gallery", "format_version": 1, "embedding_space": SPACE, "dim": DIM}
    manifest["identities"] = [{"name": "a", "metadata": {}}]
    return {
        "manifest": np.frombuffer(json.dumps(manifest).encode(), np.uint8),
        "vectors": unit(rng, 1),
        "identity": np.zeros(1, np.int64),
        "modality": np.zeros(1, np.int8),
        "timestamp": np.ones(1),
        "track_id": -np.ones(1, np.int64),
        "camera": np.array([""]),
        "source": np.array([""]),
    }


def test_import_refuses_object_arrays_path_traversal_and_foreign_members(
    gallery: Gallery, rng, tmp_path
) -> None:
    good = tmp_path / "good.npz"
    np.savez(good, **_valid_arrays(rng))
    assert gallery.import_npz(good) == 1

    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **(_valid_arrays(rng) | {"camera": np.array([None], dtype=object)}))
    with pytest.raises(GalleryError, match="object"):
        gallery.import_npz(pickled)

    traversal = tmp_path / "traversal.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(traversal, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr("../../evil.npy", b"x")
    with pytest.raises(GalleryError, match="path traversal"):
        gallery.import_npz(traversal)

    missing = tmp_path / "missing.npz"
    np.savez(missing, **{k: v for k, v in _valid_arrays(rng).items() if k != "source"})
    with pytest.raises(GalleryError, match="not a vireid gallery export"):
        gallery.import_npz(missing)
    not_zip = tmp_path / "plain.npz"
    not_zip.write_bytes(b"nope")
    with pytest.raises(GalleryError, match=r"not an \.npz"):
        gallery.import_npz(not_zip)
    assert gallery.info().num_embeddings == 1


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"identity": np.array([3])}, "identity indices"),
        ({"modality": np.array([5], np.int8)}, "modality"),
        ({"vectors": np.ones((1, DIM), np.float64)}, "'vectors'"),
        ({"timestamp": np.array([np.nan])}, "timestamps"),
        ({"vectors": np.ones((1, DIM), np.float32)}, "not unit length"),  # scaled: foreign or corrupt
        ({"vectors": np.full((1, DIM), np.nan, np.float32)}, r"not unit length \(norms nan to nan\)"),
        ({"vectors": np.ones((1, DIM + 1), np.float32)}, f"of {DIM} columns"),
    ],
)
def test_import_refuses_malformed_arrays(
    gallery: Gallery, rng, tmp_path: Path, change: dict, match: str
) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, **(_valid_arrays(rng) | change))
    with pytest.raises(GalleryError, match=match):
        gallery.import_npz(bad)


def test_import_refuses_a_zip_bomb_and_a_forged_array_header_before_decompressing(
    gallery: Gallery, rng, tmp_path: Path
) -> None:
    """A small file whose members expand to gigabytes (or whose header claims a huge shape) used to be
    loaded whole before any check: 507 KB took 1.65 GB of memory."""
    arrays = _valid_arrays(rng)
    n = 200_000  # 12.8 MB of zero vectors deflate to about 12 KB
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, **(arrays | {"vectors": np.zeros((n, DIM), np.float32)}))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(
        GalleryError, match=r"bomb\.npz: refused: members \[.*'vectors\.npy'.*\] are compressed"
    ):
        gallery.import_npz(bomb)
    forged = tmp_path / "forged.npz"
    np.savez(forged, **arrays)
    with zipfile.ZipFile(forged) as src, zipfile.ZipFile(tmp_path / "f2.npz", "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "vectors.npy":  # same bytes, a header claiming a billion rows
                data = data.replace(f"({1}, {DIM})".encode(), f"({10**9}, {DIM})".encode())
            dst.writestr(name, data)
    with pytest.raises(GalleryError, match=r"declares shape \(1000000000, 16\).*damaged or forged"):
        gallery.import_npz(tmp_path / "f2.npz")
    assert gallery.info().num_embeddings == 0


def test_labels_with_control_characters_are_refused_at_enrolment_and_restored_from_old_exports(
    gallery: Gallery, rng, tmp_path: Path, capsys
) -> None:
    """`gallery search` prints camera labels: an escape sequence in one would reach the terminal. New
    ones are refused; an export of a gallery enrolled before that still restores, and prints escaped."""
    from vireid.cli.gallery import _print_matches
    from vireid.errors import InputSpecError

    with pytest.raises(InputSpecError, match="camera must be a non-empty string without control"):
        gallery.enroll("a", unit(rng, 1), "ir", camera="gate\x1b[31m")
    with pytest.raises(InputSpecError, match="source must be a non-empty string or path without control"):
        gallery.enroll("a", unit(rng, 1), "ir", sources="crop\n.png")
    old = tmp_path / "old.npz"
    arrays = _valid_arrays(rng) | {"camera": np.array(["gate\x1b[2J"])}
    np.savez(old, **arrays)
    assert gallery.import_npz(old) == 1
    assert gallery.embeddings("a").cameras == ("gate\x1b[2J",)
    (match,) = gallery.search(arrays["vectors"], k=1)[0]
    _print_matches(Path("q.png"), [match], False, lambda m: True)  # what `vireid gallery search` prints
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "camera 'gate\\x1b[2J'" in printed


def test_import_refuses_a_created_at_that_is_not_a_time(gallery: Gallery, rng, tmp_path: Path) -> None:
    arrays = _valid_arrays(rng)
    manifest = json.loads(arrays["manifest"].tobytes())
    manifest["identities"][0]["created_at"] = "yesterday"
    bad = tmp_path / "bad.npz"
    np.savez(bad, **(arrays | {"manifest": np.frombuffer(json.dumps(manifest).encode(), np.uint8)}))
    with pytest.raises(GalleryError, match=r"bad\.npz: identity 'a' has created_at 'yesterday'"):
        gallery.import_npz(bad)
    assert gallery.info().num_embeddings == 0


# ----- concurrency --------------------------------------------------------------------------------
WRITER = """
import sys, numpy as np
from vireid.gallery import Gallery
with Gallery(sys.argv[1]) as g:
    g.enroll("from-child", np.eye(16, dtype=np.float32)[:2], "ir", camera="child")
"""


def test_other_process_commit_is_seen_by_next_search(tmp_path: Path, rng) -> None:
    path = tmp_path / "g.db"
    with Gallery(path, SPACE, DIM) as g:
        g.enroll("a", unit(rng, 3), "visible")
        assert [m.identity for m in g.search_identities(np.eye(DIM)[0], k=5)[0]] == ["a"]
        done = subprocess.run([sys.executable, "-c", WRITER, str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        best = g.search(np.eye(DIM)[0], k=1)[0][0]
        assert (best.identity, best.camera, best.score) == ("from-child", "child", pytest.approx(1.0))
        g.enroll("b", unit(rng, 1), "ir")  # then own writes on top of the other process's
        assert {m.identity for m in g.search_identities(np.eye(DIM)[0], k=5)[0]} == {"a", "b", "from-child"}


ENROL = """
import sys, numpy as np
from vireid.gallery import Gallery
with Gallery(sys.argv[1]) as g:
    if sys.argv[2] != "-":
        g.enroll(sys.argv[2], np.eye(16, dtype=np.float32)[:1], "ir")
    print(",".join(sorted(i.name for i in g.identities())))
"""


def _in_other_process(path: Path, name: str = "-") -> str:
    done = subprocess.run([sys.executable, "-c", ENROL, str(path), name], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_refresh_brings_another_process_commit_into_the_index_once(tmp_path: Path, rng) -> None:
    path = tmp_path / "g.db"
    with Gallery(path, SPACE, DIM) as g:
        g.enroll("a", unit(rng, 1), "ir")
        g.refresh()
        assert g.refresh() is False  # nothing new
        _in_other_process(path, "from-child")
        assert g.refresh() is True and g.refresh() is False
        assert "from-child" in {m.identity for m in g.search_identities(np.eye(DIM)[0], k=5)[0]}


def test_a_second_open_in_one_process_loses_no_other_process_commit(tmp_path: Path, rng) -> None:
    """Opening the gallery a second time in a process (a pipeline plus an admin call) must not drop
    the first connection's file locks: with them gone, other processes reset the WAL under it and
    committed enrolments vanished (a header check read the file with Python's open/close)."""
    path = tmp_path / "g.db"
    with Gallery(path, SPACE, DIM) as first:
        first.enroll("alice", unit(rng, 1), "ir")
        Gallery(path, SPACE, DIM).close()
        _in_other_process(path, "bob")
        first.enroll("carol", unit(rng, 1), "ir")
        _in_other_process(path, "erin")
        assert _in_other_process(path) == "alice,bob,carol,erin"
    assert _in_other_process(path) == "alice,bob,carol,erin"


def test_threads_opening_one_gallery_at_once_keep_the_process_lock_on_it(tmp_path: Path) -> None:
    """Two threads opening the same file raced: one read the header from Python after the other's
    connection had taken its POSIX lock, and closing that descriptor dropped it for the whole process
    (68 of 100 trials of 8 threads), after which other processes lost commits (see the test above)."""
    import os

    locks = Path("/proc/locks")
    if not locks.exists():
        pytest.skip("needs Linux /proc/locks to see the process's locks")
    path = tmp_path / "g.db"
    Gallery(path, SPACE, DIM).close()
    inode, pid = os.stat(path).st_ino, str(os.getpid())

    def process_holds_a_lock() -> bool:
        return any(
            f[4] == pid and f[5].endswith(f":{inode}") for f in map(str.split, locks.read_text().splitlines())
        )

    for _ in range(20):
        opened: list[Gallery] = []
        barrier = threading.Barrier(8)

        def open_one(barrier: threading.Barrier, opened: list[Gallery]) -> None:
            barrier.wait()
            gallery = Gallery(path)
            gallery.search(np.ones(DIM, np.float32), k=1)
            opened.append(gallery)

        threads = [threading.Thread(target=open_one, args=(barrier, opened)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            assert len(opened) == 8 and process_holds_a_lock()
        finally:
            for gallery in opened:
                gallery.close()


def test_another_applications_database_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "contacts.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE people (name TEXT)")
    raw.execute("PRAGMA user_version = 7")  # not ours to read as a gallery schema version
    raw.commit()
    raw.close()
    before = path.read_bytes()
    with pytest.raises(GalleryError, match=r"another application.*was not changed"):
        Gallery(path, SPACE, DIM)
    assert path.read_bytes() == before  # still in its rollback-journal mode: nothing was written
    assert not Path(f"{path}-wal").exists()


def test_reader_sees_committed_state_while_a_write_is_open(tmp_path: Path, rng) -> None:
    path = tmp_path / "g.db"
    with Gallery(path, SPACE, DIM) as writer, Gallery(path, SPACE) as reader:
        writer.enroll("a", unit(rng, 1), "ir")
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("DELETE FROM vectors")
        assert [m.identity for m in reader.search(unit(rng, 1))[0]] == ["a"]  # not blocked, old state
        raw.execute("ROLLBACK")
        raw.close()
        writer.remove("a")
        assert reader.search(unit(rng, 1)) == [[]]


def test_write_lock_timeout_is_a_gallery_error(tmp_path: Path, rng) -> None:
    path = tmp_path / "g.db"
    with Gallery(path, SPACE, DIM, timeout=0.1) as g:
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        with pytest.raises(GalleryError, match=r"g\.db: enroll: another process held the gallery's write"):
            g.enroll("a", unit(rng, 1), "ir")  # the user's call, not the store's enroll_many
        raw.execute("ROLLBACK")
        raw.close()


def test_a_read_only_database_error_says_what_access_a_gallery_needs(tmp_path: Path) -> None:
    """What SQLite raises for a user who may read but not write the file or its folder (WAL needs
    both, even to read), translated; the permissions themselves cannot be tested as root."""
    from vireid.gallery.store import sqlite_errors

    with (
        pytest.raises(GalleryError, match="needs write access to its file and its folder"),
        sqlite_errors(str(tmp_path / "g.db"), "open", 1.0),
    ):
        raise sqlite3.OperationalError("attempt to write a readonly database")


# ----- faiss --------------------------------------------------------------------------------------
def test_faiss_backend_gives_the_numpy_results(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    path = tmp_path / "g.db"
    with Gallery(path, SPACE, DIM) as g:
        for i in range(30):
            g.enroll(f"p{i}", unit(rng, int(rng.integers(1, 5))), ["rgb", "ir"][i % 2], camera=i % 3)
    queries = unit(rng, 6)
    with Gallery(path, SPACE, backend="numpy") as np_g, Gallery(path, SPACE, backend="faiss") as fa_g:
        assert fa_g.backend == "faiss"
        for filters in ({}, {"modality": "ir"}, {"camera": 1}, {"identities": ["p1", "p2", "p3"]}):
            for method in ("search", "search_identities"):
                want = getattr(np_g, method)(queries, k=6, **filters)
                got = getattr(fa_g, method)(queries, k=6, **filters)
                assert [[m.embedding_id for m in q] for q in got] == [
                    [m.embedding_id for m in q] for q in want
                ]
                np.testing.assert_allclose(
                    [[m.score for m in q] for q in got], [[m.score for m in q] for q in want], atol=1e-5
                )
        np_g.remove("p0")
        fa_g.enroll("new", queries[0], "ir")  # index rebuilt after removal, extended after append
        assert fa_g.search(queries[0], k=1)[0][0].identity == "new"
        assert "p0" not in {m.identity for m in fa_g.search_identities(queries, k=40)[0]}


def test_missing_faiss_names_the_extra_with_fake_module(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # fake: "not installed"
    with pytest.raises(MissingDependencyError, match=r"vireid\[faiss\]"):
        Gallery(tmp_path / "g.db", SPACE, DIM, backend="faiss")


def test_fake_faiss_module_receives_vectors_filter_bitmap_and_k(monkeypatch, tmp_path, rng) -> None:
    calls: dict[str, object] = {}

    class FakeIndex:
        def __init__(self, dim: int) -> None:
            calls["dim"], self.rows = dim, np.zeros((0, dim), np.float32)

        def add(self, rows: np.ndarray) -> None:
            self.rows = np.concatenate([self.rows, rows])

        def search(self, queries: np.ndarray, k: int, params: object = None):
            calls["k"], calls["params"] = k, params
            scores = queries @ self.rows.T
            order = np.argsort(-scores, axis=1)[:, :k]
            return np.take_along_axis(scores, order, 1), order

    fake = types.SimpleNamespace(
        IndexFlatIP=FakeIndex,
        IDSelectorBitmap=lambda bits: ("bitmap", bits.tolist()),
        SearchParameters=lambda sel: ("params", sel),
    )
    monkeypatch.setitem(sys.modules, "faiss", fake)
    with Gallery(tmp_path / "g.db", SPACE, DIM, backend="faiss") as g:
        vectors = unit(rng, 3)
        g.enroll("a", vectors, ["ir", "rgb", "ir"])
        assert g.search(vectors[1], k=1)[0][0].embedding_id == 2 and calls["params"] is None
        g.search(vectors[1], k=2, modality="ir")
        assert calls["dim"] == DIM and calls["params"] == ("params", ("bitmap", [0b101]))


def test_one_gallery_shared_by_threads(gallery: Gallery) -> None:
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        rng = np.random.default_rng(worker)
        try:
            for i in range(15):
                gallery.enroll(f"w{worker}-{i}", unit(rng, 2), "ir")
                assert gallery.search_identities(unit(rng, 1), k=3)[0]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(gallery) == 60 and gallery.info().num_embeddings == 120
