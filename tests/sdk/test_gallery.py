"""The persistent gallery: enrolment, search, filters, aggregation, refusals, schema versions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from vireid import GalleryError, InputSpecError, Modality
from vireid.gallery import Gallery, Match, schema

SPACE = "space-a"
DIM = 16


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def gallery(tmp_path: Path):
    with Gallery(tmp_path / "g.db", embedding_space=SPACE, dim=DIM) as g:
        yield g


class FakeEmbeddings:
    """What `Embedder.embed` returns, as far as the gallery cares."""

    def __init__(self, vectors: np.ndarray, embedding_space: str) -> None:
        self.vectors = vectors
        self.embedding_space = embedding_space


# ----- round trip ---------------------------------------------------------------------------------
def test_enrol_search_rename_remove_list_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "g.db"
    alice, bob = unit(rng, 3), unit(rng, 2)
    with Gallery(path, embedding_space=SPACE, dim=DIM) as g:
        ids = g.enroll("alice", alice, Modality.VISIBLE, camera="gate", metadata={"badge": 7})
        g.enroll("bob", bob, "ir", camera=3, timestamps=[1.0, 2.0], track_ids=[4, None], sources="cam3.mp4")
        assert ids.dtype == np.int64 and ids.tolist() == [1, 2, 3]
    with Gallery.open(path, SPACE) as g:  # persisted
        assert [i.name for i in g.identities()] == ["alice", "bob"]
        info = {i.name: i for i in g.identities()}
        assert info["alice"].counts == {Modality.VISIBLE: 3, Modality.INFRARED: 0}
        assert info["alice"].metadata == {"badge": 7} and info["bob"].num_embeddings == 2
        top = g.search(bob[1], k=1)[0][0]
        assert (top.identity, top.embedding_id, top.modality, top.camera) == (
            "bob",
            5,
            Modality.INFRARED,
            "3",
        )
        assert top.score == pytest.approx(1.0, abs=1e-5)
        stored = g.embeddings("bob")
        np.testing.assert_allclose(stored.vectors, bob, atol=1e-6)
        assert stored.track_ids == (4, None) and stored.sources == ("cam3.mp4",) * 2
        assert stored.timestamps.tolist() == [1.0, 2.0] and stored.cameras == ("3", "3")
        g.rename("bob", "robert")
        assert g.search(bob[1], k=1)[0][0].identity == "robert"
        assert g.remove("alice") == 3
        assert "alice" not in g and "robert" in g and len(g) == 1
        assert {m.identity for m in g.search(alice, k=5)[0]} == {"robert"}
        assert g.info().num_embeddings == 2


def test_enrol_into_existing_identity_appends_and_replaces_metadata(gallery: Gallery, rng) -> None:
    gallery.enroll("a", unit(rng, 2), "rgb", metadata={"v": 1})
    gallery.enroll("a", unit(rng, 3), "thermal")
    assert gallery.identities()[0].metadata == {"v": 1}
    gallery.enroll("a", unit(rng, 1), "rgb", metadata={"v": 2})
    (info,) = gallery.identities()
    assert info.metadata == {"v": 2} and dict(info.counts) == {Modality.VISIBLE: 3, Modality.INFRARED: 3}


def test_enrol_takes_modality_camera_and_track_tags_from_an_embeddings_object(gallery: Gallery, rng) -> None:
    from vireid.embeddings import Embeddings

    carried = Embeddings(
        vectors=unit(rng, 3),
        modalities=np.array([0, 1, 1], np.int8),
        camera_ids=np.array([4, 5, 6]),
        track_ids=np.array([7, 8, 9]),
        embedding_space=SPACE,
    )
    gallery.enroll("a", carried)
    gallery.enroll("b", carried, "ir", camera="x")  # explicit arguments win
    stored = gallery.embeddings("a")
    assert stored.modalities.tolist() == [0, 1, 1] and stored.cameras == ("4", "5", "6")
    assert stored.track_ids == (7, 8, 9)
    assert (
        gallery.embeddings("b").cameras == ("x",) * 3
        and gallery.embeddings("b").modalities.tolist() == [1] * 3
    )
    with pytest.raises(InputSpecError, match="pass the modality"):
        gallery.enroll("c", unit(rng, 1))


def test_vectors_are_normalised_so_scores_are_cosines(gallery: Gallery, rng) -> None:
    raw = rng.standard_normal((4, DIM)) * 50  # float64, not unit length
    gallery.enroll("a", raw, "visible")
    np.testing.assert_allclose(np.linalg.norm(gallery.embeddings("a").vectors, axis=1), 1.0, atol=1e-6)
    (best,) = gallery.search(raw[2] * 0.01, k=1)[0]
    assert best.embedding_id == 3 and best.score == pytest.approx(1.0, abs=1e-5)


# ----- search correctness -------------------------------------------------------------------------
def brute_force(gallery: Gallery, queries: np.ndarray) -> tuple[np.ndarray, list[str], list[int]]:
    names, vectors, ids = [], [], []
    for info in gallery.identities():
        stored = gallery.embeddings(info.name)
        names += [info.name] * len(stored)
        vectors.append(stored.vectors)
        ids += stored.ids.tolist()
    matrix = np.concatenate(vectors)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return q @ matrix.T, names, ids


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_search_and_identity_aggregation_match_brute_force(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with Gallery(tmp_path / "g.db", embedding_space=SPACE, dim=DIM) as g:
        for i in range(25):
            g.enroll(f"id{i:02d}", unit(rng, int(rng.integers(1, 6))), int(rng.integers(0, 2)))
        queries = rng.standard_normal((5, DIM))
        scores, names, ids = brute_force(g, queries)
        rows, identities = g.search(queries, k=7), g.search_identities(queries, k=4)
        for q in range(len(queries)):
            order = np.argsort(-scores[q], kind="stable")
            assert [m.embedding_id for m in rows[q]] == [ids[i] for i in order[:7]]
            np.testing.assert_allclose([m.score for m in rows[q]], scores[q, order[:7]], atol=1e-5)
            best: dict[str, tuple[float, int]] = {}
            for i in order:
                best.setdefault(names[i], (scores[q, i], ids[i]))
            expected = sorted(best.items(), key=lambda kv: -kv[1][0])[:4]
            assert [(m.identity, m.embedding_id) for m in identities[q]] == [(n, v[1]) for n, v in expected]


@pytest.mark.parametrize("seed", [0, 1])
def test_centroid_identity_score_matches_a_brute_force_unit_mean(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with Gallery(tmp_path / "g.db", embedding_space=SPACE, dim=DIM) as g:
        for i in range(20):
            g.enroll(f"id{i:02d}", unit(rng, int(rng.integers(1, 6))), ["visible", "ir"][i % 3 == 0])
        queries = unit(rng, 4)
        for modality in (None, "visible", "ir"):
            expected_names, centroids, members = [], [], []
            for info in g.identities():
                stored = g.embeddings(info.name)
                keep = stored.modalities == int(Modality.parse(modality)) if modality else None
                vectors = stored.vectors[keep] if keep is not None else stored.vectors
                ids = np.asarray(stored.ids)[keep] if keep is not None else np.asarray(stored.ids)
                if len(vectors):
                    mean = vectors.sum(axis=0)
                    expected_names.append(info.name)
                    centroids.append(mean / np.linalg.norm(mean))
                    members.append((vectors, ids))
            found = g.search_identities(queries, k=5, modality=modality, score="centroid")
            scores = queries @ np.stack(centroids).T
            for q, matches in enumerate(found):
                order = np.argsort(-scores[q], kind="stable")[:5]
                assert [m.identity for m in matches] == [expected_names[i] for i in order]
                np.testing.assert_allclose([m.score for m in matches], scores[q, order], atol=1e-5)
                for m, i in zip(matches, order, strict=True):  # the match names the closest member
                    vectors, ids = members[i]
                    assert m.embedding_id == ids[np.argmax(vectors @ queries[q])]


def test_centroids_follow_enrolment_and_removal_and_an_empty_filter_finds_nothing(gallery: Gallery) -> None:
    query = np.eye(DIM, dtype=np.float32)[0]
    gallery.enroll("a", np.eye(DIM, dtype=np.float32)[[0, 1]], "visible")
    gallery.enroll("b", np.eye(DIM, dtype=np.float32)[[2]], "visible")

    def centroid_score() -> float:
        return gallery.search_identities(query, k=1, score="centroid", identities="a")[0][0].score

    assert centroid_score() == pytest.approx(1 / np.sqrt(2))
    gallery.enroll("a", np.eye(DIM, dtype=np.float32)[[0]], "visible")  # (2, 1) / sqrt(5)
    assert centroid_score() == pytest.approx(2 / np.sqrt(5))
    first = gallery.embeddings("a").ids[1]  # the e1 image
    gallery.remove_embeddings([int(first)])
    assert centroid_score() == pytest.approx(1.0)
    gallery.remove("a")
    assert [m.identity for m in gallery.search_identities(query, k=5, score="centroid")[0]] == ["b"]
    assert gallery.search_identities(query, k=5, score="centroid", modality="ir") == [[]]


def test_centroid_and_max_rank_an_identity_enrolled_from_many_images_differently(gallery: Gallery) -> None:
    # "crowd" has one image that happens to lie close to the query among many that do not;
    # "steady" has two images that are all moderately close.
    query = np.eye(DIM, dtype=np.float32)[0]
    crowd = np.eye(DIM, dtype=np.float32)[[0, 1, 2, 3, 4]]
    crowd[0] = query * 0.95 + np.eye(DIM, dtype=np.float32)[5] * np.sqrt(1 - 0.95**2)
    steady = np.stack([0.8 * query + 0.6 * np.eye(DIM, dtype=np.float32)[i] for i in (6, 7)])
    gallery.enroll("crowd", crowd, "visible")
    gallery.enroll("steady", steady, "visible")
    assert [m.identity for m in gallery.search_identities(query, k=2)[0]] == ["crowd", "steady"]
    by_centroid = gallery.search_identities(query, k=2, score="centroid")[0]
    assert [m.identity for m in by_centroid] == ["steady", "crowd"]
    np.testing.assert_allclose(by_centroid[0].score, 0.8 / np.sqrt(0.64 + 0.18), atol=1e-5)
    with pytest.raises(InputSpecError, match="unknown identity score 'mean'; expected one of: max, centroid"):
        gallery.search_identities(query, score="mean")


def test_per_identity_search_returns_each_identity_once_with_its_best_score(gallery: Gallery, rng) -> None:
    query = unit(rng, 1)[0]
    near = np.stack([query + 0.01 * rng.standard_normal(DIM) for _ in range(5)])
    gallery.enroll("twin", near, "visible")
    gallery.enroll("other", unit(rng, 2), "visible")
    rows = gallery.search(query, k=5)[0]
    assert [m.identity for m in rows] == ["twin"] * 5
    ids = gallery.search_identities(query, k=5)[0]
    assert [m.identity for m in ids] == ["twin", "other"]
    assert ids[0].score == max(m.score for m in rows) and ids[0].embedding_id == rows[0].embedding_id


def test_mixed_modality_camera_and_identity_filters(gallery: Gallery, rng) -> None:
    vectors = unit(rng, 6)
    modalities = ["visible", "ir", "visible", "ir", "visible", "ir"]
    gallery.enroll("a", vectors[:4], modalities[:4], camera=[1, 1, 2, 2])
    gallery.enroll("b", vectors[4:], modalities[4:], camera="c9")
    query = vectors.sum(axis=0)
    found = gallery.search(query, k=10, modality="thermal")[0]
    assert sorted(m.embedding_id for m in found) == [2, 4, 6]
    assert all(m.modality is Modality.INFRARED for m in found)
    assert {m.embedding_id for m in gallery.search(query, k=10, camera=2)[0]} == {3, 4}
    assert {m.embedding_id for m in gallery.search(query, k=10, camera=[1, "c9"])[0]} == {1, 2, 5, 6}
    assert {m.embedding_id for m in gallery.search(query, k=10, identities="b")[0]} == {5, 6}
    both = gallery.search_identities(query, k=10, modality=Modality.VISIBLE, camera=["2", "c9"])[0]
    assert [(m.identity, m.embedding_id) for m in sorted(both, key=lambda m: m.identity)] == [
        ("a", 3),
        ("b", 5),
    ]
    assert gallery.search(query, k=3, camera="nowhere") == [[]]
    assert gallery.search_identities(query, k=3, camera="nowhere") == [[]]


def test_search_empty_gallery_and_k_larger_than_gallery(gallery: Gallery, rng) -> None:
    assert gallery.search(unit(rng, 2), k=3) == [[], []]
    assert gallery.search_identities(unit(rng, 1), k=3) == [[]]
    gallery.enroll("a", unit(rng, 2), "visible")
    assert len(gallery.search(unit(rng, 1), k=50)[0]) == 2
    assert len(gallery.search_identities(unit(rng, 1), k=50)[0]) == 1


def test_subset_path_and_masked_path_agree(gallery: Gallery, rng) -> None:
    for i in range(40):
        gallery.enroll(f"p{i}", unit(rng, 3), "visible" if i < 36 else "ir")
    query = unit(rng, 3)
    few = gallery.search(query, k=5, modality="ir")  # 12 of 120 rows: gathered
    many = gallery.search(query, k=5, modality="visible")  # 108 of 120 rows: masked
    every = gallery.search(query, k=120)
    for q in range(3):
        assert [m.embedding_id for m in few[q]] == [m.embedding_id for m in every[q] if m.modality][:5]
        visible = [m.embedding_id for m in every[q] if m.modality is Modality.VISIBLE]
        assert [m.embedding_id for m in many[q]] == visible[:5]


def test_index_compacts_in_place_after_another_process_removes_rows(tmp_path: Path, rng) -> None:
    path = tmp_path / "g.db"
    parts = {name: unit(rng, 3000, 4) for name in ("a", "b", "c")}
    with Gallery(path, SPACE, 4) as reader, Gallery(path, SPACE) as writer:
        for name, vectors in parts.items():
            writer.enroll(name, vectors, "visible")
        reader.search(np.ones(4))  # 9000 rows loaded
        writer.remove("b")  # rows 3001..6000 vanish: later rows move down across several chunks
        writer.enroll("d", unit(rng, 5, 4), "ir")
        for name in ("a", "c"):
            for i in (0, 1234, 2999):
                (best,) = reader.search(parts[name][i], k=1)[0]
                assert best.identity == name and best.score == pytest.approx(1.0, abs=1e-5)
        assert {m.identity for m in reader.search_identities(np.ones(4), k=10)[0]} == {"a", "c", "d"}


def test_remove_embeddings_keeps_identity(gallery: Gallery, rng) -> None:
    ids = gallery.enroll("a", unit(rng, 3), "visible")
    gallery.search(unit(rng, 1))  # index loaded, then rows vanish
    assert gallery.remove_embeddings([int(ids[0]), 999]) == 1
    assert [m.embedding_id for m in gallery.search(unit(rng, 1), k=5)[0]] != []
    assert {m.embedding_id for m in gallery.search(unit(rng, 1), k=5)[0]} == set(ids[1:].tolist())
    assert gallery.identities()[0].num_embeddings == 2


# ----- refusals -----------------------------------------------------------------------------------
def test_other_model_fingerprint_is_refused_everywhere(tmp_path: Path, rng) -> None:
    path = tmp_path / "g.db"
    with Gallery(path, embedding_space=SPACE, dim=DIM) as g:
        with pytest.raises(GalleryError) as info:
            g.enroll("a", FakeEmbeddings(unit(rng, 2), "space-b"), "visible")
        message = str(info.value)
        assert "space-a" in message and "space-b" in message and "new gallery" in message
        assert "re-enrol" in message
        with pytest.raises(GalleryError, match="space-b"):
            g.enroll("a", unit(rng, 2), "visible", embedding_space="space-b")
        with pytest.raises(GalleryError, match="space-b"):
            g.search(FakeEmbeddings(unit(rng, 1), "space-b"))
        g.enroll("a", FakeEmbeddings(unit(rng, 2), SPACE), "visible")  # same space is fine
    with pytest.raises(GalleryError, match="space-b"):
        Gallery(path, embedding_space="space-b")


@pytest.mark.parametrize("shape", [(2, DIM + 1), (DIM - 1,), (2, 3, DIM)])
def test_wrong_dimension_states_expected_and_actual(gallery: Gallery, shape: tuple[int, ...]) -> None:
    with pytest.raises(InputSpecError) as info:
        gallery.enroll("a", np.ones(shape, np.float32), "visible")
    assert f"(N, {DIM})" in str(info.value) and str(shape) in str(info.value)
    with pytest.raises(InputSpecError, match=f"N, {DIM}"):
        gallery.search(np.ones(shape, np.float32))


def test_opening_with_other_dim_is_refused(tmp_path: Path) -> None:
    Gallery(tmp_path / "g.db", embedding_space=SPACE, dim=DIM).close()
    with pytest.raises(GalleryError, match=f"{DIM}-d.*32-d"):
        Gallery(tmp_path / "g.db", embedding_space=SPACE, dim=32)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, "identity name"),
        ({"name": " x"}, "identity name"),
        ({"vectors": np.zeros((1, DIM))}, "zero"),
        ({"vectors": np.full((1, DIM), np.nan)}, "NaN"),
        ({"vectors": np.ones((1, DIM), np.int32)}, "float32"),
        ({"modality": "uv"}, "modality"),
        ({"camera": ""}, "camera"),
        ({"timestamps": [1.0, 2.0, 3.0]}, "timestamps"),
        ({"timestamps": float("inf")}, "timestamps"),
        ({"track_ids": -2}, "track id"),
        ({"modality": ["ir"] * 3}, "3 values for 2 vectors"),
        ({"metadata": {"f": object()}}, "JSON"),
    ],
)
def test_enrol_input_errors(gallery: Gallery, kwargs: dict, match: str) -> None:
    args = {"name": "a", "vectors": np.ones((2, DIM)), "modality": "ir"} | kwargs
    with pytest.raises(InputSpecError, match=match):
        gallery.enroll(args.pop("name"), args.pop("vectors"), args.pop("modality"), **args)
    assert gallery.identities() == []


@pytest.mark.parametrize("call", ["k0", "unknown_identity", "bad_backend"])
def test_search_argument_errors(gallery: Gallery, rng, call: str, tmp_path: Path) -> None:
    gallery.enroll("a", unit(rng, 1), "ir")
    if call == "k0":
        with pytest.raises(InputSpecError, match="positive integer"):
            gallery.search(unit(rng, 1), k=0)
    elif call == "unknown_identity":
        with pytest.raises(GalleryError, match="'zed'"):
            gallery.search(unit(rng, 1), identities=["a", "zed"])
    else:
        with pytest.raises(InputSpecError, match="numpy, faiss"):
            Gallery(tmp_path / "x.db", SPACE, DIM, backend="annoy")


def test_rename_and_remove_errors(gallery: Gallery, rng) -> None:
    gallery.enroll("a", unit(rng, 1), "ir")
    gallery.enroll("b", unit(rng, 1), "ir")
    with pytest.raises(GalleryError, match="'b' is already enrolled"):
        gallery.rename("a", "b")
    with pytest.raises(GalleryError, match="no identity named 'c'"):
        gallery.remove("c")
    with pytest.raises(GalleryError, match="no identity named 'c'"):
        gallery.embeddings("c")


@pytest.mark.parametrize(
    "content",
    [b"garbage, not a database" * 100, b"SQLite format 3\x00" + b"\xff" * 4000],
    ids=["header", "body"],
)
def test_corrupted_file_is_a_gallery_error_naming_the_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(content)
    with pytest.raises(GalleryError) as info:
        Gallery(path, embedding_space=SPACE, dim=DIM)
    assert str(path) in str(info.value) and "corrupt" in str(info.value)
    assert path.read_bytes() == content  # never "repaired" by writing into it


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(GalleryError, match="another application"):
        Gallery(path, embedding_space=SPACE, dim=DIM)


def test_newer_schema_is_refused_with_upgrade_hint(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    Gallery(path, embedding_space=SPACE, dim=DIM).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    with pytest.raises(GalleryError) as info:
        Gallery(path)
    message = str(info.value)
    assert f"version {schema.SCHEMA_VERSION + 1}" in message and "pip install -U vireid" in message


def test_create_needs_space_and_dim_and_open_never_creates(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="embedding_space"):
        Gallery(tmp_path / "new.db", dim=DIM)
    with pytest.raises(GalleryError, match="no gallery file"):
        Gallery.open(tmp_path / "missing.db")
    with pytest.raises(GalleryError, match="does not exist"):
        Gallery(tmp_path / "no" / "dir.db", SPACE, DIM)
    assert not (tmp_path / "missing.db").exists()


def test_migration_from_an_older_version_runs_in_one_transaction(tmp_path: Path, rng, monkeypatch) -> None:
    path = tmp_path / "g.db"
    with Gallery(path, SPACE, DIM) as g:
        g.enroll("a", unit(rng, 2), "ir")

    def add_note(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE identities ADD COLUMN note TEXT NOT NULL DEFAULT ''")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE embeddings ADD COLUMN extra TEXT")
        conn.execute("SELECT * FROM no_such_table")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, add_note, broken])
    with pytest.raises(GalleryError, match=r"from version 2 to 3 failed.*left unchanged"):
        Gallery(path, SPACE)
    with sqlite3.connect(path) as conn:  # rolled back as a whole, the first step too
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert "note" not in [r[1] for r in conn.execute("PRAGMA table_info(identities)")]
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS[:2]])
    with Gallery(path, SPACE) as g:
        assert g.info().schema_version == 2 and g.embeddings("a").vectors.shape == (2, DIM)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT note FROM identities").fetchall() == [("",)]


def test_closed_gallery_refuses_calls(tmp_path: Path, rng) -> None:
    g = Gallery(tmp_path / "g.db", SPACE, DIM)
    g.close()
    g.close()
    with pytest.raises(GalleryError, match="closed"):
        g.search(unit(rng, 1))


def test_match_validates_its_fields() -> None:
    with pytest.raises(InputSpecError, match="cosine"):
        Match("a", 1.5, 1, Modality.VISIBLE)
    with pytest.raises(InputSpecError, match="identity"):
        Match("", 0.5, 1, Modality.VISIBLE)
    assert Match("a", 0.5, 1, "ir").modality is Modality.INFRARED


def test_new_gallery_files_are_private_to_their_owner(tmp_path: Path) -> None:
    import os
    import stat

    path = tmp_path / "private.db"
    gallery = Gallery(path, embedding_space="space-a", dim=4)
    gallery.enroll("alice", np.eye(4, dtype=np.float32)[:1], "visible")
    modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in tmp_path.iterdir()}
    gallery.close()
    assert modes["private.db"] == 0o600
    assert all(mode == 0o600 for name, mode in modes.items() if name.startswith("private.db-")), modes


def test_retention_purges_old_embeddings_and_emptied_identities_in_one_go(tmp_path: Path) -> None:
    day = 86400.0
    now = 1_800_000_000.0
    vecs = np.eye(4, dtype=np.float32)
    with Gallery(tmp_path / "r.db", embedding_space="space-a", dim=4) as gallery:
        gallery.enroll("old", vecs[:2], "visible", timestamps=[now - 40 * day, now - 31 * day])
        gallery.enroll("mixed", vecs[:2], "infrared", timestamps=[now - 35 * day, now - 1 * day])
        gallery.enroll("new", vecs[2:3], "visible", timestamps=now - 2 * day)
        assert gallery.purge(30, now=now) == (3, 1)
        names = {i.name: sum(i.counts.values()) for i in gallery.identities()}
        assert names == {"mixed": 1, "new": 1}
        assert len(gallery.search(vecs[:1], k=5)[0]) == 2  # the in-memory index follows the purge
        gallery.enroll("stale", vecs[3:4], "visible", timestamps=now - 90 * day)
        assert gallery.purge(30, drop_empty=False, now=now) == (1, 0)
        assert "stale" in {i.name for i in gallery.identities()}
        # a later purge leaves an identity that was empty before it (kept on purpose, with its metadata)
        assert gallery.purge(30, now=now) == (0, 0)
        assert "stale" in {i.name for i in gallery.identities()}
        with pytest.raises(InputSpecError, match="positive number of days"):
            gallery.purge(0)


def test_a_purge_with_nothing_old_writes_nothing_so_readers_keep_their_index(tmp_path: Path) -> None:
    """A structural write makes every reader (a running pipeline) reload its whole index: an hourly
    retention job that finds nothing must not cost them that."""
    import sqlite3

    def counters() -> dict[str, int]:
        with sqlite3.connect(tmp_path / "r.db") as conn:
            rows = conn.execute("SELECT key, value FROM meta WHERE key IN ('generation', 'epoch')").fetchall()
        conn.close()
        return {key: int(value) for key, value in rows}

    now = 1_800_000_000.0
    with Gallery(tmp_path / "r.db", embedding_space="space-a", dim=4) as gallery:
        gallery.enroll("new", np.eye(4, dtype=np.float32)[:2], "visible", timestamps=now - 86400.0)
        before = counters()
        assert gallery.purge(30, now=now) == (0, 0)
        assert counters() == before
        assert gallery.purge(0.5, now=now) == (2, 1) and counters()["epoch"] == before["epoch"] + 1


def test_gallery_purge_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vireid.cli.main import main

    with Gallery(tmp_path / "c.db", embedding_space="space-a", dim=4) as gallery:
        gallery.enroll("gone", np.eye(4, dtype=np.float32)[:1], "visible", timestamps=1.0)  # 1970
        gallery.enroll("kept", np.eye(4, dtype=np.float32)[1:2], "visible")
    assert main(["gallery", "purge", "-g", str(tmp_path / "c.db"), "--older-than-days", "365"]) == 0
    assert "purged 1 embeddings older than 365 days and 1 identities" in capsys.readouterr().out
    with Gallery.open(tmp_path / "c.db") as gallery:
        assert [i.name for i in gallery.identities()] == ["kept"]


def test_gallery_purge_cli_also_purges_event_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import os
    import stat
    import time

    from vireid.cli.main import main
    from vireid.streams.sinks import purge_events

    events = tmp_path / "events.jsonl"
    now = time.time()
    lines = [
        {"event": "identified", "time": now - 400 * 86400, "name": "gone"},
        {"event": "identified", "time": now},
    ]
    events.write_text("".join(json.dumps(e) + "\n" for e in lines) + "not json\n")
    with Gallery(tmp_path / "e.db", embedding_space="space-a", dim=4):
        pass
    argv = [
        "gallery",
        "purge",
        "-g",
        str(tmp_path / "e.db"),
        "--older-than-days",
        "365",
        "--events",
        str(events),
    ]
    assert main(argv) == 0
    assert "purged 1 events older than 365 days" in capsys.readouterr().out
    text = events.read_text()
    assert "gone" not in text and "not json" in text and text.count("identified") == 1
    assert stat.S_IMODE(os.stat(events).st_mode) == 0o600
    with pytest.raises(InputSpecError, match="positive number of days"):
        purge_events(events, -1)


@pytest.mark.parametrize("variable", ["VIREID_GALLERY_KEY", "VIREID_GALLERY_KEY_FILE"])
def test_an_empty_key_variable_is_refused_not_taken_for_no_encryption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """`VIREID_GALLERY_KEY=$SECRET` with an unset secret used to create a plaintext gallery silently."""
    monkeypatch.setenv(variable, "")
    with pytest.raises(GalleryError, match=rf"\${variable} is set but empty.*unset it"):
        Gallery(tmp_path / "g.db", embedding_space="s", dim=4)
    assert not (tmp_path / "g.db").exists()


def test_names_are_one_identity_whatever_their_unicode_form_and_invisible_characters_are_refused(
    tmp_path: Path,
) -> None:
    typed, from_a_mac_folder = "Jos\u00e9", "Jose\u0301"  # NFC and NFD: they print alike
    with Gallery(tmp_path / "g.db", embedding_space="s", dim=4) as gallery:
        gallery.enroll(typed, np.eye(4, dtype=np.float32)[:1], "visible")
        gallery.enroll(from_a_mac_folder, np.eye(4, dtype=np.float32)[1:2], "visible")
        assert [(i.name, sum(i.counts.values())) for i in gallery.identities()] == [(typed, 2)]
        assert from_a_mac_folder in gallery and typed in gallery  # `gallery enroll --replace` asks this
        assert gallery.remove(from_a_mac_folder) == 2
        for invisible in ("a\u200bb", "a\u202eb", "a\u2028b", "a\x85b"):  # zero-width, bidi, separators, C1
            with pytest.raises(InputSpecError, match="control characters"):
                gallery.enroll(invisible, np.eye(4, dtype=np.float32)[:1], "visible")


def test_names_stored_in_another_unicode_form_are_found_with_one_scan_not_one_per_new_name(
    tmp_path: Path,
) -> None:
    """Older versions stored names as given (NFD from macOS folders). Looking those up scans the
    names; it used to scan them for every new accented name, so bulk imports were quadratic."""
    import sqlite3

    with Gallery(tmp_path / "g.db", embedding_space="s", dim=4) as gallery:
        gallery.enroll("placeholder", np.eye(4, dtype=np.float32)[:1], "visible")
    with sqlite3.connect(tmp_path / "g.db") as conn:  # as a version before NFC names wrote it
        conn.execute("UPDATE identities SET name = ? WHERE name = 'placeholder'", ("Rene\u0301e",))
    conn.close()
    with Gallery(tmp_path / "g.db") as gallery:
        scans: list[str] = []
        gallery._store._conn.set_trace_callback(
            lambda sql: scans.append(sql) if sql.strip() == "SELECT id, name FROM identities" else None
        )
        assert "Ren\u00e9e" in gallery and "Rene\u0301e" in gallery  # the legacy row, either form
        for i in range(30):
            gallery.enroll(f"Jos\u00e9-{i}", np.eye(4, dtype=np.float32)[1:2], "visible")
        assert len(scans) == 1
        gallery.rename("Ren\u00e9e", "Renata")
        assert "Ren\u00e9e" not in gallery and "Renata" in gallery  # a renamed legacy row is gone


def test_exact_ties_keep_the_older_embeddings_also_at_the_kth_place(tmp_path: Path) -> None:
    """Six identities with one vector: k=2 used to return two arbitrary ones (argpartition)."""
    with Gallery(tmp_path / "g.db", embedding_space="s", dim=4) as gallery:
        for name in ("old_record", "dup_a", "dup_b", "dup_c", "dup_d", "new_record"):
            gallery.enroll(name, np.eye(4, dtype=np.float32)[:1], "visible")
        assert [m.identity for m in gallery.search(np.eye(4, dtype=np.float32)[:1], k=2)[0]] == [
            "old_record",
            "dup_a",
        ]
        ranked = gallery.search_identities(np.eye(4, dtype=np.float32)[:1], k=3)[0]
        assert [m.identity for m in ranked] == ["old_record", "dup_a", "dup_b"]


def test_timestamps_that_are_not_unix_seconds_are_warned_about(tmp_path: Path, caplog) -> None:
    import logging
    import time

    with Gallery(tmp_path / "g.db", embedding_space="s", dim=4) as gallery, caplog.at_level(logging.WARNING):
        gallery.enroll("ms", np.eye(4, dtype=np.float32)[:1], "visible", timestamps=time.time() * 1000)
        gallery.enroll("video", np.eye(4, dtype=np.float32)[1:2], "visible", timestamps=12.5)
        gallery.enroll("now", np.eye(4, dtype=np.float32)[2:3], "visible")
    assert caplog.text.count("milliseconds?") == 1 and caplog.text.count("seconds into a video?") == 1


def test_an_empty_key_file_variable_does_not_block_a_set_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    from vireid.gallery.crypto import resolve_key

    monkeypatch.setenv("VIREID_GALLERY_KEY", "correct horse")
    monkeypatch.setenv("VIREID_GALLERY_KEY_FILE", "")
    assert resolve_key() == "correct horse"


def test_names_stored_by_older_versions_stay_reachable(tmp_path: Path) -> None:
    """Before names were kept in NFC, `José` could be stored decomposed, and format characters such as
    a bidi override were accepted: such identities must still be found, extended and erased."""
    import sqlite3

    decomposed, odd = "Jose\u0301", "a\u202eb"
    with Gallery(tmp_path / "g.db", embedding_space="s", dim=4) as gallery:
        gallery.enroll("placeholder-1", np.eye(4, dtype=np.float32)[:1], "visible")
        gallery.enroll("placeholder-2", np.eye(4, dtype=np.float32)[1:2], "visible")
    raw = sqlite3.connect(tmp_path / "g.db")  # what an older version wrote
    raw.execute("UPDATE identities SET name = ? WHERE name = 'placeholder-1'", (decomposed,))
    raw.execute("UPDATE identities SET name = ? WHERE name = 'placeholder-2'", (odd,))
    raw.commit()
    raw.close()
    with Gallery.open(tmp_path / "g.db") as gallery:
        gallery.enroll("Jos\u00e9", np.eye(4, dtype=np.float32)[2:3], "visible")  # typed: joins it
        assert len(gallery.identities()) == 2 and len(gallery.embeddings("Jos\u00e9")) == 2
        assert gallery.search(np.eye(4, dtype=np.float32)[:1], identities=["Jos\u00e9"])[0]
        assert gallery.remove(odd) == 1 and gallery.remove("Jos\u00e9") == 2
        gallery.enroll("Sa\u200cra", np.eye(4, dtype=np.float32)[:1], "visible")  # ZWNJ: a Persian name


def test_a_gallery_created_without_its_model_leaves_no_file_behind(tmp_path: Path) -> None:
    """The refusal came after SQLite had created the file: a 4 KiB schema-less database remained that
    `vireid gallery enroll` (which opens before embedding) could not turn into a gallery."""
    path = tmp_path / "stub.db"
    with pytest.raises(GalleryError, match=r"stub\.db: no gallery here yet; creating one needs"):
        Gallery(path)
    with pytest.raises(GalleryError, match="creating one needs"):
        Gallery(path, embedding_space=SPACE)  # dim missing
    assert not path.exists()
    with Gallery(path, SPACE, DIM) as gallery:  # and the same path then works as documented
        assert len(gallery) == 0


# ----- the in-memory index kept in step cheaply -----------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_centroids_updated_after_enrolments_by_another_connection_equal_a_fresh_build(
    tmp_path: Path, seed: int
) -> None:
    """A reader's cached centroids are extended with the rows other connections append, not rebuilt:
    whatever the enrolment order (identities gaining their first row of a modality, new identities,
    one rename, one removal), they must give the very results a freshly opened gallery computes."""
    from vireid.gallery.index import Centroids

    rng = np.random.default_rng(seed)
    dim = 10  # rows not a multiple of 64 bytes apart
    path = tmp_path / "g.db"
    filters: list[dict[str, object]] = [
        {},
        {"modality": "visible"},
        {"modality": "ir"},
        {"camera": ["1", "2"]},
    ]
    with Gallery(path, SPACE, dim) as writer, Gallery(path, SPACE) as reader:
        writer.enroll("seed", unit(rng, 2, dim), "visible", camera=1)
        queries = unit(rng, 4, dim)
        reader.search_identities(queries, k=3, score="centroid", modality="visible")
        cached = next(iter(reader._table._centroids.values()))
        for step in range(30):
            name = f"p{int(rng.integers(0, 12))}"
            count = int(rng.integers(1, 4))
            writer.enroll(name, unit(rng, count, dim), rng.integers(0, 2, count).tolist(), camera=step % 3)
            if step == 12:
                writer.rename("seed", "renamed")
            if step == 20:
                writer.remove_embeddings([int(writer.embeddings(name).ids[0])])
            if step == 5:  # the set built first is extended in place, not rebuilt
                reader.search_identities(queries, k=3, score="centroid", modality="visible")
                assert any(c is cached for c in reader._table._centroids.values())
                assert cached.covered == reader._table.n
            for arguments in filters:
                if rng.random() < 0.5:
                    continue
                got = reader.search_identities(queries, k=20, score="centroid", **arguments)
                with Gallery.open(path) as fresh:
                    expected = fresh.search_identities(queries, k=20, score="centroid", **arguments)
                assert got == expected  # same identities, order, embedding ids and exact scores
        table = reader._table
        for mask in (None, table.modalities == 0, table.modalities == 1):
            kept, rebuilt = table.centroids(mask), Centroids(table, mask)
            np.testing.assert_array_equal(kept.vectors, rebuilt.vectors)
            np.testing.assert_array_equal(kept.identity_ids, rebuilt.identity_ids)
            np.testing.assert_array_equal(kept.members, rebuilt.members)


def test_an_appended_embedding_of_an_unlisted_identity_is_still_a_gallery_error(tmp_path: Path) -> None:
    """A running reader checks only the rows an append brings: a row written (by something other than
    vireid) for an identity the file lacks must still be refused, at every call, not half-loaded."""
    path = tmp_path / "g.db"
    with Gallery(path, SPACE, 4) as reader:
        reader.enroll("alice", np.eye(4, dtype=np.float32)[:2], "visible")
        assert reader.search(np.eye(4, dtype=np.float32)[3:], k=1)[0][0].identity == "alice"
        raw = sqlite3.connect(path)
        row = raw.execute("INSERT INTO embeddings (identity_id, modality, timestamp) VALUES (999, 0, 1.0)")
        raw.execute("INSERT INTO vectors VALUES (?, ?)", (row.lastrowid, np.eye(4, dtype="<f4")[3].tobytes()))
        raw.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        raw.commit()
        for _ in range(2):
            with pytest.raises(GalleryError, match=r"damaged: embeddings belong to identity ids \[999\]"):
                reader.search(np.eye(4, dtype=np.float32)[3:], k=1)
        with pytest.raises(GalleryError, match=r"identity ids \[999\]"), Gallery.open(path) as fresh:
            fresh.search(np.eye(4, dtype=np.float32)[3:], k=1)
        raw.execute("DELETE FROM vectors WHERE embedding_id = ?", (row.lastrowid,))
        raw.execute("DELETE FROM embeddings WHERE id = ?", (row.lastrowid,))
        raw.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key IN ('generation', 'epoch')")
        raw.commit()
        raw.close()
        reader.enroll("bob", np.eye(4, dtype=np.float32)[3:], "ir")  # valid appends pass the check
        assert [m.identity for m in reader.search(np.eye(4, dtype=np.float32)[3:], k=3)[0]] == [
            "bob",
            "alice",
            "alice",
        ]


def test_the_first_enrolments_after_a_load_do_not_copy_the_matrix(tmp_path: Path, rng) -> None:
    """The matrix used to be loaded with no spare rows, so the first enrolment after opening a large
    gallery copied all of it (2.5x its memory for a moment); growth past the spare rows stays geometric."""
    path = tmp_path / "g.db"
    with Gallery(path, SPACE, 4) as writer, Gallery(path, SPACE) as reader:
        writer.enroll("bulk", unit(rng, 3000, 4), "visible")
        reader.search(unit(rng, 1, 4))
        loaded = reader._table._buffer
        assert reader._table.n == 3000 and len(loaded) >= 3000 + 1024
        for i in range(5):
            writer.enroll(f"late{i}", unit(rng, 2, 4), "ir")
            assert reader.search(writer.embeddings(f"late{i}").vectors[:1], k=1)[0][0].identity == f"late{i}"
            assert reader._table._buffer is loaded  # appended in place
        writer.enroll("many", unit(rng, len(loaded) - reader._table.n + 1, 4), "visible")
        reader.refresh()
        assert len(reader._table._buffer) >= 1.5 * len(loaded)
        np.testing.assert_array_equal(reader._table.vectors[:3000], writer.embeddings("bulk").vectors)


def test_scores_come_back_contiguous_per_query_and_equal_the_plain_product(rng) -> None:
    """`top_k` partitions each query's scores; a transposed (strided) result made that 1.75x slower."""
    from vireid.gallery.index import blocked_scores

    vectors, queries = unit(rng, 5000, 513), unit(rng, 3, 513)  # several blocks, not a multiple of 2048 rows
    scores = blocked_scores(queries, vectors)
    assert scores.shape == (3, 5000) and scores.flags.c_contiguous
    np.testing.assert_allclose(scores, queries @ vectors.T, atol=1e-5)
    assert blocked_scores(queries, vectors[:0]).shape == (3, 0)
