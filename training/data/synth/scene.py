"""Video scenes: two fixed cameras (visible, infrared) and the same people walking through both.

Each camera films a static, cluttered backdrop. People enter at one side and leave at the other,
at different depths (so their size changes) and in pairs walking towards each other (so the nearer one
occludes the farther one). Every identity crosses both views, at different times. Ground truth is a
full-body box `[x1, y1, x2, y2]` (pixels, clipped to the frame) with the identity and the fraction of
the body that is visible, per camera and per frame; see docs/data.md for the JSON layout.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vireid.errors import DatasetError
from vireid.modality import Modality

from .body import Placement, Pose, draw_person
from .cameras import SCENE_CAMERAS, Camera, backdrop
from .config import SceneConfig
from .person import Identity, sample_identity
from .render import PERSON_EXTENT, shade_infrared, shade_visible
from .seeding import rng_for
from .writer import SynthResult, prepare_out_dir, reused_result, run_tasks, write_meta

VIDEO_NAME = {Modality.VISIBLE: "visible.mp4", Modality.INFRARED: "infrared.mp4"}
THERMAL16 = "infrared16/%06d.png"
"""16-bit radiometric infrared frames (`SceneConfig.thermal16`): centi-Kelvin, grey 0..255 = 15..40 °C."""
THERMAL16_RANGE = (28815, 31315)
CAMERA_ID = {Modality.VISIBLE: 1, Modality.INFRARED: 2}
GT_FILE = "gt.json"
OWNED = (*VIDEO_NAME.values(), GT_FILE, THERMAL16.split("/")[0])
PARTS = (".visible.part.json", ".infrared.part.json")
"""Per-camera ground truth before it is merged into gt.json: left by an interrupted run, removed by
`--overwrite` with the rest."""
_NOISE_BANK = 8
_STEP_HZ = 0.9  # walking cycles per second


@dataclass(frozen=True)
class Walk:
    """One identity crossing one camera's view in a straight line.

    Attributes:
        pid: identity.
        start: time of entering (seconds).
        duration: seconds from entering at one edge to leaving at the other.
        x0, x1: horizontal positions of the feet at start and end (pixels; off-frame at both ends).
        y0, y1: vertical positions of the feet at start and end (pixels; larger is nearer).
        phase: walking-cycle phase at the start.
    """

    pid: int
    start: float
    duration: float
    x0: float
    x1: float
    y0: float
    y1: float
    phase: float

    def at(self, t: float) -> tuple[float, float] | None:
        """Feet position at time `t`, or None when the person is not in the scene."""
        s = (t - self.start) / self.duration
        if not 0.0 <= s <= 1.0:
            return None
        return self.x0 + (self.x1 - self.x0) * s, self.y0 + (self.y1 - self.y0) * s


def person_height(feet_y: float, frame_h: int) -> float:
    """Apparent body height at a feet position: people lower in the frame are nearer and larger."""
    near = (feet_y - 0.6 * frame_h) / (0.4 * frame_h)
    return frame_h * (0.3 + 0.36 * min(max(near, 0.0), 1.0))


def plan_walks(config: SceneConfig, modality: Modality) -> list[Walk]:
    """Walks of every identity through one camera: pairs walking towards each other, in turn.

    The infrared camera sees the same identities in another order (shifted by half), so each person
    appears in both views at different times.
    """
    rng = rng_for(config.seed, "scene-walks", int(modality))
    order = list(range(1, config.people + 1))
    order = [int(p) for p in rng_for(config.seed, "scene-order").permutation(order)]
    if modality is Modality.INFRARED:
        shift = config.people // 2
        order = order[shift:] + order[:shift]
    w, h = config.width, config.height
    pairs = math.ceil(config.people / 2)
    slot = config.seconds / pairs
    walks = []
    for i, pid in enumerate(order):
        direction = 1 if i % 2 == 0 else -1
        y0 = float(rng.uniform(0.66, 0.97)) * h
        y1 = float(np.clip(y0 + rng.uniform(-0.08, 0.08) * h, 0.64 * h, 0.98 * h))
        margin = 0.4 * person_height(max(y0, y1), h)
        x0, x1 = (-margin, w + margin)[::direction]
        speed = float(rng.uniform(0.55, 0.85)) * person_height((y0 + y1) / 2, h)
        duration = (w + 2 * margin) / speed
        start = (i // 2) * slot + float(rng.uniform(0.0, 0.25)) * slot
        walks.append(Walk(pid, start, duration, x0, x1, y0, y1, float(rng.uniform(0, 2 * math.pi))))
    return walks


def _view(walk: Walk) -> float:
    """Turn angle from the walking direction (0 = towards the camera, pi/2 = to the image's right)."""
    dx, dy = walk.x1 - walk.x0, (walk.y1 - walk.y0) * 4.0
    return math.atan2(dx, dy)


@dataclass
class _Painter:
    """Draws people onto frames of one camera, with its light and sensor."""

    camera: Camera
    config: SceneConfig
    scale: float  # frame pixels per output pixel (infrared works at reduced resolution)
    identities: dict[int, Identity]
    rng: np.random.Generator

    def patch(self, walk: Walk, t: float, height: float) -> tuple[np.ndarray, np.ndarray, Placement]:
        """Person image (float32, grey or RGB) and mask at the painter's scale, and its placement."""
        ph, pw = math.ceil(height * PERSON_EXTENT) + 4, math.ceil(height * 0.75) + 4
        place = Placement(cx=pw / 2, top=2.0, height=height)
        pose = Pose(_view(walk), walk.phase + 2 * math.pi * _STEP_HZ * (t - walk.start), 0.85)
        labels = np.zeros((ph, pw), np.uint8)
        draw_person(labels, self.identities[walk.pid], pose, place)
        ident = self.identities[walk.pid]
        if self.camera.modality is Modality.VISIBLE:
            img, mask = shade_visible(labels, ident, place, None, self.camera.light_slope, 1.0)
            img = _tone(img, self.camera) * 255.0
        else:
            temp, mask = shade_infrared(labels, ident, place, None, self.rng)
            img = _thermal(temp, self.camera)
        return img, mask, place


def _tone(img: np.ndarray, camera: Camera) -> np.ndarray:
    out = np.clip(img * np.asarray(camera.gains, np.float32) * camera.exposure, 0.0, 1.0)
    out = out ** (1.0 / max(0.3, camera.gamma))
    return out * (1.0 - camera.haze) + 0.6 * camera.haze


def _thermal(temp: np.ndarray, camera: Camera) -> np.ndarray:
    return (camera.level + camera.exposure * temp) * 255.0


def _background(config: SceneConfig, camera: Camera, size: tuple[int, int]) -> np.ndarray:
    scene = backdrop(config.seed, camera, config.difficulty, size)
    if camera.modality is Modality.VISIBLE:
        return _tone(scene, camera) * 255.0
    return _thermal(scene, camera)


def _paste(
    frame: np.ndarray, owner: np.ndarray, img: np.ndarray, mask: np.ndarray, x0: int, y0: int, k: int
) -> None:
    """Alpha-blend a person patch into the frame at (x0, y0), clipped; record its pixels in `owner`."""
    fh, fw = frame.shape[:2]
    ph, pw = mask.shape
    ax, ay, bx, by = max(0, x0), max(0, y0), min(fw, x0 + pw), min(fh, y0 + ph)
    if ax >= bx or ay >= by:
        return
    sub = (slice(ay - y0, by - y0), slice(ax - x0, bx - x0))
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.7)[sub]
    region = frame[ay:by, ax:bx]
    if region.ndim == 3:
        alpha = alpha[..., None]
    frame[ay:by, ax:bx] = region * (1.0 - alpha) + img[sub] * alpha
    owner[ay:by, ax:bx][mask[sub]] = k


