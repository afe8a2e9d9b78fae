"""Reading person crops from disk as the model expects them: uint8 RGB, 3 channels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import InputSpecError


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as `uint8 [H, W, 3]` RGB; grey (thermal) images are replicated to 3 channels.

    Raises:
        InputSpecError: the file is missing or OpenCV cannot decode it.
    """
    path = Path(path)
    if not path.is_file():  # checked first: OpenCV would print its own warning before ours
        problem = "is a folder" if path.is_dir() else "does not exist"
        raise InputSpecError(f"{path}: {problem}; expected a readable JPEG/PNG/BMP person crop")
    try:
        data = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. a header claiming more pixels than OpenCV will allocate
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InputSpecError(
            f"{path}: cannot be decoded as an image (OpenCV: {reason}); expected a readable JPEG/PNG/BMP "
            "person crop of ordinary size"
        ) from None
    if data is None:
        raise InputSpecError(
            f"{path}: cannot be decoded as an image; expected a readable JPEG/PNG/BMP person crop"
        )
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)


COLOUR_SPREAD = 12.0  # mean max-min channel difference above which an image has colour (grey: ~0)


def has_colour(image: np.ndarray) -> bool:
    """Whether an RGB crop shows colour (a thermal or night camera's crop is grey in all three channels)."""
    if image.ndim != 3 or image.shape[2] < 3:
        return False
    small = image[::4, ::4, :3].astype(np.int16)  # an alpha channel is not colour
    return float((small.max(axis=2) - small.min(axis=2)).mean()) > COLOUR_SPREAD
