"""`vireid synth`: the command runs each kind, reports errors as messages, and its help agrees with the
generator's defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vireid.cli.main import main
from vireid.cli.synth import HELP_DEFAULTS


def test_help_defaults_agree_with_the_config_defaults() -> None:
    from vireid.training.data.synth.config import RegDBConfig, SceneConfig, SysuConfig

    sysu, regdb, scene = SysuConfig(), RegDBConfig(), SceneConfig()
    assert HELP_DEFAULTS["sysu"]["ids"] == sysu.ids
    assert HELP_DEFAULTS["sysu"]["images_per_camera"] == sysu.images_per_camera
    assert str(HELP_DEFAULTS["sysu"]["test_ids"]).startswith(f"{sysu.test_ids} ")
    assert SysuConfig(ids=239).test_ids == 239 // 3  # "a third when --ids < 240"
    assert HELP_DEFAULTS["regdb"] == {"ids": regdb.ids, "images_per_modality": regdb.images_per_modality}
    assert HELP_DEFAULTS["scene"] == {
        "seconds": scene.seconds,
        "people": scene.people,
        "fps": scene.fps,
        "size": f"{scene.width}x{scene.height}",
    }
    assert (sysu.seed, sysu.difficulty) == (0, 1.0)  # "--seed (default 0)", "--difficulty default 1"


def test_synth_sysu_writes_then_reuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["synth", "sysu", "--out", str(tmp_path), "--ids", "12", "--images-per-camera", "1", "--quiet"]
    argv += ["--val-ids", "2"]  # enough to calibrate on: no note on stderr
    assert main([*argv, "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("wrote ") and f"files to {tmp_path}" in out and err == ""
    assert (tmp_path / "exp" / "test_id.txt").is_file() and (tmp_path / "cam3").is_dir()
    assert main(argv) == 0
    assert "already holds this dataset" in capsys.readouterr().out


def test_synth_refuses_other_settings_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["synth", "regdb", "--out", str(tmp_path), "--ids", "4", "--images-per-modality", "1", "--quiet"]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "--seed", "7"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vireid synth: error:") and "seed=0 (asked 7)" in err and "--overwrite" in err
    assert main([*base, "--seed", "7", "--overwrite"]) == 0
    assert json.loads((tmp_path / "meta.json").read_text())["seed"] == 7


def test_synth_scene_with_size(tmp_path: Path) -> None:
    argv = ["synth", "scene", "--out", str(tmp_path), "--seconds", "1", "--people", "1", "--fps", "4"]
    assert main([*argv, "--size", "160x120", "--quiet"]) == 0
    truth = json.loads((tmp_path / "gt.json").read_text())
    assert (truth["width"], truth["height"], truth["num_frames"]) == (160, 120, 4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sysu", "--ids", "2"], "error: --ids must be an integer >= 3"),
        (["scene", "--size", "640"], "--size must look like 640x480"),
        (["scene", "--size", "641x480"], "error: --size: width and height must be even"),
        (["scene", "--size", "100x480"], "error: --size: width must be an integer >= 160"),
    ],
)
def test_synth_bad_options_exit_1_with_the_option_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["synth", *args, "--out", str(tmp_path / "out"), "--quiet"]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sysu", "--images-per-camera", "0"], "argument --images-per-camera: must be a positive integer"),
        (["regdb", "--difficulty", "9"], "argument --difficulty: must be a difficulty from 0 to 3"),
        (["sysu", "--workers", "0"], "argument --workers: must be a positive integer"),
        (["scene", "--seconds", "-1"], "argument --seconds: must be a positive number"),
        (["sysu", "--seed", "-3"], "argument --seed: must be a seed"),
        (["baselines", "--trials", "0"], "argument --trials: must be a positive integer"),
    ],
)
def test_synth_numbers_out_of_range_are_usage_errors_before_the_folder_is_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = ["--data", str(tmp_path)] if args[0] == "baselines" else ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as usage:
        main(["synth", *args, *out])
    assert usage.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # --workers 0 used to leave an empty folder behind


def test_synth_baselines_prints_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "sysu"
    assert (
        main(["synth", "sysu", "--out", str(data), "--ids", "9", "--images-per-camera", "2", "--quiet"]) == 0
    )
    capsys.readouterr()
    assert main(["synth", "baselines", "--data", str(data), "--trials", "2"]) == 0
    table = capsys.readouterr().out
    assert "2 trial(s)" in table and "colour-histogram" in table and "raw-pixel" in table
    assert main(["synth", "baselines", "--data", str(data), "--trials", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["matcher"] for s in report["scores"]] == ["colour-histogram", "raw-pixel"]
    assert main(["synth", "baselines", "--data", str(tmp_path / "missing")]) == 1
    assert "SYSU-MM01 folder does not exist" in capsys.readouterr().err


def test_a_set_too_small_to_calibrate_on_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "sysu", "--out", str(tmp_path / "s"), "--ids", "12", "--quiet"]) == 0
    assert "1 validation identity: threshold calibration" in capsys.readouterr().err
    common = ["synth", "sysu", "--out", str(tmp_path / "t"), "--ids", "12", "--val-ids", "2", "--quiet"]
    assert main(common) == 0
    assert "validation identity" not in capsys.readouterr().err
