"""Boxes supplied by the caller: an external detector, a tracker upstream, or ground truth."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import InputSpecError
from ..frame import Frame
from .base import Detections


class CallerBoxes:
    """A detector that asks the caller: `boxes(frame)` returns the people in that frame.

    Example:
        >>> detector = CallerBoxes(lambda frame: my_detector(frame.image))   # (K, 4) xyxy, or Detections

    Args:
        boxes: called with each `Frame`; returns `Detections`, an `(K, 4)` array of `x1, y1, x2, y2`
            pixels (scores 1.0), or an `(K, 5)` array with a score column.
    """

    name = "boxes"

    def __init__(self, boxes: Callable[[Frame], Any]) -> None:
        if not callable(boxes):
            raise InputSpecError(f"CallerBoxes needs a function frame -> boxes, got {type(boxes).__name__}")
        self._boxes = boxes

    def detect(self, image: np.ndarray, frame: Frame | None = None) -> Detections:
        if frame is None:
            raise InputSpecError("CallerBoxes.detect needs the Frame (camera, number) to ask for its boxes")
        result = self._boxes(frame)
        if isinstance(result, Detections):
            return result
        if result is None:
            return Detections.empty()
        array = np.asarray(result, dtype=np.float32)
        if array.size == 0:
            return Detections.empty()
        if array.ndim != 2 or array.shape[1] not in (4, 5):
            raise InputSpecError(
                f"boxes for camera {frame.camera} must be (K, 4) or (K, 5), got {array.shape}"
            )
        scores = array[:, 4] if array.shape[1] == 5 else np.ones(len(array), np.float32)
        return Detections(array[:, :4], scores)

    def for_camera(self) -> CallerBoxes:
        return self
