"""Fixtures shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sysu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic SYSU-style folder (12 identities, 4 of them test), generated once per run."""
    from vireid.training.data.synth import SysuConfig, generate_sysu

    root = tmp_path_factory.mktemp("sysu")
    config = SysuConfig(ids=12, seed=3, images_per_camera=2, test_ids=4, val_ids=1, camera_gap=0.0)
    generate_sysu(root, config, workers=1, show_progress=False)
    return root
