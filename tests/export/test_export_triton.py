"""`to_triton`: repository layout, and config.pbtxt parsed with Triton's own model-config schema."""

from __future__ import annotations

import json
from pathlib import Path

import fake_tensorrt as fake
import pytest

from vireid import ArtifactError, BatchProfile, ConfigError, ModelCard
from vireid.export import to_triton
from vireid.export.triton import config_text, parse_config, triton_schema

pytest.importorskip("tritonclient", reason="Triton's model_config.proto ships in the tritonclient package")


def make_engine(tmp_path: Path, onnx_path: Path, profile=(1, 8, 32)) -> Path:
    card = ModelCard.from_onnx(onnx_path).replace(profile=BatchProfile(*profile), tensorrt_version="10.3.0")
    engine = fake.write_engine(tmp_path / "m.engine", fake.engine_spec(128, 64, 128, profile=profile))
    card.write_sidecar(engine)
    return engine


def test_onnx_model_repository(tiny_fp16: Path, tmp_path: Path) -> None:
    model = to_triton(tiny_fp16, tmp_path / "repo", "vireid_onnx")
    assert model.directory == tmp_path / "repo" / "vireid_onnx"
    assert model.artifact == model.directory / "1" / "model.onnx"
    assert model.artifact.read_bytes() == tiny_fp16.read_bytes()
    assert ModelCard.from_json((model.directory / "vireid_card.json").read_text()) == ModelCard.from_onnx(
        tiny_fp16
    )
    config = parse_config(model.config.read_text())
    schema = triton_schema()
    assert (config.name, config.platform, config.max_batch_size) == ("vireid_onnx", "onnxruntime_onnx", 32)
    images, modality = config.input
    assert (images.name, list(images.dims), images.data_type) == ("images", [128, 64, 3], schema.TYPE_UINT8)
    assert (modality.name, list(modality.dims), modality.data_type) == ("modality", [1], schema.TYPE_INT32)
    assert modality.HasField("reshape") and list(modality.reshape.shape) == []  # the model sees [N]
    (output,) = config.output
    assert (output.name, list(output.dims), output.data_type) == ("embeddings", [128], schema.TYPE_FP32)
    assert config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 32]
    assert config.instance_group[0].kind == schema.ModelInstanceGroup.KIND_AUTO
    card = json.loads(config.parameters["vireid.card"].string_value)
    assert ModelCard.from_dict(card) == ModelCard.from_onnx(tiny_fp16)


def test_engine_model_repository_fake_engine_file(tiny_fp16: Path, tmp_path: Path) -> None:
    engine = make_engine(tmp_path, tiny_fp16, profile=(1, 4, 16))
    model = to_triton(engine, tmp_path / "repo", "vireid_trt", version=3)
    assert model.artifact == tmp_path / "repo" / "vireid_trt" / "3" / "model.plan"
    config = parse_config(model.config.read_text())
    schema = triton_schema()
    assert (config.platform, config.max_batch_size) == ("tensorrt_plan", 16)  # = profile max
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 16]
    assert config.instance_group[0].kind == schema.ModelInstanceGroup.KIND_GPU
    again = to_triton(engine, tmp_path / "repo", "vireid_trt", max_batch=8, version=3)  # replaces v3
    assert parse_config(again.config.read_text()).max_batch_size == 8


def test_engine_profile_must_cover_triton_batches_fake_engine_file(tiny_fp16: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exceeds the engine profile"):
        to_triton(make_engine(tmp_path, tiny_fp16), tmp_path / "repo", "m", max_batch=64)
    with pytest.raises(ConfigError, match="profile starts at 2"):
        to_triton(make_engine(tmp_path, tiny_fp16, profile=(2, 8, 32)), tmp_path / "repo", "m")


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "match"),
    [
        ("bad name", {}, ConfigError, "letters, digits"),
        ("m", {"max_batch": 0}, ConfigError, "positive integer"),
        ("m", {"kind": "tpu"}, ConfigError, "kind must be one of"),
        ("m", {"version": 0}, ConfigError, "version"),
    ],
)
def test_bad_arguments(tiny_fp16: Path, tmp_path: Path, name, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        to_triton(tiny_fp16, tmp_path / "repo", name, **kwargs)


def test_card_text_with_quotes_and_non_ascii_survives_the_round_trip(tiny_fp16: Path) -> None:
    card = ModelCard.from_onnx(tiny_fp16).replace(match_threshold_data={"root": '/data/Zürich "cam" \\ 1'})
    config = parse_config(config_text(card, "m", "onnxruntime_onnx", 8))
    assert ModelCard.from_json(config.parameters["vireid.card"].string_value) == card


def test_unknown_artifact_and_invalid_config_text(tiny_fp16: Path, tmp_path: Path) -> None:
    other = tmp_path / "model.tflite"
    other.write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"not '\.tflite'"):
        to_triton(other, tmp_path / "repo", "m")
    text = config_text(ModelCard.from_onnx(tiny_fp16), "m", "onnxruntime_onnx", 8)
    assert parse_config(text).max_batch_size == 8
    with pytest.raises(ConfigError, match="invalid Triton model configuration"):
        parse_config(text.replace("max_batch_size", "max_batch"))


def test_without_protobuf_the_config_is_written_unchecked_not_a_crash(
    tiny_fp16: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tritonclient[http]` comes without protobuf: the schema check raised ModuleNotFoundError."""
    import sys

    from vireid import MissingDependencyError

    triton_schema.cache_clear()
    monkeypatch.setitem(sys.modules, "google.protobuf", None)  # an import of it now fails
    monkeypatch.setitem(sys.modules, "google.protobuf.text_format", None)
    try:
        with pytest.raises(MissingDependencyError, match="'protobuf'"):
            parse_config('name: "x"')
        model = to_triton(tiny_fp16, tmp_path / "repo", "vireid")
    finally:
        triton_schema.cache_clear()
    assert "platform" in (tmp_path / "repo" / "vireid" / "config.pbtxt").read_text() and model
