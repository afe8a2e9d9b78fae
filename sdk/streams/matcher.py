"""Matcher: per-track embeddings, gallery identification and cross-modal track matching, with hysteresis.

For every track the matcher decides when to embed a crop (every `embed_every` frames, or sooner when
the crop's quality beats the best seen so far by `improve`), keeps a quality-weighted average of the
track's embeddings (renormalised to unit length), and after each new embedding:

- searches the `Gallery` for the best identities; a track gets a name when the same identity is best
  and at or above the threshold on `confirm` consecutive updates, and changes name only when another
  identity beats the current one by `margin` on `confirm` consecutive updates (so names don't flicker).
  The threshold depends on the pair: `threshold` when the enrolled embedding is of the other modality,
  `within_threshold[modality]` when it is of the track's own (same-modality pairs score higher, so the
  same false-match rate needs a higher threshold); identities are ranked by how far their score clears
  the threshold of its pair;
- compares it with the tracks of the other modality seen in the last `cross_window` seconds (live or
  ended); a pair that is each other's best match (mutual nearest neighbours) at or above the
  cross-modal threshold, confirmed the same way, is reported once.

The pipeline collects the crops requested by every camera, embeds them in one batched call and hands
the vectors back through `update`.
"""

from __future__ import annotations

import collections
import math
import numbers
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputSpecError
from ..frozen import read_only
from ..gallery.types import IdentityScore
from ..modality import Modality
from .events import CrossModalMatch, Event, Identified, TrackEnded, TrackStarted
from .frame import Frame
from .track import Track, TrackUpdate

TrackKey = tuple[str, int]  # (camera, track id)


@dataclass
class TrackRecord:
    """What the matcher knows about one track (read-only for callers)."""

    camera: str
    modality: Modality
    track_id: int
    first_frame: int
    first_time: float
    last_frame: int
    last_time: float
    box: np.ndarray
    first_pts: float = 0.0
    last_pts: float = 0.0
    last_media: float = 0.0
    """When it was last seen on the run's media clock (see `Matcher.media_time`)."""
    hits: int = 1
    vector_sum: np.ndarray | None = None
    weight: float = 0.0
    samples: int = 0
    last_embed_frame: int = -(10**9)
    best_quality: float = 0.0
    name: str | None = None
    score: float = 0.0
    candidate: str | None = None
    candidate_hits: int = 0
    partner: TrackKey | None = None
    partner_score: float = 0.0
    partner_candidate: TrackKey | None = None
    partner_hits: int = 0
    ended: bool = False
    _unit: tuple[np.ndarray, np.ndarray | None] | None = field(
        init=False, default=None, repr=False, compare=False
    )

    @property
    def key(self) -> TrackKey:
        return (self.camera, self.track_id)

    @property
    def embedding(self) -> np.ndarray | None:
        """The track's unit-length, quality-weighted mean embedding (None before the first crop).

        Kept for as long as `vector_sum` is the same array (each sample makes a new one):
        cross-modal pairing reads every pairable track's embedding on every update (a thousand ended
        tracks), and normalising them each time cost 20 ms."""
        source = self.vector_sum
        if source is None:
            return None
        cached = self._unit
        if cached is None or cached[0] is not source:
            norm = float(np.linalg.norm(source))
            cached = (source, (source / norm).astype(np.float32) if norm > 0 else None)
            self._unit = cached
        return cached[1]


@dataclass(frozen=True)
class _Score:
    """An identity's cosine score for a track and how far it clears the threshold of its pair."""

    score: float
    excess: float


def _check_range(name: str, value: float, low: float, high: float) -> None:
    """Refuse a setting outside `[low, high]`; NaN too (every comparison with it is False, so a NaN
    margin would let names flicker and a NaN quality floor would embed every crop)."""
    if not low <= value <= high:
        raise InputSpecError(f"Matcher {name} must be in [{low:g}, {high:g}], got {value!r}")


@dataclass(frozen=True)
class _Pool:
    """The pairable tracks of one modality for one update: records, their stacked unit embeddings,
    and each record's row by key."""

    records: list[TrackRecord]
    matrix: np.ndarray
    index: dict[TrackKey, int]


