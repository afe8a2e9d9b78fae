"""Run the real-time cross-modal pipeline on cameras or video files.

Examples:
  vireid run --source visible=gate.mp4 --source infrared=gate-ir.mp4 --model m.onnx --gallery g.db \\
             --events events.jsonl --video-out annotated/
  vireid run --source visible@gate=rtsp://10.0.0.5/stream1 --source ir@gate-ir=rtsp://10.0.0.6/stream1 \\
             --model m.onnx --gallery g.db --events events.jsonl
  vireid run --source rgb=0 --source thermal=1 --model m.onnx --show

A source is MODALITY[@CAMERA]=ADDRESS: a video file, an rtsp:// or http:// URL, a USB device index, or a
GStreamer pipeline ending in appsink. ${NAME} in it is replaced by that environment variable (camera
credentials stay off the command line); `vireid @FILE ...` reads arguments from a file. Files replay at
their frame rate (--fast: as fast as possible). Ctrl-C, SIGTERM and SIGHUP stop cleanly: every track
is ended and every output flushed (exit 130 after Ctrl-C, 0 after the others unless something failed).
A camera or output failing for good, or processing stuck for --stall-timeout seconds, stops the run with
exit 1. Started by systemd with Type=notify, it reports readiness, its status line and watchdog pings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from ..backends.base import DEVICES
from .argtypes import cosine, non_negative_float, one_of, positive_float, positive_int, unit_interval

DEFAULT_STALL_TIMEOUT = 300.0
"""Seconds without a round of the processing loop before `vireid run` gives up on it: far above one
round's time (under a second), and above a first TensorRT EP inference that builds its engine."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vireid run`."""
    parser.add_argument(
        "--source",
        "-s",
        action="append",
        required=True,
        metavar="MODALITY[@CAMERA]=ADDRESS",
        help="a camera or video (repeat for each); e.g. visible=cam.mp4, infrared@roof=rtsp://host/s",
    )
    parser.add_argument("--model", "-m", type=Path, required=True, help="re-id model (.onnx or .engine)")
    parser.add_argument("--gallery", "-g", type=Path, help="gallery of enrolled identities (.db, must exist)")
    parser.add_argument("--events", type=Path, help="write events here as JSON Lines")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--append",
        action="store_true",
        help="add to an existing --events file and continue --video-out's segments (a service restart)",
    )
    existing.add_argument(
        "--overwrite", action="store_true", help="replace an existing --events file and --video-out videos"
    )
    parser.add_argument(
        "--video-out", type=Path, metavar="DIR", help="write annotated videos (one per camera)"
    )
    parser.add_argument(
        "--video-segment-minutes",
        type=positive_float,
        default=15.0,
        metavar="M",
        help="--video-out: minutes of video per file (default 15; a long run's memory stays flat and a "
        "crash loses one file at most)",
    )
    parser.add_argument("--show", action="store_true", help="show annotated frames (needs an OpenCV GUI)")
    parser.add_argument(
        "--device", default="auto", type=one_of(DEVICES), help="auto, cpu, cuda or tensorrt (default auto)"
    )
    parser.add_argument(
        "--threads", type=positive_int, help="ONNX Runtime CPU threads (default: physical cores)"
    )
    parser.add_argument("--detector", default="motion", choices=("motion", "yolo"), help="person detector")
    parser.add_argument("--detector-model", type=Path, help="YOLO-format .onnx for --detector yolo")
    parser.add_argument(
        "--detector-conf", type=unit_interval, help="YOLO confidence threshold, 0..1 (default 0.25)"
    )
    parser.add_argument(
        "--threshold",
        type=cosine,
        help="gallery match threshold for the other modality's enrolled images (default: the card's for "
        "track means, as `vireid info` shows it, else its single-image one); when given, also the "
        "default of --cross-threshold",
    )
    parser.add_argument(
        "--within-threshold",
        type=cosine,
        help="gallery match threshold for the same modality's enrolled images (default: the card's, "
        "else --threshold)",
    )
    parser.add_argument(
        "--cross-threshold",
        type=cosine,
        help="visible-infrared track pairing threshold (default: --threshold when given, else the "
        "card's single-image threshold)",
    )
    parser.add_argument(
        "--identity-score",
        choices=["centroid", "max"],
        default="centroid",
        help="score an identity by the unit mean of its embeddings (centroid, default) or its best one",
    )
    parser.add_argument(
        "--embed-every", type=positive_int, default=10, help="frames between embeddings of a track"
    )
    parser.add_argument("--policy", choices=("latest", "every"), help="frame policy for every source")
    parser.add_argument(
        "--thermal",
        metavar="MODE:LOW:HIGH",
        help="16-bit thermal frames to 8 bits: window:LOW:HIGH (raw values, e.g. window:27315:31315) or "
        "percentile:LOW:HIGH (default percentile:1:99)",
    )
    parser.add_argument(
        "--reconnect-backoff",
        type=_backoff,
        metavar="FIRST:LONGEST",
        help="cameras: seconds before the first reconnection attempt and at most between attempts "
        "(doubling, +0-25%% jitter; default 0.5:10)",
    )
    parser.add_argument(
        "--open-timeout",
        type=positive_float,
        metavar="S",
        help="URLs: seconds FFmpeg waits to open a stream (default 5)",
    )
    parser.add_argument(
        "--read-timeout",
        type=positive_float,
        metavar="S",
        help="URLs, devices and pipelines: seconds without a frame before the camera counts as lost and is "
        "reconnected (default 5)",
    )
    parser.add_argument("--fast", action="store_true", help="files: process as fast as possible")
    parser.add_argument("--duration", type=positive_float, help="stop after this many seconds")
    parser.add_argument("--quiet", "-q", action="store_true", help="no status line")
    parser.add_argument(
        "--stall-timeout",
        type=non_negative_float,
        default=DEFAULT_STALL_TIMEOUT,
        metavar="S",
        help=f"stop with exit 1 when processing has not advanced for S seconds (a hung model call or "
        f"output; default {DEFAULT_STALL_TIMEOUT:.0f}, 0: never)",
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="carry on when an output (--events, --video-out) or a camera fails for good (default: stop "
        "cleanly and exit 1, so a service manager restarts the run)",
    )


