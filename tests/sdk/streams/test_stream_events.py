"""Event dataclasses validate and normalise what they carry: scores are finite cosines, rounded."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from vireid import InputSpecError, Modality
from vireid.errors import StreamError
from vireid.streams.events import CrossModalMatch, Identified, TrackEnded, TrackStarted
from vireid.streams.sinks import JsonlSink, events_file_problem

TRACK = {"time": 1.0, "camera": "ir-1", "modality": "infrared", "track_id": 7, "frame": 3}


@pytest.mark.parametrize("event", [Identified, TrackEnded])
def test_scores_are_rounded_to_four_places(event) -> None:
    made = event(**TRACK, name="alice", score=0.123456789)
    assert made.score == 0.1235 and made.modality is Modality.INFRARED


@pytest.mark.parametrize("score", [math.nan, math.inf, 1.5, -2.0])
@pytest.mark.parametrize("event", [Identified, TrackEnded])
def test_impossible_scores_are_refused(event, score: float) -> None:
    with pytest.raises(InputSpecError, match=rf"{event.__name__}\.score"):
        event(**TRACK, name="alice", score=score)


def test_identified_needs_a_name_and_matches_round_their_score() -> None:
    with pytest.raises(InputSpecError, match=r"Identified\.name"):
        Identified(**TRACK, name="", score=0.5)
    match = CrossModalMatch(
        time=1.0, visible_camera="v", visible_track=1, infrared_camera="i", infrared_track=2, score=0.987654
    )
    assert match.score == 0.9877


def test_jsonl_sink_appends_to_events_but_refuses_any_other_file(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    for append, track in ((False, 1), (True, 2)):
        sink = JsonlSink(log, append=append)
        sink.on_event(TrackStarted(time=1.0, camera="gate", modality="visible", track_id=track, frame=3))
        sink.close()
    assert [json.loads(line)["track_id"] for line in log.read_text().splitlines()] == [1, 2]
    other = tmp_path / "gallery.db"
    other.write_bytes(b"SQLite format 3\x00" + bytes(100))
    for append in (False, True):
        with pytest.raises(StreamError, match="is an SQLite database"):
            JsonlSink(other, append=append)
    assert other.read_bytes() == b"SQLite format 3\x00" + bytes(100)


@pytest.mark.parametrize(
    "content",
    [b"", b"\n\n", b"  \n", b'\xef\xbb\xbf{"event": "track_started"}\n', b'\n{"event": "track_ended"}\n'],
    ids=["empty", "blank-lines", "whitespace", "byte-order-mark", "blank-first-line"],
)
def test_events_files_with_a_bom_or_blank_lines_are_events_files(tmp_path: Path, content: bytes) -> None:
    log = tmp_path / "events.jsonl"
    log.write_bytes(content)
    assert events_file_problem(log, whole=True) is None


def test_a_fifo_is_not_read_when_checking_an_events_path(tmp_path: Path) -> None:
    """Reading a FIFO nobody writes to would block for ever (`--events` may name one on purpose)."""
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    assert events_file_problem(fifo) is None
    assert events_file_problem(tmp_path / "missing.jsonl") is None


def test_whole_file_check_names_the_line_that_is_not_utf8(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    log.write_bytes(b'{"event": "track_started"}\n' * 3000 + b'{"event": "x", "name": "\xff"}\n')
    assert events_file_problem(log) is None  # the first line is fine
    assert (
        events_file_problem(log, whole=True) == "is not UTF-8 text at line 3001 (an events file was expected)"
    )


def test_video_sink_keeps_frames_of_a_new_resolution_and_files_of_look_alike_camera_ids(
    tmp_path: Path,
) -> None:
    """OpenCV's writer silently drops frames of another size (a camera reconnecting at another
    profile), and `gate/1` and `gate:1` both mapped to gate_1.mp4, two cameras writing one file."""
    import cv2
    import numpy as np

    from vireid.streams import Frame
    from vireid.streams.detect import Detections
    from vireid.streams.sinks import FrameResult, VideoSink

    sink = VideoSink(tmp_path)
    for camera in ("gate/1", "gate:1"):
        for index, (h, w) in enumerate([(120, 160)] * 5 + [(240, 320)] * 5):
            image = np.full((h, w, 3), 40 * index % 255, np.uint8)
            sink.on_frame(FrameResult(Frame.of(image, "visible", camera, index), Detections.empty(), ()))
    sink.close()
    assert len(set(sink.paths.values())) == 2
    for path in sink.paths.values():
        assert path.stat().st_mode & 0o777 == 0o600  # the frames show people and their names
        video = cv2.VideoCapture(str(path))
        assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
        video.release()


def test_events_and_frames_are_refused_where_they_would_mislead(tmp_path: Path, contract_model: Path) -> None:
    """An events path that is a symbolic link is not followed (one planted in a shared folder after the
    check would redirect a log naming people); a frame stamped with another modality than its camera's
    would feed the model's other stem."""
    import numpy as np

    from vireid import InputSpecError, StreamError
    from vireid.streams import CallerBoxes, Frame, JsonlSink, Pipeline, VideoSource

    real = tmp_path / "real.jsonl"
    real.write_text("")
    (tmp_path / "events.jsonl").symlink_to(real)
    with pytest.raises(StreamError, match=r"events\.jsonl: it is a symbolic link.*give the real path"):
        JsonlSink(tmp_path / "events.jsonl")
    from vireid.streams import PipelineConfig

    pipeline = Pipeline([VideoSource("unused.mp4", "infrared", "door")], str(contract_model),
                        detector=CallerBoxes(lambda f: []), config=PipelineConfig(threshold=0.5))  # fmt: skip
    with pytest.raises(InputSpecError, match=r"camera 'door' says visible, the camera is declared infrared"):
        pipeline.step([Frame.of(np.zeros((48, 64, 3), np.uint8), "visible", "door", 0)])
    pipeline.stop()


