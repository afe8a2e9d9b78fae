"""Validation of what callers hand the gallery: vectors, per-row tags, queries.

Vectors are L2-normalised here, on enrolment and on query, so every score is a cosine similarity no
matter how the caller scaled its vectors; zero or non-finite vectors are refused.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..embeddings import normalise_rows
from ..errors import InputSpecError
from ..modality import Modality
from ..text import has_invisible

log = logging.getLogger("vireid.gallery")

T = TypeVar("T")
_SCALARS = (str, bytes, int, float, Path, Modality, np.generic)


@dataclass(frozen=True)
class EmbeddingBatch:
    """Validated rows ready to be stored: unit float32 vectors and one tag of each kind per row."""

    vectors: np.ndarray
    modalities: np.ndarray
    timestamps: np.ndarray
    cameras: tuple[str | None, ...]
    track_ids: tuple[int | None, ...]
    sources: tuple[str | None, ...]

    def __post_init__(self) -> None:
        n = len(self.vectors)
        if self.vectors.dtype != np.float32 or self.vectors.ndim != 2:
            raise InputSpecError(f"batch vectors must be (N, D) float32, got {self.vectors.shape}")
        lengths = {
            len(getattr(self, f)) for f in ("modalities", "timestamps", "cameras", "track_ids", "sources")
        }
        if lengths != {n}:
            raise InputSpecError(f"every per-row field must have {n} items, got lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.vectors)

    def subset(self, rows: np.ndarray) -> EmbeddingBatch:
        """The batch of the given row indices, in that order."""
        picked = rows.tolist()
        return EmbeddingBatch(
            vectors=self.vectors[rows],
            modalities=self.modalities[rows],
            timestamps=self.timestamps[rows],
            cameras=tuple(self.cameras[i] for i in picked),
            track_ids=tuple(self.track_ids[i] for i in picked),
            sources=tuple(self.sources[i] for i in picked),
        )


@dataclass(frozen=True)
class Carried:
    """What an `Embeddings`-like object carries besides its vectors (None where absent)."""

    vectors: Any
    embedding_space: str | None = None
    modalities: Any = None
    cameras: Any = None
    track_ids: Any = None


def split_embeddings(obj: Any) -> Carried:
    """Vectors and tags from a `vireid.Embeddings` (anything with `.vectors`) or a plain array."""
    if not hasattr(obj, "vectors"):
        return Carried(vectors=obj)
    space = getattr(obj, "embedding_space", None)
    return Carried(
        vectors=obj.vectors,
        embedding_space=str(space) if space else None,
        modalities=getattr(obj, "modalities", None),
        cameras=getattr(obj, "camera_ids", None),
        track_ids=getattr(obj, "track_ids", None),
    )


def unit_rows(vectors: Any, dim: int, what: str = "vectors") -> np.ndarray:
    """Validate `(N, dim)` (or one `(dim,)`) floating vectors and return them L2-normalised float32.

    Raises:
        InputSpecError: wrong rank, dtype or dimension, no rows, non-finite values or a zero vector.
    """
    original = np.asarray(vectors)
    array = original[None, :] if original.ndim == 1 else original
    if array.ndim != 2 or array.shape[1] != dim or not np.issubdtype(array.dtype, np.floating):
        raise InputSpecError(
            f"{what} must be (N, {dim}) float32 (the gallery's embedding dimension is {dim}), "
            f"got {original.shape} {original.dtype}; embed with the model the gallery was created for."
        )
    if len(array) == 0:
        raise InputSpecError(f"{what}: got 0 vectors, expected at least one")
    unit, bad = normalise_rows(array)
    if len(bad):
        raise InputSpecError(
            f"{what}: rows {bad[:10].tolist()} are zero or contain NaN/inf; expected finite non-zero "
            "embeddings (check the model output for those crops)"
        )
    return unit


def build_batch(
    vectors: np.ndarray,
    modality: Any,
    *,
    camera: Any = None,
    timestamps: Any = None,
    track_ids: Any = None,
    sources: Any = None,
) -> EmbeddingBatch:
    """Broadcast scalar tags to every row (sequences must have one item per row) and validate them."""
    n = len(vectors)
    modalities = np.array(_per_row(modality, n, "modality", Modality.parse), dtype=np.int8)
    return EmbeddingBatch(
        vectors=vectors,
        modalities=modalities,
        timestamps=_timestamps(timestamps, n),
        cameras=_per_row(camera, n, "camera", parse_camera),
        track_ids=_per_row(track_ids, n, "track_ids", _parse_track_id),
        sources=_per_row(sources, n, "sources", parse_source_label),
    )


def parse_camera(value: Any) -> str | None:
    """A camera label: a non-empty string, or an integer id turned into its decimal string."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, str) and value and not has_invisible(value):
        return value
    raise InputSpecError(
        f"camera must be a non-empty string without control characters, an integer or None, got {value!r}"
    )


