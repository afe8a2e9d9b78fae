"""On-screen windows for `ShowSink`: every OpenCV window call of the process on one display thread.

OpenCV's window functions are not thread-safe, and its Qt backend (the GUI of the `opencv-python`
wheels on Linux, and of Debian's own OpenCV) ties itself to the thread of the first window call: a
window made or shown from any other thread later hands the call to that first thread and waits for
it, forever if that thread does not run Qt's event loop (opencv/opencv#25290). JetPack's GTK build
has no such hand-off but no thread safety either. So nothing here touches a window from the caller's
thread: sinks hand frames to one long-lived display thread (one per process, whichever pipeline or
thread shows frames), which makes, shows, refreshes and closes every window, keeping only the latest
frame of each window (a slow display drops frames, it never holds the pipeline back).

GUI support is checked without a window (a window on the main thread would tie Qt to it, and with
no X display the Qt wheel aborts the process instead of raising): OpenCV's build information must
name a GUI, and on Linux `DISPLAY` or `WAYLAND_DISPLAY` must be set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Callable

import cv2
import numpy as np

from ..errors import StreamError

log = logging.getLogger("vireid")

QUIT_KEYS = (ord("q"), 27)  # q, Esc
_NO_GUI = (
    "--show needs an OpenCV build with a GUI; this one has none (opencv-python-headless?). Install "
    "opencv-python instead, or write annotated videos with --video-out DIR"
)


def gui_backend(build_information: str | None = None) -> str | None:
    """The GUI OpenCV was built with (`QT5`, `GTK3`, ...) from its build information, else None."""
    info = cv2.getBuildInformation() if build_information is None else build_information
    match = re.search(r"^[ \t]*GUI:[ \t]*(\S+)", info, re.M)
    if match:
        return None if match.group(1).upper() == "NONE" else match.group(1)
    older = re.search(r"^[ \t]*(QT|GTK\+(?: \d)?|Win32 UI|Cocoa):[ \t]*YES", info, re.M)  # before 4.5
    return older.group(1) if older else None


def check_gui(build_information: str | None = None, environ: dict[str, str] | None = None) -> None:
    """Raise `StreamError` when windows cannot be shown: no GUI in this OpenCV, or (Linux) no display."""
    if gui_backend(build_information) is None:
        raise StreamError(_NO_GUI)
    env = os.environ if environ is None else environ
    if sys.platform.startswith("linux") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        raise StreamError(
            "--show needs a display: neither DISPLAY nor WAYLAND_DISPLAY is set (a service, SSH without "
            "-X); run it in a desktop session, or write annotated videos with --video-out DIR"
        )


class Display:
    """The process's display thread (`Display.shared()`): shows the latest frame handed to each window,
    refreshes windows, reports quit keys and closes windows, all on that thread."""

    _shared: Display | None = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._pending: dict[str, np.ndarray] = {}
        self._closing: set[str] = set()
        self._open: set[str] = set()
        self._listeners: list[Callable[[], None]] = []
        self.error: BaseException | None = None  # what stopped the thread, if anything did
        self._thread = threading.Thread(target=self._loop, name="vireid-display", daemon=True)
        self._thread.start()

    @classmethod
    def shared(cls) -> Display:
        """The one display of this process, started on first use (never a second one: with Qt, a
        window call from another thread would wait on the first for good)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def show(self, window: str, image: np.ndarray) -> None:
        """Queue `image` for `window` (replacing a frame not shown yet); raises what stopped the thread."""
        if self.error is not None:
            raise StreamError(f"--show: the display stopped: {self.error}") from self.error
        with self._lock:
            self._pending[window] = image
            self._closing.discard(window)
            self._lock.notify()

    def close(self, windows: set[str]) -> None:
        """Ask the display thread to close these windows (frames queued for them are dropped)."""
        with self._lock:
            for window in windows:
                self._pending.pop(window, None)
            self._closing |= windows
            self._lock.notify()

    def on_quit(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` (on the display thread) when q or Esc is pressed in a window; returns a
        function that removes it."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def _loop(self) -> None:
        try:
            while True:
                with self._lock:
                    while not (self._pending or self._closing or self._open):
                        self._lock.wait()
                    frames, self._pending = self._pending, {}
                    closing, self._closing = self._closing, set()
                for window in closing & self._open:
                    cv2.destroyWindow(window)
                self._open -= closing
                for window, image in frames.items():
                    if window not in self._open:
                        cv2.namedWindow(window, cv2.WINDOW_NORMAL)
                        self._open.add(window)
                    cv2.imshow(window, image)
                if self._open and cv2.waitKey(10) & 0xFF in QUIT_KEYS:  # also what repaints the windows
                    self._quit()
        except Exception as exc:  # e.g. the display went away (cv2.error): the next show() says so
            self.error = exc

    def _quit(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener()
            except Exception:  # one caller's bad callback must not close every window of the process
                log.exception("a --show quit callback failed")
