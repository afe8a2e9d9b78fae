"""Score pipeline output on a synthetic scene (`vireid synth scene`) against its ground truth `gt.json`.

Pure numpy, used by `vireid bench pipeline`, the demo and the stream tests. The ground truth gives,
per camera and frame, each person's full-body box `[x1, y1, x2, y2]`, identity and visible fraction
(occlusion and frame edges). Definitions:

- A ground-truth box is *required* when its visible fraction is at least `min_visibility`; others may be
  matched but are never counted as missed.
- Per frame, boxes (detections or tracks) are matched to ground truth by IoU ≥ `min_iou`, optimally.
- A track's identity is the ground-truth id it was matched to on most frames (None: never matched).
- An ID switch: a ground-truth person's matched track id differs from the one it last had.
- Identification (per camera): precision = identified tracks whose last name is their identity's name
  / identified tracks; recall = ground-truth tracks (people with ≥ `min_frames` required frames in that
  camera) for which some track of theirs was correctly named / ground-truth tracks.
- Cross-modal: precision = `CrossModalMatch` events joining two tracks of one identity / events;
  recall = people seen in both cameras with at least one correct match / people seen in both.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..streams.assignment import assign, iou_matrix


def name_of(pid: int) -> str:
    """Gallery name of a ground-truth identity."""
    return f"id{pid}"


@dataclass
class SceneTruth:
    """`gt.json` of a scene, indexed by camera (modality name) and frame."""

    fps: float
    width: int
    height: int
    num_frames: int
    cameras: dict[str, list[list[dict[str, Any]]]]

    @classmethod
    def load(cls, scene: str | Path) -> SceneTruth:
        """Read `SCENE/gt.json`.

        Raises:
            DatasetError: the file is missing, not JSON, or not a scene's ground truth.
        """
        path = Path(scene) / "gt.json"
        fix = "; regenerate the scene with `vireid synth scene`"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(path, f"scene ground truth not readable ({exc}){fix}") from None
        try:
            cameras = {str(name): list(cam["frames"]) for name, cam in data["cameras"].items()}
            return cls(
                float(data["fps"]), int(data["width"]), int(data["height"]), int(data["num_frames"]), cameras
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DatasetError(
                path, f"not a scene ground truth (fps, width, height, num_frames, cameras; {exc!r}){fix}"
            ) from None

    def objects(self, camera: str, frame: int) -> list[dict[str, Any]]:
        frames = self.cameras[camera]
        return frames[frame] if 0 <= frame < len(frames) else []


@dataclass
class BoxScore:
    """Detection-style matching totals."""

    required: int = 0
    matched_required: int = 0
    predicted: int = 0
    false_positives: int = 0
    ious: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.matched_required / self.required if self.required else 0.0

    @property
    def precision(self) -> float:
        return 1.0 - self.false_positives / self.predicted if self.predicted else 0.0

    @property
    def mean_iou(self) -> float:
        return float(np.mean(self.ious)) if self.ious else 0.0


def match_frame(
    objects: list[dict[str, Any]], boxes: np.ndarray, min_iou: float
) -> list[tuple[int, int, float]]:
    """Optimal (ground-truth index, box index, IoU) pairs with IoU ≥ `min_iou`."""
    truth = np.array([o["box"] for o in objects], np.float64).reshape(-1, 4)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(truth) or not len(boxes):
        return []
    iou = iou_matrix(truth, boxes)
    matches, _, _ = assign(1.0 - iou, 1.0 - min_iou + 1e-9)
    return [(int(g), int(b), float(iou[g, b])) for g, b in matches]


def score_boxes(
    objects: list[dict[str, Any]], boxes: np.ndarray, score: BoxScore, min_iou: float, min_visibility: float
) -> None:
    """Add one frame's boxes to `score`. An unmatched box is false unless it overlaps a person no
    other box matched (someone below the visibility or IoU bar): a second box on a person already
    matched is a duplicate, and false."""
    pairs = match_frame(objects, boxes, min_iou)
    required = [o["visibility"] >= min_visibility for o in objects]
    score.required += sum(required)
    score.predicted += len(boxes)
    matched_boxes = {b for _, b, _ in pairs}
    for g, _, iou in pairs:
        if required[g]:
            score.matched_required += 1
            score.ious.append(iou)
    matched_people = {g for g, _, _ in pairs}
    unmatched = [i for i in range(len(objects)) if i not in matched_people]
    truth = np.array([objects[i]["box"] for i in unmatched], np.float64).reshape(-1, 4)
    for b in range(len(boxes)):
        if b in matched_boxes:
            continue
        overlap = (
            iou_matrix(np.asarray(boxes, np.float64)[b : b + 1], truth) if len(truth) else np.zeros((1, 0))
        )
        if not overlap.size or overlap.max() < 0.1:
            score.false_positives += 1


@dataclass
class CameraTracks:
    """Track ↔ ground-truth bookkeeping for one camera, fed frame by frame."""

    votes: dict[int, collections.Counter] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    last_track: dict[int, int] = field(default_factory=dict)
    required_frames: collections.Counter = field(default_factory=collections.Counter)
    id_switches: int = 0
    detections: BoxScore = field(default_factory=BoxScore)
    tracks: BoxScore = field(default_factory=BoxScore)

    def add(
        self,
        objects: list[dict[str, Any]],
        detections: np.ndarray,
        track_ids: list[int],
        track_boxes: np.ndarray,
        min_iou: float = 0.5,
        min_visibility: float = 0.5,
    ) -> None:
        score_boxes(objects, detections, self.detections, min_iou, min_visibility)
        score_boxes(objects, track_boxes, self.tracks, min_iou, min_visibility)
        for o in objects:
            if o["visibility"] >= min_visibility:
                self.required_frames[o["id"]] += 1
        for g, t, _ in match_frame(objects, track_boxes, min_iou):
            pid, tid = objects[g]["id"], track_ids[t]
            self.votes[tid][pid] += 1
            if pid in self.last_track and self.last_track[pid] != tid:
                self.id_switches += 1
            self.last_track[pid] = tid

    def identity(self, track_id: int) -> int | None:
        """The ground-truth id a track was matched to most often."""
        votes = self.votes.get(track_id)
        return votes.most_common(1)[0][0] if votes else None

    def people(self, min_frames: int) -> set[int]:
        """Ground-truth identities with at least `min_frames` required frames in this camera."""
        return {pid for pid, n in self.required_frames.items() if n >= min_frames}


@dataclass
class Identification:
    """Identification scores of one camera.

    Attributes:
        identified_tracks: tracks that ended up with a name.
        correct_tracks: of those, named as their ground-truth identity.
        people: ground-truth tracks (people with enough required frames in this camera).
        people_identified: people with at least one correctly named track.
        name_changes: `identified` events that renamed a track.
        enrolled_people: ground-truth tracks of people in the gallery (None: enrolment not given).
        enrolled_identified: of those, correctly identified.
    """

    identified_tracks: int
    correct_tracks: int
    people: int
    people_identified: int
    name_changes: int
    enrolled_people: int | None = None
    enrolled_identified: int | None = None

    @property
    def precision(self) -> float:
        return self.correct_tracks / self.identified_tracks if self.identified_tracks else 0.0

    @property
    def recall(self) -> float:
        """Fraction of all ground-truth tracks correctly identified (people not enrolled count as missed)."""
        return self.people_identified / self.people if self.people else 0.0

    @property
    def recall_enrolled(self) -> float | None:
        """Fraction of the enrolled people's ground-truth tracks correctly identified."""
        if self.enrolled_people is None or self.enrolled_identified is None:
            return None
        return self.enrolled_identified / self.enrolled_people if self.enrolled_people else 0.0