def parse_cameras(value: Any) -> tuple[str, ...] | None:
    """A camera filter: None, one camera or a sequence of cameras."""
    if value is None:
        return None
    values = [value] if isinstance(value, _SCALARS) else list(value)
    return tuple(str(parse_camera(v)) for v in values)


def parse_names(value: Iterable[str] | str | None) -> tuple[str, ...] | None:
    """An identity filter: None, one name or a sequence of names."""
    if value is None:
        return None
    names = (value,) if isinstance(value, str) else tuple(value)
    return tuple(lookup_name(name) for name in names)


def check_name(name: Any) -> str:
    """An identity name: a non-empty string without surrounding whitespace or control characters,
    returned in Unicode NFC, so that `José` typed on a keyboard and `José` from a macOS file name (NFD)
    are one identity, not two that print alike."""
    if not isinstance(name, str) or not name or name != name.strip() or has_invisible(name):
        raise InputSpecError(
            f"identity name must be a non-empty string without surrounding spaces or control "
            f"characters, got {name!r}"
        )
    return unicodedata.normalize("NFC", name)


def lookup_name(name: Any) -> str:
    """A name to look an identity up by (remove, rename's old name, filters): any non-empty string, in
    NFC. Looser than `check_name`, so that names stored by older versions stay reachable and erasable."""
    if not isinstance(name, str) or not name:
        raise InputSpecError(f"identity name must be a non-empty string, got {name!r}")
    return unicodedata.normalize("NFC", name)


def check_k(k: Any) -> int:
    """A positive integer number of results."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise InputSpecError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _per_row(value: Any, n: int, name: str, convert: Callable[[Any], T]) -> tuple[T, ...]:
    if value is None or isinstance(value, _SCALARS):
        return (convert(value),) * n
    values = list(value)
    if len(values) != n:
        raise InputSpecError(f"{name}: got {len(values)} values for {n} vectors; pass one value or {n}")
    return tuple(convert(v) for v in values)


def _parse_track_id(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    raise InputSpecError(f"track id must be a non-negative integer or None, got {value!r}")


def parse_source_label(value: Any) -> str | None:
    """A source label (a file name, a URL): a non-empty string or path without control characters
    (they would reach terminals and logs when results are printed)."""
    if value is None:
        return None
    if isinstance(value, (str, Path)) and str(value) and not has_invisible(str(value)):
        return str(value)
    raise InputSpecError(
        f"source must be a non-empty string or path without control characters, or None, got {value!r}"
    )


def _timestamps(value: Any, n: int) -> np.ndarray:
    if value is None:
        return np.full(n, time.time(), dtype=np.float64)
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        value = [value] * n
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.full(0, np.nan)
    if array.shape != (n,) or not np.all(np.isfinite(array)):
        raise InputSpecError(
            f"timestamps must be one finite number or {n} of them (seconds since the epoch, UTC), "
            f"got shape {array.shape}"
        )
    _warn_if_not_epoch_seconds(array)
    return array


_YEAR_2000 = 946_684_800.0


def _warn_if_not_epoch_seconds(timestamps: np.ndarray) -> None:
    """Retention (`purge`) reads timestamps as Unix seconds: milliseconds are never purged, seconds
    into a video are purged at once. Warn, naming the likely mistake (kept: the caller may mean it)."""
    if not len(timestamps):
        return
    latest, earliest = float(timestamps.max()), float(timestamps.min())
    if latest > time.time() + 366 * 86400:
        log.warning(
            "enrol: timestamps up to %.0f lie years ahead: milliseconds? Retention (purge) expects Unix "
            "seconds and would never remove these embeddings",
            latest,
        )
    elif earliest < _YEAR_2000:
        log.warning(
            "enrol: timestamps from %.1f are before the year 2000: seconds into a video? Retention "
            "(purge) expects Unix seconds and removes these embeddings at its first run",
            earliest,
        )
