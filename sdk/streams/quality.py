"""How good a person crop is for re-identification: size, sharpness, occlusion and truncation.

`crop_quality` returns a number in [0, 1], the product of four factors:

- size: box height / `full_height` (capped at 1): small people carry little detail;
- sharpness: variance of the Laplacian of the grey crop (resized to 64 px high) mapped by
  `v / (v + sharp_scale)`: motion blur and defocus lower it;
- occlusion: 1 − the largest fraction of the box covered by another box in the same frame;
- truncation: the fraction of the box's expected area inside the frame (a box touching the left or
  right edge is treated as cut off there).

The matcher embeds a track when its quality beats the best seen so far, and weights each embedding by
its quality in the track's average.
"""

from __future__ import annotations

import cv2
import numpy as np

_SHARP_HEIGHT = 64


def occlusion(boxes: np.ndarray) -> np.ndarray:
    """For each box `[N, 4]`, the largest fraction of its area covered by any one other box."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(boxes)
    if n < 2:
        return np.zeros(n)
    w = np.clip(
        np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], boxes[None, :, 0]),
        0,
        None,
    )
    h = np.clip(
        np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], boxes[None, :, 1]),
        0,
        None,
    )
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
    covered = w * h / area[:, None]
    np.fill_diagonal(covered, 0.0)
    return covered.max(axis=1)


def sharpness(image: np.ndarray, box: np.ndarray) -> float:
    """Variance of the Laplacian of the box's grey pixels, resized to 64 px high."""
    height, width = image.shape[:2]
    x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
    x2, y2 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0
    crop = image[y1:y2, x1:x2]
    if crop.ndim == 3:
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    scale = _SHARP_HEIGHT / crop.shape[0]
    crop = cv2.resize(
        crop, (max(2, round(crop.shape[1] * scale)), _SHARP_HEIGHT), interpolation=cv2.INTER_AREA
    )
    return float(cv2.Laplacian(crop, cv2.CV_32F).var())


def crop_quality(
    image: np.ndarray,
    boxes: np.ndarray,
    *,
    full_height: float = 160.0,
    sharp_scale: float = 50.0,
    edge_margin: float = 2.0,
) -> np.ndarray:
    """Quality in [0, 1] of each box `[N, 4]` in `image` (see the module docstring)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(boxes):
        return np.zeros(0)
    width = image.shape[1]
    heights = boxes[:, 3] - boxes[:, 1]
    size = np.clip(heights / full_height, 0.0, 1.0)
    sharp = np.array([sharpness(image, b) for b in boxes])
    sharp = sharp / (sharp + sharp_scale)
    visible = 1.0 - occlusion(boxes)
    at_edge = (boxes[:, 0] <= edge_margin) | (boxes[:, 2] >= width - edge_margin)
    # A person cut by a side edge looks narrower than one standing in view (w/h ≈ 0.4).
    expected_width = 0.4 * heights
    inside = np.where(
        at_edge, np.clip((boxes[:, 2] - boxes[:, 0]) / np.maximum(expected_width, 1e-9), 0, 1), 1.0
    )
    return np.clip(size * sharp * visible * inside, 0.0, 1.0)
