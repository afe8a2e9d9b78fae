"""Benchmark the stream pipeline on a synthetic scene against its ground truth. A script, not a test.

    vireid synth scene --out scene --seconds 120
    .venv/bin/python tests/perf/bench_pipeline.py --model model.onnx --scene scene
    .venv/bin/python tests/perf/bench_pipeline.py --model model.onnx --scene scene --mode realtime
    .venv/bin/python tests/perf/bench_pipeline.py --model model.onnx --scene scene --detector gt
    .venv/bin/python tests/perf/bench_pipeline.py --model model.onnx --scene scene --oracle 0.2

Protocol (docs/pipeline.md): the gallery is enrolled from the visible camera's first `--enroll-seconds`
(ground-truth boxes of people at least 90% visible, every `--enroll-step` frames, name `id<pid>`); then
both videos run through `vireid.Pipeline` and the output is scored by `scene_eval`:

- detection and track boxes: recall / precision / mean IoU against ground truth (IoU ≥ 0.5);
- ID switches per camera;
- identification precision and recall of ground-truth infrared tracks (and visible, for reference);
- cross-modal match precision / recall and the scores of correct and wrong matches;
- real-time factor (`--mode fast`: media seconds processed per wall second, every frame processed;
  `--mode realtime`: both files replayed at their frame rate under the `latest` policy, with frames
  dropped when processing falls behind) and per-stage latency.

Targets (issue 8): identification precision ≥ 0.90 and ≥ 0.80 of GT infrared tracks identified; real time
≥ 1.0× for two 640×480 15 fps streams with the demo model on the 2-core CPU. `--detector gt` uses ground
truth boxes (isolates the matcher); `--oracle NOISE` replaces the model by embeddings that know who is
in each box (isolates detector and tracker).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scene_eval import CameraTracks, Oracle, SceneTruth, name_of, score_cross_modal, score_identification

from vireid import Embedder, Gallery
from vireid.streams import (
    CallbackSink,
    CallerBoxes,
    FrameResult,
    JsonlSink,
    Pipeline,
    PipelineConfig,
    VideoSource,
)

CAMERAS = ("visible", "infrared")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="re-id model (.onnx or .engine)")
    p.add_argument("--scene", required=True, type=Path, help="folder from `vireid synth scene`")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: physical cores)")
    p.add_argument("--detector", default="motion", choices=("motion", "yolo", "gt"))
    p.add_argument("--detector-model", type=Path, help="YOLO-format .onnx for --detector yolo")
    p.add_argument("--threshold", type=float, help="match threshold (default: the model card's)")
    p.add_argument("--embed-every", type=int, default=10)
    p.add_argument("--enroll-seconds", type=float, default=60.0)
    p.add_argument("--enroll-step", type=int, default=5)
    p.add_argument("--mode", choices=("fast", "realtime"), default="fast")
    p.add_argument("--oracle", type=float, metavar="NOISE", help="ground-truth embeddings with this noise")
    p.add_argument("--min-frames", type=int, default=10, help="frames a person needs to count as a GT track")
    p.add_argument("--events", type=Path, help="also write the events here (JSON Lines)")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    return p.parse_args(argv)


def enrollment_crops(
    scene: Path, truth: SceneTruth, seconds: float, step: int
) -> tuple[list[np.ndarray], list[int]]:
    """Ground-truth crops (BGR) of the visible camera's first `seconds`, people ≥ 90% visible."""
    cap = cv2.VideoCapture(str(scene / "visible.mp4"))
    crops, pids = [], []
    last = min(truth.num_frames, round(seconds * truth.fps))
    for index in range(last):
        ok, frame = cap.read()
        if not ok:
            break
        if index % step:
            continue
        for obj in truth.objects("visible", index):
            x1, y1, x2, y2 = obj["box"]
            if obj["visibility"] >= 0.9 and y2 - y1 >= 80 and x1 > 2 and x2 < truth.width - 2:
                crops.append(frame[y1:y2, x1:x2])
                pids.append(obj["id"])
    cap.release()
    return crops, pids


