"""What this machine can run: `vireid doctor`.

One report of the things a deployment depends on and users otherwise find out one error at a time:
the CPU's INT8, FP16 and bfloat16 instructions and the cores it may use, ONNX Runtime and its execution
providers, OpenCV's video back-ends (FFmpeg for files and RTSP, GStreamer) and windows (`--show`),
TensorRT and a CUDA binding, the GPU, and the optional extras. For each missing piece it names what it
enables and the install line.

It never imports torch, TensorRT or CUDA: versions come from package metadata, modules are found
without importing them (`system.importable`), the GPU from `nvidia-smi` or the NVIDIA drivers' files
(a Jetson's included), so it runs in a second even on a Jetson. ONNX Runtime and OpenCV are imported
(the runtime needs them anyway); a broken install of either becomes a warning, not a traceback.

Where nothing can tell whether there is a GPU (off Linux without `nvidia-smi`; WSL2's `/dev/dxg`
without NVIDIA's `libcuda.so`), the devices that need
one are reported as available if a GPU is present (`Device.certain` False): `--require` passes them
with a warning and fails only on a definite no.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from . import system
from ._version import __version__
from .backends import ort_config
from .choices import Choice


class Status(Choice):
    """How a check came out."""

    OK = "ok"
    MISSING = "missing"  # optional: a feature is not available until it is installed
    WARN = "warn"  # present, but something limits it, or it could not be told


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
    TensorRT engines), and what it needs otherwise.

    Attributes:
        name: the device.
        available: False only when something it needs is definitely missing.
        reason: what runs it, or what it lacks.
        certain: False when `available` rests on a GPU nothing could detect either way: it runs if
            one is present (`--require` passes it with a warning).
    """

    name: str
    available: bool
    reason: str
    certain: bool = True

    @property
    def answer(self) -> str:
        """`yes`, `no`, or `maybe` (runs if a GPU is present)."""
        if not self.available:
            return "no"
        return "yes" if self.certain else "maybe"


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

TENSORRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12")

T = TypeVar("T")


@dataclass(frozen=True)
class Lookups:
    """What the report looks up once, for its checks and its devices alike (each lookup answers None
    or nothing rather than raising, so a broken install cannot end the report in a traceback).

    Attributes:
        gpu: the GPU probe (`system.gpu_info`).
        driver: the newest CUDA major version the driver runs, and where that was read.
        tensorrt: TensorRT's Python bindings: their version, "importable", or None.
        nvinfer: libnvinfer where the dynamic loader finds it (ONNX Runtime's TensorRT provider), or None.
        nvinfer_pip: the folder of pip's `tensorrt_libs` when it holds libnvinfer (not on the loader's
            path unless `LD_LIBRARY_PATH` names it), or None.
        bindings: the CUDA bindings `backends.cuda.load_cuda` can use, as `package version (module)`.
        mismatch: why cuda-python will not run on this driver, with the pin; None when it does or
            nothing tells. `load_cuda` tries cuda-python first, so a pycuda beside it does not help.
    """

    gpu: system.Gpu
    driver: tuple[int, str] | None
    tensorrt: str | None
    nvinfer: str | None
    nvinfer_pip: Path | None
    bindings: tuple[str, ...]
    mismatch: str | None


def look_up(gpu: system.Gpu, driver: tuple[int, str] | None) -> Lookups:
    """The package and library lookups of `Lookups`, for `gpu` and `driver`."""
    return Lookups(
        gpu=gpu,
        driver=driver,
        tensorrt=_quietly(_tensorrt_found),
        nvinfer=_quietly(lambda: system.loadable_library("nvinfer")),
        nvinfer_pip=_quietly(lambda: system.package_library_folder("tensorrt_libs", "nvinfer")),
        bindings=tuple(_quietly(_cuda_bindings) or ()),
        mismatch=_quietly(lambda: _cuda_mismatch(driver)),
    )


def _probe(root: Path, smi: system.Smi) -> tuple[system.Gpu, tuple[int, str] | None]:
    """The GPU and the driver's CUDA version; a probe that raises tells nothing rather than ending the
    report."""
    try:
        gpu = system.gpu_info(root, smi)
    except Exception as exc:
        gpu = system.Gpu(None, None, f"could not be checked: {_first_line(exc)}")
    return gpu, _quietly(lambda: system.driver_cuda(root, smi))


