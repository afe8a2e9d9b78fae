from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vireid import __version__
from vireid.cli.main import COMMANDS, main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vireid.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_help_lists_every_registered_command() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    for name in COMMANDS:
        assert name in done.stdout


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0 and __version__ in done.stdout


def test_no_command_prints_help_and_returns_usage_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_vireid_error_becomes_message_and_exit_1(tmp_path: Path) -> None:
    done = run_cli("info", str(tmp_path / "missing.onnx"))
    assert done.returncode == 1
    assert "missing.onnx" in done.stderr and "Traceback" not in done.stderr


def test_info_prints_card(tmp_path: Path) -> None:
    from test_card import CARD_KEY, make_card, write_onnx

    path = write_onnx(tmp_path / "m.onnx", {CARD_KEY: make_card().to_json()})
    done = run_cli("info", str(path))
    assert done.returncode == 0, done.stderr
    assert "mspac (fp32)" in done.stdout and "[N, 288, 144, 3] RGB" in done.stdout
