"""Encryption at rest for galleries: SQLCipher (AES-256, per-page HMAC) through the `crypto` extra.

A gallery is encrypted when a key is given at creation, and must be opened with the same key. The key
never travels on a command line (it would show in `ps` and shell history): it comes from

- `key_file=` / `vireid gallery --key-file PATH`: a file holding the passphrase (its first line); the file
  must not be readable by group or others;
- the environment: `VIREID_GALLERY_KEY` (the passphrase) or `VIREID_GALLERY_KEY_FILE` (a key file path),
  which is how `vireid run` and `Pipeline(gallery="site.db")` pick it up.

Both sources give the passphrase by one rule (`passphrase`): the first line, stripped of surrounding
whitespace, so a trailing newline from a file or a secret store never changes the key.

Without a key a gallery is a plain SQLite file (still created owner-only).
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import threading
from pathlib import Path
from typing import Any

from ..errors import GalleryError, require

log = logging.getLogger("vireid.gallery")
KEY_ENV = "VIREID_GALLERY_KEY"
KEY_FILE_ENV = "VIREID_GALLERY_KEY_FILE"


def resolve_key(key_file: str | Path | None = None) -> str | None:
    """The passphrase from `key_file`, `$VIREID_GALLERY_KEY` or `$VIREID_GALLERY_KEY_FILE`; or None."""
    if key_file is not None:
        return _read_key_file(Path(key_file))
    env_key = passphrase(os.environ.get(KEY_ENV, ""))
    if env_key:
        return env_key
    if os.environ.get(KEY_FILE_ENV, "").strip():
        return _read_key_file(Path(os.environ[KEY_FILE_ENV]))
    empty = [f"${name}" for name in (KEY_ENV, KEY_FILE_ENV) if name in os.environ]
    if empty:  # an empty secret in a deploy script must not silently create a plaintext gallery
        raise GalleryError(
            f"{' and '.join(empty)} {'is' if len(empty) == 1 else 'are'} set but empty (or blank); set the "
            "passphrase (or key file), or unset it to use a plain (unencrypted) gallery"
        )
    return None


def passphrase(text: str) -> str:
    """The passphrase in a key file's text or `$VIREID_GALLERY_KEY`: its first line, without surrounding
    whitespace ("" when blank). One rule for both sources, so the same secret opens the same gallery
    whether it comes from a file (which ends in a newline) or the environment (`$(cat keyfile)` keeps
    none, a Kubernetes secret made from the file keeps it)."""
    return text.splitlines()[0].strip() if text.strip() else ""


def _read_key_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GalleryError(f"{path}: cannot read the gallery key file ({exc.strerror or exc})") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise GalleryError(
            f"{path}: the gallery key file is readable by other users (mode {stat.S_IMODE(mode):o}); "
            f"restrict it with `chmod 600 {path}`"
        )
    key = passphrase(text)
    if not key:
        raise GalleryError(f"{path}: the gallery key file is empty; write the passphrase on its first line")
    return key


def connect(path: str, key: str, timeout: float) -> tuple[Any, str]:
    """An SQLCipher connection with `key` applied (raises `MissingDependencyError` naming the extra), and
    the key that opened it: a backup must be keyed the same (see `connect_new`).

    A gallery created by a vireid that took `$VIREID_GALLERY_KEY` as is (before `passphrase` stripped
    it) is keyed with the variable's whitespace too: when `key` is wrong and the raw variable differs
    from it only by that, the raw value is tried, so such a gallery still opens (with a warning)."""
    try:
        return connect_new(path, key, timeout), key
    except database_errors() as exc:
        raw = os.environ.get(KEY_ENV, "")
        if "not a database" not in str(exc) or raw == key or passphrase(raw) != key:
            raise
        conn = connect_new(path, raw, timeout)  # a wrong key again: the same error as before
    log.warning(
        "%s: opened with $%s including its surrounding whitespace: an older vireid, which kept that "
        "whitespace in the key, created this gallery. To key it by the stripped passphrase, `vireid "
        "gallery export` it and `vireid gallery import` the export into a new gallery",
        path,
        KEY_ENV,
    )
    return conn, raw


def connect_new(path: str, key: str, timeout: float) -> Any:
    """An SQLCipher connection keyed with exactly `key` (no fallback): for a file vireid creates, such
    as a backup's, and by `connect`."""
    dbapi = require("sqlcipher3.dbapi2", "crypto", "Encrypted galleries (SQLCipher)")
    conn = dbapi.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    quoted = key.replace("'", "''")
    conn.execute(f"PRAGMA key = '{quoted}'")
    try:
        _check_key(conn)
    except BaseException:
        conn.close()
        raise
    return conn


_LOG_LEVEL_LOCK = threading.Lock()  # SQLCipher's log level is process-wide


def _check_key(conn: Any) -> None:
    """Read the first page now, with SQLCipher's own log off: a wrong key then raises the error the store
    translates, without SQLCipher also printing its 'ERROR CORE ... hmac check failed' lines on stderr.
    (The log level is process-wide, so the previous one is restored.)"""
    with _LOG_LEVEL_LOCK:  # two threads opening galleries must not leave the log off for good
        (level,) = conn.execute("PRAGMA cipher_log_level").fetchone()
        conn.execute("PRAGMA cipher_log_level = NONE")
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.execute(f"PRAGMA cipher_log_level = {level}")


def database_errors() -> tuple[type[BaseException], ...]:
    """SQLCipher's error classes, when it is loaded (its module is not sqlite3's)."""
    module = sys.modules.get("sqlcipher3.dbapi2")
    return (module.DatabaseError,) if module is not None else ()


def is_locked_error(exc: BaseException) -> bool:
    """A busy/locked database, from sqlite3 or SQLCipher."""
    return type(exc).__name__ == "OperationalError" and ("locked" in str(exc) or "busy" in str(exc))