def _frame_objects(
    painter: _Painter, walks: list[Walk], t: float, frame: np.ndarray, full_h: int
) -> list[dict]:
    """Draw the people present at time `t` far to near; returns their ground truth (full-res pixels)."""
    present = [(w, pos) for w in walks if (pos := w.at(t)) is not None]
    present.sort(key=lambda item: item[1][1])
    owner = np.full(frame.shape[:2], -1, np.int16)
    drawn = []
    s = painter.scale
    for k, (walk, (fx, fy)) in enumerate(present):
        height = person_height(fy, full_h) / s
        img, mask, place = painter.patch(walk, t, height)
        x0, y0 = round(fx / s - place.cx), round(fy / s - place.top - height * PERSON_EXTENT)
        _paste(frame, owner, img, mask, x0, y0, k)
        drawn.append((walk, mask, x0, y0))
    size = (painter.config.width, painter.config.height)
    # per axis, from the sizes themselves: the rendered size is rounded, so 1/resolution is not exact
    scales = (size[0] / frame.shape[1], size[1] / frame.shape[0])
    truth = (
        _ground_truth(walk, mask, x0, y0, owner, k, scales, size)
        for k, (walk, mask, x0, y0) in enumerate(drawn)
    )
    return [item for item in truth if item is not None]


