"""Ablations of docs/results.md at equal budget: model variants and MeCen components.

Usage:
    python tools/ablation.py --data TRAIN_DIR --heldout HELDOUT_DIR --out runs/ablation [--epochs N]
        [--only NAME]...

Every variant trains `configs/demo_cpu.yaml` with its overrides for the same number of epochs and
steps, then is evaluated on the held-out folder (SYSU all-search, single-shot, 10 trials). Results go
to OUT/ablation.json and a Markdown table on stdout. Finished variants are reused on re-runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vireid.training.config import TrainConfig
from vireid.training.evaluate import evaluate_checkpoint
from vireid.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "baseline": ("model", {"model.name": "baseline", "model.parts": None}),
    "mspac {1}": ("model", {"model.parts": [1]}),
    "mspac {6}": ("model", {"model.parts": [6]}),
    "mspac {1,3,6}": ("model", {}),
    # The other seed models with their own defaults (split point, parts, losses); demo losses on top.
    "psmg": ("model", {"model.name": "psmg", "model.parts": None}),
    "mpanet": ("model", {"model.name": "mpanet", "model.parts": None}),
    # The loss ablation follows the paper: identity losses, then MeCen's parts, no triplet.
    "gid": ("loss", {"loss.triplet": 0.0, "loss.pid": 0.0, "loss.mecen.center": False}),
    "gid+pid": ("loss", {"loss.triplet": 0.0, "loss.mecen.center": False}),
    "+center": ("loss", {"loss.triplet": 0.0, "loss.mecen.margin": False, "loss.mecen.exp": False}),
    "+margin": ("loss", {"loss.triplet": 0.0, "loss.mecen.exp": False}),
    "+exp (MeCen)": ("loss", {"loss.triplet": 0.0}),
}


def run_variant(name: str, overrides: dict[str, object], args: argparse.Namespace) -> dict[str, float]:
    """Train (or reuse) one variant and evaluate it on the held-out folder."""
    folder = args.out / name.replace(" ", "_").replace("{", "").replace("}", "").replace(",", "-")
    result_file = folder / "heldout.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    config = TrainConfig.from_yaml(REPO / "configs" / "demo_cpu.yaml").with_overrides(
        {**overrides, "optim.epochs": args.epochs, "run.eval_every": 0, "run.progress": False}
    )
    started = time.monotonic()
    trained = train(config, args.data, folder)
    table = evaluate_checkpoint(trained.last, args.heldout, "sysu-all", trials=10, device="cpu")
    means = {**table.mean(), "train_s": time.monotonic() - started}
    result_file.write_text(json.dumps(means, indent=2))
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--heldout", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--only", action="append", default=[], help="a variant name (repeatable)")
    args = parser.parse_args()
    unknown = sorted(set(args.only) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    wanted = [n for n in VARIANTS if not args.only or n in args.only]
    results = {}
    for name in wanted:
        group, overrides = VARIANTS[name]
        results[name] = {"group": group, **run_variant(name, overrides, args)}
        print(f"{name}: R1 {results[name]['R1']:.4f} mAP {results[name]['mAP']:.4f}", flush=True)
    (args.out / "ablation.json").write_text(json.dumps(results, indent=2))
    print("\n| variant | group | R1 | R10 | mAP | mINP |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        cells = " | ".join(f"{r[k]:.4f}" for k in ("R1", "R10", "mAP", "mINP"))
        print(f"| {name} | {r['group']} | {cells} |")


if __name__ == "__main__":
    main()
