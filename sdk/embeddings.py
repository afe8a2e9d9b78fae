"""`Embeddings`: the typed result of `Embedder.embed`, one row per crop."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .errors import ArtifactError, InputSpecError
from .modality import Modality

NORM_TOLERANCE = 1e-3
"""How far a row's L2 norm may be from 1 (FP16 models land within ~1e-4)."""


def normalise_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `[N, D]` scaled to unit L2 norm as float32, and the indices of rows that cannot be.

    A row cannot be normalised when it is all zeros or holds NaN/inf. Each row is first divided by its
    largest magnitude, so finite rows whose squared norm would underflow or overflow float32 (values
    near 1e-22 or 1e20) still come out exactly unit length. The returned bad rows hold garbage: callers
    refuse them with an error naming their source.
    """
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise InputSpecError(f"vectors must be (N, D), got {_describe(array)}")
    with np.errstate(all="ignore"):
        norms = np.linalg.norm(array, axis=1)
        plain = (norms > 1e-15) & (norms < 1e15)  # squares far from float32's limits: the usual case
        unit = array / np.where(plain, norms, 1.0)[:, None]
        if not plain.all():  # divide by the largest magnitude first, then normalise
            rest = np.flatnonzero(~plain)
            scale = np.max(np.abs(array[rest]), axis=1, initial=0.0)
            usable = np.isfinite(scale) & (scale > 0)
            scaled = array[rest] / np.where(usable, scale, 1.0)[:, None]
            unit[rest] = scaled / np.linalg.norm(scaled, axis=1)[:, None]
            return unit, rest[~usable]
    return unit, np.zeros(0, np.int64)


def unit_model_output(vectors: np.ndarray, source: object) -> np.ndarray:
    """A model's output rows as exactly unit-length float32 vectors, whatever the model's precision.

    Everything that scores a model's vectors (the embedder, threshold calibration, artifact evaluation)
    goes through this, so what is calibrated and evaluated is what the runtime compares.

    Raises:
        ArtifactError: a row is zero or non-finite; names `source` (the artifact) and the rows.
    """
    unit, bad = normalise_rows(vectors)
    if len(bad):
        raise ArtifactError(
            f"{source}: the model returned zero or non-finite embeddings for items {bad[:10].tolist()}; "
            "with an FP16/INT8 artifact this is usually an overflow in the L2-normalisation tail: keep "
            "it in FP32 when exporting, or use the FP32 model"
        )
    return unit


def _describe(array: Any) -> str:
    return f"{array.shape} {array.dtype}" if isinstance(array, np.ndarray) else type(array).__name__


@dataclass(frozen=True, eq=False)
class Embeddings:
    """L2-normalised embedding vectors with their modality and optional camera / track tags.

    Cosine similarity between two rows is their dot product: `a.vectors @ b.vectors.T`.

    Attributes:
        vectors: float32 `[N, D]`, every row of unit L2 norm.
        modalities: int8 `[N]`, `Modality` values (0 visible, 1 infrared). Lists of `Modality`/ints/words
            are converted; one value is broadcast to every row.
        camera_ids: optional `[N]` camera ids (integers or strings) the crops came from.
        track_ids: optional int64 `[N]` tracker ids.
        embedding_space: fingerprint of the model that produced the vectors
            (`ModelCard.embedding_space()`); vectors of different spaces must never be compared.

    Raises:
        InputSpecError: (in `__post_init__`) a field has the wrong shape/dtype/values; the message states
            expected vs actual.
    """

    vectors: np.ndarray
    modalities: np.ndarray
    camera_ids: np.ndarray | None = None
    track_ids: np.ndarray | None = None
    embedding_space: str | None = None

    def __post_init__(self) -> None:
        vectors = self.vectors
        if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32 or vectors.ndim != 2:
            raise InputSpecError(f"vectors must be (N, D) float32, got {_describe(vectors)}")
        n = len(vectors)
        set_ = object.__setattr__
        set_(self, "modalities", _modalities(self.modalities, n))
        set_(self, "camera_ids", _tags(self.camera_ids, n, "camera_ids", integer_only=False))
        set_(self, "track_ids", _tags(self.track_ids, n, "track_ids", integer_only=True))
        _check_unit(vectors)

    # ----- container protocol -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        """Embedding dimension `D`."""
        return int(self.vectors.shape[1])

    def __getitem__(self, index: Any) -> Embeddings:
        """Rows selected by a boolean mask, an index array, a slice or one integer (kept 2-D)."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        if isinstance(index, np.ndarray) and index.dtype == bool and index.shape != (len(self),):
            raise InputSpecError(f"boolean mask must have shape ({len(self)},), got {index.shape}")
        return replace(
            self,
            vectors=self.vectors[index],
            modalities=self.modalities[index],
            camera_ids=_take(self.camera_ids, index),
            track_ids=_take(self.track_ids, index),
        )

    def __repr__(self) -> str:
        counts = {str(m): int(np.sum(self.modalities == m)) for m in Modality}
        return f"Embeddings(n={len(self)}, dim={self.dim}, {counts}, space={self.embedding_space!r})"

    def with_modality(self, modality: Modality | str | int) -> Embeddings:
        """Only the rows of one modality."""
        return self[self.modalities == int(Modality.parse(modality))]

    @classmethod
    def concat(cls, items: Iterable[Embeddings]) -> Embeddings:
        """Join embeddings of the same space and dimension row-wise.

        Raises:
            InputSpecError: nothing to join, different dimensions or embedding spaces, or tags present
                in some items only.
        """
        items = list(items)
        if not items:
            raise InputSpecError("concat needs at least one Embeddings, got none")
        dims = {e.dim for e in items}
        spaces = {e.embedding_space for e in items}
        if len(dims) != 1 or len(spaces) != 1:
            raise InputSpecError(
                f"can only concat embeddings of one model: got dims {sorted(dims)}, "
                f"embedding spaces {sorted(map(str, spaces))}"
            )
        return cls(
            vectors=np.concatenate([e.vectors for e in items]),
            modalities=np.concatenate([e.modalities for e in items]),
            camera_ids=_join_tags([e.camera_ids for e in items], "camera_ids"),
            track_ids=_join_tags([e.track_ids for e in items], "track_ids"),
            embedding_space=items[0].embedding_space,
        )


