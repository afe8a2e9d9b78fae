"""Shared fixtures of the export tests: a tiny checkpoint and its exported ONNX files (made once).

Models are `resnet_tiny` at 128×64 with randomised BatchNorm statistics (see export_helpers.py), so
parity is checked on a network whose every layer does something. The fakes and the contract fixture of
`tests/sdk` are reused (`fake_tensorrt.py`, `contract_model.py`), so the suite has one fake TensorRT.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))

from export_helpers import save_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vireid.export import to_onnx

    return to_onnx(tiny_checkpoint, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_fp16(tiny_onnx: Path) -> Path:
    from vireid.export import to_fp16

    return to_fp16(tiny_onnx)


@pytest.fixture(scope="session")
def tiny_sysu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic SYSU-MM01 folder with 4 validation identities."""
    from vireid.training.data.synth import generate

    root = tmp_path_factory.mktemp("sysu")
    generate("sysu", root, workers=1, show_progress=False, ids=12, images_per_camera=2, val_ids=4, test_ids=4)
    return root


@pytest.fixture(scope="session")
def tiny_int8(tiny_onnx: Path, tiny_sysu: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """INT8 QDQ of the tiny model, calibrated 50/50 on the tiny SYSU set's training identities."""
    from vireid.export.int8 import Int8Options, to_int8

    out = tmp_path_factory.mktemp("int8") / "tiny.int8.onnx"
    return to_int8(tiny_onnx, out, data=tiny_sysu, options=Int8Options(images=16, probe=8)).path


@pytest.fixture(scope="session")
def tiny_int8_tensorrt(tiny_onnx: Path, tiny_sysu: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """INT8 QDQ of the tiny model quantised for TensorRT (int8 symmetric activations)."""
    from vireid.export.int8 import Int8Options, to_int8

    out = tmp_path_factory.mktemp("int8trt") / "tiny.int8.onnx"
    options = Int8Options(images=16, probe=8, sensitivity=False, target="tensorrt")
    return to_int8(tiny_onnx, out, data=tiny_sysu, options=options).path
