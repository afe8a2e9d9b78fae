"""Synthetic visible-infrared person data (numpy + OpenCV only): the stand-in for SYSU-MM01 and RegDB.

Public API:
    generate_sysu(out, SysuConfig(...))     SYSU-MM01 layout (six cameras, exp/ id lists)
    generate_regdb(out, RegDBConfig(...))   RegDB layout (Visible/, Thermal/, idx/ with 10 splits)
    generate_scene(out, SceneConfig(...))   two videos (visible, infrared) + ground-truth JSON
    generate(kind, out, **settings)         the same, by name, as `vireid synth KIND` calls it

Modules: `person` (identity attributes), `body` (part-map drawing), `render` (visible and infrared
renderers), `cameras` (camera profiles and backdrops), `sysu` / `regdb` / `scene` (writers),
`baselines` (untrained matchers the data must defeat across modalities), `config` (all defaults).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vireid.errors import ConfigError

from .config import GENERATOR_VERSION, RegDBConfig, SceneConfig, SysuConfig
from .person import Identity, sample_identity
from .regdb import generate_regdb
from .scene import generate_scene
from .sysu import generate_sysu
from .writer import SynthResult

_KINDS: dict[str, tuple[Callable[..., Any], Callable[..., SynthResult]]] = {
    "sysu": (SysuConfig, generate_sysu),
    "regdb": (RegDBConfig, generate_regdb),
    "scene": (SceneConfig, generate_scene),
}


def generate(
    kind: str,
    out: str | Path,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    **settings: Any,
) -> SynthResult:
    """Generate a dataset of `kind` (`sysu`, `regdb`, `scene`) with settings by keyword.

    Raises:
        ConfigError: unknown kind or setting, or an invalid value.
        DatasetError: the output folder cannot be used.
    """
    if kind not in _KINDS:
        raise ConfigError(f"unknown synthetic dataset kind {kind!r}; expected one of: {', '.join(_KINDS)}")
    config_type, writer = _KINDS[kind]
    try:
        config = config_type(**settings)
    except TypeError as exc:
        raise ConfigError(f"synth {kind}: {exc}") from None
    return writer(out, config, workers=workers, overwrite=overwrite, show_progress=show_progress)


__all__ = [
    "GENERATOR_VERSION",
    "Identity",
    "RegDBConfig",
    "SceneConfig",
    "SynthResult",
    "SysuConfig",
    "generate",
    "generate_regdb",
    "generate_scene",
    "generate_sysu",
    "sample_identity",
]
