"""Fixtures for the stream tests: the contract model, a generated scene (cached across runs), helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for helper_dir in (HERE.parent, HERE.parents[1] / "perf"):  # contract_model.py, scene_cache.py
    if str(helper_dir) not in sys.path:
        sys.path.insert(0, str(helper_dir))

from contract_model import build_contract_model  # noqa: E402
from scene_cache import cached_scene  # noqa: E402


@pytest.fixture(scope="session")
def contract_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A contract model with 64x32 input, 16-d embeddings and match threshold 0.5."""
    return build_contract_model(
        tmp_path_factory.mktemp("streams-model") / "contract.onnx", height=64, width=32
    )


@pytest.fixture(scope="session")
def scene(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8 s, 3-person synthetic scene (visible.mp4, infrared.mp4, gt.json), kept in pytest's cache."""
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("vireid-synth-scene-8s") if cache is not None else tmp_path_factory.mktemp("scene")
    return cached_scene(Path(folder))