def _ground_truth(
    walk: Walk,
    mask: np.ndarray,
    x0: int,
    y0: int,
    owner: np.ndarray,
    k: int,
    scales: tuple[float, float],
    size: tuple[int, int],
) -> dict | None:
    """Full-body box clipped to the frame, in output pixels, and visible fraction; None when off-frame.

    `size` is the output frame's (width, height): a box found at reduced resolution is scaled by
    `scales` (x, y) and clipped again, as rounding can push it a pixel past the frame.
    """
    ys, xs = np.nonzero(mask)
    fh, fw = owner.shape
    x1, x2 = np.clip([x0 + xs.min(), x0 + xs.max() + 1], 0, fw)
    y1, y2 = np.clip([y0 + ys.min(), y0 + ys.max() + 1], 0, fh)
    if x1 >= x2 or y1 >= y2:
        return None
    visible = int(np.count_nonzero(owner[y1:y2, x1:x2] == k))
    width, height = size
    limits = (width, height, width, height)
    factors = (scales[0], scales[1], scales[0], scales[1])
    box = [
        min(round(float(v) * f), limit) for v, f, limit in zip((x1, y1, x2, y2), factors, limits, strict=True)
    ]
    return {"id": walk.pid, "box": box, "visibility": round(visible / len(xs), 3)}


