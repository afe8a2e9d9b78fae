"""RTSP end to end: a local RTSP server (started by the test, loopback only) goes away and comes back
while a pipeline reads it next to a video file; the file camera never stops and the RTSP camera
reconnects by itself."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from rtsp_server import RtspServer

from vireid import Embedder
from vireid.streams import Pipeline, SourceState, VideoSource


def _frames(index: int) -> np.ndarray:
    image = np.full((240, 320, 3), 40, np.uint8)
    x = (index * 6) % 280
    cv2.rectangle(image, (x, 60), (x + 40, 200), (230, 230, 230), -1)  # someone walking by
    return image


def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def server():
    server = RtspServer(_frames, fps=15).start()
    yield server
    server.stop()


def test_rtsp_camera_reconnects_after_the_server_goes_away(
    server: RtspServer, scene: Path, contract_model: Path
) -> None:
    probe = cv2.VideoCapture(server.url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000])
    playable = probe.isOpened()
    probe.release()
    if not playable:
        pytest.skip("this OpenCV build cannot play RTSP (FFmpeg without the rtsp demuxer)")
    states: list[SourceState] = []
    rtsp = VideoSource(
        server.url,
        "infrared",
        "ir-rtsp",
        backoff=(0.2, 0.5),
        open_timeout=3,
        read_timeout=2,
        on_state=lambda source, state, message: states.append(state),
    )
    file = VideoSource(scene / "visible.mp4", "visible", "vis", realtime=True)  # 8 s at 15 fps
    with Embedder(contract_model, device="cpu", threads=1) as embedder:
        pipeline = Pipeline([rtsp, file], embedder)
        pipeline.start()
        processed = lambda camera: pipeline.stats().cameras[camera].processed  # noqa: E731
        try:
            assert _wait(lambda: processed("ir-rtsp") >= 10, 15), "no RTSP frames"
            server.stop()  # the camera goes away
            assert _wait(lambda: rtsp.state is SourceState.RECONNECTING, 10), rtsp.state
            during = processed("vis")
            time.sleep(0.6)  # a few refused reconnection attempts
            assert processed("vis") > during  # the file camera keeps going
            before, sessions = processed("ir-rtsp"), server.sessions
            server.start()  # ... and comes back on the same address
            assert _wait(lambda: processed("ir-rtsp") >= before + 10, 15), "RTSP frames did not resume"
        finally:
            pipeline.stop()
    stats = {s.camera: s for s in pipeline.stats().sources}
    assert stats["ir-rtsp"].reconnects >= 1 and server.sessions > sessions
    assert SourceState.RECONNECTING in states and states[-1] is SourceState.STOPPED
    assert SourceState.LIVE in states[states.index(SourceState.RECONNECTING) :]
