"""Smoke test: the pipeline benchmark runs end to end on a small generated scene (numbers not checked,
except that the oracle run scores its own ground truth sensibly)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [p for p in (str(HERE), str(HERE.parent / "sdk")) if p not in sys.path]

from contract_model import build_contract_model  # noqa: E402
from scene_eval import cached_scene  # noqa: E402


def _bench():
    spec = importlib.util.spec_from_file_location("bench_pipeline", HERE / "bench_pipeline.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_pipeline_runs_on_a_small_scene(
    request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = getattr(request.config, "cache", None)
    scene = cached_scene(Path(cache.mkdir("vireid-synth-scene-8s")) if cache else tmp_path / "scene")
    model = build_contract_model(tmp_path / "contract.onnx", height=64, width=32)
    bench = _bench()
    base = ["--model", str(model), "--scene", str(scene), "--threads", "1", "--enroll-seconds", "8"]
    assert bench.main([*base, "--json", str(tmp_path / "model.json")]) == 0
    out = capsys.readouterr().out
    assert "[infrared] identification precision" in out and "real-time factor" in out and "embed" in out
    report = json.loads((tmp_path / "model.json").read_text())
    assert report["frames"] == {"visible": 120, "infrared": 120}
    assert report["enrolled"]["identities"] == 3 and report["realtime_factor"] > 0
    assert (
        bench.main([*base, "--detector", "gt", "--oracle", "0.2", "--json", str(tmp_path / "oracle.json")])
        == 0
    )
    oracle = json.loads((tmp_path / "oracle.json").read_text())
    assert oracle["infrared"]["identification"]["precision"] >= 0.9
    assert oracle["infrared"]["detection"]["recall"] == 1.0
