"""Visible and infrared renderers: part map -> image, with each camera's light, optics and sensor.

The visible renderer colours parts by the identity's clothing colours and patterns, shades them, and
applies the camera's white balance, exposure, tone curve, haze, blur and noise. The infrared renderer
ignores colour: parts get apparent temperatures (skin hot, hair and thick fabric cooler, hats and bags
cool, patterns as emissivity steps), edges cool off, and the image goes through a low-resolution,
blurred, noisy sensor with automatic gain. Its output is one channel: no hue at all. Hats, bags and
patterns are given enough thermal contrast to survive that sensor: they carry identity in both
modalities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from vireid.modality import Modality

from .body import NUM_PARTS, Part, Placement, Pose, draw_person
from .cameras import Camera, backdrop_window
from .person import Garment, Hat, Identity, Pattern

PERSON_EXTENT = 1.045  # head top to shoe sole, in units of the body height
# A hat insulates the head: a cap shows cooler than hair (0.5), a knitted beanie cooler still.
_HAT_WARMTH = {Hat.NONE: 0.5, Hat.CAP: 0.3, Hat.BEANIE: 0.22}
_PATTERN_STEP = 0.2  # apparent-temperature drop of a pattern's second fabric


@dataclass(frozen=True)
class Occluder:
    """Colour (visible, RGB in [0, 1]) and apparent temperature (infrared) of an occluding object."""

    colour: tuple[float, float, float]
    temperature: float


def sample_pose(rng: np.random.Generator, difficulty: float, front_back_only: bool = False) -> Pose:
    """A random pose; difficulty widens the views (0: front/back only) and the stride."""
    base = 0.0 if rng.random() < 0.5 else math.pi
    spread = (0.35 if front_back_only else math.pi / 2) * min(1.0, difficulty)
    view = base + float(rng.uniform(-spread, spread))
    swing = min(1.0, difficulty) * float(rng.uniform(0.4, 1.0))
    return Pose(view=view, phase=float(rng.uniform(0, 2 * math.pi)), swing=swing)


def sample_placement(rng: np.random.Generator, difficulty: float, hw: tuple[int, int]) -> Placement:
    """Person placement in a crop of size `hw`: scale and position jitter grow with difficulty."""
    h, w = hw
    fill = 0.92 + float(rng.uniform(-0.06, 0.05)) * difficulty
    height = h * fill / PERSON_EXTENT
    top = (h - height * PERSON_EXTENT) / 2 + float(rng.uniform(-0.03, 0.03)) * h * difficulty
    cx = w / 2 + float(rng.uniform(-0.08, 0.08)) * w * difficulty
    return Placement(cx=cx, top=top, height=height)


def occlude(labels: np.ndarray, rng: np.random.Generator, difficulty: float) -> Occluder | None:
    """Maybe draw an occluder (pole, low object, passer-by) into the part map."""
    if rng.random() >= min(0.6, 0.25 * difficulty):
        return None
    h, w = labels.shape
    size = float(rng.uniform(0.5, 1.0)) * min(1.5, difficulty)
    kind = int(rng.integers(3))
    part = int(Part.OCCLUDER)
    if kind == 0:  # pole
        x, half = rng.uniform(0, w), max(2, 0.08 * w * size)
        cv2.rectangle(labels, (int(x - half), 0), (int(x + half), h), part, -1)
        temperature = float(rng.uniform(0.15, 0.4))
    elif kind == 1:  # bench, bin, table: covers the legs
        top = int(h * (1.0 - rng.uniform(0.12, 0.3) * size))
        cv2.rectangle(
            labels, (int(rng.uniform(-0.3, 0.3) * w), top), (int(w * rng.uniform(0.7, 1.3)), h), part, -1
        )
        temperature = float(rng.uniform(0.2, 0.45))
    else:  # another person passing at a side: warm
        x = 0 if rng.random() < 0.5 else w
        axes = (int(w * 0.25 * size) + 1, int(h * 0.45))
        cv2.ellipse(labels, (x, int(h * rng.uniform(0.4, 0.7))), axes, 0, 0, 360, part, -1)
        temperature = float(rng.uniform(0.55, 0.8))
    colour = tuple(float(v) for v in rng.uniform(0.05, 0.9, 3))
    return Occluder(colour, temperature)  # type: ignore[arg-type]


def _grid(hw: tuple[int, int], place: Placement) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in body units relative to the placement: u across, v down."""
    h, w = hw
    u = (np.arange(w, dtype=np.float32) - place.cx) / place.height
    v = (np.arange(h, dtype=np.float32) - place.top) / place.height
    return u[None, :], v[:, None]


