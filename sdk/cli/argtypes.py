"""argparse `type=` converters shared by the commands: a bad number is a usage error naming the option
(`argument --threads: must be a positive integer, got 0`) before any work starts."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import jsonio


def _number(
    parse: Callable[[str], Any], accept: Callable[[Any], bool], expected: str
) -> Callable[[str], Any]:
    """A converter: `parse` the text, then `accept` the value (NaN fails every range check)."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text}")
        return value

    return convert


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
seed = _number(int, lambda v: 0 <= v < 2**32, "a seed in [0, 2**32)")
at_least_two = _number(int, lambda v: v >= 2, "an integer >= 2")
positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
unit_interval = _number(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
non_negative_float = _number(float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0")
rate = _number(float, lambda v: 0.0 < v < 1.0, "a number between 0 and 1 (exclusive)")
cosine = _number(float, lambda v: -1.0 <= v <= 1.0, "a cosine in [-1, 1]")


REPORT_KEY = "vireid_report"
"""The key every `--json` report carries (the command that wrote it): only such a file is replaced."""


def _writable_place(path: Path, example: str) -> Path:
    """`path` unless it is a folder, a link or a special file (a FIFO, a device: the result is written
    to a temporary file renamed over it, which would replace the link or the node), lies under a file,
    or its folder cannot be written. Checked before the work, so a long run does not end by failing
    to save its result."""
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file path, e.g. {path / example}")
    if path.is_symlink():
        raise argparse.ArgumentTypeError(f"{path} is a symbolic link; give the real path, {path.resolve()}")
    if path.exists() and not path.is_file():
        raise argparse.ArgumentTypeError(
            f"{path} is not a regular file (a FIFO, a device?); give a file path"
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise argparse.ArgumentTypeError(f"{path}: the folder {parent} is not writable")
            break
    return path


def output_file(text: str) -> Path:
    """A JSON report to write: not a folder, and an existing file only if it is an earlier vireid report
    (a rerun replaces its own report; a checkpoint's JSON half, a dataset's meta.json or a model card
    given by mistake is refused, not destroyed)."""
    path = _writable_place(Path(text), "out.json")
    if path.is_file() and path.stat().st_size and not _is_report(path):
        raise argparse.ArgumentTypeError(
            f"{path} exists and is not a vireid --json report (a checkpoint's or dataset's JSON, a model "
            "card, a gallery?); it is not overwritten: give another path, or delete it first"
        )
    return path


def write_report(path: Path, payload: dict[str, Any], command: str) -> Path:
    """Write a `--json` report atomically, marked as one (`REPORT_KEY`) so a rerun may replace it."""
    from ..atomic import write_atomic

    marked = {REPORT_KEY: command, **payload}
    return write_atomic(path, jsonio.dumps(marked, indent=2, default=str) + "\n")


def output_png(text: str) -> Path:
    """A PNG chart to write: not a folder, and an existing file only if it is a PNG."""
    path = _writable_place(Path(text), "chart.png")
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as handle:
            if handle.read(8) != b"\x89PNG\r\n\x1a\n":
                raise argparse.ArgumentTypeError(
                    f"{path} exists and is not a PNG image; it is not overwritten: give another path"
                )
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"{path}: charts are PNG files; give a path ending in .png")
    return path


def _is_report(path: Path, limit: int = 64 << 20) -> bool:
    if path.stat().st_size > limit:
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and REPORT_KEY in data


def csv_of(convert: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    """A comma-separated list whose items each pass `convert` (`1,8,32`)."""

    def parse(text: str) -> tuple[Any, ...]:
        items = tuple(convert(v.strip()) for v in text.split(",") if v.strip())
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return items

    return parse


def one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    """A converter accepting one of `choices` (for `csv_of`: each item of a list), listing them on a miss."""

    def convert(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return convert


def modality_arg(text: str) -> Any:
    """A `Modality` from a user's word (`rgb`, `ir`, `thermal`, ...); a miss lists the accepted words."""
    from ..errors import InputSpecError
    from ..modality import Modality

    try:
        return Modality.parse(text)
    except InputSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def subcommand(sub: Any, parent: argparse.ArgumentParser, name: str, text: str, **kwargs: Any) -> Any:
    """`sub.add_parser(name)` with `text` as its one-line help and its `--help` description, and the
    parent command's help formatter (argparse does not pass it down)."""
    description = kwargs.pop("description", text[:1].upper() + text[1:] + ".")
    return sub.add_parser(
        name, help=text, description=description, formatter_class=parent.formatter_class, **kwargs
    )
