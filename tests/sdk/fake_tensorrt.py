"""Fake `tensorrt`, `cuda.bindings.runtime` (cudart) and `pycuda.driver` modules for CPU-only tests.

They mimic the real APIs the TensorRT backend uses, closely enough that our logic runs unchanged:
"device" memory is host memory from ctypes, `cudaMemcpyAsync` is a `memmove`, and a fake engine
computes `fake_engine_function` on whatever bytes sit at the addresses bound with
`set_tensor_address`, so a test sees whether data really flowed host → device → engine → host.

A fake engine file is `MAGIC + JSON spec` (tensor names/dtypes/shapes, profile, TensorRT version).

The builder half (`Builder`, `OnnxParser`, builder config, optimisation profile, timing cache) reads
the ONNX file's I/O with the `onnx` package and "builds" such a fake engine, recording every setting
(network flags, builder flags, workspace, profile, FP32-pinned layers, timing-cache reuse) in the
spec's `build` entry, so export tests can check the builder logic and then open the result with the
fake runtime. `tensorrt_module(version)` mimics the API differences of TensorRT 8.x, 10.x and 11.x.
"""

from __future__ import annotations

import ctypes
import enum
import json
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"FAKE-TRT-PLAN\x00\n"  # binary, like a real plan
VERSION = "10.3.0"


def fake_engine_function(images: Any, modality: Any, dim: int, xp: Any = np) -> Any:
    """What every fake engine computes: channel means, the modality and a constant tail, L2-normalised.

    `xp` is the array module: numpy on the host, CuPy when a real-CUDA test runs it on the device.
    """
    n = len(images)
    out = xp.zeros((n, dim), xp.float32)
    out[:, :3] = images.reshape(n, -1, 3).mean(axis=1) / 255.0 + 0.1
    out[:, 3] = modality + 0.5
    out[:, 4:] = xp.arange(4, dim, dtype=xp.float32) / dim
    return out / xp.linalg.norm(out, axis=1, keepdims=True)


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
    HALF = np.float16


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
        self.runtime_dla_core = -1

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


class DeviceType(enum.IntEnum):
    GPU = 0
    DLA = 1


class Runtime:
    version = VERSION
    num_DLA_cores = 0  # a desktop GPU; tests set 2 for an AGX Orin

    def __init__(self, logger: ILogger) -> None:
        self.logger = logger
        self.DLA_core = -1  # TensorRT's default: no DLA core chosen

    def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
        if not data.startswith(MAGIC):
            self.logger.log(
                ILogger.Severity.ERROR,
                "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (Serialization assertion "
                "magicTagRead == kMAGIC_TAG failed.Magic tag does not match)",
            )
            return None
        spec = json.loads(bytes(data[len(MAGIC) :]))
        if spec["version"] != self.version:
            self.logger.log(
                ILogger.Severity.ERROR,
                "The engine plan file is not compatible with this version of TensorRT, expecting library "
                f"version {self.version} got {spec['version']}, please rebuild.",
            )
            return None
        engine = FakeEngine(spec)
        engine.runtime_dla_core = self.DLA_core  # what the runtime had set when it deserialised
        return engine


def nptype(dtype: DataType) -> type:
    """As TensorRT 8.5's under numpy >= 1.24: its table names `np.bool`, which numpy removed (vireid
    keeps its own table, so nothing may call this)."""
    raise AttributeError("module 'numpy' has no attribute 'bool'")


# ----- builder ------------------------------------------------------------------------------------
ONNX_DTYPES = {1: DataType.FLOAT, 2: DataType.UINT8, 6: DataType.INT32, 10: DataType.HALF}
CACHE_MAGIC = b"FAKE-TIMING-CACHE\n"


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class FakeTensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: DataType) -> None:
        self.name, self.shape, self.dtype = name, shape, dtype


class FakeLayer:
    def __init__(self, name: str, op_type: str, outputs: list[FakeTensor]) -> None:
        self.name, self.type, self.outputs = name, op_type, outputs
        self.precision: DataType | None = None
        self.output_types: dict[int, DataType] = {}

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_output(self, index: int) -> FakeTensor:
        return self.outputs[index]

    def set_output_type(self, index: int, dtype: DataType) -> None:
        self.output_types[index] = dtype


