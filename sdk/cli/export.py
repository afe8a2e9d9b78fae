"""Export a checkpoint: ONNX → FP16 ONNX → TensorRT engine → Triton repository, each step verified.

Every artifact is compared with the one it came from (PyTorch for the ONNX, the FP32 ONNX for the FP16
one, the ONNX for the engine) on a synthetic cross-modal gallery, and the parity report is printed;
the exit status is 1 when a check fails. `--calibrate DIR` stores a match threshold for `--fmr` in each
artifact's card, computed on the validation identities of a SYSU-MM01-layout folder. `--to int8` writes
an INT8 (QDQ) model for ONNX Runtime calibrated on `--int8-data DIR`'s training images, both modalities
in the `--int8-visible` balance, with the layers a measured sensitivity pass finds fragile kept in float
(quantised for TensorRT instead, signed and symmetric, when the chain also builds an engine, or with
`--int8-target tensorrt` for a trtexec build elsewhere).
Needs the `export` extra (torch, onnx, onnxslim); the engine step needs the `tensorrt` extra and a GPU,
and without TensorRT prints the equivalent trtexec command (then `--attach ENGINE` writes the engine's card).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .argtypes import (
    at_least_two,
    non_negative_int,
    output_file,
    positive_int,
    rate,
    unit_interval,
    write_report,
)


def _batch(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected MIN,OPT,MAX batch sizes such as 1,8,32, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vireid export`."""
    parser.add_argument("source", help="checkpoint (.safetensors or .json), or an exported .onnx")
    parser.add_argument(
        "--to", default="onnx,fp16", help="steps: any of onnx,fp16,int8,engine,triton (default onnx,fp16)"
    )
    parser.add_argument("--out", type=Path, default=Path("export"), help="output folder (default export)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the artifacts an earlier export left in --out"
    )
    parser.add_argument("--name", help="artifact file stem (default: the source's)")
    parser.add_argument(
        "--opset", type=int, default=17, help="ONNX opset (default 17, which TensorRT 8.5+ parses)"
    )
    parser.add_argument(
        "--batch", type=_batch, default=(1, 8, 32), help="engine profile MIN,OPT,MAX (default 1,8,32)"
    )
    parser.add_argument(
        "--workspace", type=positive_int, default=1024, help="TensorRT workspace in MiB (default 1024)"
    )
    parser.add_argument("--timing-cache", type=Path, help="TensorRT timing cache (default OUT/timing.cache)")
    parser.add_argument(
        "--dla-core",
        type=non_negative_int,
        metavar="K",
        help="engine: build for Jetson DLA core K with GPU fallback (FP16/INT8, fixed --batch N,N,N)",
    )
    parser.add_argument("--calibrate", type=Path, metavar="DIR", help="SYSU-layout folder for the threshold")
    parser.add_argument(
        "--fmr", type=rate, help="false-match rate for the --calibrate threshold (default 0.001)"
    )
    parser.add_argument("--triton-name", help="Triton model name (default: the artifact stem)")
    parser.add_argument("--triton-max-batch", type=positive_int, help="Triton max_batch_size")
    parser.add_argument(
        "--int8-data", type=Path, metavar="DIR", help="int8: dataset whose training images calibrate"
    )
    parser.add_argument(
        "--int8-method",
        default="minmax",
        choices=("minmax", "entropy", "percentile"),
        help="int8 calibration",
    )
    parser.add_argument(
        "--int8-images", type=at_least_two, default=128, help="int8 calibration images (default 128)"
    )
    parser.add_argument(
        "--int8-visible",
        type=unit_interval,
        default=0.5,
        help="share of visible calibration images (default 0.5)",
    )
    parser.add_argument(
        "--int8-target",
        choices=("onnxruntime", "tensorrt"),
        help="int8: the runtime the QDQ file is for (default: tensorrt when --to builds an engine, else "
        "onnxruntime, whose CPU kernels run uint8 activations fastest; TensorRT parses int8 symmetric only)",
    )
    parser.add_argument(
        "--int8-no-sensitivity", action="store_true", help="quantise every layer, no sensitivity pass"
    )
    parser.add_argument("--identities", type=positive_int, default=32, help="people in the parity gallery")
    parser.add_argument("--no-verify", action="store_true", help="skip the parity checks")
    parser.add_argument("--json", type=output_file, help="write artifacts, reports and timings as JSON here")
    parser.add_argument(
        "--trtexec", action="store_true", help="print the trtexec command for SOURCE (.onnx) and exit"
    )
    parser.add_argument(
        "--attach",
        type=Path,
        metavar="ENGINE",
        help="write the card of an engine built elsewhere (trtexec) from SOURCE (.onnx) with --batch, "
        "--precision and --dla-core as it was built",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "fp16"),
        help="--trtexec/--attach: the engine's precision when it differs from SOURCE's (an FP32 ONNX built "
        "with trtexec --fp16 on TensorRT <= 10); default: SOURCE's own",
    )


