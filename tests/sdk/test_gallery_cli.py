"""`vireid gallery ...`: actions without a model; enroll/search with a fake and the real Embedder."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from vireid import Modality
from vireid.cli.main import COMMANDS, main
from vireid.gallery import Gallery

SPACE = "fake-space"
DIM = 12


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the command the way `vireid.cli.main.COMMANDS` will."""
    monkeypatch.setitem(
        COMMANDS, "gallery", ("vireid.cli.gallery", "manage a gallery of enrolled identities")
    )


def vireid(*argv: object) -> int:
    return main(["gallery", *map(str, argv)])


def colour_vector(image: np.ndarray) -> np.ndarray:
    """What the fake model embeds: a 12-d summary of a crop's colours, so equal crops match."""
    small = cv2.resize(image, (2, 2), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    return small + 1.0


def fake_embedder_module(space: str = SPACE, calls: list | None = None) -> types.ModuleType:
    """A stand-in for `vireid.embedder` (fake, named as such) following the Embedder contract."""

    class Embeddings:
        def __init__(self, vectors: np.ndarray) -> None:
            self.vectors = vectors

    class Embedder:
        def __init__(self, model: Path, device: str = "auto") -> None:
            self.embedding_space = space
            self.closed = False

        def embed(self, images: list[np.ndarray], modality: Modality) -> Embeddings:
            assert all(i.dtype == np.uint8 and i.ndim == 3 and i.shape[2] == 3 for i in images)
            if calls is not None:
                calls.append((len(images), modality))
            return Embeddings(np.stack([colour_vector(i) for i in images]))

    module = types.ModuleType("vireid.embedder")
    module.Embedder = Embedder  # type: ignore[attr-defined]
    return module


def write_crops(folder: Path, colours: list[tuple[int, int, int]], bad: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, colour in enumerate(colours):
        image = np.zeros((32, 16, 3), np.uint8)
        image[:16] = colour
        image[16:] = colour[::-1]
        paths.append(folder / f"crop{i}.png")
        cv2.imwrite(str(paths[-1]), image)
    for i in range(bad):
        (folder / f"broken{i}.jpg").write_bytes(b"not an image")
    return paths


@pytest.fixture
def db(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "g.db"
    with Gallery(path, SPACE, DIM) as g:
        g.enroll("alice", rng.standard_normal((3, DIM)), ["rgb", "ir", "ir"], metadata={"team": "red"})
        g.enroll("bob", rng.standard_normal((1, DIM)), "visible")
    return path


def test_list_shows_counts_per_modality_and_json(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert vireid("list", "--gallery", db) == 0
    out = capsys.readouterr().out
    assert "2 identities, 4 embeddings, 12-d" in out and SPACE in out
    assert any(line.split()[:3] == ["alice", "1", "2"] for line in out.splitlines())
    assert vireid("list", "--gallery", db, "--json") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == {"name": "alice", "counts": {"visible": 1, "infrared": 2}, "metadata": {"team": "red"}}


def test_remove_rename_and_errors_exit_1(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert vireid("rename", "--gallery", db, "bob", "robert") == 0
    assert vireid("remove", "--gallery", db, "alice") == 0
    assert "its 3 embeddings" in capsys.readouterr().out
    assert vireid("remove", "--gallery", db, "alice") == 1
    assert "no identity named 'alice'" in capsys.readouterr().err
    assert vireid("list", "--gallery", db.with_name("missing.db")) == 1
    assert "no gallery file" in capsys.readouterr().err
    with Gallery.open(db) as g:
        assert [i.name for i in g.identities()] == ["robert"]


def test_remove_one_modality_keeps_the_identity_and_the_other_modality(db: Path, capsys) -> None:
    with pytest.raises(SystemExit) as usage:  # a typo is a usage error naming the flag; nothing changes
        vireid("remove", "--gallery", db, "alice", "--modality", "rbg")
    assert usage.value.code == 2 and "argument --modality: unknown modality 'rbg'" in capsys.readouterr().err
    assert vireid("remove", "--gallery", db, "alice", "--modality", "ir") == 0
    assert "removed 2 infrared embeddings of 'alice'" in capsys.readouterr().out
    with Gallery.open(db) as g:
        stored = g.embeddings("alice")
        assert stored.modalities.tolist() == [int(Modality.VISIBLE)] and "bob" in g
    assert vireid("remove", "--gallery", db, "nobody", "--modality", "ir") == 1
    assert "no identity named 'nobody'" in capsys.readouterr().err


def test_export_then_import_into_a_new_gallery(db: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "g.npz"
    assert vireid("export", "--gallery", db, "--out", out) == 1  # biometric data leaves only on request
    assert "--allow-biometric-export" in capsys.readouterr().err and not out.exists()
    assert vireid("export", "--gallery", db, "--out", out, "--allow-biometric-export") == 0
    assert out.stat().st_mode & 0o777 == 0o600
    new = tmp_path / "new.db"
    assert vireid("import", "--gallery", new, out) == 0
    assert f"imported 4 embeddings into {new}: 2 new identities" in capsys.readouterr().out
    with Gallery.open(new, SPACE) as g:
        assert [(i.name, i.num_embeddings) for i in g.identities()] == [("alice", 3), ("bob", 1)]
    assert vireid("import", "--gallery", new, out) == 1
    err = capsys.readouterr().err
    assert "already enrolled" in err and "--on-conflict merge|skip" in err  # names the way out
    assert vireid("import", "--gallery", new, out, "--on-conflict", "merge") == 0
    other = tmp_path / "other.db"
    Gallery(other, "other-space", DIM).close()
    assert vireid("import", "--gallery", other, out) == 1
    assert "other-space" in capsys.readouterr().err


def test_enroll_and_search_with_fake_embedder_module(tmp_path: Path, monkeypatch, capsys) -> None:
    calls: list = []
    monkeypatch.setitem(sys.modules, "vireid.embedder", fake_embedder_module(calls=calls))
    crops = write_crops(tmp_path / "alice", [(200, 10, 10), (190, 20, 10), (210, 5, 30)])
    bob = write_crops(tmp_path / "bob", [(10, 10, 200)])
    db = tmp_path / "g.db"
    model = tmp_path / "m.onnx"
    assert vireid("enroll", "-g", db, "-m", model, "--name", "alice", "--modality", "rgb", "--camera", "2",
                  "--meta", "badge=7", "--batch", 2, tmp_path / "alice") == 0  # fmt: skip
    assert calls == [(2, Modality.VISIBLE), (1, Modality.VISIBLE)]
    assert vireid("enroll", "-g", db, "-m", model, "--name", "bob", "--modality", "ir", *bob) == 0
    capsys.readouterr()
    query = ("search", "-g", db, "-m", model, "--modality", "ir")
    assert vireid(*query, crops[1], bob[0], "-k", 2, "--json") == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["matches"][0]["identity"] for r in results] == ["alice", "bob"]
    assert results[0]["matches"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert results[0]["matches"][0]["camera"] == "2" and results[1]["matches"][0]["modality"] == "infrared"
    assert vireid(*query, crops[0], "--match-modality", "ir") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("crop0.png:") and [line.split()[1] for line in lines[1:]] == ["bob"]
    assert vireid(*query, crops[0], "--camera", "2", "-k", 5) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[1] for line in rows] == ["alice"]
    assert "camera 2" in rows[0] and re.search(r"embedding \d+", rows[0])  # labelled, not a bare #id
    assert vireid(*query, crops[0], "--camera", "3") == 1  # a typo'd camera is refused, not "(no match)"
    assert "no embedding is tagged with camera '3'; its cameras: 2" in capsys.readouterr().err
    with Gallery.open(db) as g:
        stored = g.embeddings("alice")
        assert stored.sources == tuple(str(p) for p in crops) and g.identities()[0].metadata == {"badge": "7"}


def test_enroll_unreadable_images_fail_listing_them_or_are_skipped_with_fake_embedder(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setitem(sys.modules, "vireid.embedder", fake_embedder_module())
    folder = tmp_path / "crops"
    write_crops(folder, [(1, 2, 3), (4, 5, 6)], bad=2)
    db = tmp_path / "g.db"
    args = ("enroll", "-g", db, "-m", tmp_path / "m.onnx", "--name", "x", "--modality", "ir", folder)
    assert vireid(*args) == 1
    err = capsys.readouterr().err
    assert "2 images cannot be read" in err and "broken0.jpg" in err and "broken1.jpg" in err
    assert "--skip-bad" in err and not db.exists()  # nothing written
    assert vireid(*args, "--skip-bad") == 0
    captured = capsys.readouterr()
    assert "skipped 2 unreadable" in captured.err and "broken1.jpg" in captured.err
    with Gallery.open(db) as g:
        assert g.identities()[0].num_embeddings == 2


def test_enroll_with_another_models_embedder_is_refused_fake_embedder(
    db: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    calls: list = []
    monkeypatch.setitem(sys.modules, "vireid.embedder", fake_embedder_module("new-model", calls))
    crops = write_crops(tmp_path / "c", [(1, 2, 3)])
    assert (
        vireid("enroll", "-g", db, "-m", tmp_path / "m.onnx", "--name", "z", "--modality", "ir", *crops) == 1
    )
    err = capsys.readouterr().err
    assert "new-model" in err and SPACE in err and calls == []  # refused before embedding anything


def test_enroll_and_search_with_the_real_embedder_and_contract_model(tmp_path: Path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from contract_model import build_contract_model, contract_card

    from vireid.embedder import Embedder

    model = build_contract_model(tmp_path / "contract.onnx")
    crops = write_crops(tmp_path / "a", [(200, 10, 10), (10, 200, 10), (10, 10, 200)])
    db = tmp_path / "g.db"
    enroll = ("enroll", "-g", db, "-m", model, "--device", "cpu", "--modality")
    assert vireid(*enroll, "rgb", "--name", "red", crops[0]) == 0
    assert vireid(*enroll, "ir", "--name", "green", crops[1]) == 0
    assert vireid(*enroll, "ir", "--name", "blue", crops[2]) == 0
    capsys.readouterr()
    query = ("search", "-g", db, "-m", model, "--device", "cpu", "--json", "-k", 3)
    assert vireid(*query, "--modality", "rgb", crops[0]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert result["matches"][0]["identity"] == "red" and result["matches"][0]["score"] == pytest.approx(
        1, abs=1e-5
    )
    assert {m["identity"] for m in result["matches"]} == {"red", "green", "blue"}
    # the card's threshold (0.5 for every pair here) says which scores are matches
    assert all(m["match"] == (m["score"] >= 0.5) for m in result["matches"]) and result["matches"][0]["match"]
    assert vireid(*enroll, "rgb", "--name", "red", crops[1]) == 0  # red: two images now
    capsys.readouterr()
    assert vireid(*query, "--modality", "rgb", "--score", "centroid", crops[0]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    red = next(m for m in result["matches"] if m["identity"] == "red")
    with Gallery.open(db) as g:
        mean = g.embeddings("red").vectors.sum(axis=0)
        first = g.embeddings("red").vectors[0]
    assert red["score"] == pytest.approx(float(first @ mean / np.linalg.norm(mean)), abs=1e-5)
    assert vireid(*query, "--modality", "rgb", "--score", "centroid", "--embeddings", crops[0]) == 1
    assert "pick one" in capsys.readouterr().err
    with Gallery.open(db) as g, Embedder(model, device="cpu") as embedder:
        assert g.embedding_space == embedder.embedding_space == contract_card().embedding_space()
        assert g.dim == embedder.dim
        image = cv2.cvtColor(cv2.imread(str(crops[1])), cv2.COLOR_BGR2RGB)
        np.testing.assert_allclose(
            g.embeddings("green").vectors, embedder.embed([image], "ir").vectors, atol=1e-6
        )
    other = build_contract_model(tmp_path / "other.onnx", seed=1)  # another checkpoint: another space
    assert (
        vireid(
            "enroll", "-g", db, "-m", other, "--device", "cpu", "--modality", "ir", "--name", "x", crops[0]
        )
        == 1
    )
    assert "re-enrol" in capsys.readouterr().err


def test_replace_needs_an_enrolled_identity_with_fake_embedder_module(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    calls: list = []
    monkeypatch.setitem(sys.modules, "vireid.embedder", fake_embedder_module(calls=calls))
    crops = write_crops(tmp_path / "alice", [(200, 10, 10)])
    db, model = tmp_path / "g.db", tmp_path / "m.onnx"
    assert vireid("enroll", "-g", db, "-m", model, "--name", "alice", "--modality", "rgb", *crops) == 0
    calls.clear()
    assert (
        vireid("enroll", "-g", db, "-m", model, "--name", "alcie", "--modality", "rgb", "--replace", *crops)
        == 1
    )
    assert "no identity 'alcie' to re-enrol" in capsys.readouterr().err
    assert calls == []  # refused before embedding anything
    with Gallery.open(db) as g:
        assert [i.name for i in g.identities()] == ["alice"]


def test_purge_checks_its_event_files_before_touching_the_gallery(db: Path, tmp_path: Path, capsys) -> None:
    with Gallery.open(db) as g:
        before = g.info().num_embeddings
    assert vireid("purge", "-g", db, "--older-than-days", "1e-9", "--events", tmp_path) == 1
    assert "is a folder, not an events file; nothing was purged" in capsys.readouterr().err
    with Gallery.open(db) as g:
        assert g.info().num_embeddings == before
    with pytest.raises(SystemExit) as usage:  # refused by argparse, before the gallery is opened
        vireid("purge", "-g", db, "--older-than-days", "nan")
    assert usage.value.code == 2
    # an events file not written yet (or rotated away) does not stop the gallery's retention
    assert vireid("purge", "-g", db, "--older-than-days", "1e-9", "--events", tmp_path / "none.jsonl") == 0
    assert "no events file" in capsys.readouterr().err
    with Gallery.open(db) as g:
        assert g.info().num_embeddings == 0


def test_purge_deletes_old_annotated_videos_but_never_in_a_folder_vireid_did_not_write(
    db: Path, tmp_path: Path, capsys
) -> None:
    import os

    mine = tmp_path / "recordings"
    mine.mkdir()
    (mine / "holiday.mp4").write_bytes(b"x")
    os.utime(mine / "holiday.mp4", (1e9, 1e9))
    assert vireid("purge", "-g", db, "--older-than-days", "30", "--videos", mine) == 1
    assert "not a folder `vireid run --video-out` wrote" in capsys.readouterr().err
    assert (mine / "holiday.mp4").exists()
    with Gallery.open(db) as g:
        assert g.info().num_embeddings == 4  # refused before the gallery's part
    videos = tmp_path / "video"
    videos.mkdir()
    (videos / ".vireid-videos").touch()
    for name, when in (("gate.mp4", 1e9), ("gate.0002.mp4", None)):
        (videos / name).write_bytes(b"x")
        if when:
            os.utime(videos / name, (when, when))
    assert vireid("purge", "-g", db, "--older-than-days", "30", "--videos", videos) == 0
    assert "deleted 1 videos older than 30 days" in capsys.readouterr().out
    assert sorted(p.name for p in videos.glob("*.mp4")) == ["gate.0002.mp4"]


def test_purge_can_keep_the_enrolments_and_purge_only_events_and_videos(
    db: Path, tmp_path: Path, capsys
) -> None:
    """A site that keeps its enrolled people for good but logs for 30 days: a retention job must not
    delete the enrolments with the logs."""
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"event": "track_started", "time": 1000000000.0, "camera": "gate", "modality": "visible", '
        '"track_id": 1, "box": [0, 0, 10, 20]}\n'
    )
    with Gallery.open(db) as g:
        before = g.info().num_embeddings
    assert (
        vireid("purge", "-g", db, "--older-than-days", "1e-9", "--keep-embeddings", "--events", events) == 0
    )
    out = capsys.readouterr().out
    assert "kept every embedding" in out and "purged 1 events" in out
    with Gallery.open(db) as g:
        assert g.info().num_embeddings == before > 0
    assert vireid("purge", "-g", db, "--older-than-days", "1", "--keep-embeddings") == 1
    assert "leaves nothing to purge: give --events FILE or --videos DIR" in capsys.readouterr().err
    # a site without a gallery (cross-modal linking only) purges its logs without naming one
    assert vireid("purge", "--older-than-days", "1", "--keep-embeddings", "--events", events) == 0
    assert vireid("purge", "--older-than-days", "1", "--events", events) == 1
    assert "purge needs --gallery G.db" in capsys.readouterr().err
    typo = db.with_name("typo.db")
    assert vireid("purge", "-g", typo, "--older-than-days", "1", "--keep-embeddings", "--events", events) == 1
    assert "no gallery file here (a typo?)" in capsys.readouterr().err
    args = [
        "purge",
        "-g",
        db,
        "--older-than-days",
        "1",
        "--keep-embeddings",
        "--keep-empty",
        "--events",
        events,
    ]
    with pytest.raises(SystemExit) as usage:
        vireid(*args)
    assert usage.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_failed_import_into_a_new_path_leaves_no_gallery_behind(db: Path, tmp_path: Path, capsys) -> None:
    export = tmp_path / "g.npz"
    assert vireid("export", "-g", db, "--out", export, "--allow-biometric-export") == 0
    arrays = dict(np.load(export))
    arrays["vectors"] = arrays["vectors"][:, :-1]  # the manifest still reads; the vectors do not fit it
    broken = tmp_path / "broken.npz"
    np.savez(broken, **arrays)
    fresh = tmp_path / "fresh.db"
    assert vireid("import", "-g", fresh, broken) == 1
    assert not fresh.exists()
    arrays = dict(np.load(export))
    manifest = json.loads(arrays["manifest"].tobytes())
    manifest["identities"][0]["created_at"] = "yesterday"  # refused by the import's own check too
    arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), np.uint8)
    np.savez(broken, **arrays)
    assert vireid("import", "-g", fresh, broken) == 1
    assert not fresh.exists()
    assert vireid("import", "-g", fresh, export) == 0
    assert vireid("import", "-g", fresh, export, "--on-conflict", "skip") == 0
    assert "imported 0 embeddings" in capsys.readouterr().out.splitlines()[-1]


def test_crops_that_contradict_their_modality_are_flagged(tmp_path: Path, caplog) -> None:
    from vireid.enrollment import embed_files

    class ColourEmbedder:  # a fake embedder (named as such): only the warning is under test
        def embed(self, images, modality):
            return types.SimpleNamespace(vectors=np.stack([colour_vector(i) for i in images]))

    colour = write_crops(tmp_path / "colour", [(200, 10, 10), (10, 200, 10), (10, 10, 200)])
    grey = write_crops(tmp_path / "grey", [(90, 90, 90), (150, 150, 150), (30, 30, 30)])
    cases = [(colour, "ir", "3 of 3 crops given as infrared are in colour"), (colour, "rgb", None),
             (grey, "rgb", "all 3 crops given as visible are grey"), (grey, "ir", None)]  # fmt: skip
    for files, modality, warning in cases:
        caplog.clear()
        with caplog.at_level("WARNING", logger="vireid"):
            vectors, used, _ = embed_files(ColourEmbedder(), files, modality)
        assert len(vectors) == len(used) == 3
        assert (warning in caplog.text) if warning else "crops given as" not in caplog.text
