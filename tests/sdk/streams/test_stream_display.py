"""`--show` windows: every OpenCV window call on the one display thread, never on the caller's or the
pipeline's (OpenCV's Qt backend hangs otherwise), the latest frame per window, quit keys, closing.

This machine's OpenCV has no GUI, so the window calls (namedWindow, imshow, waitKey, destroyWindow)
are faked where named; the GUI check runs on real and given build information."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vireid.errors import StreamError
from vireid.streams import Pipeline, PipelineConfig, ShowSink, sinks
from vireid.streams import display as display_module
from vireid.streams.display import Display, check_gui, gui_backend

NEW_BUILD = "  GUI:                           QT5\n    QT:                          YES (ver 5.15.0 )\n"
HEADLESS = "  GUI:                           NONE\n    VTK support:                 NO\n"
OLD_BUILD = "  GUI: \n    GTK+:                        YES (ver 3.22.30)\n"
OPENCV3_BUILDS = {"    GTK+ 2.x:                    YES (ver 2.24.32)\n": "GTK+", "    QT 5.x: YES\n": "QT"}


class FakeWindows:
    """OpenCV's window calls, faked: records (call, window, thread name); waitKey returns queued keys."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.keys: list[int] = []
        self.shown: dict[str, list[int]] = {}
        self.gate = threading.Event()
        self.gate.set()
        self.escape_when: Callable[[], bool] | None = None  # Esc once this holds
        cv2 = display_module.cv2
        monkeypatch.setattr(cv2, "namedWindow", lambda name, flags=0: self._record("namedWindow", name))
        monkeypatch.setattr(cv2, "imshow", self._imshow)
        monkeypatch.setattr(cv2, "waitKey", self._wait_key)
        monkeypatch.setattr(cv2, "destroyWindow", lambda name: self._record("destroyWindow", name))

    def _record(self, call: str, window: str) -> None:
        self.calls.append((call, window, threading.current_thread().name))

    def _imshow(self, window: str, image: np.ndarray) -> None:
        self.gate.wait(10)
        self._record("imshow", window)
        self.shown.setdefault(window, []).append(int(image.flat[0]))

    def _wait_key(self, delay: int) -> int:
        time.sleep(0.001)
        self._record("waitKey", "")
        if self.escape_when is not None and self.escape_when():
            self.escape_when = None
            return 27
        return self.keys.pop(0) if self.keys else -1

    def threads(self) -> set[str]:
        return {thread for _, _, thread in self.calls}


def wait_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_gui_support_is_read_from_the_build_information_without_a_window() -> None:
    assert gui_backend(NEW_BUILD) == "QT5" and gui_backend(OLD_BUILD) == "GTK+"
    assert gui_backend(HEADLESS) is None and gui_backend("nothing about it") is None
    assert {text: gui_backend(text) for text in OPENCV3_BUILDS} == OPENCV3_BUILDS
    with pytest.raises(StreamError, match="opencv-python"):
        check_gui(HEADLESS, {"DISPLAY": ":0"})
    gtk = "  GUI:                           GTK3\n"
    if __import__("sys").platform.startswith("linux"):
        with pytest.raises(StreamError, match="neither DISPLAY nor WAYLAND_DISPLAY is set"):
            check_gui(gtk, {})
        # the Qt of the opencv-python wheels has only its X11 plugin: Wayland alone aborts the process
        with pytest.raises(StreamError, match="needs an X display"):
            check_gui(NEW_BUILD, {"WAYLAND_DISPLAY": "wayland-0"})
        with pytest.raises(StreamError, match="QT_QPA_PLATFORM=wayland"):
            check_gui(NEW_BUILD, {"DISPLAY": ":0", "QT_QPA_PLATFORM": "wayland"})
    check_gui(NEW_BUILD, {"DISPLAY": ":0"})
    check_gui(NEW_BUILD, {"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"})
    check_gui(gtk, {"WAYLAND_DISPLAY": "wayland-0"})
    if gui_backend() is None:  # this machine's real OpenCV: the headless wheel
        with pytest.raises(StreamError, match="opencv-python"):
            check_gui()


def test_window_calls_faked_all_run_on_the_display_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    windows = FakeWindows(monkeypatch)
    display = Display()
    quits: list[str] = []
    stop_listening = display.on_quit(lambda: quits.append(threading.current_thread().name))
    frame = np.zeros((4, 4, 3), np.uint8)
    display.show("vireid visible", frame)  # from the main thread
    worker = threading.Thread(target=display.show, args=("vireid infrared", frame), name="worker")
    worker.start()
    worker.join()
    wait_until(
        lambda: {w for c, w, _ in windows.calls if c == "imshow"} == {"vireid visible", "vireid infrared"}
    )
    windows.keys.append(ord("q"))
    wait_until(lambda: quits == ["vireid-display"])
    stop_listening()
    display.close({"vireid visible", "vireid infrared"})  # returns once the windows are gone
    assert sum(c == "destroyWindow" for c, _, _ in windows.calls) == 2
    display.stop()
    assert not display.thread.is_alive()
    assert windows.threads() == {"vireid-display"}
    assert sorted(w for c, w, _ in windows.calls if c == "namedWindow") == [
        "vireid infrared",
        "vireid visible",
    ]


