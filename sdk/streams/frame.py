"""`Frame`: one image from one camera, with its modality, number and timestamps."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..errors import InputSpecError
from ..modality import Modality


@dataclass(frozen=True, eq=False)
class Frame:
    """A frame as a source delivers it.

    Attributes:
        image: uint8 `HxWx3` in OpenCV's BGR order (infrared cameras deliver grey replicated to three
            channels), or `HxW` grey.
        camera: camera id (unique within a pipeline).
        modality: the camera's modality.
        index: frame number from this source, counted from 0 (for a file: the frame number in the file).
        timestamp: wall-clock time the frame was read, seconds since the epoch (`time.time()`).
        pts: seconds on the source's own timeline: position in a file, or time since the source started
            for live cameras.
        monotonic: `time.monotonic()` when the frame was read (None when not known). The pipeline
            lines the cameras' clocks up with it, so a wall-clock step (NTP setting the clock of a
            device without a real-time clock after boot) does not shift one camera against another.
    """

    image: np.ndarray
    camera: str
    modality: Modality
    index: int
    timestamp: float
    pts: float
    monotonic: float | None = None

    def __post_init__(self) -> None:
        image = self.image
        ok = (
            isinstance(image, np.ndarray)
            and image.dtype == np.uint8
            and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3))
        )
        if not ok:
            got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
            raise InputSpecError(f"Frame.image must be HxWx3 (BGR) or HxW uint8, got {got}")
        for name in ("timestamp", "pts", "monotonic"):
            value = getattr(self, name)
            if value is None and name == "monotonic":
                continue
            if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
                raise InputSpecError(f"Frame.{name} must be a finite number of seconds, got {value!r}")
        object.__setattr__(self, "modality", Modality.parse(self.modality))
        object.__setattr__(self, "camera", str(self.camera))

    @classmethod
    def of(
        cls,
        image: np.ndarray,
        modality: Modality | str | int,
        camera: str = "camera",
        index: int = 0,
        fps: float = 15.0,
    ) -> Frame:
        """A frame built by the caller: timestamp now, `pts = index / fps`."""
        return cls(image, camera, Modality.parse(modality), index, time.time(), index / fps, time.monotonic())

    @property
    def size(self) -> tuple[int, int]:
        """`(height, width)` in pixels."""
        return int(self.image.shape[0]), int(self.image.shape[1])
