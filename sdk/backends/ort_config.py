"""ONNX Runtime settings as plain data: threads, execution providers and the I/O contract check.

Nothing here imports `onnxruntime`; the functions take the module or a session as an argument so they
can be unit-tested and so the runtime loads only when a backend opens.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ..card import BatchProfile, ModelCard, Precision

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TENSORRT_EP = "TensorrtExecutionProvider"
EP_OF_DEVICE = {"cpu": CPU_EP, "cuda": CUDA_EP, "tensorrt": TENSORRT_EP}

DEFAULT_TRT_PROFILE = BatchProfile(1, 8, 32)
"""Batch profile for the TensorRT EP when the card records none."""

ORT_TYPES = {"uint8": "tensor(uint8)", "int32": "tensor(int32)", "float32": "tensor(float)"}


# ----- threads ------------------------------------------------------------------------------------
def available_cpus() -> set[int]:
    """Logical CPUs this process may run on (`sched_getaffinity`, so `taskset`/cpusets count)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: set[int], sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """Distinct physical cores among `cpus` (hyper-threads of one core count once)."""
    cores = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return len(cpus)  # no topology (non-Linux, some containers): count logical CPUs
        cores.add((package, core))
    return max(len(cores), 1)


def cgroup_cpu_limit(
    cpu_max: Path = Path("/sys/fs/cgroup/cpu.max"), v1: Path = Path("/sys/fs/cgroup/cpu")
) -> int | None:
    """CPUs granted by a cgroup quota (`docker --cpus`), rounded up; None when unlimited or unreadable.

    cgroup v2's `cpu.max` (`QUOTA PERIOD` or `max PERIOD`), else v1's `cpu.cfs_quota_us` (-1: none) and
    `cpu.cfs_period_us` (Ubuntu 20.04, JetPack 5 and other v1 hosts)."""
    for read in (lambda: cpu_max.read_text().split()[:2], lambda: _v1_quota(v1)):
        try:
            quota, period = read()
            if quota in ("max", "-1"):
                return None
            return max(1, math.ceil(int(quota) / int(period)))
        except (OSError, ValueError, ZeroDivisionError):
            continue
    return None


def _v1_quota(folder: Path) -> list[str]:
    return [(folder / name).read_text().strip() for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us")]


def default_threads() -> int:
    """Default `intra_op_num_threads`: physical cores this process may use, capped by a cgroup quota.

    Physical rather than logical cores because ONNX Runtime's compute-bound kernels gain little from
    hyper-threads while the rest of a pipeline (decoding, tracking) needs them.
    """
    cores = physical_cores(available_cpus())
    limit = cgroup_cpu_limit()
    return min(cores, limit) if limit else cores


# ----- providers ----------------------------------------------------------------------------------
def profile_shapes(card: ModelCard, batch: int) -> str:
    """`trt_profile_*_shapes` value for one batch size: `images:Bx288x144x3,modality:B`."""
    image_name, modality_name = card.input_names
    height, width = card.input_size
    return f"{image_name}:{batch}x{height}x{width}x3,{modality_name}:{batch}"


def default_cache_dir() -> Path:
    """Where the TensorRT EP keeps engines and timing caches: `$XDG_CACHE_HOME/vireid/ort-tensorrt`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vireid" / "ort-tensorrt"


def tensorrt_ep_options(
    card: ModelCard, profile: BatchProfile, device_id: int, cache_dir: Path, fp16: bool | None
) -> dict[str, str]:
    """TensorRT EP options: FP16 per card (or request), INT8 for a QDQ INT8 model, engine + timing cache,
    the batch profile.

    ONNX Runtime builds weakly typed TensorRT networks, where precision follows the builder flags and
    not the model's own types: a QDQ INT8 model needs the INT8 flag (and FP16 for its float parts, as
    TensorRT's own INT8 builds use) or TensorRT refuses or ignores its quantised layers.
    """
    int8 = card.precision is Precision.INT8
    use_fp16 = card.precision in (Precision.FP16, Precision.INT8) if fp16 is None else bool(fp16)
    return {
        "device_id": str(device_id),
        "trt_fp16_enable": str(use_fp16),
        "trt_int8_enable": str(int8),
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache_dir),
        "trt_profile_min_shapes": profile_shapes(card, profile.min),
        "trt_profile_opt_shapes": profile_shapes(card, profile.opt),
        "trt_profile_max_shapes": profile_shapes(card, profile.max),
    }


def provider_list(device: str, options: dict[str, dict[str, str]]) -> list[tuple[str, dict[str, str]]]:
    """Execution providers in priority order for a device (`auto` = CUDA if built in, then CPU).

    The requested EP comes first; CUDA stays behind TensorRT for the nodes TensorRT cannot take, and
    the CPU EP is always last (ONNX Runtime adds it anyway).
    """
    chain = {"cpu": [CPU_EP], "cuda": [CUDA_EP, CPU_EP], "tensorrt": [TENSORRT_EP, CUDA_EP, CPU_EP]}
    return [(ep, options.get(ep, {})) for ep in chain[device]]


# ----- contract -----------------------------------------------------------------------------------
def _io_problems(
    kind: str, io: dict[str, Any], expected: dict[str, tuple[str, list[int | str]]]
) -> list[str]:
    problems = []
    missing, extra = sorted(set(expected) - set(io)), sorted(set(io) - set(expected))
    if missing or extra:
        problems.append(
            f"{kind}s are {sorted(io)}, expected {sorted(expected)}"
            + (f" (missing {missing})" if missing else "")
            + (f" (unexpected {extra})" if extra else "")
        )
    for name, (dtype, dims) in expected.items():
        if name not in io:
            continue
        arg = io[name]
        if arg.type != dtype:
            problems.append(f"{kind} '{name}' is {arg.type}, expected {dtype}")
        shape = list(arg.shape)
        fixed_batch = bool(shape) and isinstance(shape[0], int)
        fits = len(shape) == len(dims) and all(
            not isinstance(got, int) or got == want for got, want in zip(shape[1:], dims[1:], strict=False)
        )
        if not fits or fixed_batch:
            problems.append(f"{kind} '{name}' has shape {shape}, expected {dims} with a dynamic batch N")
    return problems


def contract_problems(session: Any, card: ModelCard) -> list[str]:
    """How a session's inputs/outputs differ from the card's contract (empty when they match)."""
    image_name, modality_name = card.input_names
    height, width = card.input_size
    inputs: dict[str, tuple[str, list[int | str]]] = {
        image_name: (ORT_TYPES["uint8"], ["N", height, width, 3]),
        modality_name: (ORT_TYPES["int32"], ["N"]),
    }
    outputs: dict[str, tuple[str, list[int | str]]] = {
        card.output_name: (ORT_TYPES["float32"], ["N", card.embedding_dim])
    }
    got_in = {arg.name: arg for arg in session.get_inputs()}
    got_out = {arg.name: arg for arg in session.get_outputs()}
    return _io_problems("input", got_in, inputs) + _io_problems("output", got_out, outputs)
