"""16-bit (radiometric) thermal frames → the 8-bit images the models take.

Many thermal cameras deliver uint16 frames whose values are proportional to temperature (often
centi-Kelvin, or raw counts). The model was trained on 8-bit images, so the range that matters has to be
mapped onto 0–255. Two ways, chosen per source and recorded in its state messages:

- **window** `(low, high)`: a fixed range of raw values (e.g. 27315–31315 = 0–40 °C in centi-Kelvin)
  maps linearly to 0–255, values outside are clipped. Stable across frames: the same person has the same
  grey level whatever else is in view. Use it for radiometric cameras whose unit is known.
- **percentile** `(low, high)`: per frame, the `low`-th and `high`-th percentiles of the frame map to 0
  and 255 (automatic gain, like an 8-bit camera's AGC). Default `(1, 99)`: robust to a few hot or dead
  pixels, unlike a plain min–max stretch.

`ThermalScaling.parse("window:27315:31315")` / `"percentile:1:99"` is the CLI form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputSpecError

MODES = ("window", "percentile")


@dataclass(frozen=True)
class ThermalScaling:
    """How 16-bit thermal values become 8-bit grey levels.

    Attributes:
        mode: `window` (fixed raw range) or `percentile` (per-frame percentiles).
        low, high: raw values (window) or percentiles in [0, 100] (percentile), low < high.
    """

    mode: str = "percentile"
    low: float = 1.0
    high: float = 99.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputSpecError(f"thermal scaling mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.low < self.high:
            raise InputSpecError(f"thermal scaling needs low < high, got {self.low} and {self.high}")
        if self.mode == "percentile" and not 0.0 <= self.low < self.high <= 100.0:
            raise InputSpecError(f"percentiles must lie in [0, 100], got {self.low} and {self.high}")
        if self.mode == "window" and not (self.low >= 0 and self.high <= 65535):
            raise InputSpecError(f"a 16-bit window must lie in [0, 65535], got {self.low} and {self.high}")

    @classmethod
    def parse(cls, value: ThermalScaling | str | None) -> ThermalScaling:
        """`ThermalScaling`, `"window:LOW:HIGH"`, `"percentile:LOW:HIGH"` or None (the default)."""
        if value is None:
            return cls()
        if isinstance(value, ThermalScaling):
            return value
        parts = str(value).split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            low, high = float(parts[1]), float(parts[2])
        except ValueError:
            raise InputSpecError(
                f"thermal scaling {value!r}: expected window:LOW:HIGH (raw 16-bit values, e.g. "
                "window:27315:31315) or percentile:LOW:HIGH (e.g. percentile:1:99)"
            ) from None
        return cls(parts[0].strip().lower(), low, high)

    def describe(self) -> str:
        """One line for logs and source-state messages."""
        if self.mode == "window":
            return f"16-bit thermal: fixed window {self.low:g}..{self.high:g} -> 0..255"
        return f"16-bit thermal: per-frame percentiles {self.low:g}..{self.high:g} -> 0..255"

    def to_uint8(self, image: np.ndarray) -> np.ndarray:
        """A uint16 `HxW` or `HxWx1` frame as uint8 `HxW`."""
        frame = _single_channel(image)
        if self.mode == "window":
            low, high = self.low, self.high
        else:
            low, high = (float(v) for v in np.percentile(frame, (self.low, self.high)))
        if high <= low:  # a flat frame (or window collapsed by the data): mid grey, no division by zero
            return np.full(frame.shape, 128, np.uint8)
        scaled = (frame.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
        return (np.clip(scaled, 0.0, 255.0) + 0.5).astype(np.uint8)


def _single_channel(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint16:
        raise InputSpecError(
            f"expected a uint16 thermal frame, got {getattr(image, 'dtype', type(image).__name__)}"
        )
    frame = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
    if frame.ndim != 2 or 0 in frame.shape:  # checked after the channel is dropped: (0, 0, 1) is empty too
        raise InputSpecError(f"a 16-bit thermal frame must be HxW or HxWx1, got shape {image.shape}")
    return frame
