"""`vireid run`: outputs, error messages, and Ctrl-C (SIGINT) flushing every sink in a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from vireid.cli import main as cli_main
from vireid.streams import TrackEnded, TrackStarted, event_from_dict

RUN_ENTRY = ("vireid.cli.run", "run the real-time cross-modal pipeline on cameras or files")
# Until `run` is listed in COMMANDS, the tests register it the same way.
LAUNCH = (
    "import sys\n"
    "from vireid.cli import main as m\n"
    f"m.COMMANDS.setdefault('run', {RUN_ENTRY!r})\n"
    "sys.exit(m.main(sys.argv[1:]))\n"
)


@pytest.fixture
def vireid(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(cli_main.COMMANDS, "run", cli_main.COMMANDS.get("run", RUN_ENTRY))
    return cli_main.main


def _scene_args(scene: Path, model: Path) -> list[str]:
    return [
        "run",
        "--source",
        f"visible={scene / 'visible.mp4'}",
        "--source",
        f"infrared={scene / 'infrared.mp4'}",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--threads",
        "1",
    ]


def test_run_processes_files_and_writes_events_and_videos(
    vireid, scene: Path, contract_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*_scene_args(scene, contract_model), "--fast", "--events", str(tmp_path / "ev.jsonl")]
    assert vireid([*argv, "--video-out", str(tmp_path / "video"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "frames visible 120, infrared 120" in err and "track_started" in err
    events = [event_from_dict(json.loads(line)) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert any(isinstance(e, TrackStarted) for e in events)
    assert sorted(p.name for p in (tmp_path / "video").glob("*.mp4")) == ["infrared.mp4", "visible.mp4"]
    assert (tmp_path / "video" / ".vireid-videos").is_file()  # lets `gallery purge --videos` delete here
    # a second run does not replace the videos without a word (the events file is guarded the same way)
    again = [*_scene_args(scene, contract_model), "--fast", "--video-out", str(tmp_path / "video"), "--quiet"]
    assert vireid(again) == 1
    assert (
        "holds videos of an earlier run (infrared.mp4, visible.mp4); pass --overwrite"
        in capsys.readouterr().err
    )
    (tmp_path / "video" / "visible.0002.mp4").write_bytes(b"a longer earlier run's later segment")
    assert vireid([*again, "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "video").glob("*.mp4")) == ["infrared.mp4", "visible.mp4"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) to fill a disk")
def test_run_exits_1_when_its_events_output_fails(
    vireid, scene: Path, contract_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full disk under --events dropped the sink and the run still said 'events in FILE' and exit 0."""
    assert vireid([*_scene_args(scene, contract_model), "--fast", "--quiet", "--events", "/dev/full"]) == 1
    assert "output JsonlSink('/dev/full') failed during the run and is incomplete" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--source", "visible=/nonexistent/cam.mp4"], "no such file"),
        (["--source", "rtsp://host/stream"], "MODALITY"),
        (["--source", "visible=a.mp4", "--source", "rgb=b.mp4"], "camera id 'visible'"),
        (["--source", "visible=a.mp4", "--detector", "yolo"], "--detector-model"),
        (["--source", "visible=a.mp4", "--gallery", "/nonexistent/g.db"], "no gallery file"),
        (["--source", "visible=a.mp4", "--fast", "--policy", "latest"], "--policy latest drops every frame"),
    ],
)
def test_run_errors_are_one_line_messages(
    vireid,
    scene: Path,
    contract_model: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    extra = [
        e.replace("a.mp4", str(scene / "visible.mp4")).replace("b.mp4", str(scene / "infrared.mp4"))
        for e in extra
    ]
    assert vireid(["run", "--model", str(contract_model), "--device", "cpu", *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vireid run: error:") and message in err


def test_a_run_that_cannot_start_leaves_no_events_file_behind(
    vireid, contract_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Otherwise the corrected rerun would be refused ("holds events of an earlier run")."""
    events = tmp_path / "ev.jsonl"
    undecodable = tmp_path / "broken.mp4"
    undecodable.write_bytes(os.urandom(256))
    for source in (tmp_path / "missing.mp4", undecodable):
        argv = [
            "run",
            "--source",
            f"visible={source}",
            "--model",
            str(contract_model),
            "--events",
            str(events),
        ]
        assert vireid([*argv, "--device", "cpu"]) == 1
        assert "vireid run: error: camera visible:" in capsys.readouterr().err
        assert not events.exists()


def test_show_without_a_gui_says_what_to_install(
    vireid, scene: Path, contract_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        cv2.namedWindow("probe")
        cv2.destroyWindow("probe")
        pytest.skip("this OpenCV has a GUI")
    except cv2.error:
        pass
    assert vireid([*_scene_args(scene, contract_model), "--show"]) == 1
    assert "opencv-python" in capsys.readouterr().err


def test_sigint_stops_cleanly_and_flushes_every_sink(
    scene: Path, contract_model: Path, tmp_path: Path
) -> None:
    events_file, video_dir = tmp_path / "ev.jsonl", tmp_path / "video"
    argv = [*_scene_args(scene, contract_model), "--events", str(events_file), "--video-out", str(video_dir)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if events_file.exists() and '"track_started"' in events_file.read_text():
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)  # files replay in real time (8 s): still running
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted; tracks ended and outputs flushed" in err
    text = events_file.read_text()
    assert text.endswith("\n")
    events = [event_from_dict(json.loads(line)) for line in text.splitlines()]
    started = {(e.camera, e.track_id) for e in events if isinstance(e, TrackStarted)}
    ended = {(e.camera, e.track_id) for e in events if isinstance(e, TrackEnded)}
    assert started and started == ended
    assert {e.state for e in events if e.kind == "source"} >= {"live", "stopped"}
    for camera in ("visible", "infrared"):
        cap = cv2.VideoCapture(str(video_dir / f"{camera}.mp4"))  # readable: the writer was released
        assert cap.isOpened() and 0 < cap.get(cv2.CAP_PROP_FRAME_COUNT) < 120
