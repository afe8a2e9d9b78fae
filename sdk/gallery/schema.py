"""The gallery's SQLite schema, its version and the migrations between versions.

The schema version lives in `PRAGMA user_version`; `PRAGMA application_id` marks the file as a vireid
gallery so another application's SQLite database is refused instead of being written into. The `meta`
table holds what the gallery is bound to (embedding space fingerprint, dimension, vector codec) and the
change counters the in-memory index uses to notice other processes' commits.

`MIGRATIONS[v]` upgrades a database from version `v` to `v + 1`; version 0 is an empty file, so creating
a gallery is the first migration. Every pending migration runs in one `BEGIN IMMEDIATE` transaction:
a crash or an error leaves the file at its old version. A file newer than `SCHEMA_VERSION` is refused
with an error asking for a newer vireid.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._version import __version__
from ..errors import GalleryError

SCHEMA_VERSION = 1
APPLICATION_ID = 0x76697264  # "vird"
SQLITE_HEADER = b"SQLite format 3\x00"
VECTOR_CODEC = "float32-le"  # how a vector is stored in `vectors.data`; encryption will add codecs

Migration = Callable[[sqlite3.Connection], None]

_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE identities (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    metadata   TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE TABLE embeddings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    modality    INTEGER NOT NULL CHECK (modality IN (0, 1)),
    camera      TEXT,
    timestamp   REAL NOT NULL,
    track_id    INTEGER,
    source      TEXT
);
CREATE TABLE vectors (
    embedding_id INTEGER PRIMARY KEY REFERENCES embeddings(id) ON DELETE CASCADE,
    data         BLOB NOT NULL
);
CREATE INDEX embeddings_by_identity ON embeddings(identity_id);
CREATE INDEX embeddings_by_time ON embeddings(timestamp);
"""


def _create_v1(conn: sqlite3.Connection) -> None:
    """Version 0 (empty file) → 1: identities, embeddings, vectors kept apart so row scans skip blobs."""
    for statement in _V1.split(";"):
        if statement.strip():
            conn.execute(statement)


MIGRATIONS: list[Migration] = [_create_v1]


@dataclass(frozen=True)
class GalleryMeta:
    """What a gallery file is bound to, read from its `meta` table.

    Attributes:
        embedding_space: fingerprint of the model whose vectors the gallery holds
            (`ModelCard.embedding_space()`); vectors of other models are refused.
        dim: embedding dimension.
        created_at: creation time, seconds since the epoch (UTC).
        vireid_version: the vireid version that created the file.
        vector_codec: storage format of the vectors (`float32-le`).
        schema_version: `PRAGMA user_version` of the file.
    """

    embedding_space: str
    dim: int
    created_at: float
    vireid_version: str
    vector_codec: str
    schema_version: int


NOT_SQLITE = (
    "not a gallery database (the file does not start with the SQLite header; it is corrupt, encrypted, "
    "or another kind of file). For an encrypted gallery give its key (key_file=..., --key-file, or "
    "$VIREID_GALLERY_KEY); otherwise restore it from a backup or export, or pass a new path to create an "
    "empty gallery."
)


