"""`vireid doctor`: the report on this machine (real ONNX Runtime, real OpenCV), its device logic, the
CPU and GPU probes on fake trees of real files (desktop driver, Jetson, nothing at all), and that asking
never imports torch, TensorRT or CUDA (stub packages that record their import)."""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import subprocess
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from vireid import doctor, system
from vireid.backends import ort_config
from vireid.cli import doctor as cli_doctor
from vireid.cli.main import main
from vireid.doctor import Device, Status, SystemReport, format_report, system_report

GPU_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
SMI_TABLE = (
    "+-----------------------------------------------------------------------------------------+\n"
    "| NVIDIA-SMI 550.54.14              Driver Version: 550.54.14      CUDA Version: 12.4     |\n"
    "|-----------------------------------------+------------------------+----------------------+\n"
)
JETSON_FILES: dict[str, str | bytes] = {
    "etc/nv_tegra_release": "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64\n",
    "proc/device-tree/model": b"NVIDIA Jetson Orin Nano Developer Kit\x00",
    "proc/device-tree/compatible": b"nvidia,p3768-0000+p3767-0005\x00nvidia,tegra234\x00",
    "dev/nvhost-ctrl-gpu": "",
}
ORIN_CPUINFO = (
    "processor\t: 0\nBogoMIPS\t: 62.50\n"
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
    "dcpop asimddp uscat ilrcpc flagm paca pacg\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n"
)


def _tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Real files under `root` (a fake `/`)."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def _no_smi(*args: str) -> None:
    return None


def _gpu(found: bool | None, jetson: bool = False) -> system.Gpu:
    return system.Gpu(found, "NVIDIA H100, 550.54" if found else None, "test", jetson)


def _devices(
    providers: list[str], gpu: system.Gpu, driver: tuple[int, str] | None = None
) -> tuple[Device, ...]:
    """The devices for `providers` and `gpu`, the packages looked up for real (or through test fakes)."""
    return doctor._devices(providers, doctor.look_up(gpu, driver))


def _binding(root: Path) -> doctor.Check:
    """The CUDA binding check with the driver's CUDA version read from `root` (and `system.nvidia_smi`)."""
    return doctor._cuda_binding(doctor.look_up(_gpu(True), system.driver_cuda(root)))


@pytest.fixture
def no_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probes see only the fake tree, whatever this machine has."""
    monkeypatch.setattr(system, "nvidia_smi", _no_smi)


# ----- this machine -------------------------------------------------------------------------------
def test_the_report_on_this_machine_names_every_piece_and_lets_the_cpu_run_onnx() -> None:
    import cv2
    import onnxruntime as ort

    report = system_report()
    by_name = {check.name: check for check in report.checks}
    assert by_name["ONNX Runtime"].status is Status.OK and ort.__version__ in by_name["ONNX Runtime"].detail
    assert "CPU" in by_name["ONNX Runtime"].detail
    assert by_name["OpenCV"].detail == cv2.__version__
    video = {"FFmpeg (files, RTSP, HTTP)", "GStreamer pipelines", "windows (--show)"}
    assert video | {"TensorRT", "CUDA binding", "NVIDIA GPU"} <= set(by_name)
    assert {name for name, _, _ in doctor.EXTRAS} <= set(by_name)
    assert report.device("cpu").available
    assert [d.name for d in report.devices] == ["cpu", "cuda", "tensorrt", "engine"]
    # every piece that is not there says what it costs and how to get it
    assert all(c.advice for c in report.checks if c.status is not Status.OK)
    text = format_report(report)
    assert all(check.name in text for check in report.checks) and "device  cpu       yes" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["devices"][0]["name"] == "cpu" and data["devices"][0]["certain"] is True


STUB = (
    "import os\n"
    "with open(os.environ['VIREID_STUB_LOG'], 'a') as log:\n"
    "    log.write(__name__ + '\\n')\n"
    "raise RuntimeError(f'stub {__name__} was imported')\n"
)
STUB_CHILD = """
import importlib.util, json, sys
from vireid.doctor import system_report
report = system_report().to_dict()
stubs = ('torch', 'tensorrt', 'pycuda', 'pycuda.driver', 'cuda', 'cuda.bindings')
loaded = [m for m in stubs if m in sys.modules]
try:  # the control: the usual lookup of a submodule imports its package, which the stub records
    importlib.util.find_spec('cuda.bindings')
except RuntimeError:
    pass
