"""Backend table, `open_backend` and the ONNX Runtime backend, on REAL ONNX Runtime with the contract model.

Tests that stand in a fake for part of ONNX Runtime say "fake" in their names.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from contract_model import build_contract_model, contract_card, reference_embeddings
from onnx import TensorProto

from vireid import ArtifactError, BatchProfile, CardError, DeviceError, InputSpecError, Modality
from vireid.backends import (
    FORMATS,
    BackendFormat,
    accepted_suffixes,
    format_for,
    open_backend,
    register_format,
)
from vireid.backends import ort_config as cfg
from vireid.backends.ort import OnnxRuntimeBackend

H, W, D = 32, 16, 16


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_contract_model(tmp_path_factory.mktemp("contract") / "contract.onnx")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


def batch(rng: np.random.Generator, n: int, modality: int | list[int] = 0) -> tuple[np.ndarray, np.ndarray]:
    images = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    codes = np.broadcast_to(np.asarray(modality, dtype=np.int32), (n,)).copy()
    return images, codes


# ----- the fixture itself follows the contract ----------------------------------------------------
def test_contract_fixture_names_dtypes_symbolic_batch_and_modality_effect(model: Path, rng) -> None:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    assert inputs == {"images": ("tensor(uint8)", ["N", H, W, 3]), "modality": ("tensor(int32)", ["N"])}
    (output,) = session.get_outputs()
    assert (output.name, output.type, output.shape) == ("embeddings", "tensor(float)", ["N", D])
    images, _ = batch(rng, 3)
    visible = session.run(None, {"images": images, "modality": np.zeros(3, np.int32)})[0]
    infrared = session.run(None, {"images": images, "modality": np.ones(3, np.int32)})[0]
    np.testing.assert_allclose(np.linalg.norm(visible, axis=1), 1.0, atol=1e-6)
    assert np.abs(visible - infrared).max() > 0.05  # modality really changes the output


# ----- the table ----------------------------------------------------------------------------------
def test_format_rows_and_suffix_selection() -> None:
    assert format_for("m.ONNX").id == "onnx" and format_for("a/b.engine").id == "tensorrt"
    assert FORMATS["tensorrt"].runs_on_gpu and not FORMATS["tensorrt"].runs_on_cpu
    assert FORMATS["onnx"].backend == "vireid.backends.ort:OnnxRuntimeBackend"
    with pytest.raises(AttributeError):
        FORMATS["onnx"].id = "x"  # type: ignore[misc]  # frozen rows
    with pytest.raises(ArtifactError, match=r"model\.pt: no backend opens '\.pt' files; accepted suffixes: "):
        open_backend("model.pt")
    assert accepted_suffixes() == [".engine", ".onnx", ".plan", ".trt"]


def test_register_format_refuses_a_suffix_clash() -> None:
    with pytest.raises(InputSpecError, match="already belong to 'onnx'"):
        register_format(BackendFormat("other", (".onnx",), True, False, "x:Y", ("cpu",)))


@pytest.mark.parametrize(
    ("name", "device", "options", "error", "message"),
    [
        ("contract.onnx", "gpu", {}, InputSpecError, "device must be one of auto, cpu, cuda, tensorrt"),
        ("contract.onnx", "cpu", {"thread": 2}, InputSpecError, r"unknown onnx backend options \['thread'\]"),
        ("missing.onnx", "cpu", {}, ArtifactError, "no such file"),
        ("m.engine", "cpu", {}, DeviceError, "runs on device 'tensorrt', not 'cpu'.*use the model's .onnx"),
        ("contract.onnx", "cpu", {"threads": 0}, InputSpecError, "threads must be a positive integer"),
        ("contract.onnx", "cpu", {"device_id": -1}, InputSpecError, "device_id must be"),
    ],
)
def test_open_backend_argument_errors(model: Path, name, device, options, error, message) -> None:
    with pytest.raises(error, match=message):
        open_backend(model.parent / name, device, **options)


# ----- devices ------------------------------------------------------------------------------------
def test_cpu_backend_reads_card_and_matches_reference(model: Path, rng) -> None:
    with open_backend(model, "cpu", threads=1) as backend:
        assert isinstance(backend, OnnxRuntimeBackend)
        assert backend.card == contract_card() and backend.device == "cpu"
        assert backend.providers == ("CPUExecutionProvider",) and backend.threads == 1
        images, codes = batch(rng, 5, [0, 1, 1, 0, 1])
        out = backend.infer(images, codes)
        assert out.dtype == np.float32 and out.shape == (5, D)
        np.testing.assert_allclose(out, reference_embeddings(images, codes), atol=1e-5)
    with pytest.raises(ArtifactError, match=r"backend is closed; open it again with vireid.open_backend"):
        backend.infer(images, codes)


def test_auto_chooses_cpu_here_and_logs_it(model: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="vireid"), open_backend(model) as backend:
        assert backend.device == "cpu"
    assert any("device auto" in r.getMessage() and "cpu" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_explicit_gpu_device_without_provider_is_device_error(model: Path, device: str) -> None:
    with pytest.raises(
        DeviceError, match=f"device='{device}' needs ONNX Runtime's .*pip install 'vireid\\[gpu\\]'"
    ):
        open_backend(model, device)


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_fake_listed_provider_that_does_not_start_is_device_error_not_fallback(
    model, monkeypatch, device
) -> None:
    """onnxruntime-gpu on a machine without a usable GPU lists CUDA but runs on CPU: refuse."""
    built = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: built)
    with pytest.raises(DeviceError, match=r"could not start .* does not fall back silently"):
        open_backend(model, device, cache_dir=model.parent / "trt-cache")


def test_fake_auto_with_cuda_listed_but_unusable_runs_on_cpu_and_says_so(model, monkeypatch, caplog) -> None:
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    with caplog.at_level(logging.INFO, logger="vireid"), open_backend(model) as backend:
        assert backend.device == "cpu" and backend.providers[0] == "CPUExecutionProvider"
    assert "on cpu" in caplog.text


def test_fake_tensorrt_ep_gets_one_engine_cache_folder_per_model_file(tmp_path: Path, monkeypatch) -> None:
    """ONNX Runtime keys cached TensorRT engines by names, not weights: two models exported under one
    name (a retrained `best.fp16.onnx`) shared an engine and the second returned the first's output."""
    from vireid.card import sha256_file

    built = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: built)
    caches: list[str] = []

    def capture(self, providers, requested):  # the options ONNX Runtime would get; no GPU session here
        caches.append(dict(providers)["TensorrtExecutionProvider"]["trt_engine_cache_path"])
        raise RuntimeError("captured")

    monkeypatch.setattr(OnnxRuntimeBackend, "_create_session", capture)
    models = []
    for seed in (0, 1):
        (tmp_path / f"run{seed}").mkdir()
        models.append(build_contract_model(tmp_path / f"run{seed}" / "best.onnx", seed=seed))
    for path in models:
        with pytest.raises(RuntimeError, match="captured"):
            open_backend(path, "tensorrt", cache_dir=tmp_path / "cache")
    assert caches == [str(tmp_path / "cache" / sha256_file(path)[:16]) for path in models]
    assert caches[0] != caches[1]


