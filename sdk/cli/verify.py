"""Compare two models' embeddings and print the parity report; exit status 1 when it fails.

REFERENCE and CANDIDATE are artifacts (.onnx, .engine) or checkpoints (.safetensors/.json, needs
torch). Both embed the same synthetic cross-modal gallery (each person seen by a visible and an
infrared camera); the report gives per-embedding cosine min/mean, max abs error, top-1/top-5 retrieval
agreement, unit-norm error and alone-vs-batch consistency. Thresholds follow the candidate's precision
(fp32: cosine >= 0.99999, fp16: >= 0.999, int8: >= 0.95; top-1 agreement >= 0.99, int8: >= 0.90) unless
overridden.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..card import ModelCard
from .argtypes import cosine, output_file, positive_int, seed, unit_interval, write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vireid verify`."""
    parser.add_argument("reference", help="trusted side: checkpoint or artifact")
    parser.add_argument("candidate", help="side under test: artifact (or checkpoint)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or tensorrt (for artifacts)")
    parser.add_argument("--identities", type=positive_int, default=32, help="people in the synthetic gallery")
    parser.add_argument("--seed", type=seed, default=0, help="synthetic gallery seed")
    parser.add_argument("--min-cosine", type=cosine, help="override the minimum cosine threshold")
    parser.add_argument("--min-top1", type=unit_interval, help="override the top-1 agreement threshold")
    parser.add_argument("--no-batch-check", action="store_true", help="skip the alone-vs-batch check")
    parser.add_argument("--json", type=output_file, help="also write the report as JSON here")


def run(args: argparse.Namespace) -> int:
    """Verify and print; 0 when within thresholds, 1 otherwise."""
    import dataclasses

    from vireid.errors import InputSpecError
    from vireid.export.parity import Thresholds, lower_precision, verify

    for path in (args.reference, args.candidate):  # both checked before either model is loaded
        if not Path(path).is_file():
            raise InputSpecError(
                f"{path}: no such file; pass a checkpoint (.safetensors) or an artifact (.onnx, .engine)"
            )
    thresholds = None
    if args.min_cosine is not None or args.min_top1 is not None:
        sides = [_card(path) for path in (args.reference, args.candidate)]
        base = Thresholds.for_precision(lower_precision(*sides))
        changes = {"min_cosine": args.min_cosine, "min_top1": args.min_top1}
        thresholds = dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})
    report = verify(
        args.reference,
        args.candidate,
        thresholds=thresholds,
        device=args.device,
        identities=args.identities,
        seed=args.seed,
        check_batch=not args.no_batch_check,
    )
    print(report)
    if args.json:
        write_report(args.json, report.to_dict(), "verify")
    return 0 if report else 1


def _card(path: str) -> ModelCard | None:
    """An artifact's card; None for a checkpoint (FP32)."""
    if Path(path).suffix.lower() in (".safetensors", ".json"):
        return None
    return ModelCard.from_artifact(path)
