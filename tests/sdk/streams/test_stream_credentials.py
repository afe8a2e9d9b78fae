"""Credentials in camera URLs never reach logs, events, status lines, reports or error messages.

`redact` is tested on its own, then `vireid run` is driven in a real process with an authenticated RTSP
URL that cannot connect (nothing listens on the port) next to a working file source, with debug
logging on, and every byte it wrote (stdout, stderr, the events file) is scanned for the secret.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vireid.errors import ConfigError, InputSpecError
from vireid.streams import VideoSource, parse_source
from vireid.streams.config import check_cameras
from vireid.streams.redact import has_credentials, redact

SECRET = "s3cr3t-P4ss"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://admin:s3cr3t@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
        ("http://viewer@cam.local/mjpg", "http://***@cam.local/mjpg"),
        ("rtsp://u:p@ss@host/x", "rtsp://***@host/x"),  # an unescaped @ in the password
        ("rtsp://admin:pa#ss@host/s", "rtsp://***@host/s"),  # an unescaped # or ? as well
        ("rtsp://admin:pa?ss@host:554/s", "rtsp://***@host:554/s"),
        # path-style and cheap-camera parameter names
        (
            "rtsp://h:554/user=admin_password=SECRET_channel=1_stream=0.sdp",
            "rtsp://h:554/user=***",
        ),
        ("rtsp://h/user=admin&password=SECRET&channel=1", "rtsp://h/user=***&password=***&channel=1"),
        ("http://cam/v.cgi?loginuse=admin&loginpas=SECRET", "http://cam/v.cgi?loginuse=***&loginpas=***"),
        ("http://cam/snap.cgi?chn=1&psw=SECRET", "http://cam/snap.cgi?chn=1&psw=***"),
        ("cannot open 'rtsp://a:b@h/s' (rtsp://c:d@i/t)", "cannot open 'rtsp://***@h/s' (rtsp://***@i/t)"),
        ("rtsp://10.0.0.5/stream1", "rtsp://10.0.0.5/stream1"),
        ("mail me at a@b.c", "mail me at a@b.c"),
        ("/videos/2024@gate.mp4", "/videos/2024@gate.mp4"),
        # credentials in the query, as many IP cameras take them
        ("http://cam/video.cgi?user=admin&pwd=hunter2", "http://cam/video.cgi?user=***&pwd=***"),
        ("http://cam/x?token=abc#t&Password=Q", "http://cam/x?token=***#t&Password=***"),
        ("http://cam/snap?keyframe=1&api_key=zz", "http://cam/snap?keyframe=1&api_key=***"),
        ("rtsp://cam/live?channel=1&subtype=0", "rtsp://cam/live?channel=1&subtype=0"),
        ("http://h/s?pw=1&X-Amz-Credential=abc&w=3", "http://h/s?pw=***&X-Amz-Credential=***&w=3"),
        # GStreamer element properties, space-separated, values optionally quoted
        (
            "rtspsrc location=rtsp://cam/s user-id=admin user-pw=S3cret ! decodebin ! appsink",
            "rtspsrc location=rtsp://cam/s user-id=*** user-pw=*** ! decodebin ! appsink",
        ),
        (
            'souphttpsrc location=http://x/y proxy-pw="a b" ! jpegdec',
            "souphttpsrc location=http://x/y proxy-pw=*** ! jpegdec",
        ),
        ("srtsrc uri=srt://h:1 passphrase=xyz!queue", "srtsrc uri=srt://h:1 passphrase=***!queue"),
        (
            "rtspsrc location=rtsp://c/s user-id = admin user-pw = pw1",
            "rtspsrc location=rtsp://c/s user-id=*** user-pw=***",
        ),
        ('souphttpsrc user-pw="a\\"b c" ! jpegdec', "souphttpsrc user-pw=*** ! jpegdec"),  # no tail leaks
        (
            'souphttpsrc extra-headers="h, Authorization=(string)\\"Basic dXNlcjpwYXNz\\"" ! jpegdec',
            'souphttpsrc extra-headers="h, Authorization=***" ! jpegdec',
        ),
        (
            "v4l2src device=/dev/video0 ! videoconvert ! appsink",
            "v4l2src device=/dev/video0 ! videoconvert ! appsink",
        ),
    ],
)
def test_redact_replaces_user_info_of_every_url(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert has_credentials(text) == (text != expected)


def test_sources_show_the_address_without_credentials() -> None:
    source = VideoSource(f"rtsp://admin:{SECRET}@127.0.0.1:9/live", "infrared", "gate")
    assert SECRET not in repr(source) and "rtsp://***@127.0.0.1:9/live" in repr(source)
    assert source.uri.endswith("@127.0.0.1:9/live") and SECRET in source.uri  # kept to open the stream
    with pytest.raises(InputSpecError, match=r"expected MODALITY\[@CAMERA\]=ADDRESS") as info:
        parse_source(f"rtsp://admin:{SECRET}@host/stream")
    assert SECRET not in str(info.value) and "***@host" in str(info.value)
    with pytest.raises(ConfigError) as dup:
        check_cameras([source, VideoSource(f"rtsp://admin:{SECRET}@127.0.0.1:10/b", "infrared", "gate")])
    assert SECRET not in str(dup.value) and "***@127.0.0.1" in str(dup.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_vireid_run_never_prints_or_writes_the_password(
    scene: Path, contract_model: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    url = f"rtsp://admin:{SECRET}@127.0.0.1:{_closed_port()}/live"
    argv = [
        "-v", "run", "--source", f"infrared@roof={url}", "--source", f"visible={scene / 'visible.mp4'}",
        "--model", str(contract_model), "--device", "cpu", "--threads", "1", "--duration", "4",
        "--events", str(events),
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "vireid.cli.main", *argv], capture_output=True, text=True, timeout=120
    )
    written = proc.stdout + proc.stderr + events.read_text()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "***@127.0.0.1" in written  # the failing source was reported, with its host
    assert SECRET not in written and "admin:" not in written
    kinds = {json.loads(line)["event"] for line in events.read_text().splitlines()}
    assert "source" in kinds  # the source-state events were written (and scanned above)


def test_a_mistyped_scheme_is_refused_without_the_password() -> None:
    """`rstp://admin:pw@...` was taken for a file and its 'no such file' message printed the password
    (Path() collapses :// to :/, which redaction did not recognise)."""
    from vireid import StreamError

    for typo in (f"rstp://admin:{SECRET}@10.0.0.5/stream", f"rtmps://admin:{SECRET}@h/s"):
        source = VideoSource(typo, "visible", "gate")
        with pytest.raises(StreamError) as error:
            source.check_file()
        assert SECRET not in str(error.value) and "does not open" in str(error.value)
        assert "rtsp://" in str(error.value)  # what it does open


def test_tracebacks_in_the_vireid_log_are_redacted(caplog) -> None:
    import logging

    import vireid.streams.sources  # noqa: F401  (installs the filter)

    log = logging.getLogger("vireid")
    with caplog.at_level(logging.ERROR, logger="vireid"):
        try:
            raise RuntimeError(f"backend lost rtsp://admin:{SECRET}@10.0.0.5/s")
        except RuntimeError:
            log.exception("camera %s: failed on %s", "gate", f"rtsp://admin:{SECRET}@10.0.0.5/s")
    formatted = logging.Formatter().format(caplog.records[-1])
    assert SECRET not in formatted and "rtsp://***@10.0.0.5/s" in formatted and "Traceback" in formatted
