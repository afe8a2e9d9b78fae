"""Identity attributes: what makes one synthetic person different from another.

Identity lives mostly in things both modalities see: build and stature (silhouette), clothing cut
(sleeves, trousers/shorts/skirt/dress, coat), textures (stripes, checks), fabric thickness (how warm a
garment looks to a thermal camera), accessories and hair. Colours are drawn too, but only the visible
renderer uses them. An identity depends only on (seed, pid), never on how many identities are generated.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from .seeding import rng_for


class Build(enum.IntEnum):
    """Body width."""

    SLIM = 0
    MEDIUM = 1
    BROAD = 2


class Stature(enum.IntEnum):
    """Height; crops are tight, so it shows as the body's aspect ratio and leg length."""

    SHORT = 0
    MEDIUM = 1
    TALL = 2


class Sleeve(enum.IntEnum):
    """Sleeve length of the top garment."""

    NONE = 0
    SHORT = 1
    LONG = 2


class Lower(enum.IntEnum):
    """Lower garment."""

    SHORTS = 0
    TROUSERS = 1
    SKIRT = 2  # knee length
    DRESS = 3  # long, same fabric as the top


class Coat(enum.IntEnum):
    """Outer layer over the top."""

    NONE = 0
    JACKET = 1  # hip length, open at the front
    LONG = 2  # knee length


class Pattern(enum.IntEnum):
    """Texture of a garment: in visible a second colour, in infrared an emissivity difference."""

    PLAIN = 0
    HSTRIPES = 1
    VSTRIPES = 2
    CHECKS = 3


class Hair(enum.IntEnum):
    """Hair length."""

    SHORT = 0
    MEDIUM = 1
    LONG = 2


class Hat(enum.IntEnum):
    """Headwear."""

    NONE = 0
    CAP = 1
    BEANIE = 2


class Bag(enum.IntEnum):
    """Carried bag."""

    NONE = 0
    BACKPACK = 1
    SHOULDER = 2
    HANDBAG = 3


# Fabric thickness -> thermal brightness in [0, 1] (thin fabric lets body heat through).
THICKNESS_WARMTH = (0.80, 0.64, 0.48)

# Clothing colours (RGB), a palette of common garment colours; each is jittered per identity.
CLOTHING_COLOURS = (
    (20, 20, 24),  # black
    (235, 235, 230),  # white
    (128, 128, 130),  # grey
    (30, 40, 90),  # navy
    (175, 30, 35),  # red
    (40, 90, 175),  # blue
    (40, 110, 55),  # green
    (205, 185, 140),  # beige
    (100, 65, 40),  # brown
    (225, 190, 40),  # yellow
    (220, 120, 160),  # pink
    (110, 50, 130),  # purple
    (230, 120, 30),  # orange
    (70, 120, 120),  # teal
)
SKIN_TONES = ((245, 210, 185), (225, 180, 150), (195, 145, 110), (150, 100, 70), (100, 65, 45))
HAIR_COLOURS = ((20, 15, 12), (60, 40, 25), (110, 75, 45), (200, 165, 100), (150, 150, 150))
Colour = tuple[int, int, int]


@dataclass(frozen=True)
class Garment:
    """One piece of clothing: visible colours, texture, and fabric warmth for the thermal renderer.

    Attributes:
        colour: main RGB colour.
        alt_colour: second RGB colour of the pattern.
        pattern: texture kind.
        period: pattern period as a fraction of body height (coarse enough to show in infrared).
        thickness: 0 thin, 1 medium, 2 thick.
    """

    colour: Colour
    alt_colour: Colour
    pattern: Pattern
    period: float
    thickness: int

    @property
    def warmth(self) -> float:
        """Thermal brightness in [0, 1] of this fabric over the body."""
        return THICKNESS_WARMTH[self.thickness]


