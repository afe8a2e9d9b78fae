"""Ablations of docs/results.md at equal budget: model variants and MeCen components.

Usage:
    python tools/ablation.py --data TRAIN_DIR --heldout HELDOUT_DIR --out runs/ablation [--epochs N]
        [--seeds 0,1,2] [--only NAME]...

Every variant trains `configs/demo_cpu.yaml` with its overrides for the same number of epochs and
steps (the learning-rate steps moved to the same fractions of that budget), once per training seed,
then is evaluated on the held-out folder (SYSU all-search, single-shot, 10 trials). The table gives
each metric's mean ± standard deviation over seeds: two runs of one recipe differ by about 1.5 points of
R1, so a difference smaller than that spread says nothing. With one seed the ± is over the 10 gallery
trials only (how much the gallery draw moves the number, not the training). Results go to
OUT/ablation.json and a Markdown table on stdout. Finished runs are reused on re-runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vireid import jsonio
from vireid.atomic import write_atomic
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


METRICS = ("R1", "R10", "mAP", "mINP")


def run_once(name: str, overrides: dict[str, object], seed: int, args: argparse.Namespace) -> dict:
    """Train (or reuse) one variant with one seed; its held-out means and trial stds."""
    slug = name.replace(" ", "_").replace("{", "").replace("}", "").replace(",", "-")
    folder = args.out / (slug if seed == 0 else f"{slug}_seed{seed}")  # seed 0 keeps the old folders
    result_file = folder / "heldout.json"
    base = TrainConfig.from_yaml(REPO / "configs" / "demo_cpu.yaml")
    config = base.with_overrides(
        {
            **overrides,
            "optim.epochs": args.epochs,
            "optim.milestones": scaled_milestones(base.optim.milestones, base.optim.epochs, args.epochs),
            "run.seed": seed,
            "run.eval_every": 0,
            "run.progress": False,
        }
    )
    recipe = config.to_dict()
    if result_file.is_file():
        done = json.loads(result_file.read_text())
        if done.get("config") == recipe:  # reused only when trained with exactly this config
            return done
        print(f"{folder}: trained with another config (or by an older version of this tool); retraining")
    started = time.monotonic()
    trained = train(config, args.data, folder, overwrite=True)  # a finished run of another config
    table = evaluate_checkpoint(trained.last, args.heldout, "sysu-all", trials=10, device="cpu")
    result = {
        **table.mean(),
        "trial_std": table.std(),
        "train_s": time.monotonic() - started,
        "config": recipe,
    }
    write_atomic(result_file, jsonio.dumps(result, indent=2))
    return result


def scaled_milestones(milestones: tuple[int, ...], epochs: int, budget: int) -> list[int]:
    """The learning-rate steps moved to the same fractions of a shorter (or longer) budget. Every step
    is kept (two on one epoch decay twice there, as the schedule counts them) and lands before the
    last epoch, where it still takes effect."""
    last = max(budget - 1, 1)
    return sorted(min(last, max(1, round(m * budget / epochs))) for m in milestones)


def summarise(runs: list[dict]) -> dict:
    """Mean over seeds and the spread: std over seeds, or over trials when there is one seed."""
    out: dict = {"seeds": len(runs), "spread": "seeds" if len(runs) > 1 else "trials"}
    for key in METRICS:
        values = np.array([r[key] for r in runs])
        trial_std = runs[0].get("trial_std", {}).get(key, float("nan"))  # older results lack it
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(runs) > 1 else float(trial_std)
    out["train_s"] = float(np.mean([r["train_s"] for r in runs]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="SYSU-layout training set")
    parser.add_argument("--heldout", type=Path, required=True, help="SYSU-layout set of unseen identities")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/ablation"), help="runs (default runs/ablation)"
    )
    parser.add_argument("--epochs", type=int, default=8, help="epochs per run (default 8)")
    parser.add_argument("--seeds", default="0", help="training seeds, comma-separated (default 0)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="a variant (repeatable; default all): " + ", ".join(VARIANTS),
    )
    args = parser.parse_args()
    unknown = sorted(set(args.only) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds takes comma-separated integers, e.g. 0,1,2; got {args.seeds!r}")
    wanted = [n for n in VARIANTS if not args.only or n in args.only]
    results = {}
    for name in wanted:
        group, overrides = VARIANTS[name]
        results[name] = {"group": group, **summarise([run_once(name, overrides, s, args) for s in seeds])}
        print(f"{name}: R1 {results[name]['R1']:.4f} mAP {results[name]['mAP']:.4f}", flush=True)
    write_atomic(args.out / "ablation.json", jsonio.dumps(results, indent=2))
    spread = "seeds" if len(seeds) > 1 else "the 10 gallery trials (one training seed)"
    print(f"\npercent, mean ± std over {spread}")
    print("| variant | group | R1 | R10 | mAP | mINP |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        cells = " | ".join(f"{100 * r[k]:.2f} ± {100 * r[k + '_std']:.2f}" for k in METRICS)
        print(f"| {name} | {r['group']} | {cells} |")


if __name__ == "__main__":
    main()
