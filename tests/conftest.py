"""Shared pytest setup: the `gpu` marker skips with a reason when no CUDA device is present."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _cuda_device_count() -> int:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        cudart = None
    if cudart is not None:
        err, count = cudart.cudaGetDeviceCount()
        return int(count or 0) if err == cudart.cudaError_t.cudaSuccess else 0
    if shutil.which("nvidia-smi"):
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
        return done.stdout.count("GPU ") if done.returncode == 0 else 0
    return 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and _cuda_device_count() == 0:
        skip = pytest.mark.skip(reason="needs a CUDA device; none found (nvidia-smi/cuda-python)")
        for item in gpu_items:
            item.add_marker(skip)