def test_tensorrt_ep_options_follow_card_and_profile(tmp_path: Path) -> None:
    card = contract_card(precision="fp16", profile=BatchProfile(2, 8, 16))
    options = cfg.tensorrt_ep_options(card, card.profile, 1, tmp_path, fp16=None)
    assert options["trt_fp16_enable"] == "True" and options["device_id"] == "1"
    assert options["trt_profile_min_shapes"] == "images:2x32x16x3,modality:2"
    assert options["trt_profile_opt_shapes"] == "images:8x32x16x3,modality:8"
    assert options["trt_profile_max_shapes"] == "images:16x32x16x3,modality:16"
    assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"] == str(tmp_path)
    assert cfg.tensorrt_ep_options(card, card.profile, 0, tmp_path, fp16=False)["trt_fp16_enable"] == "False"
    providers = [name for name, _ in cfg.provider_list("tensorrt", {})]
    assert providers == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    # ONNX Runtime's TensorRT networks are weakly typed: a QDQ INT8 model needs the INT8 flag (and FP16)
    int8 = cfg.tensorrt_ep_options(contract_card(precision="int8"), card.profile, 0, tmp_path, fp16=None)
    assert (int8["trt_int8_enable"], int8["trt_fp16_enable"]) == ("True", "True")
    fp32 = cfg.tensorrt_ep_options(contract_card(precision="fp32"), card.profile, 0, tmp_path, fp16=None)
    assert (fp32["trt_int8_enable"], fp32["trt_fp16_enable"]) == ("False", "False")


