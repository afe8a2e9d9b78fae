"""The native TensorRT backend against FAKE `tensorrt` / cudart / pycuda modules (see fake_tensorrt.py).

Every test here runs our selection, checking, buffer and copy logic on a CPU; the fakes are injected
with `monkeypatch.setitem(sys.modules, ...)`. Real-GPU tests live in test_backends.py (marked gpu).
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import fake_tensorrt as fake
import numpy as np
import pytest
from contract_model import contract_card

from vireid import ArtifactError, BatchProfile, CardError, DeviceError, InputSpecError, MissingDependencyError
from vireid.backends import open_backend
from vireid.backends.tensorrt import TensorRTBackend
from vireid.card import sha256_file
from vireid.embedder import Embedder

H, W, D = 32, 16, 16


@pytest.fixture
def cudart(monkeypatch: pytest.MonkeyPatch) -> fake.FakeCudart:
    """Fake tensorrt + cudart in sys.modules; returns the fake cudart to inspect its calls."""
    runtime = fake.FakeCudart()
    monkeypatch.setitem(sys.modules, "tensorrt", fake.tensorrt_module())
    for name, module in fake.cuda_modules(runtime).items():
        monkeypatch.setitem(sys.modules, name, module)
    return runtime


def engine_card(**changes):
    base = dict(tensorrt_version=fake.VERSION, compute_capability="8.6", gpu_name="NVIDIA Fake GPU")
    return contract_card(**{**base, **changes})


def make_engine(tmp_path: Path, name: str = "model.engine", card=None, **spec) -> Path:
    path = fake.write_engine(tmp_path / name, fake.engine_spec(**spec))
    (card or engine_card()).write_sidecar(path)
    return path


def sample(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8), (np.arange(n) % 2).astype(np.int32)


def fake_context(backend: TensorRTBackend) -> fake.FakeContext:
    return backend._context  # type: ignore[return-value]


# ----- selection and data flow --------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".engine", ".plan", ".trt"])
def test_fake_engine_is_selected_by_suffix_and_auto_logs_tensorrt(cudart, tmp_path, caplog, suffix) -> None:
    path = make_engine(tmp_path, f"model{suffix}")
    with caplog.at_level(logging.INFO, logger="vireid"), open_backend(path) as backend:
        assert isinstance(backend, TensorRTBackend) and backend.device == "tensorrt"
        assert backend.card == engine_card(
            engine_sha256=sha256_file(path)
        ) and backend.profile == BatchProfile(1, 4, 8)
        assert backend.providers == ("TensorRT 10.3.0", "NVIDIA Fake GPU (sm 8.6)", "cuda-python")
    assert "device auto" in caplog.text and "tensorrt" in caplog.text


def test_fake_data_flows_through_device_buffers_and_back(cudart, tmp_path) -> None:
    images, codes = sample(5)
    with open_backend(make_engine(tmp_path), "tensorrt") as backend:
        out = backend.infer(images, codes)
        context = fake_context(backend)
        assert context.addresses == backend._device  # the engine reads the cudaMalloc'd memory
        assert set(backend._device.values()) <= set(cudart.memory)  # engine reads the cudaMalloc'd memory
    np.testing.assert_allclose(out, fake.fake_engine_function(images, codes, D), atol=1e-6)
    kinds = [kind for kind, _ in cudart.calls["cudaMemcpyAsync"]]
    assert kinds == [cudart.cudaMemcpyKind.cudaMemcpyHostToDevice] * 2 + [
        cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
    ]
    assert [n for _, n in cudart.calls["cudaMemcpyAsync"]] == [5 * H * W * 3, 5 * 4, 5 * D * 4]  # only N rows


def test_fake_batches_above_profile_max_are_chunked(cudart, tmp_path) -> None:
    images, codes = sample(19, seed=1)
    with open_backend(make_engine(tmp_path), "tensorrt") as backend:
        out = backend.infer(images, codes)
        assert fake_context(backend).batches == [8, 8, 3]
    np.testing.assert_allclose(out, fake.fake_engine_function(images, codes, D), atol=1e-6)


def test_fake_batches_below_profile_min_are_padded(cudart, tmp_path) -> None:
    path = make_engine(tmp_path, profile=(2, 4, 8), card=engine_card(profile=BatchProfile(2, 4, 8)))
    images, codes = sample(1)
    with open_backend(path, "tensorrt") as backend:
        out = backend.infer(images, codes)
        assert fake_context(backend).batches == [2]
    np.testing.assert_allclose(out, fake.fake_engine_function(images, codes, D), atol=1e-6)


def test_fake_buffers_are_allocated_once_for_profile_max_and_reused(cudart, tmp_path) -> None:
    with open_backend(make_engine(tmp_path), "tensorrt") as backend:
        for n in (1, 8, 3, 20, 2):
            backend.infer(*sample(n, seed=n))
        assert sorted(n for (n,) in cudart.calls["cudaMalloc"]) == sorted([8 * H * W * 3, 8 * 4, 8 * D * 4])
        assert len(cudart.calls["cudaMallocHost"]) == 3 and len(cudart.calls["cudaStreamCreate"]) == 1
        assert fake_context(backend).address_calls == 3  # bound once, at open
    assert len(cudart.calls["cudaFree"]) == 3 and len(cudart.calls["cudaFreeHost"]) == 3
    assert len(cudart.calls["cudaStreamDestroy"]) == 1
    backend.close()  # twice is fine
    assert len(cudart.calls["cudaFree"]) == 3


def test_fake_pinned_staging_buffer_is_used_without_host_copy(cudart, tmp_path) -> None:
    images, codes = sample(4, seed=2)
    with open_backend(make_engine(tmp_path), "tensorrt") as backend:
        staging = backend.allocate_images(4)
        assert np.shares_memory(staging, backend._host["images"])
        staging[:] = images
        np.testing.assert_allclose(
            backend.infer(staging, codes), fake.fake_engine_function(images, codes, D), atol=1e-6
        )
        assert not np.shares_memory(backend.allocate_images(9), backend._host["images"])  # above max


def test_fake_pinned_staging_buffer_kept_past_close_stays_valid_memory(cudart, tmp_path, monkeypatch) -> None:
    """An array from allocate_images held after close() must not point at freed pinned pages (a
    write would crash the process): its allocation is freed when the last view goes, on whichever
    thread that is, with the allocating device current for the call and the thread's own after."""
    import gc

    cudart.devices = 2
    freed_on: list[int] = []
    free_host = cudart.cudaFreeHost
    monkeypatch.setattr(
        cudart, "cudaFreeHost", lambda ptr: (freed_on.append(cudart.cudaGetDevice()[1]), free_host(ptr))[1]
    )
    backend = open_backend(make_engine(tmp_path), "tensorrt", device_id=1)
    staging = [backend.allocate_images(4)]
    backend.close()
    assert len(cudart.calls["cudaFreeHost"]) == 2  # modality and output buffers; the images' is held
    staging[0][:] = 7  # still ours
    held = staging[0].ctypes.data
    assert held not in cudart.freed

    def drop() -> tuple[int, int]:  # this thread starts on device 0
        staging.clear()
        gc.collect()
        return cudart.cudaGetDevice()[1], len(cudart.calls["cudaFreeHost"])

    assert on_another_thread(drop) == (0, 3) and held in cudart.freed
    assert freed_on == [1, 1, 1]