def _backoff(text: str) -> tuple[float, float]:
    """`FIRST:LONGEST` seconds, 0 < FIRST <= LONGEST (argparse type)."""
    first, sep, longest = text.partition(":")
    try:
        pair = (float(first), float(longest)) if sep else (float("nan"), float("nan"))
    except ValueError:
        pair = (float("nan"), float("nan"))
    if not (0 < pair[0] <= pair[1] < float("inf")):
        raise argparse.ArgumentTypeError(
            f"must be FIRST:LONGEST seconds with 0 < FIRST <= LONGEST, e.g. 0.5:30, got {text!r}"
        )
    return pair


def _detector_options(args: argparse.Namespace) -> dict[str, Any]:
    from ..errors import ConfigError

    if args.detector != "yolo":
        given = [
            flag
            for flag, value in (
                ("--detector-model", args.detector_model),
                ("--detector-conf", args.detector_conf),
            )
            if value is not None
        ]
        if given:
            raise ConfigError(
                f"{', '.join(given)}: options of --detector yolo; the {args.detector} detector has none"
            )
        return {}
    if args.detector_model is None:
        raise ConfigError("--detector yolo needs --detector-model PATH (a YOLO-format .onnx)")
    device = args.device if args.device in ("auto", "cpu", "cuda") else "cuda"
    conf = 0.25 if args.detector_conf is None else args.detector_conf
    return {"model": str(args.detector_model), "conf": conf, "device": device}


def _sinks(args: argparse.Namespace, stop: Any) -> list[Any]:
    from ..streams import JsonlSink, ShowSink, VideoSink

    sinks: list[Any] = []
    if args.events:
        sinks.append(JsonlSink(args.events, append=args.append))
    if args.video_out:
        sinks.append(
            VideoSink(args.video_out, segment_minutes=args.video_segment_minutes, append=args.append)
        )
    if args.show:
        sinks.append(ShowSink(on_quit=stop))
    return sinks


def _failure(pipeline: Any, stats: Any) -> str | None:
    """What failed for good during the run (an output the pipeline dropped, a source in state
    `failed`), or None."""
    if pipeline.dropped_sinks:
        return f"output {', '.join(repr(sink) for sink in pipeline.dropped_sinks)} failed"
    failed = [source.camera for source in stats.sources if source.state.value == "failed"]
    if failed:
        return f"camera {', '.join(failed)} failed"
    return None


