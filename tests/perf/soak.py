"""Soak benchmark: the pipeline on two looping RTSP streams for minutes, one camera flapping. A script.

    .venv/bin/python tests/perf/soak.py --model demo/models/demo.onnx --scene demo/data/scene \
        [--minutes 10] [--flap-seconds 30] [--json soak.json]

Two RTSP servers (tests/sdk/streams/rtsp_server.py, in a child process so their memory is not counted)
loop the scene's first `--loop-seconds` of visible and infrared video at 15 fps. The infrared server
goes away and comes back every `--flap-seconds`. The pipeline (motion detector, tracker, demo model on
ONNX Runtime CPU, a gallery enrolled from the visible video) runs with the `latest` policy. Every 10 s
the script samples RSS, threads and open file descriptors of its own process and the sources'
counters. The outputs a deployment writes run too: a JSON Lines events file and annotated videos cut
into one-minute segments (in `--outputs`, default a temporary folder), and at half time the events
file is purged under the running sink (`purge_events`, everything older than 30 s), as a daily
retention job would. Report: RSS growth after the warm-up (first minute), and the least-squares
slope of the run's second half projected to 30 days (over minutes a single allocator step dominates
it: a run of hours says more), threads and FDs at start and end, reconnects of the flapping source vs the
flaps, frames read / processed / dropped of the healthy source, events per kind, and the events file
checked against what the sink wrote and the purge removed, and the longest time the processing loop
went without a round (sampled every second; the run has a 60 s stall timeout, as `vireid run` has
one). Targets (reliability issue): RSS growth ≤ 5 % after warm-up, no thread or FD growth, a
reconnect after every flap, no events lost for the healthy source, none lost from the events file
across the purge, and no round longer than 5 s (a flapping camera must not look like a stall).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "sdk" / "streams"))


def load_loop(video: Path, seconds: float, fps: float = 15.0) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < int(seconds * fps):
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"{video}: no frames")
    return frames


def serve(scene: str, loop_seconds: float, flap_seconds: float, ports: Any, stop: Any) -> None:
    """Child process: two RTSP servers; the infrared one stops and restarts every `flap_seconds`."""
    from rtsp_server import RtspServer

    visible = load_loop(Path(scene) / "visible.mp4", loop_seconds)
    infrared = load_loop(Path(scene) / "infrared.mp4", loop_seconds)
    vis = RtspServer(lambda i: visible[i % len(visible)]).start()
    ir = RtspServer(lambda i: infrared[i % len(infrared)]).start()
    ports.put((vis.port, ir.port))
    flaps = 0
    next_flap = time.monotonic() + flap_seconds
    while not stop.is_set():
        time.sleep(0.2)
        if time.monotonic() >= next_flap:
            ir.stop()
            time.sleep(2.0)  # the camera is gone for 2 s
            ir.start()
            flaps += 1
            next_flap = time.monotonic() + flap_seconds
    ports.put(flaps)
    vis.stop()
    ir.stop()


def sample() -> dict[str, float]:
    status = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.split()[0] if value.split() else ""
    return {
        "rss_mb": int(status["VmRSS"]) / 1024,
        "threads": int(status["Threads"]),
        "fds": len(os.listdir("/proc/self/fd")),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--scene", required=True, type=Path)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--flap-seconds", type=float, default=30.0)
    parser.add_argument("--loop-seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--outputs", type=Path, help="events file and videos here (default: a temporary folder)"
    )
    args = parser.parse_args()
    missing = [n for n in ("visible.mp4", "infrared.mp4", "gt.json") if not (args.scene / n).is_file()]
    if missing:
        parser.error(
            f"--scene {args.scene}: missing {', '.join(missing)} (make one with `vireid synth scene`)"
        )
    if not args.model.is_file():
        parser.error(f"--model {args.model}: no such file")
    if args.minutes < 1.5:
        parser.error("--minutes must be at least 1.5: RSS growth is measured after a one-minute warm-up")

    ctx = mp.get_context("spawn")
    ports, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(  # a daemon: a failed start-up below must not leave it running (and us waiting)
        target=serve, args=(str(args.scene), args.loop_seconds, args.flap_seconds, ports, stop), daemon=True
    )
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="vireid-soak-") as scratch:
            args.outputs = args.outputs or Path(scratch)
            return _start_and_soak(args, ports, stop, server)
    finally:
        stop.set()
        server.join(timeout=30)


def _start_and_soak(args, ports, stop, server) -> int:
    from vireid import Embedder
    from vireid.bench.pipeline import PipelineBenchConfig, enroll_scene_gallery, load_scene
    from vireid.streams import JsonlSink, Pipeline, PipelineConfig, VideoSink, VideoSource

    vis_port, ir_port = ports.get(timeout=60)
    truth = load_scene(args.scene)
    embedder = Embedder(args.model, "cpu")
    gallery = enroll_scene_gallery(
        args.scene, truth, embedder, PipelineBenchConfig(enroll_seconds=args.loop_seconds)
    )
    sources = [
        VideoSource(f"rtsp://127.0.0.1:{vis_port}/stream", "visible", "vis", backoff=(0.5, 2.0)),
        VideoSource(f"rtsp://127.0.0.1:{ir_port}/stream", "infrared", "ir", backoff=(0.5, 2.0)),
    ]
    events: dict[str, int] = {}
    lock = threading.Lock()

    def on_event(event: Any) -> None:
        key = f"{event.camera}:{event.kind}" if hasattr(event, "camera") else event.kind
        with lock:
            events[key] = events.get(key, 0) + 1

    events_file = args.outputs / "events.jsonl"
    sinks = [JsonlSink(events_file), VideoSink(args.outputs / "video", segment_minutes=1.0)]
    pipeline = Pipeline(
        sources, embedder, gallery=gallery, config=PipelineConfig(), sinks=sinks, on_event=on_event
    )
    try:
        return _soak(args, pipeline, events, ports, stop, server, gallery, embedder)
    finally:
        stop.set()
        pipeline.stop()
        server.join(timeout=30)


def _soak(args, pipeline, events, ports, stop, server, gallery, embedder) -> int:
    from vireid.atomic import write_atomic
    from vireid.streams.sinks import purge_events

    started = time.monotonic()
    timeline = []
    purged: list[int] = []
    longest_stall = [0.0, ""]  # the longest time the processing loop went without a round, and where
    calls = [0]
    events_file = args.outputs / "events.jsonl"

    def on_status(stats: Any) -> None:  # every second: the stall sampled often, the rest every 10 s
        if stats.stalled_for > longest_stall[0]:
            longest_stall[:] = [stats.stalled_for, stats.stalled_in]
        calls[0] += 1
        if calls[0] % 10:
            return
        if not purged and time.monotonic() - started >= args.minutes * 30:  # half time: retention runs
            purged.append(purge_events(events_file, 30 / 86400)[1])  # what is older than 30 s
        point = {"t": round(time.monotonic() - started, 1), **sample()}
        for s in stats.sources:
            point[f"{s.camera}_read"] = s.frames_read
            point[f"{s.camera}_dropped"] = s.frames_dropped
            point[f"{s.camera}_reconnects"] = s.reconnects
        for cam, c in stats.cameras.items():
            point[f"{cam}_processed"] = c.processed
        timeline.append(point)
        print(json.dumps(point), flush=True)

    # run() re-raises what stopped the processing thread: a pipeline that died is not a quiet soak
    # and a stall timeout as `vireid run` has (a false stall would stop the soak with an error)
    final = pipeline.run(args.minutes * 60, on_status=on_status, status_every=1.0, stall_timeout=60.0)
    stop.set()
    flaps = ports.get(timeout=30)
    server.join(timeout=30)
    gallery.close()
    embedder.close()
    warm = [p for p in timeline if p["t"] >= 60.0] or timeline  # --minutes >= 1.5: after the warm-up
    half = [p for p in timeline if p["t"] >= timeline[-1]["t"] / 2]  # caches and buffers fill early on
    slope = _slope_mb_per_hour(half)
    sink = next(s for s in pipeline.sinks + pipeline.dropped_sinks if type(s).__name__ == "JsonlSink")
    in_file = sum(1 for line in events_file.read_text().splitlines() if line.strip())
    by_camera = {s.camera: s for s in final.sources}
    report = {
        "minutes": args.minutes,
        "flaps": flaps,
        "ir_reconnects": by_camera["ir"].reconnects,
        "vis_reconnects": by_camera["vis"].reconnects,
        "vis_frames_read": by_camera["vis"].frames_read,
        "vis_frames_dropped": by_camera["vis"].frames_dropped,
        "vis_frames_processed": final.cameras["vis"].processed,
        "vis_frames_unaccounted": by_camera["vis"].frames_read
        - final.cameras["vis"].processed
        - by_camera["vis"].frames_dropped,
        "vis_tracks_started_minus_ended": events.get("vis:track_started", 0)
        - events.get("vis:track_ended", 0),
        "rss_mb_after_warmup": warm[0]["rss_mb"],
        "rss_mb_end": timeline[-1]["rss_mb"],
        "rss_growth_pct": 100.0 * (timeline[-1]["rss_mb"] - warm[0]["rss_mb"]) / warm[0]["rss_mb"],
        "rss_mb_per_hour": slope,  # least squares, second half; noisy over minutes, telling over hours
        "rss_projected_30_days_mb": None if slope is None else round(slope * 24 * 30, 1),
        "events_written": sink.lines,
        "events_purged": purged[0] if purged else None,
        "events_in_file": in_file,
        "events_file_reopened": sink.reopened,
        "outputs_dropped": [repr(s) for s in pipeline.dropped_sinks],
        "longest_stall_s": round(float(longest_stall[0]), 2),  # sampled every second
        "longest_stall_in": longest_stall[1],
        "threads": [timeline[0]["threads"], timeline[-1]["threads"]],
        "fds": [timeline[0]["fds"], timeline[-1]["fds"]],
        "events": events,
        "timeline": timeline,
    }
    summary = {k: v for k, v in report.items() if k != "timeline"}
    print(json.dumps(summary, indent=2))
    if args.json:
        write_atomic(args.json, json.dumps(report, indent=2) + "\n")
    missed = [
        text
        for failed, text in (
            (
                report["rss_growth_pct"] > 5.0,
                f"RSS grew {report['rss_growth_pct']:.1f} % after warm-up (> 5 %)",
            ),
            (report["threads"][1] > report["threads"][0], f"threads grew {report['threads']}"),
            (report["fds"][1] > report["fds"][0], f"open files grew {report['fds']}"),
            (report["ir_reconnects"] < flaps, f"{report['ir_reconnects']} reconnects for {flaps} flaps"),
            (  # the one frame `latest` holds when the run stops is read but never processed
                report["vis_frames_unaccounted"] > 1,
                f"{report['vis_frames_unaccounted']} visible frames lost",
            ),
            (
                in_file != sink.lines - (purged[0] if purged else 0),
                f"events file holds {in_file} lines; {sink.lines} written, {purged} purged",
            ),
            (bool(pipeline.dropped_sinks), f"outputs failed: {report['outputs_dropped']}"),
            (
                report["longest_stall_s"] > 5.0,
                f"processing went {report['longest_stall_s']} s without a round "
                f"({report['longest_stall_in']})",
            ),
        )
        if failed
    ]
    for text in missed:
        print(f"target missed: {text}", file=sys.stderr)
    return 1 if missed else 0


def _slope_mb_per_hour(points: list[dict[str, float]]) -> float | None:
    """Least-squares slope of RSS over time, MB per hour (None over less than four minutes, where the
    allocator's steps outweigh any trend)."""
    if len(points) < 3 or points[-1]["t"] - points[0]["t"] < 240:
        return None
    t = np.array([p["t"] for p in points]) / 3600.0
    rss = np.array([p["rss_mb"] for p in points])
    return round(float(np.polyfit(t, rss, 1)[0]), 2)


if __name__ == "__main__":
    sys.exit(main())
