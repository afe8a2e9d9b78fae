"""Host-side preprocessing: crop, resize, colour order and infrared → 3 channels. numpy + OpenCV only.

Everything else (uint8 → float, mean/std, NHWC → NCHW) happens inside the exported graph, so this
module is the whole host-side contract. Training's evaluation, export's verification and the runtime
all call these functions, so a crop is turned into model input the same way everywhere.

The contract, once:

- Input crops and frames are uint8, `HxWx3` (RGB unless `bgr=True`, e.g. frames from `cv2.imread` or
  `cv2.VideoCapture`), `HxWx1` or `HxW` (infrared/thermal, replicated to 3 equal channels).
- Boxes are `(x1, y1, x2, y2)` pixel coordinates, exclusive right/bottom edge (`frame[y1:y2, x1:x2]`);
  fractional values widen the box to whole pixels (floor of x1/y1, ceil of x2/y2).
- A box that leaves the frame is clipped and the missing part padded with a constant (`pad_value`,
  default 0 = black, which for thermal means "cold background") so the person keeps its place and
  aspect in the crop; a box entirely outside the frame is an error.
- Every crop is resized to the card's `H×W` with `cv2.resize(..., interpolation=cv2.INTER_LINEAR)`
  (no aspect-preserving letterbox: ReID models are trained on stretched crops). It is deterministic
  for a given OpenCV build.
- The batch is assembled in a preallocated C-contiguous `uint8 [N, H, W, 3]` array (`out=`): OpenCV
  writes each resized crop straight into its slot, and a ready batch of the right size is passed
  through without a copy.

16-bit thermal input (uint16 radiometric frames and crops) is converted to 8 bits by a
`vireid.thermal.ThermalScaling` passed as `thermal=` (a fixed window of raw values, or per-image
percentiles); without one it raises `InputSpecError`, because guessing the range would silently change
what the model sees. `preprocess_boxes` scales the whole frame once, so every box shares one mapping;
`preprocess_crops` scales each crop on its own (prefer a fixed window there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from os import PathLike
from typing import Any, TypeGuard

import cv2
import numpy as np

from .errors import InputSpecError
from .thermal import ThermalScaling

INTERPOLATION = cv2.INTER_LINEAR
"""OpenCV interpolation used for every resize (documented part of the preprocessing contract)."""

Size = tuple[int, int]  # (height, width)


def _describe(array: Any) -> str:
    if isinstance(array, np.ndarray):
        return f"{array.shape} {array.dtype}"
    return type(array).__name__


def check_image(image: Any, what: str = "crops") -> np.ndarray:
    """Validate one image: uint8 `HxWx3`, `HxWx1` or `HxW` with non-zero height and width.

    Raises:
        InputSpecError: wrong type, dtype, rank or channel count (uint16 gets its own message).
    """
    if isinstance(image, np.ndarray) and image.dtype == np.uint16:
        raise InputSpecError(
            f"{what}: 16-bit (uint16) thermal image {_describe(image)} needs a scaling to 8 bits; pass "
            "thermal='window:LOW:HIGH' (raw values, e.g. window:27315:31315) or thermal='percentile:1:99'"
        )
    ok = (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3)))
        and image.shape[0] > 0
        and image.shape[1] > 0
    )
    if not ok:
        hint = ""
        if isinstance(image, (str, bytes, PathLike)):
            hint = "; crops are images, not paths: read files with vireid.imageio.read_image (or enrol them "
            hint += "with vireid.enroll_images)"
        elif isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] not in (1, 3):
            hint = "; a 3-D array is one image: a batch of grey crops is [N, H, W, 1], or pass a list"
        raise InputSpecError(f"{what} must be HxWx3 or HxW uint8, got {_describe(image)}{hint}")
    return image


def check_size(size: Sequence[int]) -> Size:
    """Validate an `(height, width)` pair of positive integers."""
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputSpecError(f"size must be (height, width), got {size!r}") from None
    if height <= 0 or width <= 0:
        raise InputSpecError(f"size must be positive (height, width), got {size!r}")
    return height, width


def allocate_batch(n: int, size: Sequence[int]) -> np.ndarray:
    """An uninitialised C-contiguous `uint8 [n, H, W, 3]` batch to fill with `preprocess_*(out=...)`."""
    height, width = check_size(size)
    return np.empty((n, height, width, 3), dtype=np.uint8)


def _check_out(out: np.ndarray | None, n: int, size: Size) -> np.ndarray:
    if out is None:
        return allocate_batch(n, size)
    expected = (n, *size, 3)
    if (
        not isinstance(out, np.ndarray)
        or out.dtype != np.uint8
        or out.shape != expected
        or not out.flags.c_contiguous
        or not out.flags.writeable
    ):
        raise InputSpecError(
            f"out must be a writable C-contiguous {expected} uint8 array, got {_describe(out)}"
        )
    return out


def resize_into(image: np.ndarray, dst: np.ndarray, *, bgr: bool = False) -> np.ndarray:
    """Resize one validated image into `dst` (`uint8 [H, W, 3]`, contiguous) as RGB; returns `dst`.

    Colour images are resized straight into `dst` (then channel-swapped in place when `bgr`); grey
    images are resized once and replicated into the three channels.
    """
    height, width = dst.shape[:2]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        small = (
            image
            if image.shape == (height, width)
            else cv2.resize(image, (width, height), None, 0, 0, INTERPOLATION)
        )
        cv2.cvtColor(small, cv2.COLOR_GRAY2RGB, dst=dst)
        return dst
    if image.shape[:2] == (height, width):
        np.copyto(dst, image)
    else:
        cv2.resize(image, (width, height), dst=dst, interpolation=INTERPOLATION)
    if bgr:
        cv2.cvtColor(dst, cv2.COLOR_BGR2RGB, dst=dst)
    return dst


def is_ready_batch(images: Any, size: Sequence[int]) -> TypeGuard[np.ndarray]:
    """True when `images` is already model input: a `uint8 [N, H, W, 3]` array of the given size."""
    return (
        isinstance(images, np.ndarray)
        and images.dtype == np.uint8
        and images.ndim == 4
        and images.shape[1:] == (*check_size(size), 3)
    )


def as_image_list(images: Any) -> list[np.ndarray] | np.ndarray:
    """Normalise the accepted forms of "some crops" to something indexable per crop.

    A 4-D array is a batch (`[N, h, w, 3]` or `[N, h, w, 1]`); a 2-D or 3-D array is ONE image; any other
    sequence is a list of images (they may differ in size).
    """
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return images
        if images.ndim in (2, 3):
            return [images]
        raise InputSpecError(
            f"crops must be HxWx3 or HxW uint8 (or a batch of them), got {_describe(images)}"
        )
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise InputSpecError(f"crops must be an array or a sequence of arrays, got {type(images).__name__}")
    return list(images)


def preprocess_crops(
    crops: Any,
    size: Sequence[int],
    *,
    bgr: bool = False,
    out: np.ndarray | None = None,
    thermal: ThermalScaling | str | None = None,
) -> np.ndarray:
    """Turn person crops of any size into model input `uint8 [N, H, W, 3]` RGB.

    Args:
        crops: one image, a list of images (sizes may differ) or a 4-D batch; see module docstring.
        size: the card's `(height, width)`.
        bgr: the crops are in OpenCV's BGR order; they are swapped to RGB.
        out: optional preallocated C-contiguous `uint8 [N, H, W, 3]` to write into (returned).
        thermal: scaling for uint16 crops (`ThermalScaling`, "window:LOW:HIGH", "percentile:LOW:HIGH").

    Returns:
        The batch. A ready RGB batch of the right size with no `out` is returned as is (no copy).

    Raises:
        InputSpecError: a crop has the wrong dtype/shape, or `out` does not fit.
    """
    height, width = check_size(size)
    items = as_image_list(crops)
    if out is None and not bgr and is_ready_batch(items, (height, width)):
        return np.ascontiguousarray(items)
    batch = _check_out(out, len(items), (height, width))
    scaling = ThermalScaling.parse(thermal) if thermal is not None else None
    for i, image in enumerate(items):
        resize_into(check_image(_to_8bit(image, scaling), f"crops[{i}]"), batch[i], bgr=bgr)
    return batch


def _to_8bit(image: Any, scaling: ThermalScaling | None) -> Any:
    """A uint16 thermal image through `scaling` (others unchanged; without a scaling `check_image` says
    what to pass)."""
    if scaling is not None and isinstance(image, np.ndarray) and image.dtype == np.uint16:
        return scaling.to_uint8(image)
    return image


def thermal_to_8bit(image: Any, thermal: ThermalScaling | str | None) -> Any:
    """`image` with a uint16 thermal image scaled to 8 bits by `thermal` (anything else unchanged).

    Raises:
        InputSpecError: `thermal` is not a valid scaling.
    """
    return _to_8bit(image, ThermalScaling.parse(thermal) if thermal is not None else None)


def _box_text(box: Sequence[float] | np.ndarray) -> str:
    """`(x1, y1, x2, y2)` as plain numbers for messages (numpy scalars would print their type)."""
    return "(" + ", ".join(f"{float(v):g}" for v in box) + ")"


def box_to_pixels(box: Sequence[float] | np.ndarray) -> tuple[int, int, int, int]:
    """Whole-pixel `(x1, y1, x2, y2)` of a box: floor of the top-left, ceil of the bottom-right corner."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise InputSpecError(f"box coordinates must be finite numbers, got {_box_text(box)}")
    return math.floor(x1), math.floor(y1), math.ceil(x2), math.ceil(y2)


