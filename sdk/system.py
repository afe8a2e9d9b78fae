"""Facts about the machine and the installed libraries, read without importing the heavy ones.

Used by `vireid bench` (recorded with every report) and `vireid doctor` (what this machine can run).
Versions come from package metadata, modules are looked up without being imported (not even the
packages above them), CPU features come from `/proc/cpuinfo` and the GPU from `nvidia-smi` or, where
that is missing (Jetsons, L4T containers, containers without the driver's utilities), from the files
the NVIDIA drivers create, counted only with a device node (a container sees the host's `/proc`).
So asking never loads torch, TensorRT or CUDA. The file probes take a root folder, so tests can give
them a fake tree.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import importlib.machinery
import importlib.metadata as md
import importlib.util
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    """The installed version of a distribution (pip name), or None: also when its metadata cannot be
    read (a half-written dist-info, a METADATA that is not UTF-8), so a broken install is reported, not
    a traceback."""
    try:
        return md.version(name)
    except Exception:
        return None


def versions(names: Iterable[str] = BENCH_DISTRIBUTIONS) -> dict[str, str | None]:
    """Installed versions of the distributions that are installed, by pip name."""
    found = {name: distribution_version(name) for name in names}
    return {name: version for name, version in found.items() if version is not None}


def importable(module: str) -> bool:
    """Whether `module` is found (a broken `__init__` still counts), without importing it or any package
    above it.

    `importlib.util.find_spec("a.b")` imports `a` to read its `__path__`, and a package's `__init__`
    may be heavy or broken, so below the top level each name is looked for in the folders of the
    package above (unless that package is imported already), asking the `sys.meta_path` finders in
    order as the import system does. A namespace package (any folder on `sys.path`, such as a
    `./tensorrt/` folder of engines) does not count as the module itself; it may be a package above
    it (`cuda` of `cuda.bindings`).
    """
    if module in sys.modules:
        loaded = sys.modules[module]
        return loaded is not None and not _namespace(getattr(loaded, "__spec__", None))
    spec = _find_spec(module)
    return spec is not None and not _namespace(spec)


def _namespace(spec: ModuleSpec | None) -> bool:
    """Whether `spec` is a namespace package: folders without an `__init__`, no code of its own."""
    if spec is None or spec.submodule_search_locations is None:
        return False
    loader = type(spec.loader).__name__
    return spec.origin in (None, "namespace") or loader in ("NamespaceLoader", "_NamespaceLoader")


def _find_spec(module: str) -> ModuleSpec | None:
    """The spec of `module`, found without importing the packages above it; None when not found or a
    finder fails."""
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
                spec = _meta_path_spec(name, list(folders))
    except Exception:  # a finder's own error (ImportError, ValueError, OSError, ...) means not found
        return None
    return spec


def _meta_path_spec(name: str, folders: list[str]) -> ModuleSpec | None:
    """The first spec a `sys.meta_path` finder gives for submodule `name` of a package whose `__path__`
    would be `folders`, as the import system asks them (setuptools' editable finders map subpackages
    outside their parent's folder, so the path finder alone is not enough)."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        spec = find(name, folders) if find is not None else None
        if spec is not None:
            return spec
    return None


def shared_library(name: str) -> str | None:
    """The file name of shared library `lib<name>` as the loader would find it (`ldconfig`), or None."""
    with contextlib.suppress(Exception):
        return ctypes.util.find_library(name)
    return None


def loadable_library(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """Where the dynamic loader finds shared library `lib<name>` when a program `dlopen`s it by name:
    its `ldconfig` name (`shared_library`), else the file in a folder of `LD_LIBRARY_PATH`; None."""
    found = shared_library(name)
    if found:
        return found
    for folder in (env if env is not None else os.environ).get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if folder:
            files = _paths(Path(folder), f"lib{name}.so*")
            if files:
                return str(files[0])
    return None


def package_library_folder(package: str, name: str) -> Path | None:
    """The folder of package `package` (found, not imported) when it holds `lib<name>.so*`: pip's
    `tensorrt` puts libnvinfer in `tensorrt_libs`, outside the loader's path."""
    spec = _find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        if _paths(Path(folder), f"lib{name}.so*"):
            return Path(folder)
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
            driver it can reach), when the driver's files show but no device node does (a container
            started without the GPU), or when Linux shows none of them; None when nothing could tell.
        name: what the probe saw: `name, driver version` (nvidia-smi's format), or None.
        how: the probe that decided, or, when none could, what was looked at.
        jetson: whether this is an NVIDIA Jetson (L4T), told by its files.
    """

    found: bool | None
    name: str | None
    how: str
    jetson: bool = False


WSL_LIB = Path("/usr/lib/wsl/lib")
"""Where WSL2 mounts the Windows driver's CUDA libraries and `nvidia-smi` (often not on the PATH)."""

SMI_COMMANDS = ("nvidia-smi", str(WSL_LIB / "nvidia-smi"))
"""The `nvidia-smi`s tried in order: the one on the PATH, else WSL2's."""


def nvidia_smi(*args: str, commands: Sequence[str] = SMI_COMMANDS) -> tuple[int, str] | None:
    """`nvidia-smi ARGS`: (exit status, its output), or None where it is not installed or hangs. The
    first of `commands` that exists runs; odd bytes in its output are replaced, not an error."""
    for command in commands:
        try:
            done = subprocess.run([command, *args], capture_output=True, timeout=5, check=False)
        except FileNotFoundError:
            continue
        except (OSError, subprocess.SubprocessError):
            return None
        output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        return done.returncode, output.strip()
    return None


def smi_once(smi: Smi | None = None) -> Smi:
    """`smi` (default `nvidia_smi`) run at most once per argument list, and not at all after it was
    missing or hung: one report asks it twice (GPU, CUDA version) and must not wait its timeout twice."""
    run = smi or nvidia_smi
    answers: dict[tuple[str, ...], tuple[int, str] | None] = {}

    def cached(*args: str) -> tuple[int, str] | None:
        if None in answers.values():
            return None
        if args not in answers:
            answers[args] = run(*args)
        return answers[args]

    return cached


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


NO_NODES = (
    "the driver is on the host, but this container has no NVIDIA device nodes: start it with --gpus all "
    "(or --runtime nvidia on a Jetson)"
)

DEVICE_NODES = ("dev/nvidia[0-9]*", "dev/nvidiactl", "dev/nvhost-ctrl-gpu", "dev/nvgpu")
"""The device nodes CUDA opens: the desktop driver's, then a Jetson's (nvgpu). `/proc/driver/nvidia` and
`/proc/device-tree` are the host's and show in any container, so only these tell that CUDA can reach
a GPU from here."""


def device_nodes(root: Path = Path("/")) -> list[Path]:
    """The NVIDIA device nodes under `root` (see `DEVICE_NODES`)."""
    return [path for pattern in DEVICE_NODES for path in _paths(root, pattern)]


def _driver_gpu(root: Path) -> tuple[str, str] | None:
    """(name, probe) of the GPU the desktop driver's `/proc/driver/nvidia/gpus/*/information` shows
    (its `Model:` line, with the driver version), or None."""
    models = []
    for info in _paths(root, "proc/driver/nvidia/gpus/*/information"):
        for line in _read(info).splitlines():
            if line.startswith("Model:"):
                models.append(line.split(":", 1)[1].strip())
    if not models:
        return None
    name = models[0] + (f" (and {len(models) - 1} more)" if len(models) > 1 else "")
    driver = driver_version(root)
    return name + (f", {driver}" if driver else ""), "/proc/driver/nvidia/gpus"


def driver_version(root: Path = Path("/")) -> str | None:
    """The kernel module's version from `/proc/driver/nvidia/version`, proprietary (`... x86_64 Kernel
    Module  550.54.14 ...`) or open (`... Open Kernel Module for x86_64  560.35.03 ...`)."""
    match = re.search(r"Kernel Module(?: for \S+)?\s+(\d[\d.]*)", _read(root / "proc/driver/nvidia/version"))
    return match.group(1) if match else None


def wsl_gpu(root: Path = Path("/")) -> bool | None:
    """WSL2's GPU: True with `/dev/dxg` and the Windows driver's `libcuda.so` in `/usr/lib/wsl/lib`; None
    with `/dev/dxg` alone (another vendor's GPU, or the libraries not mounted: cannot tell); False
    without `/dev/dxg` (not WSL2, or a container without the GPU)."""
    if not _paths(root, "dev/dxg"):
        return False
    return True if _paths(root, "usr/lib/wsl/lib/libcuda.so*") else None


def gpu_info(root: Path = Path("/"), smi: Smi | None = None) -> Gpu:
    """The NVIDIA GPU as far as can be told without CUDA (see `Gpu`).

    `nvidia-smi` first (name and driver version); where it is missing or fails, the files: the desktop
    driver's and a Jetson's count only with a device node (`DEVICE_NODES`; without one they are the
    host's, seen from a container started without the GPU: a definite no), and WSL2's `/dev/dxg` with
    its `libcuda.so`. A failing `nvidia-smi` with none of them is a definite no, and so is finding none
    on Linux (CUDA cannot run without the driver's files and device nodes); elsewhere (and on WSL2 with
    `/dev/dxg` but no NVIDIA libraries), with no `nvidia-smi`, nothing can tell (found None).
    """
    smi = smi or nvidia_smi
    jetson = jetson_model(root)
    answer = smi("--query-gpu=name,driver_version", "--format=csv,noheader")
    if answer is not None and answer[0] == 0 and answer[1]:
        return Gpu(True, answer[1].splitlines()[0].strip(), "nvidia-smi", jetson is not None)
    nodes, driver = device_nodes(root), _driver_gpu(root)
    if nodes:
        if driver is not None:
            return Gpu(True, driver[0], driver[1], jetson is not None)
        if jetson is not None:
            return Gpu(True, jetson, "Jetson", True)
        count = len([node for node in nodes if re.fullmatch(r"nvidia\d+", node.name)])
        return Gpu(True, f"NVIDIA GPU ({count or 1} device(s))", f"/dev/{nodes[0].name}")
    if driver is not None or jetson is not None:
        return Gpu(False, None, NO_NODES, jetson is not None)
    wsl = wsl_gpu(root)
    if wsl:
        return Gpu(True, "NVIDIA GPU (WSL2)", "/dev/dxg and /usr/lib/wsl/lib/libcuda.so")
    if answer is not None:
        said = answer[1].splitlines()[0] if answer[1] else f"exit status {answer[0]}"
        return Gpu(False, None, f"nvidia-smi: {said}")
    nothing = "no nvidia-smi, no NVIDIA device node and no driver files"
    if wsl is None:
        return Gpu(None, None, "WSL2's /dev/dxg without NVIDIA's /usr/lib/wsl/lib/libcuda.so")
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
