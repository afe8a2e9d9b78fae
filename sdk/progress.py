"""Progress bars for long work, with no hard dependency.

Uses `tqdm` when it is installed (it is in the `train` and `dev` extras); the bare runtime falls back to a
quiet line-based reporter on stderr so `vireid synth` still shows progress with numpy + OpenCV alone.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(
    items: Iterable[T], desc: str = "", total: int | None = None, enabled: bool = True
) -> Iterator[T]:
    """Iterate over `items` while showing progress on stderr."""
    if not enabled:
        yield from items
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield from _plain(items, desc, total)
        return
    yield from tqdm(items, desc=desc, total=total, dynamic_ncols=True, leave=False)


def _plain(items: Iterable[T], desc: str, total: int | None) -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    last = 0.0
    count = 0
    for count, item in enumerate(items, 1):
        now = time.monotonic()
        if now - last > 2.0:
            shown = f"{count}/{total}" if total else str(count)
            print(f"{desc}: {shown}", file=sys.stderr, flush=True)
            last = now
        yield item
    print(f"{desc}: done ({count})", file=sys.stderr, flush=True)