class _StopOnFailure:
    """Status callback that stops the run when an output or a camera fails for good: a service that
    goes on half-blind or without its event log looks healthy to its supervisor; stopped with exit 1,
    it is restarted (and the failure is in its log). `--keep-going` turns this off."""

    def __init__(self, pipeline: Any, status: Any, keep_going: bool, notifier: Any = None) -> None:
        self.pipeline, self.status, self.keep_going = pipeline, status, keep_going
        self.notifier = notifier
        self.stopped_for: str | None = None

    def __call__(self, stats: Any) -> None:
        self.status(stats)
        if self.keep_going or self.stopped_for is not None:
            return
        self.stopped_for = _failure(self.pipeline, stats)
        if self.stopped_for is not None:
            print(
                f"vireid run: error: {self.stopped_for}; stopping (--keep-going carries on without it)",
                file=sys.stderr,
            )
            if self.notifier is not None:
                self.notifier.stopping(self.stopped_for)
            self.pipeline.request_stop()


class _Status:
    """The status line on stderr: rewritten in place on a terminal every second, a line every 10 s
    otherwise (called every second either way)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.every = 1.0 if self.tty else 10.0
        self.width = 0
        self._next = time.monotonic() + self.every

    def __call__(self, stats: Any) -> None:
        now = time.monotonic()
        if self.quiet or now < self._next:
            return
        self._next = now + self.every
        line = stats.status_line()
        with contextlib.suppress(OSError):  # a terminal that hung up: the run stops cleanly regardless
            if self.tty:
                print("\r" + line.ljust(self.width), end="", file=sys.stderr, flush=True)
                self.width = len(line)
            else:  # a log file or journal: each line says when
                print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty and self.width and not self.quiet:
            _say("")
        self.width = 0


def _same_file(path: Path, target: Path) -> bool:
    """Whether `path` names the existing file `target` (False for URLs, device indexes, pipelines)."""
    try:
        return path.is_file() and path.resolve() == target.resolve()
    except OSError:  # e.g. a GStreamer pipeline longer than a file name may be
        return False


def _check_events_file(args: argparse.Namespace, sources: list[str]) -> None:
    """Refuse an `--events` path whose file would be lost: the gallery, the model, a video being read,
    or an earlier run's events (unless `--append` or `--overwrite` says what to do with them)."""
    from ..errors import ConfigError
    from ..streams.sinks import events_file_problem

    target = args.events
    if target is None:
        if (args.append or args.overwrite) and not args.video_out:
            raise ConfigError(
                "--append and --overwrite say what to do with an existing --events file and --video-out "
                "videos; give --events or --video-out"
            )
        return
    if target.is_dir():
        raise ConfigError(f"--events {target}: is a folder; give a file path, e.g. {target / 'events.jsonl'}")
    if not target.exists():
        return
    inputs = [args.gallery, args.model] + [Path(text.partition("=")[2]) for text in sources]
    if any(_same_file(p, target) for p in inputs if p is not None):
        raise ConfigError(f"--events {target}: is one of this run's inputs; write the events to another file")
    problem = events_file_problem(target)
    if problem:
        raise ConfigError(
            f"--events {target}: {problem}; vireid neither appends to nor overwrites it: choose another file"
        )
    if target.stat().st_size and not (args.append or args.overwrite):
        raise ConfigError(
            f"--events {target}: holds events of an earlier run; pass --append to add to them, --overwrite "
            "to replace them, or choose another file"
        )


def _check_video_folder(args: argparse.Namespace) -> None:
    """Refuse a `--video-out` folder holding an earlier run's videos unless `--append` (this run's
    segments go on after them) or `--overwrite` (they are deleted): they would otherwise be replaced
    without a word, as an events file is not."""
    from ..errors import ConfigError
    from ..streams.sinks import VIDEO_FOLDER_MARK

    folder = args.video_out
    if folder is None or not folder.is_dir() or args.append:
        return
    if args.overwrite:  # an earlier, longer run's later segments would otherwise stay among the new ones
        if (folder / VIDEO_FOLDER_MARK).is_file():
            for earlier in folder.glob("*.mp4"):
                earlier.unlink(missing_ok=True)
        return
    earlier = sorted(p.name for p in folder.glob("*.mp4"))
    if earlier:
        shown = ", ".join(earlier[:3]) + (", ..." if len(earlier) > 3 else "")
        raise ConfigError(
            f"--video-out {folder}: holds videos of an earlier run ({shown}); pass --append to add this "
            "run's after them, --overwrite to delete them, or choose another folder"
        )


