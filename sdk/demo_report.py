"""The demo's report: accuracy, CMC, parity, latency, identification against ground truth, frames.

Built from the objects the demo's stages return, rendered by `vireid.report` to `report.md` and
`report.html` in the demo folder (figures are linked by relative path, so the folder can be zipped).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .card import rounded_up
from .report import Image, Pre, Report, Table

METRICS = ("R1", "R5", "R10", "R20", "mAP", "mINP")


@dataclass
class DemoResults:
    """Everything the demo measured.

    Attributes:
        root: the demo folder (the report goes here; figures are under `results/`).
        model, histogram: protocol results (`ProtocolResult`) of the model and the colour histogram.
        export: the export chain's result (artifacts, parity reports, calibrations).
        bench: the `BenchReport` of the demo model.
        pipeline: the `PipelineBenchResult` on the scene.
        frames: annotated snapshots written by the pipeline stage.
        timings: seconds per stage, and `total`.
        artifacts: protocol results of exported files by step (`fp16`, `int8`), same images and trials.
    """

    root: Path
    model: Any
    histogram: Any
    export: Any
    bench: Any
    pipeline: Any
    frames: list[Path]
    timings: dict[str, float]
    artifacts: dict[str, Any] = field(default_factory=dict)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def _accuracy(results: DemoResults, targets: dict[str, float], report: Report) -> None:
    section = report.section("Accuracy on the held-out synthetic set")
    section.add(
        "SYSU-MM01 all-search, single-shot, 10 trials, on a synthetic SYSU-style set generated with a seed "
        "the model never trained on (infrared queries, visible gallery). Percent, mean ± std over trials."
    )
    rows = []
    matchers = [("demo model (PyTorch)", results.model)]
    matchers += [(f"demo model, ONNX {step.upper()}", r) for step, r in results.artifacts.items()]
    matchers.append(("colour histogram (no training)", results.histogram))
    for name, result in matchers:
        mean, std = result.mean(), result.std()
        rows.append([name, *(f"{_pct(mean[k])} ± {_pct(std[k])}" for k in METRICS)])
    mean = results.model.mean()
    rows.append(["target", *(f"≥ {_pct(targets[k])}" if k in targets else "" for k in METRICS)])
    section.add(Table(["matcher", *METRICS], rows))
    verdicts = [
        f"{k} {_pct(mean[k])} {'meets' if mean[k] >= goal else 'misses'} the target {_pct(goal)}"
        for k, goal in targets.items()
    ]
    section.add("; ".join(verdicts) + ".", Image("results/cmc.png", "CMC curve, held-out set"))


def _parity(results: DemoResults, report: Report) -> None:
    section = report.section("Export and parity")
    chain = results.export
    rows = [
        [step, str(path.name), f"{chain.seconds.get(step, 0.0):.1f} s"]
        for step, path in chain.artifacts.items()
    ]
    section.add(Table(["step", "artifact", "time"], rows))
    for step, parity in chain.reports.items():
        section.add(f"Parity of the {step} step ({'PASS' if parity else 'FAIL'}):", Pre(str(parity)))
    for step, calibration in chain.calibrations.items():
        section.add(
            f"Match threshold ({step}): {calibration.threshold:.3f} at false-match rate "
            f"{calibration.achieved_text()} (target {calibration.fmr_target:.0e}), true-match rate "
            f"{calibration.tmr:.3f}, from {calibration.genuine_pairs} genuine and "
            f"{calibration.impostor_pairs} "
            "impostor cross-modal pairs of the held-out set's validation identities."
            + _within_sentence(calibration)
            + _track_sentence(calibration)
        )


def _track_sentence(calibration: Any) -> str:
    track = calibration.track_means
    if track is None or track.impostor_pairs * calibration.fmr_target < 1:
        return ""
    return (
        f" The stream pipeline matches track means against enrolment centroids across modalities at "
        f"{rounded_up(track.threshold_for_target):.4f}, the threshold for the same rate on "
        f"{track.impostor_pairs} simulated comparisons of that kind."
    )


def _within_sentence(calibration: Any) -> str:
    if not calibration.within:
        return ""
    parts = [
        f"{name} {w.threshold:.3f} (true-match rate {w.tmr:.3f})" for name, w in calibration.within.items()
    ]
    return " Same-modality matches use their own thresholds at that rate: " + ", ".join(parts) + "."


def _latency(results: DemoResults, report: Report) -> None:
    bench = results.bench
    env = bench.environment
    section = report.section("Latency on this machine")
    section.add(
        f"`vireid bench` on {env['cpu']} ({env['cores']} cores), one process, interleaved rounds; input "
        f"{bench.input_size[0]}×{bench.input_size[1]}, {bench.embedding_dim}-d embeddings."
    )
    rows = [
        [
            f"{r.backend} {r.precision}",
            str(r.batch),
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.throughput:.0f}",
            "" if r.cosine_to_reference is None else f"{r.cosine_to_reference:.5f}",
        ]
        for r in bench.rows
    ]
    section.add(Table(["runtime", "batch", "p50 ms", "p99 ms", "images/s", "cosine to ref."], rows))
    for skipped in bench.skipped:
        section.add(f"{skipped.backend} {skipped.precision}: skipped ({skipped.reason})")
    section.add(Image("results/latency.png", "throughput and p50 latency per runtime and batch size"))


def _pipeline(results: DemoResults, report: Report) -> None:
    result = results.pipeline
    info = result.scene_info
    section = report.section("Real-time pipeline on a two-camera scene")
    section.add(
        f"A synthetic {info['seconds']:.0f} s scene, visible and infrared cameras at {info['width']}×"
        f"{info['height']}, {info['fps']:g} fps. The gallery was enrolled from people seen by the visible "
        f"camera in the first {result.config.enroll_seconds:g} s "
        f"({result.enrolled['identities']} identities); "
        "both videos then ran through the pipeline (motion detector, tracker, cross-modal matcher), every "
        "frame processed, and the output was scored against the scene's ground truth."
    )
    rows = []
    for cam in ("visible", "infrared"):
        c = result.cameras[cam]
        ident = c["identification"]
        rows.append(
            [
                cam,
                f"{c['detection']['recall']:.3f}",
                f"{c['tracks_started']} / {c['gt_tracks']}",
                str(c["id_switches"]),
                f"{ident['precision']:.3f} ({ident['correct_tracks']}/{ident['identified_tracks']})",
                f"{ident['recall']:.3f} ({ident['gt_tracks_identified']}/{c['gt_tracks']})",
                f"{ident['recall_enrolled']:.3f} ({ident['enrolled_gt_tracks_identified']}/"
                f"{ident['enrolled_gt_tracks']})",
            ]
        )
    header = [
        "camera",
        "detection recall",
        "tracks / people",
        "ID switches",
        "id. precision",
        "id. recall (all people)",
        "id. recall (enrolled people)",
    ]
    section.add(Table(header, rows))
    cross = result.cross_modal
    latency = result.latency_ms.get("infrared", {})
    p95 = latency.get("p95")
    section.add(
        f"Cross-modal matches: {cross['matches']} (precision {cross['precision']:.3f}, recall "
        f"{cross['recall']:.3f} of {cross['people_in_both']} people seen by both cameras). Speed: "
        f"{result.realtime_factor:.2f}× real time for both streams together"
        + (f"; frame-to-result latency p95 {p95:.0f} ms (infrared)." if p95 is not None else ".")
    )
    for path in results.frames:
        section.add(Image(str(path.relative_to(results.root)), f"annotated frame: {path.stem}"))


def _timings(results: DemoResults, report: Report) -> None:
    section = report.section("How long each stage took")
    rows = [[stage, f"{seconds:.0f} s"] for stage, seconds in results.timings.items()]
    section.add(Table(["stage", "time"], rows))
    section.add(f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}.")


def build_report(results: DemoResults, targets: dict[str, float]) -> Report:
    """The report's document."""
    mean = results.model.mean()
    summary = (
        f"Cross-modal Rank-1 {_pct(mean['R1'])} % and mAP {_pct(mean['mAP'])} % on the held-out set "
        f"(targets {_pct(targets['R1'])} / {_pct(targets['mAP'])}); exported models "
        f"{'pass' if results.export.passed else 'FAIL'} their parity checks; the pipeline ran at "
        f"{results.pipeline.realtime_factor:.1f}× real time; the demo took {results.timings['total']:.0f} s."
    )
    report = Report("vireid demo report", summary)
    _accuracy(results, targets, report)
    _parity(results, report)
    _latency(results, report)
    _pipeline(results, report)
    _timings(results, report)
    return report


def write_report(results: DemoResults, targets: dict[str, float]) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` into the demo folder; returns their paths."""
    return build_report(results, targets).write(results.root)
