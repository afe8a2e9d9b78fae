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
name a GUI, and on Linux a Qt build needs `DISPLAY` (the wheels' Qt has only its X11 plugin), a GTK
build `DISPLAY` or `WAYLAND_DISPLAY`.
"""

from __future__ import annotations

import atexit
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
CLOSE_WAIT_S = 2.0  # how long close() and stop() wait for the display thread
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
    # before 4.5: `QT: YES (ver 5.x)`, `QT 5.x: YES`, `GTK+: YES (ver 3.x)`, `GTK+ 2.x: YES` (OpenCV 3)
    older = re.search(r"^[ \t]*(QT|GTK\+|Win32 UI|Cocoa)(?: \d\.x)?:[ \t]*YES", info, re.M)
    return older.group(1) if older else None


def check_gui(build_information: str | None = None, environ: dict[str, str] | None = None) -> None:
    """Raise `StreamError` when windows cannot be shown: no GUI in this OpenCV, or (Linux) no display."""
    backend = gui_backend(build_information)
    if backend is None:
        raise StreamError(_NO_GUI)
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return
    if backend.upper().startswith("QT"):  # the opencv-python wheels' Qt has only its X11 (xcb) plugin
        platform = env.get("QT_QPA_PLATFORM", "")
        if platform and not platform.startswith("xcb"):
            raise StreamError(
                f"--show: QT_QPA_PLATFORM={platform}, but this OpenCV's Qt may only show windows through "
                "X11 (the opencv-python wheels ship no other plugin); unset it or set it to xcb"
            )
        if not env.get("DISPLAY"):
            raise StreamError(
                "--show needs an X display (DISPLAY is not set: a service, SSH without -X, or a Wayland "
                "session without XWayland); run it in a desktop session, or write annotated videos "
                "with --video-out DIR"
            )
    elif not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        raise StreamError(
            "--show needs a display: neither DISPLAY nor WAYLAND_DISPLAY is set (a service, SSH without "
            "-X); run it in a desktop session, or write annotated videos with --video-out DIR"
        )


class Display:
    """The process's display thread (`Display.shared()`): shows the latest frame handed to each window,
    refreshes windows, reports quit keys and closes windows, all on that thread.

    Windows are named by the caller (ShowSink: `vireid <camera>`), so two pipelines showing cameras of
    one name share a window, and q / Esc reaches every listener of the process."""

    _shared: Display | None = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._pending: dict[str, np.ndarray] = {}
        self._closing: set[str] = set()
        self._open: set[str] = set()  # changed under the lock, by the display thread only
        self._listeners: list[Callable[[], None]] = []
        self._stopping = False
        self.error: BaseException | None = None  # what stopped the thread, if anything did
        self._thread = threading.Thread(target=self._loop, name="vireid-display", daemon=True)
        self._thread.start()

    @classmethod
    def shared(cls) -> Display:
        """The one display of this process, started on first use (never a second one: with Qt, a
        window call from another thread would wait on the first for good) and stopped at exit."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
                atexit.register(cls._shared.stop)
            return cls._shared

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def show(self, window: str, image: np.ndarray) -> None:
        """Queue `image` for `window` (replacing a frame not shown yet); raises what stopped the thread."""
        if self.error is not None or not self._thread.is_alive():
            reason = self.error or "its thread ended"
            raise StreamError(f"--show: the display stopped: {reason}") from self.error
        with self._lock:
            self._pending[window] = image
            self._closing.discard(window)
            self._lock.notify_all()

    def close(self, windows: set[str], timeout: float = CLOSE_WAIT_S) -> None:
        """Close these windows (frames queued for them are dropped) and wait, at most `timeout` s, for
        the display thread to have done it: a process that exits while the thread is inside an OpenCV
        call is aborted by the C++ runtime (the interpreter ends daemon threads that come back)."""
        with self._lock:
            for window in windows:
                self._pending.pop(window, None)
            self._closing |= windows
            self._lock.notify_all()
            if threading.current_thread() is self._thread:  # a quit callback closing: it cannot wait here
                return
            self._lock.wait_for(
                lambda: not (windows & (self._open | self._closing)) or not self._thread.is_alive(), timeout
            )

    def stop(self, timeout: float = CLOSE_WAIT_S) -> None:
        """Close every window and end the thread (at exit: see `close`)."""
        with self._lock:
            self._stopping = True
            self._pending.clear()
            self._lock.notify_all()
        self._thread.join(timeout)

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
            while self._round():
                pass
        except BaseException as exc:  # e.g. the display went away (cv2.error): the next show() says so
            self.error = exc
        finally:
            with self._lock:
                self._lock.notify_all()  # a close() waiting for this thread

    def _round(self) -> bool:
        """One round: close, open and show what was asked, then refresh; False once stopped."""
        with self._lock:
            while not (self._pending or self._closing or self._open or self._stopping):
                self._lock.wait()
            frames, self._pending = self._pending, {}
            closing, self._closing = self._closing, set()
            if self._stopping:
                closing |= self._open
        if closing & self._open:
            for window in closing & self._open:
                cv2.destroyWindow(window)
            for _ in range(3):  # GTK and Qt take a destroyed window off the screen in the event loop
                cv2.waitKey(1)
        with self._lock:
            self._open -= closing
            self._lock.notify_all()
            if self._stopping:
                return False
        for window, image in frames.items():
            if window not in self._open:
                cv2.namedWindow(window, cv2.WINDOW_NORMAL)
                with self._lock:
                    self._open.add(window)
            cv2.imshow(window, image)
        if self._open and cv2.waitKey(10) & 0xFF in QUIT_KEYS:  # also what repaints the windows
            self._quit()
        return True

    def _quit(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener()
            except Exception:  # one caller's bad callback must not close every window of the process
                log.exception("a --show quit callback failed")
