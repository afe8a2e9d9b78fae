"""Typed results of gallery queries: matches, identity summaries, an identity's stored embeddings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from ..choices import InputChoice
from ..errors import InputSpecError
from ..modality import Modality

_SCORE_SLACK = 1e-3  # float32 dot products of unit vectors may stray just past ±1


class IdentityScore(InputChoice):
    """How `search_identities` scores an identity from its stored embeddings.

    `max`: the best cosine over its embeddings. `centroid`: the cosine to the unit mean of its
    embeddings (those passing the filters). The mean averages away what single images add (pose,
    occlusion, noise), and one lucky impostor image among many no longer decides; measured on the
    demo model with 4-image infrared queries: cross-modal true-match rate at a false-match rate of 1e-3
    0.23 with `max` and 0.30 with `centroid` (docs/gallery.md). For single-image queries `max` ranked
    better there (R1 62.2 against 60.0), hence the default.
    """

    MAX = "max"
    CENTROID = "centroid"

    @classmethod
    def label(cls) -> str:
        return "identity score"


@dataclass(frozen=True)
class Match:
    """One gallery embedding that matched a query.

    Attributes:
        identity: name of the enrolled identity.
        score: cosine similarity in [-1, 1] (higher is closer).
        embedding_id: id of the matching stored embedding (stable for the gallery's lifetime).
        modality: modality of the matching embedding.
        camera: camera the embedding was taken by, or None when not recorded.
    """

    identity: str
    score: float
    embedding_id: int
    modality: Modality
    camera: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "modality", Modality.parse(self.modality))
        object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "embedding_id", int(self.embedding_id))
        if not isinstance(self.identity, str) or not self.identity:
            raise InputSpecError(f"Match.identity must be a non-empty string, got {self.identity!r}")
        if not math.isfinite(self.score) or abs(self.score) > 1.0 + _SCORE_SLACK:
            raise InputSpecError(f"Match.score must be a cosine in [-1, 1], got {self.score}")
        if self.embedding_id < 1:
            raise InputSpecError(f"Match.embedding_id must be a positive id, got {self.embedding_id}")


@dataclass(frozen=True)
class IdentityInfo:
    """Summary of one enrolled identity.

    Attributes:
        name: unique name.
        metadata: the JSON object stored with the identity (read-only view).
        counts: number of stored embeddings per modality (every modality is a key).
        created_at: enrolment time of the identity, seconds since the epoch (UTC).
    """

    name: str
    metadata: Mapping[str, Any]
    counts: Mapping[Modality, int]
    created_at: float

    def __post_init__(self) -> None:
        counts = {m: int(self.counts.get(m, 0)) for m in Modality}
        if any(v < 0 for v in counts.values()):
            raise InputSpecError(f"IdentityInfo.counts must be non-negative, got {counts}")
        object.__setattr__(self, "counts", MappingProxyType(counts))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @property
    def num_embeddings(self) -> int:
        """Embeddings of every modality together."""
        return sum(self.counts.values())


@dataclass(frozen=True)
class GalleryInfo:
    """What a gallery file holds and what it is bound to.

    Attributes:
        path: the database file.
        embedding_space: fingerprint of the model whose vectors it holds.
        dim: embedding dimension.
        schema_version: schema version of the file.
        created_at: creation time, seconds since the epoch (UTC).
        vireid_version: vireid version that created it.
        num_identities: enrolled identities.
        num_embeddings: stored embeddings.
    """

    path: str
    embedding_space: str
    dim: int
    schema_version: int
    created_at: float
    vireid_version: str
    num_identities: int
    num_embeddings: int


@dataclass(frozen=True, eq=False)  # numpy fields: == would be ambiguous
class IdentityEmbeddings:
    """The stored embeddings of one identity, row-aligned numpy fields.

    Attributes:
        name: identity name.
        ids: int64 `[N]` embedding ids.
        vectors: float32 `[N, D]` L2-normalised vectors.
        modalities: int8 `[N]` (`Modality` values).
        timestamps: float64 `[N]` seconds since the epoch (UTC).
        cameras: `N` camera labels (None where not recorded).
        track_ids: `N` track ids (None where not recorded).
        sources: `N` source labels such as a file path (None where not recorded).
    """

    name: str
    ids: np.ndarray
    vectors: np.ndarray
    modalities: np.ndarray
    timestamps: np.ndarray
    cameras: tuple[str | None, ...] = field(default=())
    track_ids: tuple[int | None, ...] = field(default=())
    sources: tuple[str | None, ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.ids)
        dim = (
            self.vectors.shape[-1] if isinstance(self.vectors, np.ndarray) and self.vectors.ndim == 2 else -1
        )
        checks = {
            "ids": (self.ids, np.int64, (n,)),
            "vectors": (self.vectors, np.float32, (n, dim)),
            "modalities": (self.modalities, np.int8, (n,)),
            "timestamps": (self.timestamps, np.float64, (n,)),
        }
        for name, (array, dtype, shape) in checks.items():
            if not isinstance(array, np.ndarray) or array.dtype != dtype or array.shape != shape:
                got = f"{getattr(array, 'shape', '?')} {getattr(array, 'dtype', type(array).__name__)}"
                raise InputSpecError(
                    f"IdentityEmbeddings.{name} must be {shape} {np.dtype(dtype)}, got {got}"
                )
        for name in ("cameras", "track_ids", "sources"):
            if len(getattr(self, name)) != n:
                raise InputSpecError(
                    f"IdentityEmbeddings.{name} must have {n} items, got {len(getattr(self, name))}"
                )

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, mask: np.ndarray) -> IdentityEmbeddings:
        """The rows where a boolean mask of length N is true."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(self),):
            raise InputSpecError(f"mask must be ({len(self)},) bool, got {mask.shape}")
        keep = np.flatnonzero(mask)
        return IdentityEmbeddings(
            name=self.name,
            ids=self.ids[keep],
            vectors=self.vectors[keep],
            modalities=self.modalities[keep],
            timestamps=self.timestamps[keep],
            cameras=tuple(self.cameras[i] for i in keep),
            track_ids=tuple(self.track_ids[i] for i in keep),
            sources=tuple(self.sources[i] for i in keep),
        )