class FakeNetwork:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: list[FakeTensor] = []
        self.outputs: list[FakeTensor] = []
        self.layers: list[FakeLayer] = []

    num_inputs = property(lambda self: len(self.inputs))
    num_outputs = property(lambda self: len(self.outputs))
    num_layers = property(lambda self: len(self.layers))

    def get_input(self, index: int) -> FakeTensor:
        return self.inputs[index]

    def get_output(self, index: int) -> FakeTensor:
        return self.outputs[index]

    def get_layer(self, index: int) -> FakeLayer:
        return self.layers[index]


class ParserError:
    """TensorRT 10's `IParserError`: code, description, node index, name and operator."""

    def __init__(self, desc: str, node: int = -1, name: str = "", operator: str = "") -> None:
        self._desc, self._node, self._name, self._operator = desc, node, name, operator

    def code(self) -> int:
        return 8  # ErrorCode.UNSUPPORTED_NODE

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._name

    def node_operator(self) -> str:
        return self._operator

    def __str__(self) -> str:
        return f"In node {self._node} ({self._name}): {self._desc}"


#: ONNX ops the fake parser refuses, as a real parser refuses ops it has no importer for.
UNSUPPORTED_OPS = {"FakeUnsupportedOp"}


def _dims(value_info: Any) -> tuple[int, ...]:
    return tuple(
        d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim
    )


class OnnxParser:
    def __init__(self, network: FakeNetwork, logger: ILogger) -> None:
        self.network, self.logger = network, logger
        self.errors: list[ParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> ParserError:
        return self.errors[index]

    def parse_from_file(self, path: str) -> bool:
        import onnx

        try:
            model = onnx.load(path)
        except Exception as exc:
            self.errors.append(ParserError(f"Failed to parse ONNX model from file: {path} ({exc})"))
            return False
        graph = model.graph
        for index, node in enumerate(graph.node):
            if node.op_type in UNSUPPORTED_OPS or node.domain not in ("", "ai.onnx"):
                desc = f"No importer registered for op: {node.op_type}"
                self.errors.append(ParserError(desc, index, node.name, node.op_type))
        if self.errors:
            return False
        inits = {t.name for t in graph.initializer}
        dtype = {v.name: ONNX_DTYPES.get(v.type.tensor_type.elem_type, DataType.FLOAT) for v in graph.input}
        dtype.update({v.name: ONNX_DTYPES.get(v.type.tensor_type.elem_type) for v in graph.output})
        self.network.inputs = [
            FakeTensor(v.name, _dims(v), dtype[v.name]) for v in graph.input if v.name not in inits
        ]
        self.network.outputs = [FakeTensor(v.name, _dims(v), dtype[v.name]) for v in graph.output]
        self.network.layers = [
            FakeLayer(n.name, n.op_type, [FakeTensor(o, (), DataType.FLOAT) for o in n.output])
            for n in graph.node
        ]
        return True


class OptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, name: str, low: tuple[int, ...], opt: tuple[int, ...], high: tuple[int, ...]) -> None:
        if not all(a <= b <= c for a, b, c in zip(low, opt, high, strict=True)):
            raise ValueError(f"profile for {name}: min <= opt <= max violated")
        self.shapes[name] = (tuple(low), tuple(opt), tuple(high))


class TimingCache:
    def __init__(self, data: bytes) -> None:
        self.loaded = json.loads(data[len(CACHE_MAGIC) :]) if data else {"builds": 0}
        self.builds = self.loaded["builds"]

    def serialize(self) -> bytes:
        return CACHE_MAGIC + json.dumps({"builds": self.builds}).encode()


class BuilderConfig:
    def __init__(self, logger: ILogger, default_flags: set[str]) -> None:
        self.logger = logger
        self.flags = set(default_flags)
        self.pools: dict[Any, int] = {}
        self.profiles: list[OptimizationProfile] = []
        self.cache: TimingCache | None = None
        self.cache_reused = False
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1

    def can_run_on_DLA(self, layer: FakeLayer) -> bool:
        return layer.type != "ReduceL2"  # something must fall back, as on a real DLA

    def set_flag(self, flag: Any) -> None:
        self.flags.add(flag.name)

    def clear_flag(self, flag: Any) -> None:
        self.flags.discard(flag.name)

    def get_flag(self, flag: Any) -> bool:
        return flag.name in self.flags

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        self.pools[pool] = int(size)

    def add_optimization_profile(self, profile: OptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data: bytes) -> TimingCache:
        data = bytes(data)
        if data and not data.startswith(CACHE_MAGIC):
            self.logger.log(ILogger.Severity.ERROR, "Timing cache: invalid or corrupted cache data; ignored")
            data = b""
        self.cache_reused = bool(data)
        return TimingCache(data)

    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
        assert ignore_mismatch is False
        self.cache = cache
        return True

    def get_timing_cache(self) -> TimingCache:
        assert self.cache is not None
        return self.cache


