"""Training-time image augmentation on uint8 RGB arrays (numpy/OpenCV, seeded generator).

Pad + random crop, horizontal flip, random erasing; for visible images optional channel exchange,
greyscale or lower resolution; for both modalities an optional random intensity remap. All but the
first three push the model towards cues the other camera also sees.
"""

from __future__ import annotations

import cv2
import numpy as np

from vireid.modality import Modality

from .config import AugmentConfig


def augment(image: np.ndarray, modality: int, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Return an augmented copy of one `[H, W, 3]` uint8 image of the model's input size."""
    out = _pad_crop(image, cfg.pad, rng) if cfg.pad else image.copy()
    if rng.random() < cfg.flip:
        out = out[:, ::-1]
    if modality == Modality.VISIBLE:
        if rng.random() < cfg.channel_exchange:
            out = np.repeat(out[:, :, rng.integers(3)][:, :, None], 3, axis=2)
        elif rng.random() < cfg.grayscale:
            grey = out.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            out = np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2)
        if cfg.lowres and rng.random() < cfg.lowres:
            out = _lower_resolution(np.ascontiguousarray(out), float(rng.uniform(0.4, 0.8)))
    if cfg.intensity_remap and rng.random() < cfg.intensity_remap:
        out = _remap_intensity(np.ascontiguousarray(out), rng)
    if rng.random() < cfg.erasing:
        out = _erase(np.ascontiguousarray(out), rng)
    return np.ascontiguousarray(out)


def _lower_resolution(image: np.ndarray, factor: float) -> np.ndarray:
    """Down-sample by `factor` and back (area then bilinear): the detail a low-resolution sensor keeps."""
    h, w = image.shape[:2]
    small = cv2.resize(
        image, (max(4, round(w * factor)), max(8, round(h * factor))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


# 3 knots (smoother) and 3-9 at random (harsher) both trained worse models (docs/results-history.md)
_REMAP_KNOTS = 5


def _remap_intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey levels through a random piecewise-linear curve: brightness order goes, regions mostly stay.

    A garment's visible brightness and its thermal brightness are unrelated, so only where the edges
    lie is shared by the two modalities; a random curve makes brightness useless to the model.
    """
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    lut = np.interp(np.arange(256), np.linspace(0, 255, _REMAP_KNOTS), rng.uniform(0, 255, _REMAP_KNOTS))
    return np.repeat(lut.astype(np.uint8)[grey][:, :, None], 3, axis=2)


def _pad_crop(image: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    y, x = rng.integers(0, 2 * pad + 1, size=2)
    return padded[y : y + h, x : x + w]


def _erase(image: np.ndarray, rng: np.random.Generator, area=(0.02, 0.4), ratio=(0.3, 3.3)) -> np.ndarray:
    """Random erasing (Zhong et al.): fill a random rectangle with noise."""
    h, w = image.shape[:2]
    for _ in range(10):
        target = rng.uniform(*area) * h * w
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        eh, ew = round(float(np.sqrt(target * aspect))), round(float(np.sqrt(target / aspect)))
        if 0 < eh < h and 0 < ew < w:
            y, x = rng.integers(0, h - eh), rng.integers(0, w - ew)
            image[y : y + eh, x : x + ew] = rng.integers(0, 256, (eh, ew, 3), dtype=np.uint8)
            return image
    return image