def test_no_hidden_provider_fallback_and_auto_still_runs_on_cpu_with_a_fake_failing_cuda_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """onnxruntime retries a failing provider on the next ones (at creation and at any run) unless told
    not to, and vireid's device would be wrong. A fake `InferenceSession` (the real one, except that a
    session listing CUDA fails as on a machine without a usable GPU) records what vireid asks for."""
    import logging

    calls = []

    class fake_session(ort.InferenceSession):
        def __init__(self, path, options=None, providers=None, provider_options=None, **kwargs):
            calls.append((list(providers or []), kwargs))
            if "CUDAExecutionProvider" in (providers or []):
                raise RuntimeError("CUDA failure 100: no CUDA-capable device is detected")
            super().__init__(path, options, providers=providers, provider_options=provider_options, **kwargs)

    path = build_contract_model(tmp_path / "m.onnx")
    monkeypatch.setattr(ort, "InferenceSession", fake_session)
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    with caplog.at_level(logging.WARNING, logger="vireid"), open_backend(path, "auto") as backend:
        assert backend.device == "cpu" and backend._session._enable_fallback is False
    assert (
        "CUDAExecutionProvider failed to start" in caplog.text and "running m.onnx on the CPU" in caplog.text
    )
    assert all(kwargs.get("enable_fallback") == 0 for _, kwargs in calls)  # asked of every session
    with pytest.raises(DeviceError, match="the model itself loads on the CPU"):
        open_backend(path, "cuda")  # an explicit device never falls back


def test_a_fake_pre_1_23_onnxruntime_that_ignores_enable_fallback_neither_prints_nor_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    """onnxruntime 1.19-1.22 ignore `enable_fallback=0` at creation: a failing GPU provider printed an
    "EP Error ... Falling back" banner to stdout and retried on the CPU by itself. The fake session
    behaves like those versions (the real session, but a CUDA session fails and falls back)."""
    import logging

    class old_session(ort.InferenceSession):
        def __init__(self, path, options=None, providers=None, provider_options=None, **kwargs):
            self._enable_fallback = True  # the keyword is not read
            try:
                if "CUDAExecutionProvider" in (providers or []):
                    raise RuntimeError("CUDA failure 100: no CUDA-capable device is detected")
                super().__init__(path, options, providers=providers, provider_options=provider_options)
            except RuntimeError as exc:
                if not self._enable_fallback:
                    raise
                print(f"EP Error {exc} when using {providers}\nFalling back to ['CPUExecutionProvider']")
                super().__init__(path, options, providers=["CPUExecutionProvider"])

    path = build_contract_model(tmp_path / "m.onnx")
    monkeypatch.setattr(ort, "InferenceSession", old_session)
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    with caplog.at_level(logging.WARNING, logger="vireid"), open_backend(path, "auto") as backend:
        assert backend.device == "cpu"
    assert "CUDAExecutionProvider failed to start" in caplog.text  # vireid's own warning, on stderr
    with pytest.raises(DeviceError, match="the model itself loads on the CPU"):
        open_backend(path, "cuda")
    assert "EP Error" not in capsys.readouterr().out  # stdout (--json reports) stays clean
    (tmp_path / "other").mkdir()
    other = build_contract_model(tmp_path / "other" / "m.onnx")
    real_open = OnnxRuntimeBackend._open_session

    def model_fault(self, options, names, opts):  # the model fails on every provider, CPU included
        raise RuntimeError("InvalidGraph: node 'x' is broken")

    monkeypatch.setattr(OnnxRuntimeBackend, "_open_session", model_fault)
    with pytest.raises(ArtifactError, match="cannot load this model") as error:
        open_backend(other, "cuda")
    assert not isinstance(error.value, DeviceError)
    monkeypatch.setattr(OnnxRuntimeBackend, "_open_session", real_open)