class Builder:
    """`trt.Builder`; subclassed per fake module with `trt` (the module) set."""

    trt: Any = None
    fail_build = False
    num_DLA_cores = 0  # a desktop GPU; tests set 2 for an AGX Orin

    def __init__(self, logger: ILogger) -> None:
        if not self.trt.cuda_ok:
            logger.log(ILogger.Severity.ERROR, "CUDA initialization failure with error: 35")
            raise TypeError("pybind11::init(): factory function returned nullptr")
        self.logger = logger

    def create_network(self, flags: int = 0) -> FakeNetwork:
        known = sum(1 << int(f) for f in self.trt.NetworkDefinitionCreationFlag)
        assert flags & ~known == 0, f"unknown network flags {flags}"
        return FakeNetwork(flags)

    def create_builder_config(self) -> BuilderConfig:
        return BuilderConfig(self.logger, {"TF32"})

    def create_optimization_profile(self) -> OptimizationProfile:
        return OptimizationProfile()

    def _strongly_typed(self, network: FakeNetwork) -> bool:
        flags = self.trt.NetworkDefinitionCreationFlag
        return self.trt.major >= 11 or (
            hasattr(flags, "STRONGLY_TYPED") and bool(network.flags & (1 << int(flags.STRONGLY_TYPED)))
        )

    def _error(self, message: str) -> None:
        self.logger.log(ILogger.Severity.ERROR, message)

    def build_serialized_network(self, network: FakeNetwork, config: BuilderConfig) -> bytes | None:
        strongly = self._strongly_typed(network)
        if strongly and "FP16" in config.flags:
            self._error(
                "API Usage Error (Parameter check failed, condition: !config.getFlag(BuilderFlag::kFP16))"
            )
            return None
        if self.trt.major < 10 and not network.flags & 1:
            self._error("Network must have explicit batch dimensions (EXPLICIT_BATCH)")
            return None
        dynamic = [t.name for t in network.inputs if -1 in t.shape]
        shapes = config.profiles[0].shapes if config.profiles else {}
        if any(name not in shapes for name in dynamic):
            self._error("Network has dynamic or shape inputs, but no optimization profile has been defined.")
            return None
        if self.fail_build:
            self._error("Internal Error (Could not find any implementation for node /head/pool/Pow)")
            return None
        if config.cache is not None:
            config.cache.builds += 1
        images = shapes[network.inputs[0].name]
        spec = {
            "version": self.trt.__version__,
            "dim": network.outputs[0].shape[1],
            "profile": [images[0][0], images[1][0], images[2][0]],
            "tensors": [
                {
                    "name": t.name,
                    "input": i < network.num_inputs,
                    "dtype": t.dtype.name,
                    "shape": list(t.shape),
                }
                for i, t in enumerate([*network.inputs, *network.outputs])
            ],
            "build": {
                "network_flags": network.flags,
                "strongly_typed": strongly,
                "flags": sorted(config.flags),
                "workspace": config.pools.get(MemoryPoolType.WORKSPACE),
                "shapes": {name: [list(s) for s in value] for name, value in shapes.items()},
                "pinned_fp32": [layer.name for layer in network.layers if layer.precision is DataType.FLOAT],
                "timing_cache_reused": config.cache_reused,
                "device_type": DeviceType(config.default_device_type).name,
                "dla_core": config.DLA_core,
            },
        }
        return MAGIC + json.dumps(spec).encode()


