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
        "(TensorRT .engine files); repeatable, for deployment scripts. It fails when something the "
        "device needs is definitely missing (a provider, TensorRT, a CUDA binding the driver runs, or "
        "a GPU: nvidia-smi says none, Linux shows none, or a container has no NVIDIA device nodes); "
        "when no GPU can be detected either way (off Linux without nvidia-smi) it passes with a warning "
        "on stderr",
    )


def run(args: argparse.Namespace) -> int:
    """Print the report; exit 1 when a `--require`d device cannot run (a warning when it can only if a
    GPU nothing could detect is there)."""
    report = system_report()
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    failed = False
    for device in (report.device(name) for name in dict.fromkeys(args.require)):
        if not device.available:
            failed = True
            print(
                f"vireid doctor: {device.name} is required but cannot run: {device.reason}", file=sys.stderr
            )
        elif not device.certain:
            print(
                f"vireid doctor: warning: {device.name} is required and runs only if there is a GPU, which "
                f"could not be detected: {device.reason}",
                file=sys.stderr,
            )
    return 1 if failed else 0
