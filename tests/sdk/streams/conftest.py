"""Fixtures for the stream tests: the contract model and the shared synthetic scene."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # contract_model.py
    sys.path.insert(0, str(HERE.parent))

from contract_model import build_contract_model  # noqa: E402


@pytest.fixture(scope="session")
def contract_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A contract model with 64x32 input, 16-d embeddings and match threshold 0.5."""
    return build_contract_model(
        tmp_path_factory.mktemp("streams-model") / "contract.onnx", height=64, width=32
    )


@pytest.fixture(scope="session")
def scene(synthetic_scene: Path) -> Path:
    """The shared 8 s, 3-person synthetic scene (tests/conftest.py)."""
    return synthetic_scene
