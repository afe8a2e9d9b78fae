"""Online backup of a gallery: a consistent copy taken while other processes write to it.

SQLite's online backup API (`sqlite3.Connection.backup`) copies the database page by page through the
gallery's own connection, in one read transaction: the copy is one committed state, WAL included
(copying the file would miss the commits still in `-wal`, and reading it from Python could drop this
process's locks; see `schema.check_header`), while a writer such as `vireid run` goes on committing,
which WAL lets it do.

The copy is written to a temporary file next to the target (owner-only, like a gallery), checked
(`PRAGMA quick_check`, the gallery's schema version, application id and binding, encrypted exactly
when the gallery is), fsynced and only then put at the target in one step: renamed over it with
`overwrite`, otherwise hard-linked to it, which fails if a file appeared there since the target was
checked (a rename would replace it). An interrupted or failed backup never leaves a half file at the
target, only, after a kill, a hidden `.NAME.*.tmp` beside it. An encrypted gallery's copy is keyed with
the same key (SQLCipher copies pages between connections keyed alike), so it opens with the gallery's
key and with nothing else.

The connection that writes and checks the copy holds it in exclusive locking mode with an in-memory
rollback journal: the copy of a gallery file is a WAL database (the gallery's header says so; an
in-memory gallery's copy is a rollback-journal file until `Gallery.open` turns it to WAL), and SQLite
then keeps its WAL index in this process's memory instead of a `-shm` file beside it, and writes no
`-journal` there (the temporary file is discarded if the copy fails, so that journal has nothing to
protect). Only a `-wal` comes and goes during the checks. Shared-memory `-shm` files are what fails on
network shares (CIFS/SMB, NFS) that do not support them; the copy itself opens later as any WAL
gallery.
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

    A `target` that is a symbolic link is refused, with or without `overwrite`: replacing the file at
    that path would replace the link itself with a regular file and leave the file it points to as it
    was (a restore onto a link would look done while the real gallery stayed old), and writing through
    the link would change a file the caller did not name, with the temporary file in that file's folder.
    The message names the real file, to back up onto that path instead.

    Raises:
        GalleryError: `target` is the gallery (or one of its SQLite files), a folder, a symbolic link,
            exists and `overwrite` is false (also when it appears while the copy is written), is in use
            (its `-wal` exists, next to it or next to the file a link names), cannot be written, or the
            copy fails its checks (a damaged gallery); nothing is left at `target` then.
    """
    _check_target(store, target, overwrite)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = create_unique(target, 0o600)
    except OSError as exc:
        raise GalleryError(
            f"{target}: cannot write the backup there ({exc.strerror or exc}); check that the folder "
            f"{target.absolute().parent} is writable by this user, or choose another path"
        ) from exc
    try:
        try:
            os.chmod(tmp, 0o600)  # owner-only whatever the umask: the copy holds the same biometric data
            _copy(store, tmp, target)
            # fsync the descriptor that created the file, as `atomic_file` does: one opened for writing
            # (Windows refuses to flush a read-only one); kept open until SQLite has closed the copy, so
            # closing it cannot drop SQLite's locks on it
            os.fsync(fd)
        finally:
            os.close(fd)
        _publish(tmp, target, overwrite)
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
    try:
        tmp.unlink(missing_ok=True)  # after a hard link, the second name of the backup
    except OSError as exc:
        raise GalleryError(
            f"{target}: the backup was written, but {tmp}, another name of the same file, could not be "
            f"removed ({exc.strerror or exc}); delete it (it holds the same biometric data)"
        ) from exc
    _sync_folder(target.parent)
    return target


