"""Motion detector: background subtraction + morphology + size and aspect filters.

For fixed cameras, visible or thermal (it works on grey levels), with nothing to download. It finds
anything that moves and is shaped like a standing person; it does not know what a person looks like,
so it needs a fixed camera, a few frames to learn the background, and people who move.
"""

from __future__ import annotations

import cv2
import numpy as np

from ...errors import InputSpecError
from ..frame import Frame
from .base import Detections


class MotionDetector:
    """Moving, person-shaped blobs from a MOG2 background model.

    Per frame: grey (and downscaled to `work_width`), MOG2 foreground, threshold, an opening to remove
    noise, a closing with a tall kernel to join a body's parts, connected components, then filters.

    Scores: a blob of plausible size and upright aspect scores `0.5 + 0.5 * fill` (fill: foreground
    fraction of its box, so 0.5–1.0); a blob of plausible size but off aspect (two people merged,
    someone half out of view) scores `0.3 * fill`, which a ByteTrack-style tracker uses only to keep
    existing tracks alive, never to start one.

    Args:
        work_width: frames are processed at this width (aspect kept); smaller is faster.
        history: frames the background model remembers.
        var_threshold: MOG2 squared-Mahalanobis threshold (higher: less sensitive).
        learning_rate: background adaptation rate (-1: OpenCV's automatic 1/history).
        min_height: smallest box height, as a fraction of the frame height.
        max_height: largest box height, as a fraction of the frame height.
        min_area: smallest blob area (foreground pixels), as a fraction of the frame area.
        aspect: allowed height/width range of an upright person's box.
        warmup: frames at the start that only train the background model (no detections).
    """

    name = "motion"

    def __init__(
        self,
        *,
        work_width: int = 320,
        history: int = 300,
        var_threshold: float = 25.0,
        learning_rate: float = -1.0,
        min_height: float = 0.12,
        max_height: float = 0.95,
        min_area: float = 0.002,
        aspect: tuple[float, float] = (1.2, 5.0),
        warmup: int = 5,
    ) -> None:
        if work_width < 32:
            raise InputSpecError(f"work_width must be at least 32 pixels, got {work_width}")
        if not 0 < min_height < max_height <= 1:
            raise InputSpecError(f"need 0 < min_height < max_height <= 1, got {min_height}, {max_height}")
        if not 0 < aspect[0] < aspect[1]:
            raise InputSpecError(f"aspect must be (low, high) height/width with 0 < low < high, got {aspect}")
        self.settings = dict(
            work_width=work_width,
            history=history,
            var_threshold=var_threshold,
            learning_rate=learning_rate,
            min_height=min_height,
            max_height=max_height,
            min_area=min_area,
            aspect=aspect,
            warmup=warmup,
        )
        self.work_width = int(work_width)
        self.learning_rate = float(learning_rate)
        self.min_height, self.max_height, self.min_area = min_height, max_height, min_area
        self.aspect = (float(aspect[0]), float(aspect[1]))
        self.warmup = int(warmup)
        self._subtractor = cv2.createBackgroundSubtractorMOG2(
            history=int(history), varThreshold=float(var_threshold), detectShadows=False
        )
        self._frames = 0
        self._size: tuple[int, int] | None = None

    def for_camera(self) -> MotionDetector:
        """A fresh detector with the same settings (each camera needs its own background model)."""
        return MotionDetector(**self.settings)  # type: ignore[arg-type]

    def foreground(self, image: np.ndarray) -> np.ndarray:
        """The cleaned foreground mask at working resolution (uint8, 0 or 255); updates the model."""
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        height, width = grey.shape
        if self._size not in (None, (height, width)):
            raise InputSpecError(
                f"MotionDetector: frame size changed from {self._size} to {(height, width)}; use one "
                "detector per camera (detector.for_camera())"
            )
        self._size = (height, width)
        scale = min(1.0, self.work_width / width)
        if scale < 1.0:
            grey = cv2.resize(
                grey, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
            )
        grey = cv2.GaussianBlur(grey, (5, 5), 0)
        mask = self._subtractor.apply(grey, learningRate=self.learning_rate)
        _, mask = cv2.threshold(mask, 127, 255, cv2.THRESH_BINARY)
        h = grey.shape[0]
        small = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        tall = cv2.getStructuringElement(cv2.MORPH_RECT, (max(3, h // 80), max(5, h // 24)))
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, small)
        return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, tall)

    def detect(self, image: np.ndarray, frame: Frame | None = None) -> Detections:
        """Person-shaped moving blobs in `image` (uint8 BGR or grey)."""
        mask = self.foreground(image)
        self._frames += 1
        if self._frames <= self.warmup:
            return Detections.empty()
        height, width = image.shape[:2]
        scale = width / mask.shape[1]
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        boxes, scores = [], []
        for x, y, w, h, area in stats[1:count]:
            box_h = h * scale
            if area * scale * scale < self.min_area * width * height:
                continue
            if not self.min_height * height <= box_h <= self.max_height * height:
                continue
            fill = float(area) / float(w * h)
            upright = self.aspect[0] <= h / w <= self.aspect[1]
            boxes.append([x * scale, y * scale, min(width, (x + w) * scale), min(height, (y + h) * scale)])
            scores.append(0.5 + 0.5 * fill if upright else 0.3 * fill)
        if not boxes:
            return Detections.empty()
        return Detections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32))
