"""Targets of docs/export.md on the full-size model (ResNet-50 MSPAC, 288×144; marked `slow`).

Random initialisation with randomised BatchNorm statistics: parity and timing do not depend on
training. Run with `pytest -m slow tests/export/test_export_fullsize.py`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from vireid.export import to_fp16, to_onnx, verify
from vireid.training.checkpoint import save_checkpoint
from vireid.training.models import build_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def full_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model("mspac", 395, with_pretrained=False, backbone="resnet50")
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    meta = {"model_config": model.config.to_dict(), "num_classes": 395, "epoch": 1}
    return save_checkpoint(tmp_path_factory.mktemp("full") / "mspac_r50", model.state_dict(), meta)


def test_full_size_export_onnx_and_fp16_meet_the_targets(full_checkpoint: Path) -> None:
    start = time.perf_counter()
    onnx_path = to_onnx(full_checkpoint, full_checkpoint.with_name("m.onnx"))
    fp16_path = to_fp16(onnx_path)
    print(f"full-size ONNX + FP16 export: {time.perf_counter() - start:.0f} s")  # a figure, not a check
    fp32 = verify(full_checkpoint, onnx_path, device="cpu", identities=16)  # 32 images: batch of 32
    assert fp32 and fp32.min_cosine >= 0.99999 and fp32.batch_delta <= 1e-5, str(fp32)
    fp16 = verify(onnx_path, fp16_path, device="cpu", identities=32)
    assert fp16 and fp16.min_cosine >= 0.999 and fp16.top1_agreement >= 0.99, str(fp16)
