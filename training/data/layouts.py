"""Recognising a dataset folder's layout from its top-level folders (for hints and for refusals)."""

from __future__ import annotations

from pathlib import Path

LAYOUT_FOLDERS = {"sysu": ("cam1", "cam3"), "regdb": ("Visible", "Thermal")}
"""Folders whose presence marks each layout (SYSU-MM01's cameras, RegDB's two modality folders)."""


def layout_of(root: str | Path) -> str | None:
    """`sysu` or `regdb` when `root` holds that layout's folders (complete or not), else None."""
    for kind, folders in LAYOUT_FOLDERS.items():
        if all((Path(root) / name).is_dir() for name in folders):
            return kind
    return None
