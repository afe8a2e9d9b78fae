"""Live pipeline statistics: per-source frame rates, per-stage latency, counts, real-time factor."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np

from .sources import SourceStats

STAGES = ("detect", "track", "quality", "embed", "match", "sinks", "step")
"""Timed stages: per frame (`detect`, `track`, `quality`), per round (`embed`, `match`, `sinks`, and
`step`, a whole round over the frames of every camera)."""

STALL_SHOWN_AFTER = 10.0
"""Seconds without a round of the processing loop after which the status line says it is stalled (one
round takes well under a second with any model and camera count the pipeline keeps up with)."""


class Heartbeat:
    """When the processing loop last went round, and what it is inside now (a stage, an output): a loop
    stuck in a model call or behind a blocked output is told apart from one with nothing to do. Written
    by the processing thread, read from any thread."""

    def __init__(self) -> None:
        self._last: float | None = None
        self._inside: list[str] = []

    def beat(self) -> None:
        """The loop went round (called at the top of every round, busy or idle)."""
        self._last = time.monotonic()

    def excuse(self, since: float, seconds: float) -> None:
        """The whole process stood still for `seconds` from `since` (monotonic; frozen, suspended):
        not the loop's fault, unless it has gone round since then (its clock is then its own)."""
        last = self._last
        if last is not None and last <= since:
            self._last = min(last + seconds, time.monotonic())

    def rest(self) -> None:
        """The loop ended: nothing to be stalled any more."""
        self._last = None

    @contextmanager
    def inside(self, what: str) -> Iterator[None]:
        self._inside.append(what)
        try:
            yield
        finally:
            self._inside.pop()

    def stalled(self) -> tuple[float, str]:
        """Seconds since the loop last went round (0 when it is not running) and where it is now."""
        last, inside = self._last, list(self._inside)
        if last is None:
            return 0.0, ""
        return max(0.0, time.monotonic() - last), " > ".join(inside) or "the processing loop"


@dataclass(frozen=True)
class StageStats:
    """Latency of one stage over its last (up to) 1000 samples, in milliseconds: one per call, except
    `detect`, `track` and `quality`, which count one per frame (a batched detection of several
    cameras' frames gives each frame its share)."""

    name: str
    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    last_ms: float


class StageTimer:
    """Collects durations per stage; written by the processing thread, read from any thread."""

    def __init__(self, window: int = 1000, heartbeat: Heartbeat | None = None) -> None:
        self._heartbeat = heartbeat
        self._samples: dict[str, collections.deque[float]] = {
            s: collections.deque(maxlen=window) for s in STAGES
        }
        self._counts: dict[str, int] = dict.fromkeys(STAGES, 0)
        self._lock = threading.Lock()

    @contextmanager
    def time(self, stage: str, items: int = 1) -> Iterator[None]:
        """Time a block; one that did the work of `items` (a batched detection of several cameras'
        frames) records each its share, so a per-frame stage stays per frame."""
        start = time.perf_counter()
        try:
            with self._heartbeat.inside(stage) if self._heartbeat else nullcontext():
                yield
        finally:
            share = (time.perf_counter() - start) / max(items, 1)
            for _ in range(max(items, 1)):
                self.add(stage, share)

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._samples.setdefault(stage, collections.deque(maxlen=1000)).append(seconds)
            self._counts[stage] = self._counts.get(stage, 0) + 1

    def snapshot(self) -> dict[str, StageStats]:
        with self._lock:
            copies = {name: (list(samples), self._counts[name]) for name, samples in self._samples.items()}
        out = {}
        for name, (samples, count) in copies.items():
            values = np.array(samples, dtype=np.float64) * 1e3
            if not len(values):
                continue
            p50, p95 = np.percentile(values, [50, 95])
            last = float(values[-1])
            out[name] = StageStats(name, count, float(values.mean()), float(p50), float(p95), last)
        return out


@dataclass(frozen=True)
class CameraStats:
    """Processing counters of one camera.

    Attributes:
        processed: frames processed.
        fps: frames processed per second over the last ~2 s.
        media_seconds: span of the source's timeline processed so far (pts of last − first frame
            + one frame), used for the real-time factor of file sources.
        lag_ms: mean age of a frame (read → start of processing) over the last 100 frames.
        active_tracks: confirmed tracks alive now.
    """

    processed: int
    fps: float
    media_seconds: float
    lag_ms: float
    active_tracks: int