# ----- threads ------------------------------------------------------------------------------------
def test_default_threads_count_physical_cores_within_affinity_and_quota(tmp_path: Path, monkeypatch) -> None:
    for cpu, core in [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2)]:  # 2 hyper-threads per core
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    assert cfg.physical_cores({0, 1, 2, 3, 4}, sysfs=tmp_path) == 3
    assert cfg.physical_cores({0, 1}, sysfs=tmp_path) == 1
    assert cfg.physical_cores({0, 9}, sysfs=tmp_path) == 2  # no topology → logical count
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cfg.cgroup_cpu_limit(tmp_path / "cpu.max") == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cfg.cgroup_cpu_limit(tmp_path / "cpu.max") is None
    (tmp_path / "cpu.max").write_text("garbage\n")  # unreadable: no limit, never an exception
    assert cfg.cgroup_cpu_limit(tmp_path / "cpu.max", v1=tmp_path / "none") is None
    v1 = tmp_path / "v1"  # cgroup v1 (no cpu.max): cfs quota and period
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("250000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cfg.cgroup_cpu_limit(tmp_path / "missing.max", v1=v1) == 3
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cfg.cgroup_cpu_limit(tmp_path / "missing.max", v1=v1) is None
    assert 1 <= cfg.default_threads() <= len(cfg.available_cpus())


# ----- batching -----------------------------------------------------------------------------------
def test_chunking_above_profile_max_equals_one_pass(tmp_path: Path, rng) -> None:
    chunked = build_contract_model(tmp_path / "max3.onnx", card=contract_card(profile=BatchProfile(1, 2, 3)))
    unlimited = build_contract_model(tmp_path / "free.onnx", card=contract_card(profile=None))
    images, codes = batch(rng, 10, [0, 1] * 5)
    with open_backend(chunked, "cpu") as a, open_backend(unlimited, "cpu") as b:
        sizes = []
        original = a._infer
        a._infer = lambda i, m: sizes.append(len(i)) or original(i, m)  # type: ignore[method-assign]
        np.testing.assert_allclose(a.infer(images, codes), b.infer(images, codes), atol=1e-6)
        assert sizes == [3, 3, 3, 1] and b.max_batch is None


def test_batches_below_profile_min_are_padded(tmp_path: Path, rng) -> None:
    path = build_contract_model(tmp_path / "min4.onnx", card=contract_card(profile=BatchProfile(4, 4, 8)))
    images, codes = batch(rng, 2, [1, 0])
    with open_backend(path, "cpu") as backend:
        out = backend.infer(images, codes)
    assert out.shape == (2, D)
    np.testing.assert_allclose(out, reference_embeddings(images, codes), atol=1e-5)


def test_mixed_modality_batch_equals_separate_calls(model: Path, rng) -> None:
    images, _ = batch(rng, 6)
    mixed = np.array([0, 1, 1, 0, 1, 0], np.int32)
    with open_backend(model, "cpu") as backend:
        together = backend.infer(images, mixed)
        for code in (0, 1):
            rows = mixed == code
            np.testing.assert_allclose(together[rows], backend.infer(images[rows], mixed[rows]), atol=1e-6)
        assert backend.infer(images[:0], mixed[:0]).shape == (0, D)


def test_io_binding_gives_the_same_result(model: Path, rng) -> None:
    images, codes = batch(rng, 4, [0, 1, 0, 1])
    with open_backend(model, "cpu", io_binding=True) as bound, open_backend(model, "cpu") as plain:
        np.testing.assert_array_equal(bound.infer(images, codes), plain.infer(images, codes))
        np.testing.assert_array_equal(bound.infer(images[:1], codes[:1]), plain.infer(images[:1], codes[:1]))


# ----- refusing bad artifacts ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"images_dtype": TensorProto.FLOAT}, r"input 'images' is tensor\(float\), expected tensor\(uint8\)"),
        (
            {"modality_dtype": TensorProto.INT64},
            r"input 'modality' is tensor\(int64\), expected tensor\(int32\)",
        ),
        ({"output_name": "features"}, r"outputs are \['features'\], expected \['embeddings'\]"),
        ({"images_name": "pixels"}, r"missing \['images'\].*unexpected \['pixels'\]"),
        ({"batch": 4}, r"input 'images' has shape \[4, 32, 16, 3\], expected .* dynamic batch"),
        (
            {"card": contract_card(input_height=64)},
            r"'images' has shape \['N', 32, 16, 3\], expected \['N', 64",
        ),
        ({"card": contract_card(embedding_dim=8)}, r"output 'embeddings' has shape \['N', 16\]"),
    ],
)
def test_wrong_contract_onnx_is_refused_naming_file_and_difference(tmp_path: Path, options, message) -> None:
    path = build_contract_model(tmp_path / "wrong.onnx", **options)
    with pytest.raises(
        ArtifactError, match=f"wrong.onnx: the model does not follow the I/O contract.*{message}"
    ):
        open_backend(path, "cpu")


