"""Progress bars for long work, with no hard dependency.

Uses `tqdm` on a terminal when it is installed (it is in the `train` and `dev` extras). Otherwise (the bare
runtime, or stderr redirected to a log file, where a bar's carriage returns pile up into one endless
line) a quiet line-based reporter prints a line every few seconds and a closing line for long loops.
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
    if not _on_terminal():
        yield from _plain(items, desc, total, every=10.0)
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield from _plain(items, desc, total, every=2.0)
        return
    yield from tqdm(items, desc=desc, total=total, dynamic_ncols=True, leave=False)


def _on_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _plain(items: Iterable[T], desc: str, total: int | None, every: float) -> Iterator[T]:
    """A line every `every` seconds (the first after `every`), and a closing line if any was printed."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    last = time.monotonic()
    count, printed = 0, False
    for count, item in enumerate(items, 1):
        now = time.monotonic()
        if now - last > every:
            shown = f"{count}/{total}" if total else str(count)
            print(f"{desc}: {shown}", file=sys.stderr, flush=True)
            last, printed = now, True
        yield item
    if printed:
        print(f"{desc}: done ({count})", file=sys.stderr, flush=True)