def _pattern(garment: Garment, u: np.ndarray, v: np.ndarray) -> np.ndarray | None:
    p = garment.period
    if garment.pattern is Pattern.PLAIN:
        return None
    rows = (np.floor(v / p).astype(np.int32) & 1).astype(bool)
    cols = (np.floor((u + 4.0) / (p * 0.9)).astype(np.int32) & 1).astype(bool)
    if garment.pattern is Pattern.HSTRIPES:
        return np.broadcast_to(rows, (v.shape[0], u.shape[1]))
    if garment.pattern is Pattern.VSTRIPES:
        return np.broadcast_to(cols, (v.shape[0], u.shape[1]))
    return rows ^ cols


def pattern_mask(labels: np.ndarray, identity: Identity, place: Placement) -> np.ndarray:
    """Pixels showing the second fabric of a patterned garment."""
    u, v = _grid(labels.shape, place)
    alt = np.zeros(labels.shape, bool)
    for part, garment in (
        (Part.TOP, identity.top),
        (Part.BOTTOM, identity.bottom),
        (Part.OUTER, identity.outer),
    ):
        stripes = _pattern(garment, u, v)
        if stripes is not None:
            alt |= (labels == part) & stripes
    return alt


def _core(mask: np.ndarray, place: Placement) -> np.ndarray:
    """1 inside the body, falling towards the silhouette (for shading and for cooler edges)."""
    sigma = max(0.8, 0.025 * place.height)
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)


def _visible_luts(identity: Identity, occluder: Occluder | None) -> tuple[np.ndarray, np.ndarray]:
    base = np.zeros((NUM_PARTS, 3), np.float32)
    alt = np.zeros((NUM_PARTS, 3), np.float32)
    colours = {
        Part.SKIN: identity.skin,
        Part.HAIR: identity.hair_colour,
        Part.SHOES: identity.shoe_colour,
        Part.HAT: identity.hat_colour,
        Part.BAG: identity.bag_colour,
    }
    for part, colour in colours.items():
        base[part] = alt[part] = colour
    for part, garment in (
        (Part.TOP, identity.top),
        (Part.BOTTOM, identity.bottom),
        (Part.OUTER, identity.outer),
    ):
        base[part], alt[part] = garment.colour, garment.alt_colour
    base /= 255.0
    alt /= 255.0
    if occluder is not None:
        base[Part.OCCLUDER] = alt[Part.OCCLUDER] = occluder.colour
    return base, alt