def test_onnx_without_card_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CardError, match=r"no 'vireid\.card' metadata"):
        open_backend(build_contract_model(tmp_path / "bare.onnx", with_card=False), "cpu")


@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_onnx_is_an_artifact_error(model: Path, tmp_path: Path, keep: float) -> None:
    data = model.read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ArtifactError, match=r"truncated\.onnx"):
        open_backend(bad, "cpu")


def test_corrupted_graph_with_intact_card_is_an_artifact_error(model: Path, tmp_path: Path) -> None:
    data = model.read_bytes()
    assert data.count(b"LpNormalization") == 1
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(data.replace(b"LpNormalization", b"LpNormalizatiXn"))
    with pytest.raises(ArtifactError, match=r"corrupt.onnx: ONNX Runtime cannot load this model .*Re-export"):
        open_backend(bad, "cpu")


# ----- refusing bad inputs ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("images", "codes", "message"),
    [
        (
            np.zeros((2, H, W, 3), np.float32),
            np.zeros(2, np.int32),
            r"images must be \(N, 32, 16, 3\) uint8 RGB",
        ),
        (np.zeros((2, 10, 10, 3), np.uint8), np.zeros(2, np.int32), r"got \(2, 10, 10, 3\) uint8"),
        (np.zeros((2, H, W), np.uint8), np.zeros(2, np.int32), r"got \(2, 32, 16\) uint8"),
        ([[0]], np.zeros(1, np.int32), "got list"),
        (
            np.zeros((2, H, W, 3), np.uint8),
            np.zeros(2, np.int64),
            r"modality must be \(2,\) int32.*got \(2,\) int64",
        ),
        (np.zeros((2, H, W, 3), np.uint8), np.zeros(3, np.int32), r"modality must be \(2,\) int32"),
        (
            np.zeros((2, H, W, 3), np.uint8),
            np.array([0, 2], np.int32),
            r"values must be one of 0 .* got \[2\] at rows \[1\]",
        ),
    ],
)
def test_bad_inputs_are_input_spec_errors(model: Path, images, codes, message: str) -> None:
    with open_backend(model, "cpu") as backend, pytest.raises(InputSpecError, match=message):
        backend.infer(images, codes)


