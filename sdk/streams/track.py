"""ByteTrack-style multi-object tracker for one camera: Kalman prediction, IoU association in two
stages (high-score boxes first, then low-score boxes for the tracks still unmatched), track birth and
death.

Follows ByteTrack (Zhang et al., ECCV 2022, `yolox/tracker/byte_tracker.py`): a new track is
confirmed when it is matched again on the next frame (immediately on the very first frame); a track
that loses its box is kept `track_buffer` frames (predicted by the Kalman filter) and can be found
again; a lost track is never extended by a low-score box; duplicates between tracked and lost tracks
are resolved in favour of the longer one. No well-kept packaged implementation fits the runtime's
numpy + OpenCV budget (they need torch, scipy, lap or opencv-python), so this is a small one, tested
against hand-made sequences and generated scenes.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputSpecError
from .assignment import assign, iou_matrix
from .detect.base import Detections
from .kalman import KalmanFilter, xyah_to_xyxy, xyxy_to_xyah


class TrackState(enum.IntEnum):
    NEW = 0
    TRACKED = 1
    LOST = 2
    REMOVED = 3


@dataclass(frozen=True, eq=False)
class Track:
    """A confirmed track as the tracker reports it after a frame.

    Attributes:
        track_id: id, unique within its tracker (camera), counted from 1.
        box: float32 `[4]` Kalman-corrected `x1, y1, x2, y2`.
        det_box: float32 `[4]` the detection matched on this frame.
        score: that detection's score.
        start_frame: the frame number the track was first seen on.
        hits: frames on which it was matched so far.
    """

    track_id: int
    box: np.ndarray
    det_box: np.ndarray
    score: float
    start_frame: int
    hits: int


@dataclass(frozen=True)
class TrackUpdate:
    """What one `ByteTracker.update` call found.

    Attributes:
        tracks: confirmed tracks matched on this frame.
        started: ids confirmed on this frame (their first report).
        ended: ids of confirmed tracks removed on this frame (lost for longer than the buffer).
    """

    tracks: list[Track]
    started: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)


class _State:
    """Internal per-track state."""

    __slots__ = (
        "cov",
        "det_box",
        "end_frame",
        "feature",
        "hits",
        "mean",
        "score",
        "start_frame",
        "state",
        "track_id",
    )

    def __init__(
        self, det_box: np.ndarray, score: float, frame: int, kf: KalmanFilter, feature: np.ndarray | None
    ) -> None:
        self.mean, self.cov = kf.initiate(xyxy_to_xyah(det_box))
        self.det_box, self.score, self.feature = det_box, score, feature
        self.start_frame = self.end_frame = frame
        self.hits, self.track_id, self.state = 1, 0, TrackState.NEW

    def box(self) -> np.ndarray:
        return xyah_to_xyxy(self.mean)

    def correct(
        self, det_box: np.ndarray, score: float, frame: int, kf: KalmanFilter, feature: np.ndarray | None
    ) -> None:
        self.mean, self.cov = kf.update(self.mean, self.cov, xyxy_to_xyah(det_box))
        self.det_box, self.score, self.end_frame = det_box, score, frame
        self.hits += 1
        self.state = TrackState.TRACKED
        if feature is not None:
            self.feature = feature if self.feature is None else _smoothed(self.feature, feature)


def _smoothed(track: np.ndarray, new: np.ndarray, keep: float = 0.9) -> np.ndarray:
    """The track's appearance as a moving average of its boxes' (BoT-SORT keeps 0.9 of the old one)."""
    mixed = keep * track + (1.0 - keep) * new
    norm = float(np.linalg.norm(mixed))
    return mixed / norm if norm > 0 else mixed


class ByteTracker:
    """Tracks people in one camera's detections, frame by frame.

    Args:
        high: detections scoring at least this go to the first association stage.
        low: detections scoring in [low, high) go to the second stage (they only extend tracks).
        new_track: smallest score that starts a track.
        match_iou: first stage: smallest IoU (score-weighted) for a match.
        low_match_iou: second stage: smallest IoU with a low-score box.
        new_match_iou: unconfirmed (one-frame) tracks: smallest IoU to be confirmed.
        track_buffer: frames a lost track is kept before it ends.
        fuse_score: weight first-stage IoU by the detection score (ByteTrack's default outside MOT20).
        appearance: how much alike signatures (`vireid.streams.appearance`, when `update` is given them)
            scale a pair's IoU margin over the gate: x(1 + appearance) for equal signatures, x1 for
            opposite ones. It only re-ranks the pairs the IoU gates allow, and look-alikes everywhere
            leave IoU's choice unchanged: it decides who is who when boxes overlap.
    """

    def __init__(
        self,
        *,
        high: float = 0.5,
        low: float = 0.1,
        new_track: float = 0.6,
        match_iou: float = 0.2,
        low_match_iou: float = 0.5,
        new_match_iou: float = 0.3,
        track_buffer: int = 30,
        fuse_score: bool = True,
        appearance: float = 3.0,
    ) -> None:
        if not 0 <= low <= high <= 1:
            raise InputSpecError(f"need 0 <= low <= high <= 1, got low={low} high={high}")
        if track_buffer < 0:
            raise InputSpecError(f"track_buffer must be >= 0 frames, got {track_buffer}")
        weight_ok = isinstance(appearance, (int, float)) and not isinstance(appearance, bool)
        if not (weight_ok and math.isfinite(appearance) and appearance >= 0):
            raise InputSpecError(f"appearance must be a finite number >= 0 (a weight), got {appearance!r}")
        self.high, self.low, self.new_track = high, low, new_track
        self.match_iou, self.low_match_iou, self.new_match_iou = match_iou, low_match_iou, new_match_iou
        self.track_buffer, self.fuse_score = int(track_buffer), bool(fuse_score)
        self.appearance = float(appearance)
        self.kf = KalmanFilter()
        self.frame = -1
        self.max_skip = 10
        self._first = True
        self._next_id = 1
        self._tracked: list[_State] = []  # confirmed or new, matched recently
        self._lost: list[_State] = []

    @property
    def active_ids(self) -> list[int]:
        """Ids of confirmed tracks not yet ended (tracked or lost)."""
        return [t.track_id for t in self._tracked + self._lost if t.track_id]

    def update(
        self,
        detections: Detections,
        frame: int | None = None,
        size: tuple[int, int] | None = None,
        features: np.ndarray | None = None,
    ) -> TrackUpdate:
        """Advance one frame with its detections.

        Args:
            detections: this frame's boxes and scores.
            frame: the frame's number (default: the previous one + 1). A jump (frames dropped by a live
                source) predicts the tracks over the skipped frames, at most `max_skip`.
            size: the frame's (height, width); when given, a lost track predicted to have left the frame
                (more than half of its box outside) ends at once instead of waiting `track_buffer` frames.
            features: `[K, D]` unit appearance signatures of the boxes (`colour_signatures`), or None
                for IoU alone.
        """
        boxes, scores = detections.boxes.astype(np.float64), detections.scores.astype(np.float64)
        feats = self._checked_features(features, len(boxes))  # before anything changes
        previous = self.frame
        self.frame = self.frame + 1 if frame is None else int(frame)
        steps = 1 if previous < 0 else min(max(self.frame - previous, 1), self.max_skip)
        high = scores >= self.high
        low = (scores >= self.low) & ~high
        confirmed = [t for t in self._tracked if t.state is TrackState.TRACKED and t.track_id]
        unconfirmed = [t for t in self._tracked if not t.track_id]
        pool = confirmed + self._lost
        self._predict(pool, steps)
        started: list[int] = []

        # Stage 1: high-score boxes with confirmed and lost tracks.
        hb, hs, hf = boxes[high], scores[high], _rows(feats, high)
        matches, rest_tracks, rest_high = self._match(pool, hb, hs, hf, self.match_iou, self.fuse_score)
        for ti, di in matches:
            self._correct(pool[ti], hb[di], hs[di], _row(hf, di), started)
        # Stage 2: low-score boxes with the still unmatched tracks that were tracked (not lost).
        remaining = [pool[i] for i in rest_tracks if pool[i].state is TrackState.TRACKED]
        lb, ls, lf = boxes[low], scores[low], _rows(feats, low)
        matches, rest_low_tracks, _ = self._match(remaining, lb, ls, lf, self.low_match_iou, False)
        for ti, di in matches:
            self._correct(remaining[ti], lb[di], ls[di], _row(lf, di), started)
        for i in rest_low_tracks:
            remaining[i].state = TrackState.LOST
        # Unconfirmed tracks with the high-score boxes left over.
        hb, hs, hf = hb[rest_high], hs[rest_high], _rows(hf, rest_high)
        matches, rest_new, rest_high = self._match(
            unconfirmed, hb, hs, hf, self.new_match_iou, self.fuse_score
        )
        for ti, di in matches:
            self._correct(unconfirmed[ti], hb[di], hs[di], _row(hf, di), started)
        for i in rest_new:
            unconfirmed[i].state = TrackState.REMOVED
        # Births.
        births = []
        for di in rest_high:
            if hs[di] >= self.new_track:
                track = _State(hb[di].copy(), float(hs[di]), self.frame, self.kf, _row(hf, di))
                if self._first:
                    self._confirm(track, started)
                births.append(track)
        self._first = False
        ended = self._reorganise(births, size)
        reported = [
            Track(
                t.track_id,
                t.box().astype(np.float32),
                t.det_box.astype(np.float32),
                t.score,
                t.start_frame,
                t.hits,
            )
            for t in self._tracked
            if t.track_id and t.state is TrackState.TRACKED and t.end_frame == self.frame
        ]
        return TrackUpdate(reported, started, ended)

    @property
    def next_track_id(self) -> int:
        """The id the next new track gets (ids are unique per tracker, counting from 1)."""
        return self._next_id

    @next_track_id.setter
    def next_track_id(self, value: int) -> None:
        if not isinstance(value, int) or value < 1:
            raise InputSpecError(f"next_track_id must be a positive integer, got {value!r}")
        self._next_id = value

    def finish(self) -> list[int]:
        """End every track (the stream is over): returns the ids of confirmed tracks still alive."""
        ids = self.active_ids
        self._tracked, self._lost = [], []
        return ids

    # ----- internals ----------------------------------------------------------------------------
    def _predict(self, tracks: list[_State], steps: int) -> None:
        """Move every track `steps` frames ahead (more than one when frames were skipped)."""
        if not tracks:
            return
        means = np.stack([t.mean for t in tracks])
        covs = np.stack([t.cov for t in tracks])
        # A lost track's height velocity would keep shrinking or growing it: freeze it (as ByteTrack).
        means[[t.state is not TrackState.TRACKED for t in tracks], 7] = 0.0
        for _ in range(steps):
            means, covs = self.kf.predict(means, covs)
        for t, m, c in zip(tracks, means, covs, strict=True):
            t.mean, t.cov = m, c

    def _match(
        self,
        tracks: list[_State],
        boxes: np.ndarray,
        scores: np.ndarray,
        features: np.ndarray | None,
        min_iou: float,
        fuse: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not tracks or not len(boxes):
            return np.zeros((0, 2), np.int64), np.arange(len(tracks)), np.arange(len(boxes))
        similarity = iou_matrix(np.stack([t.box() for t in tracks]), boxes)
        if fuse:
            similarity = similarity * scores[None, :]
        distance = self._appearance_distance(tracks, features)
        if distance is None:
            return assign(1.0 - similarity, 1.0 - min_iou)
        # What a pair saves over leaving its track and box unmatched is its IoU margin over the gate,
        # scaled up by how alike they look (x1 for opposite signatures, x(1 + appearance) for equal
        # ones): with equal signatures everywhere the assignment is IoU's own, and a pair the gate
        # refuses never matches, however alike.
        limit = 1.0 - min_iou
        saving = (similarity - min_iou) * (1.0 + self.appearance * (1.0 - distance))
        return assign(np.where(similarity > min_iou, limit - saving, _GATED), limit)

    def _checked_features(self, features: np.ndarray | None, count: int) -> np.ndarray | None:
        """`features` as float64 `[count, D]`, with the D of the signatures the tracks already hold."""
        if features is None:
            return None
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or len(features) != count:
            raise InputSpecError(
                f"features must be [{count}, D], one row per detection; got shape {features.shape}"
            )
        width = {t.feature.shape[0] for t in self._tracked + self._lost if t.feature is not None}
        if width and width != {features.shape[1]}:
            raise InputSpecError(
                f"features have {features.shape[1]} values per box, the tracks' {sorted(width)}: give every "
                "frame's boxes signatures of one kind (colour_signatures)"
            )
        return features

    def _appearance_distance(self, tracks: list[_State], features: np.ndarray | None) -> np.ndarray | None:
        """1 - cosine between tracks' and boxes' signatures (a track without one gets the others' mean)."""
        if features is None or self.appearance == 0:
            return None
        known = [t.feature is not None for t in tracks]
        if not any(known):
            return None
        mine = np.stack([t.feature if t.feature is not None else np.zeros(features.shape[1]) for t in tracks])
        distance = 1.0 - np.clip(mine @ features.T, 0.0, 1.0)
        unknown = ~np.asarray(known)
        distance[unknown] = distance[~unknown].mean(axis=0)  # no signature yet: neither favoured nor not
        return distance

    def _correct(
        self, track: _State, box: np.ndarray, score: float, feature: np.ndarray | None, started: list[int]
    ) -> None:
        track.correct(box.copy(), float(score), self.frame, self.kf, feature)
        if not track.track_id:
            self._confirm(track, started)

    def _confirm(self, track: _State, started: list[int]) -> None:
        track.track_id = self._next_id
        self._next_id += 1
        track.state = TrackState.TRACKED
        started.append(track.track_id)

    def _reorganise(self, births: list[_State], size: tuple[int, int] | None) -> list[int]:
        """Sort tracks into tracked / lost, remove expired and duplicate ones; returns ended ids."""
        everything = self._tracked + self._lost
        tracked = [t for t in everything if t.state is TrackState.TRACKED]
        lost = [t for t in everything if t.state is TrackState.LOST]
        ended = []
        for t in lost:
            if self.frame - t.end_frame > self.track_buffer or (size and _outside(t.box(), size) > 0.5):
                t.state = TrackState.REMOVED
                ended.append(t.track_id)
        lost = [t for t in lost if t.state is TrackState.LOST]
        tracked, lost, dropped = _remove_duplicates(tracked + births, lost)
        ended += [t.track_id for t in dropped if t.track_id]
        self._tracked, self._lost = tracked, lost
        return [i for i in ended if i]


_GATED = 1e6  # cost of a pair outside the IoU gate: never matched


def _rows(features: np.ndarray | None, which: np.ndarray) -> np.ndarray | None:
    return None if features is None else features[which]


def _row(features: np.ndarray | None, index: int) -> np.ndarray | None:
    return None if features is None else features[index].copy()


def _outside(box: np.ndarray, size: tuple[int, int]) -> float:
    """Fraction of a box's area outside a frame of `size` = (height, width)."""
    x1, y1, x2, y2 = box
    area = max((x2 - x1) * (y2 - y1), 1e-9)
    inside = max(0.0, min(x2, size[1]) - max(x1, 0.0)) * max(0.0, min(y2, size[0]) - max(y1, 0.0))
    return 1.0 - inside / area


def _remove_duplicates(
    tracked: list[_State], lost: list[_State]
) -> tuple[list[_State], list[_State], list[_State]]:
    """A tracked and a lost track on the same spot (IoU > 0.85): keep the one seen for longer."""
    live = [t for t in tracked if t.track_id]
    if not live or not lost:
        return tracked, lost, []
    overlap = iou_matrix(np.stack([t.box() for t in live]), np.stack([t.box() for t in lost]))
    drop_live, drop_lost = set(), set()
    for i, j in zip(*np.nonzero(overlap > 0.85), strict=True):
        age_live = live[i].end_frame - live[i].start_frame
        age_lost = lost[j].end_frame - lost[j].start_frame
        (drop_live.add(i) if age_live <= age_lost else drop_lost.add(j))
    dropped = [live[i] for i in drop_live] + [lost[j] for j in drop_lost]
    for t in dropped:
        t.state = TrackState.REMOVED
    kept_tracked = [t for t in tracked if t.state is not TrackState.REMOVED]
    kept_lost = [t for t in lost if t.state is not TrackState.REMOVED]
    return kept_tracked, kept_lost, dropped
