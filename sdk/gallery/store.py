"""SQLite persistence of a gallery: one file, WAL mode, one transaction per change.

Every change (an enrolment of N vectors, a removal, a rename, an import) is one `BEGIN IMMEDIATE`
transaction that also bumps a change counter in `meta`, so a crash leaves all of it or none of it and
other processes' in-memory indexes notice the commit. Readers never block the writer (WAL); a writer
waits up to `timeout` seconds for another writer's lock.

Hooks for later work: vectors go through `Float32Codec` (the `meta.vector_codec` key names it; an
encrypting codec plugs in there), and timestamps are indexed for a retention policy that deletes with
`remove_embeddings`.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import os
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..embeddings import NORM_TOLERANCE, normalise_rows
from ..errors import GalleryError
from ..modality import Modality
from . import crypto
from .inputs import EmbeddingBatch
from .schema import (
    NOT_SQLITE,
    VECTOR_CODEC,
    GalleryMeta,
    check_header,
    migrate,
    read_meta,
    refuse_foreign,
    require_creation_args,
)
from .types import IdentityEmbeddings, IdentityInfo

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("vireid.gallery")
MEMORY = ":memory:"
_CHUNK = 500  # ids per `IN (...)` query, below SQLite's variable limit
SAME_COSINE = 1.0 - 1e-5
"""Cosine above which a merge import treats two unit vectors as one: re-normalising an exported float32
vector moves it by about 1e-7, a float32 product of 512-d unit vectors errs by about 1e-6, and two
embeddings of different crops score far below."""


@dataclass(frozen=True)
class RowColumns:
    """Row-aligned columns of many embeddings (no vectors): what the in-memory index mirrors."""

    ids: np.ndarray  # int64
    identity_ids: np.ndarray  # int64
    modalities: np.ndarray  # int8
    cameras: list[str | None]


class Float32Codec:
    """Vectors as little-endian float32 bytes, one BLOB per row."""

    name = VECTOR_CODEC

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def encode(self, vectors: np.ndarray) -> list[bytes]:
        """One BLOB per row."""
        rows = np.ascontiguousarray(vectors, dtype="<f4")
        return [row.tobytes() for row in rows]

    def decode_into(self, blob: bytes, out: np.ndarray, where: str) -> None:
        """Write one BLOB into a row of `out`, refusing a BLOB of the wrong length."""
        if len(blob) != 4 * self.dim:
            raise GalleryError(
                f"{where}: stored vector has {len(blob)} bytes, expected {4 * self.dim} "
                f"({self.dim} float32); the file is damaged. Restore it from a backup (one "
                "`vireid gallery backup` wrote) or an export."
            )
        out[:] = np.frombuffer(blob, dtype="<f4")


def checked_unit_rows(vectors: np.ndarray, path: str, names: Callable[[np.ndarray], list[str]]) -> np.ndarray:
    """Make stored vectors unit rows in place; returns the indices of the rows that were renormalised.

    Enrolment stores finite unit rows only, but older vireid (before `normalise_rows` scaled each row by
    its largest magnitude) stored tiny embeddings, whose squares underflowed float32, unnormalised.
    Such finite, non-zero rows are renormalised here the way enrolment does now, so a gallery holding
    them still searches and exports. A non-finite or all-zero row is refused: one NaN row would otherwise
    rank first in every search and silently hide its whole identity. `names` maps row indices to the
    identities they belong to, for the message.

    Raises:
        GalleryError: a stored row is non-finite or all zeros (a damaged file or another writer).
    """
    if not len(vectors):
        return np.zeros(0, np.int64)
    with np.errstate(all="ignore"):
        norms = np.linalg.norm(vectors, axis=1)
    off = np.flatnonzero(~(np.abs(norms - 1.0) <= NORM_TOLERANCE))  # NaN is off too
    if not len(off):
        return off
    unit, bad = normalise_rows(vectors[off])
    if len(bad):
        who = names(off[bad[:100]])  # a wholly damaged file: naming a hundred says enough (and fits in SQL)
        raise GalleryError(
            f"{path}: {len(bad)} stored embeddings of {who[:10]} are not finite unit vectors and cannot "
            "be renormalised (non-finite or all zeros); the file is damaged or was written by something "
            "other than vireid. Restore it from a backup or an export, or remove those identities "
            f"(`vireid gallery remove --gallery {path} NAME`) and enrol them again."
        )
    vectors[off] = unit
    return off


def _translated(method: F) -> F:
    """Turn sqlite3 errors raised by a store method into `GalleryError` naming the file."""

    @functools.wraps(method)
    def wrapper(self: GalleryStore, *args: Any, **kwargs: Any) -> Any:
        action = method.__name__.strip("_").removesuffix("_many")  # enroll_many: the user called enroll
        with sqlite_errors(self.path, action, self.timeout, self.encrypted):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def database_errors() -> tuple[type[BaseException], ...]:
    """What `sqlite_errors` translates: sqlite3's and SQLCipher's errors, and UnicodeDecodeError."""
    return (sqlite3.DatabaseError, UnicodeDecodeError, *crypto.database_errors())


@contextmanager
def sqlite_errors(path: str, action: str, timeout: float, encrypted: bool = False) -> Iterator[None]:
    """Re-raise sqlite3 / SQLCipher errors as `GalleryError` with the path, the cause and a fix."""
    try:
        yield
    except database_errors() as exc:
        # (SQLite quotes a corrupt schema's bytes in its message, which Python's sqlite3 then fails to
        # decode: a UnicodeDecodeError means a corrupt file too.)
        if crypto.is_locked_error(exc):
            raise GalleryError(
                f"{path}: {action}: another process held the gallery's write lock for more than "
                f"{timeout:g} s ({exc}); retry, or pass a longer timeout to Gallery(...)."
            ) from exc
        if "readonly" in str(exc) or "read-only" in str(exc):
            raise GalleryError(
                f"{path}: {action} failed: {exc}. A gallery needs write access to its file and its folder, "
                "even to read it (SQLite's WAL keeps -wal and -shm files beside it); run as a user who "
                "may write there, or search a copy"
            ) from exc
        if type(exc).__name__ == "OperationalError":
            raise GalleryError(f"{path}: {action} failed: {exc}") from exc
        if "not a database" in str(exc) and encrypted:
            raise GalleryError(
                f"{path}: {action} failed: the gallery cannot be decrypted; the key is wrong, or the file is "
                "not an encrypted gallery (open a plain gallery without a key)"
            ) from exc
        if "not a database" in str(exc):
            raise GalleryError(f"{path}: {NOT_SQLITE}") from exc
        raise GalleryError(
            f"{path}: {action} failed, the gallery database is corrupt or unreadable ({exc}). "
            "Restore it from a backup (one `vireid gallery backup` wrote) or an export "
            "(`vireid gallery import`), or use a new path."
        ) from exc


class GalleryStore:
    """The SQL side of a gallery; callers serialise access (the `Gallery` holds a lock)."""

    def __init__(
        self,
        path: str | Path,
        *,
        embedding_space: str | None,
        dim: int | None,
        create: bool = True,
        timeout: float = 10.0,
        durable: bool = True,
        key: str | None = None,
    ) -> None:
        self.path = str(path)
        self.timeout = float(timeout)
        self.encrypted = key is not None
        self._key: str | None = None  # the key that opened the file (`crypto.connect`), for backups
        self._open_key: tuple[int, int] | None = None
        self._legacy: dict[str, int] | None = None  # see _legacy_names
        self._renormalised: set[int] = set()  # see _warn_renormalised
        # one open at a time in this process, from "held?" to "registered": two threads opening the same
        # file at once could otherwise read its header from Python after the other's connection took its
        # locks, and closing that descriptor drops them for the whole process (see `check_header`)
        with _OPEN_FILES.opening:
            if self.path != MEMORY:
                _check_location(Path(self.path), create, self.encrypted)
                if not Path(self.path).is_file() or Path(self.path).stat().st_size == 0:
                    require_creation_args(self.path, embedding_space, dim)  # before the file exists
                if not self.encrypted and not _OPEN_FILES.holds(Path(self.path)):
                    check_header(Path(self.path))  # an encrypted file has no readable header
                _create_private(Path(self.path))
            with sqlite_errors(self.path, "open", self.timeout, self.encrypted):
                if key is not None:
                    self._conn, self._key = crypto.connect(self.path, key, self.timeout)
                else:
                    self._conn = sqlite3.connect(
                        self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
                    )
            if self.path != MEMORY:
                self._open_key = _OPEN_FILES.acquire(Path(self.path))
        with sqlite_errors(self.path, "open", self.timeout, self.encrypted):
            try:
                self._conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                refuse_foreign(self._conn, self.path)  # before WAL mode rewrites the file's header
                self._configure(durable)
                migrate(self._conn, self.path, embedding_space, dim)
                self.meta: GalleryMeta = read_meta(self._conn, self.path)
            except BaseException:
                self.close()
                raise
        if self.meta.vector_codec != VECTOR_CODEC:
            self.close()
            raise GalleryError(
                f"{self.path}: vectors are stored with codec {self.meta.vector_codec!r}, which this "
                f"vireid does not read (it reads {VECTOR_CODEC!r}); upgrade vireid."
            )
        self.codec = Float32Codec(self.meta.dim)

    def _configure(self, durable: bool) -> None:
        conn = self._conn
        conn.execute("PRAGMA journal_mode = WAL").fetchone()
        conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        conn.execute("PRAGMA foreign_keys = ON")
        # deleted rows are overwritten with zeros, not left in free pages: `remove` and `purge` are how
        # biometric data is erased (SQLite builds differ in the default; SQLCipher's is off)
        conn.execute("PRAGMA secure_delete = ON").fetchone()

    def close(self) -> None:
        """Close the connection (idempotent), truncating the WAL first if a removal left it pending."""
        if getattr(self, "_wal_pending", False):
            with contextlib.suppress(sqlite3.Error):
                self._truncate_wal()
        self._conn.close()
        _OPEN_FILES.release(self._open_key)
        self._open_key = None

    # ----- backup ---------------------------------------------------------------------------------
    @property
    def file_identity(self) -> tuple[int, int] | None:
        """(st_dev, st_ino) of the database file, taken when it was opened (None in memory): the file
        it is, whatever the process's folder or the file's name became since."""
        return self._open_key

    def connect_like(self, path: str) -> Any:
        """A new autocommit connection to another file, keyed like this gallery: with the key that
        opened it when it is encrypted (SQLCipher copies pages only between connections keyed alike,
        and a copy must open with the gallery's key), plain SQLite otherwise."""
        if self._key is not None:
            return crypto.connect_new(path, self._key, self.timeout)
        return sqlite3.connect(path, timeout=self.timeout, isolation_level=None, check_same_thread=False)

    def copy_into(self, target: Any) -> None:
        """Copy the whole database into `target` (a `connect_like` connection) with SQLite's online
        backup API, in one step: one read transaction, so the copy is one committed state (the WAL
        included) while other processes go on writing, which WAL lets them do meanwhile."""
        self._conn.backup(target, pages=-1)

    # ----- transactions ---------------------------------------------------------------------------
    @contextmanager
    def write(self, *, structural: bool) -> Iterator[sqlite3.Connection]:
        """One write transaction; bumps `generation` (and `epoch` when rows may vanish or rename)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            keys = ("generation", "epoch") if structural else ("generation",)
            conn.executemany(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = ?", ((k,) for k in keys)
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if structural:  # the WAL still holds page images with what was just removed or renamed
            self._truncate_wal()

    def _truncate_wal(self) -> None:
        """Copy the WAL into the database and empty it, without waiting: while another connection
        reads, SQLite would hold the write lock for the whole busy timeout (other processes' writes fail
        meanwhile), so a busy checkpoint is left for the next removal or for `close`."""
        conn = self._conn
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:  # the change itself is committed: this is housekeeping only
            busy = 1
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        self._wal_pending = bool(busy)
        if busy:
            log.debug("%s: WAL not truncated now (another connection is reading)", self.path)

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        conn = self._conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    @_translated
    def counters(self) -> tuple[int, int]:
        """`(generation, epoch)`: any commit changes the first; removals and renames the second."""
        values = dict(self._conn.execute("SELECT key, value FROM meta WHERE key IN ('generation', 'epoch')"))
        try:
            return int(values["generation"]), int(values["epoch"])
        except (KeyError, TypeError, ValueError):  # rows no vireid leaves out or writes so: a damaged file
            raise GalleryError(
                f"{self.path}: the gallery's meta table is damaged (generation/epoch counters: {values}); "
                "restore the file from a backup (one `vireid gallery backup` wrote) or an export "
                "(`vireid gallery import`)"
            ) from None

    # ----- writes ---------------------------------------------------------------------------------
    @_translated
    def enroll_many(
        self,
        items: Iterable[tuple[str, Mapping[str, Any] | None, EmbeddingBatch]],
        existing: str = "add",
        created_at: Mapping[str, float] | None = None,
    ) -> list[np.ndarray]:
        """Store batches for several identities in one transaction.

        Args:
            items: `(name, metadata or None, batch)`; metadata, when given, replaces the stored one.
            existing: what to do with a name already enrolled: `add` its vectors, `merge` them (add
                the rows it does not already hold, keeping the stored metadata and taking from
                `metadata` only keys it lacks), `replace` its embeddings by these (in this same
                transaction), `skip` the item or raise (`error`).
            created_at: creation times (seconds since the epoch) of names new to the gallery, for an
                import that keeps the exported ones; now for names it lacks.

        Returns:
            The new embedding ids of each item (empty for a skipped one).
        """
        out = []
        with self.write(structural=existing == "replace") as conn:
            for name, metadata, batch in items:
                identity_id = self._identity_id(name)
                if identity_id is not None and existing == "skip":
                    out.append(np.zeros(0, dtype=np.int64))
                    continue
                if identity_id is not None and existing == "error":
                    raise GalleryError(
                        f"{self.path}: identity {name!r} is already enrolled; remove or rename it first, "
                        "or import with on_conflict='merge' or 'skip' (CLI: --on-conflict merge|skip)."
                    )
                if identity_id is not None and existing == "replace":
                    self._delete_embeddings_of(conn, identity_id)
                if identity_id is not None and existing == "merge":
                    batch = self._rows_not_held(conn, identity_id, batch)
                    if metadata is not None:
                        stored = conn.execute("SELECT metadata FROM identities WHERE id = ?", (identity_id,))
                        metadata = {**metadata, **json.loads(stored.fetchone()[0] or "{}")}
                created = (created_at or {}).get(name, time.time())
                identity_id = self._upsert_identity(conn, identity_id, name, metadata, created)
                out.append(self._insert_rows(conn, identity_id, batch))
        return out

    def _upsert_identity(
        self,
        conn: sqlite3.Connection,
        identity_id: int | None,
        name: str,
        metadata: Mapping[str, Any] | None,
        created_at: float,
    ) -> int:
        text = None if metadata is None else json.dumps(dict(metadata), sort_keys=True)
        if identity_id is None:
            cursor = conn.execute(
                "INSERT INTO identities(name, metadata, created_at) VALUES (?, ?, ?)",
                (name, text or "{}", created_at),
            )
            return int(cursor.lastrowid or 0)
        if text is not None:
            conn.execute("UPDATE identities SET metadata = ? WHERE id = ?", (text, identity_id))
        return identity_id

    def _rows_not_held(
        self, conn: sqlite3.Connection, identity_id: int, batch: EmbeddingBatch
    ) -> EmbeddingBatch:
        """The rows of `batch` the identity does not hold yet (a held row with the same tags and, to float
        rounding, the same vector), so importing one export twice with `merge` adds nothing the second
        time."""
        rows = conn.execute(
            "SELECT id, modality, camera, timestamp, track_id, source FROM embeddings "
            "WHERE identity_id = ? ORDER BY id",
            (identity_id,),
        ).fetchall()
        if not rows or not len(batch):
            return batch
        held = np.empty((len(rows), self.meta.dim), dtype=np.float32)
        self.read_vectors(conn, np.array([r[0] for r in rows], dtype=np.int64), held)
        held_by_tags: dict[tuple[Any, ...], list[int]] = {}
        for i, row in enumerate(rows):
            held_by_tags.setdefault(tuple(row[1:]), []).append(i)
        new_by_tags: dict[tuple[Any, ...], list[int]] = {}
        for j in range(len(batch)):
            tags = (
                int(batch.modalities[j]),
                batch.cameras[j],
                float(batch.timestamps[j]),
                batch.track_ids[j],
                batch.sources[j],
            )
            new_by_tags.setdefault(tags, []).append(j)
        keep = []
        for tags, new_rows in new_by_tags.items():
            same = held_by_tags.get(tags)
            if not same:
                keep += new_rows
                continue
            # per tag group, one product: unit vectors whose cosine is 1 within float32 rounding
            closest = (batch.vectors[new_rows] @ held[same].T).max(axis=1)
            keep += [j for j, cosine in zip(new_rows, closest, strict=True) if cosine < SAME_COSINE]
        return batch.subset(np.array(sorted(keep), dtype=np.int64))

    def _insert_rows(self, conn: sqlite3.Connection, identity_id: int, batch: EmbeddingBatch) -> np.ndarray:
        # Ids are assigned here, inside the write lock, from AUTOINCREMENT's sequence: never reused, so
        # an in-memory index can trust that an id it holds always names the same vector.
        (last,) = conn.execute(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'embeddings'), 0)"
        ).fetchone()
        ids = np.arange(last + 1, last + 1 + len(batch), dtype=np.int64)
        id_list = ids.tolist()
        conn.executemany(
            "INSERT INTO embeddings(id, identity_id, modality, camera, timestamp, track_id, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            zip(
                id_list,
                repeat(identity_id),
                batch.modalities.tolist(),
                batch.cameras,
                batch.timestamps.tolist(),
                batch.track_ids,
                batch.sources,
            ),
        )
        conn.executemany(
            "INSERT INTO vectors(embedding_id, data) VALUES (?, ?)",
            zip(id_list, self.codec.encode(batch.vectors), strict=True),
        )
        return ids

    @_translated
    def remove_identity(self, name: str) -> int:
        """Delete an identity and its embeddings; returns how many embeddings went."""
        with self.write(structural=True) as conn:
            identity_id = self._require_identity(name)
            removed = self._delete_embeddings_of(conn, identity_id)
            conn.execute("DELETE FROM identities WHERE id = ?", (identity_id,))
        return removed

    @staticmethod
    def _delete_embeddings_of(conn: sqlite3.Connection, identity_id: int) -> int:
        conn.execute(
            "DELETE FROM vectors WHERE embedding_id IN (SELECT id FROM embeddings WHERE identity_id = ?)",
            (identity_id,),
        )
        return int(conn.execute("DELETE FROM embeddings WHERE identity_id = ?", (identity_id,)).rowcount)

    @_translated
    def remove_embeddings(self, ids: Sequence[int]) -> int:
        """Delete embeddings by id (unknown ids are ignored); returns how many were deleted."""
        removed = 0
        with self.write(structural=True) as conn:
            for start in range(0, len(ids), _CHUNK):
                chunk = list(ids[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                conn.execute(f"DELETE FROM vectors WHERE embedding_id IN ({marks})", chunk)
                removed += conn.execute(f"DELETE FROM embeddings WHERE id IN ({marks})", chunk).rowcount
        return removed

    @_translated
    def purge(self, before: float, drop_empty: bool) -> tuple[int, int]:
        """Delete embeddings with `timestamp < before` (and, with `drop_empty`, identities left with none)
        in one transaction; returns (embeddings, identities) deleted.

        Nothing old: no write at all, so a periodic retention job does not make every reader (a
        running pipeline) reload its index for nothing."""
        old_rows = "SELECT 1 FROM embeddings WHERE timestamp < ? LIMIT 1"
        if self._conn.execute(old_rows, (before,)).fetchone() is None:
            return 0, 0
        with self.write(structural=True) as conn:
            # not SELECT DISTINCT: SQLite would scan every row in identity order instead of the time index
            touched = sorted(
                {
                    row[0]
                    for row in conn.execute(
                        "SELECT identity_id FROM embeddings WHERE timestamp < ?", (before,)
                    )
                }
            )
            old = "SELECT id FROM embeddings WHERE timestamp < ?"
            conn.execute(f"DELETE FROM vectors WHERE embedding_id IN ({old})", (before,))
            embeddings = conn.execute("DELETE FROM embeddings WHERE timestamp < ?", (before,)).rowcount
            identities = 0
            if drop_empty:  # only identities this purge emptied: one kept empty on purpose stays
                for identity_id in touched:
                    identities += conn.execute(
                        "DELETE FROM identities WHERE id = ? AND NOT EXISTS "
                        "(SELECT 1 FROM embeddings WHERE identity_id = ?)",
                        (identity_id, identity_id),
                    ).rowcount
        return embeddings, identities

    @_translated
    def rename(self, old: str, new: str) -> None:
        """Rename an identity; the new name must be free."""
        with self.write(structural=True) as conn:
            identity_id = self._require_identity(old)
            if self._identity_id(new) is not None:
                raise GalleryError(
                    f"{self.path}: cannot rename {old!r} to {new!r}: {new!r} is already enrolled; "
                    "remove it first or pick another name."
                )
            conn.execute("UPDATE identities SET name = ? WHERE id = ?", (new, identity_id))

    # ----- reads ----------------------------------------------------------------------------------
    def _identity_id(self, name: str) -> int | None:
        """The identity stored under `name`, or under another Unicode form of it (names stored before
        they were kept in NFC: `José` as e + combining accent)."""
        row = self._conn.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return int(row[0])
        if name.isascii():
            return None
        wanted = unicodedata.normalize("NFC", name)
        if wanted != name:  # asked in another form (NFD from a macOS folder): stored names are NFC
            row = self._conn.execute("SELECT id FROM identities WHERE name = ?", (wanted,)).fetchone()
            if row is not None:
                return int(row[0])
        identity_id = self._legacy_names().get(wanted)
        if identity_id is None:
            return None
        row = self._conn.execute("SELECT name FROM identities WHERE id = ?", (identity_id,)).fetchone()
        still = row is not None and unicodedata.normalize("NFC", row[0]) == wanted  # not removed or renamed
        return identity_id if still else None

    def _legacy_names(self) -> dict[str, int]:
        """NFC form → id of the names stored in another form (by versions before names were kept in
        NFC), read once: vireid writes NFC only, so no new ones appear, and a lookup checks that its
        hit still holds. One scan per process, not one per new accented name (bulk imports were
        quadratic)."""
        if self._legacy is None:
            self._legacy = {}
            for identity_id, stored in self._conn.execute("SELECT id, name FROM identities"):
                if not stored.isascii() and unicodedata.normalize("NFC", stored) != stored:
                    self._legacy[unicodedata.normalize("NFC", stored)] = int(identity_id)
        return self._legacy

    def _require_identity(self, name: str) -> int:
        identity_id = self._identity_id(name)
        if identity_id is None:
            raise GalleryError(
                f"{self.path}: no identity named {name!r}; `vireid gallery list --gallery {self.path}` "
                "shows the enrolled names."
            )
        return identity_id

    @_translated
    def identity_ids(self, names: Sequence[str]) -> dict[str, int]:
        """Ids of the given names that exist."""
        found = {}
        for name in names:
            identity_id = self._identity_id(name)
            if identity_id is not None:
                found[name] = identity_id
        return found

    @_translated
    def counts(self) -> tuple[int, int]:
        """`(identities, embeddings)`."""
        with self.snapshot() as conn:
            (identities,) = conn.execute("SELECT count(*) FROM identities").fetchone()
            (embeddings,) = conn.execute("SELECT count(*) FROM embeddings").fetchone()
        return int(identities), int(embeddings)

    @_translated
    def cameras(self) -> list[str]:
        """The distinct camera labels of the stored embeddings, sorted."""
        with self.snapshot() as conn:
            rows = conn.execute(
                "SELECT DISTINCT camera FROM embeddings WHERE camera IS NOT NULL ORDER BY camera"
            ).fetchall()
        return [str(r[0]) for r in rows]

    @_translated
    def list_identities(self) -> list[IdentityInfo]:
        """Every identity, sorted by name, with counts per modality."""
        rows = self._conn.execute(
            "SELECT i.name, i.metadata, i.created_at, e.modality, count(e.id) FROM identities i "
            "LEFT JOIN embeddings e ON e.identity_id = i.id GROUP BY i.id, e.modality ORDER BY i.name"
        ).fetchall()
        grouped: dict[str, tuple[str, float, dict[Modality, int]]] = {}
        for name, metadata, created_at, modality, count in rows:
            entry = grouped.setdefault(name, (metadata, created_at, {}))
            if modality is not None:
                entry[2][Modality(int(modality))] = int(count)  # the schema allows only 0 and 1
        return [
            IdentityInfo(name=name, metadata=json.loads(meta), counts=counts, created_at=created)
            for name, (meta, created, counts) in grouped.items()
        ]

    @_translated
    def identity_embeddings(self, name: str) -> IdentityEmbeddings:
        """Everything stored for one identity, ordered by embedding id."""
        with self.snapshot() as conn:
            identity_id = self._require_identity(name)
            rows = conn.execute(
                "SELECT e.id, e.modality, e.timestamp, e.camera, e.track_id, e.source, v.data "
                "FROM embeddings e JOIN vectors v ON v.embedding_id = e.id "
                "WHERE e.identity_id = ? ORDER BY e.id",
                (identity_id,),
            ).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vectors = np.empty((len(rows), self.meta.dim), dtype=np.float32)
        for i, row in enumerate(rows):
            self.codec.decode_into(row[6], vectors[i], f"{self.path}: embedding {row[0]}")
        fixed = checked_unit_rows(vectors, self.path, lambda bad: [name])
        self._warn_renormalised(ids[fixed], lambda: [name])
        return IdentityEmbeddings(
            name=name,
            ids=ids,
            vectors=vectors,
            modalities=np.array([r[1] for r in rows], dtype=np.int8),
            timestamps=np.array([r[2] for r in rows], dtype=np.float64),
            cameras=tuple(r[3] for r in rows),
            track_ids=tuple(r[4] for r in rows),
            sources=tuple(r[5] for r in rows),
        )

    def identity_rows(self, conn: sqlite3.Connection, after_id: int = 0) -> list[tuple[int, str, str, float]]:
        """`(id, name, metadata JSON, created_at)` of identities with id > `after_id`, in id order."""
        return conn.execute(
            "SELECT id, name, metadata, created_at FROM identities WHERE id > ? ORDER BY id", (after_id,)
        ).fetchall()

    def row_columns(self, conn: sqlite3.Connection, after_id: int = 0) -> RowColumns:
        """Tags of every embedding with id > `after_id`, in id order (call inside `snapshot`)."""
        rows = conn.execute(
            "SELECT id, identity_id, modality, camera FROM embeddings WHERE id > ? ORDER BY id", (after_id,)
        ).fetchall()
        return RowColumns(
            ids=np.array([r[0] for r in rows], dtype=np.int64),
            identity_ids=np.array([r[1] for r in rows], dtype=np.int64),
            modalities=np.array([r[2] for r in rows], dtype=np.int8),
            cameras=[r[3] for r in rows],
        )

    def row_details(self, conn: sqlite3.Connection) -> list[tuple[float, int | None, str | None]]:
        """`(timestamp, track_id, source)` of every embedding in id order (call inside `snapshot`)."""
        return conn.execute("SELECT timestamp, track_id, source FROM embeddings ORDER BY id").fetchall()

    def read_vectors(self, conn: sqlite3.Connection, ids: np.ndarray, out: np.ndarray) -> None:
        """Fill `out[i]` with the vector of `ids[i]`; `ids` ascending (call inside `snapshot`)."""
        if len(ids) == 0:
            return
        cursor = conn.execute(
            "SELECT embedding_id, data FROM vectors WHERE embedding_id BETWEEN ? AND ? ORDER BY embedding_id",
            (int(ids[0]), int(ids[-1])),
        )
        j = 0
        for embedding_id, blob in cursor:
            if embedding_id == ids[j]:
                self.codec.decode_into(blob, out[j], f"{self.path}: embedding {embedding_id}")
                j += 1
                if j == len(ids):
                    break
        cursor.close()
        if j != len(ids):
            raise GalleryError(
                f"{self.path}: embedding {int(ids[j])} has no stored vector; the file is damaged. "
                "Restore it from a backup (one `vireid gallery backup` wrote) or an export."
            )
        fixed = checked_unit_rows(out, self.path, lambda bad: self._names_of(conn, ids[bad]))
        self._warn_renormalised(ids[fixed], lambda: self._names_of(conn, ids[fixed]))

    def _warn_renormalised(self, embedding_ids: np.ndarray, names: Callable[[], list[str]]) -> None:
        """Log one warning for stored rows renormalised on read that this store has not warned about:
        an index reload or an export reads them again, and repeating the warning would bury it."""
        new = [int(i) for i in embedding_ids.tolist() if int(i) not in self._renormalised]
        if not new:
            return
        self._renormalised.update(new)
        who = names()
        log.warning(
            "%s: %d stored embeddings of %d identities (%s%s) are not unit length: an older vireid stored "
            "very small embeddings unnormalised. They are renormalised each time they are read; to "
            "rewrite them, `vireid gallery export --gallery %s --out FILE.npz "
            "--allow-biometric-export`, then `vireid gallery import --gallery NEW.db FILE.npz` and use "
            "NEW.db",
            self.path,
            len(new),
            len(who),
            ", ".join(who[:10]),
            ", ..." if len(who) > 10 else "",
            self.path,
        )

    @staticmethod
    def _names_of(conn: sqlite3.Connection, embedding_ids: np.ndarray) -> list[str]:
        """The identities owning some embeddings (sorted distinct names; for messages)."""
        found: set[str] = set()
        for start in range(0, len(embedding_ids), _CHUNK):
            chunk = [int(x) for x in embedding_ids[start : start + _CHUNK]]
            rows = conn.execute(
                "SELECT DISTINCT i.name FROM embeddings e JOIN identities i ON i.id = e.identity_id "
                f"WHERE e.id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            found.update(r[0] for r in rows)
        return sorted(found)


class _OpenFiles:
    """Gallery files this process holds a connection on, by (device, inode): a second open of the same
    file must not read its header from Python (closing that descriptor would drop the first
    connection's locks; see `check_header`)."""

    def __init__(self) -> None:
        self._counts: collections.Counter[tuple[int, int]] = collections.Counter()
        self._lock = threading.Lock()
        self.opening = threading.Lock()
        """Held by `GalleryStore.__init__` from its `holds` check to its `acquire`."""

    @staticmethod
    def key(path: Path) -> tuple[int, int] | None:
        try:
            info = os.stat(path)
        except OSError:
            return None
        return (info.st_dev, info.st_ino)

    def holds(self, path: Path) -> bool:
        key = self.key(path)
        with self._lock:
            return key is not None and self._counts[key] > 0

    def acquire(self, path: Path) -> tuple[int, int] | None:
        key = self.key(path)
        if key is not None:
            with self._lock:
                self._counts[key] += 1
        return key

    def release(self, key: tuple[int, int] | None) -> None:
        if key is None:
            return
        with self._lock:
            self._counts[key] -= 1
            if self._counts[key] <= 0:
                del self._counts[key]


_OPEN_FILES = _OpenFiles()


def _create_private(path: Path) -> None:
    """Create a new database file readable and writable by its owner only (mode 0600): a gallery holds
    biometric data. SQLite gives its `-wal` / `-shm` files the database file's mode. Existing files keep
    theirs."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        if path.is_symlink() and not path.exists():  # SQLite would create the target with the umask's mode
            raise GalleryError(
                f"{path}: is a symbolic link to a missing file ({os.readlink(path)}); refusing to create a "
                "gallery through it. Remove the link or point it at an existing gallery."
            ) from None
        return
    except OSError as exc:
        raise GalleryError(f"{path}: cannot create the gallery file: {exc.strerror or exc}") from exc
    os.close(fd)


def _check_location(path: Path, create: bool, encrypted: bool = False) -> None:
    if path.is_dir():
        raise GalleryError(f"{path}: is a folder; a gallery is one SQLite file, e.g. {path / 'gallery.db'}")
    exists = path.is_file() and path.stat().st_size > 0
    if not exists and not create:
        raise GalleryError(
            f"{path}: no gallery file here; enrol someone to create it (`vireid gallery enroll`, or "
            "Gallery(path, embedding_space=..., dim=...) in Python)."
        )
    if not path.parent.is_dir():
        raise GalleryError(f"{path}: folder {path.parent} does not exist; create it first.")
    if path.is_dir():
        raise GalleryError(f"{path}: is a folder; expected a gallery database file such as gallery.db")