def _take(array: np.ndarray | None, index: Any) -> np.ndarray | None:
    return None if array is None else array[index]


def _modalities(value: Any, n: int) -> np.ndarray:
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu":
        array = value  # checked in its own dtype, narrowed at the end: 257 must not wrap to 1
    else:
        single = isinstance(value, (str, int, np.integer, Modality))
        values = [value] * n if single else list(value)
        array = np.array([int(Modality.parse(v)) for v in values], dtype=np.int8)
    if array.shape != (n,):
        raise InputSpecError(f"modalities must be ({n},) int8 (one per vector), got {_describe(array)}")
    bad = np.flatnonzero((array != Modality.VISIBLE) & (array != Modality.INFRARED))
    if len(bad):
        raise InputSpecError(
            f"modalities must be 0 (visible) or 1 (infrared), got {array[bad[:5]].tolist()} at rows "
            f"{bad[:5].tolist()}"
        )
    return array.astype(np.int8, copy=False)


def _tags(value: Any, n: int, name: str, integer_only: bool) -> np.ndarray | None:
    if value is None:
        return None
    array = np.asarray(value)
    if array.ndim == 0:
        array = np.full(n, array.item())
    kinds = "iu" if integer_only else "iuUO"
    if array.shape != (n,) or array.dtype.kind not in kinds:
        expected = "int64" if integer_only else "integers or strings"
        raise InputSpecError(f"{name} must be ({n},) {expected} (one per vector), got {_describe(array)}")
    if integer_only and array.dtype.kind == "u" and n and int(array.max()) > np.iinfo(np.int64).max:
        raise InputSpecError(f"{name} must fit in int64 (below 2**63), got {int(array.max())}")
    return array.astype(np.int64) if integer_only else array


def _join_tags(values: Sequence[np.ndarray | None], name: str) -> np.ndarray | None:
    present = [v is not None for v in values]
    if not any(present):
        return None
    if not all(present):
        raise InputSpecError(f"concat: {name} are set on some Embeddings only; set them on all or none")
    return np.concatenate(values)  # type: ignore[arg-type]


def _check_unit(vectors: np.ndarray) -> None:
    if not len(vectors):
        return
    norms = np.linalg.norm(vectors, axis=1)
    bad = np.flatnonzero(~(np.abs(norms - 1.0) <= NORM_TOLERANCE))
    if len(bad):
        raise InputSpecError(
            f"vectors must be L2-normalised (row norms 1 ± {NORM_TOLERANCE}), got norms "
            f"{[round(float(x), 4) for x in norms[bad[:5]]]} at rows {bad[:5].tolist()}"
        )