print(json.dumps({'report': report, 'loaded': loaded}))
"""


def test_stub_tensorrt_cuda_pycuda_and_torch_are_found_by_the_report_but_never_imported(
    tmp_path: Path,
) -> None:
    stubs = tmp_path / "stubs"
    for package in ("tensorrt", "pycuda", "cuda", "cuda/bindings", "torch"):
        _tree(stubs, {f"{package}/__init__.py": STUB})
    _tree(stubs, {"pycuda/driver.py": STUB, "cuda/bindings/runtime.py": STUB})
    log = tmp_path / "imported.txt"
    path = os.pathsep.join(p for p in (str(stubs), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "VIREID_STUB_LOG": str(log)}
    done = subprocess.run(
        [sys.executable, "-c", STUB_CHILD], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    # only the control imported a stub: the report imported none, and the stubs do record imports
    assert log.read_text().split() == ["cuda"]
    checks = {check["name"]: check for check in out["report"]["checks"]}
    assert checks["TensorRT"]["status"] == "ok"
    binding = checks["CUDA binding"]
    assert binding["status"] == "ok" and "(cuda.bindings)" in binding["detail"]
    assert "pycuda (pycuda.driver)" in binding["detail"]
    assert checks["torch"]["status"] == "ok"
    engine = next(d for d in out["report"]["devices"] if d["name"] == "engine")
    assert "needs" not in engine["reason"]  # TensorRT and a binding found; only the GPU decides


BROKEN_CHILD = """
import sys
from vireid.cli.main import main
sys.exit(main(["doctor"]))
"""


def test_distributions_with_unreadable_metadata_do_not_end_the_report_in_a_traceback(tmp_path: Path) -> None:
    site = tmp_path / "site"
    metadata = b"Metadata-Version: 2.1\nName: broken\nVersion: 1.0\nSummary: \xff\xfe not UTF-8\n"
    for dist in ("onnxruntime_gpu", "onnxruntime", "tensorrt", "cuda_python", "pycuda", "torch", "faiss_cpu"):
        _tree(site, {f"{dist}-1.0.dist-info/METADATA": metadata})
    _tree(site, {"faiss/__init__.py": "", "pycuda/__init__.py": "", "pycuda/driver.py": ""})
    assert system.distribution_version("pip") is not None  # the real lookup works here
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, "-c", BROKEN_CHILD],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "device  cpu" in done.stdout
    assert "pycuda (pycuda.driver)" in done.stdout  # found, its version unreadable


# ----- CPU ----------------------------------------------------------------------------------------
def test_cpu_features_are_read_from_the_flags_line(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
    )
    assert system.cpu_name(cpuinfo) == "Example CPU @ 2.0GHz"
    assert system.cpu_features(cpuinfo) == ["AVX2", "AVX-512", "AVX-512 VNNI"]
    cpuinfo.write_text("processor\t: 0\n")  # no flags line (a container hiding it)
    assert system.cpu_features(cpuinfo) is None
    assert system.cpu_features(tmp_path / "missing") is None


def test_an_x86_cpu_without_vnni_or_amx_is_warned_about_int8(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Old CPU\nflags\t\t: fpu sse2 avx2\n")
    check = doctor._cpu(cpuinfo)
    assert check.status is Status.WARN and "VNNI" in check.advice and "--precision fp32,int8" in check.advice
    cpuinfo.write_text("model name\t: New CPU\nflags\t\t: avx2 avx512f amx_int8\n")
    assert doctor._cpu(cpuinfo).status is Status.OK


def test_arm_features_line_gives_dot_product_i8mm_bf16_fp16_and_no_vnni_warning(tmp_path: Path) -> None:
    orin = tmp_path / "orin"
    orin.write_text(ORIN_CPUINFO)  # Cortex-A78AE: dot product and FP16, no I8MM or BF16
    flags = system.cpu_flags(orin)
    assert flags is not None and flags[0] == "arm" and "asimddp" in flags[1]
    assert system.cpu_features(orin) == ["DotProd", "FP16"]
    check = doctor._cpu(orin)
    assert check.status is Status.OK and "DotProd, FP16" in check.detail and "VNNI" not in check.detail
    graviton = tmp_path / "graviton"
    graviton.write_text("processor\t: 0\nFeatures\t: fp asimd asimdhp asimddp i8mm bf16 sve\n")
    assert system.cpu_features(graviton) == ["DotProd", "I8MM", "BF16", "FP16"]
    nano = tmp_path / "nano"  # Cortex-A57 (Jetson Nano): neither dot product nor I8MM
    nano.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n")
    assert system.cpu_features(nano) == []
    warned = doctor._cpu(nano)
    assert warned.status is Status.WARN and "asimddp" in warned.advice and "VNNI" not in warned.advice
    assert "none of DotProd, I8MM, BF16, FP16" in warned.detail


def test_cores_report_the_affinity_and_the_cgroup_quota_through_ort_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")  # docker --cpus 1.5
    real = ort_config.cgroup_cpu_limit
    monkeypatch.setattr(ort_config, "cgroup_cpu_limit", lambda cpu_max=cpu_max: real(cpu_max))
    affinity = len(ort_config.available_cpus())
    assert system.usable_cores() == affinity and system.cpu_quota() == 2
    text = doctor._cores()
    assert f"{affinity} usable CPUs, cgroup quota 2 CPUs" in text
    assert (
        f"{ort_config.default_threads()} ONNX Runtime threads" in text and ort_config.default_threads() <= 2
    )
    cpu_max.write_text("max 100000\n")
    assert "cgroup" not in doctor._cores()


# ----- GPU probes ---------------------------------------------------------------------------------
DESKTOP_DRIVER = {
    "proc/driver/nvidia/gpus/0000:01:00.0/information": (
        "Model: \t\t NVIDIA GeForce RTX 3090\nIRQ:   \t\t 130\nBus Type: \t PCIe\n"
    ),
    "proc/driver/nvidia/version": (
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n"
    ),
}


def test_a_desktop_gpu_is_found_from_the_driver_files_and_device_nodes_without_nvidia_smi(
    tmp_path: Path,
) -> None:
    root = _tree(tmp_path, {**DESKTOP_DRIVER, "dev/nvidia0": "", "dev/nvidiactl": ""})
    gpu = system.gpu_info(root, smi=_no_smi)
    assert gpu == system.Gpu(True, "NVIDIA GeForce RTX 3090, 550.54.14", "/proc/driver/nvidia/gpus", False)
    only_device = _tree(tmp_path / "container", {"dev/nvidia0": "", "dev/nvidiactl": ""})
    assert system.gpu_info(only_device, smi=_no_smi).found is True
    assert system.gpu_info(only_device, smi=_no_smi).how == "/dev/nvidia0"


def test_the_driver_version_is_read_from_the_proprietary_and_the_open_kernel_module(tmp_path: Path) -> None:
    version = tmp_path / "proc/driver/nvidia/version"
    _tree(tmp_path, DESKTOP_DRIVER)
    assert system.driver_version(tmp_path) == "550.54.14"
    version.write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  560.35.03  Release Build  "
        "(dvs-builder@U16-I3-B03-4-3)  Fri Aug 16 21:39:15 UTC 2024\n"
    )
    assert system.driver_version(tmp_path) == "560.35.03"
    version.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  540.4.0  Release Build\n")
    assert system.driver_version(tmp_path) == "540.4.0"


def test_driver_files_without_device_nodes_are_a_container_without_the_gpu(tmp_path: Path) -> None:
    desktop = _tree(tmp_path / "desktop", DESKTOP_DRIVER)  # /proc is the host's, /dev the container's
    gpu = system.gpu_info(desktop, smi=_no_smi)
    assert gpu == system.Gpu(False, None, system.NO_NODES, False)
    assert "--gpus all" in gpu.how and "--runtime nvidia" in gpu.how
    jetson = _tree(tmp_path / "jetson", {k: v for k, v in JETSON_FILES.items() if not k.startswith("dev/")})
    assert system.gpu_info(jetson, smi=_no_smi) == system.Gpu(False, None, system.NO_NODES, True)
    failing = (9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
    assert system.gpu_info(desktop, smi=lambda *args: failing).how == system.NO_NODES
    check = doctor._gpu(gpu)
    assert check.status is Status.MISSING and "--gpus all" in check.detail
    _tree(jetson, {"dev/nvgpu/igpu0/ctrl": ""})  # JetPack 6's nvgpu node
    assert system.gpu_info(jetson, smi=_no_smi).found is True


@pytest.mark.parametrize("marker", sorted(m for m in JETSON_FILES if not m.startswith("dev/")))
def test_a_jetson_is_recognised_by_any_of_its_files_with_its_device_node(tmp_path: Path, marker: str) -> None:
    root = _tree(tmp_path, {marker: JETSON_FILES[marker], "dev/nvhost-ctrl-gpu": ""})
    gpu = system.gpu_info(root, smi=_no_smi)
    assert gpu.found is True and gpu.jetson and gpu.how == "Jetson"
    assert system.jetson_model(root) is not None
    node_only = _tree(tmp_path / "node", {"dev/nvhost-ctrl-gpu": ""})
    assert system.gpu_info(node_only, smi=_no_smi) == system.Gpu(
        True, "NVIDIA Jetson (/dev/nvhost-ctrl-gpu)", "Jetson", True
    )


def test_a_jetson_is_named_by_its_model_and_l4t_release(tmp_path: Path) -> None:
    root = _tree(tmp_path, JETSON_FILES)
    assert system.l4t_release(root) == (36, "R36.4.0")
    assert system.jetson_model(root) == "NVIDIA Jetson Orin Nano Developer Kit, L4T R36.4.0"
    not_tegra = _tree(tmp_path / "pi", {"proc/device-tree/model": b"Raspberry Pi 5 Model B\x00"})
    assert system.jetson_model(not_tegra) is None


def test_the_gpu_is_unknown_off_linux_without_probes_and_absent_on_linux_or_when_nvidia_smi_fails(
    tmp_path: Path,
) -> None:
    unknown = system.gpu_info(tmp_path, smi=_no_smi)  # no proc/: not Linux, nothing tells
    assert unknown.found is None and "nvidia-smi" in unknown.how and not unknown.jetson
    failing = (9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\nMore")
    absent = system.gpu_info(tmp_path, smi=lambda *args: failing)
    assert absent.found is False and absent.how == f"nvidia-smi: {failing[1].splitlines()[0]}"
    linux = _tree(tmp_path / "linux", {"proc/cpuinfo": "processor\t: 0\n"})
    bare = system.gpu_info(linux, smi=_no_smi)  # Linux without any driver file or device node: a no
    assert bare.found is False and bare.how == "no nvidia-smi, no NVIDIA device node and no driver files"
    _tree(tmp_path, {"dev/nvidia0": ""})  # a device node wins over a failing nvidia-smi
    assert system.gpu_info(tmp_path, smi=lambda *args: failing).found is True
    listed = system.gpu_info(tmp_path, smi=lambda *args: (0, "NVIDIA H100 80GB HBM3, 550.54.14\n"))
    assert listed == system.Gpu(True, "NVIDIA H100 80GB HBM3, 550.54.14", "nvidia-smi", False)


def test_a_wsl2_gpu_is_dev_dxg_with_the_windows_drivers_libcuda(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"proc/cpuinfo": "processor\t: 0\n", "dev/dxg": ""})
    unknown = system.gpu_info(root, smi=_no_smi)  # /dev/dxg alone: another vendor, or libraries not mounted
    assert unknown.found is None and "/dev/dxg" in unknown.how
    _tree(root, {"usr/lib/wsl/lib/libcuda.so.1.1": ""})
    assert system.gpu_info(root, smi=_no_smi) == system.Gpu(
        True, "NVIDIA GPU (WSL2)", "/dev/dxg and /usr/lib/wsl/lib/libcuda.so"
    )
    no_dxg = _tree(tmp_path / "no-dxg", {"proc/cpuinfo": "", "usr/lib/wsl/lib/libcuda.so.1": ""})
    assert system.gpu_info(no_dxg, smi=_no_smi).found is False


def test_nvidia_smi_falls_back_to_wsl2s_and_replaces_odd_bytes(tmp_path: Path) -> None:
    smi = tmp_path / "usr/lib/wsl/lib/nvidia-smi"
    _tree(tmp_path, {"usr/lib/wsl/lib/nvidia-smi": "#!/bin/sh\nprintf 'NVIDIA RTX \\377 4090, 560.94\\n'\n"})
    smi.chmod(0o755)
    assert system.SMI_COMMANDS[1] == "/usr/lib/wsl/lib/nvidia-smi"
    missing = str(tmp_path / "no-such-nvidia-smi")
    assert system.nvidia_smi("-L", commands=(missing, str(smi))) == (0, "NVIDIA RTX \ufffd 4090, 560.94")
    assert system.nvidia_smi(commands=(missing,)) is None


def test_one_report_runs_nvidia_smi_once_per_question_and_never_again_after_a_hang(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, ...]] = []

    def fake_nvidia_smi_that_hangs(*args: str) -> None:  # stands in for system.nvidia_smi timing out
        calls.append(args)

    monkeypatch.setattr(system, "nvidia_smi", fake_nvidia_smi_that_hangs)
    system_report()
    assert len(calls) == 1
    calls.clear()

    def fake_nvidia_smi(*args: str) -> tuple[int, str]:
        calls.append(args)
        return (0, SMI_TABLE) if not args else (0, "NVIDIA H100, 550.54.14")

    once = system.smi_once(fake_nvidia_smi)
    assert once() == once() == (0, SMI_TABLE) and once("-L") == (0, "NVIDIA H100, 550.54.14")
    assert calls == [(), ("-L",)]


def test_the_driver_cuda_version_comes_from_nvidia_smi_or_the_l4t_release(tmp_path: Path) -> None:
    assert system.driver_cuda(tmp_path, smi=lambda *args: (0, SMI_TABLE)) == (12, "CUDA 12.4 (nvidia-smi)")
    assert system.driver_cuda(tmp_path, smi=_no_smi) is None
    jetson = _tree(tmp_path / "jetson", JETSON_FILES)
    assert system.driver_cuda(jetson, smi=_no_smi) == (12, "CUDA 12 (L4T R36.4.0)")


def test_a_virtual_environment_without_system_site_packages_is_told(tmp_path: Path) -> None:
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    assert system.venv_without_system_packages(tmp_path)
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = true\n")
    assert not system.venv_without_system_packages(tmp_path)
    assert not system.venv_without_system_packages(tmp_path / "not-a-venv")


# ----- modules ------------------------------------------------------------------------------------
def test_the_cuda_binding_is_cuda_bindings_or_cudart_not_any_cuda_package_and_nothing_is_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raising = "raise RuntimeError('must not be imported')\n"
    _tree(tmp_path, {"cuda/pathfinder/__init__.py": raising})  # cuda-pathfinder: a namespace package
    monkeypatch.syspath_prepend(str(tmp_path))
    assert system.importable("cuda.pathfinder")
    assert not system.importable("cuda")  # a namespace package is no module of its own, only a parent
    assert not system.importable("cuda.bindings") and doctor._cuda_bindings() == []
    _tree(tmp_path, {"cuda/bindings/__init__.py": raising, "cuda/bindings/runtime.py": raising})
    assert system.importable("cuda.bindings") and system.importable("cuda.bindings.runtime")
    assert doctor._cuda_bindings() == ["cuda-python (cuda.bindings)"]
    assert not {"cuda", "cuda.bindings", "cuda.pathfinder"} & set(sys.modules)


def test_a_stray_folder_is_not_a_module_but_a_namespace_parent_still_leads_to_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path, {"vireid_stray_engines/model.engine": b"\x00", "vireid_ns/real/__init__.py": ""})
    monkeypatch.syspath_prepend(str(tmp_path))  # as ./tensorrt/ (a folder of engines) on sys.path would
    assert not system.importable("vireid_stray_engines") and not system.importable("vireid_ns")
    assert system.importable("vireid_ns.real")
    assert not system.importable("vireid_stray_engines.model")


class EditableFinder(importlib.abc.MetaPathFinder):
    """A meta-path finder like setuptools' editable installs make: it maps a package and its subpackages
    to folders of their own, outside the parent's."""

    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = folders

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name not in self.folders:
            return None
        init = self.folders[name] / "__init__.py"
        return importlib.util.spec_from_file_location(name, init, submodule_search_locations=[])


