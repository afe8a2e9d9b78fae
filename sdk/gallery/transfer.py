"""Export a gallery to one `.npz` file and import it back.

The file holds plain arrays only (numbers and fixed-width strings, never objects) and a JSON manifest
stored as a uint8 array under `manifest`:

| member      | dtype / shape   | meaning                                                  |
|-------------|-----------------|----------------------------------------------------------|
| `manifest`  | uint8 `[B]`     | UTF-8 JSON: format, embedding space, dim, identities      |
| `vectors`   | float32 `[N,D]` | unit vectors                                             |
| `identity`  | int64 `[N]`     | index into `manifest["identities"]`                      |
| `modality`  | int8 `[N]`      | 0 visible, 1 infrared                                    |
| `timestamp` | float64 `[N]`   | seconds since the epoch (UTC)                            |
| `track_id`  | int64 `[N]`     | tracker id, -1 when not recorded                         |
| `camera`    | str `[N]`       | camera label, "" when not recorded                       |
| `source`    | str `[N]`       | source label, "" when not recorded                       |

Import first reads the manifest's `format_version` and refuses an export of a newer format with
"upgrade vireid" (a newer format may add members); then it loads with `allow_pickle=False`, refuses
members it does not know (and any member name that looks like a path, such as `../x.npy`), a different
embedding space or dimension, and malformed arrays, before anything is written; then the whole import
is one transaction.
"""

from __future__ import annotations

import json
import math
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..atomic import atomic_file
from ..errors import GalleryError, InputSpecError
from .inputs import EmbeddingBatch, check_name, unit_rows
from .store import GalleryStore

FORMAT = "vireid-gallery"
FORMAT_VERSION = 1
ARRAYS = {
    "vectors": np.float32,
    "identity": np.int64,
    "modality": np.int8,
    "timestamp": np.float64,
    "track_id": np.int64,
    "camera": np.str_,
    "source": np.str_,
}
MEMBERS = {"manifest", *ARRAYS}
CONFLICT_POLICIES = {"error": "error", "merge": "merge", "skip": "skip"}
_MEMBER_NAME = re.compile(r"[a-z_]+\.npy")  # fullmatch: `$` would accept a final newline


def export_npz(store: GalleryStore, path: Path) -> Path:
    """Write the whole gallery (one consistent snapshot) to `path`, atomically."""
    arrays, identities = _snapshot_arrays(store)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "embedding_space": store.meta.embedding_space,
        "dim": store.meta.dim,
        "vireid_version": __version__,
        "exported_at": time.time(),
        "identities": identities,
    }
    arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode("utf-8"), dtype=np.uint8)
    try:
        # owner-only from the first byte: the export holds the same biometric data as the gallery
        with atomic_file(path, "wb", private=True) as fh:
            # mypy matches **arrays against savez's `allow_pickle: bool` (numpy >= 2.1 stubs); the keys are
            # the member names above, never `allow_pickle`
            np.savez(fh, **arrays)  # type: ignore[arg-type]
    except OSError as exc:
        raise GalleryError(
            f"{path}: cannot write the export ({exc}); check the folder exists and is writable"
        ) from exc
    return path


def _snapshot_arrays(store: GalleryStore) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    with store.snapshot() as conn:
        identity_rows = store.identity_rows(conn)
        columns = store.row_columns(conn)
        details = store.row_details(conn)
        vectors = np.empty((len(columns.ids), store.meta.dim), dtype=np.float32)
        store.read_vectors(conn, columns.ids, vectors)
    position = {row[0]: i for i, row in enumerate(identity_rows)}
    identities = [{"name": r[1], "metadata": json.loads(r[2]), "created_at": r[3]} for r in identity_rows]
    arrays: dict[str, np.ndarray] = {
        "vectors": vectors,
        "identity": np.array([position[i] for i in columns.identity_ids.tolist()], dtype=np.int64),
        "modality": columns.modalities,
        "timestamp": np.array([d[0] for d in details], dtype=np.float64),
        "track_id": np.array([-1 if d[1] is None else d[1] for d in details], dtype=np.int64),
        "camera": np.array([c or "" for c in columns.cameras], dtype=np.str_),
        "source": np.array([d[2] or "" for d in details], dtype=np.str_),
    }
    return arrays, identities


