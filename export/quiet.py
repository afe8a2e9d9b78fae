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
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

log = logging.getLogger("vireid.export")

_ADVICE = "pre-processing before quantization"
_lock = threading.Lock()
_router: _ThreadRoutedStdout | None = None
_stand_in: logging.Handler | None = None  # the root logger's temporary handler, shared by concurrent calls
_stand_in_users = 0


class _ThreadRoutedStdout:
    """A `sys.stdout` stand-in: writes from a capturing thread go to its buffer, all others to the stream
    that was `sys.stdout` before."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.captures: dict[int, io.StringIO] = {}

    def write(self, text: str) -> int:
        buffer = self.captures.get(threading.get_ident())
        return (buffer if buffer is not None else self.stream).write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno ... of the real stream
        return getattr(self.stream, name)


@contextlib.contextmanager
def capture_thread_stdout() -> Iterator[io.StringIO]:
    """Collect what the calling thread prints during the block; other threads print as usual.

    One router serves every thread that captures at the same time; the last one out puts the original
    stream back, unless someone else replaced `sys.stdout` meanwhile (then theirs stays). A capture
    nested in another in the same thread collects its own block and hands back to the outer one. With
    no `sys.stdout` at all (pythonw, a detached service) prints go nowhere anyway: nothing is routed.
    """
    global _router
    buffer, ident = io.StringIO(), threading.get_ident()
    with _lock:
        if sys.stdout is None:
            router = None
        else:
            if _router is None or sys.stdout is not _router:
                _router = _ThreadRoutedStdout(sys.stdout)
                sys.stdout = _router
            router = _router
            outer = router.captures.get(ident)
            router.captures[ident] = buffer
    try:
        yield buffer
    finally:
        if router is not None:
            with _lock:
                if outer is not None:
                    router.captures[ident] = outer
                else:
                    router.captures.pop(ident, None)
                stream = router.stream  # read first: mypy widens `router` back to Optional after `is`
                if not router.captures and sys.stdout is router:
                    sys.stdout = stream
                    _router = None


class _QuietThread(logging.Filter):
    """Drops the calling thread's root-logger records below WARNING, and its pre-processing advice.

    A logger's filters run in the thread that logs, so the current thread identifies the record's
    origin even when `logging.logThreads` is off.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ident = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        if threading.get_ident() != self.ident:
            return True
        return record.levelno >= logging.WARNING and _ADVICE not in record.getMessage()


@contextlib.contextmanager
def _root_stand_in() -> Iterator[None]:
    """Give a root logger without handlers one for the block: `logging.lastResort` (same threshold and
    stream as when there is none), shared by concurrent calls and removed by the last one out.

    Without it the quantiser's module-level `logging.info()` would run `basicConfig()` and install a
    stderr handler for good. The price: another thread's `logging.basicConfig()` during the block
    sees a handler and does nothing.
    """
    global _stand_in, _stand_in_users
    root = logging.getLogger()
    with _lock:
        if _stand_in_users == 0 and not root.handlers:
            _stand_in = logging.lastResort or logging.NullHandler()
            root.addHandler(_stand_in)
        if _stand_in is not None:
            _stand_in_users += 1
        counted = _stand_in is not None
    try:
        yield
    finally:
        if counted:
            with _lock:
                _stand_in_users -= 1
                if _stand_in_users == 0 and _stand_in is not None:
                    root.removeHandler(_stand_in)
                    _stand_in = None


@contextlib.contextmanager
def quiet_quantiser() -> Iterator[None]:
    """Run the block with the quantiser's chatter silenced (see the module docstring); the root logger
    keeps its level, and gets a handler for the block only if it has none (`_root_stand_in`)."""
    root = logging.getLogger()
    quiet = _QuietThread()
    root.addFilter(quiet)
    printed = io.StringIO()
    try:
        with _root_stand_in(), capture_thread_stdout() as printed:
            yield
    finally:
        root.removeFilter(quiet)
        for line in printed.getvalue().splitlines():
            log.debug("onnxruntime quantiser: %s", line)