def test_submodules_are_asked_of_the_meta_path_finders_without_importing_the_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raising = "raise RuntimeError('must not be imported')\n"
    _tree(tmp_path, {"src/vireid_editable/__init__.py": raising, "elsewhere/sub/__init__.py": raising})
    folders = {
        "vireid_editable": tmp_path / "src/vireid_editable",
        "vireid_editable.sub": tmp_path / "elsewhere/sub",
    }
    monkeypatch.setattr(sys, "meta_path", [EditableFinder(folders), *sys.meta_path])
    assert system.importable("vireid_editable") and system.importable("vireid_editable.sub")
    assert not system.importable("vireid_editable.other")
    assert not {"vireid_editable", "vireid_editable.sub"} & set(sys.modules)


def test_a_cuda_python_newer_than_the_driver_is_warned_with_the_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(system, "importable", lambda module: module == "cuda.bindings")
    monkeypatch.setattr(
        system, "distribution_version", lambda dist: "13.0.1" if dist == "cuda-python" else None
    )
    monkeypatch.setattr(system, "nvidia_smi", lambda *args: (0, SMI_TABLE))
    check = _binding(tmp_path)
    assert check.status is Status.WARN and "CUDA 12.4" in check.detail
    assert "pip install 'cuda-python<13'" in check.advice
    monkeypatch.setattr(system, "nvidia_smi", _no_smi)  # a JetPack 6 without nvidia-smi: L4T tells
    assert _binding(_tree(tmp_path / "jetson", JETSON_FILES)).status is Status.WARN
    assert _binding(tmp_path).status is Status.OK  # nothing tells the driver: no warning
    monkeypatch.setattr(system, "importable", lambda module: False)
    missing = _binding(tmp_path)
    assert (
        missing.status is Status.MISSING
        and "pip install 'cuda-python<13' on a CUDA 12 driver" in missing.advice
    )


