"""`make demo`: the end-to-end job on the embedded default, on CPU, from nothing.

1. synth     a synthetic SYSU-style training set (seed 0) and a held-out set (seed 1)
2. train     `configs/demo_cpu.yaml` (MSPAC on a tiny two-stream ResNet) on the training set
3. evaluate  SYSU all-search single-shot, 10 trials, on the held-out set, next to the colour-histogram
             matcher, with a CMC curve
4. export    ONNX and FP16 ONNX, each verified against the step before, with the match threshold
             calibrated on the held-out set's validation identities

Every stage reuses what a previous run left in `--out` when its inputs are unchanged, so a second
`make demo` only re-evaluates. The stages need the `train` extra (torch); `make demo` installs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "configs" / "demo_cpu.yaml"
TRAIN_SEED, HELDOUT_SEED = 0, 1
TARGETS = {"R1": 0.80, "mAP": 0.70}


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


def _stage(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.monotonic()


def _done(started: float) -> None:
    print(f"   ({time.monotonic() - started:.0f} s)", flush=True)


def synth(paths: DemoPaths, quiet: bool, ids: int | None = None) -> None:
    """Generate (or reuse) the training and held-out synthetic sets (`ids=None`: the default size)."""
    from vireid.training.data.synth import SysuConfig, generate_sysu

    started = _stage("synth: SYSU-style training set (seed 0) and held-out set (seed 1)")
    for root, seed in ((paths.train_data, TRAIN_SEED), (paths.heldout_data, HELDOUT_SEED)):
        config = SysuConfig(seed=seed) if ids is None else SysuConfig(seed=seed, ids=ids)
        result = generate_sysu(root, config, show_progress=not quiet)
        print(f"   {root}: {result.files} files{' (reused)' if result.reused else ''}")
    _done(started)


def _trained(run: Path, config: dict) -> bool:
    """True when `run` holds a finished training of exactly this config."""
    try:
        meta = json.loads((run / "last.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("train_config") == config and meta.get("epoch") == config["optim"]["epochs"]


def train(paths: DemoPaths, quiet: bool, config_file: Path = DEMO_CONFIG) -> Path:
    """Train the demo model (or reuse a finished run of the same config); returns its last checkpoint."""
    from vireid.training.config import TrainConfig
    from vireid.training.trainer import train as run_training

    config = TrainConfig.from_yaml(config_file).with_overrides({"run.progress": not quiet})
    started = _stage(f"train: {config_file} on {paths.train_data}")
    if _trained(paths.run, config.to_dict()):
        print(f"   {paths.run} already holds this training; reusing it")
    else:
        if (paths.run / "last.json").exists():
            print(f"   {paths.run} holds another training; starting over")
            for name in ("last", "best"):
                for suffix in (".json", ".safetensors"):
                    (paths.run / f"{name}{suffix}").unlink(missing_ok=True)
            (paths.run / "metrics.jsonl").unlink(missing_ok=True)
        result = run_training(config, paths.train_data, paths.run)
        print(f"   trained {result.epochs_run} epochs in {result.seconds:.0f} s")
    _done(started)
    return paths.run / "last.safetensors"


def evaluate(paths: DemoPaths, checkpoint: Path) -> dict[str, float]:
    """Evaluate the model and the colour-histogram matcher on the held-out set; returns the model's means."""
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
    (paths.results / "evaluate.json").write_text(
        json.dumps({"model": model.to_dict(), "colour_histogram": histogram.to_dict()}, indent=2) + "\n"
    )
    plot_cmc({"demo model": model.cmc, "colour histogram": histogram.cmc}, paths.results / "cmc.png")
    print(f"   wrote {paths.results / 'evaluate.json'} and {paths.results / 'cmc.png'}")
    _done(started)
    return model.mean()


def export(paths: DemoPaths, checkpoint: Path) -> bool:
    """Export the model to ONNX and FP16 ONNX with parity checks; returns whether every check passed."""
    from vireid.export.chain import ChainOptions, export_chain

    started = _stage(f"export: ONNX and FP16 ONNX to {paths.models}, each verified")
    options = ChainOptions(name="demo", calibrate=paths.heldout_data)
    result = export_chain(
        checkpoint, "onnx,fp16", paths.models, options, emit=lambda text: print(textwrap.indent(text, "   "))
    )
    _done(started)
    return result.passed


def main(argv: Sequence[str] | None = None) -> int:
    """Run every stage; exit status 0 when they ran (the accuracy target is reported, not enforced)."""
    parser = argparse.ArgumentParser(prog="python -m vireid.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo"), help="output folder (reused on re-runs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--config", type=Path, default=DEMO_CONFIG, help="training config (default: %(default)s)"
    )
    parser.add_argument("--ids", type=int, help="identities per synthetic set (default: the generator's 300)")
    args = parser.parse_args(argv)
    from vireid.errors import VireidError, require

    try:
        require("torch", "train", "the demo's training stage")
        if not args.config.is_file():
            raise VireidError(f"{args.config}: the demo config is missing; run the demo from a checkout")
        paths = DemoPaths(args.out)
        started = time.monotonic()
        synth(paths, args.quiet, args.ids)
        checkpoint = train(paths, args.quiet, args.config)
        means = evaluate(paths, checkpoint)
        exported = export(paths, checkpoint)
    except VireidError as exc:
        print(f"vireid demo: error: {exc}", file=sys.stderr)
        return 1
    verdict = ", ".join(
        f"{key} {means[key]:.3f} ({'meets' if means[key] >= goal else 'misses'} target {goal:.2f})"
        for key, goal in TARGETS.items()
    )
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s: {verdict}")
    if not exported:
        print("vireid demo: error: an exported model failed its parity check (see above)", file=sys.stderr)
        return 1
    print(f"exported models: {paths.models}/demo.onnx, {paths.models}/demo.fp16.onnx (vireid info ...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