def run(args: argparse.Namespace) -> int:
    """Build the pipeline from the arguments and run it until the sources end or Ctrl-C."""
    from ..errors import ProcessingStalledError
    from ..streams import Pipeline, PipelineConfig, parse_source
    from ..streams.config import check_cameras
    from .service import ServiceNotify, SystemdNotifier

    if args.fast and args.policy == "latest":
        from ..errors import ConfigError

        raise ConfigError(
            "--fast reads files as fast as they decode, and --policy latest drops every frame processing "
            "has not caught up with (most of them): drop --policy (files default to every) or --fast"
        )
    _quiet_opencv_warnings()
    expanded = [_expand_env(text) for text in args.source]
    _check_events_file(args, expanded)
    _check_video_folder(args)
    created_events = bool(args.events) and not args.events.exists()
    options: dict[str, Any] = {"realtime": not args.fast}
    if args.policy:
        options["policy"] = args.policy
    if args.thermal:
        options["thermal"] = args.thermal
    for option in ("reconnect_backoff", "open_timeout", "read_timeout"):
        if getattr(args, option) is not None:
            options["backoff" if option == "reconnect_backoff" else option] = getattr(args, option)
    sources = [  # logs and events name the address as given, ${NAME} unexpanded
        parse_source(text, display_uri=raw.partition("=")[2], **options)
        for text, raw in zip(expanded, args.source, strict=True)
    ]
    config = PipelineConfig(
        detector=args.detector,
        detector_options=_detector_options(args),
        threshold=args.threshold,
        within_threshold=args.within_threshold,
        identity_score=args.identity_score,
        cross_threshold=args.cross_threshold,
        embed_every=args.embed_every,
    )
    check_cameras(sources)
    for source in sources:
        source.check_file()  # before the model loads (Pipeline.step callers pass sources they never open)
    if args.gallery is not None and not args.gallery.is_file():  # also before the model loads
        from ..errors import GalleryError

        raise GalleryError(
            f"--gallery {args.gallery}: no gallery file here; enrol people first (`vireid gallery enroll "
            f"--gallery {args.gallery} ...`), or leave --gallery out to only link tracks across cameras"
        )
    stall_timeout = args.stall_timeout or None
    backend_options = {"threads": args.threads} if args.threads else {}
    status = _Status(args.quiet)
    pipeline = Pipeline(
        sources, args.model, gallery=args.gallery, config=config, device=args.device, **backend_options
    )
    try:
        pipeline.sinks.extend(_sinks(args, pipeline.request_stop))
    except BaseException:
        pipeline.stop()
        raise
    if args.gallery is None:
        print(
            "vireid run: no --gallery: tracks are linked across cameras (at cosine "
            f"{pipeline.matcher.thresholds().pairs:.4f}, --cross-threshold) but never named",
            file=sys.stderr,
        )
    elif not args.quiet:
        print(
            f"vireid run: thresholds {pipeline.matcher.thresholds()} (--threshold, --within-threshold, "
            "--cross-threshold)",
            file=sys.stderr,
        )
    notifier = SystemdNotifier()
    watch = _StopOnFailure(
        pipeline, _both(status, ServiceNotify(notifier, stall_timeout)), args.keep_going, notifier
    )
    try:
        stats = pipeline.run(
            args.duration,
            on_status=watch,
            status_every=1.0,
            stall_timeout=stall_timeout,
            on_stopping=notifier.stopping,
        )
    except ProcessingStalledError as exc:
        status.done()
        _summary(pipeline.stats(), args)
        _say(f"vireid run: error: {exc}; exit 1, so a service manager restarts the run")
        _say_left_open(pipeline)
        return _leave(pipeline, 1)
    except BaseException:
        _discard_if_empty(args.events, created_events)
        raise
    finally:
        status.done()
        notifier.close()
    _summary(stats, args)
    return _leave(pipeline, _exit_status(pipeline, stats, args, created_events))


