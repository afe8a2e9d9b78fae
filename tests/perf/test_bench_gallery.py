"""Smoke test: the gallery benchmark script runs end to end at toy sizes (timings are not checked)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def test_bench_gallery_runs_with_small_sizes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "bench_gallery", Path(__file__).with_name("bench_gallery.py")
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--n", "600", "--dim", "32", "--enroll", "200", "--identities", "30", "--repeat", "2"]
    assert bench.main([*argv, "--dir", str(tmp_path), "--backends", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "[numpy] search_identities, 16 queries, top-10" in out and "per identity" in out
    assert list(tmp_path.iterdir()) == []  # its work folder is removed
