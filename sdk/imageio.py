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
    data = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if data is None:
        problem = "does not exist" if not path.exists() else "cannot be decoded as an image"
        raise InputSpecError(f"{path}: {problem}; expected a readable JPEG/PNG/BMP person crop")
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)
