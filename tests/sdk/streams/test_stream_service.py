"""Running as a service: a processing loop that stops going round is seen (statistics, status line),
stopped (`stall_timeout`, `vireid run --stall-timeout`), and systemd hears of readiness, status and
watchdog pings through its real notification protocol (a datagram socket the test binds)."""

from __future__ import annotations

import itertools
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vireid import ConfigError, Embedder, ProcessingStalledError
from vireid.cli import main as cli_main
from vireid.cli.service import ServiceNotify, SystemdNotifier
from vireid.streams import Pipeline, PipelineStats, Sink, VideoSource
from vireid.streams.stats import STALL_SHOWN_AFTER, Heartbeat


@pytest.fixture(scope="module")
def embedder(contract_model: Path):
    with Embedder(contract_model, device="cpu", threads=1) as e:
        yield e


class BlockedOutput(Sink):
    """An output whose first frame write blocks (a hung network disk) until `release` is set, or for
    `hold` seconds."""

    def __init__(self, hold: float = 60.0) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.hold = hold
        self.blocked_for = 0.0
        self.closes = 0

    def on_frame(self, result: object) -> None:
        if not self.entered.is_set():
            self.entered.set()
            started = time.monotonic()
            self.release.wait(self.hold)
            self.blocked_for = time.monotonic() - started

    def close(self) -> None:
        self.closes += 1

    @property
    def closed(self) -> bool:
        return self.closes == 1  # exactly once

    def __repr__(self) -> str:
        return "BlockedOutput()"


class RecordingOutput(Sink):
    def __init__(self) -> None:
        self.frames = 0
        self.closes = 0

    def on_frame(self, result: object) -> None:
        self.frames += 1

    def close(self) -> None:
        self.closes += 1

    @property
    def closed(self) -> bool:
        return self.closes == 1  # exactly once


def _sources(scene: Path) -> list[VideoSource]:
    return [VideoSource(scene / f"{c}.mp4", c, c, realtime=False) for c in ("visible", "infrared")]


def test_statistics_say_how_long_and_where_processing_is_stuck(scene: Path, embedder: Embedder) -> None:
    blocked = BlockedOutput()
    pipeline = Pipeline(_sources(scene), embedder, sinks=[blocked])
    pipeline.start()
    try:
        assert blocked.entered.wait(30)
        time.sleep(1.5)
        stuck = pipeline.stats()
        assert stuck.stalled_for >= 1.4
        assert stuck.stalled_in == "sinks > output BlockedOutput() (on_frame)"
        blocked.release.set()
        time.sleep(0.5)
        assert pipeline.stats().stalled_for < stuck.stalled_for  # going round again
    finally:
        blocked.release.set()
        pipeline.stop()
    assert (pipeline.stats().stalled_for, pipeline.stats().stalled_in) == (0.0, "")  # not running
    assert pipeline.stuck_in is None and pipeline.left_open is None  # a clean stop


def test_time_the_whole_process_stood_still_is_not_a_stall() -> None:
    heartbeat = Heartbeat()
    assert heartbeat.stalled() == (0.0, "")
    heartbeat.beat()
    frozen_at = time.monotonic()
    time.sleep(0.3)
    frozen_for = time.monotonic() - frozen_at  # e.g. `docker pause`: run()'s own wait took as long
    before = heartbeat.stalled()[0]
    heartbeat.excuse(frozen_at, frozen_for)
    assert heartbeat.stalled()[0] <= before - frozen_for + 0.01
    with heartbeat.inside("embed"):
        assert heartbeat.stalled()[1] == "embed"


def test_a_loop_that_went_round_after_a_freeze_is_not_excused_again() -> None:
    """After the process is thawed the loop may go round before run() notices the gap; excusing the
    gap again would push its clock into the future and hide a hang that starts right after."""
    heartbeat = Heartbeat()
    frozen_at = time.monotonic()
    time.sleep(0.05)
    heartbeat.beat()  # thawed: the loop went round
    heartbeat.excuse(frozen_at, 3600.0)
    time.sleep(0.2)
    assert heartbeat.stalled()[0] >= 0.2


def _stats(stalled_for: float, stalled_in: str = "embed") -> PipelineStats:
    return PipelineStats(1.0, (), {}, {}, {}, 0, (), stalled_for, stalled_in)