def build_gallery(
    args: argparse.Namespace, embedder: Embedder, truth: SceneTruth, oracle: Oracle | None
) -> Gallery:
    crops, pids = enrollment_crops(args.scene, truth, args.enroll_seconds, args.enroll_step)
    if not crops:
        raise SystemExit(
            f"no enrolment crops in the first {args.enroll_seconds} s of {args.scene}/visible.mp4"
        )
    if oracle is not None:
        vectors = np.stack([oracle.vector(pid, "visible") for pid in pids])
    else:
        vectors = embedder.embed(crops, "visible", bgr=True).vectors
    gallery = Gallery(":memory:", embedding_space=embedder.embedding_space, dim=vectors.shape[1])
    for pid in sorted(set(pids)):
        rows = [i for i, p in enumerate(pids) if p == pid]
        gallery.enroll(name_of(pid), vectors[rows], "visible", camera="visible")
    return gallery


class OraclePipeline(Pipeline):
    """A pipeline whose embeddings come from the ground truth (`--oracle`)."""

    oracle: Oracle

    def embed_crops(self, requests):  # type: ignore[override]
        return np.stack(
            [
                self.oracle.vector(
                    self.oracle.person_at(r.frame.camera, r.frame.index, r.box), str(r.frame.modality)
                )
                for r in requests
            ]
        )


def run_pipeline(args: argparse.Namespace, embedder: Embedder, gallery: Gallery, truth: SceneTruth, oracle):
    fast = args.mode == "fast"
    sources = [
        VideoSource(
            args.scene / f"{cam}.mp4", cam, cam, policy="every" if fast else "latest", realtime=not fast
        )
        for cam in CAMERAS
    ]
    scored = {cam: CameraTracks() for cam in CAMERAS}
    events: list[dict[str, Any]] = []

    def on_frame(result: FrameResult) -> None:
        frame = result.frame
        boxes = np.array([t.box for t in result.tracks], np.float64).reshape(-1, 4)
        objects = truth.objects(frame.camera, frame.index)
        scored[frame.camera].add(objects, result.detections.boxes, [t.track_id for t in result.tracks], boxes)

    detector = None
    options: dict[str, Any] = {}
    if args.detector == "gt":
        detector = CallerBoxes(
            lambda f: [o["box"] for o in truth.objects(f.camera, f.index) if o["visibility"] >= 0.3]
        )
    elif args.detector == "yolo":
        options = {"model": str(args.detector_model), "device": args.device}
    config = PipelineConfig(
        detector=args.detector if args.detector != "gt" else "motion",
        detector_options=options,
        threshold=args.threshold,
        embed_every=args.embed_every,
    )

    sinks = [CallbackSink(lambda e: events.append(e.to_dict()), on_frame)]
    if args.events:
        sinks.append(JsonlSink(args.events))
    cls = OraclePipeline if oracle is not None else Pipeline
    pipeline = cls(sources, embedder, gallery=gallery, config=config, sinks=sinks, detector=detector)
    if oracle is not None:
        pipeline.oracle = oracle  # type: ignore[attr-defined]
    stats = pipeline.run(handle_signals=False)
    return stats, scored, events


