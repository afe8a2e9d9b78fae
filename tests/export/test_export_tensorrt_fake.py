"""`to_engine` builder logic against the FAKE tensorrt / cudart modules of tests/sdk/fake_tensorrt.py.

The fake builder records every setting in the engine it writes, so these tests check flags, profile,
workspace, precision handling per TensorRT version, timing-cache reuse, the sidecar card and the error
paths on a CPU; the built fake engine is then opened by the runtime's TensorRT backend (also faked).
Real builds are in test_export_gpu.py (marked gpu).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fake_tensorrt as fake
import numpy as np
import onnx
import pytest

from vireid import ArtifactError, BatchProfile, ConfigError, DeviceError, MissingDependencyError, ModelCard
from vireid.backends.tensorrt import TensorRTBackend
from vireid.card import Precision, sha256_file
from vireid.export import attach_card, to_engine, trtexec_command
from vireid.export.artifact import save_onnx


@pytest.fixture
def trt_env(monkeypatch: pytest.MonkeyPatch):
    """Install fake tensorrt (version chosen by the test) + cudart; returns a setter."""
    cudart = fake.FakeCudart()
    for name, module in fake.cuda_modules(cudart).items():
        monkeypatch.setitem(sys.modules, name, module)

    def install(version: str = fake.VERSION, **options) -> object:
        module = fake.tensorrt_module(version, **options)
        monkeypatch.setitem(sys.modules, "tensorrt", module)
        return module

    install()
    return install


def build_spec(engine: Path) -> dict:
    return json.loads(engine.read_bytes()[len(fake.MAGIC) :])


def test_fake_fp16_onnx_builds_strongly_typed_engine_with_profile_and_sidecar(
    trt_env, tiny_fp16, tmp_path
) -> None:
    engine = to_engine(tiny_fp16, tmp_path / "m.engine", batch=(1, 4, 16), workspace=256 << 20)
    spec = build_spec(engine)
    build = spec["build"]
    assert build["strongly_typed"] and build["network_flags"] == 1 << 1  # 10.x: STRONGLY_TYPED
    assert "FP16" not in build["flags"]  # 10.x refuses FP16 + STRONGLY_TYPED
    assert build["workspace"] == 256 << 20
    assert build["shapes"] == {
        "images": [[1, 128, 64, 3], [4, 128, 64, 3], [16, 128, 64, 3]],
        "modality": [[1], [4], [16]],
    }
    card = ModelCard.from_engine(engine)  # checks the SHA-256 too
    assert card.engine_sha256 == sha256_file(engine)
    assert card.precision is Precision.FP16 and card.profile == BatchProfile(1, 4, 16)
    assert (card.tensorrt_version, card.gpu_name, card.compute_capability) == (
        "10.3.0",
        "NVIDIA Fake GPU",
        "8.6",
    )
    assert card.embedding_space() == ModelCard.from_onnx(tiny_fp16).embedding_space()


def test_fake_built_engine_opens_in_the_runtime_backend(trt_env, tiny_fp16, tmp_path) -> None:
    engine = to_engine(tiny_fp16, tmp_path / "m.engine", batch=(1, 4, 8))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 128, 64, 3), dtype=np.uint8)
    modality = np.array([0, 1, 0, 1, 1], np.int32)
    with TensorRTBackend(engine, device="tensorrt") as backend:
        assert backend.max_batch == 8
        out = backend.infer(images, modality)
    assert np.allclose(out, fake.fake_engine_function(images, modality, 128), atol=1e-6)


@pytest.mark.parametrize(
    ("version", "network_flags", "flags"),
    [
        ("8.6.1", 1 << 0, {"FP16", "TF32"}),  # explicit batch, no strong typing: the FP16 flag instead
        ("10.3.0", 1 << 1, {"TF32"}),  # strongly typed
        ("11.4.0", 0, {"TF32"}),  # always strongly typed; no flags to set
    ],
)
def test_fake_fp16_onnx_per_tensorrt_version(
    trt_env, tiny_fp16, tmp_path, version, network_flags, flags
) -> None:
    trt_env(version)
    build = build_spec(to_engine(tiny_fp16, tmp_path / "m.engine"))["build"]
    assert build["network_flags"] == network_flags and set(build["flags"]) == flags
    assert ModelCard.from_engine(tmp_path / "m.engine").tensorrt_version == version


def test_fake_fp32_onnx_fp32_engine_disables_tf32(trt_env, tiny_onnx, tmp_path) -> None:
    build = build_spec(to_engine(tiny_onnx, tmp_path / "m.engine"))["build"]
    assert build["flags"] == [] and not build["strongly_typed"]
    assert ModelCard.from_engine(tmp_path / "m.engine").precision is Precision.FP32


def test_fake_fp32_onnx_as_fp16_pins_fragile_layers_on_tensorrt_10(trt_env, tiny_onnx, tmp_path) -> None:
    build = build_spec(to_engine(tiny_onnx, tmp_path / "m.engine", precision="fp16"))["build"]
    assert set(build["flags"]) >= {"FP16", "OBEY_PRECISION_CONSTRAINTS"}
    pinned = set(build["pinned_fp32"])
    assert {"/head/pool/Pow", "/head/bnneck/BatchNormalization", "/ReduceL2", "/Cast"} <= pinned
    assert not any("/backbone/layer" in name and "Conv" in name for name in pinned)


def test_fake_tensorrt_11_needs_an_fp16_onnx_and_fp16_onnx_cannot_make_fp32(
    trt_env, tiny_onnx, tiny_fp16, tmp_path
) -> None:
    trt_env("11.4.0")
    with pytest.raises(ConfigError, match=r"only from an FP16 ONNX.*to_fp16"):
        to_engine(tiny_onnx, tmp_path / "m.engine", precision="fp16")
    with pytest.raises(ConfigError, match="FP32 engine must be built from the FP32 ONNX"):
        to_engine(tiny_fp16, tmp_path / "m.engine", precision="fp32")
    with pytest.raises(ConfigError, match="INT8"):
        to_engine(tiny_onnx, tmp_path / "m.engine", precision="int8")
    assert not (tmp_path / "m.engine").exists()


def test_fake_timing_cache_is_written_and_reused(trt_env, tiny_fp16, tmp_path) -> None:
    cache = tmp_path / "timing.cache"
    first = build_spec(to_engine(tiny_fp16, tmp_path / "a.engine", timing_cache=cache))["build"]
    assert not first["timing_cache_reused"] and cache.read_bytes().startswith(fake.CACHE_MAGIC)
    second = build_spec(to_engine(tiny_fp16, tmp_path / "b.engine", timing_cache=cache))["build"]
    assert second["timing_cache_reused"]
    assert json.loads(cache.read_bytes()[len(fake.CACHE_MAGIC) :]) == {"builds": 2}


# ----- errors ---------------------------------------------------------------------------------------
def test_missing_tensorrt_names_the_extra_and_the_trtexec_command(monkeypatch, tiny_fp16, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(MissingDependencyError) as info:
        to_engine(tiny_fp16, tmp_path / "m.engine", batch=(1, 8, 32), timing_cache=tmp_path / "tc.bin")
    message = str(info.value)
    assert "pip install 'vireid[tensorrt]'" in message and info.value.extra == "tensorrt"
    assert f"trtexec --onnx={tiny_fp16} --saveEngine={tmp_path / 'm.engine'}" in message
    assert "--minShapes=images:1x128x64x3,modality:1" in message
    assert "--maxShapes=images:32x128x64x3,modality:32" in message
    assert "--stronglyTyped" in message and f"--timingCacheFile={tmp_path / 'tc.bin'}" in message
    assert f"--attach {tmp_path / 'm.engine'}" in message
    with pytest.raises(MissingDependencyError) as info:
        to_engine(tiny_fp16, tmp_path / "m.engine", batch=(8, 8, 8))
    assert f"--attach {tmp_path / 'm.engine'} --batch=8,8,8" in str(info.value)


def test_trtexec_command_per_precision(tiny_onnx, tiny_fp16) -> None:
    assert "--noTF32" in trtexec_command(tiny_onnx)
    fp16_build = trtexec_command(tiny_onnx, precision="fp16")
    assert "--fp16" in fp16_build and "--precisionConstraints=obey" in fp16_build
    # the same fragile layers to_engine pins (GeM's Pow, the L2 norm, the BN-neck), by node name; no Shape
    pinned = fp16_build.split("--layerPrecisions=")[1].split()[0].strip("'").split(",")
    assert {"/head/pool/Pow:fp32", "/ReduceL2:fp32", "/head/bnneck/BatchNormalization:fp32"} <= set(pinned)
    assert f"--layerOutputTypes={','.join(pinned)}" in fp16_build.replace("'", "")
    assert not any(name.startswith("/Shape") for name in pinned)
    command = trtexec_command(tiny_fp16, "/x/m.engine", batch=(2, 4, 8), workspace=2 << 30)
    assert (
        "--memPoolSize=workspace:2048M" in command and "--optShapes=images:4x128x64x3,modality:4" in command
    )


def test_fake_parser_errors_name_the_node(trt_env, tiny_fp16, tmp_path) -> None:
    model = onnx.load(tiny_fp16)
    node = next(n for n in model.graph.node if n.name == "/head/pool/Pow")
    node.op_type = "FakeUnsupportedOp"
    bad = save_onnx(model, tmp_path / "bad.onnx")
    with pytest.raises(ArtifactError, match=r"node '/head/pool/Pow' \(FakeUnsupportedOp\): No importer"):
        to_engine(bad, tmp_path / "m.engine")


def test_fake_failed_build_quotes_tensorrt(trt_env, tiny_fp16, tmp_path, monkeypatch) -> None:
    module = trt_env()
    monkeypatch.setattr(module.Builder, "fail_build", True)
    with pytest.raises(ArtifactError, match="Could not find any implementation"):
        to_engine(tiny_fp16, tmp_path / "m.engine")
    assert not (tmp_path / "m.engine").exists()


def test_fake_no_gpu_is_a_device_error(trt_env, tiny_fp16, tmp_path, monkeypatch) -> None:
    trt_env(cuda_ok=False)
    with pytest.raises(DeviceError, match="CUDA initialization failure"):
        to_engine(tiny_fp16, tmp_path / "m.engine")
    for name, module in fake.cuda_modules(fake.FakeCudart(devices=0)).items():
        monkeypatch.setitem(sys.modules, name, module)
    with pytest.raises(DeviceError, match="needs an NVIDIA GPU"):
        to_engine(tiny_fp16, tmp_path / "m.engine")


@pytest.mark.parametrize("batch", [(8, 4, 2), (0, 1, 2), (1, 2)])
def test_fake_bad_profile_is_a_config_error(trt_env, tiny_fp16, tmp_path, batch) -> None:
    with pytest.raises(ConfigError, match="batch"):
        to_engine(tiny_fp16, tmp_path / "m.engine", batch=batch)


def test_fake_corrupt_onnx_is_an_artifact_error(trt_env, tiny_fp16, tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(tiny_fp16.read_bytes()[:300])
    with pytest.raises(ArtifactError, match="truncated"):
        to_engine(bad, tmp_path / "m.engine")


def test_fake_attach_card_for_an_engine_built_elsewhere(tiny_fp16, tmp_path) -> None:
    engine = fake.write_engine(
        tmp_path / "trtexec.engine", fake.engine_spec(128, 64, 128, profile=(1, 8, 32))
    )
    sidecar = attach_card(engine, tiny_fp16, batch=(1, 8, 32), tensorrt_version="10.3.0")
    assert sidecar == tmp_path / "trtexec.engine.json"
    card = ModelCard.from_engine(engine)
    assert card.profile == BatchProfile(1, 8, 32) and card.precision is Precision.FP16
    with pytest.raises(ArtifactError, match="no such engine"):
        attach_card(tmp_path / "missing.engine", tiny_fp16)


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"", "empty"),
        (b"hello", "a text file"),
        (b"PK\x03\x04 rest of an npz", "a ZIP archive"),
        (b"SQLite format 3\x00 pages", "an SQLite database"),
        (b'\x10\x00\x00\x00\x00\x00\x00\x00{"w": 1}', "a safetensors file"),
        (None, "an ONNX model"),  # the ONNX file itself, renamed
    ],
)
def test_attach_refuses_files_that_are_plainly_not_engines(tiny_fp16, tmp_path, content, kind) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(tiny_fp16.read_bytes() if content is None else content)
    with pytest.raises(ArtifactError, match=f"this is {kind}.*not a TensorRT engine"):
        attach_card(engine, tiny_fp16)
    assert not (tmp_path / "m.engine.json").exists()


# ----- DLA (Jetson): FAKE module, builder settings and card only --------------------------------------
def orin(monkeypatch: pytest.MonkeyPatch, trt, cores: int = 2) -> None:
    """Make the FAKE module's builder and runtime report `cores` DLA cores (AGX Orin: 2)."""
    monkeypatch.setattr(trt.Builder, "num_DLA_cores", cores)
    monkeypatch.setattr(trt.Runtime, "num_DLA_cores", cores)


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0", "10.7.0", "11.4.1"])
def test_fake_dla_build_targets_the_core_with_gpu_fallback_and_the_backend_loads_it_there(
    trt_env, tiny_fp16, tmp_path, monkeypatch, caplog, version
) -> None:
    orin(monkeypatch, trt_env(version))
    with caplog.at_level("INFO", logger="vireid.export"):
        engine = to_engine(tiny_fp16, tmp_path / "m.engine", batch=(4, 4, 4), dla_core=1)
    layers = len(onnx.load(str(tiny_fp16)).graph.node)  # the fake refuses only ReduceL2
    assert f"{layers - 1} of {layers} layers can run on DLA core 1" in caplog.text
    build = build_spec(engine)["build"]
    assert build["device_type"] == "DLA" and build["dla_core"] == 1 and "GPU_FALLBACK" in build["flags"]
    card = ModelCard.from_engine(engine)
    assert card.dla_core == 1 and json.loads(ModelCard.sidecar_path(engine).read_text())["dla_core"] == 1
    with TensorRTBackend(engine, device="tensorrt") as backend:
        assert backend._engine.runtime_dla_core == 1
        assert any("DLA core 1" in p for p in backend.providers)
        assert backend.infer(np.zeros((3, 128, 64, 3), np.uint8), np.zeros(3, np.int32)).shape == (3, 128)


