"""Facts about the machine and the installed libraries, read without importing the heavy ones.

Used by `vireid bench` (recorded with every report) and `vireid doctor` (what this machine can run).
Versions come from package metadata, modules are looked up without being imported (not even the
packages above them), CPU features come from `/proc/cpuinfo` and the GPU from `nvidia-smi` or, where
that is missing (Jetsons, L4T containers, containers without the driver's utilities), from the files
the NVIDIA drivers create. So asking never loads torch, TensorRT or CUDA. The file probes take a root
folder, so tests can give them a fake tree.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import importlib.machinery
import importlib.metadata as md
import importlib.util
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any, TypeAlias

from .backends import ort_config

BENCH_DISTRIBUTIONS = (
    "vireid",
    "numpy",
    "opencv-python-headless",
    "onnxruntime",
    "onnxruntime-gpu",
    "torch",
    "tensorrt",
)

CPUINFO = Path("/proc/cpuinfo")

CPU_FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
}
"""x86 `/proc/cpuinfo` flags that decide how fast INT8 and bfloat16 run on the CPU, with their usual names."""

ARM_FEATURES = {
    "asimddp": "DotProd",
    "i8mm": "I8MM",
    "bf16": "BF16",
    "fphp": "FP16",
    "asimdhp": "FP16",
}
"""aarch64 `/proc/cpuinfo` features (its `Features` line) that matter for INT8 (dot product, 8-bit matrix
multiply) and FP16/bfloat16, with Arm's names."""

L4T_CUDA_MAJOR = {35: 11, 36: 12, 38: 13, 39: 13}
"""CUDA major version of each L4T release (JetPack 5, 6, 7; docs/deployment.md): a Jetson's CUDA driver
comes with L4T."""

Smi: TypeAlias = Callable[..., "tuple[int, str] | None"]
"""How `nvidia-smi` is run: `smi(*args)` -> (exit status, output) or None (not installed)."""


# ----- packages -----------------------------------------------------------------------------------
def distribution_version(name: str) -> str | None:
    """The installed version of a distribution (pip name), or None."""
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def versions(names: Iterable[str] = BENCH_DISTRIBUTIONS) -> dict[str, str | None]:
    """Installed versions of the distributions that are installed, by pip name."""
    found = {name: distribution_version(name) for name in names}
    return {name: version for name, version in found.items() if version is not None}


def importable(module: str) -> bool:
    """Whether `module` could be imported, found without importing it or any package above it.

    `importlib.util.find_spec("a.b")` imports `a` to read its `__path__`, and a package's `__init__`
    may be heavy or broken, so below the top level each name is looked for in the folders of the
    package above (unless that package is imported already).
    """
    if module in sys.modules:
        return sys.modules[module] is not None
    return _find_spec(module) is not None


def _find_spec(module: str) -> ModuleSpec | None:
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
        for part in rest:
            folders = spec.submodule_search_locations if spec is not None else None
            if spec is None or folders is None:
                return None  # not found, or a module that is not a package
            name = f"{spec.name}.{part}"
            if spec.name in sys.modules:  # imported already: its real __path__ answers, importing nothing
                spec = importlib.util.find_spec(name)
            else:
                spec = importlib.machinery.PathFinder.find_spec(name, list(folders))
    except (ImportError, ValueError, OSError):
        return None
    return spec


def shared_library(name: str) -> str | None:
    """The file name of shared library `lib<name>` as the loader would find it (`ldconfig`), or None."""
    with contextlib.suppress(Exception):
        return ctypes.util.find_library(name)
    return None


