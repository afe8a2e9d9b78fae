"""Silence ONNX Runtime's quantiser for one call, in the calling thread only.

The quantiser talks through the root logger (an INFO line per bias copy, and at WARNING its advice to
pre-process the model, which `to_onnx` already did with onnxslim) and its entropy and percentile
calibrators `print` their progress ("Number of tensors : ..."). `quiet_quantiser()` drops the first,
and sends the prints to this package's DEBUG log. An application that quantises in one thread while
others print or log must lose none of theirs, so nothing here changes process-wide state for longer
than the call, and what it does change (`sys.stdout`, a filter and a handler on the root logger) tells
the calling thread apart from the others.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

log = logging.getLogger("vireid.export")

_ADVICE = "pre-processing before quantization"
_lock = threading.Lock()
_router: _ThreadRoutedStdout | None = None


class _ThreadRoutedStdout:
    """A `sys.stdout` stand-in: writes from a capturing thread go to its buffer, all others to the stream
    that was `sys.stdout` before."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.captures: dict[int, io.StringIO] = {}

    def write(self, text: str) -> int:
        buffer = self.captures.get(threading.get_ident())
        return (buffer if buffer is not None else self.stream).write(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno ... of the real stream
        return getattr(self.stream, name)


@contextlib.contextmanager
def capture_thread_stdout() -> Iterator[io.StringIO]:
    """Collect what the calling thread prints during the block; other threads print as usual.

    One router serves every thread that captures at the same time; the last one out puts the original
    stream back, unless someone else replaced `sys.stdout` meanwhile (then theirs stays).
    """
    global _router
    buffer, ident = io.StringIO(), threading.get_ident()
    with _lock:
        if _router is None or sys.stdout is not _router:
            _router = _ThreadRoutedStdout(sys.stdout)
            sys.stdout = _router  # type: ignore[assignment]
        router = _router
        router.captures[ident] = buffer
    try:
        yield buffer
    finally:
        with _lock:
            router.captures.pop(ident, None)
            if not router.captures and sys.stdout is router:
                sys.stdout = router.stream
                _router = None


class _QuietThread(logging.Filter):
    """Drops the calling thread's root-logger records below WARNING, and its pre-processing advice."""

    def __init__(self) -> None:
        super().__init__()
        self.ident = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.ident:
            return True
        return record.levelno >= logging.WARNING and _ADVICE not in record.getMessage()


@contextlib.contextmanager
def quiet_quantiser() -> Iterator[None]:
    """Run the block with the quantiser's chatter silenced (see the module docstring).

    The root logger keeps its level. If it has no handler, `logging.lastResort` stands in as one for
    the call: the module-level `logging.info()` the quantiser uses would otherwise install a stderr
    handler for good (`basicConfig`), and other threads' warnings still reach stderr as they would
    have without it.
    """
    root = logging.getLogger()
    quiet = _QuietThread()
    stand_in = None
    if not root.handlers:
        stand_in = logging.lastResort or logging.NullHandler()
        root.addHandler(stand_in)
    root.addFilter(quiet)
    printed = io.StringIO()
    try:
        with capture_thread_stdout() as printed:
            yield
    finally:
        root.removeFilter(quiet)
        if stand_in is not None:
            root.removeHandler(stand_in)
        for line in printed.getvalue().splitlines():
            log.debug("onnxruntime quantiser: %s", line)
