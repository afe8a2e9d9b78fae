"""Where a pipeline's results go: a JSON Lines file, annotated videos, a window, Python callbacks.

A sink gets every event (`on_event`) and every processed frame with its tracks (`on_frame`), on the
pipeline's processing thread, and is closed (flushed) exactly once when the pipeline stops — also after
Ctrl-C. A sink that raises is logged and dropped; it never stops the pipeline.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import stat
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import jsonio, retention
from ..atomic import atomic_file, write_atomic
from ..errors import InputSpecError, StreamError
from .detect.base import Detections
from .display import Display, check_gui
from .events import Event, event_kinds
from .frame import Frame

log = logging.getLogger("vireid")


@dataclass(frozen=True)
class TrackView:
    """A track as drawn and reported on one frame: id, box (`x1, y1, x2, y2`), name, score, partner."""

    track_id: int
    box: tuple[float, float, float, float]
    name: str | None = None
    score: float = 0.0
    partner: str | None = None  # "camera#track" of the matched track of the other modality


@dataclass(frozen=True, eq=False)
class FrameResult:
    """One processed frame: the frame, its detections and its confirmed tracks.

    `fps` is the source's nominal frame rate when known (annotated videos are written at it).
    """

    frame: Frame
    detections: Detections
    tracks: tuple[TrackView, ...]
    fps: float | None = None


class Sink:
    """Base class: override what you need; every method is a no-op here."""

    def on_event(self, event: Event) -> None:
        """Called with every event, in order."""

    def on_frame(self, result: FrameResult) -> None:
        """Called with every processed frame."""

    def close(self) -> None:
        """Flush and release; called once when the pipeline stops."""


class JsonlSink(Sink):
    """Events as JSON Lines: one `event.to_dict()` object per line (UTF-8).

    Built for runs of months next to a retention job: `vireid gallery purge --events` (or
    `purge_events`) rewrites the file under an exclusive lock and renames the result into place; the
    sink notices the path now names another file and goes on appending to that one, so no event is
    lost (as with `logging.handlers.WatchedFileHandler`). The file is always written in append mode,
    so a `copytruncate` log rotation leaves no hole either. A write that fails (a full disk) keeps the
    lines in memory and tries again with the next event, up to `max_pending` lines; past that the sink
    raises (the pipeline drops it and says so).

    Args:
        path: file to write (parent folders are created); an existing file must be empty or hold
            events (anything else is refused, never overwritten).
        append: add to an existing file instead of replacing it.
        flush_every: seconds between writes to the OS (default 0: every line at once, so `tail -f`
            and a killed process see every event; events come a few per second). Above 0, lines may
            wait in memory until a later event or `close`, which writes and fsyncs.
        kinds: only these event kinds, as names (`{"identified"}`) or classes (`{Identified}`); default
            all. An unknown kind raises `InputSpecError`.
        max_pending: lines kept while writes fail before the sink gives up.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        append: bool = False,
        flush_every: float = 0.0,
        kinds: Iterable[str | type[Event]] | None = None,
        max_pending: int = 100_000,
    ) -> None:
        self.path = Path(path)
        problem = events_file_problem(self.path)
        if problem:  # a mistyped path (the gallery, a model) is refused, not truncated
            raise StreamError(f"cannot write events to {self.path}: it {problem}; choose another file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StreamError(f"cannot write events to {self.path}: {exc.strerror or exc}") from exc
        self._fd = self._open(truncate=not append)
        self.flush_every = float(flush_every)
        self.kinds = event_kinds(kinds)
        self.max_pending = int(max_pending)
        self._pending = bytearray()
        self._pending_lines = 0
        self._last_flush = 0.0
        self._failing = False
        self.lines = 0
        """Lines accepted so far (written, or waiting to be)."""
        self.reopened = 0
        """Times the path was found replaced (a purge or a rotation) and opened again."""

    def _open(self, *, truncate: bool = False) -> int:
        # append mode always; never through a symlink planted after the check (a shared folder);
        # owner-only: events name identified people
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | (os.O_TRUNC if truncate else 0)
        try:
            return os.open(self.path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StreamError(
                    f"cannot write events to {self.path}: it is a symbolic link, which vireid does not "
                    f"follow for events (they name people); give the real path, {self.path.resolve()}"
                ) from exc
            raise StreamError(f"cannot write events to {self.path}: {exc.strerror or exc}") from exc

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r})"

    def on_event(self, event: Event) -> None:
        if self.kinds is not None and event.kind not in self.kinds:
            return
        self._pending += (jsonio.dumps(event.to_dict(), separators=(",", ":")) + "\n").encode("utf-8")
        self._pending_lines += 1
        self.lines += 1
        now = time.monotonic()
        if now - self._last_flush >= self.flush_every:
            self._write_pending(block=False)
            self._last_flush = now

    def _write_pending(self, *, block: bool) -> None:
        """Append what waits, under a shared lock (a purge holds an exclusive one); a busy lock or a
        failed write keeps it waiting (`block=True`: wait for the lock, raise if the write fails)."""
        if not self._pending:
            return
        try:
            for _ in range(3):  # the file may be replaced again between reopening and writing
                if self._locked_write(block) or not self._replaced():
                    break  # written, or a purge holds the lock: the lines wait for the next event
                self._reopen()  # outside the old file's lock: its descriptor is closed here
        except OSError as exc:
            self._write_failed(exc, block)
            return
        if self._failing:
            log.warning("events file %s: writing again; no event was lost", self.path)
            self._failing = False

    def _locked_write(self, block: bool) -> bool:
        """Append the waiting lines under a shared lock if the open file is still the path's; returns
        whether it did (not: a purge holds the lock, or replaced the file)."""
        with _flock(self._fd, exclusive=False, block=block) as locked:
            if not locked or self._replaced():
                return False
            self._write_all()
            return True

    def _write_all(self) -> None:
        while self._pending:  # a partial write (a disk filling up) keeps the rest waiting
            written = os.write(self._fd, self._pending)
            del self._pending[:written]
        self._pending_lines = 0

    def _write_failed(self, exc: OSError, final: bool) -> None:
        why = exc.strerror or str(exc)
        if final or self._pending_lines > self.max_pending:
            raise StreamError(
                f"cannot write events to {self.path}: {why}; {self._pending_lines} events are not in the file"
            ) from exc
        if not self._failing:
            log.warning(
                "events file %s: %s; events wait in memory and are written when it works again",
                self.path,
                why,
            )
            self._failing = True

    def _replaced(self) -> bool:
        """Whether the path now names another file than the one open (renamed over, or removed)."""
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return True
        mine = os.fstat(self._fd)
        return (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino)

    def _reopen(self) -> None:
        try:
            new = self._open()
        except StreamError as exc:  # the path became a link or a folder: refused, and the count said
            raise StreamError(f"{exc}; {self._pending_lines} events are not in the file") from exc
        old, self._fd = self._fd, new
        os.close(old)
        self.reopened += 1
        log.info("events file %s was replaced (a purge or rotation); writing to the new one", self.path)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self._write_pending(block=True)
            if stat.S_ISREG(os.fstat(self._fd).st_mode):  # a FIFO or a device takes no fsync
                os.fsync(self._fd)
            if self._pending:  # written nowhere: say so rather than close as if complete
                raise StreamError(
                    f"cannot write events to {self.path}: {self._pending_lines} events are not in the file "
                    "(it kept being replaced while closing)"
                )
        finally:
            fd, self._fd = self._fd, -1  # never left pointing at a number another file may reuse
            os.close(fd)


