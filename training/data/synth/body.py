"""Drawing a person as a map of body-part labels, shared by the visible and the infrared renderer.

A person is a stick figure with volume: capsules for limbs, polygons for torso, skirts and coats,
ellipses for the head, hair and hats, drawn back to front for the view. The label map (one `Part` per
pixel) is all the renderers need: visible colours and thermal brightness are looked up per part, so both
modalities show exactly the same shape, cut and accessories.

Body coordinates are in units of the person's height: `lat` to the person's left, `fwd` forwards, `y`
down from the top of the head. `view` is the angle the person is turned by: 0 faces the camera,
pi shows the back, pi/2 walks towards the image's right.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .person import Bag, Build, Coat, Hair, Hat, Identity, Lower, Sleeve, Stature

SHIFT = 4
_ONE = 1 << SHIFT


class Part(enum.IntEnum):
    """Label of a pixel in the part map."""

    BACKGROUND = 0
    SKIN = 1
    HAIR = 2
    TOP = 3
    BOTTOM = 4
    OUTER = 5
    SHOES = 6
    HAT = 7
    BAG = 8
    OCCLUDER = 9


NUM_PARTS = len(Part)
_BUILD_WIDTH = {Build.SLIM: 0.86, Build.MEDIUM: 1.0, Build.BROAD: 1.2}
_STATURE_WIDTH = {Stature.SHORT: 1.1, Stature.MEDIUM: 1.0, Stature.TALL: 0.9}
_STATURE_HIP = {Stature.SHORT: 0.53, Stature.MEDIUM: 0.515, Stature.TALL: 0.50}


@dataclass(frozen=True)
class Pose:
    """How a person stands in one image.

    Attributes:
        view: turn angle in radians (0 front, pi back, pi/2 walking to the image's right).
        phase: walking-cycle phase in radians.
        swing: amplitude of leg and arm swing, 0 (standing) .. 1 (full stride).
    """

    view: float
    phase: float
    swing: float


@dataclass(frozen=True)
class Placement:
    """Where a person is drawn: centre x and top y of the head, and height, in pixels."""

    cx: float
    top: float
    height: float


@dataclass(frozen=True)
class _Frame:
    """Body proportions of one identity, in units of height."""

    w: float
    hip_y: float
    thigh: float
    shin: float
    shoulder: float
    waist: float
    hip: float
    head_rx: float
    head_ry: float


def body_frame(identity: Identity) -> _Frame:
    """Proportions of an identity's body."""
    w = _BUILD_WIDTH[identity.build] * _STATURE_WIDTH[identity.stature] * identity.width_scale
    hip_y = _STATURE_HIP[identity.stature] - identity.leg_ratio
    leg = 0.955 - hip_y
    hs = identity.head_scale
    return _Frame(w, hip_y, leg * 0.52, leg * 0.48, 0.105 * w, 0.074 * w, 0.085 * w, 0.05 * hs, 0.064 * hs)


class _Pen:
    """Projects body coordinates for one view and draws labels with sub-pixel precision."""

    def __init__(self, labels: np.ndarray, place: Placement, view: float) -> None:
        self.labels, self.place = labels, place
        self.c, self.s = math.cos(view), math.sin(view)

    def x(self, lat: float, fwd: float) -> float:
        return lat * self.c + fwd * self.s

    def toward(self, lat: float) -> float:
        """How far a point on the body's side is towards the camera (negative: hidden side)."""
        return -lat * self.s

    def width(self, lat_half: float, depth_half: float) -> float:
        return lat_half * abs(self.c) + depth_half * abs(self.s)

    def pt(self, x: float, y: float) -> tuple[int, int]:
        p = self.place
        return (round((p.cx + x * p.height) * _ONE), round((p.top + y * p.height) * _ONE))

    def px(self, units: float) -> int:
        return max(1, round(units * self.place.height))

    def line(self, a: tuple[float, float], b: tuple[float, float], thick: float, part: Part) -> None:
        cv2.line(self.labels, self.pt(*a), self.pt(*b), int(part), self.px(thick), cv2.LINE_8, SHIFT)

    def poly(self, points: list[tuple[float, float]], part: Part) -> None:
        pts = np.array([self.pt(x, y) for x, y in points], dtype=np.int32)
        cv2.fillPoly(self.labels, [pts], int(part), cv2.LINE_8, SHIFT)

    def ellipse(
        self,
        centre: tuple[float, float],
        axes: tuple[float, float],
        part: Part,
        start: float = 0,
        end: float = 360,
    ) -> None:
        h = self.place.height
        size = (max(1, round(axes[0] * h * _ONE)), max(1, round(axes[1] * h * _ONE)))
        cv2.ellipse(self.labels, self.pt(*centre), size, 0, start, end, int(part), -1, cv2.LINE_8, SHIFT)


@dataclass(frozen=True)
class _Limb:
    """Image points of one arm or leg: root, middle joint, end; and how near the camera it is."""

    root: tuple[float, float]
    mid: tuple[float, float]
    end: tuple[float, float]
    toward: float
    side: int


def _legs(pen: _Pen, f: _Frame, pose: Pose) -> list[_Limb]:
    limbs = []
    amp = 0.42 * pose.swing
    for side in (1, -1):
        phase = pose.phase + (0.0 if side > 0 else math.pi)
        theta = amp * math.sin(phase)
        bend = 1.1 * amp * max(0.0, math.sin(phase - 1.2))
        lat = side * f.hip * 0.55
        root = (pen.x(lat, 0.0), f.hip_y)
        knee_fwd, knee_dn = f.thigh * math.sin(theta), f.thigh * math.cos(theta)
        knee = (pen.x(lat, knee_fwd), f.hip_y + knee_dn + knee_fwd * abs(pen.c) * 0.12)
        end_fwd = knee_fwd + f.shin * math.sin(theta - bend)
        end_dn = knee_dn + f.shin * math.cos(theta - bend)
        end = (pen.x(lat * 1.05, end_fwd), f.hip_y + end_dn + end_fwd * abs(pen.c) * 0.12)
        limbs.append(_Limb(root, knee, end, pen.toward(lat), side))
    return sorted(limbs, key=lambda limb: limb.toward)


def _arms(pen: _Pen, f: _Frame, pose: Pose) -> list[_Limb]:
    limbs = []
    amp = 0.5 * pose.swing
    for side in (1, -1):
        beta = -amp * math.sin(pose.phase + (0.0 if side > 0 else math.pi))
        lat = side * f.shoulder * 0.92
        root = (pen.x(lat, 0.0), 0.185)
        out = side * 0.012
        elbow_fwd = 0.16 * math.sin(beta)
        elbow = (pen.x(lat + out, elbow_fwd), 0.185 + 0.16 * math.cos(beta))
        hand_fwd = elbow_fwd + 0.15 * math.sin(beta + 0.25)
        hand = (pen.x(lat + 1.6 * out, hand_fwd), elbow[1] + 0.15 * math.cos(beta + 0.25))
        limbs.append(_Limb(root, elbow, hand, pen.toward(lat), side))
    return sorted(limbs, key=lambda limb: limb.toward)


def _lerp(a: tuple[float, float], b: tuple[float, float], t: float) -> tuple[float, float]:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def _draw_leg(pen: _Pen, ident: Identity, f: _Frame, leg: _Limb) -> None:
    thigh, shin = 0.068 * f.w, 0.048 * f.w
    pen.line(leg.root, leg.mid, thigh, Part.SKIN)
    pen.line(leg.mid, leg.end, shin, Part.SKIN)
    if ident.lower is Lower.SHORTS:
        pen.line(leg.root, _lerp(leg.root, leg.mid, 0.6), thigh * 1.25, Part.BOTTOM)
    elif ident.lower is Lower.TROUSERS:
        pen.line(leg.root, leg.mid, thigh * 1.15, Part.BOTTOM)
        pen.line(leg.mid, _lerp(leg.mid, leg.end, 1.02), shin * 1.35, Part.BOTTOM)
    toe = (leg.end[0] + 0.055 * pen.s, leg.end[1] + 0.035 + 0.01 * abs(pen.c))
    heel = (leg.end[0] - 0.012 * pen.s, leg.end[1] + 0.028)
    pen.line(heel, toe, 0.04, Part.SHOES)


def _draw_arm(pen: _Pen, ident: Identity, f: _Frame, arm: _Limb) -> None:
    upper, fore = 0.044 * f.w, 0.036 * f.w
    pen.line(arm.root, arm.mid, upper, Part.SKIN)
    pen.line(arm.mid, arm.end, fore, Part.SKIN)
    pen.ellipse(arm.end, (0.022, 0.026), Part.SKIN)
    if ident.coat is not Coat.NONE:
        pen.line(arm.root, arm.mid, upper * 1.45, Part.OUTER)
        pen.line(arm.mid, _lerp(arm.mid, arm.end, 0.92), fore * 1.45, Part.OUTER)
    elif ident.sleeve is Sleeve.SHORT:
        pen.line(arm.root, _lerp(arm.root, arm.mid, 0.55), upper * 1.35, Part.TOP)
    elif ident.sleeve is Sleeve.LONG:
        pen.line(arm.root, arm.mid, upper * 1.25, Part.TOP)
        pen.line(arm.mid, _lerp(arm.mid, arm.end, 0.92), fore * 1.3, Part.TOP)
    if ident.bag is Bag.HANDBAG and arm.side == ident.bag_side:
        x, y = arm.end
        pen.poly(
            [(x - 0.035, y + 0.015), (x + 0.035, y + 0.015), (x + 0.04, y + 0.085), (x - 0.04, y + 0.085)],
            Part.BAG,
        )


def _torso_outline(pen: _Pen, f: _Frame, bottom: float, flare: float = 1.0) -> list[tuple[float, float]]:
    sh, ch = pen.width(f.shoulder, 0.062 * f.w), pen.width(f.shoulder * 0.9, 0.07 * f.w)
    wa, hi = pen.width(f.waist, 0.06 * f.w), pen.width(f.hip * 1.05, 0.062 * f.w)
    end = pen.width(f.hip * 1.05 * flare, 0.062 * f.w * flare)
    right = [(0.03 * f.w, 0.15), (sh, 0.178), (ch, 0.26), (wa, 0.36), (hi, f.hip_y), (end, bottom)]
    shift = 0.012 * pen.s
    pts = [(x + shift, y) for x, y in right] + [(-x + shift, y) for x, y in reversed(right)]
    return pts


def _draw_lower(pen: _Pen, ident: Identity, f: _Frame, legs: list[_Limb]) -> None:
    if ident.lower not in (Lower.SKIRT, Lower.DRESS):
        return
    hem = f.hip_y + f.thigh * (0.95 if ident.lower is Lower.SKIRT else 1.55)
    spread = abs(legs[0].mid[0] - legs[1].mid[0]) * 0.5
    top_w = pen.width(f.hip * 1.08, 0.065 * f.w)
    hem_w = pen.width(f.hip * 1.45, 0.11 * f.w) + spread
    waist = f.hip_y - 0.06
    part = Part.TOP if ident.lower is Lower.DRESS else Part.BOTTOM
    x0 = 0.012 * pen.s
    pen.poly([(x0 - top_w, waist), (x0 + top_w, waist), (x0 + hem_w, hem), (x0 - hem_w, hem)], part)


def _draw_torso(pen: _Pen, ident: Identity, f: _Frame) -> None:
    hx = 0.02 * pen.s
    pen.line((hx * 0.5, 0.1), (hx * 0.3, 0.17), 0.042 * f.w, Part.SKIN)
    pen.poly(_torso_outline(pen, f, f.hip_y + 0.035), Part.TOP)
    if ident.coat is Coat.NONE:
        return
    bottom = f.hip_y + (0.06 if ident.coat is Coat.JACKET else f.thigh * 1.15)
    pen.poly(_torso_outline(pen, f, bottom, 1.12 if ident.coat is Coat.LONG else 1.02), Part.OUTER)
    if pen.c > 0.45:  # open front shows the top underneath
        band = 0.024 * f.w * pen.c
        x0 = 0.012 * pen.s
        pen.poly(
            [(x0 - band, 0.17), (x0 + band, 0.17), (x0 + band * 1.3, bottom), (x0 - band * 1.3, bottom)],
            Part.TOP,
        )


def _draw_head(pen: _Pen, ident: Identity, f: _Frame) -> None:
    hx, hy = 0.02 * pen.s, f.head_ry
    hair_down = {Hair.SHORT: 0.0, Hair.MEDIUM: 0.075, Hair.LONG: 0.22}[ident.hair]
    if hair_down and pen.c > -0.2:  # hair behind the head, seen around the face
        pen.poly(_hair_fall(pen, f, hx, hy, hair_down), Part.HAIR)
    pen.ellipse((hx, hy), (f.head_rx * 1.04, f.head_ry * 1.02), Part.HAIR)
    if pen.c > -0.35:  # the face shows unless the person turns away
        fx = hx + 0.022 * pen.s
        face_w = f.head_rx * (0.55 + 0.3 * max(pen.c, 0.0))
        pen.ellipse((fx, hy + f.head_ry * 0.22), (face_w, f.head_ry * 0.78), Part.SKIN)
    if ident.hat is Hat.CAP:
        pen.ellipse((hx, hy - f.head_ry * 0.3), (f.head_rx * 1.1, f.head_ry * 0.75), Part.HAT, 180, 360)
        brim = (hx + 0.06 * pen.s, hy - f.head_ry * 0.3)
        pen.line((hx - 0.03 * pen.s, hy - f.head_ry * 0.3), brim, 0.018, Part.HAT)
    elif ident.hat is Hat.BEANIE:
        pen.ellipse((hx, hy - f.head_ry * 0.1), (f.head_rx * 1.12, f.head_ry * 0.98), Part.HAT, 180, 360)


def _hair_fall(pen: _Pen, f: _Frame, hx: float, hy: float, down: float) -> list[tuple[float, float]]:
    w = pen.width(f.head_rx * 1.1, f.head_rx * 0.95)
    back = -0.02 * pen.s
    return [
        (hx - w + back, hy),
        (hx + w + back, hy),
        (hx + w * 1.1 + back, hy + down),
        (hx - w * 1.1 + back, hy + down),
    ]


def _draw_back_hair(pen: _Pen, ident: Identity, f: _Frame) -> None:
    if ident.hair is Hair.SHORT or pen.c > -0.2:
        return
    down = 0.075 if ident.hair is Hair.MEDIUM else 0.22
    pen.poly(_hair_fall(pen, f, 0.02 * pen.s, f.head_ry, down), Part.HAIR)


def _draw_backpack(pen: _Pen, f: _Frame, behind: bool) -> None:
    depth = 0.062 * f.w + 0.035
    cx = pen.x(0.0, -depth)
    half = pen.width(0.075 * f.w, 0.045)
    if behind == (pen.c > -0.2):
        pen.poly(
            [(cx - half, 0.19), (cx + half, 0.19), (cx + half * 1.05, 0.43), (cx - half * 1.05, 0.43)],
            Part.BAG,
        )
    if not behind and pen.c > 0.3:  # straps over the shoulders
        for side in (1, -1):
            lat = side * f.shoulder * 0.55
            pen.line((pen.x(lat, 0), 0.175), (pen.x(lat * 1.1, 0), 0.34), 0.016, Part.BAG)


def _draw_shoulder_bag(pen: _Pen, ident: Identity, f: _Frame, front: bool) -> None:
    side = ident.bag_side
    bag_lat = side * (f.hip + 0.035)
    near = pen.toward(bag_lat) >= -0.01
    if front:
        strap_from = (pen.x(-side * f.shoulder * 0.6, 0), 0.175)
        pen.line(strap_from, (pen.x(bag_lat, 0), f.hip_y - 0.03), 0.014, Part.BAG)
    if front == near:
        x, y = pen.x(bag_lat, 0.01), f.hip_y - 0.03
        half = pen.width(0.045, 0.02)
        pen.poly([(x - half, y), (x + half, y), (x + half, y + 0.085), (x - half, y + 0.085)], Part.BAG)


def draw_person(labels: np.ndarray, identity: Identity, pose: Pose, place: Placement) -> None:
    """Draw `identity` in `pose` into the uint8 part map `labels`, in place, back to front."""
    pen = _Pen(labels, place, pose.view)
    f = body_frame(identity)
    legs, arms = _legs(pen, f, pose), _arms(pen, f, pose)
    side_view = abs(pen.s) > 0.35
    far_arms = [a for a in arms if side_view and a.toward < 0]
    if identity.bag is Bag.BACKPACK:
        _draw_backpack(pen, f, behind=True)
    if identity.bag is Bag.SHOULDER:
        _draw_shoulder_bag(pen, identity, f, front=False)
    for arm in far_arms:
        _draw_arm(pen, identity, f, arm)
    for leg in legs:
        _draw_leg(pen, identity, f, leg)
    _draw_lower(pen, identity, f, legs)
    _draw_torso(pen, identity, f)
    _draw_head(pen, identity, f)
    _draw_back_hair(pen, identity, f)
    if identity.bag is Bag.BACKPACK:
        _draw_backpack(pen, f, behind=False)
    if identity.bag is Bag.SHOULDER:
        _draw_shoulder_bag(pen, identity, f, front=True)
    for arm in arms:
        if arm not in far_arms:
            _draw_arm(pen, identity, f, arm)
