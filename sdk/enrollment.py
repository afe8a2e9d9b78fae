"""Enrolling people from crop image files: collect, read, embed, store, in one call.

`enroll_images(gallery, embedder, "alice", ["crops/alice/"], "visible")` is what `vireid gallery enroll`
does, as a library call: image files and folders of them are read (unreadable files are either an error
that lists them, with nothing written, or skipped and reported), embedded in batches with a progress
bar, and stored in one transaction. `replace=True` re-enrols: the identity's old embeddings are removed
in the same transaction that stores the new ones, so a crash or a bad batch never leaves the identity
half-replaced or empty.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .embedder import Embedder
from .errors import InputSpecError
from .gallery import Gallery
from .imageio import has_colour, read_image
from .modality import Modality
from .progress import progress

log = logging.getLogger("vireid")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
SHOWN_PROBLEMS = 20


@dataclass(frozen=True, eq=False)  # numpy fields: == would be ambiguous
class EnrollReport:
    """What `enroll_images` stored.

    Attributes:
        name: the identity.
        ids: the new embedding ids, one per image used.
        used: the image files that were embedded, in order.
        skipped: `(file, problem)` of unreadable images left out (only with `skip_bad`).
    """

    name: str
    ids: np.ndarray
    used: tuple[Path, ...]
    skipped: tuple[tuple[Path, str], ...] = field(default=())


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given plus the image files directly inside given folders (sorted).

    Raises:
        InputSpecError: an input does not exist, or nothing was found.
    """
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.exists():
            files.append(item)
        else:
            raise InputSpecError(f"{item}: no such file or folder; expected crop images or folders of them")
    if not files:
        suffixes = ", ".join(IMAGE_SUFFIXES)
        nested = [str(d) for i in map(Path, inputs) if i.is_dir() for d in sorted(i.iterdir()) if d.is_dir()]
        hint = f"; it holds folders ({', '.join(nested[:3])}...): give one person's folder" if nested else ""
        raise InputSpecError(
            f"no images found in {', '.join(map(str, inputs))}; expected files ending in {suffixes}{hint}"
        )
    return files


def embed_files(
    embedder: Any, files: Sequence[Path], modality: Any, batch: int = 32, skip_bad: bool = False
) -> tuple[np.ndarray, list[Path], list[tuple[Path, str]]]:
    """Read and embed images batch by batch, with a progress bar.

    Returns:
        `(vectors [M, D], files embedded, (file, problem) of unreadable ones)`.

    Raises:
        InputSpecError: some images are unreadable and `skip_bad` is false (lists them); nothing is kept.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputSpecError(f"batch must be a positive integer, got {batch!r}")
    chunks = [files[i : i + batch] for i in range(0, len(files), batch)]
    vectors, used, bad = [], [], []
    coloured = 0
    for chunk in progress(chunks, desc="embedding", total=len(chunks)):
        images = []
        for path in chunk:
            try:
                images.append(read_image(path))
                used.append(path)
            except InputSpecError as exc:
                bad.append((path, str(exc)))
        coloured += sum(has_colour(image) for image in images)
        if images and (skip_bad or not bad):
            vectors.append(np.asarray(embedder.embed(images, modality).vectors, dtype=np.float32))
    if bad and not skip_bad:
        raise InputSpecError(
            f"{len(bad)} images cannot be read (nothing was written):\n{describe_problems(bad)}\n"
            "Fix or remove them, or skip them (skip_bad=True / --skip-bad)."
        )
    _check_modality(Modality.parse(modality), coloured, len(used))
    return (np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32)), used, bad


def _check_modality(modality: Modality, coloured: int, total: int) -> None:
    """Warn when the crops contradict their stated modality: most likely a wrong --modality."""
    if not total:
        return
    if modality is Modality.INFRARED and coloured > total / 2:
        log.warning(
            "%d of %d crops given as infrared are in colour: are they visible-camera crops? "
            "(a wrong modality sends them through the wrong stem)",
            coloured,
            total,
        )
    if modality is Modality.VISIBLE and coloured == 0 and total >= 3:
        log.warning(
            "all %d crops given as visible are grey: infrared crops? (fine for a visible camera at night)",
            total,
        )


def describe_problems(bad: Sequence[tuple[Path, str]]) -> str:
    """The first `SHOWN_PROBLEMS` problems, one per line, and how many more there are."""
    listing = "\n".join(f"  {problem}" for _, problem in bad[:SHOWN_PROBLEMS])
    more = f"\n  ... and {len(bad) - SHOWN_PROBLEMS} more" if len(bad) > SHOWN_PROBLEMS else ""
    return listing + more


def enroll_images(
    gallery: Gallery,
    embedder: Embedder,
    name: str,
    inputs: str | Path | Sequence[str | Path],
    modality: Modality | str,
    *,
    camera: str | int | None = None,
    metadata: Mapping[str, Any] | None = None,
    replace: bool = False,
    skip_bad: bool = False,
    batch: int = 32,
) -> EnrollReport:
    """Embed crop images (files or folders of them) with `embedder` and enrol them under `name`.

    Args:
        gallery: an open `vireid.Gallery` whose embedding space is the embedder's.
        embedder: a `vireid.Embedder`.
        name: identity to add to (created when new).
        inputs: an image file or folder, or several (a folder's image files, sorted, not recursive).
        modality: modality of every image (`visible`, `infrared`, or an alias).
        camera: camera label stored with every embedding.
        metadata: identity metadata; replaces the stored metadata when given.
        replace: remove the identity's existing embeddings in the same transaction (re-enrolment).
        skip_bad: leave unreadable images out (reported in `skipped`) instead of raising.
        batch: images per embedding call.

    Raises:
        InputSpecError: missing inputs, unreadable images (without `skip_bad`), none readable.
        GalleryError: the embedder's model is not the gallery's (different embedding space).
    """
    modality = Modality.parse(modality)
    gallery.check_embedding_space(str(embedder.embedding_space))  # before any embedding work
    files = collect_images([inputs] if isinstance(inputs, str | Path) else inputs)  # not its characters
    vectors, used, bad = embed_files(embedder, files, modality, batch, skip_bad)
    if not used:
        raise InputSpecError(f"none of the {len(files)} images could be read; nothing was enrolled")
    ids = gallery.enroll(
        name,
        vectors,
        modality,
        camera=camera,
        sources=[str(p) for p in used],
        metadata=metadata,
        embedding_space=str(embedder.embedding_space),
        replace=replace,
    )
    return EnrollReport(name, ids, tuple(used), tuple(bad))


__all__ = [
    "IMAGE_SUFFIXES",
    "EnrollReport",
    "collect_images",
    "describe_problems",
    "embed_files",
    "enroll_images",
]
