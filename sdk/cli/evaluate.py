"""Evaluate a checkpoint on the standard SYSU-MM01 / RegDB protocols and print the paper-style table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PROTOCOLS = ("sysu-all", "sysu-indoor", "regdb-v2t", "regdb-t2v")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vireid evaluate`."""
    parser.add_argument("--checkpoint", required=True, help="checkpoint (.safetensors or its .json)")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--protocol", default="sysu-all", choices=PROTOCOLS, help="evaluation protocol")
    parser.add_argument("--shots", type=int, default=1, choices=(1, 10), help="SYSU gallery shots")
    parser.add_argument("--trials", type=int, default=10, help="SYSU trials / RegDB splits to average")
    parser.add_argument("--batch", type=int, default=64, help="embedding batch size")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--json", type=Path, help="write the result as JSON here")
    parser.add_argument("--plot", type=Path, help="write the CMC curve as a PNG here")


def run(args: argparse.Namespace) -> int:
    """Evaluate and print."""
    from vireid.errors import require

    require("torch", "train", "vireid evaluate on a checkpoint")
    from vireid.training.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(
        args.checkpoint, args.data, args.protocol, args.shots, args.trials, args.batch, args.device
    )
    print(result.table())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_dict(), indent=2))
    if args.plot:
        from vireid.plots import plot_cmc

        plot_cmc({f"{args.protocol}": result.cmc}, args.plot)
        print(f"CMC curve: {args.plot}")
    return 0