def check_header(path: Path) -> None:
    """Refuse a non-empty file that is not SQLite before sqlite3 sees it (SQLite would take a file of a
    few bytes for a new database and write into it).

    Call it only when this process has no connection open on the file: closing any descriptor of a file
    drops every POSIX lock the process holds on it, those of a live SQLite connection included.

    Raises:
        GalleryError: the file's first bytes are not the SQLite header.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb") as fh:
        head = fh.read(len(SQLITE_HEADER))
    if head != SQLITE_HEADER:
        raise GalleryError(f"{path}: {NOT_SQLITE}")


def refuse_foreign(conn: sqlite3.Connection, path: str) -> None:
    """Refuse another application's SQLite database with reads only, before anything writes to it.

    Raises:
        GalleryError: the file has another application id and holds tables or a schema version.
    """
    version, app_id = _version(conn), _application_id(conn)
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id != APPLICATION_ID and (version or tables):
        raise GalleryError(
            f"{path}: SQLite database of another application (application_id={app_id:#x}, "
            f"expected {APPLICATION_ID:#x}); it is not a vireid gallery and was not changed. Pass a new "
            "path to create one."
        )


def migrate(conn: sqlite3.Connection, path: str, embedding_space: str | None, dim: int | None) -> None:
    """Bring the database to `SCHEMA_VERSION`, creating it when empty, in one write transaction.

    Args:
        conn: an autocommit (`isolation_level=None`) connection.
        path: the file, for messages.
        embedding_space: fingerprint to record when the file is created.
        dim: embedding dimension to record when the file is created.

    Raises:
        GalleryError: the file is another application's database, newer than this vireid, needs
            creating but `embedding_space`/`dim` are missing, or a migration failed (rolled back).
    """
    if _version(conn) == SCHEMA_VERSION and _application_id(conn) == APPLICATION_ID:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _checked_version(conn, path)
        if version == 0:
            require_creation_args(path, embedding_space, dim)
        for step in range(version, SCHEMA_VERSION):
            _run_step(conn, path, step)
        if version == 0:
            _write_initial_meta(conn, str(embedding_space), int(dim or 0))
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def read_meta(conn: sqlite3.Connection, path: str) -> GalleryMeta:
    """Read the `meta` table.

    Raises:
        GalleryError: a required key is missing or malformed.
    """
    values = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    try:
        return GalleryMeta(
            embedding_space=values["embedding_space"],
            dim=int(values["dim"]),
            created_at=float(values["created_at"]),
            vireid_version=values["vireid_version"],
            vector_codec=values["vector_codec"],
            schema_version=_version(conn),
        )
    except (KeyError, ValueError) as exc:
        raise GalleryError(
            f"{path}: gallery meta table is damaged ({exc!r} missing or malformed); restore the file "
            "from a backup (one `vireid gallery backup` wrote) or an export (`vireid gallery import`)."
        ) from exc


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _application_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA application_id").fetchone()[0])


def _checked_version(conn: sqlite3.Connection, path: str) -> int:
    refuse_foreign(conn, path)  # first: another application's user_version is not ours to interpret
    version = _version(conn)
    if version < 0:  # SQLite's user_version is a signed 32-bit header field: a damaged header
        raise GalleryError(
            f"{path}: the gallery's schema version reads {version}, which no vireid writes: the file's "
            "header is damaged. Restore it from a backup (one `vireid gallery backup` wrote) or an export "
            "(`vireid gallery import`)."
        )
    if version > SCHEMA_VERSION:
        raise GalleryError(
            f"{path}: gallery schema version {version} is newer than this vireid ({__version__}) "
            f"understands (up to {SCHEMA_VERSION}); upgrade vireid: pip install -U vireid"
        )
    return version


def require_creation_args(path: str, embedding_space: str | None, dim: int | None) -> None:
    """Refuse to create a gallery without the model's fingerprint and dimension (checked before the
    file is created: a failed call must not leave a schema-less file that later opens refuse)."""
    if not embedding_space or not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
        raise GalleryError(
            f"{path}: no gallery here yet; creating one needs the model's embedding_space fingerprint "
            f"and dim (got embedding_space={embedding_space!r}, dim={dim!r}). Pass both, e.g. "
            "Gallery(path, embedding_space=embedder.embedding_space, dim=card.embedding_dim)."
        )


def _run_step(conn: sqlite3.Connection, path: str, step: int) -> None:
    try:
        MIGRATIONS[step](conn)
    except sqlite3.Error as exc:
        raise GalleryError(
            f"{path}: migrating the gallery schema from version {step} to {step + 1} failed ({exc}); "
            "the file was left unchanged at its old version. Report this with the file's "
            "`vireid gallery list` output."
        ) from exc


def _write_initial_meta(conn: sqlite3.Connection, embedding_space: str, dim: int) -> None:
    rows = {
        "embedding_space": embedding_space,
        "dim": str(dim),
        "created_at": repr(time.time()),
        "vireid_version": __version__,
        "vector_codec": VECTOR_CODEC,
        "generation": "0",
        "epoch": "0",
    }
    conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", rows.items())