def _flag_enums(major: int) -> tuple[type[enum.IntEnum], type[enum.IntEnum]]:
    """`NetworkDefinitionCreationFlag` and `BuilderFlag` as each major version has them."""
    if major < 10:
        network = {"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1}
    elif major == 10:
        network = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    else:
        network = {"STRONGLY_TYPED": 1}
    builder = (
        {"GPU_FALLBACK": 3, "TF32": 7}
        if major >= 11
        else {"FP16": 0, "INT8": 1, "GPU_FALLBACK": 3, "TF32": 7, "OBEY_PRECISION_CONSTRAINTS": 11}
    )
    return (
        enum.IntEnum("NetworkDefinitionCreationFlag", network),  # type: ignore[return-value]
        enum.IntEnum("BuilderFlag", builder),
    )


def tensorrt_module(version: str = VERSION, cuda_ok: bool = True) -> types.ModuleType:
    """A fake `tensorrt` module: runtime and builder API of TensorRT `version` (8.x, 10.x or 11.x)."""
    module = types.ModuleType("tensorrt")
    module.__version__ = version
    module.major = int(version.split(".")[0])  # type: ignore[attr-defined]
    module.cuda_ok = cuda_ok  # type: ignore[attr-defined]
    for obj in (DataType, TensorIOMode, ILogger, nptype, MemoryPoolType, OnnxParser, DeviceType):
        setattr(module, obj.__name__, obj)
    module.Runtime = type("Runtime", (Runtime,), {"version": version})  # type: ignore[attr-defined]
    module.Builder = type("Builder", (Builder,), {"trt": module})  # type: ignore[attr-defined]
    network_flags, builder_flags = _flag_enums(module.major)  # type: ignore[attr-defined]
    module.NetworkDefinitionCreationFlag, module.BuilderFlag = network_flags, builder_flags  # type: ignore[attr-defined]
    module.float32, module.float16 = DataType.FLOAT, DataType.HALF  # type: ignore[attr-defined]
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
        self.thread = threading.local()  # like CUDA: the current device belongs to a thread (default 0)
        self.copy_devices: list[int] = []  # the calling thread's current device at each copy

    def cudaGetDevice(self) -> tuple:
        return (self.cudaError_t.cudaSuccess, getattr(self.thread, "device", 0))

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
        self.thread.device = device
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
        self.copy_devices.append(getattr(self.thread, "device", 0))
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
    """A `pycuda.driver` look-alike (primary context, pagelocked arrays, async copies).

    Like CUDA's driver API, each thread has its own stack of current contexts, and every call that
    needs a context raises `Error` on a thread where none is current.
    """
    drv = types.ModuleType("pycuda.driver")
    drv.memory = {}  # type: ignore[attr-defined]
    drv.events = []  # type: ignore[attr-defined]
    local = threading.local()

    class Error(Exception):
        pass

    def needs_context(what: str) -> None:
        if not getattr(local, "stack", None):
            raise Error(f"{what} failed: invalid device context (none is current on this thread)")

    class Allocation:
        def __init__(self, nbytes: int) -> None:
            needs_context("cuMemAlloc")
            if getattr(drv, "out_of_memory", False):
                raise Error("cuMemAlloc failed: out of memory")
            self.buffer = ctypes.create_string_buffer(nbytes)

        def __int__(self) -> int:
            return ctypes.addressof(self.buffer)

        def free(self) -> None:
            needs_context("cuMemFree")
            drv.events.append("free")

    class Context:
        def push(self) -> None:
            local.stack = [*getattr(local, "stack", []), self]
            drv.events.append("push")

        def pop(self) -> None:
            needs_context("cuCtxPopCurrent")
            local.stack = local.stack[:-1]
            drv.events.append("pop")

        def detach(self) -> None:  # releases the primary-context reference retain_primary_context took
            drv.events.append("detach")

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

        def __init__(self) -> None:
            needs_context("cuStreamCreate")

        def synchronize(self) -> None:
            needs_context("cuStreamSynchronize")
            drv.events.append("sync")

    def copy(dst: int, src: int, nbytes: int) -> None:
        needs_context("cuMemcpyAsync")
        ctypes.memmove(dst, src, nbytes)

    def pagelocked_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        needs_context("cuMemHostAlloc")
        return np.empty(shape, dtype)

    drv.Error, drv.Device, drv.Stream = Error, Device, Stream  # type: ignore[attr-defined]
    drv.init = lambda: None  # type: ignore[attr-defined]
    drv.mem_alloc = Allocation  # type: ignore[attr-defined]
    drv.pagelocked_empty = pagelocked_empty  # type: ignore[attr-defined]
    drv.memcpy_htod_async = lambda dst, src, stream: copy(int(dst), src.ctypes.data, src.nbytes)  # type: ignore[attr-defined]
    drv.memcpy_dtoh_async = lambda dst, src, stream: copy(dst.ctypes.data, int(src), dst.nbytes)  # type: ignore[attr-defined]
    return drv
