"""Video sources: address kinds, policies, pacing, bad files, reconnection with backoff (fake captures)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from vireid import InputSpecError, Modality, StreamError
from vireid.streams import Policy, SourceKind, SourceState, VideoSource, parse_source
from vireid.streams.sources import gstreamer_available, source_kind


def write_video(path: Path, frames: int = 30, fps: float = 30.0, size: tuple[int, int] = (48, 64)) -> Path:
    """A small mp4v video whose frame i is uniformly grey at level 8 * i (frame order is checkable)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((*size, 3), 8 * i, np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("cam.mp4", SourceKind.FILE),
        ("/data/cam 1.mkv", SourceKind.FILE),
        ("file:///data/cam.mp4", SourceKind.FILE),
        ("rtsp://10.0.0.5:554/stream1", SourceKind.URL),
        ("http://host/video.mjpg", SourceKind.URL),
        ("0", SourceKind.DEVICE),
        (2, SourceKind.DEVICE),
        ("/dev/video1", SourceKind.DEVICE),
        ("v4l2src device=/dev/video0 ! videoconvert ! appsink", SourceKind.GSTREAMER),
    ],
)
def test_source_kind(address, kind: SourceKind) -> None:
    assert source_kind(address) is kind


def test_parse_source_forms() -> None:
    src = parse_source("ir@roof=rtsp://host/s?a=1")
    assert (src.modality, src.camera, src.uri, src.kind) == (
        Modality.INFRARED,
        "roof",
        "rtsp://host/s?a=1",
        SourceKind.URL,
    )
    assert src.policy is Policy.LATEST and src.reconnect
    src = parse_source("visible=cam.mp4")
    assert (src.camera, src.policy, src.reconnect) == ("visible", Policy.EVERY, False)
    with pytest.raises(InputSpecError, match="MODALITY"):
        parse_source("rtsp://host/s")
    with pytest.raises(InputSpecError, match=r"--source 'colour-ish=cam.mp4': unknown modality 'colour-ish'"):
        parse_source("colour-ish=cam.mp4")


def test_missing_folder_and_unreadable_files_fail_at_start(tmp_path: Path) -> None:
    with pytest.raises(StreamError, match="no such file"):
        VideoSource(tmp_path / "nope.mp4", "visible").start()
    with pytest.raises(StreamError, match="is a folder"):
        VideoSource(tmp_path, "visible").start()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(StreamError, match="cannot decode"):
        VideoSource(bad, "visible").start()


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV has GStreamer")
def test_gstreamer_pipeline_without_gstreamer_says_so() -> None:
    with pytest.raises(StreamError, match="built without GStreamer"):
        VideoSource("videotestsrc ! videoconvert ! appsink", "visible").start()


def test_every_policy_delivers_every_frame_in_order(clip: Path) -> None:
    with VideoSource(clip, "visible", "cam", realtime=False) as src:
        frames = []
        while (frame := src.read(timeout=5)) is not None:
            frames.append(frame)
        assert src.state is SourceState.ENDED and src.finished
    assert [f.index for f in frames] == list(range(30))
    assert frames[3].pts == pytest.approx(0.1) and frames[0].camera == "cam"
    levels = [float(f.image.mean()) for f in frames]
    assert levels == sorted(levels) and src.fps == pytest.approx(30.0)
    assert src.stats().frames_read == 30 and src.stats().frames_dropped == 0


def test_realtime_replay_follows_the_frame_rate(clip: Path) -> None:
    start = time.monotonic()
    with VideoSource(clip, "visible", realtime=True) as src:
        count = sum(1 for _ in iter(lambda: src.read(timeout=5), None))
    assert count == 30
    assert time.monotonic() - start >= 0.9  # 30 frames at 30 fps


def test_latest_policy_drops_stale_frames(clip: Path) -> None:
    with VideoSource(clip, "visible", policy="latest", realtime=True) as src:
        seen = []
        while (frame := src.read(timeout=5)) is not None:
            seen.append(frame.index)
            time.sleep(0.1)  # a slow consumer
    assert seen == sorted(seen) and len(seen) < 20
    assert src.stats().frames_dropped > 0


