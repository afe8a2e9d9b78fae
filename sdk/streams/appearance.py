"""A cheap appearance signature of each detected person, for the tracker's association.

IoU alone cannot tell two people apart while they cross: the box of the one in front fits both
predicted tracks, and the tracks can swap. BoT-SORT and DeepSORT add a re-id embedding per box; that is
a network call per detection per frame, more than the edge budget allows, so the tracker gets a colour
signature instead: hue-saturation and brightness histograms of the upper and the lower half of the box's
central part (clothes, not background), square-rooted so that the dot product of two unit signatures is
their Bhattacharyya coefficient. Hue counts only where there is colour (saturation above a floor), so on
infrared frames (grey) the signature is the brightness histograms alone, which still separate a warm
coat from a cool one.
"""

from __future__ import annotations

import cv2
import numpy as np

_HUE_BINS, _SAT_BINS, _VALUE_BINS = 8, 4, 8
SIGNATURE_DIM = 2 * (_HUE_BINS * _SAT_BINS + _VALUE_BINS)
_INNER = 0.2  # fraction of the box width left out on each side (background around the body)
_SIZE = (16, 32)  # crops are resized to this (width, height) first: cost independent of box size
_MIN_SATURATION = 40  # below it a pixel's hue is noise (grey, black, white, infrared)


def colour_signatures(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Unit float32 `[K, SIGNATURE_DIM]` signatures of the `boxes` (`[K, 4]` xyxy) in a BGR frame."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.zeros((len(boxes), SIGNATURE_DIM), np.float32)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    height, width = image.shape[:2]
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        inset = (x2 - x1) * _INNER
        left, right = int(max(0, x1 + inset)), int(min(width, x2 - inset))
        top, bottom = int(max(0, y1)), int(min(height, y2))
        if right - left < 2 or bottom - top < 4:
            continue  # nothing to describe: an all-zero signature matches nothing
        crop = cv2.resize(image[top:bottom, left:right], _SIZE, interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
        half = _SIZE[1] // 2
        out[i] = np.concatenate([_histograms(hsv[:half]), _histograms(hsv[half:])])
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


def _histograms(hsv: np.ndarray) -> np.ndarray:
    coloured = (hsv[:, :, 1] >= _MIN_SATURATION).astype(np.uint8)
    hue_sat = cv2.calcHist([hsv], [0, 1], coloured, [_HUE_BINS, _SAT_BINS], [0, 180, 0, 256]).ravel()
    value = cv2.calcHist([hsv], [2], None, [_VALUE_BINS], [0, 256]).ravel()
    total = float(hsv.shape[0] * hsv.shape[1])
    return np.sqrt(np.concatenate([hue_sat, value]) / total)