def test_fake_gpu_engines_leave_dla_alone(trt_env, tiny_fp16, tmp_path) -> None:
    engine = to_engine(tiny_fp16, tmp_path / "m.engine")
    assert build_spec(engine)["build"]["device_type"] == "GPU"
    assert "dla_core" not in json.loads(ModelCard.sidecar_path(engine).read_text())  # older readers
    with TensorRTBackend(engine, device="tensorrt") as backend:
        assert backend._engine.runtime_dla_core == -1


@pytest.mark.parametrize(
    ("source", "batch", "core", "message"),
    [
        ("fp32", (4, 4, 4), 0, "DLA runs FP16 or INT8 only"),
        ("fp16", (1, 8, 32), 0, "DLA has no dynamic shapes"),
        ("fp16", (4, 4, 4), -1, "dla_core must be a DLA core index"),
    ],
)
def test_fake_dla_requests_dla_cannot_run_are_config_errors_before_tensorrt(
    trt_env, tiny_onnx, tiny_fp16, tmp_path, source, batch, core, message
) -> None:
    onnx_path = tiny_onnx if source == "fp32" else tiny_fp16
    with pytest.raises(ConfigError, match=message):
        to_engine(onnx_path, tmp_path / "m.engine", batch=batch, dla_core=core)
    with pytest.raises(ConfigError, match=message):
        trtexec_command(onnx_path, batch=batch, dla_core=core)
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.parametrize(
    ("version", "cores", "message"),
    [
        ("10.3.0", 0, "this device has no DLA cores"),
        ("10.3.0", 1, r"DLA core 1 requested, but this device has cores 0\.\.0"),
        ("10.8.0", 2, "TensorRT 10.8.0 has no DLA support"),
        ("11.4.0", 2, "TensorRT 11.4.0 has no DLA support"),
    ],
)
def test_fake_dla_the_device_or_tensorrt_lacks_is_a_device_error(
    trt_env, tiny_fp16, tmp_path, monkeypatch, version, cores, message
) -> None:
    orin(monkeypatch, trt_env(version), cores)
    with pytest.raises(DeviceError, match=message):
        to_engine(tiny_fp16, tmp_path / "m.engine", batch=(4, 4, 4), dla_core=1)


