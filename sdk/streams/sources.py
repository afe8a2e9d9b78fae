"""Video sources: a file, an RTSP/HTTP URL, a USB device index or a GStreamer pipeline, each on a thread.

Every source is tagged with its modality and camera id and delivers `Frame`s under a policy:

- `latest` (default for live sources): keep only the newest frame; a frame nobody took before the next
  one arrived is dropped (counted). Processing always works on the present, never on a backlog.
- `every` (default for files): keep every frame in order in a small bounded buffer; the reader waits
  when it is full. A file replays at real-time speed (`realtime=True`) or as fast as it is consumed.

Network sources (and USB devices) reconnect with exponential backoff when they cannot be opened or stop
delivering; a file ends at its last frame. Errors never leave the reader thread: they change the
source's `state` (`connecting`, `live`, `reconnecting`, `ended`, `failed`) and reach `on_state`, so a
dead camera never stops the others.
"""

from __future__ import annotations

import collections
import enum
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..choices import InputChoice
from ..errors import InputSpecError, StreamError
from ..modality import Modality
from ..text import has_invisible
from ..thermal import ThermalScaling
from .frame import Frame
from .redact import install_log_redaction, redact

log = logging.getLogger("vireid")
install_log_redaction(log)  # tracebacks too: an OpenCV or FFmpeg error may quote the address

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_SEQUENCE = re.compile(r"%0?\d*d")


class SourceKind(str, enum.Enum):
    """How a source's address is opened."""

    FILE = "file"
    IMAGES = "images"  # a numbered image sequence, e.g. `ir16/%06d.png` (keeps 16-bit PNG/TIFF frames)
    URL = "url"
    DEVICE = "device"
    GSTREAMER = "gstreamer"


class Policy(InputChoice):
    """What a source does with frames the pipeline has not taken yet."""

    LATEST = "latest"
    EVERY = "every"

    @classmethod
    def label(cls) -> str:
        return "source policy"


class SourceState(str, enum.Enum):
    """Life cycle of a source's reader thread."""

    IDLE = "idle"
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    STALLED = "stalled"
    ENDED = "ended"
    FAILED = "failed"
    STOPPED = "stopped"


def source_kind(uri: str | int) -> SourceKind:
    """Classify an address: an int or digits (USB index), `/dev/video*`, a URL, a GStreamer pipeline
    (contains `!`, e.g. `v4l2src ! videoconvert ! appsink`), else a file path."""
    text = str(uri).strip()
    if isinstance(uri, int) or text.isdigit() or text.startswith("/dev/video"):
        return SourceKind.DEVICE
    match = _SCHEME.match(text)
    if match:
        if match.group(1).lower() in NETWORK_SCHEMES:
            return SourceKind.URL
        if match.group(1).lower() == "file":
            return SourceKind.FILE
    if " ! " in text or text.endswith("appsink"):
        return SourceKind.GSTREAMER
    if _SEQUENCE.search(text):
        return SourceKind.IMAGES
    return SourceKind.FILE


def gstreamer_available() -> bool:
    """Whether this OpenCV build can open GStreamer pipelines."""
    try:
        return bool(cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER))
    except (AttributeError, cv2.error):
        return False


def open_capture(uri: str, kind: SourceKind, open_timeout: float, read_timeout: float) -> cv2.VideoCapture:
    """Open a `cv2.VideoCapture` the way each kind needs (FFmpeg with timeouts for URLs)."""
    if kind is SourceKind.DEVICE:
        target: Any = int(uri) if uri.isdigit() else uri
        return cv2.VideoCapture(target, cv2.CAP_ANY)
    if kind is SourceKind.GSTREAMER:
        return cv2.VideoCapture(uri, cv2.CAP_GSTREAMER)
    if kind is SourceKind.URL:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(read_timeout * 1000),
        ]
        return cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)
    if kind is SourceKind.IMAGES:  # OpenCV's image-sequence reader keeps 16-bit frames (FFmpeg's does not)
        return cv2.VideoCapture(uri.removeprefix("file://"), cv2.CAP_IMAGES)
    return cv2.VideoCapture(uri.removeprefix("file://"), cv2.CAP_FFMPEG)


