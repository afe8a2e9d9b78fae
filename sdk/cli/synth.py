"""Render synthetic visible-infrared data: a SYSU-MM01 or RegDB folder, or a two-camera video scene.

Identity lives in what both modalities see (build, clothing cut, textures, fabric thickness,
accessories, hair); colour helps only within the visible modality. Output is deterministic for a seed,
whatever the number of worker processes. A folder already holding the same dataset is reused; one
holding anything else is refused unless --overwrite is given. Needs numpy and OpenCV only.

`vireid synth baselines --data DIR` scores the untrained colour-histogram and raw-pixel matchers on a
SYSU-style folder, across modalities and within the visible one.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .. import jsonio
from .argtypes import _number, non_negative_int, positive_float, positive_int, seed, subcommand

difficulty = _number(float, lambda v: 0.0 <= v <= 3.0, "a difficulty from 0 to 3")

# Defaults shown in --help; the values themselves live in vireid.training.data.synth.config (a test
# checks the two agree), so that building the parser imports nothing from vireid.training.
HELP_DEFAULTS: dict[str, dict[str, int | float | str]] = {
    "sysu": {"ids": 300, "images_per_camera": 8, "test_ids": "96 (a third when --ids < 240)"},
    "regdb": {"ids": 412, "images_per_modality": 10},
    "scene": {"seconds": 60.0, "people": 8, "fps": 15, "size": "640x480"},
}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--seed", type=seed, default=None, help="master seed (default 0)")
    parser.add_argument(
        "--difficulty",
        type=difficulty,
        default=None,
        help="nuisance scale: 0 easy (front/back views, no occlusion, clean sensors) .. 3; default 1",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace what the folder holds")
    parser.add_argument(
        "--workers", type=positive_int, default=None, help="processes (default: available CPUs, at most 8)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vireid synth {sysu,regdb,scene}`."""
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    sysu, regdb, scene = HELP_DEFAULTS["sysu"], HELP_DEFAULTS["regdb"], HELP_DEFAULTS["scene"]
    text = "SYSU-MM01 layout: cam1..cam6/PID/N.jpg and exp/*_id.txt"
    p = subcommand(sub, parser, "sysu", text, description=f"Generate a synthetic dataset in the {text}.")
    _common(p)
    p.add_argument("--ids", type=positive_int, default=None, help=f"identities (default {sysu['ids']})")
    p.add_argument(
        "--images-per-camera", type=positive_int, default=None, help=f"default {sysu['images_per_camera']}"
    )
    p.add_argument(
        "--test-ids", type=positive_int, default=None, help=f"test identities (default {sysu['test_ids']})"
    )
    p.add_argument(
        "--val-ids",
        type=non_negative_int,
        default=None,
        help="validation identities (default ~10%% of the rest)",
    )
    text = "RegDB layout: Visible/, Thermal/ and idx/ with 10 splits"
    p = subcommand(sub, parser, "regdb", text, description=f"Generate a synthetic dataset in the {text}.")
    _common(p)
    p.add_argument("--ids", type=positive_int, default=None, help=f"identities (default {regdb['ids']})")
    p.add_argument(
        "--images-per-modality",
        type=positive_int,
        default=None,
        help=f"default {regdb['images_per_modality']}",
    )
    text = "visible.mp4 + infrared.mp4 of people walking by, with gt.json"
    p = subcommand(sub, parser, "scene", text, description=f"Generate a two-camera scene: {text}.")
    _common(p)
    p.add_argument(
        "--seconds", type=positive_float, default=None, help=f"video length (default {scene['seconds']:g})"
    )
    p.add_argument(
        "--people", type=positive_int, default=None, help=f"identities (default {scene['people']})"
    )
    p.add_argument(
        "--fps", type=positive_int, default=None, help=f"frames per second (default {scene['fps']})"
    )
    p.add_argument("--size", default=None, metavar="WxH", help=f"frame size (default {scene['size']})")
    p.add_argument(
        "--thermal16",
        action="store_const",
        const=True,
        default=None,
        help="also write 16-bit radiometric infrared frames, infrared16/%%06d.png (centi-Kelvin, 15..40 °C)",
    )
    text = "score colour-histogram and raw-pixel matchers on a SYSU-style folder"
    p = subcommand(sub, parser, "baselines", text, description=f"Baselines: {text} (no training).")
    p.add_argument("--data", required=True, help="SYSU-MM01-layout folder (e.g. from `vireid synth sysu`)")
    p.add_argument("--trials", type=positive_int, default=10, help="gallery draws to average (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _size(text: str) -> dict[str, int]:
    from vireid.errors import ConfigError

    width, sep, height = text.lower().partition("x")
    try:
        if not sep:
            raise ValueError
        return {"width": int(width), "height": int(height)}
    except ValueError:
        raise ConfigError(f"--size must look like 640x480 (width x height), got {text!r}") from None


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Options the user gave (None means: the generator's default)."""
    names = {
        "sysu": ("seed", "difficulty", "ids", "images_per_camera", "test_ids", "val_ids"),
        "regdb": ("seed", "difficulty", "ids", "images_per_modality"),
        "scene": ("seed", "difficulty", "seconds", "people", "fps", "thermal16"),
    }[args.kind]
    values = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.kind == "scene" and args.size is not None:
        values.update(_size(args.size))
    return values


def _in_flag_terms(message: str, fields: list[str]) -> str:
    """The generator's message about a setting, naming the command-line flag that sets it."""
    for field in fields:
        if message.startswith(f"{field} "):
            flag = "--size" if field in ("width", "height") else "--" + field.replace("_", "-")
            return f"{flag}: {message}" if flag == "--size" else flag + message[len(field) :]
    return message


def _baselines(args: argparse.Namespace) -> int:

    from vireid.training.data.synth.baselines import baseline_report

    report = baseline_report(args.data, trials=args.trials)
    print(jsonio.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0


def run(args: argparse.Namespace) -> int:
    """Generate the data and print where it is (or, for `baselines`, print the matchers' scores)."""
    if args.kind == "baselines":
        return _baselines(args)
    from vireid.errors import ConfigError
    from vireid.training.data import synth

    start = time.monotonic()
    settings = _settings(args)
    try:
        result = synth.generate(
            args.kind,
            args.out,
            workers=args.workers,
            overwrite=args.overwrite,
            show_progress=not args.quiet,
            **settings,
        )
    except ConfigError as exc:
        raise ConfigError(_in_flag_terms(str(exc), [*settings, "workers"])) from None
    if result.reused:
        print(f"{result.root}: already holds this dataset ({result.files} files); nothing to do")
    else:
        print(f"wrote {result.files} files to {result.root} in {time.monotonic() - start:.1f} s")
    if args.kind == "sysu":
        val = synth.SysuConfig(**settings).val_ids
        if val is not None and val < 2:
            print(
                f"note: {val} validation identity: threshold calibration (`vireid export --calibrate`) "
                "needs at least 2; pass --val-ids 5 or more if you will calibrate on this set",
                file=sys.stderr,
            )
    return 0