def _started(track: int, when: float = 1.0) -> TrackStarted:
    return TrackStarted(time=when, camera="gate", modality="visible", track_id=track, frame=3)


def _tracks(log: Path) -> list[int]:
    return [json.loads(line)["track_id"] for line in log.read_text().splitlines()]


def test_a_purge_under_a_running_sink_loses_no_later_event(tmp_path: Path, caplog) -> None:
    """The daily purge renamed a new file into place and the sink kept writing to the deleted one: every
    event after the first purge of a months-long run was lost."""
    import logging

    from vireid.streams.sinks import purge_events

    log = tmp_path / "events.jsonl"
    sink = JsonlSink(log)
    for track in range(10):  # five from 1970, five from now
        sink.on_event(_started(track, when=1.0 if track < 5 else 2e9))
    assert purge_events(log, 30, now=2e9) == (5, 5)
    with caplog.at_level(logging.WARNING, logger="vireid"):
        for track in range(10, 17):
            sink.on_event(_started(track, when=2e9))
        sink.close()
    assert _tracks(log) == list(range(5, 17)) and sink.reopened == 1
    assert log.stat().st_mode & 0o777 == 0o600
    assert not caplog.records  # following the new file is no failure (it unlocked a closed descriptor)


def test_a_copytruncate_rotation_leaves_no_hole(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    sink = JsonlSink(log)
    sink.on_event(_started(1))
    os.truncate(log, 0)  # logrotate's copytruncate
    sink.on_event(_started(2))
    sink.close()
    assert log.read_bytes().startswith(b"{") and _tracks(log) == [2]


def test_lines_wait_while_a_purge_holds_the_file_and_follow_after(tmp_path: Path) -> None:
    import fcntl

    log = tmp_path / "events.jsonl"
    sink = JsonlSink(log)
    with log.open("rb") as purge:
        fcntl.flock(purge.fileno(), fcntl.LOCK_EX)  # what purge_events holds while it rewrites
        sink.on_event(_started(1))
        assert log.read_bytes() == b""  # not written under the purge's feet, and not lost
        fcntl.flock(purge.fileno(), fcntl.LOCK_UN)
    sink.on_event(_started(2))
    sink.close()
    assert _tracks(log) == [1, 2]


def test_a_full_disk_keeps_events_in_memory_until_it_works_again_with_a_fake_os_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake `os.write` fails like a full disk, then recovers (and writes partially once)."""
    import errno

    import vireid.streams.sinks as sinks

    real_write, state = os.write, {"full": True, "partial": True}

    def disk(fd: int, data) -> int:
        if state["full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        if state["partial"]:
            state["partial"] = False
            return real_write(fd, bytes(data[:5]))
        return real_write(fd, data)

    monkeypatch.setattr(sinks.os, "write", disk)
    log = tmp_path / "events.jsonl"
    sink = JsonlSink(log, max_pending=3)
    sink.on_event(_started(1))
    sink.on_event(_started(2))
    assert log.read_bytes() == b""
    state["full"] = False
    sink.on_event(_started(3))
    assert _tracks(log) == [1, 2, 3]
    state["full"] = True
    for track in range(4, 8):
        if track < 7:
            sink.on_event(_started(track))
    with pytest.raises(StreamError, match="No space left on device; 4 events are not in the file"):
        sink.on_event(_started(7))


def _frame_results(count: int, camera: str = "gate", size=(96, 128)):
    import numpy as np

    from vireid.streams import Frame, FrameResult
    from vireid.streams.detect.base import Detections

    for index in range(count):
        image = np.full((*size, 3), index % 250, np.uint8)
        yield FrameResult(Frame.of(image, "visible", camera, index, fps=10.0), Detections.empty(), (), 10.0)


def test_videos_are_cut_into_segments_each_finished_and_readable(tmp_path: Path) -> None:
    """One MP4 per camera for a whole run grew the writer's memory per frame (8 GB per camera over 90
    days) and a crash left an unreadable file: segments bound both."""
    import cv2

    from vireid.streams import VideoSink

    sink = VideoSink(tmp_path / "video", segment_minutes=0.05)  # 3 s = 30 frames at 10 fps
    for result in _frame_results(70):
        sink.on_frame(result)
    first_two = sink.segments["gate"][:2]
    for path in first_two:  # finished while the run goes on: readable before close()
        assert int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    sink.close()
    assert [p.name for p in sink.segments["gate"]] == ["gate.mp4", "gate.0002.mp4", "gate.0003.mp4"]
    assert int(cv2.VideoCapture(str(sink.paths["gate"])).get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in sink.segments["gate"])
    with pytest.raises(InputSpecError, match="segment_minutes"):
        VideoSink(tmp_path / "other", segment_minutes=0)


def test_purge_videos_deletes_old_segments_only_in_a_folder_vireid_wrote(tmp_path: Path) -> None:
    from vireid.streams import VideoSink
    from vireid.streams.sinks import purge_videos

    sink = VideoSink(tmp_path / "video", segment_minutes=0.05)
    for result in _frame_results(70):
        sink.on_frame(result)
    sink.close()
    old, *recent = sink.segments["gate"]
    os.utime(old, (1e9, 1e9))  # written in 2001
    assert purge_videos(tmp_path / "video", 30) == (2, 1)
    assert not old.exists() and all(p.exists() for p in recent)
    for path in recent:  # an idle camera: every segment old, the newest still open in a running sink
        os.utime(path, (1e9, 1e9))
    assert purge_videos(tmp_path / "video", 30) == (1, 1)
    assert recent[-1].exists() and not recent[0].exists()
    mine = tmp_path / "recordings"
    mine.mkdir()
    (mine / "holiday.mp4").write_bytes(b"x")
    os.utime(mine / "holiday.mp4", (1e9, 1e9))
    with pytest.raises(StreamError, match="not a folder `vireid run --video-out` wrote"):
        purge_videos(mine, 30)
    assert (mine / "holiday.mp4").exists()


def test_snapshots_of_cameras_with_look_alike_ids_never_share_a_file_and_names_stay_plain(
    tmp_path: Path,
) -> None:
    """`gate/1` and `gate:1` both wrote gate_1_000000.jpg (one silently replaced the other); a camera `.`
    made a hidden file and a very long id a name too long for the file system."""
    from vireid.streams.sinks import SnapshotSink, _safe

    sink = SnapshotSink(tmp_path / "snaps", every=1, limit=1, named_only=False)
    for camera in ("gate/1", "gate:1"):
        sink.on_frame(next(_frame_results(1, camera=camera)))
    names = sorted(p.name for p in (tmp_path / "snaps").glob("*.jpg"))
    assert len(names) == 2 and names[0] != names[1]
    assert _safe(".") == "camera" and not _safe("..hidden").startswith(".")
    long_id = "x" * 300
    assert len(_safe(long_id)) <= 64 and _safe(long_id) != _safe("x" * 299)


def test_an_events_fifo_is_written_and_closed_without_an_error(tmp_path: Path) -> None:
    """fsync on a FIFO raises EINVAL: closing the sink failed and `vireid run` exited 1."""
    import threading

    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    sink = JsonlSink(fifo, append=True)
    sink.on_event(_started(1))
    sink.close()
    reader.join(timeout=10)
    assert sink.closed and json.loads(received[0].decode())["track_id"] == 1


def test_a_camera_named_like_a_segment_never_shares_its_files() -> None:
    """Camera `gate.0002`'s first file was `gate.0002.mp4`, camera `gate`'s second segment."""
    from vireid.streams.sinks import _Stems

    stems = _Stems()
    assert stems("gate") == "gate" and stems("gate.0002") != "gate.0002"


def test_sinks_refuse_unknown_event_kinds_and_take_event_classes(tmp_path: Path) -> None:
    """A typo in `kinds` used to make a sink that silently never fired."""
    from vireid.streams.sinks import CallbackSink

    with pytest.raises(InputSpecError, match=r"unknown event kinds \['identifed'\]; expected some of \["):
        JsonlSink(tmp_path / "e.jsonl", kinds=["identifed"])
    seen: list[str] = []
    sink = CallbackSink(lambda event: seen.append(event.kind), kinds=[Identified, "track_ended"])
    assert sink.kinds == {"identified", "track_ended"}
    assert CallbackSink(print, kinds="identified").kinds == {"identified"}  # one name, not its letters
