"""Atomic file writes: a file is either its old self or completely new, never half written.

Everything vireid writes that a user keeps (models, cards, engines, exports, rewritten event logs)
goes through `atomic_file`: a temporary file with a unique name in the target's folder, flushed and
fsynced, then renamed over the target. On any error the temporary file is removed and the target is
left as it was, so a full disk or a crash never leaves a truncated model behind, and two processes
writing the same target never write into each other's temporary file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb", *, private: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces `path` when the block ends without an error.

    Args:
        path: the file to (re)write; its folder is created.
        mode: `wb` or `w` (text, UTF-8).
        private: owner-only permissions (0600) from the first byte (biometric data); otherwise the
            permissions a new file gets under the process's umask.

    Raises:
        OSError: the folder or the file cannot be written (the target is unchanged).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = create_unique(path, 0o600 if private else 0o666)  # the kernel applies the umask
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_unique(path: Path, mode: int = 0o666) -> tuple[Path, int]:
    """A new, exclusively created temporary file next to `path` (never a followed symlink, never another
    writer's) and its descriptor; `mode` before the umask. For writers that need a path rather than a
    handle (safetensors), who then rename it over `path` themselves."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: cannot create a unique temporary file next to {path.name}")


def write_atomic(
    path: str | Path, data: bytes | bytearray | memoryview | str, *, private: bool = False
) -> Path:
    """Write `data` (bytes, or text as UTF-8) to `path` atomically; returns `path` (see `atomic_file`)."""
    text = isinstance(data, str)
    with atomic_file(path, "w" if text else "wb", private=private) as handle:
        handle.write(data if isinstance(data, str) else memoryview(data).tobytes())
    return Path(path)