def _noise_bank(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    return rng.normal(0.0, sigma, (_NOISE_BANK, *shape)).astype(np.float32)


def _render_camera(args: tuple[str, SceneConfig, Modality]) -> int:
    """Render one camera's video and write its ground truth next to it (a worker task)."""
    root, config, modality = Path(args[0]), args[1], args[2]
    camera = SCENE_CAMERAS[modality].at(config.difficulty)
    scale = 1.0 / camera.resolution if modality is Modality.INFRARED else 1.0
    size = (round(config.height / scale), round(config.width / scale))
    rng = rng_for(config.seed, "scene-sensor", int(modality))
    identities = {pid: sample_identity(config.seed, pid) for pid in range(1, config.people + 1)}
    painter = _Painter(camera, config, scale, identities, rng)
    background = _background(config, camera, size)
    noise = _noise_bank(rng, background.shape, camera.noise)
    walks = plan_walks(config, modality)
    writer = _open_writer(root / VIDEO_NAME[modality], config)
    radiometric = config.thermal16 and modality is Modality.INFRARED
    if radiometric:
        (root / THERMAL16).parent.mkdir(exist_ok=True)
    frames = []
    try:
        for index in range(config.frames):
            frame = background.copy()
            frames.append(_frame_objects(painter, walks, index / config.fps, frame, config.height))
            frame += noise[int(rng.integers(_NOISE_BANK))]
            if frame.ndim == 2:
                frame = cv2.GaussianBlur(frame, (0, 0), 0.5 * camera.blur)
            writer.write(_to_bgr(frame, config))
            if radiometric:
                _write_png16(root / (THERMAL16 % index), frame, config)
    finally:
        writer.release()
    part = {"walks": [dataclasses.asdict(w) for w in walks], "frames": frames}
    (root / f".{modality.name.lower()}.part.json").write_text(json.dumps(part), encoding="utf-8")
    return config.frames


def _to_bgr(frame: np.ndarray, config: SceneConfig) -> np.ndarray:
    out: np.ndarray = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
    if out.ndim == 2:
        out = cv2.resize(out, (config.width, config.height), interpolation=cv2.INTER_LINEAR)
        return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(out, cv2.COLOR_RGB2BGR)


def _write_png16(path: Path, frame: np.ndarray, config: SceneConfig) -> None:
    """The same frame as radiometric uint16: its (unrounded) grey level mapped linearly to centi-Kelvin."""
    low, high = THERMAL16_RANGE
    full = cv2.resize(frame, (config.width, config.height), interpolation=cv2.INTER_LINEAR)
    values = low + np.clip(full, 0.0, 255.0) * ((high - low) / 255.0)
    if not cv2.imwrite(str(path), (values + 0.5).astype(np.uint16)):
        raise DatasetError(path, "OpenCV cannot write a 16-bit PNG here")


def _open_writer(path: Path, config: SceneConfig) -> cv2.VideoWriter:
    fourcc = cv2.VideoWriter.fourcc(*"mp4v")
    writer = cv2.VideoWriter(str(path), fourcc, float(config.fps), (config.width, config.height), True)
    if not writer.isOpened():
        raise DatasetError(path, "OpenCV cannot open an mp4v video writer here (no FFmpeg backend?)")
    return writer


def _merge_ground_truth(root: Path, config: SceneConfig) -> dict[str, Any]:
    cameras = {}
    for modality in Modality:
        part_file = root / f".{modality.name.lower()}.part.json"
        part = json.loads(part_file.read_text(encoding="utf-8"))
        part_file.unlink()
        cameras[str(modality)] = {
            "video": VIDEO_NAME[modality],
            "camera_id": CAMERA_ID[modality],
            "modality": str(modality),
            "walks": part["walks"],
            "frames": part["frames"],
        }
    return {
        "format": "vireid.synth.scene/1",
        "fps": config.fps,
        "width": config.width,
        "height": config.height,
        "num_frames": config.frames,
        "identities": list(range(1, config.people + 1)),
        "cameras": cameras,
    }


def generate_scene(
    out: str | Path,
    config: SceneConfig | None = None,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> SynthResult:
    """Write `visible.mp4`, `infrared.mp4` (mp4v), `gt.json` and `meta.json` to `out` (and, with
    `config.thermal16`, the infrared camera as 16-bit PNG frames in `infrared16/`).

    Args:
        out: output folder (created; must be empty, hold this very scene, or `overwrite` must be set).
        config: settings; `SceneConfig()` defaults when omitted.
        workers: processes (one per camera at most); never changes the output.
        overwrite: replace what a previous run (or anything else) left in the generator's files.
        show_progress: show a progress bar on stderr.

    Raises:
        ConfigError: invalid settings.
        DatasetError: the folder cannot be used, or OpenCV cannot write mp4v video.
    """
    config = config or SceneConfig()
    root = Path(out)
    meta = config.to_meta()
    if prepare_out_dir(root, meta, OWNED, overwrite, also_remove=PARTS):
        return reused_result(root)
    tasks = [(str(root), config, modality) for modality in Modality]
    run_tasks(_render_camera, tasks, workers, "synth scene (cameras)", show_progress)
    truth = _merge_ground_truth(root, config)
    (root / GT_FILE).write_text(json.dumps(truth, separators=(",", ":")) + "\n", encoding="utf-8")
    files = len(OWNED) - (0 if config.thermal16 else 1)  # the 16-bit folder counts as one output
    write_meta(root, meta, files=files)
    return SynthResult(root, files, reused=False)