class FakeCapture:
    """A capture that delivers `frames` frames then fails (a stream that dies)."""

    def __init__(self, frames: int, opened: bool = True) -> None:
        self.frames, self.opened, self.released = frames, opened, False

    def isOpened(self) -> bool:  # OpenCV's name
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.frames <= 0:
            return False, None
        self.frames -= 1
        time.sleep(0.005)
        return True, np.zeros((24, 32, 3), np.uint8)

    def get(self, prop: int) -> float:
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        return True

    def release(self) -> None:
        self.released = True


def test_network_source_reconnects_with_backoff_and_survives_opener_errors_fake_capture() -> None:
    plan = ["closed", "closed", 5, "raise", 5]
    calls: list[float] = []

    def opener(uri, kind, open_timeout, read_timeout):
        calls.append(time.monotonic())
        step = plan.pop(0) if plan else "closed"
        if step == "raise":
            raise RuntimeError("network unreachable")
        return FakeCapture(0, opened=False) if step == "closed" else FakeCapture(step)

    states: list[SourceState] = []
    src = VideoSource(
        "rtsp://camera.invalid/s",
        "ir",
        opener=opener,
        backoff=(0.02, 0.08),
        on_state=lambda s, st, m: states.append(st),
    )
    delays: list[float] = []
    schedule = src._backoff_delay
    src._backoff_delay = lambda attempt: delays.append(schedule(attempt)) or delays[-1]  # type: ignore[method-assign]
    src.start()
    frames = []
    deadline = time.monotonic() + 5
    while len(frames) < 10 and time.monotonic() < deadline:
        if (frame := src.read(timeout=0.2)) is not None:
            frames.append(frame)
    src.stop()
    assert len(frames) == 10 and [f.index for f in frames] == list(range(10))
    assert all(f.modality is Modality.INFRARED for f in frames)
    assert src.stats().reconnects == 1
    connecting, reconnecting, live = SourceState.CONNECTING, SourceState.RECONNECTING, SourceState.LIVE
    assert states[:4] == [connecting, reconnecting, live, reconnecting]
    assert live in states[4:] and states[-1] is SourceState.STOPPED
    # the waits asked for (not the wall clock, which a busy machine stretches): doubling, + 0-25 % jitter
    assert 0.02 <= delays[0] <= 0.025 and 0.04 <= delays[1] <= 0.05 and len(calls) >= 3
    assert 0.08 <= src._backoff_delay(5000) <= 0.1  # hours of outage: capped, no float overflow


def test_a_file_source_that_cannot_open_in_the_thread_fails_without_raising_fake_capture() -> None:
    seen = threading.Event()
    src = VideoSource(
        "0", "visible", opener=lambda *a: FakeCapture(0, opened=False), reconnect=False,
        on_state=lambda s, st, m: st is SourceState.FAILED and seen.set(),
    )  # fmt: skip
    src.start()
    assert seen.wait(5) and src.finished and src.read(timeout=0.1) is None
    assert "cannot open" in (src.stats().error or "")


def test_an_oversized_frame_ends_the_source_with_a_clear_error_instead_of_reconnecting_fake_capture() -> None:
    seen = threading.Event()
    opened: list[FakeCapture] = []

    def opener(*args):
        opened.append(FakeCapture(5))
        return opened[-1]

    src = VideoSource(
        "rtsp://cam/stream", "visible", opener=opener, max_pixels=24 * 32 - 1, backoff=(0.01, 0.02),
        on_state=lambda s, st, m: st is SourceState.FAILED and seen.set(),
    )  # fmt: skip
    src.start()
    assert seen.wait(5) and src.finished and src.read(timeout=0.1) is None  # no frame delivered
    assert "32x24 frame exceeds max_pixels=767" in (src.stats().error or "")
    assert len(opened) == 1 and opened[0].released  # not re-opened, capture released
    with pytest.raises(InputSpecError, match="max_pixels"):
        VideoSource("0", "visible", max_pixels=0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InputSpecError, match="backoff"):
        VideoSource("0", "visible", backoff=(2.0, 1.0))
    with pytest.raises(InputSpecError, match="buffer"):
        VideoSource("0", "visible", buffer=0)
    with pytest.raises(
        InputSpecError, match="unknown source policy 'newest'; expected one of: latest, every"
    ):
        VideoSource("0", "visible", policy="newest")
    assert VideoSource("0", "visible", policy="EVERY").policy is Policy.EVERY