def test_with_window_calls_faked_a_failing_display_is_reported_and_a_bad_quit_callback_is_not_fatal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    windows = FakeWindows(monkeypatch)
    display = Display()
    display.on_quit(lambda: 1 / 0)
    called = threading.Event()
    display.on_quit(called.set)
    windows.keys.append(ord("q"))
    display.show("w", np.zeros((2, 2), np.uint8))
    wait_until(called.is_set)  # the second listener still ran
    assert "a --show quit callback failed" in caplog.text and display.error is None

    def gone(window: str, image: np.ndarray) -> None:
        raise display_module.cv2.error("Can't open display")

    monkeypatch.setattr(display_module.cv2, "imshow", gone)
    display.show("w", np.zeros((2, 2), np.uint8))
    wait_until(lambda: display.error is not None)
    with pytest.raises(StreamError, match=r"the display stopped: .*Can't open display"):
        display.show("w", np.zeros((2, 2), np.uint8))


def test_a_slow_display_shows_the_latest_frame_and_never_holds_the_caller_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    windows = FakeWindows(monkeypatch)
    display = Display()
    windows.gate.clear()  # the display thread blocks in its first imshow
    display.show("w", np.full((2, 2), 1, np.uint8))
    wait_until(lambda: display._pending == {})  # taken by the display thread, stuck showing it
    for value in range(2, 50):  # the caller is never blocked
        display.show("w", np.full((2, 2), value, np.uint8))
    windows.gate.set()
    wait_until(lambda: windows.shown.get("w", [])[-1:] == [49])
    assert windows.shown["w"] == [1, 49]  # frames 2..48 were replaced before they were shown
    display.stop()


def test_show_sink_in_a_pipeline_never_touches_a_window_off_the_display_thread(
    monkeypatch: pytest.MonkeyPatch, scene: Path, contract_model: Path
) -> None:
    """With the window calls faked and the GUI check told there is one."""
    windows = FakeWindows(monkeypatch)
    display = Display()
    monkeypatch.setattr(sinks, "check_gui", lambda: None)
    monkeypatch.setattr(Display, "shared", classmethod(lambda cls: display))
    stopped = threading.Event()
    running: list[Pipeline] = []

    def quit_pressed() -> None:  # as `vireid run` does: stop the pipeline
        stopped.set()
        running[0].request_stop()

    sink = ShowSink(on_quit=quit_pressed)
    sources = [f"visible={scene / 'visible.mp4'}", f"infrared={scene / 'infrared.mp4'}"]
    pipeline = Pipeline(sources, contract_model, device="cpu", config=PipelineConfig(), sinks=[sink])
    running.append(pipeline)
    both = {"vireid visible", "vireid infrared"}
    windows.escape_when = lambda: {w for c, w, _ in windows.calls if c == "imshow"} == both
    stats = pipeline.run(duration=30.0, handle_signals=False)  # Esc stops it once both were shown
    assert stopped.is_set() and min(c.processed for c in stats.cameras.values()) < 120  # not the end
    assert sum(c == "destroyWindow" for c, _, _ in windows.calls) == 2  # closed before run returned
    assert windows.threads() == {"vireid-display"}
    assert {w for c, w, _ in windows.calls if c == "imshow"} == both
    display.stop()


def test_a_process_that_exits_with_windows_open_exits_cleanly_with_window_calls_faked(tmp_path: Path) -> None:
    """With a window open the display thread spends its time inside an OpenCV call with the GIL
    released; a daemon thread coming back from one during interpreter shutdown is ended in a way
    OpenCV's C++ wrapper turns into an abort (exit 134). The shared display closes its windows and
    ends its thread at exit. The faked waitKey releases the GIL in a real OpenCV call."""
    import subprocess
    import sys

    script = """
import time
import numpy as np
from vireid.streams import display as d
calls = []
d.cv2.namedWindow = lambda name, flags=0: calls.append("named")
d.cv2.imshow = lambda name, image: None
d.cv2.destroyWindow = lambda name: calls.append("destroyed")
big = np.zeros((1500, 1500), np.float32)
real = d.cv2.GaussianBlur
d.cv2.waitKey = lambda delay: (real(big, (0, 0), 3), -1)[1]
import atexit
atexit.register(lambda: print(",".join(calls), flush=True))  # runs after the display's own stop
display = d.Display.shared()
display.show("w", np.zeros((4, 4), np.uint8))
time.sleep(0.3)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert done.stdout.strip() == "named,destroyed"