def system_report(root: Path = Path("/")) -> SystemReport:
    """Check this machine (see the module doc). `root` is where the GPU probes look for `/proc`,
    `/dev` and `/etc` (a fake tree in tests). `nvidia-smi` runs once per question at most, and not
    again once it was missing or hung (`system.smi_once`)."""
    found = look_up(*_probe(root, system.smi_once(system.nvidia_smi)))
    providers, runtime = _onnxruntime(found.gpu.jetson)
    checks = [
        *_guarded("cpu", "processor", lambda: [_cpu()]),
        *runtime,
        *_guarded("video", "OpenCV", _opencv),
        _gpu(found.gpu),
        *_guarded("gpu", "TensorRT", lambda: [_tensorrt(found)]),
        *_guarded("gpu", "CUDA binding", lambda: [_cuda_binding(found)]),
        *(check for module, extra, enables in EXTRAS for check in _extra_guarded(module, extra, enables)),
    ]
    return SystemReport(
        vireid=__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        checks=tuple(checks),
        devices=_devices(providers, found),
    )


def _quietly(look: Callable[[], T]) -> T | None:
    """`look()`, or None when it raises: a lookup of a broken install tells nothing, and its check
    (guarded, `_guarded`) names the error."""
    try:
        return look()
    except Exception:
        return None