def test_modality_outside_card_is_refused(tmp_path: Path) -> None:
    path = build_contract_model(tmp_path / "vis.onnx", card=contract_card(modalities=(Modality.VISIBLE,)))
    with open_backend(path, "cpu") as backend, pytest.raises(InputSpecError, match=r"one of 0 \(visible\)"):
        backend.infer(np.zeros((1, H, W, 3), np.uint8), np.ones(1, np.int32))


def test_opening_an_onnx_model_loads_no_torch_or_onnx(model: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from vireid.backends import open_backend\n"
        f"b = open_backend({str(model)!r}, 'cpu', threads=1)\n"
        "b.infer(np.zeros((1, 32, 16, 3), np.uint8), np.zeros(1, np.int32))\n"
        "print([m for m in ('torch', 'onnx', 'tensorrt', 'pycuda') if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# ----- real GPU (skipped without a CUDA device; run with `pytest -m gpu`) ------------------------
def build_real_engine(onnx_path: Path, engine_path: Path, profile: BatchProfile) -> Path:
    """Build a TensorRT engine + sidecar card from the contract ONNX with the real TensorRT API."""
    trt = pytest.importorskip("tensorrt", reason="needs TensorRT (pip install 'vireid[tensorrt]')")
    from vireid.backends.cuda import load_cuda
    from vireid.card import ModelCard

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        pytest.fail("; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 28)
    shapes = builder.create_optimization_profile()
    shapes.set_shape("images", *[(b, H, W, 3) for b in (profile.min, profile.opt, profile.max)])
    shapes.set_shape("modality", *[(b,) for b in (profile.min, profile.opt, profile.max)])
    config.add_optimization_profile(shapes)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None, "TensorRT failed to build the contract engine"
    engine_path.write_bytes(bytes(plan))
    cuda = load_cuda()
    gpu, capability = cuda.open(0)
    cuda.release()
    card = ModelCard.from_onnx(onnx_path).replace(
        profile=profile, tensorrt_version=trt.__version__, gpu_name=gpu, compute_capability=capability
    )
    card.write_sidecar(engine_path)
    return engine_path


@pytest.mark.gpu
def test_real_tensorrt_engine_matches_onnxruntime_cpu(model: Path, tmp_path: Path, rng) -> None:
    engine = build_real_engine(model, tmp_path / "contract.engine", BatchProfile(1, 4, 8))
    images, codes = batch(rng, 11, [0, 1] * 5 + [1])
    with open_backend(model, "cpu") as cpu, open_backend(engine, "tensorrt") as trt_backend:
        assert trt_backend.device == "tensorrt" and trt_backend.max_batch == 8
        np.testing.assert_allclose(trt_backend.infer(images, codes), cpu.infer(images, codes), atol=2e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_real_onnxruntime_gpu_providers_match_cpu(model: Path, tmp_path: Path, rng, device: str) -> None:
    wanted = cfg.EP_OF_DEVICE[device]
    if wanted not in ort.get_available_providers():
        pytest.skip(f"onnxruntime here has no {wanted} (pip install 'vireid[gpu]')")
    images, codes = batch(rng, 9, 1)
    with open_backend(model, "cpu") as cpu, open_backend(model, device, cache_dir=tmp_path) as gpu:
        assert gpu.providers[0] == wanted and gpu.device == device
        np.testing.assert_allclose(gpu.infer(images, codes), cpu.infer(images, codes), atol=2e-3)


def test_fake_tensorrt_ep_refuses_an_int8_model_quantised_for_onnxruntime(
    tmp_path: Path, monkeypatch
) -> None:
    """TensorRT takes int8 symmetric Q/DQ only; such a file would run mostly on CUDA/CPU, silently."""
    built = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: built)
    cpu_int8 = build_contract_model(tmp_path / "m.int8.onnx", card=contract_card(precision="int8"))
    with pytest.raises(DeviceError, match=r"quantised for ONNX Runtime's CPU kernels.*--int8-target"):
        open_backend(cpu_int8, "tensorrt", cache_dir=tmp_path / "cache")
