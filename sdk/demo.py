"""`make demo`: the end-to-end job on the embedded default, on CPU, from nothing.

1. synth     a synthetic SYSU-style training set (seed 0), a held-out set (seed 1) and a two-camera
             scene (visible + infrared video with ground truth)
2. train     `configs/demo_cpu.yaml` (MSPAC on a tiny two-stream ResNet) on the training set
3. evaluate  SYSU all-search single-shot, 10 trials, on the held-out set, next to the colour-histogram
             matcher, with a CMC curve
4. export    ONNX, FP16 and INT8 ONNX (INT8 calibrated on the training set, both modalities), each
             verified against the step before, with the match threshold calibrated on the held-out
             set's validation identities
5. bench     torch eager vs ONNX Runtime FP32 / FP16 / INT8 on this CPU (`vireid bench`), with a chart
6. pipeline  enrol a gallery from the scene's visible camera, run both cameras through the real-time
             pipeline, score identification against the ground truth, save annotated frames
7. report    `report.md` and `report.html` in `--out` with every table and figure

Data and training are reused when a previous run left them in `--out` with the same inputs (a
synthetic set of other settings, of another generator version or left unfinished is regenerated, and a
model trained on other data is retrained), so a second `make demo` re-measures in about a minute. The
stages need the `train`, `export`, `onnx` and `plot` extras (`make demo` installs them with `dev`); all are
checked before the first stage, so a missing one does not stop the demo minutes in.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import jsonio
from .atomic import write_atomic

REPO = Path(__file__).resolve().parents[1]


def _demo_config() -> Path:
    """The checkout's `configs/demo_cpu.yaml`, else the copy an installed wheel ships."""
    checkout = REPO / "configs" / "demo_cpu.yaml"
    if checkout.is_file():
        return checkout
    from importlib.resources import files

    try:
        return Path(str(files("vireid.training.configs"))) / "demo_cpu.yaml"
    except ModuleNotFoundError:
        return checkout


DEMO_CONFIG = _demo_config()
TRAIN_SEED, HELDOUT_SEED = 0, 1
TARGETS = {"R1": 0.80, "mAP": 0.70}
SCENE_SECONDS, ENROLL_SECONDS = 90.0, 45.0


@dataclass(frozen=True)
class DemoPaths:
    """Where each stage writes under the demo folder."""

    root: Path

    @property
    def train_data(self) -> Path:
        return self.root / "data" / "sysu-train"

    @property
    def heldout_data(self) -> Path:
        return self.root / "data" / "sysu-heldout"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def scene(self) -> Path:
        return self.root / "data" / "scene"

    @property
    def gallery(self) -> Path:
        return self.root / "gallery.db"


