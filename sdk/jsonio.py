"""Strict JSON for everything vireid writes: a NaN or an infinity becomes `null`.

Python's `json` writes `NaN` and `Infinity` by default, which no other JSON parser accepts (`jq`, a
browser, a log shipper would reject the whole file or line). A non-finite number in a report or an event
means "not measured" or "broken", and `null` says that in valid JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def finite_or_null(value: Any) -> Any:
    """`value` with every non-finite float (Python or numpy), nested in dicts/lists/tuples/arrays, as
    None; numpy scalars and arrays become Python numbers and lists. Anything else is returned as is."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return finite_or_null(value.tolist())
    if isinstance(value, Mapping):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` of `finite_or_null(value)` that can never write `NaN` or `Infinity` (what a
    `default=` hook returns is cleaned the same way)."""
    hook = kwargs.pop("default", None)
    if hook is not None:
        kwargs["default"] = lambda item: finite_or_null(hook(item))
    return json.dumps(finite_or_null(value), allow_nan=False, **kwargs)