def _publish(tmp: Path, target: Path, overwrite: bool) -> None:
    """Put the checked, fsynced copy `tmp` at `target` in one step: with `overwrite` a rename over
    whatever is there; otherwise a hard link, which fails if `target` appeared since `_check_target`
    looked (that file is kept and the backup refused as for an existing one), then `backup` removes the
    name `tmp`. On a file system without hard links (FAT, exFAT, some network shares) the copy is
    renamed instead, right after a second look: on Windows a rename never replaces a file; elsewhere a
    file created between that look and the rename would be replaced."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise
        except OSError:  # no hard links here (EPERM, EOPNOTSUPP, ...); a real I/O error recurs below
            if os.path.lexists(target):
                raise FileExistsError(target) from None
            (os.rename if os.name == "nt" else os.replace)(tmp, target)
    except FileExistsError:
        raise _exists(target) from None


def _exists(target: Path) -> GalleryError:
    return GalleryError(
        f"{target}: exists; choose another path, or pass overwrite=True (CLI: --overwrite) to replace it"
    )


def _check_target(store: GalleryStore, target: Path, overwrite: bool) -> None:
    """Refuse a target that is the gallery, one of its SQLite files, a folder, in use, a symbolic link,
    or that exists without `overwrite`, before anything is written."""
    real = Path(os.path.realpath(target))  # what SQLite would open for it: links followed (never raises)
    if store.path != MEMORY:
        _refuse_the_gallery(store, target, real)
    if target.is_dir():
        raise GalleryError(f"{target}: is a folder; name the backup file, e.g. {target / 'gallery.db'}")
    # SQLite keeps a database's -wal/-shm next to the file itself, after following links: look next to
    # the name given and next to the file it names
    for name, here in ((target, True), (real, False)):
        present = os.path.lexists(name)
        for end in SIDECARS:
            sidecar = Path(f"{name}{end}")
            if not os.path.lexists(sidecar):
                continue
            shown = sidecar.name if here else str(sidecar)
            if present:
                raise GalleryError(
                    f"{target}: is in use ({shown} exists: a process has {name.name} open, or was killed "
                    "with it open); replacing it now could corrupt the backup and that process's view of "
                    f"it. Stop what uses {name} (closing it removes {sidecar.name}), or choose another path"
                )
            raise GalleryError(
                f"{sidecar}: a leftover SQLite file of a deleted {name.name}; SQLite would apply it to the "
                "backup written there. Remove it (and the other leftover -wal/-shm files), or choose "
                "another path"
            )
    if target.is_symlink():
        raise GalleryError(
            f"{target}: is a symbolic link to {real}; a backup would replace the link itself with a "
            f"regular file and leave {real} as it was. Write the backup to {real} itself (the link then "
            "shows it), or remove the link first"
        )
    if os.path.lexists(target) and not overwrite:
        raise _exists(target)


def _refuse_the_gallery(store: GalleryStore, target: Path, real: Path) -> None:
    """Refuse `target` when it is the gallery's file (under any name: a link, a hard link, `..`) or one
    of its SQLite files. Compared by the names SQLite gave the gallery's files and by the file's identity
    (device, inode) recorded when the store opened it, never through `store.path`: that may be relative
    to a folder the process has since left, or name nothing after the file was renamed while open."""
    gallery = _gallery_file(store)
    names = {gallery, Path(os.path.realpath(gallery))}
    own = {Path(f"{name}{end}") for name in names for end in ("", *SIDECARS)}
    opened = store.file_identity
    if real in own or (opened is not None and _file_id(target) == opened):
        raise GalleryError(
            f"{target}: is the gallery being backed up ({store.path}) or one of its SQLite files; a "
            "backup goes to another path, e.g. "
            f"{gallery.with_name(gallery.stem + '-backup' + gallery.suffix)}"
        )


def _gallery_file(store: GalleryStore) -> Path:
    """The gallery's file as SQLite named it when it opened it (`PRAGMA database_list`): an absolute
    path, links followed by recent SQLite releases, after which its -wal/-shm are named whatever the
    process did since (changed folder, renamed the file)."""
    with contextlib.suppress(*database_errors()), store.snapshot() as conn:
        for _, schema, name in conn.execute("PRAGMA database_list").fetchall():
            if schema == "main" and name:
                return Path(name)
    return Path(store.path).absolute()


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file `path` names, links followed; None if there is none (or no access)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def _copy(store: GalleryStore, tmp: Path, target: Path) -> None:
    """Back the gallery up into the empty file `tmp` and check the copy, closing it afterwards."""
    conn: Any = None
    try:
        conn = store.connect_like(str(tmp))
        # no -shm and no -journal beside the copy (see the module's docstring): set before the copy
        # makes it a WAL database, so the checks below read it with the WAL index in memory
        conn.execute("PRAGMA locking_mode = EXCLUSIVE").fetchone()
        conn.execute("PRAGMA journal_mode = MEMORY").fetchone()
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


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows it (best effort: the copy is complete
    either way)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
