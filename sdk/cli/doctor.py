"""What this machine can run: the CPU's INT8 instructions, ONNX Runtime and its providers, OpenCV's
video back-ends and windows, TensorRT and CUDA, the GPU and the optional extras, each missing piece
with what it enables and how to install it."""

from __future__ import annotations

import argparse
import json
import sys

from ..doctor import format_report, system_report

DEVICES = ("cpu", "cuda", "tensorrt", "engine")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vireid doctor`."""
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--require",
        action="append",
        default=[],
        choices=DEVICES,
        metavar="DEVICE",
        help="exit 1 unless this can run here: cpu, cuda, tensorrt (.onnx on those devices) or engine "
        "(TensorRT .engine files); repeatable, for deployment scripts",
    )


def run(args: argparse.Namespace) -> int:
    """Print the report; exit 1 when a `--require`d device cannot run."""
    report = system_report()
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    missing = [report.device(name) for name in args.require if not report.device(name).available]
    for device in missing:
        print(f"vireid doctor: {device.name} is required but cannot run: {device.reason}", file=sys.stderr)
    return 1 if missing else 0
