"""Benchmark the stream pipeline on a synthetic scene against its ground truth (`vireid bench pipeline`).

Protocol (docs/pipeline.md): the gallery is enrolled from the visible camera's first `enroll_seconds`
(ground-truth boxes of people at least 90% visible, every `enroll_step` frames, name `id<pid>`); then
both videos run through `vireid.Pipeline` and the output is scored by `vireid.bench.scene`:

- detection and track boxes: recall / precision / mean IoU against ground truth (IoU ≥ 0.5);
- ID switches per camera;
- identification precision and recall of ground-truth infrared tracks (and visible, for reference);
- cross-modal match precision / recall and the scores of correct and wrong matches;
- real-time factor (`mode="fast"`: media seconds processed per wall second, every frame processed;
  `mode="realtime"`: both files replayed at their frame rate under the `latest` policy, with frames
  dropped when processing falls behind), frame-to-result latency and per-stage latency.

`detector="gt"` uses ground-truth boxes (isolates the matcher); `oracle=NOISE` replaces the model by
embeddings that know who is in each box (isolates detector and tracker).
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..embedder import Embedder
from ..errors import ConfigError, InputSpecError
from ..gallery import Gallery
from ..streams import CallbackSink, CallerBoxes, FrameResult, JsonlSink, Pipeline, PipelineConfig, VideoSource
from ..streams.matcher import CropRequest, MatchThresholds
from ..streams.sinks import Sink
from .scene import CameraTracks, Oracle, SceneTruth, name_of, score_cross_modal, score_identification

CAMERAS = ("visible", "infrared")
DEFAULT_ENROLL_SECONDS = 60.0  # the protocol: enrol from the visible camera's first minute
DETECTORS = ("motion", "yolo", "gt")
MODES = ("fast", "realtime")


@dataclass(frozen=True)
class PipelineBenchConfig:
    """How to run the pipeline benchmark.

    Attributes:
        detector: `motion`, `yolo` (needs `detector_model`) or `gt` (ground-truth boxes).
        detector_model: YOLO-format `.onnx` for `detector="yolo"`.
        threshold: match threshold (None: the model card's).
        within_threshold: same-modality match threshold (None: the model card's).
        identity_score: `max` or `centroid` (see `vireid.IdentityScore`).
        embed_every: re-embed a track every this many frames.
        enroll_seconds: the visible camera's first seconds the gallery is enrolled from (None: the
            first minute, or the first half of a scene shorter than two minutes, so that at least half
            of the visible video was not enrolled from; `enrollment_seconds`).
        enroll_step: enrol every this many frames.
        mode: `fast` (every frame, as fast as possible) or `realtime` (replay at the frame rate).
        oracle: ground-truth embeddings with this noise instead of the model (None: the model).
        min_frames: frames a person needs in a camera to count as a ground-truth track.
        events: also write the events here (JSON Lines).
    """

    detector: str = "motion"
    detector_model: Path | None = None
    threshold: float | None = None
    within_threshold: float | None = None
    identity_score: str = "centroid"
    embed_every: int = 10
    enroll_seconds: float | None = None
    enroll_step: int = 5
    mode: str = "fast"
    oracle: float | None = None
    min_frames: int = 10
    events: Path | None = None

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ConfigError(f"detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}")
        if self.detector == "yolo" and self.detector_model is None:
            raise ConfigError(
                "detector 'yolo' needs detector_model (--detector-model): a YOLO-format .onnx file"
            )
        if self.detector != "yolo" and self.detector_model is not None:
            raise ConfigError(
                f"detector_model (--detector-model) is for detector 'yolo'; with {self.detector!r} it would "
                "be ignored: add --detector yolo, or drop it"
            )
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        bad_seconds = self.enroll_seconds is not None and self.enroll_seconds <= 0
        if bad_seconds or self.enroll_step < 1 or self.embed_every < 1 or self.min_frames < 1:
            raise ConfigError(
                "enroll_seconds must be > 0 and enroll_step, embed_every, min_frames >= 1; got "
                f"{self.enroll_seconds}, {self.enroll_step}, {self.embed_every}, {self.min_frames}"
            )


@dataclass
class PipelineBenchResult:
    """What one pipeline benchmark run measured (`to_dict()` is the JSON report)."""

    scene: str
    model: str
    device: str
    config: PipelineBenchConfig
    cameras: dict[str, dict[str, Any]]
    cross_modal: dict[str, Any]
    realtime_factor: float
    elapsed_s: float
    frames: dict[str, int]
    dropped: dict[str, int]
    lag_ms: dict[str, float]
    stages_ms: dict[str, dict[str, float]]
    enrolled: dict[str, Any]
    scene_info: dict[str, Any] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float | None]] = field(default_factory=dict)
    thresholds: MatchThresholds | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report (the layout `docs/pipeline.md` describes)."""
        return {
            "scene": self.scene,
            "scene_info": self.scene_info,
            "model": self.model,
            "device": self.device,
            "mode": self.config.mode,
            "detector": self.config.detector,
            "oracle": self.config.oracle,
            **{cam: self.cameras[cam] for cam in CAMERAS},
            "cross_modal": self.cross_modal,
            "realtime_factor": self.realtime_factor,
            "elapsed_s": self.elapsed_s,
            "frames": self.frames,
            "fps": {cam: n / self.elapsed_s if self.elapsed_s > 0 else 0.0 for cam, n in self.frames.items()},
            "dropped": self.dropped,
            "lag_ms": self.lag_ms,
            "latency_ms": self.latency_ms,
            "stages_ms": self.stages_ms,
            "enrolled": self.enrolled,
            "thresholds": self.thresholds.to_dict() if self.thresholds is not None else None,
            "machine": platform.processor() or platform.machine(),
        }

    def summary(self) -> str:
        """The report as terminal lines."""
        return "\n".join(_summary_lines(self))


def load_scene(scene: str | Path) -> SceneTruth:
    """The ground truth of a `vireid synth scene` folder, with a clear error when it is not one."""
    folder = Path(scene)
    missing = [name for name in ("gt.json", "visible.mp4", "infrared.mp4") if not (folder / name).is_file()]
    if missing:
        raise InputSpecError(
            f"{folder}: not a synthetic scene (missing {', '.join(missing)}); the pipeline benchmark needs "
            "ground truth: generate one with `vireid synth scene --out FOLDER`"
        )
    return SceneTruth.load(folder)


def enrollment_crops(
    scene: Path, truth: SceneTruth, seconds: float, step: int
) -> tuple[list[np.ndarray], list[int]]:
    """Ground-truth crops (BGR) of the visible camera's first `seconds`, people ≥ 90% visible."""
    cap = cv2.VideoCapture(str(scene / "visible.mp4"))
    crops, pids = [], []
    last = min(truth.num_frames, round(seconds * truth.fps))
    try:
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
    finally:
        cap.release()
    return crops, pids


def enrollment_seconds(config: PipelineBenchConfig, truth: SceneTruth) -> float:
    """`config.enroll_seconds`, else the first minute, or the first half of a scene shorter than two.

    The visible camera's identification is scored over its whole video, enrolment window included, so
    enrolling from all of it would score nothing but the gallery's own images; the infrared camera's
    never saw enrolment."""
    if config.enroll_seconds is not None:
        return config.enroll_seconds
    return min(DEFAULT_ENROLL_SECONDS, truth.num_frames / truth.fps / 2)


def enroll_scene_gallery(
    scene: Path,
    truth: SceneTruth,
    embedder: Embedder,
    config: PipelineBenchConfig,
    gallery_path: str | Path = ":memory:",
    oracle: Oracle | None = None,
) -> Gallery:
    """A gallery of every person seen (≥ 90% visible) in the visible camera's first seconds."""
    seconds = enrollment_seconds(config, truth)
    crops, pids = enrollment_crops(scene, truth, seconds, config.enroll_step)
    if not crops:
        raise InputSpecError(
            f"{scene}/visible.mp4: no person at least 90% visible in the first {seconds:g} s to "
            "enrol; raise enroll_seconds (--enroll-seconds) or generate a longer scene"
        )
    if oracle is not None:
        vectors = np.stack([oracle.vector(pid, "visible") for pid in pids])
    else:
        vectors = embedder.embed(crops, "visible", bgr=True).vectors
    gallery = Gallery(gallery_path, embedding_space=embedder.embedding_space, dim=vectors.shape[1])
    for pid in sorted(set(pids)):
        rows = [i for i, p in enumerate(pids) if p == pid]
        gallery.enroll(name_of(pid), vectors[rows], "visible", camera="visible")
    return gallery


class OraclePipeline(Pipeline):
    """A pipeline whose embeddings come from the ground truth (a fake model, named as such)."""

    oracle: Oracle

    def embed_crops(self, requests: Sequence[CropRequest]) -> np.ndarray:
        return np.stack(
            [
                self.oracle.vector(
                    self.oracle.person_at(r.frame.camera, r.frame.index, r.box), str(r.frame.modality)
                )
                for r in requests
            ]
        )


def run_scene(
    scene: Path,
    truth: SceneTruth,
    embedder: Embedder,
    gallery: Gallery,
    config: PipelineBenchConfig,
    oracle: Oracle | None = None,
    extra_sinks: tuple[Sink, ...] = (),
) -> tuple[Any, dict[str, CameraTracks], list[dict[str, Any]], dict[str, list[float]], MatchThresholds]:
    """Run both cameras of `scene` through the pipeline.

    Returns (stats, scored tracks per camera, events as dicts, frame-to-result latencies in ms per camera:
    from the moment the source read the frame to the moment its results reached the sinks, the
    matcher's thresholds).
    """
    fast = config.mode == "fast"
    sources = [
        VideoSource(scene / f"{cam}.mp4", cam, cam, policy="every" if fast else "latest", realtime=not fast)
        for cam in CAMERAS
    ]
    scored = {cam: CameraTracks() for cam in CAMERAS}
    events: list[dict[str, Any]] = []
    latency: dict[str, list[float]] = {cam: [] for cam in CAMERAS}

    def on_frame(result: FrameResult) -> None:
        frame = result.frame
        latency[frame.camera].append(1000.0 * max(0.0, time.time() - frame.timestamp))
        boxes = np.array([t.box for t in result.tracks], np.float64).reshape(-1, 4)
        objects = truth.objects(frame.camera, frame.index)
        scored[frame.camera].add(objects, result.detections.boxes, [t.track_id for t in result.tracks], boxes)

    detector = None
    options: dict[str, Any] = {}
    if config.detector == "gt":
        detector = CallerBoxes(
            lambda f: [o["box"] for o in truth.objects(f.camera, f.index) if o["visibility"] >= 0.3]
        )
    elif config.detector == "yolo":
        options = {"model": str(config.detector_model), "device": embedder.backend.device}
    pipeline_config = PipelineConfig(
        detector=config.detector if config.detector != "gt" else "motion",
        detector_options=options,
        threshold=config.threshold,
        within_threshold=config.within_threshold,
        identity_score=config.identity_score,
        embed_every=config.embed_every,
    )
    sinks: list[Sink] = [CallbackSink(lambda e: events.append(e.to_dict()), on_frame), *extra_sinks]
    if config.events:
        sinks.append(JsonlSink(config.events))
    cls = OraclePipeline if oracle is not None else Pipeline
    pipeline = cls(sources, embedder, gallery=gallery, config=pipeline_config, sinks=sinks, detector=detector)
    if oracle is not None:
        pipeline.oracle = oracle  # type: ignore[attr-defined]
    stats = pipeline.run(handle_signals=False)
    return stats, scored, events, latency, pipeline.matcher.thresholds()


def bench_pipeline(
    model: str | Path,
    scene: str | Path,
    config: PipelineBenchConfig | None = None,
    *,
    device: str = "cpu",
    threads: int | None = None,
    gallery_path: str | Path = ":memory:",
    extra_sinks: tuple[Sink, ...] = (),
    log: Callable[[str], None] = lambda _: None,
) -> PipelineBenchResult:
    """Enrol a gallery from `scene`'s visible camera, run both cameras, score against the ground truth."""
    config = config or PipelineBenchConfig()
    scene = Path(scene)
    truth = load_scene(scene)
    enroll_seconds = enrollment_seconds(config, truth)
    config = dataclasses.replace(config, enroll_seconds=enroll_seconds)
    duration = truth.num_frames / truth.fps
    if enroll_seconds >= duration:
        log(
            f"warning: enrolment covers the whole {duration:g} s scene: the visible camera's identification "
            "figures then score the gallery's own frames (the infrared camera's stay fair); enrol from less "
            f"of it, e.g. --enroll-seconds {duration / 2:g}"
        )
    options = {"threads": threads} if threads else {}
    with Embedder(model, device, **options) as embedder:
        oracle = Oracle(truth, 128, noise=config.oracle) if config.oracle is not None else None
        started = time.perf_counter()
        gallery = enroll_scene_gallery(scene, truth, embedder, config, gallery_path, oracle)
        enrol_s = time.perf_counter() - started
        log(
            f"enrolled {len(gallery)} identities from the visible camera's first {config.enroll_seconds:g} s "
            f"in {enrol_s:.1f} s; running both cameras ({config.mode})"
        )
        try:
            stats, scored, events, latency, thresholds = run_scene(
                scene, truth, embedder, gallery, config, oracle, extra_sinks
            )
            ids = sorted(int(i.name[2:]) for i in gallery.identities() if i.name.startswith("id"))
            enrolled = {
                "identities": len(gallery),
                "seconds": enrol_s,
                "ids": ids,
                "from_first_seconds": config.enroll_seconds,
            }
        finally:
            gallery.close()
        device_used = embedder.backend.device
    result = _result(scene, Path(model), device_used, truth, config, stats, scored, events, enrolled)
    result.latency_ms = {cam: _percentiles(values) for cam, values in latency.items()}
    result.thresholds = thresholds
    return result


def _result(
    scene: Path,
    model: Path,
    device: str,
    truth: SceneTruth,
    config: PipelineBenchConfig,
    stats: Any,
    scored: dict[str, CameraTracks],
    events: list[dict[str, Any]],
    enrolled: dict[str, Any],
) -> PipelineBenchResult:
    cameras = {}
    for cam in CAMERAS:
        tracks = scored[cam]
        ident = score_identification(cam, events, tracks, config.min_frames, enrolled["ids"])
        cameras[cam] = {
            "detection": _boxes(tracks.detections),
            "tracks": _boxes(tracks.tracks),
            "id_switches": tracks.id_switches,
            "tracks_started": sum(1 for e in events if e["event"] == "track_started" and e["camera"] == cam),
            "gt_tracks": len(tracks.people(config.min_frames)),
            "identification": {
                "precision": ident.precision,
                "recall": ident.recall,
                "identified_tracks": ident.identified_tracks,
                "correct_tracks": ident.correct_tracks,
                "gt_tracks_identified": ident.people_identified,
                "recall_enrolled": ident.recall_enrolled,
                "enrolled_gt_tracks": ident.enrolled_people,
                "enrolled_gt_tracks_identified": ident.enrolled_identified,
                "name_changes": ident.name_changes,
            },
        }
    cross = score_cross_modal(events, scored["visible"], scored["infrared"], config.min_frames)
    return PipelineBenchResult(
        scene=str(scene),
        model=str(model),
        device=device,
        config=config,
        cameras=cameras,
        cross_modal={
            "matches": cross.matches,
            "correct": cross.correct,
            "people_matched": cross.people_matched,
            "precision": cross.precision,
            "recall": cross.recall,
            "people_in_both": cross.people_both,
            "score_correct_mean": float(np.mean(cross.scores_correct)) if cross.scores_correct else None,
            "score_wrong_mean": float(np.mean(cross.scores_wrong)) if cross.scores_wrong else None,
        },
        realtime_factor=stats.realtime_factor,
        elapsed_s=stats.elapsed,
        frames={c: s.processed for c, s in stats.cameras.items()},
        dropped={s.camera: s.frames_dropped for s in stats.sources},
        lag_ms={c: s.lag_ms for c, s in stats.cameras.items()},
        stages_ms={
            n: {"mean": s.mean_ms, "p50": s.p50_ms, "p95": s.p95_ms, "count": s.count}
            for n, s in stats.stages.items()
        },
        enrolled=enrolled,
        scene_info={
            "frames": truth.num_frames,
            "width": truth.width,
            "height": truth.height,
            "fps": truth.fps,
            "seconds": truth.num_frames / truth.fps,
        },
    )


_COUNTS = (
    "identified_tracks",
    "correct_tracks",
    "gt_tracks_identified",
    "enrolled_gt_tracks",
    "enrolled_gt_tracks_identified",
)


def pipeline_totals(results: Sequence[PipelineBenchResult]) -> dict[str, Any]:
    """Identification and cross-modal counts summed over several scenes, with the rates recomputed from
    the sums: one scene holds a handful of tracks, so one track moves a rate by a quarter.

    Raises:
        InputSpecError: no results.
    """
    if not results:
        raise InputSpecError("pipeline_totals needs at least one scene's result")
    out: dict[str, Any] = {"scenes": len(results)}
    for cam in CAMERAS:
        idents = [r.cameras[cam]["identification"] for r in results]
        sums: dict[str, float] = {key: sum(int(i[key] or 0) for i in idents) for key in _COUNTS}
        sums["gt_tracks"] = sum(r.cameras[cam]["gt_tracks"] for r in results)
        sums["precision"] = _rate(sums["correct_tracks"], sums["identified_tracks"])
        sums["recall"] = _rate(sums["gt_tracks_identified"], sums["gt_tracks"])
        sums["recall_enrolled"] = _rate(sums["enrolled_gt_tracks_identified"], sums["enrolled_gt_tracks"])
        sums["id_switches"] = sum(r.cameras[cam]["id_switches"] for r in results)
        out[cam] = sums
    cross = {k: sum(r.cross_modal[k] for r in results) for k in ("matches", "correct", "people_matched")}
    cross["people_in_both"] = sum(r.cross_modal["people_in_both"] for r in results)
    cross["precision"] = _rate(cross["correct"], cross["matches"])
    cross["recall"] = _rate(cross["people_matched"], cross["people_in_both"])
    out["cross_modal"] = cross
    return out


def totals_summary(totals: Mapping[str, Any]) -> str:
    """`pipeline_totals` as terminal lines."""
    lines = [f"total over {totals['scenes']} scenes:"]
    for cam in CAMERAS:
        t = totals[cam]
        lines.append(
            f"[{cam}] identification precision {t['precision']:.3f} ({t['correct_tracks']}/"
            f"{t['identified_tracks']} tracks), of the enrolled people {t['recall_enrolled']:.3f} "
            f"({t['enrolled_gt_tracks_identified']}/{t['enrolled_gt_tracks']}), all people {t['recall']:.3f} "
            f"({t['gt_tracks_identified']}/{t['gt_tracks']}), ID switches {t['id_switches']}"
        )
    x = totals["cross_modal"]
    lines.append(
        f"cross-modal matches {x['matches']}: precision {x['precision']:.3f}, recall {x['recall']:.3f} "
        f"({x['people_matched']}/{x['people_in_both']} people)"
    )
    return "\n".join(lines)


def _rate(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "max": float(max(values))}


def _boxes(score: Any) -> dict[str, float]:
    return {"recall": score.recall, "precision": score.precision, "mean_iou": score.mean_iou}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _summary_lines(result: PipelineBenchResult) -> list[str]:
    info = result.scene_info
    lines = [
        f"pipeline bench: {result.scene} ({info['frames']} frames, {info['width']}x{info['height']} "
        f"@ {info['fps']:g} fps), model {Path(result.model).name} on {result.device}, "
        f"{platform.processor() or platform.machine()}, enrolled {result.enrolled['identities']} identities"
    ]
    if result.thresholds is not None:
        lines.append(f"thresholds: {result.thresholds}")
    for cam in CAMERAS:
        c = result.cameras[cam]
        d, t, i = c["detection"], c["tracks"], c["identification"]
        lines.append(
            f"[{cam}] detection recall {d['recall']:.3f} precision {d['precision']:.3f} "
            f"IoU {d['mean_iou']:.3f} | track boxes recall {t['recall']:.3f} | tracks {c['tracks_started']} "
            f"for {c['gt_tracks']} GT, ID switches {c['id_switches']}"
        )
        lines.append(
            f"[{cam}] identification precision {i['precision']:.3f} "
            f"({i['correct_tracks']}/{i['identified_tracks']} tracks), GT tracks identified "
            f"{i['recall']:.3f} ({i['gt_tracks_identified']}/{c['gt_tracks']}), of the enrolled people "
            f"{i['recall_enrolled']:.3f} ({i['enrolled_gt_tracks_identified']}/{i['enrolled_gt_tracks']}), "
            f"name changes {i['name_changes']}"
        )
    x = result.cross_modal
    lines.append(
        f"cross-modal matches {x['matches']}: precision {x['precision']:.3f}, recall {x['recall']:.3f} "
        f"of {x['people_in_both']} people; mean score correct {_fmt(x['score_correct_mean'])} "
        f"wrong {_fmt(x['score_wrong_mean'])}"
    )
    fps = (
        ", ".join(f"{cam} {n / result.elapsed_s:.1f}" for cam, n in result.frames.items())
        if result.elapsed_s
        else "-"
    )
    frames = ", ".join(f"{cam} {n}" for cam, n in result.frames.items())
    dropped = ", ".join(f"{cam} {n}" for cam, n in result.dropped.items())
    lines.append(
        f"real-time factor {result.realtime_factor:.2f}x ({result.config.mode}), frames {frames}, "
        f"processed fps per source: {fps}, dropped {dropped}"
    )
    for cam, lat in result.latency_ms.items():
        if lat["p50"] is not None:
            lines.append(
                f"[{cam}] frame-to-result latency p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms "
                f"(queue wait {result.lag_ms.get(cam, 0.0):.1f} ms)"
            )
    for name, s in result.stages_ms.items():
        lines.append(
            f"  {name:8s} mean {s['mean']:7.2f} ms  p50 {s['p50']:7.2f}  p95 {s['p95']:7.2f}  n={s['count']}"
        )
    return lines