def _thermal_luts(
    identity: Identity, occluder: Occluder | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    base = np.zeros(NUM_PARTS, np.float32)
    base[Part.SKIN] = rng.uniform(0.93, 1.0)
    base[Part.HAIR] = 0.5
    base[Part.TOP] = identity.top.warmth
    base[Part.BOTTOM] = identity.bottom.warmth
    base[Part.OUTER] = identity.outer.warmth * 0.8
    base[Part.SHOES] = 0.3
    base[Part.HAT] = _HAT_WARMTH[identity.hat]
    base[Part.BAG] = identity.bag_warmth
    if occluder is not None:
        base[Part.OCCLUDER] = occluder.temperature
    alt = base.copy()
    alt[[Part.TOP, Part.BOTTOM, Part.OUTER]] -= _PATTERN_STEP
    return base, alt


def shade_visible(
    labels: np.ndarray,
    identity: Identity,
    place: Placement,
    occluder: Occluder | None,
    slope: float,
    light: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Person colours `[H, W, 3]` in [0, 1] and the person mask (occluders included)."""
    base, alt = _visible_luts(identity, occluder)
    patt = pattern_mask(labels, identity, place)
    img = np.where(patt[..., None], alt[labels], base[labels])
    mask = labels > 0
    person = mask & (labels != Part.OCCLUDER)
    u, v = _grid(labels.shape, place)
    shade = (0.72 + 0.28 * _core(person, place)) * (1.0 + slope * np.clip(u * 4.0 * light, -1, 1))
    shade = shade * (1.05 - 0.12 * np.clip(v, 0, 1))
    img *= np.where(person, shade, 1.0)[..., None]
    return img, mask


def shade_infrared(
    labels: np.ndarray,
    identity: Identity,
    place: Placement,
    occluder: Occluder | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Apparent temperature `[H, W]` in [0, 1] of the person and occluders, and their mask."""
    base, alt = _thermal_luts(identity, occluder, rng)
    patt = pattern_mask(labels, identity, place)
    temp = np.where(patt, alt[labels], base[labels])
    mask = labels > 0
    person = mask & (labels != Part.OCCLUDER)
    temp *= np.where(person, 0.78 + 0.22 * _core(person, place), 1.0)
    return temp, mask


def visible_sensor(
    img: np.ndarray, camera: Camera, rng: np.random.Generator, difficulty: float
) -> np.ndarray:
    """Apply white balance, exposure, tone curve, haze, blur and noise; returns uint8 RGB."""
    jitter = 1.0 + 0.08 * difficulty * float(rng.standard_normal())
    cast = 1.0 + 0.03 * difficulty * rng.standard_normal(3)
    gains = np.asarray(camera.gains, np.float32) * cast.astype(np.float32) * camera.exposure * jitter
    out = np.clip(img * gains, 0.0, 1.0) ** (1.0 / max(0.3, camera.gamma))
    out = out * (1.0 - camera.haze) + 0.6 * camera.haze
    out = cv2.GaussianBlur(out.astype(np.float32), (0, 0), camera.blur)
    out = out * 255.0 + rng.normal(0.0, camera.noise, out.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def infrared_sensor(
    temp: np.ndarray, camera: Camera, rng: np.random.Generator, difficulty: float
) -> np.ndarray:
    """Map temperature to grey through a low-resolution, blurred, noisy sensor with AGC; uint8 `[H, W]`."""
    h, w = temp.shape
    gain = camera.exposure * (1.0 + 0.12 * difficulty * float(rng.standard_normal()))
    level = camera.level + 0.04 * difficulty * float(rng.standard_normal())
    grey = (level + gain * temp) * 255.0
    lh, lw = max(8, round(h * camera.resolution)), max(4, round(w * camera.resolution))
    small: np.ndarray = cv2.resize(grey.astype(np.float32), (lw, lh), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), camera.blur)
    small += rng.normal(0.0, camera.noise, small.shape).astype(np.float32)
    small += rng.normal(0.0, camera.noise * 0.5, (1, lw)).astype(np.float32)  # column fixed-pattern noise
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def crop_size(rng: np.random.Generator, camera: Camera) -> tuple[int, int]:
    """Native (H, W) of one crop: height from the camera's range, width about half of it."""
    lo, hi = camera.crop_height
    h = int(rng.integers(lo, hi + 1))
    return h, max(16, round(h * float(rng.uniform(0.42, 0.52))))


def render_crop(
    seed: int,
    identity: Identity,
    camera: Camera,
    difficulty: float,
    rng: np.random.Generator,
    size: tuple[int, int] | None = None,
    front_back_only: bool = False,
) -> np.ndarray:
    """One person crop as a camera sees it: uint8 `[H, W, 3]` RGB (visible) or `[H, W]` grey (infrared).

    Args:
        seed: dataset seed (selects the camera's backdrop).
        identity: who is shown.
        camera: camera profile already scaled to `difficulty` (`Camera.at`).
        difficulty: nuisance scale.
        rng: generator seeded for this image alone.
        size: (H, W) of the crop; drawn from the camera's range when omitted.
        front_back_only: restrict views to front and back (RegDB).
    """
    hw = size or crop_size(rng, camera)
    pose = sample_pose(rng, difficulty, front_back_only)
    place = sample_placement(rng, difficulty, hw)
    labels = np.zeros(hw, np.uint8)
    draw_person(labels, identity, pose, place)
    occluder = occlude(labels, rng, difficulty)
    background = backdrop_window(seed, camera, difficulty, rng, hw)
    if camera.modality is Modality.VISIBLE:
        light = 1.0 if rng.random() < 0.5 else -1.0
        person, mask = shade_visible(labels, identity, place, occluder, camera.light_slope, light)
        img = np.where(mask[..., None], person, background)
        return visible_sensor(img, camera, rng, difficulty)
    temp, mask = shade_infrared(labels, identity, place, occluder, rng)
    return infrared_sensor(np.where(mask, temp, background), camera, rng, difficulty)