def test_fake_pinned_memory_still_viewed_at_exit_is_left_to_the_operating_system(tmp_path) -> None:
    """A daemon thread may still write to a view while the interpreter exits: freeing the pages then
    would crash it, so leftover pinned memory is not freed at exit."""
    import subprocess

    make_engine(tmp_path)
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import fake_tensorrt as fake
cudart = fake.FakeCudart()
sys.modules["tensorrt"] = fake.tensorrt_module()
sys.modules.update(fake.cuda_modules(cudart))
free_host = cudart.cudaFreeHost
cudart.cudaFreeHost = lambda ptr: (print("freed", flush=True), free_host(ptr))[1]
from vireid.backends import open_backend
backend = open_backend({str(tmp_path / "model.engine")!r}, "tensorrt")
kept = backend.allocate_images(2)
backend.close()
print("closed", flush=True)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["freed", "freed", "closed"]  # the kept one is not freed at exit


def test_fake_embedder_on_tensorrt_backend(cudart, tmp_path) -> None:
    crops = [np.full((60, 30, 3), v, np.uint8) for v in (10, 200, 90)]
    with Embedder(make_engine(tmp_path), device="tensorrt", batch_size=32) as embedder:
        emb = embedder.embed(crops, ["rgb", "ir", "rgb"])
    images = np.stack([np.full((H, W, 3), v, np.uint8) for v in (10, 200, 90)])
    np.testing.assert_allclose(
        emb.vectors, fake.fake_engine_function(images, np.array([0, 1, 0]), D), atol=1e-6
    )