def _leave(pipeline: Any, code: int) -> int:
    """The exit status; with the processing thread still stuck (in a model call, a write), the process
    ends here at once: the interpreter's shutdown would tear the model down under that thread, which
    can crash or hang the exit (with CUDA above all) instead of exiting with `code`."""
    if pipeline.stuck_in is None or pipeline.wait_finished(2.0):  # came back and closed what it had
        return code
    for stream in (sys.stdout, sys.stderr):  # (log handlers flush every record)
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _quiet_opencv_warnings() -> None:
    """OpenCV's own warnings off (errors stay), unless $OPENCV_LOG_LEVEL says otherwise: every failed
    reconnection attempt made it print "backend is generally available but can't be used to capture by
    name", which reads like a configuration error and fills a service's log (thousands of lines a day
    per dead camera). vireid logs each camera's state changes itself, and FFmpeg's line with the reason
    (connection refused, 401) still shows."""
    if "OPENCV_LOG_LEVEL" in os.environ:
        return
    import cv2

    with contextlib.suppress(AttributeError):  # an OpenCV build without the logging module
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _both(first: Any, second: Any) -> Any:
    """A status callback calling two."""

    def both(stats: Any) -> None:
        first(stats)
        second(stats)

    return both


def _say(text: str) -> None:
    """A closing message on stderr; a terminal that hung up (SIGHUP) cannot take it, which must not
    turn a clean stop into a crash."""
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr, flush=True)


def _say_left_open(pipeline: Any) -> None:
    if pipeline.stuck_in is None:
        return
    left = (
        f"output {pipeline.left_open} is left unflushed (incomplete), the others were closed"
        if pipeline.left_open
        else "the outputs were closed"
    )
    _say(
        f"vireid run: error: processing was still stuck in {pipeline.stuck_in} when the run stopped; "
        f"{left} without the last tracks' ends"
    )


def _exit_status(pipeline: Any, stats: Any, args: argparse.Namespace, created_events: bool) -> int:
    """1 when something failed (an output, a camera, or no frame at all), else 130 after Ctrl-C and 0
    after SIGTERM/SIGHUP (a requested stop: `systemctl stop` must not mark the service failed) or when
    the sources ended."""
    if pipeline.stuck_in is not None:  # a stop that had to leave a stuck thread behind is no success
        _say_left_open(pipeline)
        return 1
    if pipeline.dropped_sinks:
        names = ", ".join(repr(sink) for sink in pipeline.dropped_sinks)
        _say(f"vireid run: error: output {names} failed during the run and is incomplete")
        return 1
    if not pipeline.interrupted and not any(camera.processed for camera in stats.cameras.values()):
        _discard_if_empty(args.events, created_events)
        _say("vireid run: error: no source delivered a frame (see the messages above)")
        return 1
    if any(source.state.value == "failed" for source in stats.sources):
        _say("vireid run: error: a camera failed during the run (see above)")
        return 1
    if pipeline.stop_signal == "SIGINT":
        _say("vireid run: interrupted; tracks ended and outputs flushed")
        return 130
    if pipeline.stop_signal is not None:
        _say(f"vireid run: stopped by {pipeline.stop_signal}; tracks ended and outputs flushed")
    return 0


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(source: str) -> str:
    """`${NAME}` in a `--source` replaced by the environment variable: camera credentials can stay
    out of the command line, which `ps` and `systemctl status` show to every user. The values are
    secrets from then on: redacted wherever they would appear (logs, events, messages)."""
    from ..errors import ConfigError
    from ..streams.redact import register_secret

    def value(match: re.Match[str]) -> str:
        name = match[1]
        if name not in os.environ:
            raise ConfigError(
                f"--source: ${{{name}}} is not set in the environment; set it (e.g. in the service's "
                "Environment= or EnvironmentFile=) or write the value itself"
            )
        register_secret(os.environ[name])
        return os.environ[name]

    return _ENV_REFERENCE.sub(value, source)


def _discard_if_empty(events: Path | None, created: bool) -> None:
    """Remove an events file this run created when it holds nothing but source-state records (a run
    that failed to start): kept, it would make the corrected rerun ask for --append or --overwrite."""
    if not created or events is None or not events.is_file():
        return
    try:
        records = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return
    if all(r.get("event") == "source" for r in records):
        events.unlink(missing_ok=True)


def _summary(stats: Any, args: argparse.Namespace) -> None:
    events = ", ".join(f"{n} {k}" for k, n in sorted(stats.events.items())) or "no events"
    frames = ", ".join(f"{c} {s.processed}" for c, s in stats.cameras.items())
    _say(
        f"vireid run: {stats.elapsed:.1f} s, frames {frames}, {events}, real-time factor "
        f"{stats.realtime_factor:.2f}x"
    )
    for source in stats.sources:
        if source.state.value == "failed":
            _say(f"vireid run: camera {source.camera} failed: {source.error}")
    if args.events:
        _say(f"vireid run: events in {args.events}")
    if args.video_out:
        _say(f"vireid run: annotated videos in {args.video_out}")