def test_require_engine_fails_when_cuda_python_is_newer_than_the_driver_even_with_pycuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fake_nvidia_smi(*args: str) -> tuple[int, str]:  # a CUDA 12.4 driver
        return (0, "NVIDIA H100, 550.54.14") if args else (0, SMI_TABLE)

    modules = ("tensorrt", "cuda.bindings", "pycuda.driver")
    monkeypatch.setattr(system, "importable", lambda module: module in modules)
    monkeypatch.setattr(system, "distribution_version", {"cuda-python": "13.0.1", "tensorrt": "10.3"}.get)
    monkeypatch.setattr(system, "shared_library", lambda name: "libnvinfer.so.10")
    monkeypatch.setattr(system, "nvidia_smi", fake_nvidia_smi)
    report = system_report(tmp_path)
    engine = report.device("engine")
    assert not engine.available and engine.certain
    assert (
        "cuda-python 13.x needs a CUDA 13 driver and the driver runs CUDA 12.4 (nvidia-smi)" in engine.reason
    )
    assert "pip install 'cuda-python<13'" in engine.reason
    binding = {check.name: check for check in report.checks}["CUDA binding"]
    assert binding.status is Status.WARN and "pycuda (pycuda.driver)" in binding.detail
    monkeypatch.setattr(cli_doctor, "system_report", lambda: system_report(tmp_path))
    assert main(["doctor", "--require", "engine"]) == 1
    assert "engine is required but cannot run" in capsys.readouterr().err
    monkeypatch.setattr(system, "distribution_version", {"cuda-python": "12.6.2", "tensorrt": "10.3"}.get)
    assert system_report(tmp_path).device("engine").available  # a cuda-python the driver runs