def crop_box(frame: np.ndarray, box: Sequence[float] | np.ndarray, *, pad_value: int = 0) -> np.ndarray:
    """The pixels of `box` (`x1, y1, x2, y2`) in `frame`, padded with `pad_value` where it leaves the frame.

    Returns a view of `frame` when the box lies inside it, a padded copy otherwise.

    Raises:
        InputSpecError: the box is empty (x2 <= x1 or y2 <= y1) or lies entirely outside the frame.
    """
    x1, y1, x2, y2 = box_to_pixels(box)
    height, width = frame.shape[:2]
    if x2 <= x1 or y2 <= y1:
        raise InputSpecError(f"box {_box_text(box)} is empty; expected x1 < x2 and y1 < y2 (pixels, xyxy)")
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if cx2 <= cx1 or cy2 <= cy1:
        raise InputSpecError(
            f"box {_box_text(box)} lies entirely outside the {width}x{height} frame; expected xyxy pixel "
            "coordinates that overlap the frame"
        )
    view = frame[cy1:cy2, cx1:cx2]
    if (cx1, cy1, cx2, cy2) == (x1, y1, x2, y2):
        return view
    value = (pad_value,) * (1 if frame.ndim == 2 else frame.shape[2])
    return cv2.copyMakeBorder(
        view, cy1 - y1, y2 - cy2, cx1 - x1, x2 - cx2, cv2.BORDER_CONSTANT, value=value
    ).reshape((y2 - y1, x2 - x1, *frame.shape[2:]))