def test_the_status_line_shows_a_stall_only_past_a_normal_rounds_time() -> None:
    assert "STALLED" not in _stats(STALL_SHOWN_AFTER - 1).status_line()
    assert "processing STALLED 42 s in embed" in _stats(42.0).status_line()


def test_run_stops_a_stuck_pipeline_and_closes_every_output_but_the_stuck_one(
    scene: Path, embedder: Embedder
) -> None:
    blocked, other = BlockedOutput(), RecordingOutput()
    pipeline = Pipeline(_sources(scene), embedder, sinks=[other, blocked])
    statuses: list[PipelineStats] = []
    reasons: list[str] = []
    started = time.monotonic()
    try:
        with pytest.raises(ProcessingStalledError, match=r"stuck in sinks > output BlockedOutput\(\)"):
            pipeline.run(
                stall_timeout=2.0, on_status=statuses.append, status_every=0.2, on_stopping=reasons.append
            )
        took = time.monotonic() - started
        assert other.closed and not blocked.closed  # closing the stuck one would hang as it does
        assert statuses[-1].stalled_for >= 2.0  # the last status reports the stall
        assert len(reasons) == 1 and "has not gone round" in reasons[0]
        assert took < 25  # stall (2 s) + readers and thread (<= 10 s, one deadline) + closing, not 60 s
        assert pipeline.running  # the thread is still inside the blocked output
        assert pipeline.left_open == "BlockedOutput()"
        assert pipeline.stuck_in == "sinks > output BlockedOutput() (on_frame)"
    finally:
        blocked.release.set()
    pipeline._thread.join(10)
    assert not pipeline.running  # released, it found the pipeline stopped and ended
    assert blocked.closed  # ... and closed the output left to it
    frames_after_stop = other.frames
    time.sleep(0.2)
    assert other.frames == frames_after_stop


