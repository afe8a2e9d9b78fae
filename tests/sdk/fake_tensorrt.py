"""Fake `tensorrt`, `cuda.bindings.runtime` (cudart) and `pycuda.driver` modules for CPU-only tests.

They mimic the real APIs the TensorRT backend uses, closely enough that our logic runs unchanged:
"device" memory is host memory from ctypes, `cudaMemcpyAsync` is a `memmove`, and a fake engine
computes `fake_engine_function` on whatever bytes sit at the addresses bound with
`set_tensor_address`, so a test sees whether data really flowed host → device → engine → host.

A fake engine file is `MAGIC + JSON spec` (tensor names/dtypes/shapes, profile, TensorRT version).
"""

from __future__ import annotations

import ctypes
import enum
import json
import types
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"FAKE-TRT-PLAN\n"
VERSION = "10.3.0"


def fake_engine_function(images: np.ndarray, modality: np.ndarray, dim: int) -> np.ndarray:
    """What every fake engine computes: channel means, the modality and a constant tail, L2-normalised."""
    n = len(images)
    out = np.zeros((n, dim), np.float32)
    out[:, :3] = images.reshape(n, -1, 3).mean(axis=1) / 255.0 + 0.1
    out[:, 3] = modality + 0.5
    out[:, 4:] = np.arange(4, dim, dtype=np.float32) / dim
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def engine_spec(height: int = 32, width: int = 16, dim: int = 16, profile=(1, 4, 8), **changes: Any) -> dict:
    """The JSON a fake engine file carries; `changes` override fields to break the contract."""
    spec = {
        "version": VERSION,
        "dim": dim,
        "profile": list(profile),
        "tensors": [
            {"name": "images", "input": True, "dtype": "UINT8", "shape": [-1, height, width, 3]},
            {"name": "modality", "input": True, "dtype": "INT32", "shape": [-1]},
            {"name": "embeddings", "input": False, "dtype": "FLOAT", "shape": [-1, dim]},
        ],
    }
    spec.update(changes)
    return spec


def write_engine(path: Path, spec: dict) -> Path:
    path.write_bytes(MAGIC + json.dumps(spec).encode())
    return path


# ----- tensorrt -----------------------------------------------------------------------------------
class DataType(enum.Enum):
    UINT8 = np.uint8
    INT32 = np.int32
    FLOAT = np.float32


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass


