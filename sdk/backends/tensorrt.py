"""Native TensorRT backend for `.engine` files (TensorRT 8.5 → 11.x named-tensor API).

Opening: read and hash-check the sidecar card (`<engine>.json`), import TensorRT and CUDA, refuse an
engine built for another TensorRT version or GPU type, deserialize (None → the captured TensorRT log
in the error), check the engine's tensors against the card, read optimisation profile 0, create one
execution context and one stream, and allocate device + pinned host buffers once for the profile's
max batch. Their addresses are bound once with `set_tensor_address`; every call only sets input
shapes, copies host → device, runs `execute_async_v3` and copies the embeddings back.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..card import BatchProfile, ModelCard
from ..errors import ArtifactError, DeviceError, InputSpecError, require
from . import trt_engine as te
from .base import Backend
from .cuda import PURPOSE, load_cuda

log = logging.getLogger("vireid")


class TensorRTBackend(Backend):
    """Runs a serialized TensorRT engine on one NVIDIA GPU.

    Args:
        path: the engine file; its card must sit beside it as `<engine>.json` with the engine's SHA-256.
        device: `tensorrt` or `auto` (which chooses `tensorrt` and logs it).
        device_id: CUDA device index.
        check_compatibility: refuse an engine whose card names another TensorRT version or compute
            capability (default). Turn off for engines built version-/hardware-compatible.

    Raises:
        CardError: no sidecar card, or its SHA-256 does not match the engine.
        ArtifactError: built for another TensorRT/GPU, not deserializable, or breaking the contract.
        DeviceError: no usable CUDA GPU.
        MissingDependencyError: tensorrt or cuda-python is missing (extra `tensorrt`).
    """

    format_id = "tensorrt"
    options = ("device_id", "check_compatibility")
    profile: BatchProfile  # an opened engine always has one: its optimisation profile 0

    def __init__(
        self, path: str | Path, device: str = "auto", *, device_id: int = 0, check_compatibility: bool = True
    ) -> None:
        super().__init__(path, ModelCard.from_engine(path))
        if not isinstance(device_id, int) or device_id < 0:
            raise InputSpecError(f"device_id must be a non-negative integer, got {device_id!r}")
        trt = require("tensorrt", "tensorrt", PURPOSE)
        self._cuda = load_cuda()
        # TensorRT's objects (untyped); None until opened and after release
        self._engine: Any = None
        self._context: Any = None
        self._runtime: Any = None
        try:
            self._open(trt, device_id, check_compatibility)
        except BaseException:
            self._release()
            raise
        self.device = "tensorrt"
        if device == "auto":
            log.info("device auto: running %s on tensorrt (%s)", self.path.name, ", ".join(self.providers))

    # ----- opening ------------------------------------------------------------------------------
    def _open(self, trt: Any, device_id: int, check_compatibility: bool) -> None:
        gpu, capability = self._cuda.open(device_id)
        with self._cuda.current():
            self._load(trt, gpu, capability, check_compatibility)

    def _load(self, trt: Any, gpu: str, capability: str, check_compatibility: bool) -> None:
        if check_compatibility:
            problem = te.compatibility_problem(self.card, trt.__version__, gpu, capability)
            if problem:
                raise te.refuse_incompatible(self.path, problem)
        self._logger = te.make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        if self.card.dla_core is not None:
            self._use_dla_core(self.card.dla_core)
        self._engine = te.deserialize(trt, self._runtime, self._logger, self.path)
        self.tensors = te.tensor_table(trt, self._engine)
        problems = te.contract_problems(self.tensors, self.card)
        if problems:
            raise ArtifactError(
                f"{self.path}: the engine does not follow the I/O contract of its card: "
                f"{'; '.join(problems)}. Rebuild it with `vireid export`."
            )
        self.profile = te.engine_profile(self._engine, self.card, self.path)
        self._context = self._engine.create_execution_context()
        self._allocate()
        dla = () if self.card.dla_core is None else (f"DLA core {self.card.dla_core} + GPU fallback",)
        self.providers = (f"TensorRT {trt.__version__}", f"{gpu} (sm {capability})", *dla, self._cuda.name)

    def _use_dla_core(self, core: int) -> None:
        """Load the engine on the DLA core it was built for, refusing a device without that core."""
        available = int(self._runtime.num_DLA_cores)
        if core >= available:
            raise DeviceError(
                f"{self.path} was built for DLA core {core}, but this device has "
                f"{f'cores 0..{available - 1}' if available else 'no DLA cores'}; rebuild it with "
                "`vireid export ... --dla-core K` for a core it has, or without --dla-core for the GPU"
            )
        self._runtime.DLA_core = core

    def _row_shape(self, name: str) -> tuple[int, ...]:
        """Shape of one batch item of tensor `name` (the output's `D` comes from the card)."""
        if name == self.card.output_name:
            return (self.card.embedding_dim,)
        return self.tensors[name].shape[1:]

    def _allocate(self) -> None:
        """Device and pinned host buffers for the profile max, bound to the context once."""
        top = self.profile.max
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, int] = {}
        for name, info in self.tensors.items():
            host = self._cuda.alloc_pinned((top, *self._row_shape(name)), info.dtype)
            self._host[name] = host
            self._device[name] = self._cuda.alloc_device(host.nbytes)
            self._context.set_tensor_address(name, self._device[name])

    # ----- running ------------------------------------------------------------------------------
    def allocate_images(self, n: int) -> np.ndarray:
        """A view of the pinned image buffer when `n` fits the profile (no host copy in `infer`)."""
        if self.min_batch <= n <= self.profile.max and not self._closed:
            return self._host[self.card.input_names[0]][:n]
        return super().allocate_images(n)

    def _infer(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        with self._cuda.current():  # the calling thread may not be the one that opened the engine
            return self._run(images, modality)

    def _run(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        n = len(images)
        clock = _StageClock(self._cuda if self.record_stages else None)
        for name, array in zip(self.card.input_names, (images, modality), strict=True):
            staged = self._host[name][:n]
            if staged.ctypes.data != array.ctypes.data:  # filled through allocate_images: no copy
                np.copyto(staged, array)
            if not self._context.set_input_shape(name, array.shape):
                raise InputSpecError(
                    f"{self.path}: TensorRT refused input shape {array.shape} for '{name}'; the engine's "
                    f"profile takes batches {self.profile.min}..{self.profile.max}"
                )
            self._cuda.to_device(self._device[name], staged)
        clock.mark("h2d")
        out_name = self.card.output_name
        shape = tuple(self._context.get_tensor_shape(out_name))
        if shape != (n, self.card.embedding_dim):
            expected = (n, self.card.embedding_dim)
            raise ArtifactError(
                f"{self.path}: engine output '{out_name}' would be {shape}, expected {expected}"
            )
        if not self._context.execute_async_v3(self._cuda.stream_handle()):
            lines = "; ".join(self._logger.lines[-5:])
            raise ArtifactError(f"{self.path}: TensorRT execute_async_v3 failed for a batch of {n}: {lines}")
        clock.mark("infer")
        result = self._host[out_name][:n]
        self._cuda.to_host(result, self._device[out_name])
        self._cuda.synchronize()
        clock.mark("d2h")
        if self.record_stages:
            self.last_stages = clock.stages
        return result  # a view of the pinned buffer; the base class copies it out under its lock

    def __del__(self) -> None:
        """A backend dropped without `close()` still frees its GPU and pinned memory and its stream
        (they are not Python memory: nothing else would return them while the process lives)."""
        with contextlib.suppress(Exception):  # at interpreter exit CUDA may be gone: nothing to tell
            self.close()

    def _release(self) -> None:
        with self._cuda.current() if self._cuda.opened else contextlib.nullcontext():
            self._context = None  # context before engine before runtime, as TensorRT requires
            self._engine = None
            self._runtime = None
            self._host = {}
            self._device = {}
            self._cuda.release()


class _StageClock:
    """Milliseconds between marks, synchronising the stream at each (inactive when `cuda` is None)."""

    def __init__(self, cuda: Any | None) -> None:
        self.cuda = cuda
        self.stages: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, stage: str) -> None:
        if self.cuda is None:
            return
        self.cuda.synchronize()
        now = time.perf_counter()
        self.stages[stage] = 1e3 * (now - self._last)
        self._last = now