class Fake16BitCapture(FakeCapture):
    """A radiometric camera: uint16 centi-Kelvin frames, 20 °C background, a 36 °C block."""

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.frames <= 0:
            return False, None
        self.frames -= 1
        frame = np.full((24, 32), 29315, np.uint16)
        frame[4:20, 10:20] = 30915
        return True, frame


@pytest.mark.parametrize(
    ("thermal", "person", "background"),
    [("window:27315:31315", 230, 128), (None, 255, 0)],  # fixed window; default per-frame percentiles
)
def test_16bit_thermal_frames_are_scaled_as_the_source_says_fake_capture(
    caplog, thermal, person, background
) -> None:
    import logging

    src = VideoSource(
        "0",
        "infrared",
        opener=lambda *a: Fake16BitCapture(3),
        reconnect=False,
        thermal=thermal,
        policy="every",
    )
    with caplog.at_level(logging.INFO, logger="vireid"):
        src.start()
        frame = src.read(timeout=5)
        src.stop()
    assert frame is not None and frame.image.dtype == np.uint8
    assert frame.image[10, 15].max() == person and frame.image[2, 2].max() == background
    assert src.thermal.describe() in caplog.text


def test_a_16bit_image_sequence_from_the_scene_generator_plays_through_a_thermal_window(
    tmp_path: Path,
) -> None:
    from vireid.training.data.synth import SceneConfig, generate_scene
    from vireid.training.data.synth.scene import THERMAL16, THERMAL16_RANGE

    config = SceneConfig(seconds=2.0, people=2, seed=3, width=160, height=120, thermal16=True)
    generate_scene(tmp_path, config, workers=1, show_progress=False)
    raw = cv2.imread(str(tmp_path / (THERMAL16 % 0)), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (120, 160)
    assert THERMAL16_RANGE[0] <= raw.min() <= raw.max() <= THERMAL16_RANGE[1]
    window = "window:{}:{}".format(*THERMAL16_RANGE)
    source = VideoSource(str(tmp_path / THERMAL16), "infrared", realtime=False, thermal=window).start()
    frames = []
    while (frame := source.read(timeout=5)) is not None:
        frames.append(frame.image)
    video = cv2.VideoCapture(str(tmp_path / "infrared.mp4"))
    ok, first = video.read()
    video.release()
    assert len(frames) == 30 and frames[0].dtype == np.uint8 and ok
    grey = frames[0] if frames[0].ndim == 2 else frames[0][..., 0]
    # the same picture as the lossy 8-bit video (mp4v shifts levels a little; the 16-bit path is exact)
    assert np.corrcoef(grey.ravel().astype(float), first[..., 0].ravel().astype(float))[0, 1] > 0.98


class ShapedCapture(FakeCapture):
    """Delivers `frames` frames of one shape and dtype, then raises from read() if `then_raise`."""

    def __init__(self, frames: int, shape: tuple[int, ...], dtype: type, then_raise: bool = False) -> None:
        super().__init__(frames)
        self.shape, self.dtype, self.then_raise = shape, dtype, then_raise

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.frames <= 0:
            if self.then_raise:
                raise RuntimeError("decoder exploded at packet 7")
            return False, None
        self.frames -= 1
        return True, np.full(self.shape, 1000, self.dtype) if self.dtype is np.uint16 else np.zeros(
            self.shape, self.dtype
        )


def _finish(src: VideoSource) -> list:
    frames = []
    src.start()
    deadline = time.monotonic() + 5
    while not src.finished and time.monotonic() < deadline:
        if (frame := src.read(timeout=0.1)) is not None:
            frames.append(frame)
    return frames


def test_a_frame_the_reader_cannot_convert_fails_the_source_instead_of_killing_its_thread_fake_capture() -> (
    None
):
    """A 2-channel frame used to raise in the reader thread: the camera stayed `live`, `finished`
    never came and a pipeline waited for it forever."""
    src = VideoSource(
        "0", "visible", opener=lambda *a: ShapedCapture(3, (24, 32, 2), np.uint8), reconnect=False
    )
    assert _finish(src) == [] and src.finished
    assert src.state is SourceState.FAILED
    assert "shape (24, 32, 2) uint8 cannot be converted" in (src.stats().error or "")


@pytest.mark.parametrize(
    ("shape", "dtype", "delivered"),
    [((24, 32, 4), np.uint16, (24, 32, 3)), ((24, 32, 1), np.uint8, (24, 32))],
    ids=["16-bit BGRA is stretched to 8-bit BGR", "(H, W, 1) is grey"],
)
def test_odd_frame_layouts_are_converted_fake_capture(shape: tuple, dtype: type, delivered: tuple) -> None:
    src = VideoSource(
        "0", "visible", opener=lambda *a: ShapedCapture(2, shape, dtype), reconnect=False, policy="every"
    )
    frames = _finish(src)
    assert len(frames) == 2 and frames[0].image.shape == delivered and frames[0].image.dtype == np.uint8
    assert src.state is SourceState.ENDED


def test_a_file_that_breaks_mid_way_fails_with_the_decoder_error_fake_capture() -> None:
    src = VideoSource(
        "0", "visible", opener=lambda *a: ShapedCapture(3, (24, 32, 3), np.uint8, then_raise=True),
        reconnect=False, policy="every",
    )  # fmt: skip
    assert len(_finish(src)) == 3 and src.state is SourceState.FAILED
    assert "decoder exploded at packet 7" in (src.stats().error or "")
    empty = VideoSource("0", "visible", opener=lambda *a: ShapedCapture(0, (1,), np.uint8), reconnect=False)
    assert _finish(empty) == [] and empty.stats().error == "no frame could be decoded"


def test_a_server_that_accepts_and_drops_at_once_gets_a_growing_backoff_fake_capture() -> None:
    """A connection that delivers a frame and drops (a server at its client limit) used to reset the
    backoff each time: reconnections every ~0.5 s forever. Only a connection that lasted resets it."""
    opens: list[float] = []

    def opener(*args):
        opens.append(time.monotonic())
        return FakeCapture(1)

    src = VideoSource("rtsp://camera.invalid/s", "visible", opener=opener, backoff=(0.01, 10.0))
    attempts: list[int] = []
    src._backoff_delay = lambda attempt: attempts.append(attempt) or 0.001  # type: ignore[method-assign]
    src.start()
    deadline = time.monotonic() + 5
    while len(opens) < 6 and time.monotonic() < deadline:
        src.read(timeout=0.05)
    src.stop()
    assert len(opens) >= 6 and attempts[:5] == [0, 1, 2, 3, 4]


class BlockingCapture(FakeCapture):
    """A USB-like capture whose read blocks (the device unplugged) until `release_gate` is set."""

    def __init__(self) -> None:
        super().__init__(10**6)
        self.gate, self.count = threading.Event(), 0

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.count += 1
        if self.count == 4:
            self.gate.wait(10)  # blocks, as a stuck V4L2 read does
        return super().read()


def test_a_blocked_device_read_is_reported_as_stalled_and_live_again_with_a_fake_capture() -> None:
    """A USB or GStreamer read that blocks was never noticed (no FFmpeg timeout): the source stayed
    `live` while delivering nothing."""
    capture = BlockingCapture()
    states: list[SourceState] = []
    src = VideoSource(0, "visible", opener=lambda *a: capture, read_timeout=0.3)
    src.on_state = lambda s, state, message: states.append(state)
    with src:
        deadline = time.monotonic() + 5
        while not src.check_stalled() and time.monotonic() < deadline:
            src.poll()
            time.sleep(0.05)
        assert src.state is SourceState.STALLED and SourceState.STALLED in states
        capture.gate.set()  # the device comes back
        deadline = time.monotonic() + 5
        while src.state is not SourceState.LIVE and time.monotonic() < deadline:
            src.poll()
            time.sleep(0.02)
        assert src.state is SourceState.LIVE and states[-1] is SourceState.LIVE
