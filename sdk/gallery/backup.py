"""Online backup of a gallery: a consistent copy taken while other processes write to it.

SQLite's online backup API (`sqlite3.Connection.backup`) copies the database page by page through the
gallery's own connection, in one read transaction: the copy is one committed state, WAL included
(copying the file would miss the commits still in `-wal`, and reading it from Python could drop this
process's locks; see `schema.check_header`), while a writer such as `vireid run` goes on committing,
which WAL lets it do.

The copy is written to a temporary file next to the target (owner-only, like a gallery), checked
(`PRAGMA quick_check`, the gallery's schema version, application id and binding, encrypted exactly
when the gallery is), fsynced and only then renamed over the target: an interrupted or failed backup
never leaves a half file at the target, only, after a kill, a hidden `.NAME.*.tmp` beside it. An
encrypted gallery's copy is keyed with the same key (SQLCipher copies pages between connections keyed
alike), so it opens with the gallery's key and with nothing else.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from ..atomic import create_unique
from ..errors import GalleryError
from .schema import APPLICATION_ID, SQLITE_HEADER, read_meta
from .store import MEMORY, GalleryStore, database_errors

SIDECARS = ("-wal", "-shm", "-journal")
"""SQLite's companion files of a database: a stale `-wal` or `-journal` would be applied to a new file
put under the same name, and a `-shm` is shared with whoever has that file open."""


def backup(store: GalleryStore, target: Path, overwrite: bool = False) -> Path:
    """Copy the gallery of `store` to `target` atomically (see the module's docstring); returns `target`.

    Raises:
        GalleryError: `target` is the gallery (or one of its SQLite files), a folder, exists and
            `overwrite` is false, is in use (its `-wal` exists), cannot be written, or the copy fails
            its checks (a damaged gallery); nothing is left at `target` then.
    """
    _check_target(store.path, target, overwrite)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = create_unique(target, 0o600)
    except OSError as exc:
        raise GalleryError(
            f"{target}: cannot write the backup there ({exc.strerror or exc}); check that the folder "
            f"{target.absolute().parent} is writable by this user, or choose another path"
        ) from exc
    try:
        os.close(fd)
        os.chmod(tmp, 0o600)  # owner-only whatever the umask: the copy holds the same biometric data
        _copy(store, tmp, target)
        _sync(tmp)
        os.replace(tmp, target)
        _sync_folder(target.parent)
    except BaseException as exc:
        for leftover in (tmp, *(Path(f"{tmp}{end}") for end in SIDECARS)):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise GalleryError(
                f"{target}: writing the backup of {store.path} failed ({exc.strerror or exc}); nothing was "
                f"written at {target}. Check that {target.absolute().parent} is writable and has room for "
                "a copy of the gallery, then retry"
            ) from exc
        raise
    return target


def _check_target(source: str, target: Path, overwrite: bool) -> None:
    """Refuse a target that is the gallery, one of its SQLite files, a folder, in use, or that exists
    without `overwrite`, before anything is written."""
    if source != MEMORY:
        gallery = Path(source).resolve()
        own = {gallery, *(gallery.with_name(gallery.name + end) for end in SIDECARS)}
        if target.resolve() in own or (target.exists() and os.path.samefile(target, gallery)):
            raise GalleryError(
                f"{target}: is the gallery being backed up ({source}) or one of its SQLite files; a "
                "backup goes to another path, e.g. "
                f"{gallery.with_name(gallery.stem + '-backup' + gallery.suffix)}"
            )
    if target.is_dir():
        raise GalleryError(f"{target}: is a folder; name the backup file, e.g. {target / 'gallery.db'}")
    exists = os.path.lexists(target)
    for end in SIDECARS:
        sidecar = Path(f"{target}{end}")
        if not os.path.lexists(sidecar):
            continue
        if exists:
            raise GalleryError(
                f"{target}: is in use ({sidecar.name} exists: a process has it open, or was killed with it "
                "open); replacing it now could corrupt the backup and that process's view of it. Stop what "
                f"uses {target.name} (closing it removes {sidecar.name}), or choose another path"
            )
        raise GalleryError(
            f"{sidecar}: a leftover SQLite file of a deleted {target.name}; SQLite would apply it to the "
            "backup written there. Remove it (and the other leftover -wal/-shm files), or choose another "
            "path"
        )
    if exists and not overwrite:
        raise GalleryError(
            f"{target}: exists; choose another path, or pass overwrite=True (CLI: --overwrite) to replace it"
        )


def _copy(store: GalleryStore, tmp: Path, target: Path) -> None:
    """Back the gallery up into the empty file `tmp` and check the copy, closing it afterwards."""
    conn: Any = None
    try:
        conn = store.connect_like(str(tmp))
        store.copy_into(conn)
        _check_copy(store, conn, target)
    except database_errors() as exc:
        if "malformed" in str(exc) or "corrupt" in str(exc):  # SQLITE_CORRUPT: the pages copied are bad
            raise _damaged(store, target, str(exc)) from exc
        raise GalleryError(
            f"{target}: backing up {store.path} failed ({exc}); nothing was written at {target}. Check "
            f"that {target.absolute().parent} is writable and has room for a copy of the gallery, then retry"
        ) from exc
    finally:
        if conn is not None:
            conn.close()  # the last connection: folds the copy's own -wal (from the checks) into it
    if os.path.lexists(f"{tmp}-wal"):  # closing did not fold it in: the file alone is not the copy
        raise GalleryError(f"{target}: the backup could not be completed (its -wal remained); retry")
    with tmp.open("rb") as fh:  # no connection of this process is open on `tmp` now
        head = fh.read(len(SQLITE_HEADER))
    if (head == SQLITE_HEADER) == store.encrypted:
        expected = "encrypted with the gallery's key" if store.encrypted else "a plain SQLite file"
        raise GalleryError(
            f"{target}: the copy of {store.path} is not {expected}, so it was not written; report this "
            "with your SQLite / sqlcipher3 versions, and use `vireid gallery export` meanwhile"
        )


def _check_copy(store: GalleryStore, conn: Any, target: Path) -> None:
    """The copy is sound and the same gallery: integrity, application id, schema version and binding."""
    problems = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall() if row[0] != "ok"]
    if problems:
        raise _damaged(store, target, "; ".join(problems[:3]))
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    meta = read_meta(conn, str(target))
    wanted = store.meta
    same = (meta.embedding_space, meta.dim, meta.schema_version) == (
        wanted.embedding_space,
        wanted.dim,
        wanted.schema_version,
    )
    if app_id != APPLICATION_ID or not same:
        raise GalleryError(
            f"{target}: the copy of {store.path} does not read back as the same gallery (application id "
            f"{app_id:#x}, schema {meta.schema_version}, space {meta.embedding_space!r}, dim {meta.dim}), so "
            "it was not written; retry, and report this if it repeats"
        )


def _damaged(store: GalleryStore, target: Path, why: str) -> GalleryError:
    return GalleryError(
        f"{store.path}: the gallery is damaged ({why}), so no backup was written at {target}. Export what "
        "can still be read (`vireid gallery export`), or restore an earlier backup"
    )


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows it (best effort: the copy is complete
    either way)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
