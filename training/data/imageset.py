"""`ImageSet`: a list of image files with identity, camera and modality per file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vireid.errors import InputSpecError


@dataclass(frozen=True, eq=False)  # numpy fields: == would be ambiguous
class ImageSet:
    """Image paths with per-image person id, camera id and modality (0 visible, 1 infrared)."""

    paths: tuple[Path, ...]
    pids: np.ndarray
    camids: np.ndarray
    modalities: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(Path(p) for p in self.paths))
        for name in ("pids", "camids", "modalities"):
            value = np.asarray(getattr(self, name), dtype=np.int64)
            if value.shape != (len(self.paths),):
                raise InputSpecError(
                    f"ImageSet.{name} must have one entry per path ({len(self.paths)}), got {value.shape}"
                )
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, index: Sequence[int] | np.ndarray) -> ImageSet:
        """The subset at the given integer indices or boolean mask."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return ImageSet(
            paths=tuple(self.paths[i] for i in index),
            pids=self.pids[index],
            camids=self.camids[index],
            modalities=self.modalities[index],
        )

    @classmethod
    def concat(cls, sets: Sequence[ImageSet]) -> ImageSet:
        """Concatenate several sets in order."""
        return cls(
            paths=tuple(p for s in sets for p in s.paths),
            pids=np.concatenate([s.pids for s in sets]) if sets else np.zeros(0),
            camids=np.concatenate([s.camids for s in sets]) if sets else np.zeros(0),
            modalities=np.concatenate([s.modalities for s in sets]) if sets else np.zeros(0),
        )
