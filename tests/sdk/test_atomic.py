"""Atomic writes: the target is its old self or completely new; a failure leaves no temporary file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vireid.atomic import atomic_file, write_atomic


def test_a_failure_inside_the_block_leaves_the_target_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_file(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_permissions_private_or_by_umask(tmp_path: Path) -> None:
    write_atomic(tmp_path / "secret.npz", b"x", private=True)
    write_atomic(tmp_path / "card.json", "{}\n")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "secret.npz").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "card.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "card.json").read_text(encoding="utf-8") == "{}\n"


def test_a_full_disk_during_an_export_leaves_nothing_behind(tmp_path: Path) -> None:
    """RLIMIT_FSIZE stands in for a full disk: the write fails part-way; the error names the file and
    no truncated model or temporary file is left (it used to leave NAME.fp16.onnx.tmp)."""
    code = (
        "import resource, sys\n"
        "from vireid.export.artifact import write_artifact\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "import signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "try:\n"
        f"    write_artifact({str(tmp_path / 'm.fp16.onnx')!r}, b'x' * 100000)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert (
        out.startswith("ArtifactError")
        and "m.fp16.onnx: cannot write it" in out
        and "Nothing was written" in out
    )
    assert list(tmp_path.iterdir()) == []
