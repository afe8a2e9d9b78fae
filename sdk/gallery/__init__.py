"""The persistent gallery: enrolled identities in SQLite, searched in memory.

`Gallery` is the entry point; `Match`, `IdentityInfo`, `IdentityEmbeddings` and `GalleryInfo` are the
typed results. The storage format is described in `schema.py` and `transfer.py`, and in docs/gallery.md.
"""

from __future__ import annotations

from .gallery import BACKENDS, Gallery
from .schema import SCHEMA_VERSION, GalleryMeta
from .types import GalleryInfo, IdentityEmbeddings, IdentityInfo, IdentityScore, Match

__all__ = [
    "BACKENDS",
    "SCHEMA_VERSION",
    "Gallery",
    "GalleryInfo",
    "GalleryMeta",
    "IdentityEmbeddings",
    "IdentityInfo",
    "IdentityScore",
    "Match",
]
