"""Shared pytest setup: the `gpu` marker skips with a reason when no CUDA device is present; the small
synthetic scene the stream and benchmark tests share."""

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


TEST_SCENE = {"seconds": 8.0, "people": 3, "seed": 1}
"""The small scene the stream and benchmark tests share: 8 s, three people, both cameras."""


@pytest.fixture(scope="session")
def synthetic_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 8 s, 3-person synthetic scene (visible.mp4, infrared.mp4, gt.json), generated once per session
    (about 6 s) into the session's temporary folder, so no run depends on files an earlier one left."""
    from vireid.training.data.synth import SceneConfig, generate_scene

    folder = tmp_path_factory.mktemp("scene")
    # One process: the generator's forked workers can deadlock in a process whose OpenCV already ran
    # threads after an earlier forked run (seen when the whole suite runs in one pytest process).
    generate_scene(folder, SceneConfig(**TEST_SCENE), workers=1, show_progress=False)
    return folder