@dataclass(frozen=True)
class PipelineStats:
    """A snapshot of a running (or stopped) pipeline.

    Attributes:
        elapsed: seconds since `start()`.
        sources: each source's reader counters.
        cameras: processing counters per camera id.
        stages: latency per stage (see `STAGES`).
        events: events emitted so far, per kind.
        identified: live tracks that hold an identity now.
        dropped_sinks: outputs that failed and were dropped (their files are incomplete).
        stalled_for: seconds since the processing loop last went round (0 when it is not running; a
            round takes well under a second, so tens of seconds mean it is stuck).
        stalled_in: where the processing loop is now (a stage, an output's method; "" when not running).
    """

    elapsed: float
    sources: tuple[SourceStats, ...]
    cameras: Mapping[str, CameraStats]
    stages: Mapping[str, StageStats]
    events: Mapping[str, int]
    identified: int
    dropped_sinks: tuple[str, ...] = ()
    stalled_for: float = 0.0
    stalled_in: str = ""

    @property
    def realtime_factor(self) -> float:
        """Media time processed per wall-clock second for the slowest camera (≥ 1: keeps up)."""
        if not self.cameras or self.elapsed <= 0:
            return 0.0
        return min(c.media_seconds for c in self.cameras.values()) / self.elapsed

    def status_line(self) -> str:
        """One line for a terminal: per-camera rates and state, tracks, identities, stage latencies."""
        parts = []
        for source in self.sources:
            cam = self.cameras.get(source.camera)
            fps = cam.fps if cam else 0.0
            state = "" if source.state.value == "live" else f" {source.state.value}"
            parts.append(f"{source.camera} {fps:4.1f} fps{state}")
        tracks = sum(c.active_tracks for c in self.cameras.values())
        started = self.events.get("track_started", 0)
        parts.append(f"tracks {tracks} now ({started} in all), named {self.identified} now")
        stage_text = " ".join(
            f"{n} {self.stages[n].mean_ms:.1f}" for n in ("detect", "embed", "step") if n in self.stages
        )
        if stage_text:
            parts.append(f"ms: {stage_text}")
        if self.dropped_sinks:  # a months-long run must not hide a lost output until it ends
            parts.append(f"FAILED output: {', '.join(self.dropped_sinks)}")
        if self.stalled_for >= STALL_SHOWN_AFTER:  # else the camera rates read as if all were well
            parts.append(f"processing STALLED {self.stalled_for:.0f} s in {self.stalled_in}")
        return " | ".join(parts)


class CameraCounter:
    """Per-camera processing counters kept by the pipeline."""

    def __init__(self) -> None:
        self.processed = 0
        self.first_pts: float | None = None
        self.last_pts = 0.0
        self.frame_step = 0.0
        self._times: collections.deque[float] = collections.deque(maxlen=64)
        self._lags: collections.deque[float] = collections.deque(maxlen=100)
        self._lock = threading.Lock()

    def add(self, pts: float, lag: float) -> None:
        with self._lock:
            self._add(pts, lag)

    def _add(self, pts: float, lag: float) -> None:
        now = time.monotonic()
        if self.first_pts is None:
            self.first_pts = pts
        elif pts > self.last_pts:
            self.frame_step = pts - self.last_pts
        self.last_pts = pts
        self.processed += 1
        self._times.append(now)
        self._lags.append(lag)

    def snapshot(self, active_tracks: int) -> CameraStats:
        now = time.monotonic()
        with self._lock:
            times, lags = list(self._times), list(self._lags)
        recent = [t for t in times if now - t <= 2.0]
        fps = (
            (len(recent) - 1) / (recent[-1] - recent[0])
            if len(recent) > 1 and recent[-1] > recent[0]
            else 0.0
        )
        media = 0.0 if self.first_pts is None else self.last_pts - self.first_pts + self.frame_step
        lag = 1e3 * float(np.mean(lags)) if lags else 0.0
        return CameraStats(self.processed, fps, media, lag, active_tracks)
