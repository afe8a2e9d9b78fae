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
from fake_capture import LiveCaptureFaked

from vireid.cli import main as cli_main
from vireid.streams import TrackEnded, TrackStarted, event_from_dict

LAUNCH = "import sys\nfrom vireid.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.fixture
def vireid():
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
        "holds videos of an earlier run (infrared.mp4, visible.mp4); pass --append to add this run's "
        "after them, --overwrite to delete them" in capsys.readouterr().err
    )
    # a service restart: --append goes on after the earlier segments and leaves them as they were
    first = (tmp_path / "video" / "visible.mp4").read_bytes()
    assert vireid([*argv, "--video-out", str(tmp_path / "video"), "--quiet", "--append"]) == 0
    names = sorted(p.name for p in (tmp_path / "video").glob("*.mp4"))
    assert names == ["infrared.0002.mp4", "infrared.mp4", "visible.0002.mp4", "visible.mp4"]
    assert (tmp_path / "video" / "visible.mp4").read_bytes() == first
    assert vireid([*again, "--append"]) == 0  # --append without --events: for the videos alone
    assert len(list((tmp_path / "video").glob("*.0003.mp4"))) == 2
    assert vireid([*again, "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "video").glob("*.mp4")) == ["infrared.mp4", "visible.mp4"]


def test_run_names_the_thresholds_it_uses(
    vireid, scene: Path, contract_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a gallery, the run says at which cosines it names people and pairs tracks, and which
    option changes each: the card's values, or the ones given."""
    from vireid import Embedder, Gallery

    with Embedder(contract_model, "cpu") as embedder:
        Gallery(tmp_path / "g.db", embedding_space=embedder.embedding_space, dim=embedder.dim).close()
    argv = [*_scene_args(scene, contract_model), "--fast", "--gallery", str(tmp_path / "g.db")]
    assert vireid([*argv, "--duration", "0.5"]) == 0
    err = capsys.readouterr().err
    assert "thresholds across modalities 0.5000, within visible 0.5000, infrared 0.5000, track pairs " in err
    assert "(--threshold, --within-threshold, --cross-threshold)" in err
    assert vireid([*argv, "--duration", "0.5", "--threshold", "0.6", "--within-threshold", "0.7"]) == 0
    err = capsys.readouterr().err
    assert "across modalities 0.6000, within visible 0.7000, infrared 0.7000, track pairs 0.6000" in err
    assert vireid([*argv[:-2], "--duration", "0.5", "--cross-threshold", "0.65"]) == 0  # no gallery
    err = capsys.readouterr().err
    assert "no --gallery: tracks are linked across cameras (at cosine 0.6500, --cross-threshold)" in err


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
    from vireid.streams.display import gui_backend

    if gui_backend() is not None:
        pytest.skip("this OpenCV has a GUI")
    assert vireid([*_scene_args(scene, contract_model), "--show"]) == 1
    assert "opencv-python" in capsys.readouterr().err


STOP_SIGNALS = [
    ("SIGINT", 130, "interrupted; tracks ended and outputs flushed"),
    ("SIGTERM", 0, "stopped by SIGTERM; tracks ended and outputs flushed"),  # `systemctl stop`: not failed
    ("SIGHUP", 0, "stopped by SIGHUP; tracks ended and outputs flushed"),  # its terminal closed
]


@pytest.mark.parametrize(("name", "code", "said"), [s for s in STOP_SIGNALS if hasattr(signal, s[0])])
def test_a_stop_signal_stops_cleanly_and_flushes_every_sink(
    scene: Path, contract_model: Path, tmp_path: Path, name: str, code: int, said: str
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
        proc.send_signal(getattr(signal, name))  # files replay in real time (8 s): still running
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert said in err
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


@pytest.mark.parametrize("keep_going", [False, True])
def test_a_camera_failing_for_good_stops_the_run_with_exit_1_with_opencv_capture_faked(
    vireid,
    contract_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    keep_going: bool,
) -> None:
    """A service left running half-blind looks healthy to its supervisor: by default the run stops
    and exits 1 (restarted, the failure in its log); --keep-going carries on and still exits 1."""
    from vireid.streams import sources

    def opener(uri: str, *args: object) -> LiveCaptureFaked:
        return LiveCaptureFaked(fail_after=10 if "infrared" in uri else None)

    monkeypatch.setattr(sources, "open_capture", opener)
    argv = ["run", "--source", "visible=rtsp://cam.invalid/visible", "--source"]
    argv += ["infrared=rtsp://cam.invalid/infrared", "--model", str(contract_model), "--device", "cpu"]
    argv += ["--duration", "4" if keep_going else "60", "--quiet", *(["--keep-going"] if keep_going else [])]
    assert vireid(argv) == 1
    err = capsys.readouterr().err
    assert "camera infrared failed: " in err  # the summary says why
    assert ("camera infrared failed; stopping" in err) is not keep_going
    assert "vireid run: error: a camera failed during the run" in err


def test_an_output_failing_for_good_stops_the_run(scene: Path, contract_model: Path) -> None:
    """The watch `vireid run` puts on its pipeline: a sink that raises (here an application's own) is
    dropped by the pipeline, and the run stops instead of going on without that output."""
    from vireid.cli.run import _StopOnFailure
    from vireid.streams import Pipeline, Sink, parse_source

    class BrokenOutput(Sink):
        def on_frame(self, result: object) -> None:
            raise OSError("the output's disk is gone")

    sources = [parse_source(f"{m}={scene / (m + '.mp4')}") for m in ("visible", "infrared")]  # real time
    pipeline = Pipeline(sources, str(contract_model), sinks=[BrokenOutput()], device="cpu", threads=1)
    watch = _StopOnFailure(pipeline, lambda stats: None, keep_going=False)
    stats = pipeline.run(on_status=watch, status_every=0.2)
    assert watch.stopped_for is not None and "BrokenOutput" in watch.stopped_for
    frames = sum(camera.processed for camera in stats.cameras.values())
    assert 0 < frames < 200  # stopped early: the 8 s scene has 240 frames (2 cameras at 15 fps)


def test_arguments_from_a_file_and_camera_addresses_from_the_environment(
    vireid,
    scene: Path,
    contract_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A service keeps its options in a file and camera credentials out of argv (`ps` shows argv)."""
    from vireid.streams import redact

    monkeypatch.setattr(redact, "_SECRETS", set())  # what this test registers stays in this test
    monkeypatch.setenv("GATE_VIDEO_DIR", str(scene))
    options = tmp_path / "gate.args"
    options.write_text(
        "# the gate cameras\n"
        "run --source 'visible=${GATE_VIDEO_DIR}/visible.mp4'  # expanded by vireid, not the shell\n"
        f"--source infrared=${{GATE_VIDEO_DIR}}/infrared.mp4 --model {contract_model}\n"
        "--device cpu --threads 1 --quiet\n"
    )
    assert vireid([f"@{options}", "--fast"]) == 0  # more arguments may follow the file
    assert "frames visible 120, infrared 120" in capsys.readouterr().err
    monkeypatch.delenv("GATE_VIDEO_DIR")
    assert vireid([f"@{options}"]) == 1
    assert "${GATE_VIDEO_DIR} is not set in the environment" in capsys.readouterr().err
    options.write_text("run --source 'visible=rtsp://viewer:s3cret@cam/1\n")
    with pytest.raises(SystemExit) as usage:
        vireid([f"@{options}"])
    err = capsys.readouterr().err
    assert usage.value.code == 2 and "line 1: No closing quotation" in err and "s3cret" not in err


def test_an_address_from_the_environment_is_never_shown(
    vireid,
    contract_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The password has a `/`, which the URL pattern of `redact` cannot tell from the path: shown as
    written, with `${NAME}`, and the value redacted wherever else it would appear."""
    from vireid.streams import redact

    monkeypatch.setattr(redact, "_SECRETS", set())
    monkeypatch.setenv("GATE_PASSWORD", "pa/ss")
    source = "visible=rtsp://viewer:${GATE_PASSWORD}@camera.invalid:1/stream"
    argv = ["run", "--source", source, "--model", str(contract_model), "--device", "cpu", "--quiet"]
    assert vireid([*argv, "--duration", "2"]) == 1  # the camera never answers
    shown = capsys.readouterr().err + caplog.text
    assert "pa/ss" not in shown and "rtsp://***@camera.invalid:1/stream" in caplog.text
    assert redact.redact("FFmpeg: bad auth 'pa/ss' for viewer") == "FFmpeg: bad auth '***' for viewer"
