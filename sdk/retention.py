"""Retention limits shared by galleries and event files: "older than N days" as a timestamp cutoff."""

from __future__ import annotations

import time

from .errors import InputSpecError

DAY_S = 86400.0


def cutoff(older_than_days: float, now: float | None = None) -> float:
    """Seconds since the epoch before which records are purged.

    Raises:
        InputSpecError: `older_than_days` is not a positive number.
    """
    if (
        isinstance(older_than_days, bool)
        or not isinstance(older_than_days, int | float)
        or not older_than_days > 0  # also NaN
        or older_than_days == float("inf")
    ):
        raise InputSpecError(f"older_than_days must be a positive number of days, got {older_than_days!r}")
    return (time.time() if now is None else now) - DAY_S * float(older_than_days)
