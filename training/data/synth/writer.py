"""Output folders, `meta.json`, image files and the worker pool shared by the dataset writers.

Folder policy: an empty or missing folder is filled; a folder whose `meta.json` records the same
settings and a finished run is reused as is; anything else is refused unless `overwrite=True`, which
removes only the entries the generator itself writes (never the whole folder). `meta.json` is written
last, so an interrupted run is never mistaken for a finished one.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from vireid.errors import ConfigError, DatasetError, VireidError
from vireid.progress import progress

from ..layouts import layout_of

log = logging.getLogger("vireid.synth")
META_FILE = "meta.json"
JPEG_QUALITY = 92
T = TypeVar("T")


@dataclass(frozen=True)
class SynthResult:
    """What a generator call did.

    Attributes:
        root: the output folder.
        files: number of files the dataset holds (images or videos, plus index files).
        reused: True when the folder already held this dataset and nothing was written.
    """

    root: Path
    files: int
    reused: bool


def read_meta(root: Path) -> dict[str, Any] | None:
    """The folder's `meta.json`, or None when it is missing or unreadable."""
    try:
        return json.loads((root / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def other_settings(root: Path, meta: dict[str, Any]) -> str | None:
    """How the finished synthetic set in `root` differs from `meta` (`Config.to_meta()`), e.g.
    "version='1' (asked '2')": a folder its owner may regenerate with `overwrite=True`. None when `root`
    holds exactly that set, holds no finished synthetic set, or holds anything else."""
    existing = read_meta(Path(root))
    if not existing or existing.get("generator") != "vireid.synth" or not existing.get("complete"):
        return None
    diff = [f"{k}={existing.get(k)!r} (asked {v!r})" for k, v in meta.items() if existing.get(k) != v]
    return ", ".join(diff) or None


def reused_result(root: Path) -> SynthResult:
    """The result of a call that found its dataset already in place."""
    meta = read_meta(root) or {}
    made_with = meta.get("libraries")
    if made_with and made_with != library_versions():
        log.warning(
            "%s: reused as it is; it was rendered with %s, this machine has %s, so a fresh render of the "
            "same settings would differ in its bytes (pass --overwrite to render it again here)",
            root,
            made_with,
            library_versions(),
        )
    return SynthResult(Path(root), int(meta.get("files", 0)), reused=True)


def _check_writable(root: Path) -> None:
    probe = root / ".vireid-write-test"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DatasetError(
            root, f"cannot write the dataset here ({exc.strerror}); choose another --out"
        ) from None


def prepare_out_dir(
    root: Path, meta: dict[str, Any], owned: Sequence[str], overwrite: bool, also_remove: Sequence[str] = ()
) -> bool:
    """Make `root` ready for writing; True when it already holds exactly this dataset.

    Args:
        root: output folder.
        meta: the settings (`Config.to_meta()`) of the run.
        owned: top-level names the generator writes (removed by `overwrite`).
        overwrite: replace a folder that holds something else.

    Raises:
        DatasetError: `root` is a file, is not writable, or holds other content and `overwrite` is off.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DatasetError(root, "exists and is not a folder; choose a folder for --out")
    if root.is_dir() and any(root.iterdir()):
        existing = read_meta(root)
        _refuse_another_kind(root, existing, meta)
        if not overwrite and existing is not None and existing.get("complete") and _same(existing, meta):
            return True
        if not overwrite:
            raise DatasetError(root, _refusal(existing, meta, owned))
        for name in (*owned, *also_remove, META_FILE):
            _remove(root / name)
    _check_writable(root)
    return False


def _refuse_another_kind(root: Path, existing: dict[str, Any] | None, meta: dict[str, Any]) -> None:
    """A folder holding another kind of dataset (finished, interrupted or real) is never written over:
    --overwrite removes only the asked kind's own folders and would leave two layouts mixed."""
    own_kind = None  # the kind recorded by vireid.synth in the folder's metadata
    if existing is not None and existing.get("generator") == "vireid.synth":
        own_kind = existing.get("kind")
    kinds = {kind for kind in (own_kind, layout_of(root)) if kind is not None and kind != meta.get("kind")}
    if kinds:
        kind = sorted(kinds)[0]
        raise DatasetError(
            root,
            f"holds a {kind} dataset; write the {meta.get('kind')} set to another folder, or delete this "
            "one (--overwrite replaces only a set of the same kind)",
        )


def _same(existing: dict[str, Any], meta: dict[str, Any]) -> bool:
    return all(existing.get(key) == value for key, value in meta.items())


def _refusal(existing: dict[str, Any] | None, meta: dict[str, Any], owned: Sequence[str]) -> str:
    names = ", ".join(f"{n}/" if "." not in n else n for n in owned)
    if existing is None:
        what = "is not empty and was not written by `vireid synth` (or a run was interrupted)"
    else:
        diff = [f"{k}={existing.get(k)!r} (asked {v!r})" for k, v in meta.items() if existing.get(k) != v]
        what = "holds a synthetic dataset with other settings: " + ", ".join(diff or ["unfinished run"])
    return (
        f"output folder {what}. Pass --overwrite to replace its {names} and {META_FILE}, "
        "or choose an empty folder"
    )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def library_versions() -> dict[str, str]:
    """The libraries the rendered bytes depend on: the same settings give other bytes under another
    numpy (its generators and arithmetic) or OpenCV (resizing, drawing, JPEG)."""
    return {"numpy": np.__version__, "opencv": cv2.__version__}


def write_meta(root: Path, meta: dict[str, Any], **extra: Any) -> None:
    """Write `meta.json` (settings, the library versions, `complete: true` and `extra`), formatted
    deterministically."""
    body = {**meta, **extra, "libraries": library_versions(), "complete": True}
    (root / META_FILE).write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an RGB (`[H, W, 3]`) or grey (`[H, W]`) uint8 image; JPEG quality 92 for `.jpg`.

    Raises:
        DatasetError: OpenCV could not write the file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), data, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise DatasetError(path, "OpenCV could not write this image (disk full or unsupported suffix?)")


def default_workers() -> int:
    """Worker processes used when none are requested: the CPUs this process may run on (at most 8)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


# forkserver where the platform has it: workers fork from a clean server process, never from the caller,
# whose OpenCV thread pool would make a plain fork() deadlock. Like spawn, it needs the caller's script
# to guard its entry point with `if __name__ == "__main__":`.
_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _init_worker() -> None:
    cv2.setNumThreads(1)


def run_tasks(
    func: Callable[[T], int], tasks: Sequence[T], workers: int | None, desc: str, show_progress: bool
) -> int:
    """Run `func` on every task (in worker processes when `workers > 1`); returns the sum of results.

    Results never depend on `workers`: each task seeds itself from its own keys.
    """
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    workers = min(workers, max(1, len(tasks)))
    if workers == 1:
        return sum(progress(map(func, tasks), desc=desc, total=len(tasks), enabled=show_progress))
    chunk = max(1, min(16, len(tasks) // (workers * 8)))
    # An executor (not multiprocessing.Pool) so that a worker that cannot start or dies raises
    # BrokenProcessPool here instead of being respawned for ever.
    context = multiprocessing.get_context(_START_METHOD)
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
            done: Iterable[int] = pool.map(func, tasks, chunksize=chunk)
            return sum(progress(done, desc=desc, total=len(tasks), enabled=show_progress))
    except BrokenProcessPool as exc:
        raise VireidError(
            f"{desc}: a worker process died ({exc}). A script that calls the generator with workers > 1 "
            'needs an `if __name__ == "__main__":` guard; otherwise run with workers=1 (--workers 1) '
            "to see the cause"
        ) from exc
