"""Real TensorRT builds (GPU + TensorRT needed; marked `gpu`, skipped with a reason elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vireid import ModelCard, Precision
from vireid.export import to_engine, to_triton, verify

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _tensorrt() -> None:
    pytest.importorskip("tensorrt", reason="needs TensorRT (pip install 'vireid[tensorrt]')")


def test_fp16_engine_matches_its_onnx(tiny_fp16: Path, tmp_path: Path) -> None:
    cache = tmp_path / "timing.cache"
    engine = to_engine(tiny_fp16, tmp_path / "m.engine", batch=(1, 8, 32), timing_cache=cache)
    card = ModelCard.from_engine(engine)
    assert card.precision is Precision.FP16 and card.gpu_name and card.compute_capability
    assert cache.stat().st_size > 0
    report = verify(tiny_fp16, engine, device="tensorrt")
    assert report, str(report)
    to_engine(tiny_fp16, tmp_path / "again.engine", batch=(1, 8, 32), timing_cache=cache)  # cache reused


def test_fp32_engine_matches_pytorch_closely(tiny_checkpoint: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    engine = to_engine(tiny_onnx, tmp_path / "m.engine", batch=(1, 8, 32))
    report = verify(tiny_checkpoint, engine, device="tensorrt")
    assert report, str(report)


def test_engine_in_a_triton_repository(tiny_fp16: Path, tmp_path: Path) -> None:
    engine = to_engine(tiny_fp16, tmp_path / "m.engine", batch=(1, 8, 32))
    model = to_triton(engine, tmp_path / "repo", "vireid_trt")
    assert model.platform == "tensorrt_plan" and model.max_batch_size == 32