def test_a_stop_request_during_a_stall_stops_without_waiting_for_the_stall_timeout(
    scene: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`systemctl stop` (SIGTERM) while processing hangs: the run stops within the service manager's
    stop timeout, not after the stall timeout. STOP_WAIT (10 s) is shortened to keep the test quick."""
    from vireid.streams import pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "STOP_WAIT", 1.0)
    blocked, other = BlockedOutput(), RecordingOutput()
    pipeline = Pipeline(_sources(scene), embedder, sinks=[other, blocked])
    threading.Thread(target=lambda: blocked.entered.wait(30) and pipeline.request_stop(), daemon=True).start()
    started = time.monotonic()
    reasons: list[str] = []
    try:
        pipeline.run(stall_timeout=300.0, on_stopping=reasons.append)
        assert time.monotonic() - started < 15  # not 300 s
        assert reasons == ["stop requested"]
        assert pipeline.left_open == "BlockedOutput()" and other.closed
    finally:
        blocked.release.set()


def test_an_ordinary_stop_request_is_the_reason_given(scene: Path, embedder: Embedder) -> None:
    sources = [VideoSource(scene / f"{c}.mp4", c, c) for c in ("visible", "infrared")]  # real time: 8 s
    pipeline = Pipeline(sources, embedder)
    reasons: list[str] = []
    threading.Timer(1.0, pipeline.request_stop).start()
    pipeline.run(on_stopping=reasons.append)
    assert reasons == ["stop requested"]
    assert pipeline.stuck_in is None


class StuckModelPipeline(Pipeline):
    """A pipeline whose model call hangs until released (a GPU that stopped answering)."""

    entered: threading.Event
    release: threading.Event

    def embed_crops(self, requests):  # type: ignore[no-untyped-def]
        self.entered.set()
        self.release.wait(60)
        return super().embed_crops(requests)


def test_a_model_it_built_is_closed_only_after_a_stuck_model_call_comes_back(
    scene: Path, contract_model: Path
) -> None:
    pipeline = StuckModelPipeline(_sources(scene), str(contract_model), device="cpu", threads=1)
    pipeline.entered, pipeline.release = threading.Event(), threading.Event()
    backend = pipeline.embedder.backend
    try:
        with pytest.raises(ProcessingStalledError, match="stuck in embed"):
            pipeline.run(stall_timeout=2.0)
        assert pipeline.stuck_in == "embed" and pipeline.left_open is None
        assert not backend._closed  # closing the session under the call could crash the process
        assert pipeline.running
    finally:
        pipeline.release.set()
    assert pipeline.wait_finished(10)
    assert backend._closed  # the thread closed what the pipeline built once it came back


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_a_stall_timeout_must_be_a_positive_number_of_seconds(
    scene: Path, embedder: Embedder, value: float
) -> None:
    pipeline = Pipeline(_sources(scene), embedder)
    with pytest.raises(ConfigError, match="stall_timeout must be a positive number of seconds or None"):
        pipeline.run(stall_timeout=value)
    pipeline.stop()


def test_run_with_a_stall_timeout_waits_for_an_output_slower_than_a_round_but_not_stuck(
    scene: Path, embedder: Embedder
) -> None:
    blocked = BlockedOutput(hold=2.0)
    pipeline = Pipeline(_sources(scene), embedder, sinks=[blocked])
    stats = pipeline.run(stall_timeout=30.0)
    assert blocked.entered.is_set() and blocked.blocked_for >= 1.9
    assert sum(c.processed for c in stats.cameras.values()) == 240  # every frame of both 8 s videos
    assert blocked.closed


class NotifySocket:
    """A bound datagram socket playing systemd's side of sd_notify."""

    def __init__(self, abstract: bool, folder: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"vireid-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            path = folder / "notify"
            self.sock.bind(str(path))
            self.env_value = str(path)
        self.sock.settimeout(0.2)

    def messages(self, until: float = 0.5) -> list[str]:
        out, deadline = [], time.monotonic() + until
        while time.monotonic() < deadline:
            try:
                out.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        return out


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path: an AF_UNIX socket path has a limit of about 108 bytes."""
    import tempfile

    with tempfile.TemporaryDirectory(dir="/tmp", prefix="vn") as folder:
        yield Path(folder)


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX") or sys.platform != "linux", reason="Linux sockets")
@pytest.mark.parametrize("abstract", [True, False])
def test_the_notifier_speaks_sd_notify_to_a_real_socket(abstract: bool, short_dir: Path) -> None:
    systemd = NotifySocket(abstract, short_dir)
    notifier = SystemdNotifier({"NOTIFY_SOCKET": systemd.env_value, "WATCHDOG_USEC": "4000000"})
    assert notifier.watchdog_seconds == 4.0
    notifier.ready()
    notifier.status("visible 15.0 fps\nWATCHDOG_USEC=1\0")  # one line: no assignment smuggled in
    notifier.watchdog()
    notifier.stopping("camera x failed\nMAINPID=1")
    notifier.stopping("said once")
    notifier.status("x" * 5000)  # systemd drops a datagram of 4096 bytes or more: cut, not lost
    notifier.status("\u00e9" * 3000)  # cut in bytes, never inside a character
    assert systemd.messages() == [
        "READY=1",
        "STATUS=visible 15.0 fps WATCHDOG_USEC=1",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=camera x failed MAINPID=1",
        "STATUS=" + "x" * 1021 + "...",
        "STATUS=" + "\u00e9" * 510 + "...",
    ]


def test_without_systemd_or_with_its_socket_gone_the_notifier_does_nothing_and_never_raises(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    quiet = SystemdNotifier({})
    assert not quiet.enabled
    quiet.ready()  # no socket, no error
    gone = SystemdNotifier({"NOTIFY_SOCKET": str(short_dir / "no-such-socket")})
    gone.ready()
    gone.watchdog()
    assert not gone.enabled  # switched off after the first failure, warned once
    assert len(caplog.records) == 1 and "cannot notify the service manager" in caplog.records[0].message
    relative = SystemdNotifier({"NOTIFY_SOCKET": "run/notify"})  # not in the protocol
    assert not relative.enabled and "not an absolute path or @name" in caplog.records[-1].message


@pytest.mark.skipif(sys.platform != "linux", reason="Linux abstract sockets")
def test_a_manager_too_busy_to_read_loses_messages_but_not_the_notifier(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    systemd = NotifySocket(True, short_dir)  # never read: its buffer fills, sends would block
    notifier = SystemdNotifier({"NOTIFY_SOCKET": systemd.env_value, "WATCHDOG_USEC": "4000000"})
    sender = threading.Thread(target=lambda: [notifier.status("x" * 1000) for _ in range(20000)], daemon=True)
    sender.start()
    sender.join(30)
    assert not sender.is_alive()  # MSG_DONTWAIT: never blocked on the full buffer
    assert notifier.enabled  # passing: tried again next time
    lost = [r for r in caplog.records if "a notification was lost" in r.message]
    assert len(lost) == 1  # said at most once a minute
    systemd.messages(0.5)  # drained, the next one arrives
    notifier.watchdog()
    assert systemd.messages() == ["WATCHDOG=1"]


@pytest.mark.parametrize(
    ("env", "seconds"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "3\u00b2"}, None),  # a superscript digit: isdigit() but not a number
        ({}, None),
    ],
)
def test_the_watchdog_interval_is_read_only_when_meant_for_this_process(
    env: dict[str, str], seconds: float | None
) -> None:
    assert SystemdNotifier({"NOTIFY_SOCKET": "@x", **env}).watchdog_seconds == seconds


@pytest.mark.skipif(sys.platform != "linux", reason="Linux abstract sockets")
def test_service_notify_pings_only_while_processing_goes_round(short_dir: Path) -> None:
    systemd = NotifySocket(True, short_dir)
    notifier = SystemdNotifier({"NOTIFY_SOCKET": systemd.env_value, "WATCHDOG_USEC": "20000000"})
    watch = ServiceNotify(notifier, stall_timeout=60.0, status_every=0.0)
    watch(_stats(0.1))
    watch(_stats(59.0))  # slow, not yet stuck
    watch(_stats(61.0))  # stuck: no ping
    sent = systemd.messages()
    assert sent[0] == "READY=1" and sent.count("READY=1") == 1
    assert sent.count("WATCHDOG=1") == 2
    assert not any("61 s" in m for m in sent)
    without_own_timeout = ServiceNotify(notifier, stall_timeout=None)
    assert without_own_timeout.stall_limit == 20.0  # then a loop stuck for WatchdogSec stops the pings


@pytest.mark.skipif(sys.platform != "linux", reason="Linux abstract sockets")
def test_vireid_run_under_systemd_reports_ready_status_watchdog_pings_and_stopping(
    scene: Path, contract_model: Path, short_dir: Path
) -> None:
    systemd = NotifySocket(True, short_dir)
    argv = ["run", "--source", f"visible={scene / 'visible.mp4'}", "--source"]
    argv += [f"infrared={scene / 'infrared.mp4'}", "--model", str(contract_model), "--device", "cpu"]
    argv += ["--threads", "1", "--duration", "3.5", "--quiet"]
    env = {**os.environ, "NOTIFY_SOCKET": systemd.env_value, "WATCHDOG_USEC": "10000000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-m", "vireid.cli.main", *argv], env=env, stderr=subprocess.PIPE)
    sent: list[str] = []
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        sent += systemd.messages(0.3)
    sent += systemd.messages(0.3)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert sent[0] == "READY=1"  # first, once
    assert sent.count("READY=1") == 1
    assert sent.count("WATCHDOG=1") >= 2  # every second while processing goes round
    statuses = [m for m in sent if m.startswith("STATUS=")]
    assert statuses and "visible" in statuses[0] and "infrared" in statuses[0]
    assert sent[-1] == "STOPPING=1\nSTATUS=--duration 3.5 s reached"


HANGING_VIDEO_OUTPUT = """
import sys, threading
from vireid.streams import sinks
real_on_frame = sinks.VideoSink.on_frame
def hanging_on_frame(self, result):
    if result.frame.index >= 20:
        threading.Event().wait()  # for good, like a write to a dead network disk
    real_on_frame(self, result)
sinks.VideoSink.on_frame = hanging_on_frame
# a non-daemon thread that never ends: a normal interpreter exit would wait for it for good
threading.Thread(target=threading.Event().wait, daemon=False).start()
from vireid.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_vireid_run_exits_1_when_processing_stalls_with_its_video_output_hung_by_a_monkeypatch(
    scene: Path, contract_model: Path, tmp_path: Path
) -> None:
    """The video output hangs for good (its write monkeypatched, standing in for a dead network disk):
    the run stops after --stall-timeout with exit 1, the events file, not stuck, is complete JSON
    Lines, and the process ends although its processing thread never comes back."""
    events = tmp_path / "events.jsonl"
    argv = ["run", "--source", f"visible={scene / 'visible.mp4'}", "--source"]
    argv += [f"infrared={scene / 'infrared.mp4'}", "--model", str(contract_model), "--device", "cpu"]
    argv += ["--threads", "1", "--fast", "--quiet", "--stall-timeout", "3"]
    argv += ["--events", str(events), "--video-out", str(tmp_path / "video")]
    done = subprocess.run(
        [sys.executable, "-c", HANGING_VIDEO_OUTPUT, *argv], capture_output=True, text=True, timeout=120
    )
    err = done.stderr
    assert done.returncode == 1, err
    assert re.search(
        r"the processing loop has not gone round for \d+ s, stuck in sinks > output VideoSink", err
    )
    assert "exit 1, so a service manager restarts the run" in err
    assert "processing was still stuck in sinks > output VideoSink" in err
    assert "is left unflushed (incomplete), the others were closed without the last tracks' ends" in err
    lines = events.read_text().splitlines()
    assert lines and all(line.startswith("{") and line.endswith("}") for line in lines)


class ClosedCapture:
    """OpenCV's answer for a camera that refuses the connection: a capture that is not opened."""

    def isOpened(self) -> bool:
        return False

    def release(self) -> None:
        pass


def test_reconnection_backoff_and_timeouts_reach_every_camera_with_opencv_capture_faked(
    contract_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fake_capture import LiveCaptureFaked

    from vireid.streams import sources

    attempts: list[tuple[str, float, float, float]] = []

    def opener(uri: str, kind: object, open_timeout: float, read_timeout: float) -> object:
        attempts.append((uri, time.monotonic(), open_timeout, read_timeout))
        return ClosedCapture() if "infrared" in uri else LiveCaptureFaked()

    monkeypatch.setattr(sources, "open_capture", opener)
    argv = ["run", "--source", "visible=rtsp://cam.invalid/visible", "--source"]
    argv += ["infrared=rtsp://cam.invalid/infrared", "--model", str(contract_model), "--device", "cpu"]
    argv += ["--duration", "2.5", "--quiet", "--keep-going"]
    argv += ["--reconnect-backoff", "0.2:0.4", "--open-timeout", "7", "--read-timeout", "3"]
    cli_main.main(argv)
    assert {(a[2], a[3]) for a in attempts} == {(7.0, 3.0)}
    infrared = [a[1] for a in attempts if "infrared" in a[0]]
    gaps = [b - a for a, b in itertools.pairwise(infrared)]
    assert len(infrared) >= 5  # 0.2, 0.4, 0.4, ... (the default 0.5:10 allows 3 in 2.5 s)
    assert max(gaps) < 0.4 * 1.25 + 0.3


@pytest.mark.parametrize("value", ["2:1", "0:1", "1", "a:b", "1:inf"])
def test_a_bad_reconnection_backoff_is_a_usage_error_naming_the_option(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--source", "visible=x.mp4", "--model", "m.onnx", "--reconnect-backoff", value]
    with pytest.raises(SystemExit) as usage:
        cli_main.main(argv)
    assert usage.value.code == 2
    assert "--reconnect-backoff: must be FIRST:LONGEST seconds" in capsys.readouterr().err


@pytest.mark.parametrize("opencv_log_level", [None, "WARNING"])
def test_a_dead_camera_logs_ffmpegs_reason_without_opencvs_misleading_warning(
    contract_model: Path, opencv_log_level: str | None
) -> None:
    """Real OpenCV and FFmpeg against a closed local port: every failed attempt used to add OpenCV's
    "can't be used to capture by name" warning; $OPENCV_LOG_LEVEL brings it back."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["run", "--source", f"infrared=rtsp://127.0.0.1:{port}/stream", "--model", str(contract_model)]
    argv += ["--device", "cpu", "--duration", "2.5", "--quiet", "--reconnect-backoff", "0.2:0.5"]
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}
    if opencv_log_level:
        env["OPENCV_LOG_LEVEL"] = opencv_log_level
    done = subprocess.run(
        [sys.executable, "-m", "vireid.cli.main", *argv], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 1  # no frame at all
    assert "Connection refused" in done.stderr  # FFmpeg's reason stays
    assert ("can't be used to capture by name" in done.stderr) is bool(opencv_log_level)