@dataclass(frozen=True)
class SourceStats:
    """A snapshot of one source's counters.

    Attributes:
        camera, modality: the source's tags.
        state: reader state.
        frames_read: frames decoded so far.
        frames_dropped: frames replaced before being taken (policy `latest`).
        fps: frames read per second over the last ~2 s.
        reconnects: successful re-opens after the first.
        error: the last problem (cannot open, stream ended...), or None.
    """

    camera: str
    modality: Modality
    state: SourceState
    frames_read: int
    frames_dropped: int
    fps: float
    reconnects: int
    error: str | None


StateCallback = Callable[["VideoSource", SourceState, str], None]


HEALTHY_SECONDS = 1.0
"""A connection that delivered frames for this long resets the reconnection backoff; shorter ones (a
server at its client limit that accepts and drops) keep it growing."""

ASSUMED_FPS = 15.0
"""Frame rate assumed for the timestamps of an image sequence or a file that tells neither its frame rate
nor its positions (OpenCV reports -1 ms for image sequences)."""


class _UnusableFrame(Exception):
    """A decoded frame the source cannot deliver (above `max_pixels`, or in a layout it cannot convert):
    reconnecting would deliver the same frames again, so it ends the source as failed."""


MAX_PIXELS = 7680 * 4320
"""Default largest frame a source accepts (8K UHD)."""