def score_identification(
    camera: str,
    events: Iterable[Mapping[str, Any]],
    tracks: CameraTracks,
    min_frames: int,
    enrolled: Iterable[int] | None = None,
) -> Identification:
    """Identification precision/recall of one camera from its `identified` events (last name counts).

    `enrolled` (ground-truth ids in the gallery) adds the recall over people who could be identified at
    all; a name given to someone not enrolled is always wrong, so precision needs no such split.
    """
    final: dict[int, str] = {}
    changes = 0
    for event in events:
        if event["event"] == "identified" and event["camera"] == camera:
            final[event["track_id"]] = event["name"]
            changes += event.get("previous") is not None
    correct = {
        tid
        for tid, name in final.items()
        if (pid := tracks.identity(tid)) is not None and name == name_of(pid)
    }
    people = tracks.people(min_frames)
    named = {tracks.identity(tid) for tid in correct}
    result = Identification(len(final), len(correct), len(people), len(people & named), changes)
    if enrolled is not None:
        reachable = people & set(enrolled)
        result.enrolled_people, result.enrolled_identified = len(reachable), len(reachable & named)
    return result


@dataclass
class CrossModal:
    matches: int
    correct: int
    people_both: int
    people_matched: int
    scores_correct: list[float]
    scores_wrong: list[float]

    @property
    def precision(self) -> float:
        return self.correct / self.matches if self.matches else 0.0

    @property
    def recall(self) -> float:
        return self.people_matched / self.people_both if self.people_both else 0.0