def report(
    args: argparse.Namespace, stats, scored: dict[str, CameraTracks], events: list[dict[str, Any]]
) -> dict:
    out: dict[str, Any] = {"mode": args.mode, "detector": args.detector, "oracle": args.oracle}
    for cam in CAMERAS:
        tracks = scored[cam]
        ident = score_identification(cam, events, tracks, args.min_frames)
        out[cam] = {
            "detection": _boxes(tracks.detections),
            "tracks": _boxes(tracks.tracks),
            "id_switches": tracks.id_switches,
            "tracks_started": sum(1 for e in events if e["event"] == "track_started" and e["camera"] == cam),
            "gt_tracks": len(tracks.people(args.min_frames)),
            "identification": {
                "precision": ident.precision,
                "recall": ident.recall,
                "identified_tracks": ident.identified_tracks,
                "correct_tracks": ident.correct_tracks,
                "gt_tracks_identified": ident.people_identified,
                "name_changes": ident.name_changes,
            },
        }
    cross = score_cross_modal(events, scored["visible"], scored["infrared"], args.min_frames)
    out["cross_modal"] = {
        "matches": cross.matches,
        "precision": cross.precision,
        "recall": cross.recall,
        "people_in_both": cross.people_both,
        "score_correct_mean": float(np.mean(cross.scores_correct)) if cross.scores_correct else None,
        "score_wrong_mean": float(np.mean(cross.scores_wrong)) if cross.scores_wrong else None,
    }
    out["realtime_factor"] = stats.realtime_factor
    out["elapsed_s"] = stats.elapsed
    out["frames"] = {c: s.processed for c, s in stats.cameras.items()}
    out["dropped"] = {s.camera: s.frames_dropped for s in stats.sources}
    out["lag_ms"] = {c: s.lag_ms for c, s in stats.cameras.items()}
    out["stages_ms"] = {
        n: {"mean": s.mean_ms, "p50": s.p50_ms, "p95": s.p95_ms, "count": s.count}
        for n, s in stats.stages.items()
    }
    return out


def _boxes(score) -> dict[str, float]:
    return {"recall": score.recall, "precision": score.precision, "mean_iou": score.mean_iou}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_report(out: dict[str, Any], header: str) -> None:
    print(header)
    for cam in CAMERAS:
        c = out[cam]
        d, t, i = c["detection"], c["tracks"], c["identification"]
        print(
            f"[{cam}] detection recall {d['recall']:.3f} precision {d['precision']:.3f} "
            f"IoU {d['mean_iou']:.3f} | "
            f"track boxes recall {t['recall']:.3f} | tracks {c['tracks_started']} for {c['gt_tracks']} GT, "
            f"ID switches {c['id_switches']}"
        )
        print(
            f"[{cam}] identification precision {i['precision']:.3f} "
            f"({i['correct_tracks']}/{i['identified_tracks']} tracks), GT tracks identified "
            f"{i['recall']:.3f} ({i['gt_tracks_identified']}/{c['gt_tracks']}), "
            f"name changes {i['name_changes']}"
        )
    x = out["cross_modal"]
    print(
        f"cross-modal matches {x['matches']}: precision {x['precision']:.3f}, recall {x['recall']:.3f} "
        f"of {x['people_in_both']} people; mean score correct {_fmt(x['score_correct_mean'])} "
        f"wrong {_fmt(x['score_wrong_mean'])}"
    )
    print(
        f"real-time factor {out['realtime_factor']:.2f}x ({out['mode']}), frames {out['frames']}, "
        f"dropped {out['dropped']}, lag ms { ({k: round(v, 1) for k, v in out['lag_ms'].items()}) }"
    )
    for name, s in out["stages_ms"].items():
        print(
            f"  {name:8s} mean {s['mean']:7.2f} ms  p50 {s['p50']:7.2f}  p95 {s['p95']:7.2f}  n={s['count']}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    truth = SceneTruth.load(args.scene)
    with Embedder(args.model, args.device, **({"threads": args.threads} if args.threads else {})) as embedder:
        oracle = Oracle(truth, 128, noise=args.oracle) if args.oracle is not None else None
        start = time.perf_counter()
        gallery = build_gallery(args, embedder, truth, oracle)
        enrol_s = time.perf_counter() - start
        stats, scored, events = run_pipeline(args, embedder, gallery, truth, oracle)
        out = report(args, stats, scored, events)
        out["enrolled"] = {"identities": len(gallery), "seconds": enrol_s}
        gallery.close()
    header = (
        f"bench_pipeline: {args.scene} ({truth.num_frames} frames, {truth.width}x{truth.height} "
        f"@ {truth.fps:g} fps), "
        f"model {args.model.name} on {args.device}, {platform.processor() or platform.machine()}, "
        f"enrolled {out['enrolled']['identities']} identities"
    )
    print_report(out, header)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