def _first_line(exc: BaseException) -> str:
    """`Type: first line of the message`: enough to recognise an error without its traceback."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _guarded(area: str, name: str, make: Callable[[], list[Check]]) -> list[Check]:
    """`make()`'s checks, or one warning naming the error: a broken install (a numpy ABI mismatch, a
    half-removed package) must not end the diagnosis in a traceback."""
    try:
        return make()
    except Exception as exc:
        return [
            Check(
                area,
                name,
                Status.WARN,
                f"could not be checked: {_first_line(exc)}",
                "a package it depends on is broken; reinstall the one the error names "
                "(pip install --force-reinstall PACKAGE), e.g. one built for another numpy",
            )
        ]


# ----- CPU ----------------------------------------------------------------------------------------
def _cores() -> str:
    """The CPUs this process may use (affinity), the cgroup quota where there is one, and the threads
    ONNX Runtime gets by default (`ort_config.default_threads`: physical cores, capped by the quota)."""
    quota = system.cpu_quota()
    limit = f", cgroup quota {quota} CPUs" if quota is not None else ""
    return f"{system.usable_cores()} usable CPUs{limit}, {ort_config.default_threads()} ONNX Runtime threads"


def _cpu(cpuinfo: Path = system.CPUINFO) -> Check:
    name = f"{system.cpu_name(cpuinfo)}, {_cores()}"
    flags, features = system.cpu_flags(cpuinfo), system.cpu_features(cpuinfo)
    if flags is None or features is None:
        return Check("cpu", "processor", Status.OK, f"{name}; instruction sets not readable here")
    measure = "measure both with `vireid bench MODEL --precision fp32,int8`"
    if flags[0] == "arm":
        detail = f"{name}; {', '.join(features) or 'none of DotProd, I8MM, BF16, FP16'}"
        if not {"DotProd", "I8MM"} & set(features):
            return Check(
                "cpu",
                "processor",
                Status.WARN,
                detail,
                "no dot-product (asimddp) or I8MM instructions: INT8 models may run little faster than "
                f"FP32 on this CPU; {measure}",
            )
        return Check("cpu", "processor", Status.OK, detail)
    detail = f"{name}; {', '.join(features) or 'none of AVX2, AVX-512, VNNI, AMX'}"
    if not {"AVX-512 VNNI", "AVX-VNNI", "AMX-INT8"} & set(features):
        return Check(
            "cpu",
            "processor",
            Status.WARN,
            detail,
            f"no VNNI or AMX: INT8 models may run little faster than FP32 on this CPU; {measure}",
        )
    return Check("cpu", "processor", Status.OK, detail)


# ----- ONNX Runtime -------------------------------------------------------------------------------
def _gpu_onnxruntime(jetson: bool) -> str:
    """How to get an ONNX Runtime with the CUDA and TensorRT providers. `onnxruntime` and
    `onnxruntime-gpu` install the same module, so the CPU package goes first."""
    first = "pip uninstall onnxruntime first (it clashes with onnxruntime-gpu: one module), then "
    if jetson:
        return first + (
            "install the onnxruntime-gpu wheel built for this JetPack from NVIDIA's Jetson Zoo, not PyPI's "
            "(docs/deployment.md)"
        )
    return first + "pip install 'vireid[gpu]'"


def _onnxruntime(jetson: bool) -> tuple[list[str], list[Check]]:
    """The providers ONNX Runtime offers (none when it does not import) and its checks."""
    clash = _guarded("runtime", "ONNX Runtime packages", lambda: _onnxruntime_clash(jetson))
    try:
        import onnxruntime as ort

        providers = list(ort.get_available_providers())
        version = str(ort.__version__)
    except ModuleNotFoundError as exc:
        if exc.name != "onnxruntime":
            return [], [*clash, _onnxruntime_broken(exc)]
        return [], [
            *clash,
            Check(
                "runtime",
                "ONNX Runtime",
                Status.MISSING,
                "not installed",
                "needed to run .onnx models: pip install 'vireid[onnx]' for the CPU; for the GPU "
                + _gpu_onnxruntime(jetson),
            ),
        ]
    except Exception as exc:  # installed but broken: numpy ABI (AttributeError), missing libraries ...
        return [], [*clash, _onnxruntime_broken(exc)]
    short = ", ".join(p.removesuffix("ExecutionProvider") for p in providers)
    return providers, [*clash, Check("runtime", "ONNX Runtime", Status.OK, f"{version}; providers {short}")]


def _onnxruntime_broken(exc: Exception) -> Check:
    return Check(
        "runtime",
        "ONNX Runtime",
        Status.WARN,
        f"installed but does not import: {_first_line(exc)}",
        "`python -c 'import onnxruntime'` shows the whole error; usually a build for another numpy "
        "(pip install --force-reinstall onnxruntime, or onnxruntime-gpu) or both ONNX Runtime packages "
        "installed at once",
    )


def _onnxruntime_clash(jetson: bool) -> list[Check]:
    """A warning when both `onnxruntime` and `onnxruntime-gpu` are installed (a common breakage)."""
    cpu, gpu = system.distribution_version("onnxruntime"), system.distribution_version("onnxruntime-gpu")
    if not (cpu and gpu):
        return []
    gpu_wheel = "the Jetson Zoo's onnxruntime-gpu wheel" if jetson else "'vireid[gpu]'"
    return [
        Check(
            "runtime",
            "ONNX Runtime packages",
            Status.WARN,
            f"onnxruntime {cpu} and onnxruntime-gpu {gpu} are both installed",
            "both install the module `onnxruntime`: the one installed last overwrote the other's files, and "
            "removing one breaks the other. pip uninstall -y onnxruntime onnxruntime-gpu, then install one: "
            f"'vireid[onnx]' (CPU) or {gpu_wheel} (GPU)",
        )
    ]


# ----- video --------------------------------------------------------------------------------------
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


# ----- GPU, TensorRT, CUDA ------------------------------------------------------------------------
def _gpu(gpu: system.Gpu) -> Check:
    if gpu.found:
        return Check("gpu", "NVIDIA GPU", Status.OK, f"{gpu.name} ({gpu.how})")
    if gpu.found is False:
        return Check(
            "gpu",
            "NVIDIA GPU",
            Status.MISSING,
            f"none ({gpu.how})",
            "devices cuda, tensorrt and engine need an NVIDIA GPU and its driver; the CPU runs the rest",
        )
    return Check(
        "gpu",
        "NVIDIA GPU",
        Status.WARN,
        f"not detected ({gpu.how})",
        "nothing here rules one out either, so devices cuda, tensorrt and engine count as available if a "
        "GPU is present and --require only warns; opening a model tells. A GPU needs NVIDIA's driver "
        "(in a container: --gpus all or --runtime nvidia)",
    )


def _tensorrt_found() -> str | None:
    """TensorRT's Python bindings: their version (package metadata), "importable" without metadata (a
    Jetson's system package), or None."""
    for dist in TENSORRT_DISTRIBUTIONS:
        version = system.distribution_version(dist)
        if version:
            return version
    return "importable" if system.importable("tensorrt") else None


