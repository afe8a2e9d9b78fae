"""argparse `type=` converters shared by the commands: a bad number is a usage error naming the option
(`argument --threads: must be a positive integer, got 0`) before any work starts."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1] (a probability or a detector confidence)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value


def output_file(text: str) -> Path:
    """A path to write a file to: anything but an existing folder (checked before the work, so a
    long run does not end by failing to save its result)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file path, e.g. {path / 'out.json'}")
    return path


def rate(text: str) -> float:
    """A rate strictly between 0 and 1 (e.g. a false-match rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1 (exclusive), got {text}")
    return value


def cosine(text: str) -> float:
    """A cosine similarity in [-1, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a cosine in [-1, 1], got {text!r}") from None
    if not -1.0 <= value <= 1.0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a cosine in [-1, 1], got {text}")
    return value
