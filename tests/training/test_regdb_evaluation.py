"""RegDB evaluation never tests a checkpoint on identities it trained on: `vireid evaluate` picks the
checkpoint's own split and refuses the others (their test identities are its training identities)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from layouts import make_regdb

torch = pytest.importorskip("torch")

from vireid.cli.main import main as cli  # noqa: E402
from vireid.errors import ConfigError  # noqa: E402
from vireid.training.checkpoint import save_checkpoint  # noqa: E402
from vireid.training.evaluate import regdb_splits, regdb_training_split  # noqa: E402
from vireid.training.models import build_model  # noqa: E402


def checkpoint(path: Path, dataset: str = "regdb", split: int = 3) -> Path:
    torch.manual_seed(0)
    model = build_model(
        "baseline", 4, with_pretrained=False, backbone="resnet_tiny", width=8, input_size=[64, 32]
    )
    meta = {
        "model_config": model.config.to_dict(),
        "num_classes": 4,
        "train_config": {"data": {"dataset": dataset, "regdb_trial": split}},
    }
    return save_checkpoint(path, model.state_dict(), meta)


def test_the_training_split_is_read_from_the_checkpoint_description(tmp_path: Path) -> None:
    assert regdb_training_split(checkpoint(tmp_path / "regdb", split=7)) == 7
    assert regdb_training_split(checkpoint(tmp_path / "sysu", dataset="sysu")) is None
    assert regdb_training_split(tmp_path / "missing.safetensors") is None


def test_split_choice_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    trained = str(checkpoint(tmp_path / "regdb", split=3))
    artifact = str(tmp_path / "model.onnx")  # training split unknown
    assert regdb_splits([trained], None, None) == [3]
    assert regdb_splits([trained], 3, None) == [3]
    assert regdb_splits([artifact], 5, None) == [5]
    with caplog.at_level(logging.WARNING, logger="vireid.evaluate"):
        assert regdb_splits([artifact], None, None) == 10
    assert "averaging splits 1..10" in caplog.text and "--split N" in caplog.text
    for split, trials in ((4, None), (None, 10), (None, 1)):  # --trials 1 is split 1, not the trained one
        with pytest.raises(ConfigError, match=r"trained on RegDB split 3.*--split 3"):
            regdb_splits([trained], split, trials)
    with pytest.raises(ConfigError, match="not both"):
        regdb_splits([artifact], 2, 2)


def test_cli_evaluates_the_trained_split_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_regdb(tmp_path / "regdb")
    model = checkpoint(tmp_path / "run" / "last", split=3)
    out = tmp_path / "eval.json"
    common = ["evaluate", str(model), "--data", str(data), "--protocol", "regdb-v2t", "--device", "cpu"]
    assert cli([*common, "--json", str(out)]) == 0
    assert [t["trial"] for t in json.loads(out.read_text())["trials"]] == [3]
    assert cli([*common, "--trials", "10"]) == 1
    assert "trained on RegDB split 3" in capsys.readouterr().err
    assert cli([*common, "--split", "2"]) == 1
    assert cli(["evaluate", str(model), "--data", str(data), "--split", "2"]) == 1  # SYSU protocol
    assert "--split selects a RegDB split" in capsys.readouterr().err


def test_cli_refuses_a_missing_split_file_before_loading_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import vireid.training.evaluate as evaluate

    data = make_regdb(tmp_path / "regdb")
    (data / "idx" / "test_thermal_3.txt").unlink()
    loaded: list[str] = []
    monkeypatch.setattr(evaluate, "evaluate_directions", lambda path, *args, **kwargs: loaded.append(path))
    model = checkpoint(tmp_path / "run" / "last", split=3)
    assert (
        cli(["evaluate", str(model), "--data", str(data), "--protocol", "regdb-v2t", "--device", "cpu"]) == 1
    )
    assert "test_thermal_3.txt: split index file is missing" in capsys.readouterr().err
    assert loaded == []  # refused by check_dataset, before any model was loaded