def _stage(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.monotonic()


def _done(started: float) -> None:
    print(f"   ({time.monotonic() - started:.0f} s)", flush=True)


def synth(
    paths: DemoPaths, quiet: bool, ids: int | None = None, scene_seconds: float = SCENE_SECONDS
) -> None:
    """Generate (or reuse) the training and held-out sets (`ids=None`: the default size) and the scene."""
    from vireid.training.data.synth import SceneConfig, SysuConfig, generate_scene, generate_sysu

    started = _stage("synth: SYSU-style training set (seed 0), held-out set (seed 1), two-camera scene")
    for root, seed in ((paths.train_data, TRAIN_SEED), (paths.heldout_data, HELDOUT_SEED)):
        config = SysuConfig(seed=seed) if ids is None else SysuConfig(seed=seed, ids=ids)
        result = _generate(generate_sysu, root, config, quiet)
        print(f"   {root}: {result.files} files{' (reused)' if result.reused else ''}")
    scene = _generate(generate_scene, paths.scene, SceneConfig(seconds=scene_seconds, seed=0), quiet)
    print(f"   {paths.scene}: {scene_seconds:g} s, 2 cameras{' (reused)' if scene.reused else ''}")
    _done(started)


def _generate(make: Callable[..., Any], root: Path, config: Any, quiet: bool) -> Any:
    """`make(root, config)`; a finished synthetic set of other settings (another generator version,
    another --ids) in `root`, one of the demo's own folders, is regenerated, which removes only what
    the generator writes. A symlinked folder is never regenerated (it may be yours), and anything else
    the generator refuses is reported with what to do."""
    from vireid.errors import DatasetError
    from vireid.training.data.synth.writer import other_settings, read_meta

    differs = None if root.is_symlink() else other_settings(root, config.to_meta())
    if differs:
        print(f"   {root}: holds a synthetic set of other settings ({differs}); regenerating it")
    try:
        return make(root, config, overwrite=differs is not None, show_progress=not quiet)
    except DatasetError as exc:
        if root.is_dir() and read_meta(root) is None:  # other content, or an unfinished run
            hint = "if an interrupted `make demo` left it, delete the folder and run `make demo` again"
            raise DatasetError(root, f"{exc.problem}; {hint}") from None
        raise


def _trained(run: Path, config: dict, data: dict) -> bool:
    """True when `run` holds a finished training of exactly this config on exactly this data."""
    try:
        meta = json.loads((run / "last.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    recorded = meta.get("data") if isinstance(meta, dict) else None
    return (
        isinstance(recorded, dict)
        and meta.get("train_config") == config
        and meta.get("epoch") == config["optim"]["epochs"]
        and recorded.get("sha256") == data["sha256"]
    )


def train(paths: DemoPaths, quiet: bool, config_file: Path = DEMO_CONFIG) -> Path:
    """Train the demo model (or reuse a finished run of the same config on the same data); returns its
    last checkpoint."""
    from vireid.training.config import TrainConfig
    from vireid.training.factory import training_fingerprint
    from vireid.training.trainer import train as run_training

    config = TrainConfig.from_yaml(config_file).with_overrides({"run.progress": not quiet})
    started = _stage(f"train: {config_file} on {paths.train_data}")
    if _trained(paths.run, config.to_dict(), training_fingerprint(config, paths.train_data)):
        print(f"   {paths.run} already holds this training; reusing it")
    else:
        if (paths.run / "last.json").exists():
            print(f"   {paths.run} holds a training of another config or other data; starting over")
        result = run_training(config, paths.train_data, paths.run, overwrite=True)
        print(f"   trained {result.epochs_run} epochs in {result.seconds:.0f} s ({result.computed_in})")
    _done(started)
    return paths.run / "last.safetensors"


def evaluate(paths: DemoPaths, checkpoint: Path) -> tuple[Any, Any]:
    """Evaluate the model and the colour-histogram matcher on the held-out set; returns both results."""
    from vireid.plots import plot_cmc
    from vireid.training.data.protocols import run_protocol
    from vireid.training.data.synth import baselines
    from vireid.training.evaluate import evaluate_checkpoint

    started = _stage(f"evaluate: sysu-all single-shot, 10 trials, on the held-out set {paths.heldout_data}")
    model = evaluate_checkpoint(checkpoint, paths.heldout_data, "sysu-all", trials=10, device="cpu")
    histogram = run_protocol(baselines.embedder("colour-histogram"), paths.heldout_data, "sysu-all")
    print("   demo model (MSPAC, tiny ResNet):")
    print("   " + model.table().replace("\n", "\n   "))
    print("   colour-histogram matcher (no training):")
    print("   " + histogram.table().replace("\n", "\n   "))
    paths.results.mkdir(parents=True, exist_ok=True)
    write_atomic(
        paths.results / "evaluate.json",
        jsonio.dumps({"model": model.to_dict(), "colour_histogram": histogram.to_dict()}, indent=2) + "\n",
    )
    plot_cmc({"demo model": model.cmc, "colour histogram": histogram.cmc}, paths.results / "cmc.png")
    print(f"   wrote {paths.results / 'evaluate.json'} and {paths.results / 'cmc.png'}")
    _done(started)
    return model, histogram


def export(paths: DemoPaths, checkpoint: Path) -> Any:
    """Export the model to ONNX, FP16 and INT8 (calibrated on the training set) with parity checks."""
    from vireid.export.chain import ChainOptions, export_chain

    started = _stage(f"export: ONNX, FP16 and INT8 ONNX to {paths.models}, each verified")
    options = ChainOptions(
        name="demo",
        calibrate=paths.heldout_data,
        int8_data=paths.train_data,
        overwrite=True,  # re-runs
    )
    result = export_chain(
        checkpoint,
        "onnx,fp16,int8",
        paths.models,
        options,
        emit=lambda text: print(textwrap.indent(text, "   ")),
    )
    _done(started)
    return result


def evaluate_artifacts(paths: DemoPaths, artifacts: dict[str, Path]) -> dict[str, Any]:
    """The FP16 and INT8 files on the same protocol, images and trials as the checkpoint."""
    from vireid.training.evaluate import evaluate_any

    started = _stage("evaluate artifacts: FP16 and INT8 ONNX on the held-out set, through ONNX Runtime")
    results: dict[str, Any] = {}
    for step in ("fp16", "int8"):
        if step in artifacts:
            results[step] = evaluate_any(
                artifacts[step], paths.heldout_data, "sysu-all", trials=10, device="cpu"
            )
            mean = results[step].mean()
            print(f"   {artifacts[step].name}: R1 {100 * mean['R1']:.2f}, mAP {100 * mean['mAP']:.2f}")
    _done(started)
    return results


def bench(paths: DemoPaths, checkpoint: Path, seconds: float = 1.5) -> Any:
    """Time torch eager and ONNX Runtime FP32 / FP16 / INT8 on this CPU in one run; JSON and a chart."""
    from vireid.bench.runtime import BenchConfig, ModelSource, run_bench
    from vireid.plots import plot_bench

    started = _stage("bench: torch eager vs ONNX Runtime FP32 / FP16 / INT8 on this CPU, batches 1, 8, 32")
    models = {
        p: paths.models / f"demo{'' if p == 'fp32' else '.' + p}.onnx" for p in ("fp32", "fp16", "int8")
    }
    source = ModelSource(str(checkpoint), checkpoint=checkpoint, onnx=models)
    config = BenchConfig(backends=("torch", "ort-cpu"), batches=(1, 8, 32), seconds=seconds, rounds=3)
    report = run_bench(source, config)
    print("   " + report.table().replace("\n", "\n   "))
    write_atomic(paths.results / "bench.json", jsonio.dumps(report.to_dict(), indent=2) + "\n")
    plot_bench(report.rows, paths.results / "latency.png", title="demo model on this CPU")
    _done(started)
    return report


def pipeline(paths: DemoPaths, model: Path, enroll_seconds: float = ENROLL_SECONDS) -> Any:
    """Enrol the gallery from the scene, run both cameras, score against ground truth, save frames."""
    from vireid.bench.pipeline import PipelineBenchConfig, bench_pipeline
    from vireid.streams import SnapshotSink

    started = _stage(f"pipeline: enrol {paths.gallery} from the scene's visible camera, run both cameras")
    paths.gallery.unlink(missing_ok=True)  # enrolled afresh: the model may have changed
    for suffix in ("-wal", "-shm"):
        Path(f"{paths.gallery}{suffix}").unlink(missing_ok=True)
    frames = paths.results / "frames"
    for old in frames.glob("*.jpg"):
        old.unlink()
    snapshots = SnapshotSink(frames, every=150, limit=3)
    config = PipelineBenchConfig(enroll_seconds=enroll_seconds, events=paths.results / "events.jsonl")
    result = bench_pipeline(
        model, paths.scene, config, gallery_path=paths.gallery, extra_sinks=(snapshots,), log=_indent_print
    )
    print("   " + result.summary().replace("\n", "\n   "))
    write_atomic(paths.results / "pipeline.json", jsonio.dumps(result.to_dict(), indent=2) + "\n")
    _done(started)
    return result, [p for group in snapshots.paths.values() for p in group]


def _indent_print(text: str) -> None:
    print(f"   {text}", flush=True)


DEMO_NEEDS = (
    ("torch", "train", "the demo's training stage"),
    ("onnx", "export", "the demo's export stage"),
    ("onnxslim", "export", "the demo's export stage"),
    ("onnxruntime", "onnx", "the demo's evaluation and benchmark stages"),
    ("matplotlib", "plot", "the demo's charts"),
)
"""(module, pip extra, what needs it): checked before the first stage."""


def _check_settings(args: argparse.Namespace) -> None:
    """Build the configs the later stages use from the options, so a bad value fails first."""
    from vireid.bench import BenchConfig
    from vireid.errors import VireidError
    from vireid.training.data.synth import SceneConfig, SysuConfig

    checks = {
        "--ids": lambda: args.ids is None or SysuConfig(seed=TRAIN_SEED, ids=args.ids),
        "--scene-seconds": lambda: SceneConfig(seconds=args.scene_seconds, seed=0),
        "--bench-seconds": lambda: BenchConfig(seconds=args.bench_seconds),
    }
    for flag, build in checks.items():
        try:
            build()
        except VireidError as exc:
            raise type(exc)(f"{flag}: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run every stage; exit status 0 when they ran (the accuracy target is reported, not enforced)."""
    parser = argparse.ArgumentParser(prog="python -m vireid.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo"), help="output folder (reused on re-runs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--config", type=Path, default=DEMO_CONFIG, help="training config (default: %(default)s)"
    )
    parser.add_argument("--ids", type=int, help="identities per synthetic set (default: the generator's 300)")
    parser.add_argument(
        "--scene-seconds", type=float, default=SCENE_SECONDS, help="scene length (default %(default)s)"
    )
    parser.add_argument(
        "--bench-seconds", type=float, default=1.5, help="timed seconds per bench row (default %(default)s)"
    )
    args = parser.parse_args(argv)
    from vireid.errors import VireidError, require

    try:
        for module, extra, stage in DEMO_NEEDS:
            require(module, extra, stage)
        if not args.config.is_file():
            raise VireidError(f"{args.config}: the demo config is missing; run the demo from a checkout")
        _check_settings(args)  # before minutes of data and training, not at the stage that reads them
        paths = DemoPaths(args.out)
        started = time.monotonic()
        timings: dict[str, float] = {}
        with _timed(timings, "synth"):
            synth(paths, args.quiet, args.ids, args.scene_seconds)
        with _timed(timings, "train"):
            checkpoint = train(paths, args.quiet, args.config)
        with _timed(timings, "evaluate"):
            model, histogram = evaluate(paths, checkpoint)
        with _timed(timings, "export"):
            exported = export(paths, checkpoint)
        failed = [step for step, report in exported.reports.items() if not report]
        if set(failed) - {"int8"}:
            raise VireidError(f"the {', '.join(failed)} export failed its parity check (see above)")
        if failed:  # INT8 parity is a smoke test; the report shows its accuracy next to FP32's
            print("   note: the INT8 model is outside the parity thresholds; see the report's accuracy table")
        with _timed(timings, "evaluate artifacts"):
            artifacts = evaluate_artifacts(paths, exported.artifacts)
        with _timed(timings, "bench"):
            latency = bench(paths, checkpoint, args.bench_seconds)
        with _timed(timings, "pipeline"):
            scene_result, frames = pipeline(
                paths, paths.models / "demo.onnx", min(ENROLL_SECONDS, args.scene_seconds / 2)
            )
        timings["total"] = time.monotonic() - started
        from vireid.demo_report import DemoResults, write_report

        results = DemoResults(
            paths.root, model, histogram, exported, latency, scene_result, frames, timings, artifacts
        )
        md, page = write_report(results, TARGETS)
    except VireidError as exc:
        print(f"vireid demo: error: {exc}", file=sys.stderr)
        return 1
    means = model.mean()
    verdict = ", ".join(
        f"{key} {means[key]:.3f} ({'meets' if means[key] >= goal else 'misses'} target {goal:.2f})"
        for key, goal in TARGETS.items()
    )
    speed = f"pipeline {scene_result.realtime_factor:.1f}x real time"
    print(f"\ndemo finished in {timings['total']:.0f} s: {verdict}; {speed}")
    print(f"exported models: {paths.models}/demo.onnx, demo.fp16.onnx, demo.int8.onnx (vireid info ...)")
    print(f"report: {md} and {page}")
    return 0


@contextlib.contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    timings[stage] = time.monotonic() - started


if __name__ == "__main__":
    sys.exit(main())
