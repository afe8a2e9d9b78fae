"""`Pipeline`: sources → detector → tracker (per camera) → batched embeddings → matcher → events → sinks.

Each source reads on its own thread; one processing thread takes the frames ready on every camera,
detects in them (one call for the cameras sharing a batching detector, `BatchDetector`), tracks per
camera, embeds the crops the matcher asks for from all cameras and both
modalities in one batched call, and hands events and annotated frames to the sinks. `stop()` (also on
Ctrl-C / SIGTERM inside `run()`, and on leaving a `with` block) stops the sources, ends every live
track (`TrackEnded`), and flushes and closes every sink once.
"""

from __future__ import annotations

import collections
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..embedder import Embedder
from ..errors import ConfigError, InputSpecError, ProcessingStalledError
from ..imageio import has_colour
from ..modality import Modality
from ..preprocess import crop_box
from .appearance import colour_signatures
from .config import PipelineConfig, check_cameras, check_modalities
from .detect import Detector, make_detector
from .detect.base import BatchDetector, Detections
from .events import Event, SourceChanged
from .frame import Frame
from .matcher import CropRequest, Matcher
from .quality import crop_quality
from .sinks import CallbackSink, FrameResult, Sink, TrackView
from .sources import SourceState, VideoSource, parse_source
from .stats import CameraCounter, Heartbeat, PipelineStats, StageTimer
from .track import ByteTracker, TrackUpdate

log = logging.getLogger("vireid")

STOP_WAIT = 10.0
"""Seconds `run()`'s stop waits for a processing thread asked to stop (a round takes under a second)
before it counts as stuck; a service manager's stop timeout must leave room for it (docs/deployment.md)."""

PAUSE_GAP = 5.0
"""A gap this long in `run()`'s own 0.1 s wait means the whole process was frozen (`docker pause`, a
suspended VM): the processing loop's time without a round is excused by as much."""


class _Camera:
    """One source with its own detector, tracker and counters."""

    def __init__(self, source: VideoSource, detector: Detector, tracker: ByteTracker) -> None:
        self.source, self.detector, self.tracker = source, detector, tracker
        self.counter = CameraCounter()
        self.closed = False
        self.colour_checked = False
        self.size: tuple[int, int] | None = None

    def check_colour(self, frame: Frame) -> None:
        """Once per camera: an infrared camera delivering colour frames is most likely mislabelled."""
        if self.colour_checked:
            return
        self.colour_checked = True
        if frame.modality is Modality.INFRARED and has_colour(frame.image):
            log.warning(
                "camera %s is declared infrared but its frames are in colour: a visible camera (check its "
                "--source MODALITY), or a thermal camera with a false-colour palette (set it to white-hot "
                "grey: the models are trained on grey thermal images)",
                frame.camera,
            )


