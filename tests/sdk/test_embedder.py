"""`Embedder` on real ONNX Runtime with the contract model, and the `Embeddings` result type."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from contract_model import build_contract_model, contract_card, reference_embeddings

import vireid.embedder as embedder_module
from vireid import ArtifactError, InputSpecError, Modality
from vireid.backends import open_backend
from vireid.embedder import Embedder
from vireid.embeddings import Embeddings
from vireid.preprocess import preprocess_boxes, preprocess_crops
from vireid.thermal import ThermalScaling

SIZE = (32, 16)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_contract_model(tmp_path_factory.mktemp("embedder") / "contract.onnx")


@pytest.fixture(scope="module")
def embedder(model: Path):
    with Embedder(model, device="cpu", threads=1) as e:
        yield e


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(5)


def crops(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    shapes = [(int(rng.integers(20, 120)), int(rng.integers(10, 60))) for _ in range(n)]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def unit(rng: np.random.Generator, n: int, dim: int = 4) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ----- Embedder -----------------------------------------------------------------------------------
def test_embed_crops_of_any_size(embedder: Embedder, rng) -> None:
    images = crops(rng, 5)
    emb = embedder.embed(images, "thermal", camera_ids="gate", track_ids=[1, 2, 3, 4, 5])
    assert isinstance(emb, Embeddings) and len(emb) == 5 and emb.vectors.shape == (5, 16)
    assert emb.modalities.tolist() == [Modality.INFRARED] * 5 and emb.modalities.dtype == np.int8
    assert emb.camera_ids.tolist() == ["gate"] * 5 and emb.track_ids.tolist() == [1, 2, 3, 4, 5]
    ready = preprocess_crops(images, SIZE)
    np.testing.assert_allclose(emb.vectors, reference_embeddings(ready, np.ones(5, np.int64)), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-6)


def test_card_properties(embedder: Embedder) -> None:
    card = contract_card()
    assert embedder.card == card and embedder.embedding_space == card.embedding_space()
    assert embedder.threshold == 0.5 and embedder.device == "cpu" and embedder.dim == 16
    assert embedder.embed(np.zeros((40, 20, 3), np.uint8), 0).embedding_space == card.embedding_space()


def test_mixed_modalities_in_one_call_equal_separate_calls(embedder: Embedder, rng) -> None:
    images = crops(rng, 6)
    mixed = ["rgb", "ir", Modality.INFRARED, 0, np.int64(1), "visible"]
    together = embedder.embed(images, mixed)
    assert together.modalities.tolist() == [0, 1, 1, 0, 1, 0]
    for code in (0, 1):
        rows = np.flatnonzero(together.modalities == code)
        alone = embedder.embed([images[i] for i in rows], code)
        np.testing.assert_allclose(together.vectors[rows], alone.vectors, atol=1e-6)
        np.testing.assert_array_equal(together.with_modality(code).vectors, together.vectors[rows])


def test_batch_size_does_not_change_results(model: Path, embedder: Embedder, rng) -> None:
    images = crops(rng, 7)
    with Embedder(model, device="cpu", batch_size=3) as small:
        np.testing.assert_allclose(
            small.embed(images, 1).vectors, embedder.embed(images, 1).vectors, atol=1e-6
        )


def test_ready_batch_and_bgr_and_infrared(embedder: Embedder, rng) -> None:
    ready = rng.integers(0, 256, (3, *SIZE, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        embedder.embed(ready, 0).vectors, reference_embeddings(ready, np.zeros(3, np.int64)), atol=1e-5
    )
    bgr = np.ascontiguousarray(ready[..., ::-1])
    np.testing.assert_allclose(
        embedder.embed(bgr, 0, bgr=True).vectors, embedder.embed(ready, 0).vectors, atol=1e-6
    )
    grey = rng.integers(0, 256, (64, 32), dtype=np.uint8)
    three = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    np.testing.assert_allclose(
        embedder.embed([grey], 1).vectors, embedder.embed([three], 1).vectors, atol=1e-6
    )


def test_embed_boxes_equals_embedding_the_crops(embedder: Embedder, rng) -> None:
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = [[10, 10, 40, 90], [140, 50, 175, 130]]  # the second leaves the frame
    emb = embedder.embed_boxes(frame, boxes, "rgb", bgr=True, camera_ids=3)
    expected = embedder.embed(preprocess_boxes(frame, boxes, SIZE, bgr=True), "rgb")
    np.testing.assert_allclose(emb.vectors, expected.vectors, atol=1e-6)
    assert emb.camera_ids.tolist() == [3, 3]
    assert len(embedder.embed_boxes(frame, np.zeros((0, 4)), "rgb")) == 0


def test_uint16_thermal_crops_and_frames_take_the_scaling_the_error_names(embedder: Embedder, rng) -> None:
    raw = [rng.integers(28000, 31000, (int(h), 30), dtype=np.uint16) for h in (60, 90)]
    with pytest.raises(InputSpecError, match=r"images\[0\]: 16-bit .* pass thermal='window:LOW:HIGH'"):
        embedder.embed(raw, "ir")
    emb = embedder.embed(raw, "ir", thermal="window:27315:31315")
    by_hand = [
        np.clip((r.astype(np.float64) - 27315) / 4000 * 255, 0, 255).round().astype(np.uint8) for r in raw
    ]
    np.testing.assert_allclose(emb.vectors, embedder.embed(by_hand, "ir").vectors, atol=1e-6)
    frame = rng.integers(28000, 31000, (120, 160), dtype=np.uint16)
    boxes = [[10, 10, 40, 90], [100, 20, 150, 110]]
    from_frame = embedder.embed_boxes(frame, boxes, "ir", thermal="percentile:1:99")
    scaled = ThermalScaling.parse("percentile:1:99").to_uint8(frame)  # the whole frame, before cropping
    np.testing.assert_allclose(
        from_frame.vectors, embedder.embed_boxes(scaled, boxes, "ir").vectors, atol=1e-6
    )
    with pytest.raises(InputSpecError, match="thermal"):
        embedder.embed(raw, "ir", thermal="window:5")


def test_box_errors_print_plain_numbers(embedder: Embedder) -> None:
    frame = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(InputSpecError, match=r"boxes\[0\]: box \(5, 5, 5, 9.5\) is empty"):
        embedder.embed_boxes(frame, np.array([[5.0, 5.0, 5.0, 9.5]]), "rgb")


@pytest.mark.parametrize(
    ("images", "modality", "message"),
    [
        (
            [np.zeros((10, 10, 4), np.uint8)],
            0,
            r"images\[0\] must be HxWx3 or HxW uint8, got \(10, 10, 4\) uint8",
        ),
        ([np.zeros((10, 10, 3), np.uint8)] * 2, [0, 1, 1], "modality: got 3 values for 2 images"),
        ([np.zeros((10, 10, 3), np.uint8)], "uv", "unknown modality 'uv'"),
        ([np.zeros((10, 10, 3), np.uint8)], 2, "unknown modality 2"),
    ],
)
def test_bad_embed_arguments(embedder: Embedder, images, modality, message: str) -> None:
    with pytest.raises(InputSpecError, match=message):
        embedder.embed(images, modality)


def test_modality_the_model_does_not_take_is_refused(tmp_path: Path) -> None:
    path = build_contract_model(tmp_path / "vis.onnx", card=contract_card(modalities=("visible",)))
    with Embedder(path, device="cpu") as e, pytest.raises(InputSpecError, match="takes visible crops only"):
        e.embed([np.zeros((10, 10, 3), np.uint8)], "ir")


def test_embedder_arguments_and_owned_backend(model: Path) -> None:
    with pytest.raises(InputSpecError, match="batch_size must be a positive integer"):
        Embedder(model, batch_size=0)
    backend = open_backend(model, "cpu")
    with Embedder(backend) as shared:
        assert shared.backend is backend
    backend.infer(np.zeros((1, *SIZE, 3), np.uint8), np.zeros(1, np.int32))  # not closed by the Embedder
    with pytest.raises(InputSpecError, match="already opened backend"):
        Embedder(backend, threads=2)
    backend.close()


def test_zero_output_rows_are_reported_by_a_fake_backend(embedder: Embedder, monkeypatch) -> None:
    monkeypatch.setattr(
        embedder.backend, "infer", lambda images, codes: np.zeros((len(images), 16), np.float32)
    )
    with pytest.raises(ArtifactError, match=r"zero or non-finite embeddings for items \[0\]"):
        embedder.embed([np.zeros((10, 10, 3), np.uint8)], 0)


def test_embedder_module_is_light() -> None:
    assert embedder_module.Embedder is Embedder


# ----- Embeddings ---------------------------------------------------------------------------------
def test_embeddings_mask_index_concat(rng) -> None:
    a = Embeddings(
        unit(rng, 3), [0, 1, 1], camera_ids=["a", "b", "c"], track_ids=[1, 2, 3], embedding_space="s"
    )
    assert a.modalities.dtype == np.int8 and a.dim == 4 and len(a) == 3
    picked = a[np.array([True, False, True])]
    assert picked.camera_ids.tolist() == ["a", "c"] and picked.track_ids.tolist() == [1, 3]
    assert picked.embedding_space == "s" and len(a[1]) == 1 and a[1].modalities.tolist() == [1]
    both = Embeddings.concat([a, picked])
    assert len(both) == 5 and both.track_ids.tolist() == [1, 2, 3, 1, 3]
    assert "n=3" in repr(a)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vectors": np.ones((2, 4))}, r"vectors must be \(N, D\) float32, got \(2, 4\) float64"),
        ({"vectors": np.ones(4, np.float32)}, r"got \(4,\) float32"),
        (
            {"vectors": np.full((2, 4), 0.7, np.float32)},
            r"L2-normalised .* norms \[1.4, 1.4\] at rows \[0, 1\]",
        ),
        ({"modalities": [0]}, r"modalities must be \(2,\) int8 .*got \(1,\) int8"),
        ({"modalities": np.array([0, 3])}, r"0 \(visible\) or 1 \(infrared\), got \[3\] at rows \[1\]"),
        ({"modalities": np.array([0, 257])}, r"got \[257\] at rows \[1\]"),  # not wrapped to int8 1
        ({"track_ids": [1.5, 2]}, r"track_ids must be \(2,\) int64"),
        ({"camera_ids": ["a"]}, r"camera_ids must be \(2,\)"),
    ],
)
def test_embeddings_validation_states_expected_and_actual(rng, kwargs, message: str) -> None:
    fields = {"vectors": unit(rng, 2), "modalities": [0, 1], **kwargs}
    with pytest.raises(InputSpecError, match=message):
        Embeddings(**fields)


def test_embeddings_concat_refusals(rng) -> None:
    a = Embeddings(unit(rng, 2), 0, embedding_space="s")
    with pytest.raises(InputSpecError, match="embedding spaces"):
        Embeddings.concat([a, Embeddings(unit(rng, 1), 0, embedding_space="t")])
    with pytest.raises(InputSpecError, match="dims"):
        Embeddings.concat([a, Embeddings(unit(rng, 1, dim=8), 0, embedding_space="s")])
    with pytest.raises(InputSpecError, match="track_ids are set on some"):
        Embeddings.concat([a, Embeddings(unit(rng, 1), 0, track_ids=[4], embedding_space="s")])
    with pytest.raises(InputSpecError, match="at least one"):
        Embeddings.concat([])
    with pytest.raises(InputSpecError, match=r"boolean mask must have shape \(2,\)"):
        a[np.array([True])]


def test_embedders_sharing_one_backend_across_threads_get_their_own_results(model: Path, rng) -> None:
    """Each Embedder filled the backend's shared staging buffer outside the backend's lock: two of them
    on one backend in two threads returned each other's embeddings (35 of 150 wrong, no error)."""
    import threading

    batches = [crops(rng, 6) for _ in range(40)]
    with open_backend(model, "cpu", threads=1) as backend:
        expected = [Embedder(backend).embed(b, "rgb").vectors for b in batches]
        results: dict[int, np.ndarray] = {}

        def work(indices: range) -> None:
            mine = Embedder(backend, batch_size=3)
            for i in indices:
                results[i] = mine.embed(batches[i], "rgb").vectors

        threads = [threading.Thread(target=work, args=(range(k, 40, 2),)) for k in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    wrong = [i for i in range(40) if not np.allclose(results[i], expected[i], atol=1e-5)]
    assert wrong == []
