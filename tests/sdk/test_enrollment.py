"""`vireid.enroll_images`: crops on disk → embeddings → gallery, with real ONNX Runtime, files and SQLite;
re-enrolment replaces an identity's embeddings in one transaction."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from contract_model import build_contract_model

import vireid
from vireid import Embedder, Gallery, GalleryError, InputSpecError


@pytest.fixture
def setup(tmp_path: Path):
    model = build_contract_model(tmp_path / "model.onnx")
    embedder = Embedder(model, device="cpu")
    gallery = Gallery(
        tmp_path / "g.db", embedding_space=embedder.embedding_space, dim=embedder.card.embedding_dim
    )
    yield embedder, gallery
    gallery.close()
    embedder.close()


def crops(folder: Path, count: int, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 256, (64, 32, 3), dtype=np.uint8))
    return folder


def test_folder_of_crops_is_embedded_and_enrolled(setup, tmp_path: Path) -> None:
    embedder, gallery = setup
    report = vireid.enroll_images(
        gallery,
        embedder,
        "alice",
        [crops(tmp_path / "alice", 5, 0)],
        "rgb",
        camera="gate",
        metadata={"role": "staff"},
    )
    assert len(report.ids) == 5 and [p.name for p in report.used] == [f"{i:03d}.png" for i in range(5)]
    stored = gallery.embeddings("alice")
    assert len(stored.ids) == 5 and set(stored.cameras) == {"gate"}
    expected = embedder.embed([cv2.imread(str(p))[:, :, ::-1] for p in report.used], "visible").vectors
    np.testing.assert_allclose(stored.vectors, expected, atol=1e-6)
    assert gallery.search_identities(expected[:1], k=1)[0][0].identity == "alice"


def test_unreadable_crops_are_an_error_or_skipped_and_reported(setup, tmp_path: Path) -> None:
    embedder, gallery = setup
    folder = crops(tmp_path / "bob", 3, 1)
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputSpecError, match=r"(?s)1 images cannot be read \(nothing was written\).*broken"):
        vireid.enroll_images(gallery, embedder, "bob", [folder], "ir")
    assert gallery.identities() == []
    report = vireid.enroll_images(gallery, embedder, "bob", [folder], "ir", skip_bad=True)
    assert len(report.ids) == 3 and [p.name for p, _ in report.skipped] == ["broken.png"]


def test_re_enrolment_replaces_atomically_and_a_failed_one_keeps_the_old_embeddings(
    setup, tmp_path: Path
) -> None:
    embedder, gallery = setup
    vireid.enroll_images(gallery, embedder, "carol", [crops(tmp_path / "old", 4, 2)], "visible")
    old_ids = gallery.embeddings("carol").ids
    bad = crops(tmp_path / "bad", 2, 3)
    (bad / "zz.png").write_bytes(b"")
    with pytest.raises(InputSpecError):
        vireid.enroll_images(gallery, embedder, "carol", [bad], "visible", replace=True)
    np.testing.assert_array_equal(gallery.embeddings("carol").ids, old_ids)  # untouched
    report = vireid.enroll_images(
        gallery, embedder, "carol", [crops(tmp_path / "new", 2, 4)], "visible", replace=True
    )
    np.testing.assert_array_equal(gallery.embeddings("carol").ids, report.ids)
    assert (
        not set(old_ids) & set(report.ids)
        and len(gallery.search(np.eye(16, dtype=np.float32)[:1], k=10)[0]) == 2
    )


def test_another_model_is_refused_before_any_embedding(setup, tmp_path: Path) -> None:
    _, gallery = setup
    other = Embedder(build_contract_model(tmp_path / "other.onnx", seed=1), device="cpu")
    with pytest.raises(GalleryError, match="vectors of different models are not comparable"):
        vireid.enroll_images(gallery, other, "dave", [crops(tmp_path / "dave", 1, 5)], "visible")
    other.close()
    with pytest.raises(InputSpecError, match="no such file or folder"):
        vireid.enroll_images(gallery, setup[0], "dave", [tmp_path / "missing"], "visible")


def test_one_folder_given_as_a_string_or_path_is_one_input_not_its_characters(setup, tmp_path: Path) -> None:
    embedder, gallery = setup
    folder = crops(tmp_path / "dana", 3, 3)
    assert len(vireid.enroll_images(gallery, embedder, "dana", str(folder), "visible").ids) == 3
    assert len(vireid.enroll_images(gallery, embedder, "dana", folder / "000.png", "visible").ids) == 1
    assert gallery.embeddings("dana").ids.size == 4
