"""What this machine can run: `vireid doctor`.

One report of the things a deployment depends on and users otherwise find out one error at a time:
the CPU's INT8 and bfloat16 instructions, ONNX Runtime and its execution providers, OpenCV's video
back-ends (FFmpeg for files and RTSP, GStreamer) and windows (`--show`), TensorRT and a CUDA binding,
the GPU, and the optional extras. For each missing piece it names what it enables and the install
line. It never imports torch, TensorRT or CUDA (package metadata and module lookup only), so it runs
in a second even on a Jetson; ONNX Runtime and OpenCV are imported (the runtime needs them anyway).
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from . import system
from ._version import __version__
from .choices import Choice


class Status(Choice):
    """How a check came out."""

    OK = "ok"
    MISSING = "missing"  # optional: a feature is not available until it is installed
    WARN = "warn"  # present, but something limits it


@dataclass(frozen=True)
class Check:
    """One line of the report.

    Attributes:
        area: `cpu`, `runtime`, `video`, `gpu` or `extras`.
        name: what was checked.
        status: ok, missing or warn.
        detail: what was found (versions, providers, features).
        advice: what a missing or limited piece costs and how to get it ("" when ok).
    """

    area: str
    name: str
    status: Status
    detail: str
    advice: str = ""


@dataclass(frozen=True)
class Device:
    """Whether a kind of model can run here (`cpu`, `cuda`, `tensorrt` for .onnx files, `engine` for
    TensorRT engines), and what it needs otherwise."""

    name: str
    available: bool
    reason: str


@dataclass(frozen=True)
class SystemReport:
    """`system_report()`: the checks and the devices they allow."""

    vireid: str
    python: str
    platform: str
    checks: tuple[Check, ...]
    devices: tuple[Device, ...] = field(default=())

    def device(self, name: str) -> Device:
        """The device named `name` (cpu, cuda, tensorrt, engine)."""
        for device in self.devices:
            if device.name == name:
                return device
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EXTRAS: tuple[tuple[str, str, str], ...] = (
    ("torch", "train", "training, evaluating checkpoints and exporting them"),
    ("onnx", "export", "exporting to ONNX, FP16 and INT8"),
    ("onnxslim", "export", "simplifying exported graphs"),
    ("sqlcipher3", "crypto", "encrypted galleries (--key-file)"),
    ("faiss", "faiss", "approximate search in very large galleries"),
    ("matplotlib", "plot", "PNG charts (--plot, the demo report)"),
    ("tritonclient", "export", "checking Triton model configurations"),
)
"""(module, pip extra, what it enables) of the optional pieces."""


def system_report() -> SystemReport:
    """Check this machine (see the module doc)."""
    providers, ort_check = _onnxruntime()
    gpu = system.gpu_name()
    checks = [
        _cpu(),
        ort_check,
        *_opencv(),
        _gpu(gpu),
        *_tensorrt(),
        *(_extra(module, extra, enables) for module, extra, enables in EXTRAS),
    ]
    return SystemReport(
        vireid=__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        checks=tuple(checks),
        devices=_devices(providers, gpu),
    )


def _cpu() -> Check:
    features = system.cpu_features()
    name = f"{system.cpu_name()}, {system.usable_cores()} usable cores"
    if features is None:
        return Check("cpu", "processor", Status.OK, f"{name}; instruction sets not readable here")
    detail = f"{name}; {', '.join(features) or 'none of AVX2, AVX-512, VNNI, AMX'}"
    if not {"AVX-512 VNNI", "AVX-VNNI", "AMX-INT8"} & set(features):
        return Check(
            "cpu",
            "processor",
            Status.WARN,
            detail,
            "no VNNI or AMX: INT8 models may run little faster than FP32 on this CPU; measure both with "
            "`vireid bench MODEL --precision fp32,int8`",
        )
    return Check("cpu", "processor", Status.OK, detail)


def _onnxruntime() -> tuple[list[str], Check]:
    try:
        import onnxruntime as ort
    except ImportError:
        return [], Check(
            "runtime",
            "ONNX Runtime",
            Status.MISSING,
            "not installed",
            "needed to run .onnx models on the CPU or GPU: pip install 'vireid[onnx]' (or 'vireid[gpu]')",
        )
    providers = list(ort.get_available_providers())
    short = ", ".join(p.removesuffix("ExecutionProvider") for p in providers)
    return providers, Check("runtime", "ONNX Runtime", Status.OK, f"{ort.__version__}; providers {short}")


def _opencv() -> list[Check]:
    import cv2

    from .errors import StreamError
    from .streams.display import check_gui, gui_backend
    from .streams.sources import gstreamer_available

    checks = [Check("video", "OpenCV", Status.OK, cv2.__version__)]
    ffmpeg = _has_capture_backend(cv2, "CAP_FFMPEG")
    checks.append(
        Check("video", "FFmpeg (files, RTSP, HTTP)", Status.OK, "available")
        if ffmpeg
        else Check(
            "video",
            "FFmpeg (files, RTSP, HTTP)",
            Status.MISSING,
            "not in this OpenCV build",
            "video files and network cameras need an OpenCV built with FFmpeg (the opencv-python wheels are)",
        )
    )
    checks.append(
        Check("video", "GStreamer pipelines", Status.OK, "available")
        if gstreamer_available()
        else Check(
            "video",
            "GStreamer pipelines",
            Status.MISSING,
            "not in this OpenCV build",
            "`--source 'infrared=... ! appsink'` needs an OpenCV built with GStreamer (a Jetson's system "
            "OpenCV is; the PyPI wheels are not)",
        )
    )
    gui = gui_backend()
    try:
        check_gui()
        checks.append(Check("video", "windows (--show)", Status.OK, gui or "?"))
    except StreamError as exc:
        checks.append(
            Check("video", "windows (--show)", Status.MISSING, gui or "no GUI in this build", str(exc))
        )
    return checks


def _has_capture_backend(cv2: Any, name: str) -> bool:
    with contextlib.suppress(AttributeError, Exception):
        return bool(cv2.videoio_registry.hasBackend(getattr(cv2, name)))
    return False


def _gpu(gpu: str | None) -> Check:
    if gpu:
        return Check("gpu", "NVIDIA GPU", Status.OK, gpu)
    return Check(
        "gpu",
        "NVIDIA GPU",
        Status.MISSING,
        "none found (nvidia-smi absent or failing)",
        "device cuda and tensorrt need an NVIDIA GPU and its driver; the CPU runs everything else",
    )


def _tensorrt() -> list[Check]:
    version = system.distribution_version("tensorrt") or system.distribution_version("tensorrt-cu12")
    found = version or ("importable" if system.importable("tensorrt") else None)
    binding = [
        f"{label} {system.distribution_version(dist) or ''}".strip()
        for label, dist, module in (("cuda-python", "cuda-python", "cuda"), ("pycuda", "pycuda", "pycuda"))
        if system.importable(module)
    ]
    checks = [
        Check("gpu", "TensorRT", Status.OK, found)
        if found
        else Check(
            "gpu",
            "TensorRT",
            Status.MISSING,
            "not installed",
            "native .engine files need TensorRT: pip install 'vireid[tensorrt]', or the system's "
            "python3-libnvinfer on a Jetson (docs/deployment.md)",
        )
    ]
    checks.append(
        Check("gpu", "CUDA binding", Status.OK, ", ".join(binding))
        if binding
        else Check(
            "gpu",
            "CUDA binding",
            Status.MISSING,
            "neither cuda-python nor pycuda",
            "the TensorRT backend moves data with cuda-python (pip install 'vireid[tensorrt]') or pycuda",
        )
    )
    return checks


def _extra(module: str, extra: str, enables: str) -> Check:
    if not system.importable(module):
        return Check(
            "extras", module, Status.MISSING, "not installed", f"{enables}: pip install 'vireid[{extra}]'"
        )
    version = (
        system.distribution_version(module) or system.distribution_version(f"{module}-cpu") or "installed"
    )
    return Check("extras", module, Status.OK, version)


def _devices(providers: Sequence[str], gpu: str | None) -> tuple[Device, ...]:
    """`cpu`, `cuda` and `tensorrt` as `open_backend` takes them for an .onnx file, and `engine`: a
    TensorRT .engine file (device tensorrt, run natively)."""
    no_gpu = "" if gpu else "; no NVIDIA GPU was found"
    cpu = Device("cpu", bool(providers), ".onnx on the CPU" + ("" if providers else ": ONNX Runtime missing"))
    cuda = _provider_device("cuda", "CUDAExecutionProvider", providers, no_gpu)
    tensorrt = _provider_device("tensorrt", "TensorrtExecutionProvider", providers, no_gpu)
    engine_needs = [
        what
        for what, ok in (
            ("TensorRT", system.importable("tensorrt")),
            ("cuda-python or pycuda", system.importable("cuda") or system.importable("pycuda")),
            ("an NVIDIA GPU", bool(gpu)),
        )
        if not ok
    ]
    engine = Device(
        "engine",
        not engine_needs,
        ".engine files natively" + (f": needs {', '.join(engine_needs)}" if engine_needs else ""),
    )
    return (cpu, cuda, tensorrt, engine)


def _provider_device(name: str, provider: str, providers: Sequence[str], no_gpu: str) -> Device:
    """A device of an ONNX Runtime provider (`CUDAExecutionProvider`, `TensorrtExecutionProvider`)."""
    label = {"CUDAExecutionProvider": "CUDA", "TensorrtExecutionProvider": "TensorRT"}.get(provider, provider)
    what = f".onnx through ONNX Runtime's {label} provider"
    if provider not in providers:
        return Device(name, False, f"{what}: this ONNX Runtime has none (pip install 'vireid[gpu]')")
    if no_gpu:
        return Device(name, False, what + no_gpu)
    return Device(name, True, what + " (opening a model confirms it starts)")


def format_report(report: SystemReport) -> str:
    """The report as the terminal shows it."""
    lines = [f"vireid {report.vireid}, Python {report.python}, {report.platform}", ""]
    width = max(len(c.name) for c in report.checks)
    for check in report.checks:
        lines.append(f"{check.area:7s} {check.name:{width}s}  {check.status.value:7s} {check.detail}")
        if check.advice:
            lines.append(f"{'':7s} {'':{width}s}  {'':7s} -> {check.advice}")
    lines.append("")
    for device in report.devices:
        lines.append(f"device  {device.name:9s} {'yes' if device.available else 'no ':3s}  {device.reason}")
    return "\n".join(lines)