class Pipeline:
    """Real-time cross-modal re-identification over several cameras.

    Example:
        >>> with Pipeline(["visible=gate.mp4", "infrared=gate-ir.mp4"], "model.onnx",
        ...               gallery=vireid.Gallery.open("site.db"), sinks=[JsonlSink("events.jsonl")]) as p:
        ...     p.run()                      # until the files end, or Ctrl-C

    Args:
        sources: `VideoSource`s, or CLI-style strings `MODALITY[@CAMERA]=ADDRESS`.
        model: an `Embedder`, or a model path opened with `device` and `embedder_options`.
        gallery: a `vireid.Gallery`, a gallery path (opened, never created), or None (no names; visible ↔
            infrared track matching only).
        config: `PipelineConfig`.
        sinks: where events and frames go.
        detector: a detector object (its `for_camera()` is used per camera) instead of `config.detector`.
        on_event: shortcut for a `CallbackSink(on_event)`.
        device: embedder device when `model` is a path.

    Raises:
        ConfigError: no threshold (card has none and none given), duplicate camera ids, no sources.
    """

    def __init__(
        self,
        sources: Sequence[VideoSource | str],
        model: Embedder | str | Path,
        *,
        gallery: Any = None,
        config: PipelineConfig | None = None,
        sinks: Iterable[Sink] = (),
        detector: Detector | None = None,
        on_event: Callable[[Event], None] | None = None,
        device: str = "auto",
        **embedder_options: Any,
    ) -> None:
        self.config = config or PipelineConfig()
        built = [s if isinstance(s, VideoSource) else parse_source(s) for s in sources]
        check_cameras(built)
        self._owns_embedder = not isinstance(model, Embedder)
        self.embedder = model if isinstance(model, Embedder) else Embedder(model, device, **embedder_options)
        try:
            check_modalities(built, self.embedder)
            self.gallery, self._owns_gallery = self._open_gallery(gallery)
            self.matcher = self._make_matcher({s.modality for s in built})
            self._owned_detector = None
            if detector is None:  # built here, so closed here (a YOLO session's threads and memory)
                detector = self._owned_detector = make_detector(
                    self.config.detector, **self.config.detector_options
                )
            self._base_detector = detector
            self._cameras = {s.camera: _Camera(s, detector.for_camera(), self._new_tracker()) for s in built}
        except BaseException:
            self._close_owned()
            raise
        self.sinks: list[Sink] = list(sinks) + ([CallbackSink(on_event)] if on_event else [])
        self.dropped_sinks: list[Sink] = []
        """Sinks that raised and were dropped (the log has why): their outputs are incomplete."""
        self.heartbeat = Heartbeat()
        self.timer = StageTimer(heartbeat=self.heartbeat)
        self._event_counts: collections.Counter[str] = collections.Counter()
        self._source_events: collections.deque[SourceChanged] = collections.deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop_lock = threading.RLock()
        self._started_at: float | None = None
        self._stopped = False
        self._error: BaseException | None = None
        self._join_timeout = 60.0  # seconds stop() waits for the processing thread
        self._sink_lock = threading.Lock()  # the thread entering an output vs stop() giving up on it
        self._busy_sink: Sink | None = None  # the output the processing thread is inside now
        self._left_sink: Sink | None = None  # the output stop() left to a stuck thread
        self._abandoned = False  # stop() gave up on a stuck processing thread: it must touch no output
        self._exited = False  # the processing thread has left its loop (set under _sink_lock)
        self.stuck_in: str | None = None
        """Where the processing thread was when `stop()` gave up waiting for it (None after a clean
        stop): the outputs were closed without the last tracks' ends."""
        self.left_open: str | None = None
        """The output that thread was inside, left to it unflushed (None when it was not in one)."""
        self.stalled: str | None = None
        """Why `run(stall_timeout=...)` stopped the pipeline (the loop stuck for that long), else None."""
        self.interrupted = False
        self.stop_signal: str | None = None
        """The signal that stopped `run()` (`SIGINT`, `SIGTERM`, `SIGHUP`), None when none did."""
        for cam in self._cameras.values():
            cam.source.notify = self._wake.set
            cam.source.on_state = _chain(cam.source.on_state, self._on_source_state)

    # ----- construction helpers -----------------------------------------------------------------
    def _open_gallery(self, gallery: Any) -> tuple[Any, bool]:
        if gallery is None or not isinstance(gallery, (str, Path)):
            if gallery is not None:
                gallery.check_embedding_space(self.embedder.embedding_space)
            return gallery, False
        from ..gallery import Gallery

        return Gallery.open(gallery, embedding_space=self.embedder.embedding_space), True

    def _make_matcher(self, modalities: set[Modality]) -> Matcher:
        cfg = self.config
        return Matcher(
            self._cross_modal_threshold(),
            within_threshold=self._within_threshold(),
            cross_threshold=self._pairing_threshold(),
            gallery=self.gallery,
            gallery_modality=cfg.gallery_modality,
            identity_score=cfg.identity_score,
            embed_every=cfg.embed_every,
            min_quality=cfg.min_quality,
            margin=cfg.margin,
            confirm=cfg.confirm,
            cross_window=cfg.cross_window,
            modalities=modalities,
        )

    def _cross_modal_threshold(self) -> float:
        """The config's threshold, else the card's calibrated for what the matcher compares (track
        means against enrolment centroids), else the card's single-image one."""
        card = self.embedder.card
        if self.config.threshold is not None:
            return self.config.threshold
        if card.track_mean_threshold is not None:
            single = f"{card.match_threshold:.4f}" if card.match_threshold is not None else "none"
            log.info(
                "cross-modal threshold %.4f: the card's for track means against enrolment centroids "
                "(single images: %s)",
                card.track_mean_threshold,
                single,
            )
            return card.track_mean_threshold
        if card.match_threshold is None:
            raise ConfigError(
                f"model {card.model_name} has no match_threshold in its card; pass a "
                "threshold (PipelineConfig(threshold=...) or --threshold)"
            )
        return card.match_threshold

    def _pairing_threshold(self) -> float | None:
        """Visible ↔ infrared track pairs: the config's, else its `threshold`, else the card's
        single-image threshold (None: the matcher's threshold). A pair must also be each other's best
        match, a test an impostor seldom passes, so pairing keeps the looser threshold that links more
        people (on the seven test scenes of docs/pipeline.md the track-mean one cut pairing recall from
        0.56 to 0.45 for precision 0.82 -> 0.88)."""
        cfg = self.config
        if cfg.cross_threshold is not None or cfg.threshold is not None:
            return cfg.cross_threshold if cfg.cross_threshold is not None else cfg.threshold
        return self.embedder.card.match_threshold

    def _within_threshold(self) -> Mapping[str, float] | float:
        """The config's same-modality threshold, else the card's per modality; a modality the card
        has none for is left out (the matcher then uses the cross-modal threshold), with a warning."""
        if self.config.within_threshold is not None:
            return self.config.within_threshold
        card = self.embedder.card
        found = {str(m): card.threshold_for(m, m) for m in card.modalities}
        missing = [name for name, value in found.items() if value is None]
        if missing and self.gallery is not None and self.config.gallery_modality == "any":
            log.warning(
                "model %s has no same-modality threshold for %s in its card (exported before vireid "
                "calibrated them, or too few identities): those matches use the cross-modal threshold, "
                "which lets more impostors through; re-export with --calibrate or pass within_threshold "
                "(--within-threshold)",
                card.model_name,
                " and ".join(missing),
            )
        return {name: value for name, value in found.items() if value is not None}

    @property
    def sources(self) -> list[VideoSource]:
        return [cam.source for cam in self._cameras.values()]

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running" if self.running else "ready"
        cameras = ", ".join(f"{cam.source.camera}={cam.source.modality}" for cam in self._cameras.values())
        return f"Pipeline([{cameras}], {self.embedder!r}, gallery={self.gallery!r}, {state})"

    # ----- life cycle ---------------------------------------------------------------------------
    def start(self) -> Pipeline:
        """Start every source and the processing thread.

        Raises:
            StreamError: a file source does not exist or cannot be decoded (nothing is left running).
        """
        if self._thread is not None:
            return self
        started = []
        try:
            for cam in self._cameras.values():
                started.append(cam.source.start())
        except BaseException:
            for source in started:
                source.stop()
            raise
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="vireid-pipeline", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Event]:
        """Stop sources and processing, end every live track, flush and close every sink (once).
        Returns the events of that last step (each live track's `TrackEnded`, the sources' `stopped`),
        which the sinks also received: a caller driving `step()` itself gets them here.

        Called from a thread the pipeline owns (a sink or an event callback on the processing thread, a
        source's `on_state` callback on its reader thread; neither can wait for itself), it only asks
        the loop to finish, as `request_stop()` does: `run()` then stops everything; after `start()`,
        call `stop()` again from your own thread. A second caller waits until the first has finished.
        """
        if threading.current_thread() in self._owned_threads():
            self.request_stop()
            return []
        with self._stop_lock:  # reentrant: a sink's close() calling stop() returns at once
            if self._stopped:
                return []
            self._stopped = True
            return self._stop_everything()

    def _owned_threads(self) -> list[threading.Thread]:
        sources = [cam.source._thread for cam in self._cameras.values()]
        return [t for t in (self._thread, *sources) if t is not None]

    def _stop_everything(self) -> list[Event]:
        self._stopping.set()
        self._wake.set()
        for cam in self._cameras.values():
            cam.source.request_stop()  # every reader winds down at once, then they are joined one by one
        # against one deadline, so blocked readers cost one read timeout in all, not one per camera (a
        # container runtime kills a process that takes longer than its grace period, ~10 s, to stop)
        timeouts = [getattr(cam.source, "read_timeout", 5.0) for cam in self._cameras.values()]
        asked = time.monotonic()
        deadline = asked + max(timeouts, default=0.0) + 1.0
        for cam in self._cameras.values():
            cam.source.stop(timeout=max(0.0, deadline - time.monotonic()))
        if self._thread is not None:  # asked to stop with the readers: its wait counts from then too
            self._thread.join(timeout=max(0.0, asked + self._join_timeout - time.monotonic()))
            if self._thread.is_alive() and self._abandon_stuck_thread():
                return []
        events: list[Event] = []
        try:
            for camera, cam in self._cameras.items():
                if not cam.closed:
                    events += self._close_camera(camera)
            events = self._drain_source_events() + events
            self._emit(events)
        finally:  # whatever a sink did with the last events, every sink is closed (flushed) once
            for sink in list(self.sinks):
                self._close_sink(sink)  # one whose last events failed is dropped: its output is incomplete
            self._close_owned()
        return events

    def _abandon_stuck_thread(self) -> bool:
        """The processing thread did not stop: close every output it is not inside and leave the rest
        (its tracks, the model, the output it hangs in) to it; should it come back, it closes them
        itself (`_loop`). Ending its tracks or closing the model under it could corrupt an output or
        crash the process; the last tracks' `TrackEnded` events are lost instead. False when the
        thread ended after all (the caller then stops cleanly)."""
        with self._sink_lock:  # from here on the thread enters no output
            if self._exited:
                return False
            self._abandoned = True
            stuck = self._left_sink = self._busy_sink
        _, where = self.heartbeat.stalled()
        self.stuck_in = where or "the processing loop"
        self.left_open = None if stuck is None else repr(stuck)
        log.error(
            "pipeline: the processing thread did not stop within %.0f s (stuck in %s); closing the "
            "outputs it is not using, without the last tracks' ends",
            self._join_timeout,
            where or "the processing loop",
        )
        others = [sink for sink in self.sinks if sink is not stuck]

        def close_others() -> None:
            for sink in others:
                self._close_sink(sink)

        # they may sit on the same dead disk as the stuck one: never wait for them for good
        closing = threading.Thread(target=close_others, name="vireid-close", daemon=True)
        closing.start()
        closing.join(STOP_WAIT)
        if closing.is_alive():
            log.error("pipeline: closing the other outputs did not finish within %.0f s either", STOP_WAIT)
        return True

    def _close_sink(self, sink: Sink) -> None:
        try:
            sink.close()
        except Exception:
            log.exception("pipeline: closing sink %r failed; its output is incomplete", sink)
            self._drop(sink)

    def _drop(self, sink: Sink) -> None:
        if sink in self.sinks:  # a sink failing twice (its call, then its close) is dropped once
            self.sinks.remove(sink)
            self.dropped_sinks.append(sink)

    def _finish_abandoned(self) -> None:
        """The processing thread came back after `stop()` gave up on it: close what was left to it."""
        if self._left_sink is not None and self._left_sink in self.sinks:
            self._close_sink(self._left_sink)
        self._close_owned()

    def _close_owned(self) -> None:
        """Close what the constructor built (the embedder, gallery and detector it was given by name)."""
        if getattr(self, "_owns_gallery", False) and self.gallery is not None:
            self.gallery.close()
        owned_detector = getattr(self, "_owned_detector", None)
        if owned_detector is not None and callable(getattr(owned_detector, "close", None)):
            owned_detector.close()
        if self._owns_embedder:
            self.embedder.close()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(
        self,
        duration: float | None = None,
        *,
        handle_signals: bool = True,
        on_status: Callable[[PipelineStats], None] | None = None,
        status_every: float = 1.0,
        stall_timeout: float | None = None,
        on_stopping: Callable[[str], None] | None = None,
    ) -> PipelineStats:
        """Start, process until every source has finished, `duration` seconds passed, or Ctrl-C /
        SIGTERM / SIGHUP, then `stop()` (always). Returns the final statistics.

        Args:
            duration: seconds to run at most (None: until the sources finish).
            handle_signals: in the main thread, turn SIGINT, SIGTERM and SIGHUP (where the system has
                it: a closed terminal) into a clean stop (the same signal again interrupts at once),
                except a signal the process ignores (`nohup`); `interrupted` and `stop_signal` tell
                afterwards.
            on_status: called with fresh statistics every `status_every` seconds.
            stall_timeout: stop when the processing loop has not gone round for this many seconds (a
                model call or an output that hangs: a service should restart rather than look alive
                with its cameras unwatched); None never.
            on_stopping: called once with the reason when the run begins to stop (before `stop()`),
                e.g. to tell a service manager.

        Raises:
            ConfigError: `stall_timeout` is not a positive number of seconds.
            ProcessingStalledError: the loop was stuck for `stall_timeout` seconds; raised after the
                stop, which closed every output the stuck thread was not inside.
            VireidError: what stopped the processing thread, re-raised after the clean stop.
        """
        if stall_timeout is not None and not (math.isfinite(stall_timeout) and stall_timeout > 0):
            raise ConfigError(
                f"stall_timeout must be a positive number of seconds or None, got {stall_timeout}"
            )
        restore = self._install_signals() if handle_signals else {}
        try:
            self.start()
            why = self._process(duration, on_status, status_every, stall_timeout)
            # the thread was asked to stop or is done: a round takes under a second; longer, it is stuck
            self._join_timeout = min(self._join_timeout, STOP_WAIT)
            if on_stopping is not None:
                on_stopping(why)
        finally:
            try:
                self.stop()
            finally:  # a sink raising on the last events must not leave our signal handlers installed
                for signum, handler in restore.items():
                    signal.signal(signum, handler)
        if self._error is not None:
            raise self._error
        if self.stalled is not None:
            raise ProcessingStalledError(f"{self.stalled}; the pipeline stopped")
        return self.stats()

    def _process(
        self,
        duration: float | None,
        on_status: Callable[[PipelineStats], None] | None,
        status_every: float,
        stall_timeout: float | None,
    ) -> str:
        """`run()`'s wait while the thread processes; returns why it ended."""
        deadline = None if duration is None else time.monotonic() + duration
        next_status = time.monotonic()
        while True:
            before = time.monotonic()
            if self._done.wait(0.1):
                break
            now = time.monotonic()
            if now - before > PAUSE_GAP:  # a 0.1 s wait that took seconds: the whole process stood
                self.heartbeat.excuse(before, now - before)  # still (frozen, suspended), not the loop
            if self._stopping.is_set():  # a signal or request_stop()
                return self.stop_signal or "stop requested"
            if deadline is not None and now >= deadline:
                return f"--duration {duration:g} s reached"
            if stall_timeout is not None and self._stalled_beyond(stall_timeout):
                if on_status is not None:  # the stall in the last status: callers report it
                    on_status(self.stats())
                return self.stalled or "processing stalled"
            if on_status is not None and now >= next_status:
                on_status(self.stats())
                next_status = now + status_every
        if self._stopping.is_set():  # the thread saw the stop request first
            return self.stop_signal or "stop requested"
        return "the processing thread failed" if self._error is not None else "every source ended"

    def _stalled_beyond(self, seconds: float) -> bool:
        """Whether the processing loop has been stuck for `seconds`; if so, say where and stop waiting
        long for it (it may never come back)."""
        stalled_for, where = self.heartbeat.stalled()
        if stalled_for < seconds:
            return False
        self.stalled = f"the processing loop has not gone round for {stalled_for:.0f} s, stuck in {where}"
        log.error("pipeline: %s; stopping", self.stalled)
        self._join_timeout = min(self._join_timeout, STOP_WAIT, max(1.0, seconds))
        return True

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        wanted = [signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)]  # no SIGHUP on Windows
        previous = {s: signal.getsignal(s) for s in wanted if s is not None}
        # one the process was told to ignore stays ignored (`nohup` ignores SIGHUP: keep running)
        previous = {s: h for s, h in previous.items() if h is not signal.SIG_IGN}

        def handler(signum: int, _frame: Any) -> None:
            self.interrupted = True
            self.stop_signal = self.stop_signal or signal.Signals(signum).name
            self._stopping.set()
            self._wake.set()
            # A second Ctrl-C goes to Python's default handler (KeyboardInterrupt).
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)

        for signum in previous:
            signal.signal(signum, handler)
        return previous

    def request_stop(self) -> None:
        """Ask the processing loop to finish (thread-safe; `run()` then stops everything)."""
        self._stopping.set()
        self._wake.set()

    # ----- processing ---------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                self.heartbeat.beat()
                # finished before polling: a camera whose last frame this poll takes closes next round,
                # after that frame was processed (its tracks end after they were seen)
                finished = self._finished_cameras()
                for cam in self._cameras.values():
                    cam.source.check_stalled()  # a blocked USB / GStreamer read: reported, tracks end
                frames = [f for cam in self._cameras.values() if (f := cam.source.poll()) is not None]
                self._emit(self._drain_source_events() + self._close_cameras(finished))
                if frames:
                    self.step(frames)
                    continue
                if all(cam.closed for cam in self._cameras.values()):
                    break
                self._wake.wait(0.05)
                self._wake.clear()
        except BaseException as exc:
            self._error = exc
            log.exception("pipeline: the processing thread stopped: %s: %s", type(exc).__name__, exc)
        finally:
            self.heartbeat.rest()
            with self._sink_lock:
                self._exited = True
                abandoned = self._abandoned
            if abandoned:  # back after stop() gave up on it: what was left to it is closed now
                self._finish_abandoned()
            self._done.set()  # last: `running` stays True until the thread has nothing left to do

    @property
    def error(self) -> BaseException | None:
        """What stopped the processing thread (None while it runs or after a clean finish). `run()`
        re-raises it; callers of `start()` check it, or `running`, from their own thread."""
        return self._error

    @property
    def running(self) -> bool:
        """Whether the processing thread is started and not finished (after a stop that gave up on a
        stuck thread: until it came back and closed what was left to it)."""
        return self._thread is not None and not self._done.is_set()

    def wait_finished(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the processing thread to finish; whether it has."""
        return self._thread is None or self._done.wait(timeout)

    def step(self, frames: Iterable[Frame]) -> list[Event]:
        """Process frames (at most one per camera is typical) synchronously; returns their events.

        `run()` calls this from its thread; call it yourself (without `start()`) to drive the pipeline
        with your own frames. Every frame is checked before any is processed; the frames of a round
        (up to a camera's second frame) are detected together, then tracked in order.
        """
        started = time.perf_counter()
        frames = list(frames)
        cams = [self._camera_of(frame) for frame in frames]
        events: list[Event] = []
        requests: list[CropRequest] = []
        results: list[tuple[Frame, Detections, TrackUpdate]] = []
        for first, end in _rounds([frame.camera for frame in frames]):
            events += self._detect_and_track(cams[first:end], frames[first:end], requests, results)
        events += self._embed_and_match(requests)
        with self.timer.time("sinks"):
            self._emit(events)
            for frame, detections, update in results:
                self._frame_out(frame, detections, update)
        self.timer.add("step", time.perf_counter() - started)
        return events

    def _detect_and_track(
        self,
        cams: Sequence[_Camera],
        frames: Sequence[Frame],
        requests: list[CropRequest],
        results: list[tuple[Frame, Detections, TrackUpdate]],
    ) -> list[Event]:
        """One round (each camera once): detect in every frame together, then track each frame and
        collect the crops the matcher asks for (`requests`) and what the sinks show (`results`)."""
        events: list[Event] = []
        restarts = [self._admit(cam, frame) for cam, frame in zip(cams, frames, strict=True)]
        found = self._detect_all(cams, frames)
        for frame, cam, restart, detections in zip(frames, cams, restarts, found, strict=True):
            events += restart
            update = self._track(cam, frame, detections)
            events += self.matcher.observe(frame, update)
            with self.timer.time("quality"):
                boxes = np.array([t.det_box for t in update.tracks], np.float32).reshape(-1, 4)
                qualities = crop_quality(frame.image, boxes)
            requests += self.matcher.requests(frame, update.tracks, qualities)
            results.append((frame, detections, update))
        return events

    def _camera_of(self, frame: Frame) -> _Camera:
        """The frame's camera, after checking that the frame may come from it."""
        cam = self._cameras.get(frame.camera)
        if cam is None:
            raise InputSpecError(
                f"frame from unknown camera {frame.camera!r}; cameras: {list(self._cameras)}"
            )
        if frame.modality is not cam.source.modality:  # the model would get the other stem's input
            raise InputSpecError(
                f"frame of camera {frame.camera!r} says {frame.modality}, the camera is declared "
                f"{cam.source.modality}; stamp your frames with the camera's modality"
            )
        return cam

    def _admit(self, cam: _Camera, frame: Frame) -> list[Event]:
        """Count the frame, and restart its camera when the frame size changed (the restart's events)."""
        cam.check_colour(frame)
        restart: list[Event] = []
        if cam.size not in (None, frame.size):
            restart = self._restart_camera(
                frame.camera, f"frame size changed from {cam.size} to {frame.size}"
            )
        cam.size = frame.size
        cam.counter.add(frame.pts, _lag(frame))
        return restart

    def _detect_all(self, cams: Sequence[_Camera], frames: Sequence[Frame]) -> list[Detections]:
        """Every frame's detections. Cameras sharing one detector that detects in batches (a network,
        `BatchDetector`) get one call for all their frames, which it runs as one batched inference;
        the others detect frame by frame."""
        found: list[Detections | None] = [None] * len(frames)
        shared: dict[int, tuple[BatchDetector, list[int]]] = {}
        for i, cam in enumerate(cams):
            if isinstance(cam.detector, BatchDetector):
                shared.setdefault(id(cam.detector), (cam.detector, []))[1].append(i)
                continue
            with self.timer.time("detect"):
                found[i] = cam.detector.detect(frames[i].image, frames[i])
        for detector, rows in shared.values():
            with self.timer.time("detect", items=len(rows)):
                batch = detector.detect_batch([frames[i].image for i in rows], [frames[i] for i in rows])
            if len(batch) != len(rows):
                raise InputSpecError(
                    f"{type(detector).__name__}.detect_batch returned {len(batch)} results for {len(rows)} "
                    "frames; it must return one Detections per frame, in order"
                )
            for i, detections in zip(rows, batch, strict=True):
                found[i] = detections
        return [d if d is not None else Detections.empty() for d in found]

    def _new_tracker(self) -> ByteTracker:
        return ByteTracker(**dict(self.config.tracker))

    def _restart_camera(self, camera: str, why: str) -> list[Event]:
        """A camera that lost its stream (reconnecting) or came back with another frame size: its tracks
        end and its detector and tracker start afresh, the other cameras carry on. Without this a person
        standing where a track was predicted when the stream dropped would inherit its id and name
        minutes later (the tracker counts frames, not seconds)."""
        log.warning("camera %s: %s; its tracks end and its detector restarts", camera, why)
        cam = self._cameras[camera]
        cam.tracker.finish()
        next_id = cam.tracker.next_track_id
        cam.detector, cam.tracker = self._base_detector.for_camera(), self._new_tracker()
        cam.tracker.next_track_id = next_id  # ids stay unique per camera: consumers key on them
        return self.matcher.end_camera(camera)

    def _track(self, cam: _Camera, frame: Frame, detections: Detections) -> TrackUpdate:
        with self.timer.time("track"):
            signatures = colour_signatures(frame.image, detections.boxes) if cam.tracker.appearance else None
            return cam.tracker.update(detections, frame.index, frame.size, signatures)

    def _embed_and_match(self, requests: list[CropRequest]) -> list[Event]:
        if not requests:
            return []
        # a later round of the same step may have ended a track (its camera restarted): its crops
        # would take the slots of live tracks' crops
        requests = [r for r in requests if r.key in self.matcher.records]
        requests = sorted(requests, key=lambda r: -r.priority)[: self.config.max_crops]
        requests = [r for r in requests if _overlaps(r.box, r.frame.size)]
        if not requests:
            return []
        with self.timer.time("embed"):
            vectors = self.embed_crops(requests)
        with self.timer.time("match"):
            return self.matcher.update(requests, vectors)

    def embed_crops(self, requests: Sequence[CropRequest]) -> np.ndarray:
        """Embed the requested crops of every camera and both modalities in one batched call.

        Returns float32 `[len(requests), D]` unit vectors. A subclass may override it (tests plug in an
        oracle that knows who is in each box).
        """
        crops = [crop_box(r.frame.image, r.box) for r in requests]
        modalities = [r.frame.modality for r in requests]
        return self.embedder.embed(crops, modalities, bgr=True).vectors

    def _frame_out(self, frame: Frame, detections: Detections, update: TrackUpdate) -> None:
        if not self.sinks:
            return
        views = []
        for track in update.tracks:
            record = self.matcher.records.get((frame.camera, track.track_id))
            partner = f"{record.partner[0]}#{record.partner[1]}" if record and record.partner else None
            views.append(
                TrackView(
                    track.track_id,
                    tuple(float(v) for v in track.det_box),  # type: ignore[arg-type]
                    record.name if record else None,
                    record.score if record else 0.0,
                    partner,
                )
            )
        cam = self._cameras[frame.camera]
        result = FrameResult(frame, detections, tuple(views), cam.source.fps)
        for sink in list(self.sinks):
            self._call_sink(sink, "on_frame", result)

    def _emit(self, events: Sequence[Event]) -> None:
        for event in events:
            self._event_counts[event.kind] += 1
            for sink in list(self.sinks):
                self._call_sink(sink, "on_event", event)

    def _call_sink(self, sink: Sink, method: str, arg: Any) -> None:
        """A sink that raises (a full disk, a callback's bug) is dropped and the cameras carry on: one
        output failing must not stop identification. `dropped_sinks` and `stats()` say so."""
        with self._sink_lock:
            if self._abandoned:  # stop() closed the outputs while this thread was stuck
                return
            self._busy_sink = sink
        try:
            with self.heartbeat.inside(f"output {sink!r} ({method})"):
                getattr(sink, method)(arg)
        except Exception:
            log.exception(
                "pipeline: sink %r failed in %s; it is dropped, its output is incomplete", sink, method
            )
            self._drop(sink)
            try:
                sink.close()
            except Exception:
                log.exception("pipeline: closing sink %r failed", sink)
        finally:
            with self._sink_lock:
                self._busy_sink = None

    def _finished_cameras(self) -> list[str]:
        """Open cameras whose sources have finished for good (file ended, failed) with nothing buffered."""
        return [camera for camera, cam in self._cameras.items() if not cam.closed and cam.source.finished]

    def _close_cameras(self, cameras: Sequence[str]) -> list[Event]:
        """End the tracks of these cameras."""
        events: list[Event] = []
        for camera in cameras:
            events += self._close_camera(camera)
        return events

    def _close_camera(self, camera: str) -> list[Event]:
        cam = self._cameras[camera]
        cam.closed = True
        cam.tracker.finish()
        return self.matcher.end_camera(camera)

    def _on_source_state(self, source: VideoSource, state: SourceState, message: str) -> None:
        self._source_events.append(
            SourceChanged(time.time(), source.camera, source.modality, state.value, message)
        )
        self._wake.set()

    def _drain_source_events(self) -> list[Event]:
        events: list[Event] = []
        while self._source_events:
            event = self._source_events.popleft()
            events.append(event)
            cam = self._cameras.get(event.camera)
            lost = event.state in (SourceState.RECONNECTING.value, SourceState.STALLED.value)
            if lost and cam is not None and not cam.closed:
                events += self._restart_camera(event.camera, f"its source is {event.state} ({event.message})")
        return events

    # ----- statistics ---------------------------------------------------------------------------
    def stats(self) -> PipelineStats:
        """A snapshot of sources, cameras, stage latencies and event counts."""
        elapsed = 0.0 if self._started_at is None else time.monotonic() - self._started_at
        records = list(self.matcher.records.values())  # one atomic copy: the loop thread adds and removes
        active = collections.Counter(r.camera for r in records)
        cameras = {name: cam.counter.snapshot(active[name]) for name, cam in self._cameras.items()}
        identified = sum(1 for r in records if r.name)
        stalled_for, stalled_in = self.heartbeat.stalled()
        return PipelineStats(
            elapsed,
            tuple(cam.source.stats() for cam in self._cameras.values()),
            cameras,
            self.timer.snapshot(),
            dict(self._event_counts),
            identified,
            tuple(repr(sink) for sink in list(self.dropped_sinks)),
            stalled_for,
            stalled_in,
        )


def _rounds(cameras: Sequence[str]) -> list[tuple[int, int]]:
    """`[start, end)` spans of consecutive frames with no camera twice: a camera's second frame in one
    `step` starts a new round, so it is detected after its first one was tracked (its detector and
    tracker may keep state, and a size change restarts them between the two)."""
    spans: list[tuple[int, int]] = []
    start, seen = 0, set[str]()
    for i, camera in enumerate(cameras):
        if camera in seen:
            spans.append((start, i))
            start, seen = i, set()
        seen.add(camera)
    if start < len(cameras):
        spans.append((start, len(cameras)))
    return spans


def _lag(frame: Frame) -> float:
    """Seconds from reading the frame to processing it, on the monotonic clock when the frame has it
    (a wall-clock step would show as a lag of hours)."""
    if frame.monotonic is not None:
        return max(0.0, time.monotonic() - frame.monotonic)
    return max(0.0, time.time() - frame.timestamp)


def _overlaps(box: np.ndarray, size: tuple[int, int]) -> bool:
    return bool(box[0] < size[1] and box[1] < size[0] and box[2] > 0 and box[3] > 0)


def _chain(first: Callable[..., None] | None, second: Callable[..., None]) -> Callable[..., None]:
    """A state callback calling the source's own callback (if any), then the pipeline's."""
    if first is None:
        return second

    def both(*args: Any) -> None:
        try:
            first(*args)
        finally:
            second(*args)

    return both
