"""ONNX Runtime backend for `.onnx` artifacts: CPU, CUDA and TensorRT execution providers.

The card is read from the file's metadata before a session exists; the session is then checked twice:
its inputs/outputs against the card (a wrong-contract file is refused), and `session.get_providers()`
against the requested device, because ONNX Runtime silently drops a provider it cannot load.
(The module is named `ort` so it never shadows the `onnxruntime` package.)
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..card import ModelCard, Precision, sha256_file
from ..errors import ArtifactError, DeviceError, InputSpecError, require
from . import ort_config as cfg
from .base import Backend
from .heap import release_free_heap

log = logging.getLogger("vireid")


@functools.cache
def no_fallback_session_class(session_class: type) -> type:
    """`session_class` (`ort.InferenceSession`) with its own provider fallback off from the start, on
    every onnxruntime version.

    onnxruntime reads `enable_fallback=0` at creation only from 1.23 on; before, a GPU provider that
    failed to start made it print a banner to stdout (into `--json` output) and retry on the CPU, so
    vireid's `auto` warning and its explicit-device error never ran. Its sessions keep the switch in
    `_enable_fallback` (1.0 to 1.32 at least); this subclass pins it to False.
    """

    class NoFallbackSession(session_class):
        _enable_fallback = property(lambda self: False, lambda self, value: None)

    return NoFallbackSession


class OnnxRuntimeBackend(Backend):
    """Runs an `.onnx` artifact with ONNX Runtime.

    Args:
        path: the `.onnx` file (its card lives in `metadata_props["vireid.card"]`).
        device: `auto` (CUDA EP when onnxruntime-gpu can start it, else CPU; logged), `cpu`, `cuda`, or
            `tensorrt` (ONNX Runtime's TensorRT EP; builds and caches an engine on first use).
        threads: `intra_op_num_threads` for CPU work; default = physical cores available to this process
            (affinity and cgroup quota respected). Inter-op parallelism is 1 (sequential execution).
        device_id: CUDA device index for `cuda`/`tensorrt`.
        cache_dir: TensorRT EP engine and timing cache folder (default `~/.cache/vireid/ort-tensorrt`);
            each model file gets a subfolder named after its SHA-256, because ONNX Runtime keys cached
            engines by file and tensor names only (a retrained model would load the old engine).
        fp16: TensorRT EP FP16 kernels; default follows the card's precision (`fp16` → on).
        io_binding: bind inputs and a preallocated output buffer (default: on for GPU devices).
        memory_arena: ONNX Runtime's CPU memory arena, which keeps the largest batch's activations
            allocated between calls (default on). Off frees them after each call but measured no
            smaller resident memory here (glibc keeps the freed pages) and 16% slower batches of 32 on
            the full-size model (docs/runtime.md); it is there for allocators that do return memory.

    Raises:
        ArtifactError: the file is unreadable/corrupt or breaks the I/O contract of its card.
        DeviceError: the requested device's execution provider is not the one that runs the session.
        MissingDependencyError: onnxruntime is not installed (extra `onnx`, or `gpu` for CUDA/TensorRT).
    """

    format_id = "onnx"
    options = ("threads", "device_id", "cache_dir", "fp16", "io_binding", "memory_arena")

    def __init__(
        self,
        path: str | Path,
        device: str = "auto",
        *,
        threads: int | None = None,
        device_id: int = 0,
        cache_dir: str | Path | None = None,
        fp16: bool | None = None,
        io_binding: bool | None = None,
        memory_arena: bool = True,
    ) -> None:
        super().__init__(path, ModelCard.from_onnx(path))
        extra = "onnx" if device in ("auto", "cpu") else "gpu"
        self._ort = require("onnxruntime", extra, "Running an ONNX model")
        self.threads = _check_threads(threads)
        self.memory_arena = bool(memory_arena)
        if device == "tensorrt":
            self.profile = self.card.profile or cfg.DEFAULT_TRT_PROFILE
            _refuse_int8_for_another_runtime(self.card, self.path)
        ep_options = self._ep_options(device_id, cache_dir, fp16, device == "tensorrt")
        providers = cfg.provider_list(self._first_choice(device), ep_options)
        self._session = self._create_session(providers, device)
        release_free_heap()  # the parsed model and pre-optimisation weights, freed but still resident
        self.providers = tuple(self._session.get_providers())
        self.device = self._resolve_device(device)
        problems = cfg.contract_problems(self._session, self.card)
        if problems:
            raise ArtifactError(
                f"{self.path}: the model does not follow the I/O contract of its card: "
                + "; ".join(problems)
                + ". Re-export it with `vireid export`."
            )
        use_binding = self.device != "cpu" if io_binding is None else bool(io_binding)
        self._binding = self._session.io_binding() if use_binding else None

    # ----- opening ------------------------------------------------------------------------------
    def _first_choice(self, device: str) -> str:
        """The device to try: an explicit one (checked to be built in), or for `auto` CUDA if built in."""
        available = self._ort.get_available_providers()
        if device == "auto":
            return "cuda" if cfg.CUDA_EP in available else "cpu"
        ep = cfg.EP_OF_DEVICE[device]
        if ep not in available:
            raise DeviceError(
                f"{self.path}: device={device!r} needs ONNX Runtime's {ep}, but the installed onnxruntime "
                f"{self._ort.__version__} only has {available}. Fix: pip uninstall onnxruntime && "
                "pip install 'vireid[gpu]' (onnxruntime-gpu, plus TensorRT for 'tensorrt'), or pass "
                "device='cpu' / 'auto'."
            )
        return device

    def _ep_options(
        self, device_id: int, cache_dir: str | Path | None, fp16: bool | None, tensorrt: bool = False
    ) -> dict:
        if not isinstance(device_id, int) or device_id < 0:
            raise InputSpecError(f"device_id must be a non-negative integer, got {device_id!r}")
        cache = Path(cache_dir) if cache_dir is not None else cfg.default_cache_dir()
        if tensorrt:  # ONNX Runtime keys cached engines by names, not weights: one folder per model file
            cache = cache / sha256_file(self.path)[:16]
        profile = self.profile or cfg.DEFAULT_TRT_PROFILE
        return {
            cfg.CUDA_EP: {"device_id": str(device_id)},
            cfg.TENSORRT_EP: cfg.tensorrt_ep_options(self.card, profile, device_id, cache, fp16),
        }

    def _create_session(self, providers: list[tuple[str, dict[str, str]]], requested: str = "auto") -> Any:
        """The session on `providers`, without onnxruntime's own fallback (it would retry a failing GPU
        provider on the next ones, printing a banner to stdout, at creation and at any later run, and
        vireid's device and providers would no longer be true). A GPU provider failing on a model that
        loads on the CPU: `auto` runs on the CPU (with a warning), an explicit device is a DeviceError."""
        options = self._session_options()
        trt_cache = dict(providers).get(cfg.TENSORRT_EP, {}).get("trt_engine_cache_path")
        if trt_cache:
            Path(trt_cache).mkdir(parents=True, exist_ok=True)
        names, opts = [p for p, _ in providers], [o for _, o in providers]
        try:
            return self._open_session(options, names, opts)
        except Exception as exc:  # onnxruntime raises its own RuntimeError subclasses (Fail, InvalidGraph...)
            failure = exc
        why = f"{type(failure).__name__}: {str(failure).strip()[:500]}"
        if names == [cfg.CPU_EP]:
            raise self._corrupt(why) from failure
        try:
            session = self._open_session(options, [cfg.CPU_EP], [{}])
        except Exception:
            raise self._corrupt(why) from failure
        if requested == "auto":
            log.warning(
                "device auto: %s failed to start (%s); running %s on the CPU", names[0], why, self.path.name
            )
            return session
        raise DeviceError(
            f"{self.path}: ONNX Runtime's {names[0]} failed to start on this model ({why}); the model itself "
            "loads on the CPU. Check the GPU driver (nvidia-smi) and that CUDA/cuDNN/TensorRT match "
            "onnxruntime-gpu, or pass device='cpu' or 'auto'."
        ) from failure

    def _session_options(self) -> Any:
        ort = self._ort
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads
        options.enable_cpu_mem_arena = self.memory_arena
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only; provider fallback is checked, not logged
        return options

    def _open_session(self, options: Any, names: list[str], opts: list[dict[str, str]]) -> Any:
        with warnings.catch_warnings():  # "provider not available" warnings: we check get_providers()
            warnings.simplefilter("ignore", UserWarning)
            session = no_fallback_session_class(self._ort.InferenceSession)(
                str(self.path), options, providers=names, provider_options=opts, enable_fallback=0
            )
        session.disable_fallback()
        return session

    def _corrupt(self, why: str) -> ArtifactError:
        return ArtifactError(
            f"{self.path}: ONNX Runtime cannot load this model ({why}); the file may be corrupt or "
            "truncated. Re-export it with `vireid export`."
        )

    def _resolve_device(self, requested: str) -> str:
        first = self.providers[0] if self.providers else "none"
        if requested == "auto":
            device = "cuda" if first == cfg.CUDA_EP else "cpu"
            log.info("device auto: running %s on %s (%s)", self.path.name, device, ", ".join(self.providers))
            return device
        wanted = cfg.EP_OF_DEVICE[requested]
        if first != wanted:
            raise DeviceError(
                f"{self.path}: device={requested!r} requested but ONNX Runtime could not start {wanted} "
                f"(the session would run on {list(self.providers)}); vireid does not fall back silently. "
                "Check the GPU driver (nvidia-smi) and that CUDA/cuDNN"
                + (" and TensorRT" if requested == "tensorrt" else "")
                + " libraries match onnxruntime-gpu, or pass device='cpu' or 'auto'."
            )
        return requested

    # ----- running ------------------------------------------------------------------------------
    def _infer(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        image_name, modality_name = self.card.input_names
        try:
            if self._binding is None:
                feed = {image_name: images, modality_name: modality}
                return self._session.run([self.card.output_name], feed)[0]
            return self._run_bound(self._binding, images, modality)
        except Exception as exc:
            raise ArtifactError(
                f"{self.path}: ONNX Runtime failed on {self.device} for a batch of {len(images)} "
                f"({type(exc).__name__}: {str(exc).strip()[:500]})"
            ) from exc

    def _run_bound(self, binding: Any, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        """IO binding: inputs bound from host memory, output written into a preallocated host array."""
        image_name, modality_name = self.card.input_names
        out = np.empty((len(images), self.card.embedding_dim), dtype=np.float32)
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        binding.bind_cpu_input(image_name, images)
        binding.bind_cpu_input(modality_name, modality)
        binding.bind_output(self.card.output_name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        self._session.run_with_iobinding(binding)
        return out

    def _release(self) -> None:
        self._binding = None
        self._session = None


def _check_threads(threads: int | None) -> int:
    if threads is None:
        return cfg.default_threads()
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise InputSpecError(
            f"threads must be a positive integer (ONNX Runtime intra-op threads), got {threads!r}"
        )
    return threads


def _refuse_int8_for_another_runtime(card: ModelCard, path: Path) -> None:
    """TensorRT's parser takes int8 symmetric Q/DQ only: an INT8 file quantised for ONNX Runtime's CPU
    kernels would leave most of the graph to the CUDA/CPU providers without a word (the card records
    which runtime its calibration targeted; files from before that record are ONNX Runtime's)."""
    if card.precision is not Precision.INT8:
        return
    target = (card.calibration or {}).get("target", "onnxruntime")
    if target != "tensorrt":
        raise DeviceError(
            f"{path}: this INT8 model was quantised for ONNX Runtime's CPU kernels (uint8 activations), "
            "which TensorRT does not take; run it with device='cpu', or quantise for TensorRT: "
            "vireid export MODEL.onnx --to int8 --int8-target tensorrt --int8-data DIR"
        )