# Options and their defaults, by what reads them: one given where nothing reads it is refused, not ignored.
_CHAIN_ONLY = {
    "to": "onnx,fp16",
    "overwrite": False,
    "name": None,
    "opset": 17,
    "calibrate": None,
    "fmr": None,
    "triton_name": None,
    "triton_max_batch": None,
    "int8_data": None,
    "int8_method": "minmax",
    "int8_images": 128,
    "int8_visible": 0.5,
    "int8_target": None,
    "int8_no_sensitivity": False,
    "identities": 32,
    "no_verify": False,
    "json": None,
}
_BY_STEP = {
    "int8": ("int8_data", "int8_method", "int8_images", "int8_visible", "int8_target", "int8_no_sensitivity"),
    "triton": ("triton_name", "triton_max_batch"),
    "engine": ("timing_cache", "batch", "workspace"),
}
_ENGINE_DEFAULTS = {"timing_cache": None, "batch": (1, 8, 32), "workspace": 1024, "out": Path("export")}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _refuse_unread_options(args: argparse.Namespace) -> None:
    """Options the chosen mode or steps never read are refused before any work (they were ignored)."""
    from vireid.errors import ConfigError

    if args.trtexec or args.attach:
        mode = "--attach" if args.attach else "--trtexec"
        given = [dest for dest, default in _CHAIN_ONLY.items() if getattr(args, dest) != default]
        if args.attach:  # it writes the engine's card beside the engine: no build settings, no --out
            given += [
                d for d in ("timing_cache", "workspace", "out") if getattr(args, d) != _ENGINE_DEFAULTS[d]
            ]
        if given:
            raise ConfigError(f"{', '.join(map(_flag, given))}: not read by {mode}; drop it")
        return
    if args.precision is not None:
        raise ConfigError(
            "--precision: only --trtexec and --attach read it (an export takes SOURCE's precision)"
        )
    from vireid.export.chain import parse_steps

    steps = parse_steps(args.to)
    defaults = {**_CHAIN_ONLY, **_ENGINE_DEFAULTS}
    for step, dests in _BY_STEP.items():
        given = [dest for dest in dests if getattr(args, dest) != defaults[dest]]
        if given and step not in steps:
            raise ConfigError(
                f"{', '.join(map(_flag, given))}: options of the {step} step; add {step} to --to"
            )
    if args.no_verify and args.identities != _CHAIN_ONLY["identities"]:
        raise ConfigError("--identities sizes the parity checks, which --no-verify turns off; drop one")


def run(args: argparse.Namespace) -> int:
    """Run the chain and print each parity report."""
    from vireid.export.chain import ChainOptions, export_chain

    _refuse_unread_options(args)
    if args.trtexec or args.attach:
        return _engine_helpers(args)
    if args.fmr is not None and args.calibrate is None:
        from vireid.errors import ConfigError

        raise ConfigError(
            "--fmr sets the false-match rate of the --calibrate threshold; give --calibrate DIR too"
        )
    options = ChainOptions(
        name=args.name,
        opset=args.opset,
        batch=args.batch,
        workspace=args.workspace << 20,
        timing_cache=args.timing_cache,
        dla_core=args.dla_core,
        calibrate=args.calibrate,
        fmr=1e-3 if args.fmr is None else args.fmr,
        triton_name=args.triton_name,
        triton_max_batch=args.triton_max_batch,
        identities=args.identities,
        verify=not args.no_verify,
        int8_data=args.int8_data,
        int8=_int8_options(args),
        overwrite=args.overwrite,
    )
    result = export_chain(args.source, args.to, args.out, options)
    if args.json:
        data = {
            "artifacts": {k: str(v) for k, v in result.artifacts.items()},
            "seconds": result.seconds,
            "reports": {k: r.to_dict() for k, r in result.reports.items()},
            "calibrations": {k: dataclasses.asdict(c) for k, c in result.calibrations.items()},
            "passed": result.passed,
        }
        write_report(args.json, data, "export")
    if not result.passed:
        failed = ", ".join(step for step, report in result.reports.items() if not report)
        print(f"vireid export: parity check failed for: {failed}")
        return 1
    return 0


def _int8_options(args: argparse.Namespace):
    if "int8" not in args.to:
        return None
    from vireid.export.int8 import Int8Options

    return Int8Options(
        method=args.int8_method,
        images=args.int8_images,
        visible_fraction=args.int8_visible,
        sensitivity=not args.int8_no_sensitivity,
        target=args.int8_target,  # None: the chain picks tensorrt when it builds an engine
    )


def _engine_helpers(args: argparse.Namespace) -> int:
    from vireid.errors import InputSpecError
    from vireid.export.tensorrt import attach_card, attach_command, trtexec_command

    if Path(args.source).suffix.lower() != ".onnx":
        flag = "--attach" if args.attach else "--trtexec"
        raise InputSpecError(
            f"{args.source}: {flag} takes the exported .onnx the engine is built from; export it first "
            f"(vireid export {args.source} --to onnx,fp16 --out DIR) and pass DIR/NAME.fp16.onnx"
        )
    settings = {"batch": args.batch, "precision": args.precision, "dla_core": args.dla_core}
    if args.attach:
        print(f"wrote {attach_card(args.attach, args.source, **settings)}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)  # trtexec fails only after the build when it cannot save
    engine = args.out / (Path(args.source).name.removesuffix(".onnx") + ".engine")
    cache = args.timing_cache or args.out / "timing.cache"
    workspace = args.workspace << 20
    print(trtexec_command(args.source, engine, workspace=workspace, timing_cache=cache, **settings))
    print(f"# then write its card:\n{attach_command(args.source, engine, **settings)}")
    return 0
