"""Reading person crops from disk as the model expects them: uint8 RGB, 3 channels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import InputSpecError


def read_image(path: str | Path, thermal: Any = None) -> np.ndarray:
    """Read an image file as `uint8 [H, W, 3]` RGB; grey (thermal) images are replicated to 3 channels.

    A 16-bit grey file (a radiometric thermal frame) is scaled to 8 bits by `thermal` (a
    `ThermalScaling`, `"window:LOW:HIGH"` or `"percentile:LOW:HIGH"`), which it requires: OpenCV would
    otherwise divide it by 256 without a word, leaving a person a few grey levels wide.

    Raises:
        InputSpecError: the file is missing, OpenCV cannot decode it, or it is 16-bit without `thermal`.
    """
    path = Path(path)
    try:  # an undecodable file name (Latin-1 bytes from a zip) crashes OpenCV's imread outright
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise InputSpecError(
            f"{str(path)!r}: the file name holds bytes that are not UTF-8 (from another system?); rename it"
        ) from None
    if not path.is_file():  # checked first: OpenCV would print its own warning before ours
        problem = "is a folder" if path.is_dir() else "does not exist"
        raise InputSpecError(f"{path}: {problem}; expected a readable JPEG/PNG/BMP person crop")
    try:
        data = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)  # EXIF orientation kept
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
    return _as_rgb8(data, path, thermal)


def _as_rgb8(data: np.ndarray, path: Path, thermal: Any) -> np.ndarray:
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    if data.dtype == np.uint16 and data.ndim == 2:
        if thermal is None:
            raise InputSpecError(
                f"{path}: a 16-bit grey image (a radiometric thermal frame?); say how to scale it to 8 bits: "
                "read_image(path, thermal='window:LOW:HIGH') with the raw values of the scene's range, or "
                "'percentile:1:99'"
            )
        from .preprocess import thermal_to_8bit

        data = thermal_to_8bit(data, thermal)
    elif data.dtype != np.uint8:  # 16-bit colour and other depths: stretched, as a stream's frames are
        # the cv2 stubs require `dst`; OpenCV allocates it when given None
        data = cv2.normalize(data, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)  # type: ignore[call-overload]
    if data.ndim == 2:
        return cv2.cvtColor(data, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if data.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(data, code)


COLOUR_SPREAD = 12.0  # mean max-min channel difference above which an image has colour (grey: ~0)


def has_colour(image: np.ndarray) -> bool:
    """Whether an RGB crop shows colour (a thermal or night camera's crop is grey in all three channels)."""
    if image.ndim != 3 or image.shape[2] < 3:
        return False
    small = image[::4, ::4, :3].astype(np.int16)  # an alpha channel is not colour
    return float((small.max(axis=2) - small.min(axis=2)).mean()) > COLOUR_SPREAD
