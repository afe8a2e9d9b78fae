"""CUDA memory and streams for the TensorRT backend, through cuda-python (or pycuda where present).

Both libraries are wrapped behind one small interface (`CudaRuntime`): device query, one stream,
device and pinned host allocations that the wrapper owns and lets go of in `release()` (with
cuda-python, pinned host memory lives on while an array still views it), async copies and a
synchronise. CUDA's current device (runtime API) and current context (driver API, pycuda) belong to a
thread, so every call after `open()` runs inside `current()`, which makes them current on the calling
thread: a backend opened on one thread can then run on another (the pipeline embeds on its own).
Nothing is imported at module level; `load_cuda()` picks cuda-python (`cuda.bindings.runtime`, or the
older `cuda.cudart`), then pycuda, else raises `MissingDependencyError` naming the `tensorrt` extra.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import DeviceError, MissingDependencyError

PURPOSE = "Running a TensorRT engine"


def import_cudart() -> Any | None:
    """cuda-python's runtime module (`cuda.bindings.runtime`, or the older `cuda.cudart`), or None."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def load_cuda() -> CudaRuntime:
    """The CUDA wrapper for this machine: cuda-python first, pycuda second.

    Raises:
        MissingDependencyError: neither is installed (extra `tensorrt` provides cuda-python).
    """
    cudart = import_cudart()
    if cudart is not None:
        return CudaPython(cudart)
    try:
        driver = importlib.import_module("pycuda.driver")
    except ImportError:
        raise MissingDependencyError("cuda-python", "tensorrt", PURPOSE) from None
    return PyCuda(driver)


class CudaRuntime:
    """What the TensorRT backend needs from CUDA. Allocations are owned and freed by `release()`."""

    name = "cuda"

    def open(self, device_id: int) -> tuple[str, str]:
        """Select GPU `device_id`, create the stream; returns `(gpu name, compute capability "8.6")`.

        Raises:
            DeviceError: no usable CUDA GPU, or `device_id` out of range.
        """
        raise NotImplementedError

    @property
    def opened(self) -> bool:
        """Whether `open()` succeeded and `release()` has not run yet."""
        raise NotImplementedError

    def current(self) -> contextlib.AbstractContextManager[None]:
        """A block in which the opened device (and context) is current on the calling thread."""
        raise NotImplementedError

    def alloc_device(self, nbytes: int) -> int:
        """Device memory of `nbytes`; returns its address."""
        raise NotImplementedError

    def alloc_pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Page-locked host array (fast, async copies)."""
        raise NotImplementedError

    def to_device(self, dst: int, src: np.ndarray) -> None:
        """Queue a copy of contiguous host `src` to device address `dst` on the stream."""
        raise NotImplementedError

    def to_host(self, dst: np.ndarray, src: int) -> None:
        """Queue a copy from device address `src` into contiguous host `dst` on the stream."""
        raise NotImplementedError

    def stream_handle(self) -> int:
        """The stream as the integer handle `execute_async_v3` takes."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for everything queued on the stream."""
        raise NotImplementedError

    def release(self) -> None:
        """Free every allocation and the stream (safe to call twice)."""
        raise NotImplementedError


def _no_gpu(device_id: int, count: int, detail: str) -> DeviceError:
    if count:
        seen = f"only {count} CUDA GPU(s) are visible"
    else:
        seen = "no usable CUDA GPU was found" + (f" ({detail})" if detail else "")
    return DeviceError(
        f"device='tensorrt' with device_id={device_id} needs an NVIDIA GPU, but {seen}. Check the "
        "driver with `nvidia-smi` and CUDA_VISIBLE_DEVICES, or run the .onnx model with device='cpu'."
    )