def _tensorrt_install(jetson: bool) -> str:
    if not jetson:
        return "pip install 'vireid[tensorrt]' (on a CUDA 12 driver add 'cuda-python<13')"
    venv = (
        "this virtual environment hides them: make it with `python3 -m venv --system-site-packages`"
        if system.venv_without_system_packages()
        else "a virtual environment sees them only when made with --system-site-packages"
    )
    return f"on a Jetson they come with JetPack, not pip: sudo apt install python3-libnvinfer; {venv}"


def _tensorrt(found: Lookups) -> Check:
    if found.tensorrt:
        return Check("gpu", "TensorRT", Status.OK, found.tensorrt)
    library = found.nvinfer
    detail = f"no Python bindings ({library} found: enough for ONNX Runtime's provider)" if library else ""
    return Check(
        "gpu",
        "TensorRT",
        Status.MISSING,
        detail or "not installed",
        "native .engine files need TensorRT's Python bindings: " + _tensorrt_install(found.gpu.jetson),
    )


def _cuda_python() -> str | None:
    """The version of cuda-python's bindings (`cuda-bindings`, else the `cuda-python` package)."""
    return system.distribution_version("cuda-bindings") or system.distribution_version("cuda-python")


def _cuda_python_module() -> str | None:
    """cuda-python's runtime module as `backends.cuda.import_cudart` looks for it: `cuda.bindings`
    (cuda-python >= 12.6, 13) or the older `cuda.cudart`. Found, not imported."""
    return next((m for m in ("cuda.bindings", "cuda.cudart") if system.importable(m)), None)


def _cuda_bindings() -> list[str]:
    """The CUDA bindings `backends.cuda.load_cuda` can use, as `package version (module)`."""
    found = []
    module = _cuda_python_module()
    if module:
        found.append(_labelled("cuda-python", _cuda_python(), module))
    if system.importable("pycuda.driver"):
        found.append(_labelled("pycuda", system.distribution_version("pycuda"), "pycuda.driver"))
    return found


def _labelled(package: str, version: str | None, module: str) -> str:
    return f"{package} {version} ({module})" if version else f"{package} ({module})"


def _cuda_python_install(driver: tuple[int, str] | None) -> str:
    if driver is not None:
        return f"pip install 'cuda-python<{driver[0] + 1}', for a driver that runs {driver[1]}"
    return (
        "pip install 'cuda-python<13' on a CUDA 12 driver (JetPack 6), pip install cuda-python on a "
        "CUDA 13 one (JetPack 7); or pycuda"
    )


def _cuda_mismatch(driver: tuple[int, str] | None) -> str | None:
    """Why cuda-python's bindings will not run on this driver (a newer CUDA major version than it runs:
    cuda-python 13 on JetPack 6), with the pin; None when they run or nothing tells."""
    version = _cuda_python() if _cuda_python_module() else None
    major = int(version.split(".")[0]) if version and version.split(".")[0].isdigit() else None
    if major is None or driver is None or major <= driver[0]:
        return None
    return (
        f"cuda-python {major}.x needs a CUDA {major} driver and the driver runs {driver[1]}: "
        f"pip install 'cuda-python<{driver[0] + 1}'"
    )


def _cuda_binding(found: Lookups) -> Check:
    if not found.bindings:
        return Check(
            "gpu",
            "CUDA binding",
            Status.MISSING,
            "neither cuda-python nor pycuda",
            "the TensorRT backend moves data with cuda-python or pycuda: "
            + _cuda_python_install(found.driver),
        )
    if found.mismatch and found.driver:
        return Check(
            "gpu",
            "CUDA binding",
            Status.WARN,
            f"{', '.join(found.bindings)}; the driver runs {found.driver[1]}",
            f"engines will not open (backends.cuda.load_cuda tries cuda-python first): {found.mismatch}",
        )
    return Check("gpu", "CUDA binding", Status.OK, ", ".join(found.bindings))


# ----- extras -------------------------------------------------------------------------------------
def _extra_guarded(module: str, extra: str, enables: str) -> list[Check]:
    """`_extra`, a warning when looking it up raises (a broken install of the extra)."""
    return _guarded("extras", module, lambda: [_extra(module, extra, enables)])


def _extra(module: str, extra: str, enables: str) -> Check:
    if not system.importable(module):
        return Check(
            "extras", module, Status.MISSING, "not installed", f"{enables}: pip install 'vireid[{extra}]'"
        )
    version = (
        system.distribution_version(module) or system.distribution_version(f"{module}-cpu") or "installed"
    )
    return Check("extras", module, Status.OK, version)


