"""`vireid bench pipeline` end to end on a small generated scene: the report's layout, and an oracle run
(ground-truth boxes and embeddings that know who is in each box, a fake model named as such) that must
score its own ground truth sensibly. Speed numbers are printed, never asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [p for p in (str(HERE.parent / "sdk"),) if p not in sys.path]

from contract_model import build_contract_model  # noqa: E402

from vireid.cli.main import main  # noqa: E402


def scene_and_model(scene: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The shared 8 s scene (tests/conftest.py) and a contract model sized for it."""
    return scene, build_contract_model(tmp_path / "contract.onnx", height=64, width=32)


def test_bench_pipeline_cli_reports_on_a_small_scene(
    synthetic_scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene, model = scene_and_model(synthetic_scene, tmp_path)
    base = ["bench", "pipeline", str(model), "--scene", str(scene), "--threads", "1", "--enroll-seconds", "8"]
    assert main([*base, "--json", str(tmp_path / "model.json")]) == 0
    out = capsys.readouterr().out
    assert "[infrared] identification precision" in out and "real-time factor" in out
    assert "warning: enrolment covers the whole 8 s scene" in out  # --enroll-seconds 8 on 8 s
    assert "frame-to-result latency" in out and "embed" in out
    report = json.loads((tmp_path / "model.json").read_text())
    assert report["frames"] == {"visible": 120, "infrared": 120}
    assert report["enrolled"]["identities"] == 3 and report["realtime_factor"] > 0
    assert set(report["fps"]) == {"visible", "infrared"} and min(report["fps"].values()) > 0
    for cam in ("visible", "infrared"):
        latency = report["latency_ms"][cam]
        assert 0 <= latency["p50"] <= latency["p95"] <= latency["max"]
    assert report["enrolled"]["from_first_seconds"] == 8
    # the contract card's single-image threshold 0.5 (it has no track-mean estimate) for every pair
    assert report["thresholds"] == {
        "cross_modal": 0.5,
        "within": {"visible": 0.5, "infrared": 0.5},
        "pairs": 0.5,
    }
    assert "thresholds: across modalities 0.5000, within visible 0.5000, infrared 0.5000, track" in out
    # without --enroll-seconds a scene shorter than two minutes is enrolled from its first half
    assert main([*base[:-2], "--json", str(tmp_path / "half.json")]) == 0
    assert json.loads((tmp_path / "half.json").read_text())["enrolled"]["from_first_seconds"] == 4.0


def test_bench_pipeline_adds_several_scenes_up(
    synthetic_scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene, model = scene_and_model(synthetic_scene, tmp_path)
    base = ["bench", "pipeline", str(model), "--scene", str(scene), "--scene", str(scene), "--threads", "1"]
    assert main([*base, "--enroll-seconds", "8", "--json", str(tmp_path / "two.json")]) == 0
    assert "total over 2 scenes" in capsys.readouterr().out
    report = json.loads((tmp_path / "two.json").read_text())
    first, total = report["scenes"][0], report["total"]
    assert len(report["scenes"]) == 2 and total["scenes"] == 2
    for cam in ("visible", "infrared"):
        assert total[cam]["gt_tracks"] == sum(s[cam]["gt_tracks"] for s in report["scenes"]) > 0
        counted = [s[cam]["identification"]["identified_tracks"] for s in report["scenes"]]
        assert total[cam]["identified_tracks"] == sum(counted)
        correct = sum(s[cam]["identification"]["correct_tracks"] for s in report["scenes"])
        assert total[cam]["precision"] == (correct / sum(counted) if sum(counted) else 0.0)
    assert total["cross_modal"]["people_in_both"] == 2 * first["cross_modal"]["people_in_both"]
    assert main([*base, "--events", str(tmp_path / "e.jsonl")]) == 1
    assert "--events takes one --scene" in capsys.readouterr().err


def test_pipeline_totals_sum_counts_and_recompute_rates_with_empty_denominators() -> None:
    from types import SimpleNamespace

    from vireid.bench.pipeline import pipeline_totals
    from vireid.errors import InputSpecError

    def result(identified: int, correct: int, gt: int, enrolled: int, found: int, matches: int, right: int):
        ident = {
            "identified_tracks": identified,
            "correct_tracks": correct,
            "gt_tracks_identified": found,
            "enrolled_gt_tracks": enrolled,
            "enrolled_gt_tracks_identified": found,
        }
        camera = {"identification": ident, "gt_tracks": gt, "id_switches": 1}
        cross = {"matches": matches, "correct": right, "people_matched": right, "people_in_both": gt}
        return SimpleNamespace(cameras={"visible": camera, "infrared": camera}, cross_modal=cross)

    totals = pipeline_totals([result(4, 3, 8, 4, 3, 4, 3), result(0, 0, 6, 2, 0, 0, 0)])
    ir = totals["infrared"]
    counts = (ir["identified_tracks"], ir["correct_tracks"], ir["gt_tracks"], ir["id_switches"])
    assert counts == (4, 3, 14, 2)
    assert ir["precision"] == 3 / 4 and ir["recall"] == 3 / 14 and ir["recall_enrolled"] == 3 / 6
    assert totals["cross_modal"]["precision"] == 3 / 4 and totals["cross_modal"]["recall"] == 3 / 14
    empty = pipeline_totals([result(0, 0, 0, 0, 0, 0, 0)])
    assert empty["infrared"]["precision"] == empty["infrared"]["recall_enrolled"] == 0.0
    with pytest.raises(InputSpecError, match="at least one"):
        pipeline_totals([])


def test_bench_pipeline_oracle_scores_its_own_ground_truth(synthetic_scene: Path, tmp_path: Path) -> None:
    from vireid.bench.pipeline import PipelineBenchConfig, bench_pipeline

    scene, model = scene_and_model(synthetic_scene, tmp_path)
    config = PipelineBenchConfig(detector="gt", oracle=0.2, enroll_seconds=8)
    result = bench_pipeline(model, scene, config, threads=1).to_dict()
    assert result["infrared"]["identification"]["precision"] >= 0.9
    assert result["infrared"]["detection"]["recall"] == 1.0


def test_bench_pipeline_refuses_a_folder_without_ground_truth(tmp_path: Path, capsys) -> None:
    model = build_contract_model(tmp_path / "contract.onnx", height=64, width=32)
    assert main(["bench", "pipeline", str(model), "--scene", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "not a synthetic scene" in err and "gt.json" in err and "vireid synth scene" in err


def test_python_callers_get_the_same_enrolment_rule_as_the_cli(synthetic_scene: Path, tmp_path: Path) -> None:
    """The first minute, or the first half of a shorter scene, also without the CLI."""
    from vireid.bench.pipeline import PipelineBenchConfig, enrollment_seconds, load_scene

    scene, model = scene_and_model(synthetic_scene, tmp_path)
    truth = load_scene(scene)
    assert enrollment_seconds(PipelineBenchConfig(), truth) == truth.num_frames / truth.fps / 2 == 4.0
    assert enrollment_seconds(PipelineBenchConfig(enroll_seconds=3), truth) == 3
    from vireid.bench.pipeline import bench_pipeline

    result = bench_pipeline(model, scene, PipelineBenchConfig(detector="gt", oracle=0.2), threads=1)
    assert result.to_dict()["enrolled"]["from_first_seconds"] == 4.0


def test_bench_pipeline_settings_are_checked_before_a_scene_is_generated(tmp_path: Path, capsys) -> None:
    model = build_contract_model(tmp_path / "contract.onnx", height=64, width=32)
    assert main(["bench", "pipeline", str(model), "--detector", "yolo"]) == 1
    out, err = capsys.readouterr()
    assert "needs detector_model (--detector-model)" in err and "generating" not in out
    assert main(["bench", "pipeline", str(model), "--detector-model", str(tmp_path / "y.onnx")]) == 1
    assert "it would be ignored: add --detector yolo" in capsys.readouterr().err
    events = tmp_path / "events.jsonl"
    events.write_text('{"event": "source", "time": 1.0}\n')  # an earlier run's log is not replaced
    assert main(["bench", "pipeline", str(model), "--events", str(events)]) == 1
    assert "holds events of an earlier run" in capsys.readouterr().err and events.stat().st_size > 0
