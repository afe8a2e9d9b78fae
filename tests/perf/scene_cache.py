"""The small synthetic scene the stream and benchmark tests share (generated once, then reused)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEST_SCENE = {"seconds": 8.0, "people": 3, "seed": 1}
"""The small scene the tests generate (about 6 s, once; then reused): three people, both cameras."""


def cached_scene(folder: Path, **settings: Any) -> Path:
    """Generate a synthetic scene into `folder` (reused when it already holds that very scene)."""
    from vireid.training.data.synth import SceneConfig, generate_scene
    from vireid.training.data.synth.writer import other_settings

    # One process: the generator's forked workers can deadlock in a process whose OpenCV already ran
    # threads after an earlier forked run (seen when the whole suite runs in one pytest process).
    config = SceneConfig(**{**TEST_SCENE, **settings})
    stale = other_settings(folder, config.to_meta()) is not None  # e.g. left by another generator version
    generate_scene(folder, config, workers=1, overwrite=stale, show_progress=False)
    return folder