def test_fake_bad_input_is_refused_before_the_engine(cudart, tmp_path) -> None:
    with open_backend(make_engine(tmp_path), "tensorrt") as backend:
        with pytest.raises(InputSpecError, match=r"modality must be \(2,\) int32"):
            backend.infer(sample(2)[0], np.zeros(2, np.int64))
        assert fake_context(backend).batches == []


# ----- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tensorrt_version": "8.6.1"}, r"built for TensorRT 8.6.1 \(this machine runs 10.3.0\)"),
        (
            {"compute_capability": "8.7", "gpu_name": "Orin"},
            r"built for compute capability 8.7 \(Orin\) \(this GPU, NVIDIA Fake GPU, is 8.6\)",
        ),
    ],
)
def test_fake_engine_for_another_tensorrt_or_gpu_is_refused(cudart, tmp_path, changes, message) -> None:
    path = make_engine(tmp_path, card=engine_card(**changes))
    with pytest.raises(
        ArtifactError, match=f"model.engine: the engine was {message}.*rebuild it on this machine"
    ):
        open_backend(path, "tensorrt")
    assert "cudaMalloc" not in cudart.calls  # refused before allocating anything


def test_fake_version_patch_padding_is_not_a_mismatch(cudart, tmp_path, caplog) -> None:
    with open_backend(
        make_engine(tmp_path, card=engine_card(tensorrt_version="10.3")), "tensorrt"
    ) as backend:
        assert backend.card.tensorrt_version == "10.3"  # opened: "10.3" and the runtime's 10.3.x agree
    assert "mismatch" not in caplog.text.lower() and "rebuild" not in caplog.text


def test_fake_unchecked_mismatch_quotes_tensorrt_log(cudart, tmp_path) -> None:
    path = make_engine(tmp_path, version="8.6.1", card=engine_card(tensorrt_version="8.6.1"))
    with pytest.raises(
        ArtifactError, match=r"(?s)could not deserialize.*expecting library version 10.3.0 got 8.6.1"
    ):
        open_backend(path, "tensorrt", check_compatibility=False)
    assert cudart.calls["cudaStreamDestroy"]  # partial open cleaned up


def test_fake_garbage_engine_quotes_tensorrt_log(cudart, tmp_path) -> None:
    path = tmp_path / "garbage.engine"
    path.write_bytes(b"\x00not an engine")
    engine_card().write_sidecar(path)
    with pytest.raises(
        ArtifactError, match=r"(?s)garbage.engine: TensorRT 10.3.0 could not .*Magic tag does not match"
    ):
        open_backend(path, "tensorrt")


