"""Training, evaluation and export refuse inputs that would lose a run or crash deep inside (from a CLI
audit): training over an earlier run, a run folder that is a file, an edited checkpoint description, an
opset the exporter does not know, a dataset without visible gallery images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_trainer import _config

from vireid.errors import ArtifactError, ConfigError, DatasetError
from vireid.training.trainer import train


def test_training_over_an_earlier_run_needs_resume_or_overwrite(sysu: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = train(_config(**{"optim.epochs": 1, "run.eval_every": 0}), sysu, run)
    before = first.last.read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a training run .* --resume .* --overwrite"):
        train(_config(**{"run.eval_every": 0}), sysu, run)
    assert first.last.read_bytes() == before  # nothing touched
    train(_config(**{"run.eval_every": 0}), sysu, run, overwrite=True)
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r["event"] == "epoch"] == [1, 2]  # the new run's log only


def test_a_run_folder_that_is_a_file_is_refused(sysu: Path, tmp_path: Path) -> None:
    occupied = tmp_path / "run"
    occupied.write_text("a file")
    with pytest.raises(ConfigError, match="is a file; the run folder"):
        train(_config(), sysu, occupied)


def test_a_checkpoint_description_without_its_model_config_is_an_artifact_error(
    sysu: Path, tmp_path: Path
) -> None:
    from vireid.training.checkpoint import load_checkpoint

    result = train(_config(**{"optim.epochs": 1, "run.eval_every": 0}), sysu, tmp_path / "run")
    desc = result.last.with_suffix(".json")
    meta = json.loads(desc.read_text())
    del meta["model_config"]
    desc.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="lacks model_config"):
        load_checkpoint(result.last)


def test_an_opset_newer_than_the_exporter_knows_is_a_config_error(tmp_path: Path) -> None:
    from vireid.export import to_onnx

    with pytest.raises(ConfigError, match=r"opset must be an integer from 13 to \d+"):
        to_onnx(tmp_path / "unread.safetensors", tmp_path / "m.onnx", opset=99)


def test_a_dataset_without_visible_gallery_images_is_a_dataset_error(sysu: Path, tmp_path: Path) -> None:
    from vireid.training.data.sysu import SysuMM01

    copy = tmp_path / "sysu"
    shutil.copytree(sysu, copy)
    for cam in ("cam1", "cam2", "cam4", "cam5"):
        shutil.rmtree(copy / cam)
        (copy / cam).mkdir()
    with pytest.raises(DatasetError, match="no visible test images under cam1/, cam2/, cam4/, cam5/"):
        SysuMM01(copy).gallery()


def test_overwrite_removes_the_old_run_only_once_the_new_one_is_set_up(sysu: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = train(_config(**{"optim.epochs": 1, "run.eval_every": 0}), sysu, run)
    before = first.last.read_bytes()
    with pytest.raises(DatasetError):
        train(_config(), tmp_path / "no-such-data", run, overwrite=True)  # fails while setting up
    assert first.last.read_bytes() == before  # the old run survives a failed replacement
    with pytest.raises(ConfigError, match="exclude each other"):
        train(_config(), sysu, run, resume=True, overwrite=True)


def test_a_folder_with_only_a_best_checkpoint_or_a_log_holds_a_run(sysu: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"event": "epoch", "epoch": 1}\n')
    with pytest.raises(ConfigError, match=r"already holds a training run \(metrics\.jsonl\)"):
        train(_config(), sysu, run)
