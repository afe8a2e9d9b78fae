"""The quantiser's silencer touches the calling thread only: other threads' prints and logs get through."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Callable

import pytest

from vireid.export.quiet import capture_thread_stdout, quiet_quantiser


def _in_thread(work: Callable[[], None]) -> None:
    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_only_the_calling_threads_prints_are_captured(capsys: pytest.CaptureFixture[str]) -> None:
    before = sys.stdout
    with capture_thread_stdout() as captured:
        print("from the quantising thread")
        _in_thread(lambda: print("from another thread"))
    assert sys.stdout is before
    assert captured.getvalue() == "from the quantising thread\n"
    assert capsys.readouterr().out == "from another thread\n"


def test_overlapping_captures_in_two_threads_end_with_the_original_stream_back() -> None:
    before = sys.stdout
    inside, release = threading.Event(), threading.Event()
    other: dict[str, str] = {}

    def second() -> None:
        with capture_thread_stdout() as captured:
            print("second")
            inside.set()
            release.wait(timeout=10)
        other["text"] = captured.getvalue()

    thread = threading.Thread(target=second)
    try:
        with capture_thread_stdout() as first:
            thread.start()
            assert inside.wait(timeout=10)
            print("first")
        # The first capture ended while the second still runs: its thread prints normally again.
        assert sys.stdout is not before
    finally:
        release.set()
        thread.join(timeout=10)
    assert sys.stdout is before
    assert first.getvalue() == "first\n" and other["text"] == "second\n"


def test_a_nested_capture_hands_back_to_the_outer_one() -> None:
    before = sys.stdout
    with capture_thread_stdout() as outer:
        print("outer 1")
        with capture_thread_stdout() as inner:
            print("inner")
        print("outer 2")
    assert sys.stdout is before
    assert outer.getvalue() == "outer 1\nouter 2\n" and inner.getvalue() == "inner\n"


def test_without_any_stdout_other_threads_prints_still_do_nothing_quietly() -> None:
    before = sys.stdout
    sys.stdout = None  # type: ignore[assignment]  # pythonw, a detached service
    try:
        with capture_thread_stdout():
            print("dropped, as without a capture")
            _in_thread(lambda: print("dropped too"))
        assert sys.stdout is None
    finally:
        sys.stdout = before


def test_a_stream_installed_by_someone_else_during_the_capture_stays() -> None:
    before = sys.stdout
    replacement = io.StringIO()
    try:
        with capture_thread_stdout():
            sys.stdout = replacement
        assert sys.stdout is replacement
    finally:
        sys.stdout = before


def test_other_threads_root_logging_and_prints_survive_a_quantisation(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    def other_thread() -> None:
        logging.info("other thread info")
        logging.warning("Please consider pre-processing before quantization (other thread)")
        print("other thread print")

    with caplog.at_level(logging.DEBUG), quiet_quantiser():
        logging.info("quantiser bias copy")
        logging.warning("Please consider to run pre-processing before quantization.")
        logging.warning("a real quantiser warning")
        print("Number of tensors : 3")
        _in_thread(other_thread)
    root = [r.getMessage() for r in caplog.records if r.name == "root"]
    assert root == [
        "a real quantiser warning",
        "other thread info",
        "Please consider pre-processing before quantization (other thread)",
    ]
    assert capsys.readouterr().out == "other thread print\n"
    debug = [r.getMessage() for r in caplog.records if r.name == "vireid.export"]
    assert debug == ["onnxruntime quantiser: Number of tensors : 3"]
    assert not logging.getLogger().filters


def test_concurrent_quantisations_leave_an_unconfigured_root_logger_unconfigured() -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = []
    inside, release = threading.Event(), threading.Event()

    def second() -> None:
        with quiet_quantiser():
            inside.set()
            release.wait(timeout=10)
            logging.info("the second quantiser, after the first has finished")

    thread = threading.Thread(target=second)
    try:
        with quiet_quantiser():
            thread.start()
            assert inside.wait(timeout=10)
        release.set()
        thread.join(timeout=10)
        assert root.handlers == []  # no stderr handler installed for good by basicConfig
    finally:
        release.set()
        thread.join(timeout=10)
        root.handlers[:] = saved


def test_the_filter_knows_the_quantising_thread_without_thread_ids_in_records(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging, "logThreads", False)  # records then carry no thread id
    with caplog.at_level(logging.DEBUG), quiet_quantiser():
        logging.info("quantiser bias copy")
        _in_thread(lambda: logging.info("other thread info"))
    assert [r.getMessage() for r in caplog.records if r.name == "root"] == ["other thread info"]
