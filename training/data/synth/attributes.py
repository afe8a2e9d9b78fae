"""What a synthetic person's attributes are worth for matching, and which of them embeddings carry.

On a generated set every identity's attributes are known, so a model's failures can be explained
rather than only counted (numpy only):

- `oracle_rank1` is the identity-level Rank-1 of a matcher that reads a chosen set of attributes
  perfectly and guesses among the people who share them: what a model limited to those attributes
  can reach.
- `probe_accuracy` fits a ridge-regression linear probe from embeddings to one attribute: whether the
  embeddings carry it at all, and whether a probe fitted on one modality reads it in the other.

`tools/attribute_probe.py` runs both on a model and a held-out set; docs/results.md reports them
(docs/results-history.md for generator version 1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from vireid.errors import ConfigError

from .person import Coat, Identity, sample_identity

HIDDEN = -1
"""Attribute value of a person on whom it cannot be seen (sleeves under a coat)."""

ATTRIBUTES: dict[str, Callable[[Identity], int]] = {
    "lower": lambda p: int(p.lower),
    "coat": lambda p: int(p.coat),
    "hair": lambda p: int(p.hair),
    "sleeve": lambda p: int(p.sleeve) if p.coat is Coat.NONE else HIDDEN,  # a coat's own sleeves cover it
    "bag": lambda p: int(p.bag),
    "build": lambda p: int(p.build),
    "stature": lambda p: int(p.stature),
    "hat": lambda p: int(p.hat),
    "top_pattern": lambda p: int(p.top.pattern),
    "top_thickness": lambda p: p.top.thickness,  # infrared only: how warm the top looks
}
"""Discrete attributes by name. All but `top_thickness` are seen by both modalities (in principle:
whether a renderer shows them clearly is what the probe measures)."""


def attribute_table(seed: int, pids: Sequence[int], names: Sequence[str]) -> np.ndarray:
    """`[len(pids), len(names)]` int64 attribute values of the identities `pids` of the set `seed`.

    Raises:
        ConfigError: an unknown attribute name (the message lists them).
    """
    unknown = [n for n in names if n not in ATTRIBUTES]
    if unknown:
        raise ConfigError(f"unknown attribute(s) {unknown}; choose from {sorted(ATTRIBUTES)}")
    people = [sample_identity(seed, int(pid)) for pid in pids]
    return np.array([[ATTRIBUTES[n](p) for n in names] for p in people], np.int64).reshape(len(people), -1)


def oracle_rank1(table: np.ndarray) -> float:
    """Expected Rank-1 over identities (rows) of a perfect reader of the table's columns that picks at
    random among the identities sharing a query's values (a hidden value counts as a value)."""
    keys = [tuple(row) for row in np.asarray(table)]
    if not keys:
        return 0.0
    counts = Counter(keys)
    return float(np.mean([1.0 / counts[key] for key in keys]))


def probe_accuracy(
    fit_x: np.ndarray, fit_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, ridge: float = 1.0
) -> float:
    """Accuracy on `test` of a one-vs-rest ridge-regression probe fitted on `fit` (rows whose label is
    `HIDDEN` are left out of both). NaN when either side has no labelled rows."""
    fit_keep, test_keep = fit_y != HIDDEN, test_y != HIDDEN
    if not fit_keep.any() or not test_keep.any():
        return float("nan")
    classes = np.unique(fit_y[fit_keep])
    x = _with_bias(fit_x[fit_keep])
    targets = (fit_y[fit_keep, None] == classes[None, :]).astype(np.float64)
    weights = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ targets)
    predicted = classes[(_with_bias(test_x[test_keep]) @ weights).argmax(1)]
    return float(np.mean(predicted == test_y[test_keep]))


def majority_share(labels: np.ndarray) -> float:
    """Share of the most common visible value: the accuracy of always guessing it."""
    labels = labels[labels != HIDDEN]
    return float(np.bincount(labels - labels.min()).max() / len(labels)) if len(labels) else float("nan")


def _with_bias(x: np.ndarray) -> np.ndarray:
    return np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))])