# ----- ONNX Runtime -------------------------------------------------------------------------------
def test_both_onnxruntime_packages_installed_is_a_warning_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    versions = {"onnxruntime": "1.20.1", "onnxruntime-gpu": "1.20.1"}
    monkeypatch.setattr(system, "distribution_version", versions.get)
    (check,) = doctor._onnxruntime_clash(jetson=False)
    assert check.status is Status.WARN and "both installed" in check.detail
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in check.advice and "'vireid[gpu]'" in check.advice
    assert "Jetson Zoo" in doctor._onnxruntime_clash(jetson=True)[0].advice
    monkeypatch.setattr(system, "distribution_version", {"onnxruntime": "1.20.1"}.get)
    assert doctor._onnxruntime_clash(jetson=False) == []


@pytest.mark.parametrize(
    "error",
    [
        "AttributeError('_ARRAY_API not found')",
        "RuntimeError('module compiled against ABI version 0x1000009')",
        "ImportError('libcudnn.so.9: cannot open shared object file')",
    ],
)
def test_an_onnxruntime_that_fails_to_import_is_a_warning_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    _tree(tmp_path, {"onnxruntime/__init__.py": f"raise {error[:-1]} + '\\nsecond line')\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.split(".")[0] == "onnxruntime"]:
        monkeypatch.delitem(sys.modules, name)
    providers, (check,) = doctor._onnxruntime(jetson=False)
    assert providers == [] and check.status is Status.WARN
    assert check.detail.startswith("installed but does not import: " + error.split("(")[0] + ": ")
    assert "second line" not in check.detail and check.advice
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed at all
    _, (missing,) = doctor._onnxruntime(jetson=True)
    assert missing.status is Status.MISSING and "Jetson Zoo" in missing.advice


def test_a_check_that_raises_becomes_a_warning(monkeypatch: pytest.MonkeyPatch, no_nvidia_smi: None) -> None:
    def broken() -> list[doctor.Check]:
        raise AttributeError("_ARRAY_API not found\ntraceback lines")

    monkeypatch.setattr(doctor, "_opencv", broken)
    by_name = {check.name: check for check in system_report().checks}
    assert by_name["OpenCV"].status is Status.WARN
    assert by_name["OpenCV"].detail == "could not be checked: AttributeError: _ARRAY_API not found"


# ----- devices ------------------------------------------------------------------------------------
def test_devices_follow_the_providers_the_gpu_and_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "shared_library", lambda name: "libnvinfer.so.10")
    cpu_only = {d.name: d for d in _devices(["CPUExecutionProvider"], _gpu(True))}
    assert cpu_only["cpu"].available and not cpu_only["cuda"].available
    assert "pip uninstall onnxruntime first" in cpu_only["cuda"].reason
    assert "pip install 'vireid[gpu]'" in cpu_only["cuda"].reason
    no_gpu = {d.name: d for d in _devices(GPU_PROVIDERS, _gpu(False))}
    assert not no_gpu["cuda"].available and "no NVIDIA GPU" in no_gpu["cuda"].reason
    monkeypatch.setattr(system, "importable", lambda module: module in ("tensorrt", "cuda.bindings"))
    with_gpu = {d.name: d for d in _devices(GPU_PROVIDERS, _gpu(True))}
    assert all(d.available and d.certain for d in with_gpu.values())
    monkeypatch.setattr(system, "importable", lambda module: module == "tensorrt")
    engine = _devices(GPU_PROVIDERS, _gpu(True))[3]
    assert not engine.available and "cuda-python or pycuda" in engine.reason
    monkeypatch.setattr(system, "importable", lambda module: module == "cuda")  # the namespace is not enough
    assert "cuda-python or pycuda" in _devices(GPU_PROVIDERS, _gpu(True))[3].reason
    assert _devices([], _gpu(True))[0].available is False  # no ONNX Runtime at all


def test_an_undetected_gpu_leaves_gpu_devices_available_but_uncertain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(system, "importable", lambda module: module in ("tensorrt", "pycuda.driver"))
    monkeypatch.setattr(system, "shared_library", lambda name: "libnvinfer.so.10")
    devices = {d.name: d for d in _devices(GPU_PROVIDERS, _gpu(None))}
    for name in ("cuda", "tensorrt", "engine"):
        assert devices[name].available and not devices[name].certain and devices[name].answer == "maybe"
        assert "available if a GPU is present (none detected: test)" in devices[name].reason
    assert devices["cpu"].answer == "yes"
    monkeypatch.setattr(system, "importable", lambda module: False)  # a definite no stays a no
    engine = _devices(GPU_PROVIDERS, _gpu(None))[3]
    assert engine.answer == "no" and "TensorRT's Python bindings" in engine.reason


def test_the_tensorrt_provider_needs_libnvinfer_where_the_loader_finds_it_not_just_bindings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(system, "importable", lambda module: False)
    monkeypatch.setattr(system, "distribution_version", lambda dist: None)
    monkeypatch.setattr(system, "shared_library", lambda name: None)
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    tensorrt = _devices(GPU_PROVIDERS, _gpu(True))[2]
    assert not tensorrt.available and "TensorRT's libraries (libnvinfer" in tensorrt.reason
    assert "nvidia-jetpack" in _devices(GPU_PROVIDERS, _gpu(True, jetson=True))[2].reason
    monkeypatch.setattr(
        system, "shared_library", lambda name: "libnvinfer.so.10" if name == "nvinfer" else None
    )
    assert _devices(GPU_PROVIDERS, _gpu(True))[2].available
    found = doctor.look_up(_gpu(True), None)
    assert "libnvinfer.so.10 found" in doctor._tensorrt(found).detail  # libraries, no bindings
    monkeypatch.setattr(system, "shared_library", lambda name: None)
    monkeypatch.setattr(system, "importable", lambda module: module == "tensorrt")
    assert not _devices(GPU_PROVIDERS, _gpu(True))[2].available  # bindings do not put libnvinfer in reach


def test_pip_tensorrt_libs_outside_the_loader_path_gets_the_ld_library_path_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(system, "shared_library", lambda name: None)
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    site = _tree(tmp_path / "site", {"tensorrt_libs/__init__.py": "", "tensorrt_libs/libnvinfer.so.10": ""})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "tensorrt_libs", raising=False)
    folder = site / "tensorrt_libs"
    assert system.package_library_folder("tensorrt_libs", "nvinfer") == folder
    assert system.loadable_library("nvinfer") is None
    tensorrt = _devices(GPU_PROVIDERS, _gpu(True))[2]
    assert not tensorrt.available and f"pip's tensorrt put it in {folder}" in tensorrt.reason
    assert f"export LD_LIBRARY_PATH={folder}:$LD_LIBRARY_PATH" in tensorrt.reason
    monkeypatch.setenv("LD_LIBRARY_PATH", f"{tmp_path / 'missing'}{os.pathsep}{folder}")
    assert system.loadable_library("nvinfer") == str(folder / "libnvinfer.so.10")
    assert _devices(GPU_PROVIDERS, _gpu(True))[2].available