class CudaPython(CudaRuntime):
    """cuda-python runtime API (`cudart`): every call returns `(cudaError_t, *values)`."""

    name = "cuda-python"

    def __init__(self, cudart: Any) -> None:
        self.cudart = cudart
        self.device_id = 0
        self.stream: Any = None
        self._device: list[int] = []
        self._pinned: list[_PinnedHost] = []

    def check(self, result: Any, what: str) -> Any:
        """Unpack a cudart result tuple, raising `DeviceError` with the CUDA error name on failure."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.cudart.cudaError_t.cudaSuccess:
            raise DeviceError(
                f"CUDA call {what} failed with {self.error_name(err)}; check the GPU with `nvidia-smi`"
            )
        if len(values) == 1:
            return values[0]
        return tuple(values) or None

    def error_name(self, err: Any) -> str:
        """`cudaErrorInsufficientDriver`-style name of an error code."""
        name = self.cudart.cudaGetErrorName(err)[1]
        return name.decode() if isinstance(name, bytes) else str(name)

    def open(self, device_id: int) -> tuple[str, str]:
        err, count = self.cudart.cudaGetDeviceCount()
        ok = err == self.cudart.cudaError_t.cudaSuccess
        count = int(count or 0) if ok else 0  # without a driver the count is None, not 0
        if not count or device_id >= count:
            raise _no_gpu(device_id, count, "" if ok else self.error_name(err))
        self.device_id = device_id
        props = self.check(self.cudart.cudaGetDeviceProperties(device_id), "cudaGetDeviceProperties")
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        with self.current():  # the stream belongs to that device; the thread's own device is restored
            self.stream = self.check(self.cudart.cudaStreamCreate(), "cudaStreamCreate")
        return name.rstrip("\x00").strip(), f"{props.major}.{props.minor}"

    @property
    def opened(self) -> bool:
        return self.stream is not None

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        previous = int(self.check(self.cudart.cudaGetDevice(), "cudaGetDevice"))
        if previous != self.device_id:
            self.check(self.cudart.cudaSetDevice(self.device_id), "cudaSetDevice")
        try:
            yield
        finally:
            if previous != self.device_id:
                self.cudart.cudaSetDevice(previous)

    def alloc_device(self, nbytes: int) -> int:
        ptr = int(self.check(self.cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes})"))
        self._device.append(ptr)
        return ptr

    def alloc_pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        ptr = int(self.check(self.cudart.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})"))
        raw = (ctypes.c_uint8 * nbytes).from_address(ptr)
        owner = _PinnedHost(self.cudart, self.device_id, ptr)
        raw._owner = owner  # type: ignore[attr-defined]  # every array viewing `raw` keeps it alive
        self._pinned.append(owner)
        return np.frombuffer(memoryview(raw), dtype=np.uint8).view(dtype).reshape(shape)

    def to_device(self, dst: int, src: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.check(
            self.cudart.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, self.stream), "H2D copy"
        )

    def to_host(self, dst: np.ndarray, src: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.check(
            self.cudart.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, self.stream), "D2H copy"
        )

    def stream_handle(self) -> int:
        if isinstance(self.stream, int):  # bindings that hand out plain integer handles
            return self.stream
        try:  # int(cudaStream_t) is deprecated since cuda-bindings 13
            from cuda.bindings.utils import get_cuda_native_handle
        except ImportError:
            return int(self.stream)
        return int(get_cuda_native_handle(self.stream))

    def synchronize(self) -> None:
        self.check(self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def release(self) -> None:
        while self._device:
            self.cudart.cudaFree(self._device.pop())
        self._pinned.clear()  # freed now, or when the last array a caller kept (allocate_images) goes
        if self.stream is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None


class _PinnedHost:
    """One `cudaMallocHost` allocation, freed when the last reference goes: the arrays viewing it hold
    one (through their buffer), so an array a caller kept from `allocate_images` stays valid memory
    after the backend is closed, instead of pointing at freed pages (a crash on the next write).

    Not freed at interpreter exit (`atexit` off): a daemon thread may still be writing to a view then,
    and the operating system takes the pages back with the process anyway."""

    def __init__(self, cudart: Any, device_id: int, ptr: int) -> None:
        self.ptr = ptr
        weakref.finalize(self, _free_host, cudart, device_id, ptr).atexit = False


def _free_host(cudart: Any, device_id: int, ptr: int) -> None:
    """`cudaFreeHost` on whichever thread drops the last view, with the allocating device current (a
    thread with none would otherwise start device 0's context for the call), then the thread's own."""
    ok = cudart.cudaError_t.cudaSuccess
    err, previous = cudart.cudaGetDevice()
    switch = err == ok and previous != device_id
    if switch:
        cudart.cudaSetDevice(device_id)
    cudart.cudaFreeHost(ptr)
    if switch:
        cudart.cudaSetDevice(previous)


class PyCuda(CudaRuntime):
    """pycuda driver API (Jetson images that ship it). Uses the device's primary context, pushed on the
    calling thread only for the duration of each `current()` block."""

    name = "pycuda"

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.context: Any = None
        self.stream: Any = None
        self._device: list[Any] = []
        self._depth = 0  # nesting of `current()` blocks
        self._to_detach: Any = None

    def open(self, device_id: int) -> tuple[str, str]:
        drv = self.driver
        try:
            drv.init()
            count = drv.Device.count()
        except drv.Error as exc:
            raise _no_gpu(device_id, 0, str(exc)) from exc
        if device_id >= count:
            raise _no_gpu(device_id, count, "")
        device = drv.Device(device_id)
        self.context = device.retain_primary_context()
        with self.current():
            self.stream = drv.Stream()
        major, minor = device.compute_capability()
        return str(device.name()), f"{major}.{minor}"

    @property
    def opened(self) -> bool:
        return self.context is not None

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        context = self.context  # release() clears the attribute inside a block
        if context is None:
            raise DeviceError("the CUDA context was released: the engine is closed; open it again")
        context.push()
        self._depth += 1
        try:
            yield
        finally:
            context.pop()
            self._depth -= 1
            if self._depth == 0 and self._to_detach is not None:
                self._detach()

    def _detach(self) -> None:
        """Give back the primary-context reference `open` retained, once no block has it pushed."""
        context, self._to_detach = self._to_detach, None
        with contextlib.suppress(self.driver.Error):  # the device may already be gone
            context.detach()

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """pycuda's `driver.Error` (out of memory, a lost device) as `DeviceError`, like cuda-python's."""
        try:
            yield
        except self.driver.Error as exc:
            raise DeviceError(f"CUDA call {what} failed ({exc}); check the GPU with `nvidia-smi`") from exc

    def alloc_device(self, nbytes: int) -> int:
        with self._errors(f"mem_alloc({nbytes})"):
            allocation = self.driver.mem_alloc(nbytes)
        self._device.append(allocation)
        return int(allocation)

    def alloc_pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        with self._errors(f"pagelocked_empty({shape})"):
            return self.driver.pagelocked_empty(shape, dtype)

    def to_device(self, dst: int, src: np.ndarray) -> None:
        with self._errors("H2D copy"):
            self.driver.memcpy_htod_async(dst, src, self.stream)

    def to_host(self, dst: np.ndarray, src: int) -> None:
        with self._errors("D2H copy"):
            self.driver.memcpy_dtoh_async(dst, src, self.stream)

    def stream_handle(self) -> int:
        return int(self.stream.handle)

    def synchronize(self) -> None:
        with self._errors("stream synchronize"):
            self.stream.synchronize()

    def release(self) -> None:
        context = self.context
        if context is None:
            return
        with self.current():
            while self._device:
                self._device.pop().free()
            self.stream = None
        self.context = None
        self._to_detach = context  # detached when the outermost block pops it (now, or the caller's)
        if self._depth == 0:
            self._detach()
