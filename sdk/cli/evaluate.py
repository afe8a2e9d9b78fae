"""Evaluate a checkpoint or an exported artifact on the SYSU-MM01 / RegDB protocols (paper-style table).

MODEL is a checkpoint (.safetensors/.json, run in PyTorch: needs the `train` extra) or an artifact
(.onnx FP32/FP16/INT8, .engine), run through the same runtime backend deployment uses. Every model sees
the same images, trials and preprocessing. `--reference` evaluates a second model the same way and prints
per-metric deltas next to the parity report of the two; `--both-directions` adds the reverse direction
(visible queries for SYSU, the other RegDB protocol), because an export or a quantisation can hurt one
direction and not the other.

Test-time options, which papers report separately from plain nearest-neighbour numbers: `--flip`
averages each image's embedding with its mirror image's (twice the inference); `--rerank` ranks each
trial by k-reciprocal re-ranking over its queries and gallery together (Zhong et al., 2017). The table's
title and the JSON name them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .argtypes import output_file, output_png, positive_int, write_report

PROTOCOLS = ("sysu-all", "sysu-indoor", "regdb-v2t", "regdb-t2v")
DELTA_KEYS = ("R1", "mAP", "mINP")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vireid evaluate`."""
    parser.add_argument("model", nargs="?", help="checkpoint or artifact (.safetensors, .onnx, .engine)")
    parser.add_argument("--checkpoint", help="same as MODEL (kept for older scripts)")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--protocol", default="sysu-all", choices=PROTOCOLS, help="evaluation protocol")
    parser.add_argument("--shots", type=int, default=1, choices=(1, 10), help="SYSU gallery shots")
    parser.add_argument(
        "--trials", type=positive_int, help="SYSU: trials to average (default 10); RegDB: average splits 1..N"
    )
    parser.add_argument(
        "--split",
        type=positive_int,
        help="RegDB: evaluate this split only (default: the split a RegDB checkpoint was trained on; a model "
        "is refused on the other splits, whose test identities it trained on)",
    )
    parser.add_argument("--batch", type=positive_int, default=64, help="embedding batch size")
    parser.add_argument(
        "--device",
        default="auto",
        help="checkpoints: auto, cpu, cuda, cuda:N; artifacts: auto, cpu, cuda, tensorrt",
    )
    parser.add_argument("--reference", help="second model to compare with (checkpoint or artifact)")
    parser.add_argument("--both-directions", action="store_true", help="also evaluate the reverse direction")
    parser.add_argument(
        "--flip", action="store_true", help="average each embedding with the mirror image's (2x inference)"
    )
    parser.add_argument(
        "--rerank",
        nargs="?",
        const="20,6,0.3",
        metavar="K1,K2,WEIGHT",
        help="rank by k-reciprocal re-ranking (default parameters 20,6,0.3: k1, k2 and the original "
        "distance's weight λ)",
    )
    parser.add_argument("--json", type=output_file, help="write the result as JSON here")
    parser.add_argument("--plot", type=output_png, help="write the CMC curve as a PNG here")


def run(args: argparse.Namespace) -> int:
    """Evaluate, compare and print."""
    from vireid.errors import InputSpecError, require

    if args.plot:  # before the evaluation runs, not after it
        require("matplotlib", "plot", "--plot (the CMC curve)")
    from vireid.rerank import Rerank

    model = args.model or args.checkpoint
    if not model or (args.model and args.checkpoint):
        raise InputSpecError(
            "pass the model once: `vireid evaluate MODEL --data DIR` (or --checkpoint MODEL)"
        )
    models = [model] + ([args.reference] if args.reference else [])
    for path in models:
        if not Path(path).is_file():
            raise InputSpecError(
                f"{path}: no such file; pass a checkpoint (.safetensors) or an artifact (.onnx, .engine)"
            )
    if not Path(args.data).is_dir():  # before any model is loaded
        raise InputSpecError(
            f"{args.data}: no such folder; --data takes a SYSU-MM01- or RegDB-layout dataset folder "
            "(`vireid synth sysu --out DIR` makes a synthetic one)"
        )
    from vireid.training.data.protocols import check_dataset
    from vireid.training.evaluate import evaluate_directions, is_checkpoint

    if any(is_checkpoint(p) for p in models):
        require("torch", "train", "vireid evaluate on a checkpoint")
    rerank = Rerank.parse(args.rerank) if args.rerank else None
    trials = _trials(args, models)
    check_dataset(args.data, args.protocol, args.shots, trials)  # what the run reads, before any model loads
    directions = (False, True) if args.both_directions else (False,)
    results: dict[str, dict[bool, Any]] = {}
    for path in models:  # one model load per file; both directions share its embeddings
        results[path] = evaluate_directions(
            path,
            args.data,
            args.protocol,
            args.shots,
            trials,
            args.batch,
            args.device,
            directions,
            flip=args.flip,
            rerank=rerank,
        )
        for result in results[path].values():
            print(f"{path}:\n{result.table()}\n")
    output: dict[str, Any] = {"model": _summary(results[model])}
    if args.reference:
        output["reference"] = _summary(results[args.reference])
        output["delta"] = _print_deltas(results[model], results[args.reference], model, args.reference)
        output["parity"] = _parity(args.reference, model, args.device)
    if args.json:
        payload = output if args.reference or args.both_directions else results[model][False].to_dict()
        write_report(args.json, payload, "evaluate")
    if args.plot:
        from vireid.plots import plot_cmc

        curves = {f"{Path(p).name} {r[False].direction}": r[False].cmc for p, r in results.items()}
        print(f"CMC curve: {plot_cmc(curves, args.plot)}")
    return 0


def _trials(args: argparse.Namespace, models: list[str]) -> int | list[int]:
    """SYSU trials, or the RegDB splits that do not test a checkpoint on identities it trained on."""
    from vireid.errors import ConfigError
    from vireid.training.evaluate import regdb_splits

    if args.protocol.startswith("regdb"):
        return regdb_splits(models, args.split, args.trials)
    if args.split is not None:
        raise ConfigError("--split selects a RegDB split; SYSU protocols average --trials random galleries")
    return 10 if args.trials is None else args.trials


def _summary(by_direction: dict[bool, Any]) -> dict[str, Any]:
    return {result.direction: result.to_dict() for result in by_direction.values()}


def _print_deltas(model: dict[bool, Any], reference: dict[bool, Any], name: str, ref_name: str) -> dict:
    """Points (percent) of MODEL minus REFERENCE per direction and metric."""
    print(f"delta: {Path(name).name} minus {Path(ref_name).name} (percentage points)")
    print(f"{'direction':22s}" + "".join(f"{k:>10s}" for k in DELTA_KEYS))
    deltas = {}
    for reverse, result in model.items():
        mine, theirs = result.mean(), reference[reverse].mean()
        row = {k: 100 * (mine[k] - theirs[k]) for k in DELTA_KEYS}
        deltas[result.direction] = row
        print(f"{result.direction:22s}" + "".join(f"{row[k]:+10.2f}" for k in DELTA_KEYS))
    print()
    return deltas


def _parity(reference: str, candidate: str, device: str) -> dict[str, Any] | None:
    """The parity report of the two models (needs the export extra), or None with a note."""
    try:
        from vireid.export.parity import verify
    except ImportError as exc:
        print(f"parity report skipped: {exc}")
        return None
    report = verify(reference, candidate, device=device)
    print(report)
    return report.to_dict()