def as_boxes(boxes: Any) -> np.ndarray:
    """Validate boxes as a float64 `[K, 4]` array (one `[4]` box is accepted)."""
    try:
        array = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputSpecError(f"boxes must be numbers shaped (K, 4) x1,y1,x2,y2, got {boxes!r}") from None
    if array.ndim == 1 and array.shape == (4,):
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise InputSpecError(f"boxes must be (K, 4) x1,y1,x2,y2 pixel coordinates, got shape {array.shape}")
    return array


def preprocess_boxes(
    frame: np.ndarray,
    boxes: Any,
    size: Sequence[int],
    *,
    bgr: bool = False,
    pad_value: int = 0,
    out: np.ndarray | None = None,
    thermal: ThermalScaling | str | None = None,
) -> np.ndarray:
    """Crop `boxes` from `frame` and turn them into model input `uint8 [K, H, W, 3]` RGB.

    Args:
        frame: uint8 `HxWx3` (RGB, or BGR with `bgr=True`), `HxWx1` or `HxW` (infrared).
        boxes: `(K, 4)` `x1, y1, x2, y2` pixel coordinates; see `crop_box` for clipping and padding.
        size: the card's `(height, width)`.
        bgr: the frame is in OpenCV's BGR order (e.g. from `cv2.VideoCapture`).
        pad_value: constant (0..255) for the part of a box outside the frame.
        out: optional preallocated C-contiguous `uint8 [K, H, W, 3]` to write into.
        thermal: scaling for a uint16 frame, applied to the whole frame before cropping.

    Raises:
        InputSpecError: bad frame, boxes, pad value or `out`.
    """
    frame = check_image(thermal_to_8bit(frame, thermal), "frame")
    array = as_boxes(boxes)
    if not (isinstance(pad_value, (int, np.integer)) and 0 <= int(pad_value) <= 255):
        raise InputSpecError(f"pad_value must be an integer in 0..255, got {pad_value!r}")
    batch = _check_out(out, len(array), check_size(size))
    for i, box in enumerate(array):
        try:
            crop = crop_box(frame, box, pad_value=int(pad_value))
        except InputSpecError as exc:
            raise InputSpecError(f"boxes[{i}]: {exc}") from None
        resize_into(crop, batch[i], bgr=bgr)
    return batch
