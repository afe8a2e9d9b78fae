"""Camera profiles (light, optics, sensor) and the static scene each camera looks at.

A profile holds what differs between cameras at difficulty 1; `Camera.at(difficulty)` scales the
deviations from a neutral camera. Backdrops are full scenes (walls, doors, posters, trees, cars ...)
rendered once per camera from (seed, camera name); person crops take random windows of them, and the
video scenes use them whole, so a background-subtraction detector sees a static, cluttered scene.
Visible backdrops are RGB in [0, 1]; thermal ones are apparent temperature in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import cv2
import numpy as np

from vireid.modality import Modality

from .seeding import rng_for

BACKDROP_SIZE = (480, 640)  # H, W


@dataclass(frozen=True)
class Camera:
    """One camera: modality, setting, light and sensor.

    Attributes:
        name: key of the camera's scene seed (e.g. "sysu-cam3").
        modality: visible or infrared.
        indoor: indoor or outdoor scene.
        crop_height: range of native crop heights in pixels.
        gains: per-channel light colour (visible) .
        exposure: overall brightness factor (visible) or thermal span (infrared).
        gamma: tone curve exponent.
        haze: blend towards grey (low contrast).
        light_slope: strength of directional shading across the person.
        noise: sensor noise sigma in grey levels.
        blur: optical blur sigma in pixels.
        resolution: sensor resolution relative to the crop (infrared cameras see fewer pixels).
        level: infrared black level (apparent temperature 0 maps here, in [0, 1]).
    """

    name: str
    modality: Modality
    indoor: bool
    crop_height: tuple[int, int] = (128, 224)
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    exposure: float = 1.0
    gamma: float = 1.0
    haze: float = 0.0
    light_slope: float = 0.15
    noise: float = 3.0
    blur: float = 0.6
    resolution: float = 1.0
    level: float = 0.05

    def at(self, difficulty: float) -> Camera:
        """This camera with its deviations from a neutral one scaled by `difficulty`."""
        d = float(difficulty)

        def scale(value: float, neutral: float) -> float:
            return neutral + (value - neutral) * d

        return replace(
            self,
            gains=tuple(scale(g, 1.0) for g in self.gains),  # type: ignore[arg-type]
            exposure=scale(self.exposure, 1.0),
            gamma=scale(self.gamma, 1.0),
            haze=min(0.6, self.haze * d),
            light_slope=self.light_slope * d,
            noise=0.8 + self.noise * d,
            blur=0.35 + self.blur * d,
            resolution=min(1.0, 1.0 / (1.0 + (1.0 / self.resolution - 1.0) * d)),
        )


V, IR = Modality.VISIBLE, Modality.INFRARED
SYSU_CAMERAS: dict[int, Camera] = {
    1: Camera("sysu-cam1", V, True, (160, 256), (1.06, 1.0, 0.92), 1.0, 1.0, 0.0, 0.15, 2.0, 0.5),
    2: Camera("sysu-cam2", V, True, (128, 192), (0.97, 1.04, 1.0), 0.86, 1.1, 0.05, 0.1, 3.5, 0.7),
    3: Camera("sysu-cam3", IR, True, (128, 208), exposure=0.85, noise=5.0, blur=0.9, resolution=0.55),
    4: Camera("sysu-cam4", V, False, (144, 240), (0.97, 1.0, 1.06), 1.12, 0.92, 0.0, 0.3, 2.0, 0.5),
    5: Camera("sysu-cam5", V, False, (128, 208), (1.02, 1.0, 0.97), 0.95, 1.0, 0.15, 0.1, 3.0, 0.8),
    6: Camera(
        "sysu-cam6", IR, False, (128, 192), exposure=1.1, noise=6.0, blur=1.1, resolution=0.5, level=0.0
    ),
}
REGDB_CAMERAS: dict[Modality, Camera] = {
    V: Camera("regdb-visible", V, False, (128, 128), (1.0, 1.0, 1.05), 1.05, 0.95, 0.05, 0.2, 2.5, 0.6),
    IR: Camera("regdb-thermal", IR, False, (128, 128), exposure=1.0, noise=5.0, blur=1.2, resolution=0.5),
}
SCENE_CAMERAS: dict[Modality, Camera] = {
    V: Camera("scene-visible", V, True, gains=(1.05, 1.0, 0.92), noise=1.5, blur=0.4),
    IR: Camera("scene-infrared", IR, True, noise=3.0, blur=0.8, resolution=0.5),
}


def _rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, value) -> None:
    cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), value, -1)


def _value(rng: np.random.Generator, thermal: bool, lo: float = 0.15, hi: float = 0.85):
    """A random clutter value: a temperature (float) or an RGB colour (tuple)."""
    if thermal:
        return float(rng.uniform(lo * 0.6, hi * 0.7))
    return tuple(float(v) for v in rng.uniform(lo, hi, 3))


def _between(rng: np.random.Generator, lo: float, hi: float) -> float:
    """`rng.uniform(lo, hi)`, with `hi` raised to `lo` on small backdrops (the constants are pixels of a
    480x640 scene; a small infrared video frame would otherwise make the range empty)."""
    return float(rng.uniform(lo, max(lo, hi)))


def _neutral(rng: np.random.Generator, lo: float, hi: float) -> tuple[float, float, float]:
    """A wall, floor or pavement colour: grey with a slight tint."""
    grey, tint = float(rng.uniform(lo, hi)), rng.uniform(-0.05, 0.05, 3)
    return tuple(float(v) for v in np.clip(grey + tint, 0.0, 1.0))  # type: ignore[return-value]


def _indoor(img: np.ndarray, rng: np.random.Generator, thermal: bool, clutter: int) -> None:
    h, w = img.shape[:2]
    floor_y = int(h * rng.uniform(0.55, 0.7))
    wall = 0.34 if thermal else _neutral(rng, 0.45, 0.85)
    floor = 0.3 if thermal else _neutral(rng, 0.2, 0.5)
    _rect(img, 0, 0, w, floor_y, wall)
    _rect(img, 0, floor_y, w, h, floor)
    for tile_x in range(0, w, int(rng.integers(40, 90))):  # floor tiles
        end = (int(tile_x + (tile_x - w / 2) * 0.8), h)
        cv2.line(img, (tile_x, floor_y), end, 0.27 if thermal else (0.3, 0.3, 0.3), 1)
    for _ in range(clutter):
        kind = rng.integers(4)
        x, cw = rng.uniform(0, w), rng.uniform(30, 110)
        if kind == 0:  # door
            _rect(img, x, floor_y - rng.uniform(150, 220), x + cw, floor_y, _value(rng, thermal, 0.2, 0.6))
        elif kind == 1:  # poster or window (cool in infrared)
            y = _between(rng, 20, floor_y - 120)
            _rect(img, x, y, x + cw, y + rng.uniform(40, 100), _value(rng, thermal, 0.05, 0.95))
        elif kind == 2:  # furniture
            _rect(img, x, floor_y - rng.uniform(30, 90), x + cw * 1.5, floor_y + 10, _value(rng, thermal))
        else:  # lamp, radiator or screen: warm spot in infrared
            y = _between(rng, 30, floor_y - 40)
            value = float(rng.uniform(0.55, 0.9)) if thermal else _value(rng, thermal, 0.6, 1.0)
            _rect(img, x, y, x + cw * 0.4, y + rng.uniform(15, 40), value)


def _outdoor(img: np.ndarray, rng: np.random.Generator, thermal: bool, clutter: int) -> None:
    h, w = img.shape[:2]
    ground_y = int(h * rng.uniform(0.45, 0.6))
    _rect(img, 0, 0, w, ground_y, 0.04 if thermal else (0.62, 0.74, 0.88))
    _rect(img, 0, ground_y, w, h, 0.4 if thermal else _neutral(rng, 0.3, 0.5))
    for _ in range(clutter):
        kind = rng.integers(3)
        x = rng.uniform(-40, w)
        if kind == 0:  # building with windows
            bw, bh = rng.uniform(90, 220), _between(rng, 120, ground_y)
            _rect(img, x, ground_y - bh, x + bw, ground_y, _value(rng, thermal, 0.3, 0.8))
            win = _value(rng, thermal, 0.05, 0.3)
            for wy in np.arange(ground_y - bh + 12, ground_y - 20, 28):
                for wx in np.arange(x + 10, x + bw - 15, 26):
                    _rect(img, wx, wy, wx + 12, wy + 14, win)
        elif kind == 1:  # tree
            y = ground_y + rng.uniform(-10, 40)
            _rect(img, x - 5, y - 90, x + 5, y, 0.3 if thermal else (0.3, 0.2, 0.1))
            crown = 0.22 if thermal else (0.12, rng.uniform(0.3, 0.5), 0.12)
            cv2.ellipse(img, (int(x), int(y - 110)), (int(rng.uniform(30, 60)), 45), 0, 0, 360, crown, -1)
        else:  # car: engine warm in infrared
            y = ground_y + _between(rng, 10, h - ground_y - 20)
            body = float(rng.uniform(0.45, 0.75)) if thermal else _value(rng, thermal, 0.05, 0.9)
            _rect(img, x, y - 40, x + 110, y, body)
            _rect(img, x + 20, y - 62, x + 80, y - 38, 0.2 if thermal else (0.2, 0.25, 0.3))


@lru_cache(maxsize=16)
def backdrop(
    seed: int, camera: Camera, difficulty: float, size: tuple[int, int] = BACKDROP_SIZE
) -> np.ndarray:
    """The static scene a camera looks at: float32 `[H, W, 3]` RGB or `[H, W]` temperature, in [0, 1]."""
    rng = rng_for(seed, "backdrop", camera.name)
    thermal = camera.modality is Modality.INFRARED
    img: np.ndarray = np.zeros(size if thermal else (*size, 3), np.float32)
    clutter = round((6 + 10 * float(rng.random())) * min(1.5, 0.3 + 0.7 * difficulty))
    (_indoor if camera.indoor else _outdoor)(img, rng, thermal, clutter)
    texture: np.ndarray = rng.normal(0.0, 0.03 if thermal else 0.04, size).astype(np.float32)
    texture = cv2.GaussianBlur(texture, (0, 0), 1.5)
    img += texture if thermal else texture[..., None]
    img = cv2.GaussianBlur(img, (0, 0), 0.8)
    return np.clip(img, 0.0, 1.0)


def backdrop_window(
    seed: int, camera: Camera, difficulty: float, rng: np.random.Generator, out_hw: tuple[int, int]
) -> np.ndarray:
    """A random window of the camera's backdrop, resized to `out_hw` (a crop's background)."""
    scene = backdrop(seed, camera, difficulty)
    sh, sw = scene.shape[:2]
    h, w = out_hw
    win_h = int(rng.uniform(0.35, 0.8) * sh)
    win_w = max(4, int(win_h * w / h))
    y0 = int(rng.integers(0, sh - win_h + 1))
    x0 = int(rng.integers(0, max(1, sw - win_w + 1)))
    window = scene[y0 : y0 + win_h, x0 : x0 + win_w]
    return cv2.resize(window, (w, h), interpolation=cv2.INTER_AREA)