def _view(address: int, nbytes: int, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    raw = (ctypes.c_uint8 * nbytes).from_address(address)
    return np.frombuffer(raw, dtype=np.uint8).view(dtype).reshape(shape)


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.address_calls = 0
        self.batches: list[int] = []

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.address_calls += 1
        self.addresses[name] = int(address)
        return True

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        low, _, high = self.engine.profile
        if not low <= shape[0] <= high or tuple(shape[1:]) != tuple(self.engine.shape(name)[1:]):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name == "embeddings":
            return (self.shapes["images"][0], self.engine.spec["dim"])
        return self.shapes[name]

    def execute_async_v3(self, stream_handle: int) -> bool:
        assert isinstance(stream_handle, int)
        n = self.shapes["images"][0]
        height, width = self.engine.shape("images")[1:3]
        dim = self.engine.spec["dim"]
        images = _view(self.addresses["images"], n * height * width * 3, np.uint8, (n, height, width, 3))
        modality = _view(self.addresses["modality"], n * 4, np.int32, (n,))
        out = _view(self.addresses["embeddings"], n * dim * 4, np.float32, (n, dim))
        out[:] = fake_engine_function(images, modality, dim)
        self.batches.append(n)
        return True


class FakeEngine:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.tensors = {t["name"]: t for t in spec["tensors"]}
        self.profile = spec["profile"]
        self.contexts: list[FakeContext] = []

    @property
    def num_io_tensors(self) -> int:
        return len(self.tensors)

    def get_tensor_name(self, index: int) -> str:
        return list(self.tensors)[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if self.tensors[name]["input"] else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType[self.tensors[name]["dtype"]]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.tensors[name]["shape"])

    get_tensor_shape = shape

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        assert profile_index == 0 and self.tensors[name]["input"]
        return [(b, *self.shape(name)[1:]) for b in self.profile]

    def create_execution_context(self) -> FakeContext:
        self.contexts.append(FakeContext(self))
        return self.contexts[-1]


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
        if not data.startswith(MAGIC):
            self.logger.log(
                ILogger.Severity.ERROR,
                "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (Serialization assertion "
                "magicTagRead == kMAGIC_TAG failed.Magic tag does not match)",
            )
            return None
        spec = json.loads(data[len(MAGIC) :])
        if spec["version"] != VERSION:
            self.logger.log(
                ILogger.Severity.ERROR,
                "The engine plan file is not compatible with this version of TensorRT, expecting library "
                f"version {VERSION} got {spec['version']}, please rebuild.",
            )
            return None
        return FakeEngine(spec)


def nptype(dtype: DataType) -> type:
    return dtype.value


def tensorrt_module() -> types.ModuleType:
    module = types.ModuleType("tensorrt")
    module.__version__ = VERSION
    for obj in (DataType, TensorIOMode, ILogger, Runtime, nptype):
        setattr(module, obj.__name__, obj)
    return module


# ----- cudart -------------------------------------------------------------------------------------
class FakeCudart(types.ModuleType):
    """`cuda.bindings.runtime` look-alike; every call returns `(cudaError_t, *values)`."""

    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorMemoryAllocation = 2
        cudaErrorInsufficientDriver = 35

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self, devices: int = 1, name: bytes = b"NVIDIA Fake GPU", capability=(8, 6)) -> None:
        super().__init__("cuda.bindings.runtime")
        self.devices, self.gpu_name, self.capability = devices, name, capability
        self.memory: dict[int, Any] = {}
        self.calls: dict[str, list] = {}
        self.freed: list[int] = []

    def _log(self, name: str, *args: Any) -> None:
        self.calls.setdefault(name, []).append(args)

    def _alloc(self, kind: str, nbytes: int) -> tuple:
        buffer = ctypes.create_string_buffer(nbytes)
        address = ctypes.addressof(buffer)
        self.memory[address] = buffer
        self._log(kind, nbytes)
        return (self.cudaError_t.cudaSuccess, address)

    def cudaGetDeviceCount(self) -> tuple:
        if not self.devices:
            return (self.cudaError_t.cudaErrorInsufficientDriver, None)
        return (self.cudaError_t.cudaSuccess, self.devices)

    def cudaGetErrorName(self, err: Any) -> tuple:
        return (self.cudaError_t.cudaSuccess, self.cudaError_t(err).name.encode())

    def cudaSetDevice(self, device: int) -> tuple:
        return (self.cudaError_t.cudaSuccess,)

    def cudaGetDeviceProperties(self, device: int) -> tuple:
        props = types.SimpleNamespace(
            name=self.gpu_name + b"\x00\x00", major=self.capability[0], minor=self.capability[1]
        )
        return (self.cudaError_t.cudaSuccess, props)

    def cudaStreamCreate(self) -> tuple:
        self._log("cudaStreamCreate")
        return (self.cudaError_t.cudaSuccess, 7)

    def cudaStreamDestroy(self, stream: int) -> tuple:
        self._log("cudaStreamDestroy", stream)
        return (self.cudaError_t.cudaSuccess,)

    def cudaMalloc(self, nbytes: int) -> tuple:
        return self._alloc("cudaMalloc", nbytes)

    def cudaMallocHost(self, nbytes: int) -> tuple:
        return self._alloc("cudaMallocHost", nbytes)

    def cudaFree(self, address: int) -> tuple:
        self._log("cudaFree", address)
        self.freed.append(address)
        return (self.cudaError_t.cudaSuccess,)

    def cudaFreeHost(self, address: int) -> tuple:
        self._log("cudaFreeHost", address)
        self.freed.append(address)
        return (self.cudaError_t.cudaSuccess,)

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind: Any, stream: int) -> tuple:
        assert dst not in self.freed and src not in self.freed
        self._log("cudaMemcpyAsync", kind, nbytes)
        ctypes.memmove(dst, src, nbytes)
        return (self.cudaError_t.cudaSuccess,)

    def cudaStreamSynchronize(self, stream: int) -> tuple:
        self._log("cudaStreamSynchronize", stream)
        return (self.cudaError_t.cudaSuccess,)


def cuda_modules(cudart: FakeCudart) -> dict[str, types.ModuleType]:
    """`sys.modules` entries that make `from cuda.bindings import runtime` return `cudart`."""
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart  # type: ignore[attr-defined]
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings  # type: ignore[attr-defined]
    return {"cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": cudart}


# ----- pycuda -------------------------------------------------------------------------------------
def pycuda_driver(devices: int = 1) -> types.ModuleType:
    """A `pycuda.driver` look-alike (primary context, pagelocked arrays, async copies)."""
    drv = types.ModuleType("pycuda.driver")
    drv.memory = {}  # type: ignore[attr-defined]
    drv.events = []  # type: ignore[attr-defined]

    class Error(Exception):
        pass

    class Allocation:
        def __init__(self, nbytes: int) -> None:
            self.buffer = ctypes.create_string_buffer(nbytes)

        def __int__(self) -> int:
            return ctypes.addressof(self.buffer)

        def free(self) -> None:
            drv.events.append("free")

    class Context:
        def push(self) -> None:
            drv.events.append("push")

        def pop(self) -> None:
            drv.events.append("pop")

    class Device:
        def __init__(self, index: int) -> None:
            self.index = index

        @staticmethod
        def count() -> int:
            return devices

        def name(self) -> str:
            return "Fake Orin"

        def compute_capability(self) -> tuple[int, int]:
            return (8, 7)

        def retain_primary_context(self) -> Context:
            return Context()

    class Stream:
        handle = 99

        def synchronize(self) -> None:
            drv.events.append("sync")

    drv.Error, drv.Device, drv.Stream = Error, Device, Stream  # type: ignore[attr-defined]
    drv.init = lambda: None  # type: ignore[attr-defined]
    drv.mem_alloc = Allocation  # type: ignore[attr-defined]
    drv.pagelocked_empty = lambda shape, dtype: np.empty(shape, dtype)  # type: ignore[attr-defined]
    drv.memcpy_htod_async = lambda dst, src, stream: ctypes.memmove(int(dst), src.ctypes.data, src.nbytes)  # type: ignore[attr-defined]
    drv.memcpy_dtoh_async = lambda dst, src, stream: ctypes.memmove(dst.ctypes.data, int(src), dst.nbytes)  # type: ignore[attr-defined]
    return drv