# ----- devices ------------------------------------------------------------------------------------
def _gpu_device(name: str, what: str, gpu: system.Gpu, needs: Sequence[str]) -> Device:
    """A device that needs an NVIDIA GPU besides `needs` (what is missing): no when anything is
    definitely missing, available-if-a-GPU-is-present when the GPU could not be told."""
    if needs:
        return Device(name, False, f"{what}: needs {'; '.join(needs)}")
    if gpu.found is False:
        return Device(name, False, f"{what}: no NVIDIA GPU ({gpu.how})")
    if gpu.found is None:
        return Device(
            name, True, f"{what}: available if a GPU is present (none detected: {gpu.how})", certain=False
        )
    return Device(name, True, f"{what} on {gpu.name}")


def _devices(providers: Sequence[str], found: Lookups) -> tuple[Device, ...]:
    """`cpu`, `cuda` and `tensorrt` as `open_backend` takes them for an .onnx file, and `engine`: a
    TensorRT .engine file (device tensorrt, run natively)."""
    gpu = found.gpu
    cpu = Device("cpu", bool(providers), ".onnx on the CPU" + ("" if providers else ": ONNX Runtime missing"))
    cuda = _provider_device("cuda", ort_config.CUDA_EP, providers, gpu, [])
    tensorrt = _provider_device("tensorrt", ort_config.TENSORRT_EP, providers, gpu, _nvinfer_needs(found))
    engine_needs = [
        what
        for what, ok in (
            ("TensorRT's Python bindings", bool(found.tensorrt)),
            ("cuda-python or pycuda", bool(found.bindings)),
        )
        if not ok
    ]
    if engine_needs:
        engine_needs[-1] += " (the TensorRT and CUDA binding lines say how to install them)"
    if found.mismatch:
        engine_needs.append(f"a cuda-python this driver runs: {found.mismatch}")
    return (cpu, cuda, tensorrt, _gpu_device("engine", ".engine files natively", gpu, engine_needs))


def _nvinfer_needs(found: Lookups) -> list[str]:
    """What ONNX Runtime's TensorRT provider lacks of TensorRT's libraries: it `dlopen`s libnvinfer by
    name, so the loader must find it (`ldconfig` or `LD_LIBRARY_PATH`); pip's `tensorrt` puts it in
    `tensorrt_libs`, where the loader does not look."""
    if found.nvinfer:
        return []
    folder = found.nvinfer_pip
    if folder is not None:
        return [
            f"libnvinfer where the loader finds it: pip's tensorrt put it in {folder}, outside the "
            f"loader's path: export LD_LIBRARY_PATH={folder}:$LD_LIBRARY_PATH"
        ]
    return [_tensorrt_libraries(found.gpu.jetson)]


def _tensorrt_libraries(jetson: bool) -> str:
    """What the TensorRT provider lacks without TensorRT's libraries, which PyPI's onnxruntime-gpu
    does not bring although it lists the provider."""
    where = (
        "they come with JetPack (sudo apt install nvidia-jetpack)"
        if jetson
        else "pip install tensorrt, then put its tensorrt_libs folder on LD_LIBRARY_PATH (doctor names it)"
    )
    return f"TensorRT's libraries (libnvinfer; onnxruntime-gpu lists the provider without them): {where}"


def _provider_device(
    name: str, provider: str, providers: Sequence[str], gpu: system.Gpu, needs: Sequence[str]
) -> Device:
    """A device of an ONNX Runtime provider (`CUDAExecutionProvider`, `TensorrtExecutionProvider`)."""
    label = {ort_config.CUDA_EP: "CUDA", ort_config.TENSORRT_EP: "TensorRT"}.get(provider, provider)
    what = f".onnx through ONNX Runtime's {label} provider"
    if provider not in providers:
        needs = [f"ONNX Runtime's GPU build: {_gpu_onnxruntime(gpu.jetson)}", *needs]
    device = _gpu_device(name, what, gpu, needs)
    if device.available and device.certain:
        return replace(device, reason=device.reason + " (opening a model confirms it starts)")
    return device


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
        lines.append(f"device  {device.name:9s} {device.answer:5s}  {device.reason}")
    return "\n".join(lines)
