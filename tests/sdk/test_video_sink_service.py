"""`VideoSink` as part of a 24/7 service: a restart appends segments instead of overwriting the earlier
run's, and a full disk stops the sink loudly with its files playable instead of writing unplayable video
without a word (OpenCV's writer never reports a failed write)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from vireid.errors import StreamError
from vireid.streams import Frame, FrameResult
from vireid.streams.detect.base import Detections
from vireid.streams.sinks import VideoSink, purge_videos, video_segments

FPS = 10.0
SEGMENT_MINUTES = 0.01  # 0.6 s: 6 frames at 10 fps


def _frame_results(count: int, camera: str = "gate", start: int = 0) -> Iterator[FrameResult]:
    """Small frames of one camera, as the pipeline hands them to its sinks."""
    for index in range(start, start + count):
        image = np.full((48, 64, 3), index * 20 % 250, np.uint8)
        yield FrameResult(Frame.of(image, "visible", camera, index, fps=FPS), Detections.empty(), (), FPS)


def _run(sink: VideoSink, frames: int, cameras: tuple[str, ...] = ("gate", "door")) -> VideoSink:
    for camera in cameras:
        for result in _frame_results(frames, camera):
            sink.on_frame(result)
    sink.close()
    return sink


def _frame_count(path: Path) -> int:
    video = cv2.VideoCapture(str(path))
    try:
        return int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        video.release()


def _reads_a_frame(path: Path) -> bool:
    video = cv2.VideoCapture(str(path))
    try:
        ok, image = video.read()
        return ok and image is not None and image.shape[:2] == (48, 64)
    finally:
        video.release()


def _more_than_the_disk(folder: Path) -> int:
    """A floor no free space reaches: the disk's size (not twice `disk_usage().free`, which root, who may
    use the reserved blocks, can exceed)."""
    return shutil.disk_usage(folder).total + 1


def test_a_restart_with_append_continues_each_cameras_numbering_and_leaves_earlier_files_alone(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "video"
    first = _run(VideoSink(folder, segment_minutes=SEGMENT_MINUTES), 14)  # 6 + 6 + 2 frames: 3 segments
    before = {path: path.read_bytes() for paths in first.segments.values() for path in paths}
    assert [p.name for p in first.segments["gate"]] == ["gate.mp4", "gate.0002.mp4", "gate.0003.mp4"]

    second = _run(VideoSink(folder, segment_minutes=SEGMENT_MINUTES, append=True), 8)  # 6 + 2: 2 segments
    assert {camera: [p.name for p in paths] for camera, paths in second.segments.items()} == {
        "gate": ["gate.0004.mp4", "gate.0005.mp4"],
        "door": ["door.0004.mp4", "door.0005.mp4"],
    }
    assert {path: path.read_bytes() for path in before} == before  # byte-identical
    assert [_frame_count(p) for p in second.segments["door"]] == [6, 2]
    assert all(p.stat().st_mode & 0o777 == 0o600 for paths in second.segments.values() for p in paths)
    assert [p.name for p in video_segments(folder)["gate"]] == [f"gate{n}.mp4" for n in
            ("", ".0002", ".0003", ".0004", ".0005")]  # fmt: skip


def test_append_starts_a_camera_new_to_the_folder_at_its_first_segment(tmp_path: Path) -> None:
    folder = tmp_path / "video"
    _run(VideoSink(folder, segment_minutes=SEGMENT_MINUTES), 3, cameras=("gate",))
    sink = _run(VideoSink(folder, segment_minutes=SEGMENT_MINUTES, append=True), 3, cameras=("gate", "yard"))
    assert [p.name for p in sink.segments["yard"]] == ["yard.mp4"]
    assert [p.name for p in sink.segments["gate"]] == ["gate.0002.mp4"]


def test_without_append_numbering_starts_at_one_as_before(tmp_path: Path) -> None:
    folder = tmp_path / "video"
    _run(VideoSink(folder, segment_minutes=SEGMENT_MINUTES), 14)
    again = _run(VideoSink(folder, segment_minutes=SEGMENT_MINUTES), 8)
    assert [p.name for p in again.segments["gate"]] == ["gate.mp4", "gate.0002.mp4"]
    assert _frame_count(folder / "gate.mp4") == 6


def test_segment_numbers_past_9999_parse_sort_and_purge_by_number(tmp_path: Path) -> None:
    """`.10000` has five digits: read as four, it made `gate.10000` a camera of its own (and segment 1)."""
    folder = tmp_path / "video"
    first = _run(VideoSink(folder, segment_minutes=SEGMENT_MINUTES), 3, cameras=("gate",))
    for number in (9998, 9999, 10000):  # a service that has been running for a long time
        shutil.copyfile(first.paths["gate"], folder / f"gate.{number}.mp4")
    assert [p.name for p in video_segments(folder)["gate"]] == [
        "gate.mp4", "gate.9998.mp4", "gate.9999.mp4", "gate.10000.mp4"
    ]  # fmt: skip
    sink = _run(VideoSink(folder, segment_minutes=SEGMENT_MINUTES, append=True), 8, cameras=("gate",))
    assert [p.name for p in sink.segments["gate"]] == ["gate.10001.mp4", "gate.10002.mp4"]
    for paths in video_segments(folder).values():
        for path in paths:
            os.utime(path, (1e9, 1e9))  # an idle camera: every segment old
    assert purge_videos(folder, 30) == (1, 5)
    assert [p.name for p in video_segments(folder)["gate"]] == ["gate.10002.mp4"]


def test_a_camera_whose_id_looks_like_a_long_segment_number_gets_a_name_of_its_own(tmp_path: Path) -> None:
    sink = _run(VideoSink(tmp_path / "video"), 2, cameras=("gate", "gate.12345"))
    assert sink.paths["gate.12345"].name.startswith("gate.12345-")
    assert sorted(video_segments(tmp_path / "video")) == sorted(p.stem for p in sink.paths.values())


def test_video_segments_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert video_segments(tmp_path / "nowhere") == {}


def test_a_nearly_full_disk_stops_the_sink_with_the_segment_so_far_playable(tmp_path: Path) -> None:
    folder = tmp_path / "video"
    sink = VideoSink(folder, segment_minutes=None)
    frames = _frame_results(40)
    for result in (next(frames) for _ in range(15)):  # 1.5 s: checked when opened and after 1 s
        sink.on_frame(result)
    sink.min_free_bytes = _more_than_the_disk(tmp_path)  # the disk filled up meanwhile
    for result in (next(frames) for _ in range(4)):  # checked about once a second, not on every frame
        sink.on_frame(result)
    with pytest.raises(StreamError) as raised:
        for result in frames:
            sink.on_frame(result)
    message = str(raised.value)
    assert str(folder) in message and "free on its disk" in message
    assert "vireid gallery purge" in message and "larger disk" in message
    assert _frame_count(sink.paths["gate"]) == 20  # stopped at the next check, one second after the last
    assert _reads_a_frame(sink.paths["gate"])  # finished before raising: playable


def test_a_full_disk_is_noticed_before_a_segment_is_created(tmp_path: Path) -> None:
    folder = tmp_path / "video"
    sink = VideoSink(folder, min_free_bytes=_more_than_the_disk(tmp_path))
    with pytest.raises(StreamError, match=rf"{folder}: only .* free on its disk.*no video was written"):
        sink.on_frame(next(_frame_results(1)))
    assert video_segments(folder) == {}
    sink.close()