def test_on_a_jetson_the_advice_points_to_jetpack_and_the_jetson_zoo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_nvidia_smi: None
) -> None:
    import onnxruntime as ort

    root = _tree(tmp_path, JETSON_FILES)
    report = system_report(root)
    gpu = {c.name: c for c in report.checks}["NVIDIA GPU"]
    assert gpu.status is Status.OK and "Jetson Orin Nano" in gpu.detail
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "Jetson Zoo" in report.device("cuda").reason
    monkeypatch.setattr(system, "importable", lambda module: False)
    monkeypatch.setattr(system, "distribution_version", lambda dist: None)
    monkeypatch.setattr(system, "venv_without_system_packages", lambda: True)
    trt = doctor._tensorrt(doctor.look_up(_gpu(True, jetson=True), None))
    assert "python3-libnvinfer" in trt.advice and "--system-site-packages" in trt.advice
    assert "pip install" not in trt.advice
    cuda = _devices(["CPUExecutionProvider"], _gpu(True, jetson=True))[1]
    assert "pip uninstall onnxruntime first" in cuda.reason and "Jetson Zoo" in cuda.reason
    assert "'vireid[gpu]'" not in cuda.reason


# ----- CLI ----------------------------------------------------------------------------------------
def _report(*devices: Device) -> SystemReport:
    return SystemReport("0", "3", "test", (doctor.Check("cpu", "processor", Status.OK, "x"),), devices)