@contextlib.contextmanager
def _flock(fd: int, *, exclusive: bool, block: bool) -> Iterator[bool]:
    """An advisory `flock` on `fd` for the block; yields whether it was taken (always True where the
    platform has no `fcntl`: there nothing coordinates a purge with a running writer)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield True
        return
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if block else fcntl.LOCK_NB)
    try:
        fcntl.flock(fd, mode)
    except BlockingIOError:
        yield False
        return
    try:
        yield True
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def purge_events(path: str | Path, older_than_days: float, *, now: float | None = None) -> tuple[int, int]:
    """Retention for a JSON Lines events file: drop events whose `time` is older than the limit.

    The file is rewritten atomically (temporary file, fsync, rename; owner-only) under an exclusive
    lock, so a `JsonlSink` writing to it meanwhile loses nothing: its lines wait and then go to the
    new file. Lines that are not events (no numeric `time`) are kept. Returns (kept, removed).

    Raises:
        InputSpecError: `older_than_days` is not positive.
        StreamError: the file cannot be read or rewritten.
    """
    limit = retention.cutoff(older_than_days, now)
    path = Path(path)
    problem = events_file_problem(path, whole=True)
    if problem:
        raise StreamError(f"{path}: {problem}; nothing was changed")
    kept = removed = 0
    try:
        with _locked_for_rewrite(path) as src, atomic_file(path, "w", private=True) as dst:
            for line in src:
                if _event_time(line) < limit:
                    removed += 1
                    continue
                dst.write(line)
                kept += 1
    except OSError as exc:
        raise StreamError(
            f"{path}: cannot purge events ({exc.strerror or exc}); nothing was changed"
        ) from exc
    except UnicodeDecodeError:  # the file changed since it was checked
        raise StreamError(f"{path}: not UTF-8 text; nothing was changed") from None
    return kept, removed


@contextlib.contextmanager
def _locked_for_rewrite(path: Path) -> Iterator[Any]:
    """`path` open for reading under an exclusive lock, held until the block (and the rename inside it)
    ends. When another purge replaced the file while this one waited for the lock, the new file is
    locked instead (the old one's lines are already in it)."""
    for _ in range(10):
        src = path.open(encoding="utf-8")
        try:
            with _flock(src.fileno(), exclusive=True, block=True):
                held, named = os.fstat(src.fileno()), os.stat(path)
                if (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino):
                    yield src
                    return
        finally:
            src.close()
    raise OSError(errno.EBUSY, "the file keeps being replaced by another purge")


def events_file_problem(path: str | Path, *, whole: bool = False) -> str | None:
    """Why an existing file is not a JSON Lines events file, or None (it is one, holds only blank lines,
    or is not a regular file: a FIFO or `/dev/stdout` is the caller's business and is never read here).

    Checked before anything appends to, overwrites or rewrites the file, so that a mistyped path (the
    gallery, a model) is refused instead of destroyed. The first non-blank line decides (a UTF-8 byte
    order mark is allowed); `whole=True` also checks that the rest is UTF-8 text, for callers that
    rewrite the file and must not stop half-way.

    Raises:
        StreamError: the file cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with path.open("rb") as file:
            head = file.read(1 << 16)
            if head.startswith(b"SQLite format 3\x00"):
                return "is an SQLite database (a gallery?), not a JSON Lines events file"
            problem = _first_line_problem(head.removeprefix(b"\xef\xbb\xbf"))
            if problem or not whole:
                return problem
            file.seek(0)
            return _utf8_problem(file)
    except OSError as exc:
        raise StreamError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _first_line_problem(head: bytes) -> str | None:
    line = next((line for line in head.split(b"\n") if line.strip()), None)
    if line is None:
        return None
    try:
        first = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "is not a JSON Lines events file (its first line is not JSON)"
    if not isinstance(first, dict) or "event" not in first:
        return 'is not a vireid events file (its first line has no "event" field)'
    return None


def _utf8_problem(file: Any) -> str | None:
    """The first line of a binary file that is not UTF-8, as a problem, or None."""
    for number, line in enumerate(file, start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return f"is not UTF-8 text at line {number} (an events file was expected)"
    return None


def _event_time(line: str) -> float:
    """The `time` of one JSON Lines event, or +inf (keep) for anything else."""
    try:
        value = json.loads(line).get("time")
    except (ValueError, AttributeError):
        return float("inf")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("inf")


class CallbackSink(Sink):
    """Calls Python functions: `on_event(event)` (optionally only for some kinds) and `on_frame(result)`."""

    def __init__(
        self,
        on_event: Callable[[Event], None] | None = None,
        on_frame: Callable[[FrameResult], None] | None = None,
        *,
        kinds: Iterable[str | type[Event]] | None = None,
    ) -> None:
        self._on_event, self._on_frame = on_event, on_frame
        self.kinds = event_kinds(kinds)

    def on_event(self, event: Event) -> None:
        if self._on_event is not None and (self.kinds is None or event.kind in self.kinds):
            self._on_event(event)

    def on_frame(self, result: FrameResult) -> None:
        if self._on_frame is not None:
            self._on_frame(result)


def colour_of(label: str) -> tuple[int, int, int]:
    """A stable, bright BGR colour for a name or track label."""
    h = zlib.crc32(label.encode("utf-8"))
    hsv = np.array([[[h % 180, 200 + (h >> 8) % 56, 255]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def annotate(result: FrameResult) -> np.ndarray:
    """A BGR copy of the frame with boxes, track ids, names, scores and the camera's modality."""
    image = result.frame.image
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    for view in result.tracks:
        x1, y1, x2, y2 = (round(v) for v in view.box)
        colour = colour_of(view.name) if view.name else (200, 200, 200)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        label = f"#{view.track_id}" + (f" {view.name} {view.score:.2f}" if view.name else "")
        if view.partner:
            label += f" = {view.partner}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        top = max(y1 - th - 6, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 4, top + th + 6), colour, -1)
        cv2.putText(
            canvas, label, (x1 + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
        )
    frame = result.frame
    header = f"{frame.camera} ({frame.modality}) frame {frame.index}  {len(result.tracks)} tracks"
    (tw, th), _ = cv2.getTextSize(header, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    cv2.rectangle(canvas, (0, 0), (tw + 12, th + 12), (0, 0, 0), -1)
    cv2.putText(canvas, header, (6, th + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


VIDEO_FOLDER_MARK = ".vireid-videos"
"""The empty file `VideoSink` leaves in its folder: `purge_videos` deletes videos only where it is."""


MIN_FREE_BYTES = 16 << 20
"""Free space (16 MiB) below which `VideoSink` stops: what is left finishes the open files (an MP4 file
is playable only once the writer adds its index, some bytes per frame) and leaves the rest of the
machine (logs, the gallery, the events file) room to go on."""


class VideoSink(Sink):
    """Annotated videos per camera (mp4v) at the source's frame rate, cut into segments.

    The first segment is `DIR/<camera>.mp4`, the next ones `DIR/<camera>.0002.mp4`, `.0003.mp4`, ...
    (`.10000.mp4` past 9999), each `segment_minutes` of video long. Segments keep a long run's memory
    flat (the MP4 writer holds an index entry per frame until the file is finished: about 8 GB for 90
    days of one camera in one file) and bound what a crash loses (a file never finished cannot be
    played) to the last segment; `purge_videos` deletes old ones, `video_segments` lists them.

    A restarted service passes `append=True`: each camera then goes on after its highest-numbered
    segment in the folder, and no existing file is ever opened for writing. Without it numbering starts
    at 1 and replaces files of those names.

    OpenCV's writer never reports a failed write, so a full disk would leave every later segment
    unplayable without a word. The sink therefore checks the folder's free space when a segment opens
    and then about once per second of video per camera; below `min_free_bytes` per open camera file
    (what a second of each camera's video between two checks must fit) it finishes every open
    file (they stay playable) and raises `StreamError` (the pipeline drops the sink and says so).

    Args:
        folder: output folder (created).
        fps: frame rate to write at when the source does not tell (default 15).
        segment_minutes: video minutes per file (None: one file per camera, for short runs).
        append: continue each camera's numbering after the segments already in `folder`.
        min_free_bytes: free space per open camera file below which the sink stops (default
            `MIN_FREE_BYTES`); free space is what an ordinary user may write, also when run as root.

    Raises:
        StreamError: the folder cannot be created or listed.
        InputSpecError: `segment_minutes` or `min_free_bytes` is out of range.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        fps: float = 15.0,
        segment_minutes: float | None = 15.0,
        append: bool = False,
        min_free_bytes: int = MIN_FREE_BYTES,
    ) -> None:
        if segment_minutes is not None and not segment_minutes > 0:
            raise InputSpecError(
                f"segment_minutes must be positive (or None: one file), got {segment_minutes}"
            )
        if min_free_bytes < 0:
            raise InputSpecError(f"min_free_bytes must be 0 or more, got {min_free_bytes}")
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / VIDEO_FOLDER_MARK).touch()  # what lets `purge_videos` delete files here
        except OSError as exc:
            raise StreamError(f"cannot create the video folder {self.folder}: {exc.strerror or exc}") from exc
        self.fps = float(fps)
        self.segment_minutes = segment_minutes
        self.append = append
        self.min_free_bytes = int(min_free_bytes)
        """Free space below which the sink stops; may be changed while it runs."""
        self._earlier = _last_segments(self.folder) if append else {}  # stem -> highest number there
        self._writers: dict[str, cv2.VideoWriter] = {}
        self._sizes: dict[str, tuple[int, int]] = {}
        self._stems = _Stems()
        self._next: dict[str, int] = {}  # number of each camera's next segment
        self._left: dict[str, int] = {}  # frames the current segment still takes
        self._check_every: dict[str, int] = {}  # frames per second of video: the free-space check's period
        self._until_check: dict[str, int] = {}  # frames until the next free-space check
        self.paths: dict[str, Path] = {}
        """Each camera's current (last) file."""
        self.segments: dict[str, list[Path]] = {}
        """Each camera's files written by this sink, in order (with `append`, not the earlier ones)."""

    def __repr__(self) -> str:
        return f"VideoSink({str(self.folder)!r})"

    def on_frame(self, result: FrameResult) -> None:
        camera = result.frame.camera
        canvas = annotate(result)
        writer = self._writers.get(camera)
        if writer is not None and self._left[camera] <= 0:  # the segment is full: finish it
            del self._writers[camera]
            writer.release()
            writer = None
        if writer is None:
            self._check_space()  # before creating a file the disk may have no room for
            writer = self._open_segment(camera, result.fps or self.fps, canvas.shape[1::-1])
        elif self._until_check[camera] <= 0:
            self._check_space()
            self._until_check[camera] = self._check_every[camera]
        if canvas.shape[1::-1] != self._sizes[camera]:  # the camera changed resolution: OpenCV drops
            canvas = cv2.resize(canvas, self._sizes[camera], interpolation=cv2.INTER_AREA)  # other sizes
        writer.write(canvas)
        self._left[camera] -= 1
        self._until_check[camera] -= 1

    def _open_segment(self, camera: str, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
        stem = self._stems(camera)
        number = self._next.get(camera, self._earlier.get(stem, 0) + 1)
        path = _segment_path(self.folder, stem, number)
        size = self._sizes.setdefault(camera, size)  # later segments keep the first size, as one file would
        _create_owner_only(path, exclusive=self.append)  # frames show people and the names they were given
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
        if not writer.isOpened():
            raise StreamError(f"OpenCV cannot write an mp4v video to {path}")
        self._writers[camera], self.paths[camera], self._next[camera] = writer, path, number + 1
        minutes = self.segment_minutes
        self._left[camera] = max(1, round(minutes * 60 * fps)) if minutes is not None else 1 << 62
        self._check_every[camera] = self._until_check[camera] = max(1, round(fps))
        self.segments.setdefault(camera, []).append(path)
        return writer

    def _check_space(self) -> None:
        """Raise `StreamError` when the folder's disk has less than `min_free_bytes` free, after finishing
        every open file: OpenCV would go on "writing" frames that never reach the disk."""
        free = _free_bytes(self.folder)
        floor = self.min_free_bytes * max(1, len(self._writers))  # a second of each camera's video
        if free is None or free >= floor:  # between two checks must fit
            return
        last = ", ".join(str(path) for path in self.paths.values())  # before close(): what it finishes
        self.close()
        done = f"its last segments, {last}, are finished and playable" if last else "no video was written"
        raise StreamError(
            f"video folder {self.folder}: only {_mib(free)} free on its disk, below the "
            f"{_mib(floor)} vireid keeps free; stopped writing videos ({done}). Free space "
            "(old videos: `vireid gallery purge --gallery G.db --older-than-days N --videos "
            f"{self.folder}`), or write --video-out to a larger disk"
        )

    def close(self) -> None:
        for writer in self._writers.values():
            writer.release()
        self._writers.clear()


def video_segments(folder: str | Path) -> dict[str, list[Path]]:
    """The `.mp4` files in a `VideoSink` folder, per camera file-name stem, each camera's in segment order
    (`<stem>.mp4` is segment 1, `<stem>.NNNN.mp4` segment NNNN). Every entry counts, whatever its type,
    since a `VideoSink` must never write over it. A folder that does not exist holds none.

    The CLI asks this whether a `--video-out` folder holds an earlier run's videos (to require
    `--append` or `--overwrite`); `purge_videos` uses it to keep each camera's newest segment.

    Raises:
        StreamError: the folder cannot be listed.
    """
    folder = Path(folder)
    found: dict[str, list[tuple[int, Path]]] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".mp4") and not entry.name.startswith("."):
                    stem, number = _segment_of(entry.name[: -len(".mp4")])
                    found.setdefault(stem, []).append((number, folder / entry.name))
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StreamError(f"cannot list the video folder {folder}: {exc.strerror or exc}") from exc
    return {stem: [path for _, path in sorted(numbered)] for stem, numbered in sorted(found.items())}


def _last_segments(folder: Path) -> dict[str, int]:
    """Each camera stem's highest segment number in `folder`."""
    return {stem: _segment_of(paths[-1].stem)[1] for stem, paths in video_segments(folder).items()}


def _segment_of(name: str) -> tuple[str, int]:
    """(camera stem, segment number) of a video's file-name stem: `gate` is segment 1 of `gate`,
    `gate.0002` segment 2, `gate.10000` segment 10000."""
    match = _SEGMENT.fullmatch(name)
    return (match["stem"], int(match["number"])) if match else (name, 1)


def _segment_path(folder: Path, stem: str, number: int) -> Path:
    """Segment `number` of a camera: `<stem>.mp4` for the first, `<stem>.NNNN.mp4` (4 digits or more)."""
    return folder / (f"{stem}.mp4" if number == 1 else f"{stem}.{number:04d}.mp4")


def _free_bytes(folder: Path) -> int | None:
    """Bytes an ordinary user may still write on `folder`'s file system (`f_bavail`), or None when it
    cannot be told. Conservative on purpose, also for root: whether a process may use the blocks a
    file system reserves depends on more than its user id (a root in a user-namespaced container may
    not), and `f_bfree` overstates btrfs's usable space."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None  # the folder vanished: creating the next segment says so


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def purge_videos(folder: str | Path, older_than_days: float, *, now: float | None = None) -> tuple[int, int]:
    """Retention for `VideoSink` output: delete the `.mp4` files in `folder` last written before the limit,
    except each camera's newest segment (the one a running sink may still write, old when its camera
    was idle). Only a folder a `VideoSink` wrote (it holds the
    `VIDEO_FOLDER_MARK` file) is touched. Returns (kept, removed).

    Raises:
        InputSpecError: `older_than_days` is not positive.
        StreamError: `folder` is not a folder, or a file cannot be deleted.
    """
    limit = retention.cutoff(older_than_days, now)
    folder = Path(folder)
    if not (folder / VIDEO_FOLDER_MARK).is_file():  # never someone's own recordings
        raise StreamError(
            f"{folder}: not a folder `vireid run --video-out` wrote (no {VIDEO_FOLDER_MARK} file in it); "
            "nothing was deleted"
        )
    segments = video_segments(folder)
    current = {paths[-1] for paths in segments.values()}  # an idle camera's open segment keeps an old mtime
    kept = removed = 0
    for path in (path for paths in segments.values() for path in paths):
        try:
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode) or info.st_mtime >= limit or path in current:
                kept += 1
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StreamError(f"cannot delete {path}: {exc.strerror or exc}") from exc
        removed += 1
    return kept, removed


def _create_owner_only(path: Path, *, exclusive: bool = False) -> None:
    """Create (or empty) `path` with mode 0600 before OpenCV opens it: the writer keeps an existing
    file's mode, and would otherwise create it with the umask's (usually world-readable).
    `exclusive`: an existing file is refused, never emptied (`VideoSink(append=True)`)."""
    flags = os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | (os.O_EXCL if exclusive else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise StreamError(
            f"cannot create {path}: it already exists (another vireid run writing videos to "
            f"{path.parent}?); it was left as it is. Give each run its own --video-out folder"
        ) from exc
    except OSError as exc:
        raise StreamError(f"cannot create {path}: {exc.strerror or exc}") from exc
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class SnapshotSink(Sink):
    """Annotated still frames, `DIR/<camera>_<frame>.jpg`: at most one per camera every `every` frames.

    Args:
        folder: output folder (created).
        every: minimum frame distance between two snapshots of one camera.
        limit: snapshots per camera at most.
        named_only: only frames where at least one track carries a gallery identity.
    """

    def __init__(
        self, folder: str | Path, *, every: int = 150, limit: int = 4, named_only: bool = True
    ) -> None:
        if every < 1 or limit < 1:
            raise InputSpecError(f"every and limit must be >= 1, got {every} and {limit}")
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StreamError(
                f"cannot create the snapshot folder {self.folder}: {exc.strerror or exc}"
            ) from exc
        self.every, self.limit, self.named_only = every, limit, named_only
        self._stems = _Stems()
        self._next: dict[str, int] = {}
        self.paths: dict[str, list[Path]] = {}

    def on_frame(self, result: FrameResult) -> None:
        camera, index = result.frame.camera, result.frame.index
        saved = self.paths.setdefault(camera, [])
        if len(saved) >= self.limit or index < self._next.get(camera, 0):
            return
        if self.named_only and not any(view.name for view in result.tracks):
            return
        path = self.folder / f"{self._stems(camera)}_{index:06d}.jpg"
        ok, encoded = cv2.imencode(".jpg", annotate(result))
        if not ok:
            raise StreamError(f"OpenCV cannot encode the snapshot for {path}")
        try:
            write_atomic(path, encoded.tobytes(), private=True)  # owner-only, like the events file
        except OSError as exc:
            raise StreamError(f"cannot write {path}: {exc.strerror or exc}") from exc
        saved.append(path)
        self._next[camera] = index + self.every


class ShowSink(Sink):
    """Shows every camera's annotated frames in a window (needs an OpenCV build with a GUI and, on
    Linux, a display).

    The windows live on the process's one display thread (`vireid.streams.display`), never on the
    caller's or the pipeline's: OpenCV's Qt backend hangs when windows are used from more than one
    thread. A display slower than the cameras shows the latest frame of each.

    Args:
        on_quit: called (on the display thread) when `q` or Esc is pressed in a window (the CLI
            stops the pipeline).

    Raises:
        StreamError: OpenCV has no GUI support (e.g. `opencv-python-headless`), or no display is set.
    """

    def __init__(self, on_quit: Callable[[], None] | None = None) -> None:
        check_gui()
        self.on_quit = on_quit
        self._display: Display | None = None
        self._windows: set[str] = set()
        self._stop_listening: Callable[[], None] | None = None

    def on_frame(self, result: FrameResult) -> None:
        if self._display is None:
            self._display = Display.shared()
            if self.on_quit is not None:
                self._stop_listening = self._display.on_quit(self.on_quit)
        window = f"vireid {result.frame.camera}"
        self._windows.add(window)
        self._display.show(window, annotate(result))

    def close(self) -> None:
        """Close this sink's windows (waiting briefly for the display thread) and forget its listener;
        the sink can show again afterwards."""
        if self._stop_listening is not None:
            self._stop_listening()
        if self._display is not None:
            self._display.close(self._windows)
        self._display, self._windows, self._stop_listening = None, set(), None


def _safe(name: str) -> str:
    """A file-name stem from a camera id: other characters become `_`, no leading dot (a hidden file),
    at most 64 characters (a long id ends in a hash of itself)."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "camera"
    if len(stem) > 64:
        stem = f"{stem[:55]}-{zlib.crc32(name.encode('utf-8')) & 0xFFFFFFFF:08x}"
    return stem


_SEGMENT = re.compile(r"(?P<stem>.+)\.(?P<number>\d{4,})")
"""A segment's stem after the first, `<camera stem>.NNNN` (`VideoSink`; more digits past 9999)."""


class _Stems:
    """One file-name stem per camera, unique within a sink: `gate/1` and `gate:1` are both `gate_1`, so
    the second gets a short hash of its id (two cameras must never write one file)."""

    def __init__(self) -> None:
        self._stems: dict[str, str] = {}

    def __call__(self, camera: str) -> str:
        if camera not in self._stems:
            stem = _safe(camera)
            # `gate.0002` would name the second segment of camera `gate`
            if stem in self._stems.values() or _SEGMENT.fullmatch(stem):
                stem = f"{stem}-{zlib.crc32(camera.encode('utf-8')) & 0xFFFF:04x}"
            self._stems[camera] = stem
        return self._stems[camera]