def test_fake_a_dla_engine_on_a_device_without_that_core_is_refused_by_name(
    trt_env, tiny_fp16, tmp_path, monkeypatch
) -> None:
    trt = trt_env()
    orin(monkeypatch, trt)
    engine = to_engine(tiny_fp16, tmp_path / "m.engine", batch=(4, 4, 4), dla_core=1)
    monkeypatch.setattr(trt.Runtime, "num_DLA_cores", 0)  # the same engine copied to a desktop GPU
    with pytest.raises(DeviceError, match="built for DLA core 1, but this device has no DLA cores"):
        TensorRTBackend(engine, device="tensorrt")


def test_fake_dla_trtexec_command_and_attached_card(tiny_fp16, tmp_path) -> None:
    command = trtexec_command(tiny_fp16, batch=(8, 8, 8), dla_core=0)
    assert "--useDLACore=0" in command and "--allowGPUFallback" in command
    engine = fake.write_engine(tmp_path / "dla.engine", fake.engine_spec(128, 64, 128, profile=(8, 8, 8)))
    attach_card(engine, tiny_fp16, batch=(8, 8, 8), dla_core=0)
    assert ModelCard.from_engine(engine).dla_core == 0


def test_fake_triton_serves_a_dla_engine_on_its_core(trt_env, tiny_fp16, tmp_path, monkeypatch) -> None:
    """Triton's TensorRT backend takes the DLA core from a KIND_NVDLA secondary device (it was refused)."""
    from vireid.export import to_triton
    from vireid.export.triton import parse_config

    orin(monkeypatch, trt_env())
    engine = to_engine(tiny_fp16, tmp_path / "m.engine", batch=(1, 1, 1), dla_core=1)
    model = to_triton(engine, tmp_path / "triton", "m")
    config = parse_config(model.config.read_text())
    (group,) = config.instance_group
    (secondary,) = group.secondary_devices
    assert config.max_batch_size == 1 and group.kind == group.KIND_GPU
    assert secondary.kind == secondary.KIND_NVDLA and secondary.device_id == 1
    fixed = to_engine(tiny_fp16, tmp_path / "m8.engine", batch=(8, 8, 8), dla_core=0)
    with pytest.raises(ConfigError, match=r"only one built with batch=\(1, 1, 1\) serves"):
        to_triton(fixed, tmp_path / "triton", "m8")
    with pytest.raises(ConfigError, match="GPU instance group, not cpu"):
        to_triton(engine, tmp_path / "triton", "mc", kind="cpu")