class VideoSource:
    """One camera or video, read on its own thread.

    Example:
        >>> with VideoSource("cam.mp4", "visible", camera="gate") as src:
        ...     frame = src.read(timeout=1.0)

    Args:
        uri: file path, URL (`rtsp://`, `http://`...), USB device index (`0`, `"0"`, `/dev/video0`) or a
            GStreamer pipeline ending in `appsink`.
        modality: the camera's modality (`visible`, `infrared`, ...).
        camera: camera id (default: the modality's name).
        policy: `latest` or `every` (default: `every` for files, `latest` otherwise).
        realtime: files only: replay at the file's frame rate (True) or as fast as frames are taken.
        reconnect: re-open after a failure (default: True for URLs, devices and pipelines, False for files).
        backoff: first and longest wait between reconnection attempts, seconds (doubling, +0–25% jitter).
        buffer: frames kept under policy `every`.
        open_timeout, read_timeout: seconds before FFmpeg gives up opening / reading a URL.
        opener: `(uri, kind, open_timeout, read_timeout) -> capture` (default `open_capture`); a capture
            needs `isOpened()`, `read()`, `get(prop)` and `release()`.
        on_state: called as `on_state(source, state, message)` from the reader thread on every change.
        max_pixels: largest frame accepted (width × height, default 8K UHD); a bigger frame ends the read
            as a failure (a misconfigured or hostile stream must not exhaust memory downstream).
        thermal: how 16-bit (radiometric) frames become 8-bit: a `ThermalScaling`, `"window:LOW:HIGH"`
            or `"percentile:LOW:HIGH"`; default per-frame percentiles 1..99. Logged (INFO) when the
            first 16-bit frame arrives; `source.thermal` says which one a source uses.
        display_uri: how logs, events and messages name the address (default: `uri`), redacted
            either way; e.g. the CLI's `--source` text before `${NAME}` expansion.

    Raises:
        InputSpecError: a bad policy, buffer, backoff or max_pixels value.
    """

    def __init__(
        self,
        uri: str | int | Path,
        modality: Modality | str | int,
        camera: str | None = None,
        *,
        policy: Policy | str | None = None,
        realtime: bool = True,
        reconnect: bool | None = None,
        backoff: tuple[float, float] = (0.5, 10.0),
        buffer: int = 8,
        open_timeout: float = 5.0,
        read_timeout: float = 5.0,
        opener: Callable[..., Any] | None = None,
        on_state: StateCallback | None = None,
        max_pixels: int = MAX_PIXELS,
        thermal: ThermalScaling | str | None = None,
        display_uri: str | None = None,
    ) -> None:
        self.uri = str(uri)
        # what logs, events and messages show (no credentials)
        self.display_uri = redact(self.uri if display_uri is None else display_uri)
        self.kind = source_kind(uri if isinstance(uri, int) else self.uri)
        self.modality = Modality.parse(modality)
        self.camera = str(camera) if camera is not None else str(self.modality)
        if not self.camera or has_invisible(self.camera):  # it reaches status lines, logs and file names
            raise InputSpecError(
                f"camera id must be a non-empty name without control characters, got {self.camera!r}"
            )
        try:  # an undecodable file name (Latin-1 bytes from a zip) would crash OpenCV, not fail
            self.uri.encode("utf-8")
        except UnicodeEncodeError:
            raise StreamError(
                f"camera {self.camera}: the address {self.display_uri!r} holds bytes that are not UTF-8 (a "
                "file name from another system?); rename the file"
            ) from None
        is_file = self.kind in (SourceKind.FILE, SourceKind.IMAGES)
        default = Policy.EVERY if is_file else Policy.LATEST
        self.policy = Policy.parse(policy) if policy is not None else default
        self.realtime = bool(realtime)
        self.reconnect = (not is_file) if reconnect is None else bool(reconnect)
        if not (0 < backoff[0] <= backoff[1]):
            raise InputSpecError(
                f"backoff must be (first, longest) seconds with 0 < first <= longest, got {backoff}"
            )
        if buffer < 1:
            raise InputSpecError(f"buffer must be at least 1 frame, got {buffer}")
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
            raise InputSpecError(f"max_pixels must be a positive integer, got {max_pixels!r}")
        self.max_pixels = max_pixels
        self.thermal = ThermalScaling.parse(thermal)
        self._saw_16bit = False
        self.backoff, self.buffer_size = (float(backoff[0]), float(backoff[1])), int(buffer)
        self.open_timeout, self.read_timeout = float(open_timeout), float(read_timeout)
        self._opener = opener or open_capture
        self.on_state = on_state
        self.notify: Callable[[], None] | None = None  # set by a pipeline: "a frame is ready"
        self.fps: float | None = None  # nominal frame rate once opened, when the stream tells
        self._live_start: float | None = None
        self._cond = threading.Condition()
        self._frames: collections.deque[Frame] = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = SourceState.IDLE
        self._error: str | None = None
        self._read = self._dropped = self._reconnects = 0
        self._times: collections.deque[float] = collections.deque(maxlen=64)
        self._rng = random.Random(hash(self.camera))

    def __repr__(self) -> str:
        return (
            f"VideoSource({self.display_uri!r}, {self.modality}, camera={self.camera!r}, {self.policy.value})"
        )

    # ----- life cycle ---------------------------------------------------------------------------
    def start(self) -> VideoSource:
        """Check the address and start the reader thread.

        A file is opened here, so a missing or undecodable file fails at once; network sources connect
        on the reader thread (and keep trying).

        Raises:
            StreamError: the file does not exist or cannot be decoded, or a GStreamer pipeline is given
                to an OpenCV built without GStreamer.
        """
        if self._thread is not None:
            return self
        first = self._check_and_open() if self.kind in (SourceKind.FILE, SourceKind.IMAGES) else None
        if self.kind is SourceKind.GSTREAMER and self._opener is open_capture and not gstreamer_available():
            raise StreamError(
                f"camera {self.camera}: {self.display_uri!r} looks like a GStreamer pipeline, but this "
                "OpenCV was built without GStreamer (cv2.getBuildInformation(): 'GStreamer: NO'). Use an "
                "OpenCV build with GStreamer, or give a file, URL or device index instead."
            )
        self._thread = threading.Thread(target=self._run, args=(first,), name=f"vireid-source-{self.camera}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the reader thread to finish without waiting for it (see `stop`)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout: float | None = None) -> None:
        """Stop reading and wait for the reader thread (up to `timeout`, default read_timeout + 1 s);
        called on the reader thread itself (from an `on_state` callback) it only asks it to finish."""
        self.request_stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.read_timeout + 1.0 if timeout is None else timeout)
        if self._state not in (SourceState.ENDED, SourceState.FAILED):
            self._set_state(SourceState.STOPPED, "stopped")

    def __enter__(self) -> VideoSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def finished(self) -> bool:
        """True when the reader has ended or failed for good and every buffered frame was taken."""
        reader_gone = self._thread is not None and not self._thread.is_alive()  # before the buffer: a
        if self._frames:  # reader that buffers its last frame and exits in between is not missed
            return False
        if reader_gone:
            return True  # a reader that is gone delivers nothing more, whatever its last state said
        done = self._state in (SourceState.ENDED, SourceState.FAILED, SourceState.STOPPED)
        return done and self._thread is None

    def stats(self) -> SourceStats:
        """Counters and the read rate over the last ~2 s."""
        now = time.monotonic()
        with self._cond:
            recent = [t for t in self._times if now - t <= 2.0]
        fps = (
            (len(recent) - 1) / (recent[-1] - recent[0])
            if len(recent) > 1 and recent[-1] > recent[0]
            else 0.0
        )
        return SourceStats(
            self.camera,
            self.modality,
            self._state,
            self._read,
            self._dropped,
            fps,
            self._reconnects,
            self._error,
        )

    def check_stalled(self) -> bool:
        """Whether a live USB device or GStreamer pipeline has delivered nothing for `read_timeout`
        seconds: its read blocks (a device unplugged, a pipeline stuck) and, unlike a network stream's,
        no FFmpeg timeout ends it. The state turns `stalled` (a `SourceChanged` event), and back to
        `live` with the next frame. The blocked read itself cannot be interrupted from Python."""
        if self.kind not in (SourceKind.DEVICE, SourceKind.GSTREAMER) or self._state is not SourceState.LIVE:
            return self._state is SourceState.STALLED
        with self._cond:
            last = self._times[-1] if self._times else None
        if last is not None and time.monotonic() - last > self.read_timeout:
            self._set_state(
                SourceState.STALLED,
                f"no frame for {time.monotonic() - last:.0f} s: the read is blocked (device unplugged or "
                "pipeline stuck?); its tracks end, and it turns live again with its next frame",
            )
            return True
        return False

    # ----- taking frames ------------------------------------------------------------------------
    def poll(self) -> Frame | None:
        """The next frame without waiting (the newest one under `latest`), or None."""
        with self._cond:
            if not self._frames:
                return None
            frame = self._frames.popleft()
            self._cond.notify_all()
            return frame

    def read(self, timeout: float | None = None) -> Frame | None:
        """Wait up to `timeout` seconds (None: forever) for the next frame; None when none came or the
        source has finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._frames:
                if self.finished or self._stop.is_set():
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(0.1 if left is None else min(left, 0.1))
            frame = self._frames.popleft()
            self._cond.notify_all()
            return frame

    # ----- reader thread ------------------------------------------------------------------------
    def check_file(self) -> None:
        """For a file source, fail now if the file is missing or a folder (before a model is loaded or
        an output written); network, device and GStreamer sources are only known once opened.

        Raises:
            StreamError: naming the camera, the path and what to give instead.
        """
        if self.kind in (SourceKind.FILE, SourceKind.IMAGES):
            self._file_path()

    def _file_path(self) -> Path:
        path = Path(self.uri.removeprefix("file://"))
        if self.kind is SourceKind.IMAGES:
            path = next((Path(str(path) % i) for i in (0, 1) if Path(str(path) % i).is_file()), path)
        scheme = _SCHEME.match(self.uri)
        if scheme and scheme.group(1).lower() != "file" and not path.exists():  # `rstp://...`: a typo
            raise StreamError(
                f"camera {self.camera}: {self.display_uri!r}: vireid does not open {scheme.group(1)}:// "
                f"addresses; it opens {', '.join(s + '://' for s in NETWORK_SCHEMES)} and files"
            )
        if not path.exists():
            raise StreamError(
                f"camera {self.camera}: no such file {self.display_uri!r}; give an existing video file, a "
                "URL (rtsp://, http://), a device index (0) or a GStreamer pipeline"
            )
        if path.is_dir():
            raise StreamError(f"camera {self.camera}: {self.display_uri!r} is a folder; give a video file")
        return path

    def _check_and_open(self) -> Any:
        self._file_path()
        cap = self._opener(self.uri, self.kind, self.open_timeout, self.read_timeout)
        if not cap.isOpened():
            cap.release()
            raise StreamError(
                f"camera {self.camera}: OpenCV cannot decode {self.display_uri!r}; is it a video file in a "
                "format FFmpeg reads (mp4, mkv, avi...)? Check it with `ffprobe` or play it first"
            )
        return cap

    def _run(self, cap: Any) -> None:
        """The reader thread: whatever happens, it ends in a final state that says why (a thread that
        died with the camera still `live` would leave the pipeline waiting for it forever)."""
        try:
            self._read_with_reconnects(cap)
        except BaseException as exc:
            self._error = f"reader failed: {type(exc).__name__}: {redact(str(exc))}"
            log.exception("camera %s: %s", self.camera, self._error)
            self._set_state(SourceState.FAILED, self._error)

    def _read_with_reconnects(self, cap: Any) -> None:
        attempt = 0
        first_open = True
        if cap is None:
            self._set_state(SourceState.CONNECTING, f"opening {self.display_uri}")
        while not self._stop.is_set():
            if cap is None:
                cap = self._try_open()
            if cap is None:
                if not self.reconnect:
                    self._set_state(SourceState.FAILED, self._error or "cannot open")
                    return
                self._set_state(SourceState.RECONNECTING, self._error or "cannot open")
                self._wait_backoff(attempt)
                attempt += 1
                continue
            if not first_open:
                self._reconnects += 1
            first_open, opened_at = False, time.monotonic()
            self._error = None  # a new connection: earlier errors no longer describe it
            self._set_state(SourceState.LIVE, "reading")
            try:
                got_any = self._read_until_end(cap)
            except _UnusableFrame as exc:  # reconnecting would deliver the same frames again
                self._error = str(exc)
                self._set_state(SourceState.FAILED, self._error)
                return
            finally:
                cap.release()
            cap = None
            if self._stop.is_set():
                return
            if not self.reconnect:
                if got_any and self._error is None:
                    self._set_state(SourceState.ENDED, "end of stream")
                else:  # a file that could not be read to its end did not end cleanly
                    self._error = self._error or "no frame could be decoded"
                    self._set_state(SourceState.FAILED, self._error)
                return
            self._error = self._error or "stream stopped delivering frames"
            self._set_state(SourceState.RECONNECTING, self._error)
            if got_any and time.monotonic() - opened_at >= HEALTHY_SECONDS:
                attempt = 0  # it worked for a while: start the backoff afresh
            self._wait_backoff(attempt)  # a server that accepts and drops at once is not hammered
            attempt += 1

    def _try_open(self) -> Any:
        try:
            cap = self._opener(self.uri, self.kind, self.open_timeout, self.read_timeout)
        except Exception as exc:  # an opener (OpenCV, a plugin) may raise anything: keep the thread alive
            self._error = f"cannot open {self.display_uri!r}: {type(exc).__name__}: {redact(str(exc))}"
            return None
        if cap is not None and cap.isOpened():
            if self.policy is Policy.LATEST:
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            return cap
        if cap is not None:
            cap.release()
        self._error = f"cannot open {self.display_uri!r}"
        return None

    def _wait_backoff(self, attempt: int) -> None:
        self._stop.wait(self._backoff_delay(attempt))

    def _backoff_delay(self, attempt: int) -> float:
        """Seconds before reconnection attempt `attempt` + 1: doubling from the first, capped, +0–25 %."""
        first, longest = self.backoff
        return min(longest, first * 2 ** min(attempt, 32)) * (1.0 + 0.25 * self._rng.random())

    def _read_until_end(self, cap: Any) -> bool:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        fps = fps if 0.0 < fps < 1000.0 else 0.0
        self.fps = fps or self.fps
        started = time.monotonic()
        count = 0
        while not self._stop.is_set():
            try:
                ok, image = cap.read()
            except Exception as exc:
                self._error = f"read failed: {type(exc).__name__}: {redact(str(exc))}"
                return count > 0
            if not ok or image is None:
                return count > 0
            if image.shape[0] * image.shape[1] > self.max_pixels:
                raise _UnusableFrame(
                    f"a {image.shape[1]}x{image.shape[0]} frame exceeds max_pixels={self.max_pixels}; "
                    "check the stream's resolution or raise VideoSource(max_pixels=...)"
                )
            now = time.monotonic()
            if self.kind in (SourceKind.FILE, SourceKind.IMAGES):
                index = self._read
                position = float(cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0
                pts = index / fps if fps else position if 0 < position < float("inf") else index / ASSUMED_FPS
                if self.realtime and fps:
                    delay = started + pts - now
                    if delay > 0 and self._stop.wait(delay):
                        return True
            else:  # seconds since the stream's first frame, across reconnections
                self._live_start = now if self._live_start is None else self._live_start
                index, pts = self._read, now - self._live_start
            try:
                frame = Frame(
                    self._as_uint8(image),
                    self.camera,
                    self.modality,
                    index,
                    time.time(),
                    pts,
                    time.monotonic(),
                )
            except Exception as exc:
                raise _UnusableFrame(
                    f"a frame of shape {image.shape} {image.dtype} cannot be converted to 8-bit grey or BGR "
                    f"({type(exc).__name__}: {exc}); give a stream of 1-, 3- or 4-channel images"
                ) from exc
            self._deliver(frame)
            count += 1
        return count > 0

    def _as_uint8(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]  # (H, W, 1): grey
        if image.dtype == np.uint8:
            return (
                image if image.ndim == 2 or image.shape[2] == 3 else cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
            )
        if image.dtype == np.uint16 and (image.ndim == 2 or image.shape[2] == 1):
            if not self._saw_16bit:
                self._saw_16bit = True
                log.info("camera %s: %s", self.camera, self.thermal.describe())
            return self.thermal.to_uint8(image)
        return _other_depth_to_uint8(image)

    def _deliver(self, frame: Frame) -> None:
        with self._cond:
            if self.policy is Policy.LATEST:
                self._dropped += len(self._frames)
                self._frames.clear()
            else:
                while len(self._frames) >= self.buffer_size and not self._stop.is_set():
                    self._cond.wait(0.1)
            self._frames.append(frame)
            self._read += 1
            self._times.append(time.monotonic())
            self._cond.notify_all()
        if self._state is SourceState.STALLED:
            self._set_state(SourceState.LIVE, "frames again after a stall")
        if self.notify is not None:
            self.notify()

    def _set_state(self, state: SourceState, message: str) -> None:
        message = redact(message)  # OpenCV/FFmpeg errors may quote the address with its credentials
        if state is self._state:
            return
        self._state = state
        if state in (SourceState.FAILED, SourceState.RECONNECTING):
            log.warning("camera %s (%s): %s: %s", self.camera, self.display_uri, state.value, message)
        else:
            log.debug("camera %s: %s: %s", self.camera, state.value, message)
        if self.on_state is not None:
            try:
                self.on_state(self, state, message)
            except Exception:  # a listener's bug must not kill the reader
                log.exception("camera %s: state callback failed", self.camera)
        with self._cond:
            self._cond.notify_all()
        if self.notify is not None:
            self.notify()


def _other_depth_to_uint8(image: np.ndarray) -> np.ndarray:
    """Frames that are neither uint8 nor single-channel uint16 (float, int32, multi-channel 16-bit):
    stretched to 8 bits; a 4-channel (BGRA) frame loses its alpha."""
    # the cv2 stubs require `dst`; OpenCV allocates it when given None
    out = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)  # type: ignore[call-overload]
    return cv2.cvtColor(out, cv2.COLOR_BGRA2BGR) if out.ndim == 3 and out.shape[2] == 4 else out


def parse_source(text: str, **options: Any) -> VideoSource:
    """A source from the CLI form `MODALITY[@CAMERA]=ADDRESS`, e.g. `visible=gate.mp4`,
    `infrared@roof=rtsp://10.0.0.5/stream1`, `ir=0`. `options` go to `VideoSource`.

    Raises:
        InputSpecError: no `=`, or an unknown modality word.
    """
    head, sep, address = text.partition("=")
    if not sep or not address or _SCHEME.match(head):
        raise InputSpecError(
            f"--source {redact(text)!r}: expected MODALITY[@CAMERA]=ADDRESS, e.g. visible=cam.mp4 or "
            "infrared@roof=rtsp://host/stream"
        )
    word, _, camera = head.partition("@")
    try:
        modality = Modality.parse(word)
    except InputSpecError as exc:
        raise InputSpecError(f"--source {redact(text)!r}: {exc}") from None
    return VideoSource(address, modality, camera or None, **options)
