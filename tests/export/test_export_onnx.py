"""Contract and parity tests of `to_onnx` on exported files, run with ONNX Runtime (CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_helpers import SIZE, save_tiny_checkpoint, tiny_model

from vireid import ArtifactError, ConfigError, ModelCard, Precision
from vireid.backends import open_backend
from vireid.export import to_fp16, to_onnx, verify
from vireid.export.artifact import contract_problems
from vireid.export.parity import synthetic_gallery
from vireid.training.checkpoint import load_checkpoint, paths_for
from vireid.training.models import MODELS


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
    return sess.run(None, {"images": images, "modality": modality.astype(np.int32)})[0]


def mixed_batch(n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, *SIZE, 3), dtype=np.uint8)
    return images, np.array([0, 1, 1, 0, 1, 0, 0, 1][:n] * (n // 8 or 1), np.int32)[:n]


def test_io_contract_names_dtypes_and_symbolic_batch(tiny_onnx: Path) -> None:
    sess = session(tiny_onnx)
    inputs = {i.name: (i.type, i.shape) for i in sess.get_inputs()}
    outputs = {o.name: (o.type, o.shape) for o in sess.get_outputs()}
    batch = inputs["images"][1][0]
    assert isinstance(batch, str)  # symbolic, not a number
    assert inputs == {
        "images": ("tensor(uint8)", [batch, *SIZE, 3]),
        "modality": ("tensor(int32)", [batch]),
    }
    assert outputs == {"embeddings": ("tensor(float)", [batch, 128])}
    for n in (1, 3, 17):  # any batch runs
        images, modality = mixed_batch(8)
        images, modality = np.resize(images, (n, *SIZE, 3)), np.resize(modality, n)
        assert run(sess, images, modality).shape == (n, 128)


def test_card_in_metadata(tiny_onnx: Path, tiny_checkpoint: Path) -> None:
    card = ModelCard.from_onnx(tiny_onnx)
    assert card.model_name == "mspac" and card.precision is Precision.FP32
    assert (card.input_height, card.input_width, card.embedding_dim, card.opset) == (*SIZE, 128, 17)
    assert card.source_checkpoint_sha256 == load_checkpoint(tiny_checkpoint).sha256
    assert card.model_config["backbone"] == "resnet_tiny" and "pretrained" not in card.model_config
    assert card.normalized and card.color_order == "RGB" and card.input_names == ("images", "modality")
    props = {p.key: p.value for p in onnx.load(tiny_onnx).metadata_props}
    assert json.loads(props["vireid.card"])["schema_version"] == card.schema_version


def test_embeddings_are_unit_norm_and_match_pytorch(tiny_onnx: Path, tiny_checkpoint: Path) -> None:
    images, modality = mixed_batch(8)
    got = run(session(tiny_onnx), images, modality)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    report = verify(tiny_checkpoint, tiny_onnx, (images, modality), device="cpu")
    assert report, str(report)
    assert report.min_cosine >= 0.99999 and report.batch_delta <= 1e-5


def test_modality_switches_the_stem(tiny_onnx: Path) -> None:
    model = tiny_model()
    names = {n.name for n in onnx.load(tiny_onnx).graph.node}
    assert any("visible_stem" in n for n in names) and any("infrared_stem" in n for n in names)
    images, _ = mixed_batch(4)
    sess = session(tiny_onnx)
    as_visible = run(sess, images, np.zeros(4, np.int32))
    as_infrared = run(sess, images, np.ones(4, np.int32))
    assert np.max(np.abs(as_visible - as_infrared)) > 1e-3  # the modality input changes the result
    with torch.no_grad():
        expected = model(torch.from_numpy(images), torch.ones(4, dtype=torch.int32)).numpy()
    assert np.allclose(as_infrared, expected, atol=1e-5)  # ...and selects the infrared stem's weights


def test_image_alone_equals_image_in_a_batch_of_32(tiny_onnx: Path) -> None:
    images, modality, _ = synthetic_gallery(SIZE, identities=16)
    sess = session(tiny_onnx)
    batched = run(sess, images, modality)
    alone = np.concatenate([run(sess, images[i : i + 1], modality[i : i + 1]) for i in (0, 1, 31)])
    assert np.max(np.abs(alone - batched[[0, 1, 31]])) <= 1e-5


def test_runtime_backend_opens_the_export(tiny_onnx: Path) -> None:
    images, modality = mixed_batch(8)
    with open_backend(tiny_onnx, device="cpu") as backend:
        assert backend.card.embedding_dim == 128
        out = backend.infer(images, modality)
    assert np.allclose(out, run(session(tiny_onnx), images, modality), atol=1e-6)


@pytest.mark.parametrize("name", sorted(MODELS.names()))
def test_every_registered_model_exports_to_onnx_and_fp16_with_parity(name: str, tmp_path: Path) -> None:
    checkpoint = save_tiny_checkpoint(tmp_path / name, name)
    path = to_onnx(checkpoint, tmp_path / f"{name}.onnx")
    proto = onnx.load(path)
    card = ModelCard.from_onnx(path)
    assert card.model_name == name and contract_problems(proto, card) == []
    assert verify(checkpoint, path, mixed_batch(8), device="cpu")
    half = to_fp16(path, tmp_path / f"{name}.fp16.onnx")
    assert ModelCard.from_onnx(half).precision is Precision.FP16
    assert verify(path, half, mixed_batch(8), device="cpu")  # the FP16 thresholds, as for mspac


# ----- errors ---------------------------------------------------------------------------------------
def test_fixed_batch_and_old_opset_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dynamic batch"):
        to_onnx(tiny_checkpoint, tmp_path / "m.onnx", batch=4)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="opset"):
        to_onnx(tiny_checkpoint, tmp_path / "m.onnx", opset=11)


def test_corrupt_or_mismatched_checkpoint_is_an_artifact_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    weights, desc = paths_for(tiny_checkpoint)
    other = save_tiny_checkpoint(tmp_path / "base", "baseline")  # weights of another architecture
    (tmp_path / "swapped.safetensors").write_bytes(other.read_bytes())
    (tmp_path / "swapped.json").write_text(desc.read_text())
    with pytest.raises(ArtifactError, match=r"not the ones swapped\.json describes"):
        to_onnx(tmp_path / "swapped.safetensors", tmp_path / "m.onnx")
    # without the recorded hash (checkpoints of older versions) the deeper checks still hold
    unhashed = {k: v for k, v in json.loads(desc.read_text()).items() if k != "weights_sha256"}
    broken = tmp_path / "broken"
    (tmp_path / "broken.json").write_text(json.dumps(unhashed))
    (tmp_path / "broken.safetensors").write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="cannot read weights"):
        to_onnx(broken, tmp_path / "m.onnx")
    (tmp_path / "swapped.json").write_text(json.dumps(unhashed))
    with pytest.raises(ArtifactError, match="do not fit") as info:
        to_onnx(tmp_path / "swapped.safetensors", tmp_path / "m.onnx")
    assert "missing tensors (e.g." in str(info.value) and len(str(info.value)) < 600  # counted, not listed
    assert not (tmp_path / "m.onnx").exists()


def test_two_models_exported_from_memory_get_different_embedding_spaces(tmp_path: Path) -> None:
    """With no checkpoint the card's fingerprint used to be name + dim + config only: two trained
    models of one architecture shared it, and a gallery took vectors of one for the other."""
    from export_helpers import tiny_model

    from vireid.export import to_onnx

    spaces = {
        ModelCard.from_onnx(
            to_onnx(tiny_model("mspac", seed=seed), tmp_path / f"m{seed}.onnx")
        ).embedding_space()
        for seed in (0, 1)
    }
    assert len(spaces) == 2
