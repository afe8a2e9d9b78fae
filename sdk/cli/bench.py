"""Measure latency and throughput of a model on every runtime, or the stream pipeline end to end.

  vireid bench MODEL [MODEL ...] [--backend ort-cpu,torch] [--batch 1,8,32] [--precision fp32,fp16]
               [--json F] [--plot F]
  vireid bench pipeline MODEL [--scene FOLDER ...] [--mode fast|realtime] [--json F]

MODEL is a checkpoint (.safetensors; needs torch for the `torch` row and the export extra for the ONNX
rows), an exported .onnx (its .fp16.onnx sibling is used for fp16 rows when present), a TensorRT
.engine, or random:[MODEL/]BACKBONE[@HxW] (e.g. random:resnet50@288x144, an untrained mspac, or
random:psmg/resnet50@288x144: for speed only).
All configurations run in one process, timed in interleaved rounds so the ratios are fair; backends that
cannot run here are listed as skipped with the reason. With several MODELs every configuration of every
model shares those rounds, and a last table gives each model's throughput relative to the first's.
`bench pipeline` enrols a gallery from a synthetic scene's visible camera, runs both cameras through the
pipeline and scores the result against the scene's ground truth (fps, real-time factor, frame-to-result
latency, identification precision/recall).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from vireid.errors import require

from ..backends.base import DEVICES
from ..errors import ConfigError, InputSpecError
from .argtypes import (
    cosine,
    csv_of,
    non_negative_int,
    one_of,
    output_file,
    output_png,
    positive_float,
    positive_int,
    write_report,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vireid bench` and `vireid bench pipeline`."""
    from ..bench.pipeline import DETECTORS, MODES
    from ..bench.runtime import BACKENDS, PRECISIONS

    parser.add_argument("target", metavar="MODEL", help="model to time, or the word `pipeline`")
    parser.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="more models timed in the same run, all before the options (after `pipeline`: its model)",
    )
    parser.add_argument("--json", type=output_file, help="write the report as JSON here")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: physical cores)")
    runtime = parser.add_argument_group("model benchmark")
    runtime.add_argument(
        "--backend",
        type=csv_of(one_of(BACKENDS)),
        help=f"comma-separated (default all): {','.join(BACKENDS)}",
    )
    runtime.add_argument("--batch", type=csv_of(positive_int), help="batch sizes (default 1,8,32)")
    runtime.add_argument(
        "--precision",
        type=csv_of(one_of(PRECISIONS)),
        help=f"comma-separated (default {','.join(PRECISIONS)})",
    )
    runtime.add_argument(
        "--warmup", type=non_negative_int, help="untimed calls per configuration (default 2)"
    )
    budget = runtime.add_mutually_exclusive_group()
    budget.add_argument("--iters", type=positive_int, help="timed calls per configuration")
    budget.add_argument("--seconds", type=positive_float, help="timed seconds per configuration (default 3)")
    runtime.add_argument("--rounds", type=positive_int, help="interleaved timing rounds (default 3)")
    runtime.add_argument(
        "--streams",
        type=positive_int,
        help="concurrent copies of each configuration, threads split among them (throughput mode; default 1)",
    )
    runtime.add_argument("--plot", type=output_png, help="write a throughput / latency chart (PNG) here")
    pipe = parser.add_argument_group("pipeline benchmark (vireid bench pipeline MODEL)")
    pipe.add_argument(
        "--scene",
        type=Path,
        action="append",
        help="folder from `vireid synth scene` (default: generate 30 s); repeat it to add the scenes up",
    )
    pipe.add_argument("--device", type=one_of(DEVICES), help="auto, cpu, cuda or tensorrt (default cpu)")
    pipe.add_argument("--mode", choices=MODES, help="fast: every frame; realtime: replay at fps")
    pipe.add_argument(
        "--detector", choices=DETECTORS, help="motion (default), yolo, or gt = ground-truth boxes"
    )
    pipe.add_argument("--detector-model", type=Path, help="YOLO-format .onnx for --detector yolo")
    pipe.add_argument("--threshold", type=cosine, help="match threshold (default: the model card's)")
    pipe.add_argument(
        "--within-threshold", type=cosine, help="same-modality match threshold (default: the model card's)"
    )
    pipe.add_argument(
        "--identity-score", choices=["centroid", "max"], help="how identities are scored (default centroid)"
    )
    pipe.add_argument("--embed-every", type=positive_int, help="re-embed a track every N frames (default 10)")
    pipe.add_argument(
        "--enroll-seconds",
        type=positive_float,
        help="enrol from the first S seconds (default 60, or the first half of a shorter scene)",
    )
    pipe.add_argument("--events", type=Path, help="also write the events here (JSON Lines)")