@dataclass(frozen=True)
class Identity:
    """Everything that stays the same about one person across cameras and modalities.

    Attributes:
        pid: identity number (1-based, as in the dataset layouts).
        build, stature: silhouette.
        width_scale, leg_ratio, head_scale: continuous body proportions.
        sleeve, lower, coat, hair, hat, bag: cut and accessories.
        top, bottom, outer: garments (outer is unused when `coat` is NONE).
        skin, hair_colour, hat_colour, bag_colour, shoe_colour: visible-only colours.
        bag_side: +1 or -1, which side a shoulder bag or handbag hangs on.
        bag_warmth: thermal brightness of the bag (a cool object, below walls and clothing).
    """

    pid: int
    build: Build
    stature: Stature
    width_scale: float
    leg_ratio: float
    head_scale: float
    sleeve: Sleeve
    lower: Lower
    coat: Coat
    hair: Hair
    hat: Hat
    bag: Bag
    top: Garment
    bottom: Garment
    outer: Garment
    skin: Colour
    hair_colour: Colour
    hat_colour: Colour
    bag_colour: Colour
    shoe_colour: Colour
    bag_side: int
    bag_warmth: float

    def attributes(self) -> dict[str, str]:
        """The discrete attributes by name (for documentation, figures and tests)."""
        names = ("build", "stature", "sleeve", "lower", "coat", "hair", "hat", "bag")
        out = {name: getattr(self, name).name.lower() for name in names}
        out["top_pattern"] = self.top.pattern.name.lower()
        out["bottom_pattern"] = self.bottom.pattern.name.lower()
        out["top_thickness"] = str(self.top.thickness)
        return out


def _pick(rng: np.random.Generator, options: type[enum.IntEnum], weights: tuple[float, ...]) -> enum.IntEnum:
    p = np.asarray(weights, dtype=float)
    return options(int(rng.choice(len(p), p=p / p.sum())))


def _colour(rng: np.random.Generator, palette: tuple[Colour, ...], jitter: float = 18.0) -> Colour:
    base = np.asarray(palette[int(rng.integers(len(palette)))], dtype=float)
    value = np.clip(base + rng.normal(0.0, jitter, 3), 0, 255)
    return (int(value[0]), int(value[1]), int(value[2]))


def _garment(rng: np.random.Generator, pattern_weights: tuple[float, ...]) -> Garment:
    colour = _colour(rng, CLOTHING_COLOURS)
    alt = _colour(rng, CLOTHING_COLOURS)
    while sum(abs(a - b) for a, b in zip(alt, colour, strict=True)) < 120:  # patterns must show
        alt = _colour(rng, CLOTHING_COLOURS)
    pattern = Pattern(_pick(rng, Pattern, pattern_weights))
    return Garment(colour, alt, pattern, float(rng.uniform(0.055, 0.1)), int(rng.integers(3)))


def sample_identity(seed: int, pid: int) -> Identity:
    """The identity `pid` of the dataset with master seed `seed` (independent of the dataset size)."""
    rng = rng_for(seed, "identity", pid)
    lower = Lower(_pick(rng, Lower, (0.2, 0.45, 0.2, 0.15)))
    top = _garment(rng, (0.35, 0.25, 0.2, 0.2))
    bottom = _garment(rng, (0.65, 0.1, 0.1, 0.15))
    if lower is Lower.DRESS:
        bottom = top
    return Identity(
        pid=pid,
        build=Build(int(rng.integers(3))),
        stature=Stature(int(rng.integers(3))),
        width_scale=float(rng.uniform(0.94, 1.06)),
        leg_ratio=float(rng.uniform(-0.02, 0.02)),
        head_scale=float(rng.uniform(0.93, 1.07)),
        sleeve=Sleeve(_pick(rng, Sleeve, (0.25, 0.35, 0.4))),
        lower=lower,
        coat=Coat(_pick(rng, Coat, (0.55, 0.25, 0.2))),
        hair=Hair(_pick(rng, Hair, (0.4, 0.3, 0.3))),
        hat=Hat(_pick(rng, Hat, (0.65, 0.2, 0.15))),
        bag=Bag(_pick(rng, Bag, (0.4, 0.25, 0.2, 0.15))),
        top=top,
        bottom=bottom,
        outer=_garment(rng, (0.6, 0.1, 0.1, 0.2)),
        skin=_colour(rng, SKIN_TONES, 8.0),
        hair_colour=_colour(rng, HAIR_COLOURS, 10.0),
        hat_colour=_colour(rng, CLOTHING_COLOURS),
        bag_colour=_colour(rng, CLOTHING_COLOURS),
        shoe_colour=_colour(rng, CLOTHING_COLOURS[:4] + CLOTHING_COLOURS[7:9]),
        bag_side=1 if rng.random() < 0.5 else -1,
        bag_warmth=float(rng.uniform(0.1, 0.24)),
    )
