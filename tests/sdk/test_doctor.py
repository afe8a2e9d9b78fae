"""`vireid doctor`: the report on this machine (real ONNX Runtime, real OpenCV), its device logic, the CPU
feature parser on real files, and that asking never imports torch, TensorRT or CUDA."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vireid import doctor, system
from vireid.cli.main import main
from vireid.doctor import Status, format_report, system_report


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
    assert json.loads(json.dumps(report.to_dict()))["devices"][0]["name"] == "cpu"


def test_asking_imports_neither_torch_nor_tensorrt_nor_cuda() -> None:
    code = (
        "import sys\n"
        "from vireid.doctor import system_report\n"
        "system_report()\n"
        "print([m for m in ('torch', 'tensorrt', 'onnx', 'pycuda', 'cuda') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_cpu_features_are_read_from_the_flags_line(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
    )
    assert system.cpu_name(cpuinfo) == "Example CPU @ 2.0GHz"
    assert system.cpu_features(cpuinfo) == ["AVX2", "AVX-512", "AVX-512 VNNI"]
    cpuinfo.write_text("processor\t: 0\n")  # no flags line (not x86, or a container hiding it)
    assert system.cpu_features(cpuinfo) is None
    assert system.cpu_features(tmp_path / "missing") is None


def test_a_cpu_without_vnni_or_amx_is_warned_about_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "cpu_features", lambda: ["AVX2"])
    check = doctor._cpu()
    assert check.status is Status.WARN and "INT8" in check.advice and "--precision fp32,int8" in check.advice
    monkeypatch.setattr(system, "cpu_features", lambda: ["AVX2", "AVX-512", "AMX-INT8"])
    assert doctor._cpu().status is Status.OK


def test_devices_follow_the_providers_the_gpu_and_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_only = {d.name: d for d in doctor._devices(["CPUExecutionProvider"], None)}
    assert cpu_only["cpu"].available and not cpu_only["cuda"].available
    assert "pip install 'vireid[gpu]'" in cpu_only["cuda"].reason
    gpu_providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    no_gpu = {d.name: d for d in doctor._devices(gpu_providers, None)}
    assert not no_gpu["cuda"].available and "no NVIDIA GPU" in no_gpu["cuda"].reason
    monkeypatch.setattr(system, "importable", lambda module: module in ("tensorrt", "cuda"))
    with_gpu = {d.name: d for d in doctor._devices(gpu_providers, "NVIDIA H100, 550.54")}
    assert with_gpu["cuda"].available and with_gpu["tensorrt"].available and with_gpu["engine"].available
    monkeypatch.setattr(system, "importable", lambda module: module == "tensorrt")
    engine = doctor._devices(gpu_providers, "NVIDIA H100, 550.54")[3]
    assert not engine.available and "cuda-python or pycuda" in engine.reason
    assert doctor._devices([], None)[0].available is False  # no ONNX Runtime at all


def test_a_missing_extra_names_what_it_enables_and_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "importable", lambda module: False)
    check = doctor._extra("sqlcipher3", "crypto", "encrypted galleries (--key-file)")
    assert check.status is Status.MISSING
    assert check.advice == "encrypted galleries (--key-file): pip install 'vireid[crypto]'"


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