def test_cli_prints_json_and_fails_only_for_a_required_device_that_cannot_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["doctor", "--json"]) == 0
    devices = {d["name"]: d for d in json.loads(capsys.readouterr().out)["devices"]}
    assert main(["doctor", "--require", "cpu"]) == 0
    capsys.readouterr()
    expected = 0 if devices["engine"]["available"] else 1
    assert main(["doctor", "--require", "cpu", "--require", "engine"]) == expected
    if expected:
        assert "engine is required but cannot run" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # not a device name: a usage error, listing the names
        main(["doctor", "--require", "gpu"])
    assert usage.value.code == 2
    assert "choose from 'cpu', 'cuda', 'tensorrt', 'engine'" in capsys.readouterr().err


def test_require_passes_an_undetected_gpu_with_a_warning_and_fails_a_definite_no(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    maybe = Device("engine", True, "available if a GPU is present (none detected: x)", certain=False)
    monkeypatch.setattr(cli_doctor, "system_report", lambda: _report(Device("cpu", True, "cpu"), maybe))
    assert main(["doctor", "--require", "engine"]) == 0
    captured = capsys.readouterr()
    assert "device  engine    maybe" in captured.out
    assert "warning: engine is required and runs only if there is a GPU" in captured.err
    no = Device("engine", False, "no NVIDIA GPU (nvidia-smi: No devices were found)")
    monkeypatch.setattr(cli_doctor, "system_report", lambda: _report(Device("cpu", True, "cpu"), no))
    assert main(["doctor", "--require", "cpu", "--require", "engine"]) == 1
    assert "engine is required but cannot run: no NVIDIA GPU" in capsys.readouterr().err


def test_require_engine_passes_on_a_jetson_without_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_nvidia_smi: None
) -> None:
    root = _tree(tmp_path, JETSON_FILES)
    real = system.importable
    monkeypatch.setattr(system, "importable", lambda m: m in ("tensorrt", "cuda.bindings") or real(m))
    monkeypatch.setattr(cli_doctor, "system_report", lambda: system_report(root))
    assert main(["doctor", "--require", "engine"]) == 0
    captured = capsys.readouterr()
    assert "device  engine    yes" in captured.out and captured.err == ""
    monkeypatch.setattr(cli_doctor, "system_report", lambda: system_report(tmp_path / "bare"))
    assert main(["doctor", "--require", "engine"]) == 0  # nothing tells: a warning only
    assert "warning: engine is required" in capsys.readouterr().err