def test_fake_sidecar_hash_mismatch_and_missing_sidecar(cudart, tmp_path) -> None:
    path = make_engine(tmp_path)
    path.write_bytes(path.read_bytes() + b" ")
    with pytest.raises(CardError, match="does not match its card"):
        open_backend(path, "tensorrt")
    ModelCardPath = path.with_name(path.name + ".json")
    ModelCardPath.unlink()
    with pytest.raises(CardError, match="no model card sidecar"):
        open_backend(path, "tensorrt")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"height": 64}, r"'images' has shape \[-1, 64, 16, 3\], expected \[-1, 32, 16, 3\]"),
        ({"dim": 8}, r"'embeddings' has shape \[-1, 8\], expected \[-1, 16\]"),
        ({"tensors": fake.engine_spec()["tensors"][:2]}, r"tensors are \['images', 'modality'\]"),
    ],
)
def test_fake_engine_breaking_its_cards_contract_is_refused(cudart, tmp_path, spec, message) -> None:
    with pytest.raises(ArtifactError, match=f"does not follow the I/O contract of its card: {message}"):
        open_backend(make_engine(tmp_path, **spec), "tensorrt")


def test_fake_engine_dtype_mismatch_is_refused(cudart, tmp_path) -> None:
    tensors = fake.engine_spec()["tensors"]
    tensors[0] = {**tensors[0], "dtype": "FLOAT"}
    with pytest.raises(ArtifactError, match="'images' is float32, expected uint8"):
        open_backend(make_engine(tmp_path, tensors=tensors), "tensorrt")


def test_fake_engine_with_dynamic_height_and_width_is_refused_at_open(cudart, tmp_path) -> None:
    """It used to pass the contract check and fail later, allocating buffers of size -1."""
    tensors = fake.engine_spec()["tensors"]
    tensors[0] = {**tensors[0], "shape": [-1, -1, -1, 3]}
    with pytest.raises(
        ArtifactError, match=r"'images' has shape \[-1, -1, -1, 3\].*only the batch may be dynamic"
    ):
        open_backend(make_engine(tmp_path, tensors=tensors), "tensorrt")


def test_fake_engine_profile_differing_from_card_is_refused(cudart, tmp_path) -> None:
    with pytest.raises(ArtifactError, match=r"engine profile batch 1..16 differs from its card's 1..8"):
        open_backend(make_engine(tmp_path, profile=(1, 4, 16)), "tensorrt")


def test_fake_no_gpu_is_device_error(cudart, tmp_path) -> None:
    cudart.devices = 0
    with pytest.raises(DeviceError, match=r"no usable CUDA GPU was found \(cudaErrorInsufficientDriver\)"):
        open_backend(make_engine(tmp_path), "tensorrt")
    cudart.devices = 1
    with pytest.raises(DeviceError, match=r"device_id=2 .* only 1 CUDA GPU"):
        open_backend(make_engine(tmp_path), "tensorrt", device_id=2)


@pytest.mark.parametrize("missing", [["tensorrt"], ["cuda", "cuda.bindings", "cuda.bindings.runtime"]])
def test_fake_missing_runtime_names_the_tensorrt_extra(cudart, tmp_path, monkeypatch, missing) -> None:
    path = make_engine(tmp_path)
    for name in [*missing, "cuda.cudart", "pycuda", "pycuda.driver"]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules makes `import` fail
    with pytest.raises(MissingDependencyError, match=r"pip install 'vireid\[tensorrt\]'") as info:
        open_backend(path, "tensorrt")
    assert info.value.extra == "tensorrt"
    assert info.value.module == ("tensorrt" if missing == ["tensorrt"] else "cuda-python")


def on_another_thread(function):
    """Run `function` on a new thread (as the pipeline embeds); returns its result or raises its error."""
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = function()
        except BaseException as exc:  # handed back to the test thread
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["result"]