def score_cross_modal(
    events: Iterable[Mapping[str, Any]], visible: CameraTracks, infrared: CameraTracks, min_frames: int
) -> CrossModal:
    """Precision/recall of `cross_modal_match` events between the two cameras of a scene."""
    total = correct = 0
    matched: set[int] = set()
    good, bad = [], []
    for event in events:
        if event["event"] != "cross_modal_match":
            continue
        total += 1
        a, b = visible.identity(event["visible_track"]), infrared.identity(event["infrared_track"])
        if a is not None and a == b:
            correct += 1
            matched.add(a)
            good.append(event["score"])
        else:
            bad.append(event["score"])
    both = visible.people(min_frames) & infrared.people(min_frames)
    return CrossModal(total, correct, len(both), len(both & matched), good, bad)


class Oracle:
    """Fake embeddings that know who is in each box (from the ground truth): an upper bound for the
    matcher given the detector and tracker, and a way to test identification logic without a model.

    A person's vector is a fixed random unit vector, plus `gap` times a per-modality offset (the
    cross-modal gap a real model leaves) and Gaussian `noise`, renormalised. A box that overlaps no person
    (IoU < 0.3) gets a random vector.
    """

    def __init__(
        self, truth: SceneTruth, dim: int, *, noise: float = 0.2, gap: float = 0.3, seed: int = 0
    ) -> None:
        self.truth, self.dim, self.noise, self.gap = truth, dim, noise, gap
        self.rng = np.random.default_rng(seed)
        ids = {o["id"] for frames in truth.cameras.values() for objs in frames for o in objs}
        self.basis = {pid: _unit(self.rng.standard_normal(dim)) for pid in sorted(ids)}
        self.offsets = {m: _unit(self.rng.standard_normal(dim)) for m in ("visible", "infrared")}

    def vector(self, pid: int | None, modality: str) -> np.ndarray:
        base = (
            self.rng.standard_normal(self.dim)
            if pid is None
            else self.basis[pid] + self.gap * self.offsets[modality]
        )
        return _unit(_unit(base) + self.noise * self.rng.standard_normal(self.dim) / np.sqrt(self.dim))

    def person_at(self, camera: str, frame: int, box: np.ndarray) -> int | None:
        pairs = match_frame(self.truth.objects(camera, frame), np.asarray(box)[None], 0.3)
        return self.truth.objects(camera, frame)[pairs[0][0]]["id"] if pairs else None


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)
