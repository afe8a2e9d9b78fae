"""What every person detector returns (`Detections`) and the interface it implements (`Detector`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ...errors import InputSpecError
from ..frame import Frame  # at run time too: typing.get_type_hints(Detector.detect) must resolve it


def _describe(array: Any) -> str:
    return f"{array.shape} {array.dtype}" if isinstance(array, np.ndarray) else type(array).__name__


@dataclass(frozen=True, eq=False)
class Detections:
    """Person boxes found in one frame.

    Attributes:
        boxes: float32 `[K, 4]` `x1, y1, x2, y2` pixels (exclusive right/bottom), x1 < x2 and y1 < y2.
        scores: float32 `[K]` confidences in [0, 1].

    Lists and other dtypes are converted; anything that cannot be is an `InputSpecError` stating
    expected vs actual.
    """

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        try:
            boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
            scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise InputSpecError(
                f"Detections need boxes (K, 4) and scores (K,), got {_describe(self.boxes)} and "
                f"{_describe(self.scores)}"
            ) from None
        if len(boxes) != len(scores):
            raise InputSpecError(
                f"Detections: {len(boxes)} boxes but {len(scores)} scores; give one score per box"
            )
        if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
            raise InputSpecError("Detections: boxes and scores must be finite numbers")
        bad = np.flatnonzero((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
        if len(bad):
            raise InputSpecError(
                f"Detections: boxes {bad[:5].tolist()} are empty ({boxes[bad[0]].tolist()}); expected "
                "x1 < x2 and y1 < y2 in pixels"
            )
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)

    @classmethod
    def empty(cls) -> Detections:
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: Any) -> Detections:
        """Detections selected by a boolean mask, index array or slice."""
        return Detections(self.boxes[index], self.scores[index])

    def __repr__(self) -> str:
        return f"Detections(n={len(self)})"


@runtime_checkable
class Detector(Protocol):
    """Finds people in a frame.

    `detect(image, frame=None)` takes a uint8 `HxWx3` BGR or `HxW` grey image (the `Frame` it came from,
    when there is one, for detectors that need its camera or number) and returns `Detections`.
    `for_camera()` returns the detector to use for one more camera: a stateful detector (background
    model) returns a fresh copy with the same settings; a stateless one (a network) returns itself.
    """

    name: str

    def detect(self, image: np.ndarray, frame: Frame | None = None) -> Detections: ...

    def for_camera(self) -> Detector: ...


@runtime_checkable
class BatchDetector(Protocol):
    """A detector that can also find people in several frames in one call (`detect_batch`), which a
    network detector runs as one batched inference: the pipeline gives it every camera's frame of a
    round at once. Optional: a `Detector` without it is called frame by frame."""

    def detect_batch(
        self, images: Sequence[np.ndarray], frames: Sequence[Frame | None] | None = None
    ) -> list[Detections]: ...


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while len(order):
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(
            np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None
        )
        h = np.clip(
            np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None
        )
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)