def test_fake_cudart_engine_opened_on_one_thread_runs_on_another_on_its_device(cudart, tmp_path) -> None:
    cudart.devices = 2
    images, codes = sample(2)
    with open_backend(make_engine(tmp_path), "tensorrt", device_id=1) as backend:
        result = on_another_thread(lambda: backend.infer(images, codes))  # that thread starts on device 0
    np.testing.assert_allclose(result, fake.fake_engine_function(images, codes, D), atol=1e-6)
    assert cudart.copy_devices and set(cudart.copy_devices) == {1}
    # the opening thread is back on its own device: other CUDA code there (torch, CuPy) is not moved
    assert cudart.cudaGetDevice()[1] == 0


def test_fake_pycuda_engine_opened_on_one_thread_runs_and_closes_on_another(tmp_path, monkeypatch) -> None:
    driver = use_fake_pycuda(monkeypatch)
    path = make_engine(tmp_path, card=engine_card(compute_capability="8.7"))
    images, codes = sample(3)
    backend = open_backend(path, "tensorrt")
    result = on_another_thread(lambda: backend.infer(images, codes))
    np.testing.assert_allclose(result, fake.fake_engine_function(images, codes, D), atol=1e-6)
    on_another_thread(backend.close)
    assert driver.events.count("free") == 3
    assert driver.events.count("push") == driver.events.count("pop")  # no context left current anywhere


def use_fake_pycuda(monkeypatch):
    driver = fake.pycuda_driver()
    monkeypatch.setitem(sys.modules, "tensorrt", fake.tensorrt_module())
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "pycuda", type(sys)("pycuda"))
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    return driver


def test_fake_pycuda_is_used_when_cuda_python_is_missing(tmp_path, monkeypatch) -> None:
    driver = use_fake_pycuda(monkeypatch)
    path = make_engine(tmp_path, card=engine_card(compute_capability="8.7"))
    images, codes = sample(3)
    with open_backend(path, "tensorrt") as backend:
        assert backend.providers[1:] == ("Fake Orin (sm 8.7)", "pycuda")
        np.testing.assert_allclose(
            backend.infer(images, codes), fake.fake_engine_function(images, codes, D), atol=1e-6
        )
    assert driver.events[0] == "push" and driver.events[-2:] == ["pop", "detach"]  # the context given back
    assert driver.events.count("free") == 3 and driver.events.count("detach") == 1


def test_fake_pycuda_out_of_memory_is_a_device_error(tmp_path, monkeypatch) -> None:
    driver = use_fake_pycuda(monkeypatch)
    driver.out_of_memory = True
    path = make_engine(tmp_path, card=engine_card(compute_capability="8.7"))
    with pytest.raises(DeviceError, match=r"CUDA call mem_alloc\(\d+\) failed \(cuMemAlloc failed: out of"):
        open_backend(path, "tensorrt")


def test_fake_a_backend_dropped_without_close_still_frees_its_memory(cudart, tmp_path) -> None:
    """Three Embedders opened and dropped used to leave 9 cudaMalloc, 9 cudaMallocHost and 3 streams."""
    import gc

    from vireid import Embedder

    for _ in range(3):
        Embedder(make_engine(tmp_path), "tensorrt")
    gc.collect()
    assert cudart.memory and set(cudart.memory) <= set(cudart.freed)


def test_engine_tensor_types_map_to_numpy_without_trt_nptype() -> None:
    """vireid's own table (TensorRT 8.5's `nptype` fails on numpy >= 1.24); a type no vireid engine
    has is refused by name. Plain stand-ins for TensorRT's enum members, which carry `.name`."""
    from types import SimpleNamespace

    import numpy as np

    from vireid.backends.trt_engine import numpy_dtype
    from vireid.errors import ArtifactError

    assert numpy_dtype(SimpleNamespace(name="UINT8"), "images") == np.uint8
    assert numpy_dtype(SimpleNamespace(name="HALF"), "embeddings") == np.float16
    assert numpy_dtype("DataType.INT32", "modality") == np.int32  # str() of a member, as a fallback
    with pytest.raises(ArtifactError, match=r"tensor 'embeddings' has TensorRT type BF16"):
        numpy_dtype(SimpleNamespace(name="BF16"), "embeddings")