def _excess_of(score: _Score | None) -> float:
    """Excess of the current name (absent from this search: as far below any threshold as possible)."""
    return score.excess if score is not None else -3.0


def _within_thresholds(
    within: Mapping[Modality, float] | Mapping[str, float] | Mapping[Modality | str, float] | float | None,
    threshold: float,
) -> dict[Modality, float]:
    """The same-modality threshold of each modality: `within` (one value or per modality), else
    `threshold` for the modalities it does not name."""
    out = {m: threshold for m in Modality}
    if isinstance(within, numbers.Real) and not isinstance(within, bool):
        out = {m: float(within) for m in Modality}
    elif isinstance(within, Mapping):
        out.update({Modality.parse(k): _cosine(v, f"within threshold of {k}") for k, v in within.items()})
    elif within is not None:
        raise InputSpecError(f"within_threshold is a cosine or {{modality: cosine}}, got {within!r}")
    for modality, value in out.items():
        _cosine(value, f"within threshold of {modality}")
    return out


def _cosine(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not -1.0 <= float(value) <= 1.0:
        raise InputSpecError(f"{what} is a cosine in [-1, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class MatchThresholds:
    """The cosine thresholds a matcher uses (`Matcher.thresholds()`; reports and logs).

    Attributes:
        cross_modal: gallery matches across modalities.
        within: gallery matches within one modality, per modality name (read-only).
        pairs: visible ↔ infrared track pairs.
    """

    cross_modal: float
    within: Mapping[str, float]
    pairs: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "cross_modal", _cosine(self.cross_modal, "cross_modal threshold"))
        object.__setattr__(self, "pairs", _cosine(self.pairs, "pairs threshold"))
        within = {str(m): _cosine(v, f"within threshold of {m}") for m, v in dict(self.within).items()}
        object.__setattr__(self, "within", read_only(within))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `{"cross_modal": t, "within": {modality: t}, "pairs": t}`."""
        return {"cross_modal": self.cross_modal, "within": dict(self.within), "pairs": self.pairs}

    def __str__(self) -> str:
        within = ", ".join(f"{m} {v:.4f}" for m, v in self.within.items())
        return f"across modalities {self.cross_modal:.4f}, within {within}, track pairs {self.pairs:.4f}"


@dataclass(frozen=True)
class CropRequest:
    """A crop the matcher wants embedded: the frame it is in, its box, quality and priority."""

    key: TrackKey
    frame: Frame
    box: np.ndarray
    quality: float
    priority: float = field(default=0.0, compare=False)


class Matcher:
    """Turns tracks into identities and cross-modal matches (see the module docstring).

    Args:
        threshold: cosine similarity at or above which a gallery identity enrolled in the other modality
            is accepted (the model card's `match_threshold` unless the caller overrides it).
        within_threshold: the same for identities matched through embeddings of the track's own
            modality, per modality (the card's `match_threshold_within`) or one value for both; None, or
            a modality missing from it: `threshold`.
        cross_threshold: the same for visible ↔ infrared track pairs (default: `threshold`).
        gallery: a `vireid.Gallery` to identify against, or None (cross-modal matching only).
        gallery_modality: `any` (every enrolled embedding) or `other` (only the other modality's).
        identity_score: how an identity is scored from its enrolled embeddings of one modality:
            `centroid` (cosine to their unit mean) or `max` (best single embedding); see `IdentityScore`.
        embed_every: frames between two embeddings of one track.
        min_quality: crops below this quality are never embedded.
        improve: a crop whose quality beats the track's best by this fraction is embedded at once.
        margin: how much a new identity (or partner) must beat the current one to replace it.
        confirm: consecutive updates that must agree before a name or a partner is set or changed.
        cross_window: seconds of video (see `media_time`) an ended track stays available for
            cross-modal matching.
        min_samples: embeddings a track needs before it is compared across modalities.
        top_k: identities fetched per gallery search (the current one's score is read among them).
        modalities: the modalities the pipeline has cameras of (None: not known). With one only (a
            visible-only site), ended tracks are not kept for cross-modal pairing, which nothing
            could use.
    """

    def __init__(
        self,
        threshold: float,
        *,
        within_threshold: Mapping[Modality, float]
        | Mapping[str, float]
        | Mapping[Modality | str, float]
        | float
        | None = None,
        cross_threshold: float | None = None,
        gallery: Any = None,
        gallery_modality: str = "any",
        identity_score: IdentityScore | str = IdentityScore.CENTROID,
        embed_every: int = 10,
        min_quality: float = 0.1,
        improve: float = 0.2,
        margin: float = 0.05,
        confirm: int = 2,
        cross_window: float = 120.0,
        min_samples: int = 2,
        top_k: int = 5,
        modalities: Iterable[Modality | str] | None = None,
    ) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise InputSpecError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
        if gallery_modality not in ("any", "other"):
            raise InputSpecError(f"gallery_modality must be 'any' or 'other', got {gallery_modality!r}")
        if embed_every < 1 or confirm < 1 or top_k < 1 or min_samples < 1:
            raise InputSpecError("embed_every, confirm, top_k and min_samples must be at least 1")
        _check_range("min_quality", min_quality, 0.0, 1.0)
        _check_range("improve", improve, 0.0, math.inf)
        _check_range("margin", margin, 0.0, 2.0)
        _check_range("cross_window", cross_window, 0.0, sys.float_info.max)  # finite: ended tracks expire
        self.threshold = float(threshold)
        self.within_threshold = _within_thresholds(within_threshold, self.threshold)
        self.cross_threshold = float(threshold if cross_threshold is None else cross_threshold)
        if not -1.0 <= self.cross_threshold <= 1.0:  # also refuses NaN, which would pair every track
            raise InputSpecError(
                "cross_threshold (CLI: --cross-threshold) is a cosine similarity in [-1, 1], got "
                f"{cross_threshold}"
            )
        self.gallery, self.gallery_modality = gallery, gallery_modality
        self.identity_score = IdentityScore.parse(identity_score)
        self.embed_every, self.min_quality, self.improve = (
            int(embed_every),
            float(min_quality),
            float(improve),
        )
        self.margin, self.confirm, self.cross_window = float(margin), int(confirm), float(cross_window)
        self.min_samples, self.top_k = int(min_samples), int(top_k)
        self.modalities = None if modalities is None else frozenset(Modality.parse(m) for m in modalities)
        self.records: dict[TrackKey, TrackRecord] = {}
        self._ended: collections.deque[TrackRecord] = collections.deque()
        self._origins: dict[str, float] = {}
        self._anchor: tuple[float, float] | None = None  # (wall, monotonic) of the run's first frame
        self._clocks: dict[str, tuple[Modality, float]] = {}  # live cameras: modality, latest media time

    def thresholds(self) -> MatchThresholds:
        """The thresholds in force (for reports and logs)."""
        within = {str(m): value for m, value in self.within_threshold.items()}
        return MatchThresholds(self.threshold, within, self.cross_threshold)

    # ----- tracks -------------------------------------------------------------------------------
    def media_time(self, frame: Frame) -> float:
        """`frame`'s time on a clock shared by the cameras and independent of processing speed: its
        camera's first frame's time, plus its media time since then (`pts`). Live streams run at
        the wall clock's pace; files processed faster than real time (`--fast`) keep their own, so
        `cross_window` means seconds of video either way.

        The cameras' first frames are placed on one clock by their monotonic read times, from a wall
        time taken once: a wall-clock step between two cameras' first frames (NTP after boot) would
        otherwise offset them for the whole run. Frames without a monotonic time use their wall time.
        """
        origin = self._origins.get(frame.camera)
        if origin is None:
            if frame.monotonic is None:
                origin = frame.timestamp - frame.pts
            else:
                if self._anchor is None:
                    self._anchor = (frame.timestamp, frame.monotonic)
                wall, mono = self._anchor
                origin = wall + (frame.monotonic - mono) - frame.pts
            self._origins[frame.camera] = origin
        return origin + frame.pts

    def observe(self, frame: Frame, update: TrackUpdate) -> list[Event]:
        """Record a frame's tracks; returns `TrackStarted` / `TrackEnded` events."""
        events: list[Event] = []
        now = self.media_time(frame)  # also fixes the camera's clock origin on its first frame
        self._clocks[frame.camera] = (frame.modality, now)
        for track in update.tracks:
            key = (frame.camera, track.track_id)
            record = self.records.get(key)
            if record is None:
                record = TrackRecord(
                    camera=frame.camera,
                    modality=frame.modality,
                    track_id=track.track_id,
                    first_frame=frame.index,
                    first_time=frame.timestamp,
                    last_frame=frame.index,
                    last_time=frame.timestamp,
                    box=track.det_box,
                    first_pts=frame.pts,
                    last_pts=frame.pts,
                )
                self.records[key] = record
            record.last_frame, record.last_time, record.box = frame.index, frame.timestamp, track.det_box
            record.last_pts, record.last_media = frame.pts, now
            record.hits = track.hits
            if track.track_id in update.started:
                x1, y1, x2, y2 = track.det_box.tolist()
                events.append(
                    TrackStarted(  # the detection's box: the one drawn and cropped on that frame
                        frame.timestamp,
                        frame.camera,
                        frame.modality,
                        track.track_id,
                        frame.index,
                        (x1, y1, x2, y2),
                    )
                )
        for track_id in update.ended:
            events += self.end((frame.camera, track_id))
        return events

    def end(self, key: TrackKey) -> list[Event]:
        """End a track (it left, or the stream stopped); returns its `TrackEnded` event."""
        record = self.records.pop(key, None)
        if record is None:
            return []
        record.ended = True
        if self.modalities is None or record.modality.other in self.modalities:
            self._ended.append(record)
            self._prune()
        return [
            TrackEnded(
                time=record.last_time,
                camera=record.camera,
                modality=record.modality,
                track_id=record.track_id,
                frame=record.last_frame,
                name=record.name,
                score=record.score if record.name else 0.0,
                frames=record.hits,
                duration=round(record.last_pts - record.first_pts, 3),  # media time, also in --fast
                embeddings=record.samples,
            )
        ]

    def end_camera(self, camera: str) -> list[Event]:
        """End every live track of one camera (it closed, or restarts: its clock resumes with its next
        frame)."""
        self._clocks.pop(camera, None)
        events: list[Event] = []
        for key in [k for k in self.records if k[0] == camera]:
            events += self.end(key)
        return events

    def requests(self, frame: Frame, tracks: Sequence[Track], qualities: np.ndarray) -> list[CropRequest]:
        """The crops of this frame worth embedding (see the module docstring), with priorities:
        tracks never embedded first, then the longest since their last embedding."""
        wanted = []
        for track, quality in zip(tracks, qualities, strict=True):
            record = self.records.get((frame.camera, track.track_id))
            if record is None or quality < self.min_quality:
                continue
            since = frame.index - record.last_embed_frame
            better = quality >= record.best_quality * (1.0 + self.improve) and since >= 2
            if since >= self.embed_every or better:
                priority = 1e6 if record.samples == 0 else float(since) + quality
                wanted.append(CropRequest(record.key, frame, track.det_box, float(quality), priority))
        return wanted

    # ----- embeddings ---------------------------------------------------------------------------
    def update(self, requests: Sequence[CropRequest], vectors: np.ndarray) -> list[Event]:
        """Add the embedded crops to their tracks, then identify and cross-match the tracks updated.

        Args:
            requests: the crops, as returned by `requests` (possibly from several frames and cameras).
            vectors: float32 `[len(requests), D]` unit embeddings, one per request.
        """
        if len(requests) != len(vectors):
            raise InputSpecError(f"update: {len(requests)} requests but {len(vectors)} vectors")
        touched: dict[TrackKey, TrackRecord] = {}
        for request, vector in zip(requests, vectors, strict=True):
            record = self.records.get(request.key)
            if record is None:
                continue  # ended while its crop was being embedded
            weight = max(request.quality, 1e-3)
            contribution = weight * vector.astype(np.float64)
            record.vector_sum = (
                contribution if record.vector_sum is None else record.vector_sum + contribution
            )
            record.weight += weight
            record.samples += 1
            record.last_embed_frame = request.frame.index
            record.best_quality = max(record.best_quality, request.quality)
            touched[request.key] = record
        if not touched:
            return []
        updated = list(touched.values())
        times = {r.key: r.last_time for r in updated}
        self._prune()
        events = self._identify(updated, times)
        return events + self._cross_match(updated, times)

    def _identify(self, records: list[TrackRecord], times: dict[TrackKey, float]) -> list[Event]:
        if self.gallery is None or not records:
            return []
        scores = self._gallery_scores(records)
        events: list[Event] = []
        for modality in Modality:  # visible tracks' events first, as they always came
            for record, found in zip(records, scores, strict=True):
                if record.modality is modality:
                    event = self._decide_name(record, found, times[record.key])
                    if event is not None:
                        events.append(event)
        return events

    def _gallery_scores(self, records: list[TrackRecord]) -> list[dict[str, _Score]]:
        """Per record, the best score of each identity among the top ones and its threshold's excess.

        One gallery search per enrolled modality, with the tracks of both modalities that search it
        in one batch (not one per pair of modalities: a search scans every enrolled centroid)."""
        out: list[dict[str, _Score]] = [{} for _ in records]
        for entry in Modality:
            rows = [
                i for i, r in enumerate(records) if self.gallery_modality == "any" or r.modality is not entry
            ]
            if not rows:
                continue
            queries = np.stack([records[i].embedding for i in rows])  # type: ignore[misc]
            results = self.gallery.search_identities(
                queries, k=self.top_k, modality=entry, score=self.identity_score
            )
            for i, matches in zip(rows, results, strict=True):
                own = records[i].modality
                threshold = self.threshold if entry is not own else self.within_threshold[own]
                scores = out[i]
                for m in matches:
                    excess = m.score - threshold
                    if m.identity not in scores or excess > scores[m.identity].excess:
                        scores[m.identity] = _Score(m.score, excess)
        return out

    def _decide_name(self, record: TrackRecord, scores: dict[str, _Score], now: float) -> Identified | None:
        best = max(scores, key=lambda name: scores[name].excess) if scores else None
        current = scores.get(record.name) if record.name is not None else None
        if record.name is not None and current is not None:
            record.score = current.score  # out of the top identities this time: keep the last real score
        if best is None or scores[best].excess < 0.0 or best == record.name:
            record.candidate, record.candidate_hits = None, 0
            return None
        if record.name is not None and scores[best].excess < _excess_of(current) + self.margin:
            record.candidate, record.candidate_hits = None, 0
            return None
        record.candidate_hits = record.candidate_hits + 1 if record.candidate == best else 1
        record.candidate = best
        if record.candidate_hits < self.confirm:
            return None
        previous, record.name, record.score = record.name, best, scores[best].score
        record.candidate, record.candidate_hits = None, 0
        return Identified(
            now,
            record.camera,
            record.modality,
            record.track_id,
            record.last_frame,
            best,
            scores[best].score,
            previous,
        )

    # ----- cross-modal --------------------------------------------------------------------------
    def _cross_match(self, records: list[TrackRecord], times: dict[TrackKey, float]) -> list[Event]:
        events: list[Event] = []
        pool = self._pairable()
        ready = [r for r in records if r.samples >= self.min_samples and pool[r.modality.other].records]
        scored = self._cross_scores(ready, pool)
        for record in ready:  # in order: each decision sees the pairs the earlier ones made
            others = pool[record.modality.other]
            scores, mutual = scored[record.key]
            where = others.index.get(record.partner) if record.partner is not None else None
            if where is not None:  # the real score, before any lowering below
                record.partner_score = float(scores[where])
            if not mutual:
                scores = np.minimum(scores, self.cross_threshold - 1.0)  # not each other's best: no decision
            event = self._decide_partner(record, others.records, scores, times[record.key])
            if event is not None:
                events.append(event)
        return events

    @staticmethod
    def _cross_scores(
        ready: list[TrackRecord], pool: dict[Modality, _Pool]
    ) -> dict[TrackKey, tuple[np.ndarray, bool]]:
        """Per updated track: its scores against the other modality's pairable tracks, and whether it
        is in turn the best match of its own best (mutual). Two matrix products per modality, not two
        matrix-vector products per track: with a thousand ended tracks those reread the whole pool
        for every crop."""
        out = {}
        for modality in Modality:
            group = [r for r in ready if r.modality is modality]
            if not group:
                continue
            others, own = pool[modality.other], pool[modality]
            scores = np.stack([r.embedding for r in group]) @ others.matrix.T  # type: ignore[misc]
            best = np.argmax(scores, axis=1)
            back = np.argmax(others.matrix[best] @ own.matrix.T, axis=1)  # each best's own best
            for j, record in enumerate(group):
                out[record.key] = (scores[j], own.records[int(back[j])].key == record.key)
        return out

    def _pairable(self) -> dict[Modality, _Pool]:
        """Tracks with enough samples to pair (live, or ended within the window), by modality, with
        their embeddings stacked once per update: with a thousand ended tracks, stacking them again
        for every updated track cost more than a frame's time budget."""
        pool = [r for r in [*self.records.values(), *self._ended] if r.samples >= self.min_samples]
        out = {}
        for modality in Modality:
            group = [r for r in pool if r.modality is modality]
            # every pooled record has samples, hence an embedding: a fact its Optional type cannot carry
            matrix = np.stack([r.embedding for r in group]) if group else np.zeros((0, 0), np.float32)  # type: ignore[misc]
            out[modality] = _Pool(group, matrix, {r.key: i for i, r in enumerate(group)})
        return out

    def _decide_partner(
        self, record: TrackRecord, others: list[TrackRecord], scores: np.ndarray, now: float
    ) -> CrossModalMatch | None:
        partner = others[int(np.argmax(scores))]
        best, best_score = partner.key, float(np.max(scores))
        if best_score < self.cross_threshold or best == record.partner:
            record.partner_candidate, record.partner_hits = None, 0
            return None
        if record.partner is not None and best_score < record.partner_score + self.margin:
            record.partner_candidate, record.partner_hits = None, 0
            return None
        if partner.partner not in (None, record.key) and best_score < partner.partner_score + self.margin:
            # taking a track from its partner needs the same margin as leaving one's own: without it
            # two near-equal rivals would take it from each other on every update
            record.partner_candidate, record.partner_hits = None, 0
            return None
        record.partner_hits = record.partner_hits + 1 if record.partner_candidate == best else 1
        record.partner_candidate = best
        if record.partner_hits < self.confirm:
            return None
        self._pair(record, partner, best_score)
        visible, infrared = (record.key, best) if record.modality is Modality.VISIBLE else (best, record.key)
        return CrossModalMatch(now, visible[0], visible[1], infrared[0], infrared[1], best_score)

    def _pair(self, one: TrackRecord, other: TrackRecord, score: float) -> None:
        """Make two tracks each other's partner, releasing the partners they had (whose own partner
        was them): a pair is one fact, so the other side does not announce it again, and a later
        change of either side, back to an earlier partner too, is a new `CrossModalMatch`."""
        for side, new in ((one, other), (other, one)):
            if side.partner is not None and side.partner != new.key:
                previous = self._record(side.partner)
                if previous is not None and previous.partner == side.key:
                    previous.partner, previous.partner_score = None, 0.0
            side.partner, side.partner_score = new.key, score
            side.partner_candidate, side.partner_hits = None, 0

    def _record(self, key: TrackKey) -> TrackRecord | None:
        """A live or recently ended track by key (None once forgotten)."""
        return self.records.get(key) or next((r for r in self._ended if r.key == key), None)

    def _prune(self) -> None:
        """Forget ended tracks that fell out of `cross_window`, on the media clock of the cameras they
        could still pair with: the slowest live camera of the other modality (in `--fast` a 9 fps
        thermal file and a 30 fps colour file advance at different media rates), and beyond the 1000
        most recent."""
        slowest: dict[Modality, float] = {}
        for modality, now in self._clocks.values():
            slowest[modality] = min(slowest.get(modality, now), now)

        def expired(record: TrackRecord) -> bool:
            now = slowest.get(record.modality.other)
            return now is not None and now - record.last_media > self.cross_window

        if any(expired(r) for r in self._ended):
            self._ended = collections.deque(r for r in self._ended if not expired(r))
        while len(self._ended) > 1000:
            self._ended.popleft()
