"""A stand-in for OpenCV's capture of a live camera, to test our source and pipeline logic around it."""

from __future__ import annotations

import time

import cv2
import numpy as np


class LiveCaptureFaked:
    """A live camera at 15 fps that never ends (small grey frames).

    Args:
        fail_after: after this many frames, frames of a layout the reader cannot convert (5 channels),
            which end the source as `failed`.
        hang_after: after this many frames, every read blocks for `hang` seconds (a stalled stream).
    """

    def __init__(
        self, fail_after: int | None = None, hang_after: int | None = None, hang: float = 0.0
    ) -> None:
        self.fail_after, self.hang_after, self.hang = fail_after, hang_after, hang
        self.reads = 0

    def isOpened(self) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 15.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def set(self, *args: object) -> bool:
        return True

    def release(self) -> None:
        pass

    def read(self) -> tuple[bool, np.ndarray]:
        self.reads += 1
        stalled = self.hang_after is not None and self.reads > self.hang_after
        time.sleep(self.hang if stalled else 1 / 15)
        if self.fail_after is not None and self.reads > self.fail_after:
            return True, np.zeros((48, 64, 5), np.uint8)
        return True, np.full((48, 64, 3), 80, np.uint8)
