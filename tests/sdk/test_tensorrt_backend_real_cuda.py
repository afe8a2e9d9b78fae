"""The TensorRT backend's CUDA half on a REAL GPU, under a FAKE `tensorrt` module (marked gpu).

TensorRT cannot be installed on the development machines, but where a GPU is, cuda-python and CuPy
are. Here only `tensorrt` is faked: device memory, pinned host buffers, the stream and every copy go
through the real cuda-python runtime API, and the fake engine computes `fake_engine_function` with
CuPy on the very device buffers the backend bound with `set_tensor_address`, on the backend's stream.
A wrong address, size, copy direction, stream or a missing synchronise shows up as wrong embeddings;
a buffer never freed shows up in `cudaMemGetInfo`.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import fake_tensorrt as fake
import numpy as np
import pytest
from contract_model import contract_card

from vireid import BatchProfile
from vireid.backends import open_backend
from vireid.embedder import Embedder

pytestmark = pytest.mark.gpu

cp: Any = None  # CuPy and cuda-python's runtime, imported by the `engine` fixture (gpu runs only)
cudart: Any = None

H, W, D = 256, 128, 16  # big enough that a leaked set of buffers (64 x 96 KiB) is visible in MemGetInfo
PROFILE = (1, 8, 64)


def _device_array(address: int, shape: tuple[int, ...], dtype: Any) -> Any:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    memory = cp.cuda.UnownedMemory(address, nbytes, owner=None)
    return cp.ndarray(shape, dtype, memptr=cp.cuda.MemoryPointer(memory, 0))


class DeviceContext(fake.FakeContext):
    """A fake execution context whose engine runs on the GPU, reading and writing device memory."""

    def execute_async_v3(self, stream_handle: int) -> bool:
        n = self.shapes["images"][0]
        with warnings.catch_warnings():  # CuPy 14 deprecates ExternalStream for protocol objects; an
            warnings.simplefilter("ignore", DeprecationWarning)  # int handle is what TensorRT gets
            stream = cp.cuda.ExternalStream(stream_handle)
        with stream:
            images = _device_array(self.addresses["images"], (n, H, W, 3), np.uint8)
            modality = _device_array(self.addresses["modality"], (n,), np.int32)
            out = _device_array(self.addresses["embeddings"], (n, D), np.float32)
            out[...] = fake.fake_engine_function(images.astype(cp.float32), modality, D, xp=cp)
        self.batches.append(n)
        return True


def _gpu() -> tuple[str, str]:
    err, props = cudart.cudaGetDeviceProperties(0)
    assert err == cudart.cudaError_t.cudaSuccess
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00").strip(), f"{props.major}.{props.minor}"


def _free_bytes() -> int:
    cp.get_default_memory_pool().free_all_blocks()
    cp.cuda.runtime.deviceSynchronize()
    err, free, _ = cudart.cudaMemGetInfo()
    assert err == cudart.cudaError_t.cudaSuccess
    return int(free)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fake engine file whose context computes on the real GPU; only `tensorrt` is faked."""
    global cp, cudart
    cp = pytest.importorskip("cupy", reason="needs CuPy to run the fake engine on the GPU")
    cudart = pytest.importorskip("cuda.bindings.runtime", reason="needs cuda-python (extra `tensorrt`)")
    monkeypatch.setitem(sys.modules, "tensorrt", fake.tensorrt_module())
    monkeypatch.setattr(fake.FakeEngine, "create_execution_context", _device_context)
    path = fake.write_engine(tmp_path / "gpu.engine", fake.engine_spec(H, W, D, PROFILE))
    gpu, capability = _gpu()
    card = contract_card(
        H,
        W,
        D,
        tensorrt_version=fake.VERSION,
        gpu_name=gpu,
        compute_capability=capability,
        profile=BatchProfile(*PROFILE),
    )
    card.write_sidecar(path)
    return path


def _device_context(self: fake.FakeEngine) -> DeviceContext:
    self.contexts.append(DeviceContext(self))
    return self.contexts[-1]


def sample(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8), (np.arange(n) % 2).astype(np.int32)


def expected(images: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return fake.fake_engine_function(images.astype(np.float32), codes, D)


@pytest.mark.parametrize("n", [1, 5, 64, 150])
def test_fake_engine_reads_and_writes_real_device_memory(engine: Path, n: int) -> None:
    images, codes = sample(n, seed=n)
    with open_backend(engine, "tensorrt") as backend:
        assert backend.providers[-1] == "cuda-python"
        out = backend.infer(images, codes)
        batches = backend._context.batches  # type: ignore[union-attr]
    assert sum(batches) == n and max(batches) <= PROFILE[2]  # 150 -> 64 + 64 + 22
    np.testing.assert_allclose(out, expected(images, codes), atol=1e-5)


def test_fake_engine_stage_timings_are_measured_on_the_real_stream(engine: Path) -> None:
    images, codes = sample(32)
    with open_backend(engine, "tensorrt") as backend:
        backend.record_stages = True
        backend.infer(images, codes)
        stages = backend.last_stages
    assert set(stages) == {"h2d", "infer", "d2h"} and all(ms > 0 for ms in stages.values())


def test_fake_engine_pinned_staging_buffer_reaches_the_device(engine: Path) -> None:
    images, codes = sample(8, seed=3)
    with open_backend(engine, "tensorrt") as backend:
        staging = backend.allocate_images(8)
        staging[:] = images
        np.testing.assert_allclose(backend.infer(staging, codes), expected(images, codes), atol=1e-5)


def test_fake_engine_runs_from_another_thread_than_the_one_that_opened_it(engine: Path) -> None:
    """The pipeline embeds on its worker thread; the runtime API's primary context serves any thread."""
    images, codes = sample(6, seed=4)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []
    with open_backend(engine, "tensorrt") as backend:

        def work() -> None:
            try:
                results.append(backend.infer(images, codes))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    assert not errors, errors
    np.testing.assert_allclose(results[0], expected(images, codes), atol=1e-5)


def test_fake_engine_embedder_mixed_modalities_on_the_gpu(engine: Path) -> None:
    crops = [np.full((300, 140, 3), v, np.uint8) for v in (10, 200, 90)]
    with Embedder(engine, device="tensorrt", batch_size=64) as embedder:
        emb = embedder.embed(crops, ["rgb", "ir", "rgb"])
    images = np.stack([np.full((H, W, 3), v, np.uint8) for v in (10, 200, 90)])
    np.testing.assert_allclose(emb.vectors, expected(images, np.array([0, 1, 0])), atol=1e-5)


@pytest.mark.skipif(
    bool(os.environ.get("PYTEST_XDIST_WORKER")),
    reason="cudaMemGetInfo is device-wide: other pytest-xdist workers allocate on the same GPU meanwhile",
)
def test_fake_engine_close_returns_every_device_buffer(engine: Path) -> None:
    with open_backend(engine, "tensorrt") as backend:  # first open creates the CUDA context
        backend.infer(*sample(2))
    before = _free_bytes()
    for round_ in range(3):
        with open_backend(engine, "tensorrt") as backend:
            backend.infer(*sample(64, seed=round_))
    leaked = before - _free_bytes()
    one_set = PROFILE[2] * (H * W * 3 + 4 + D * 4)
    assert leaked < one_set, f"{leaked} bytes of device memory not returned after 3 open/close cycles"