# Options of one benchmark with their defaults: given to the other, they are refused, not ignored.
_RUNTIME_DEFAULTS: dict[str, Any] = {
    "backend": None,  # filled from the runtime registry
    "batch": (1, 8, 32),
    "precision": None,
    "warmup": 2,
    "iters": None,
    "seconds": 3.0,  # --iters, when given, takes precedence
    "rounds": 3,
    "streams": 1,
    "plot": None,
}
_PIPELINE_DEFAULTS: dict[str, Any] = {
    "scene": None,
    "device": "cpu",
    "mode": "fast",
    "detector": "motion",
    "detector_model": None,
    "threshold": None,
    "within_threshold": None,
    "identity_score": "centroid",
    "embed_every": 10,
    "enroll_seconds": None,  # the first minute, or the first half of a shorter scene
    "events": None,
}


def _only_for(args: argparse.Namespace, defaults: dict[str, Any], benchmark: str, hint: str) -> None:
    """Refuse options that belong to the other benchmark, then fill this one's defaults."""
    given = [name for name in defaults if getattr(args, name) is not None]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise InputSpecError(f"{flags}: not an option of {benchmark}; {hint}")


def _fill(args: argparse.Namespace, defaults: dict[str, Any]) -> None:
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the model or the pipeline benchmark."""
    from ..bench.runtime import BACKENDS, PRECISIONS

    if getattr(args, "plot", None):  # before the benchmark runs, not after it
        require("matplotlib", "plot", "--plot (the chart)")

    if args.target == "pipeline":
        _only_for(
            args, _RUNTIME_DEFAULTS, "`vireid bench pipeline`", "they time a model: vireid bench MODEL ..."
        )
        _fill(args, _PIPELINE_DEFAULTS)
    else:
        _only_for(
            args,
            _PIPELINE_DEFAULTS,
            "a model benchmark",
            "they belong to `vireid bench pipeline MODEL`; a model runs on a device through --backend "
            "(e.g. ort-cuda, tensorrt)",
        )
        args.asked_backends = tuple(args.backend or ())  # named by the user: each must give a row
        _fill(args, {**_RUNTIME_DEFAULTS, "backend": BACKENDS, "precision": PRECISIONS})
    if args.target == "pipeline":
        if len(args.models) != 1:
            raise InputSpecError(
                "vireid bench pipeline takes one MODEL: vireid bench pipeline model.onnx "
                f"(got {len(args.models)})"
            )
        return _pipeline(args, args.models[0])
    return _runtime(args, [args.target, *args.models])


def _runtime(args: argparse.Namespace, models: list[str]) -> int:
    from ..bench.runtime import BenchConfig, compare_models, comparison, comparison_table, model_names

    config = BenchConfig(
        backends=tuple(args.backend),
        batches=tuple(args.batch),
        precisions=tuple(args.precision),
        warmup=args.warmup,
        iters=args.iters,
        seconds=args.seconds,
        rounds=args.rounds,
        threads=args.threads,
        streams=args.streams,
    )
    reports = compare_models(models, config, log=lambda m: print(f"  {m}", flush=True))
    for report in reports:
        env = report.environment
        print(
            f"\nvireid bench: {report.model} ({report.input_size[0]}x{report.input_size[1]}, "
            f"{report.embedding_dim}-d) on {env['cpu']} ({env['cores']} cores)"
            + (f", GPU {env['gpu']}" if env.get("gpu") else "")
        )
        print(report.table())
    if len(reports) > 1:
        print("\n" + comparison_table(reports))
    print(f"peak RSS {reports[-1].peak_rss_mb:.0f} MB (the whole run)")
    if len(reports) == 1:
        _write_json(args.json, reports[0].to_dict())
    else:
        _write_json(args.json, {"models": [r.to_dict() for r in reports], "comparison": comparison(reports)})
    names = model_names(reports)
    rows = [
        replace(row, backend=f"{name} {row.backend}") if len(reports) > 1 else row
        for report, name in zip(reports, names, strict=True)
        for row in report.rows
    ]
    if args.plot and rows:
        from ..plots import plot_bench

        print(f"chart: {plot_bench(rows, args.plot, title='vireid bench: ' + ', '.join(names))}")
    idle = [name for report, name in zip(reports, names, strict=True) if not report.rows]
    if idle:
        which = f" of {', '.join(idle)}" if len(reports) > 1 else ""
        raise ConfigError(f"no configuration{which} could run here; see the skipped reasons above")
    ran = {row.backend for report in reports for row in report.rows}
    missing = [b for b in getattr(args, "asked_backends", ()) if b not in ran]
    if missing:  # a CI job that asked for the GPU must not pass on the CPU rows alone
        named = ",".join(missing)
        print(f"vireid bench: error: --backend {named} gave no row (reasons above)", file=sys.stderr)
        return 1
    return 0


def _pipeline(args: argparse.Namespace, model: str) -> int:
    from ..bench.pipeline import (
        PipelineBenchConfig,
        bench_pipeline,
        load_scene,
        pipeline_totals,
        totals_summary,
    )
    from ..streams.sinks import events_file_problem

    scenes = args.scene or []
    for scene in scenes:
        load_scene(scene)  # every folder checked before the first one runs for minutes
    if len(scenes) > 1 and args.events:
        raise InputSpecError("--events takes one --scene (each scene's events would overwrite the last's)")
    problem = args.events and events_file_problem(args.events)
    if problem:
        raise InputSpecError(f"--events {args.events}: {problem}; choose another file")
    if args.events and args.events.is_file() and args.events.stat().st_size:  # as vireid run refuses it
        raise InputSpecError(
            f"--events {args.events}: holds events of an earlier run, which the benchmark would replace; "
            "delete it first or choose another file"
        )
    config = PipelineBenchConfig(  # checked here, before a scene is generated or a model loaded
        detector=args.detector,
        detector_model=args.detector_model,
        threshold=args.threshold,
        identity_score=args.identity_score,
        within_threshold=args.within_threshold,
        embed_every=args.embed_every,
        enroll_seconds=args.enroll_seconds,
        mode=args.mode,
        events=args.events,
    )
    with tempfile.TemporaryDirectory(prefix="vireid-scene-") as tmp:
        results = []
        for scene in scenes or [_generate_scene(Path(tmp))]:
            run = bench_pipeline(model, scene, config, device=args.device, threads=args.threads, log=_indent)
            results.append(run)
            print(results[-1].summary())
    if len(results) == 1:
        _write_json(args.json, results[0].to_dict(), "bench pipeline")
        return 0
    totals = pipeline_totals(results)
    print(totals_summary(totals))
    _write_json(args.json, {"scenes": [r.to_dict() for r in results], "total": totals}, "bench pipeline")
    return 0


def _indent(message: str) -> None:
    print(f"  {message}")


def _generate_scene(folder: Path) -> Path:
    from vireid.training.data.synth import SceneConfig, generate_scene  # numpy and OpenCV only

    print(f"  generating a 30 s two-camera synthetic scene in {folder} (pass --scene to reuse one)")
    generate_scene(folder, SceneConfig(seconds=30.0, seed=0), show_progress=True)
    return folder


def _write_json(path: Path | None, data: dict, command: str = "bench") -> None:
    if path:
        write_report(path, data, command)
        print(f"report: {path}")