def venv_without_system_packages(prefix: Path | None = None) -> bool:
    """Whether Python runs in a virtual environment that hides the system's `dist-packages` (made
    without `--system-site-packages`), where a Jetson's TensorRT bindings live."""
    prefix = prefix or Path(sys.prefix)
    with contextlib.suppress(OSError):
        for line in (prefix / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "include-system-site-packages":
                return value.strip().lower() != "true"
    return False


# ----- CPU ----------------------------------------------------------------------------------------
def _cpuinfo(cpuinfo: Path) -> str:
    with contextlib.suppress(OSError):
        return cpuinfo.read_text(errors="replace")
    return ""


def cpu_name(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name (Linux), else what `platform` says."""
    for line in _cpuinfo(cpuinfo).splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags(cpuinfo: Path = CPUINFO) -> tuple[str, set[str]] | None:
    """`("x86", flags)` from the `flags` line or `("arm", features)` from the `Features` line (aarch64)
    of the first CPU; None where neither can be read (not Linux, or a container hiding them)."""
    for line in _cpuinfo(cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return ("x86" if key.strip() == "flags" else "arm"), set(value.split())
    return None


def cpu_features(cpuinfo: Path = CPUINFO) -> list[str] | None:
    """Which of `CPU_FEATURES` (x86) or `ARM_FEATURES` (aarch64) the CPU has, by their usual names; None
    where it cannot be read."""
    found = cpu_flags(cpuinfo)
    if found is None:
        return None
    family, flags = found
    table = CPU_FEATURES if family == "x86" else ARM_FEATURES
    return list(dict.fromkeys(label for flag, label in table.items() if flag in flags))


def usable_cores() -> int:
    """CPUs this process may run on (its affinity, as ONNX Runtime's default thread count counts them)."""
    return len(ort_config.available_cpus())


def cpu_quota() -> int | None:
    """CPUs a cgroup quota grants (`docker --cpus`), rounded up; None when there is none."""
    return ort_config.cgroup_cpu_limit()


# ----- GPU ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gpu:
    """What can be told about an NVIDIA GPU here without CUDA.

    Attributes:
        found: True when a probe saw one; False when `nvidia-smi` ran and said there is none (or no
            driver it can reach); None when nothing could tell (no `nvidia-smi` and no driver files).
        name: what the probe saw: `name, driver version` (nvidia-smi's format), or None.
        how: the probe that decided, or, when none could, what was looked at.
        jetson: whether this is an NVIDIA Jetson (L4T), told by its files.
    """

    found: bool | None
    name: str | None
    how: str
    jetson: bool = False


def nvidia_smi(*args: str) -> tuple[int, str] | None:
    """`nvidia-smi ARGS`: (exit status, its output), or None where it is not installed or hangs."""
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.returncode, (done.stdout + done.stderr).strip()


def _read(path: Path) -> str:
    """A small text file (NUL-separated device-tree strings become spaces), or "" when unreadable."""
    with contextlib.suppress(OSError):
        return path.read_bytes().decode(errors="replace").replace("\x00", " ").strip()
    return ""


def _paths(root: Path, pattern: str) -> list[Path]:
    """The paths under `root` matching `pattern`, sorted; none where they cannot be listed."""
    with contextlib.suppress(OSError):
        return sorted(root.glob(pattern))
    return []


def l4t_release(root: Path = Path("/")) -> tuple[int, str] | None:
    """A Jetson's L4T release from `/etc/nv_tegra_release` (`# R36 (release), REVISION: 4.0, ...`):
    `(36, "R36.4.0")`, or None."""
    match = re.search(r"R(\d+)\b.*?REVISION:\s*([\d.]+)", _read(root / "etc/nv_tegra_release"))
    if match is None:
        return None
    return int(match.group(1)), f"R{match.group(1)}.{match.group(2)}"


def jetson_model(root: Path = Path("/")) -> str | None:
    """What tells that this is an NVIDIA Jetson: its model (device tree) and L4T release, or the file
    that says so; None when it is not one.

    Looks at `/etc/nv_tegra_release` (L4T, also in L4T containers), `/proc/device-tree/model` and
    `compatible` (`nvidia,tegra234`) and the Tegra GPU's device `/dev/nvhost-ctrl-gpu`.
    """
    tree = root / "proc/device-tree"
    model, compatible = _read(tree / "model"), _read(tree / "compatible")
    release = l4t_release(root)
    tegra = "nvidia,tegra" in f"{model} {compatible}".lower() or "jetson" in model.lower()
    parts = [(model or "NVIDIA Tegra") if tegra else "", f"L4T {release[1]}" if release else ""]
    name = ", ".join(part for part in parts if part)
    if name:
        return name
    for marker in ("etc/nv_tegra_release", "dev/nvhost-ctrl-gpu"):
        if _paths(root, marker):
            return f"NVIDIA Jetson (/{marker})"
    return None


def _driver_gpu(root: Path) -> tuple[str, str] | None:
    """(name, probe) of a GPU the desktop driver's files show: `/proc/driver/nvidia/gpus/*/information`
    (its `Model:` line, with the driver version) or a `/dev/nvidia0` device."""
    models = []
    for info in _paths(root, "proc/driver/nvidia/gpus/*/information"):
        for line in _read(info).splitlines():
            if line.startswith("Model:"):
                models.append(line.split(":", 1)[1].strip())
    if models:
        driver = re.search(r"Kernel Module\s+(\S+)", _read(root / "proc/driver/nvidia/version"))
        name = models[0] + (f" (and {len(models) - 1} more)" if len(models) > 1 else "")
        return name + (f", {driver.group(1)}" if driver else ""), "/proc/driver/nvidia/gpus"
    devices = _paths(root, "dev/nvidia[0-9]*")
    if devices:
        return f"NVIDIA GPU ({len(devices)} device(s))", f"/dev/{devices[0].name}"
    return None


def gpu_info(root: Path = Path("/"), smi: Smi | None = None) -> Gpu:
    """The NVIDIA GPU as far as can be told without CUDA (see `Gpu`).

    `nvidia-smi` first (name and driver version); where it is missing or fails, the desktop driver's
    files, then a Jetson's. A GPU any of them shows counts; a failing `nvidia-smi` with none of the
    files is a definite no, and so is finding none of them on Linux (CUDA cannot run without the
    driver's files and device nodes); elsewhere, with no `nvidia-smi`, nothing can tell (found None).
    """
    smi = smi or nvidia_smi
    jetson = jetson_model(root)
    answer = smi("--query-gpu=name,driver_version", "--format=csv,noheader")
    if answer is not None and answer[0] == 0 and answer[1]:
        return Gpu(True, answer[1].splitlines()[0].strip(), "nvidia-smi", jetson is not None)
    driver = _driver_gpu(root)
    if driver is not None:
        return Gpu(True, driver[0], driver[1], jetson is not None)
    if jetson is not None:
        return Gpu(True, jetson, "Jetson", True)
    if answer is not None:
        said = answer[1].splitlines()[0] if answer[1] else f"exit status {answer[0]}"
        return Gpu(False, None, f"nvidia-smi: {said}")
    nothing = "no nvidia-smi, /proc/driver/nvidia/gpus, /dev/nvidia0 or Jetson files"
    if (root / "proc").is_dir():  # Linux: CUDA needs those driver files and device nodes to run at all
        return Gpu(False, None, nothing)
    return Gpu(None, None, nothing)  # elsewhere (Windows without nvidia-smi on PATH) nothing can tell


def driver_cuda(root: Path = Path("/"), smi: Smi | None = None) -> tuple[int, str] | None:
    """The newest CUDA major version the GPU's driver runs, and where that was read: the `CUDA Version:`
    in `nvidia-smi`'s header, else a Jetson's L4T release; None when neither tells."""
    answer = (smi or nvidia_smi)()
    match = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", answer[1]) if answer and answer[0] == 0 else None
    if match:
        return int(match.group(1)), f"CUDA {match.group(1)}.{match.group(2)} (nvidia-smi)"
    release = l4t_release(root)
    if release and release[0] in L4T_CUDA_MAJOR:
        major = L4T_CUDA_MAJOR[release[0]]
        return major, f"CUDA {major} (L4T {release[1]})"
    return None


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name as `gpu_info` sees it (with the driver version where known), or None."""
    return gpu_info().name


def environment() -> dict[str, Any]:
    """Machine and library versions, recorded with every benchmark report."""
    return {
        "cpu": cpu_name(),
        "cores": usable_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions(),
        "gpu": gpu_name(),
    }
