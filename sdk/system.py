"""Facts about the machine and the installed libraries, read without importing the heavy ones.

Used by `vireid bench` (recorded with every report) and `vireid doctor` (what this machine can run).
Versions come from package metadata and CPU features from `/proc/cpuinfo`, so asking never loads
torch, TensorRT or CUDA.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import importlib.util
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BENCH_DISTRIBUTIONS = (
    "vireid",
    "numpy",
    "opencv-python-headless",
    "onnxruntime",
    "onnxruntime-gpu",
    "torch",
    "tensorrt",
)

CPU_FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
}
"""`/proc/cpuinfo` flags that decide how fast INT8 and bfloat16 run on the CPU, with their usual names."""


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
    """Whether `module` could be imported (found on the path; not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _cpuinfo(cpuinfo: Path) -> str:
    with contextlib.suppress(OSError):
        return cpuinfo.read_text(errors="replace")
    return ""


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux), else what `platform` says."""
    for line in _cpuinfo(cpuinfo).splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str] | None:
    """Which of `CPU_FEATURES` the CPU has, by their usual names; None where it cannot be read (not
    Linux)."""
    for line in _cpuinfo(cpuinfo).splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return [label for flag, label in CPU_FEATURES.items() if flag in flags]
    return None


def usable_cores() -> int:
    """CPUs this process may run on (its affinity; all of them where that cannot be asked)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def gpu_name() -> str | None:
    """`name, driver version` of the first NVIDIA GPU per `nvidia-smi`, or None (no GPU or no driver)."""
    with contextlib.suppress(Exception):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return out.splitlines()[0] if out else None
    return None


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