def import_npz(store: GalleryStore, path: Path, on_conflict: str = "error") -> int:
    """Add an export's identities to `store` in one transaction; returns the number of embeddings added."""
    if on_conflict not in CONFLICT_POLICIES:
        raise InputSpecError(f"on_conflict must be one of {sorted(CONFLICT_POLICIES)}, got {on_conflict!r}")
    manifest, arrays = read_npz(path)
    _check_manifest(manifest, store, path)
    items = _items(manifest, arrays, path)
    created = _created_at(manifest, path)
    added = store.enroll_many(items, existing=CONFLICT_POLICIES[on_conflict], created_at=created)
    return sum(len(ids) for ids in added)


def read_npz(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Load and validate an export: safe member names, no object arrays, consistent shapes.

    Raises:
        GalleryError: the file is missing, not a zip/npz, has unexpected or path-like members, holds
            object arrays, or its arrays disagree.
    """
    _check_members(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            loaded = {name: data[name] for name in MEMBERS}
    except ValueError as exc:
        raise GalleryError(
            f"{path}: refused: the file holds object (pickled) arrays ({exc}); a vireid export holds "
            "numbers and strings only. Export again with `vireid gallery export`."
        ) from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise GalleryError(f"{path}: cannot read the export ({exc})") from exc
    except MemoryError:
        raise GalleryError(f"{path}: the export's arrays do not fit in this machine's memory") from None
    manifest = _manifest(loaded.pop("manifest"), path)
    _check_arrays(loaded, manifest, path)
    return manifest, loaded


def check_npz(path: Path) -> dict[str, Any]:
    """Validate everything of an export that does not depend on the target gallery (members, arrays,
    unit vectors, identity entries); returns its manifest. Lets a caller refuse a bad file before it
    creates a gallery for it.

    Raises:
        GalleryError: the file is not a safe, well-formed vireid export.
    """
    manifest, arrays = read_npz(path)
    _items(manifest, arrays, path)
    _created_at(manifest, path)
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of an export (embedding space, dim, identities) without loading its arrays.

    Raises:
        GalleryError: the file is not a safe, well-formed vireid export.
    """
    _check_members(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return _manifest(data["manifest"], path)
    except ValueError as exc:
        raise GalleryError(f"{path}: refused: the manifest is an object (pickled) array ({exc})") from exc


def _check_members(path: Path) -> None:
    if not path.is_file():
        raise GalleryError(
            f"{path}: no such export file; write one with `vireid gallery export --out FILE.npz`"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            _refuse_newer_format(path, archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise GalleryError(f"{path}: not an .npz export ({exc})") from exc
    unsafe = [n for n in names if not _MEMBER_NAME.fullmatch(n) or ".." in n]
    if unsafe:
        raise GalleryError(
            f"{path}: refused: member names {unsafe[:5]} are not plain array names (path traversal or "
            f"foreign content); a vireid export holds only {sorted(MEMBERS)}."
        )
    found = {n[: -len(".npy")] for n in names}
    if found != MEMBERS:
        raise GalleryError(
            f"{path}: not a vireid gallery export: members {sorted(found)}, expected {sorted(MEMBERS)}"
        )
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        _check_stored(path, members)
        for info in members:
            _check_member_header(path, archive, info)


def _refuse_newer_format(path: Path, archive: zipfile.ZipFile) -> None:
    """Refuse an export of a newer format version before judging its members: a newer vireid may add or
    rename members, and "not a vireid gallery export" would then hide the fix (upgrading). Only a
    vireid manifest with a larger version is refused here; anything else is left to the member and
    manifest checks, which name what is wrong with a foreign or damaged file."""
    version, written_by = _peek_version(path, archive)
    if version is None or version <= FORMAT_VERSION:
        return
    short = isinstance(written_by, str) and written_by.isprintable() and len(written_by) < 40
    by = f" (by vireid {written_by})" if short else ""
    raise GalleryError(
        f"{path}: this export was written in a newer vireid export format, version {version}{by}; this "
        f"vireid ({__version__}) reads up to version {FORMAT_VERSION}. Upgrade vireid "
        "(`pip install --upgrade vireid`) to import it."
    )


def _peek_version(path: Path, archive: zipfile.ZipFile) -> tuple[int | None, Any]:
    """`(format_version, vireid_version)` of a vireid manifest member, or `(None, None)` when there is no
    readable vireid manifest. The member passes the same size and header checks as every member before
    a byte of it is read, so a forged manifest cannot make this allocate more than the file holds."""
    try:
        info = archive.getinfo("manifest.npy")
        _check_stored(path, [info])
        _check_member_header(path, archive, info)
        with archive.open(info) as member:
            raw = np.lib.format.read_array(member, allow_pickle=False)
        if raw.dtype != np.uint8 or raw.ndim != 1:
            return None, None
        manifest = json.loads(raw.tobytes().decode("utf-8"))
    except (KeyError, GalleryError, ValueError, UnicodeDecodeError, RecursionError, EOFError):
        return None, None  # no (readable) manifest: the checks that follow say what is wrong
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None, None
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        return None, None
    return version, manifest.get("vireid_version")


def _check_stored(path: Path, members: list[zipfile.ZipInfo]) -> None:
    """Refuse anything but plain stored members that fit in the file, before a byte is decompressed:
    `np.savez` stores its arrays uncompressed, so a compressed member (a zip bomb's way of expanding a
    small file to gigabytes) or sizes beyond the file's own (forged directory entries) mean a file that
    is not a vireid export."""
    compressed = [i.filename for i in members if i.compress_type != zipfile.ZIP_STORED]
    if compressed:
        raise GalleryError(
            f"{path}: refused: members {compressed[:3]} are compressed; a vireid export stores its arrays "
            "uncompressed (as `vireid gallery export` writes them), so this file was made otherwise"
        )
    size = path.stat().st_size
    if any(i.file_size != i.compress_size for i in members) or sum(i.file_size for i in members) > size:
        raise GalleryError(
            f"{path}: refused: its directory declares more data than the file's {size} bytes hold; the "
            "file is damaged or forged"
        )


def _check_member_header(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Refuse a member whose `.npy` header is of an unknown version, holds objects, or promises more (or
    less) data than the member holds, which would make numpy allocate its claim."""
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version not in ((1, 0), (2, 0), (3, 0)):
                raise ValueError(f"unknown .npy format version {version}")
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0  # 3.0 differs only in the header's encoding
            )
            shape, _, dtype = read_header(member)
            header_bytes = member.tell()
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise GalleryError(f"{path}: member {info.filename} is not a readable .npy array ({exc})") from exc
    if dtype.hasobject:
        raise GalleryError(
            f"{path}: refused: member {info.filename} holds object (pickled) arrays; a vireid export holds "
            "numbers and strings only. Export again with `vireid gallery export`."
        )
    declared = math.prod(shape) * dtype.itemsize
    if declared != info.file_size - header_bytes:
        raise GalleryError(
            f"{path}: refused: member {info.filename} declares shape {shape} of {dtype} ({declared} bytes) "
            f"but holds {info.file_size - header_bytes}; the file is damaged or forged"
        )


def _manifest(raw: np.ndarray, path: Path) -> dict[str, Any]:
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"manifest must be uint8 [B], got {raw.dtype} {raw.shape}")
        manifest = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"format must be {FORMAT!r}")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}")
        if not isinstance(manifest.get("identities"), list):
            raise ValueError("'identities' must be a list")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nesting too deep
        raise GalleryError(f"{path}: invalid export manifest ({type(exc).__name__}: {exc})") from None
    return manifest


def _check_manifest(manifest: dict[str, Any], store: GalleryStore, path: Path) -> None:
    space, dim = manifest.get("embedding_space"), manifest.get("dim")
    if space != store.meta.embedding_space:
        raise GalleryError(
            f"{path}: export holds embeddings of model {space!r}, gallery {store.path} holds model "
            f"{store.meta.embedding_space!r}; vectors of different models are not comparable. Import into "
            "a new gallery path, or re-enrol the identities with this gallery's model."
        )
    if dim != store.meta.dim:
        raise GalleryError(
            f"{path}: export holds {dim}-d embeddings, gallery {store.path} holds {store.meta.dim}-d"
        )


UNIT_TOLERANCE = 1e-3
"""How far from 1 an exported vector's norm may be (float32 rounding is ~1e-7)."""


def _check_arrays(arrays: dict[str, np.ndarray], manifest: dict[str, Any], path: Path) -> None:
    n = len(arrays["vectors"])
    for name, dtype in ARRAYS.items():
        array = arrays[name]
        ok_dtype = array.dtype.kind == "U" if dtype is np.str_ else array.dtype == dtype
        shape_ok = (
            array.ndim == 2 and array.shape[1] == manifest.get("dim")
            if name == "vectors"
            else array.shape == (n,)
        )
        if not ok_dtype or not shape_ok:
            width = f" of {manifest.get('dim')} columns (the manifest's dim)" if name == "vectors" else ""
            raise GalleryError(
                f"{path}: array {name!r} is {array.dtype} {array.shape}; "
                f"expected {np.dtype(dtype)} with {n} rows{width}"
            )
    count = len(manifest["identities"])
    problems = []
    if n and (arrays["identity"].min() < 0 or arrays["identity"].max() >= count):
        problems.append(f"identity indices outside 0..{count - 1}")
    if not np.isin(arrays["modality"], (0, 1)).all():
        problems.append("modality values other than 0/1")
    if not np.isfinite(arrays["timestamp"]).all():
        problems.append("non-finite timestamps")
    if (arrays["track_id"] < -1).any():
        problems.append("track ids below -1")
    low, high = _norm_range(arrays["vectors"])
    if n and not (abs(low - 1.0) <= UNIT_TOLERANCE and abs(high - 1.0) <= UNIT_TOLERANCE):
        problems.append(f"vectors that are not unit length (norms {low:.4g} to {high:.4g})")  # NaN too
    if problems:
        raise GalleryError(f"{path}: malformed export: {'; '.join(problems)}")


def _norm_range(vectors: np.ndarray, block: int = 1 << 16) -> tuple[float, float]:
    """Smallest and largest row norm (NaN if any is), a block of rows at a time: a float64 copy of a
    whole export's vectors doubled the import's peak memory."""
    low, high = math.inf, -math.inf
    for start in range(0, len(vectors), block):
        norms = np.linalg.norm(vectors[start : start + block], axis=1)
        if not np.isfinite(norms).all():
            return math.nan, math.nan
        low, high = min(low, float(norms.min())), max(high, float(norms.max()))
    return low, high


def _created_at(manifest: dict[str, Any], path: Path) -> dict[str, float]:
    """Each exported identity's creation time, kept by the import (exports before it was written lack it)."""
    created = {}
    for entry in manifest["identities"]:
        value = entry.get("created_at") if isinstance(entry, dict) else None
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise GalleryError(
                f"{path}: identity {entry.get('name')!r} has created_at {value!r}; expected seconds since "
                "the epoch (a finite number)"
            )
        created[check_name(entry.get("name"))] = float(value)  # the stored (normalised) form
    return created


def _items(
    manifest: dict[str, Any], arrays: dict[str, np.ndarray], path: Path
) -> Iterator[tuple[str, dict[str, Any], EmbeddingBatch]]:
    """Names and metadata checked now (before any write); each identity's batch built only when the
    import's transaction reaches it, so the vectors are not held twice over."""
    order = np.argsort(arrays["identity"], kind="stable")
    bounds = np.searchsorted(arrays["identity"][order], np.arange(len(manifest["identities"]) + 1))
    checked = []
    for i, entry in enumerate(manifest["identities"]):
        try:
            name = check_name(entry.get("name") if isinstance(entry, dict) else None)
            metadata = entry.get("metadata", {})
            if not isinstance(metadata, dict):
                raise InputSpecError(f"metadata of {name!r} must be an object")
        except InputSpecError as exc:
            raise GalleryError(f"{path}: identity #{i} of the export is invalid ({exc})") from exc
        checked.append((name, metadata, order[bounds[i] : bounds[i + 1]]))
    if len({name for name, _, _ in checked}) != len(checked):
        raise GalleryError(f"{path}: the export names an identity twice; names must be unique")
    return ((name, metadata, _batch(arrays, rows, manifest["dim"])) for name, metadata, rows in checked)


def _batch(arrays: dict[str, np.ndarray], rows: np.ndarray, dim: int) -> EmbeddingBatch:
    vectors = unit_rows(arrays["vectors"][rows], dim) if len(rows) else np.zeros((0, dim), np.float32)
    return EmbeddingBatch(
        vectors=vectors,
        modalities=arrays["modality"][rows],
        timestamps=arrays["timestamp"][rows],
        # labels as exported: galleries enrolled before vireid refused control characters in them may
        # hold some, and a backup must restore (the CLI prints such labels escaped)
        cameras=tuple(c or None for c in arrays["camera"][rows].tolist()),
        track_ids=tuple(None if t < 0 else t for t in arrays["track_id"][rows].tolist()),
        sources=tuple(s or None for s in arrays["source"][rows].tolist()),
    )
