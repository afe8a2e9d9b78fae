"""`make demo`'s job end to end on a small synthetic set and a tiny config (the real demo takes minutes)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")

from vireid.demo import main
from vireid.training.data.synth import GENERATOR_VERSION

TINY = {
    "model": {
        "name": "mspac",
        "backbone": "resnet_tiny",
        "width": 8,
        "input_size": [64, 32],
        "parts": [2, 1],
    },
    "sampler": {"num_ids": 3, "num_instances": 2, "iters_per_epoch": 2},
    "optim": {"epochs": 1, "warmup_epochs": 0, "milestones": []},
    "run": {"device": "cpu", "eval_every": 0, "progress": False},
}


def test_demo_runs_every_stage_then_reuses_its_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY))
    args = ["--out", str(tmp_path / "demo"), "--config", str(config), "--ids", "24", "--quiet"]
    args += ["--scene-seconds", "16", "--bench-seconds", "0.1"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "trained 1 epochs" in first and "demo finished" in first
    demo = tmp_path / "demo"
    bench = json.loads((demo / "results" / "bench.json").read_text())
    expected = {("torch", "fp32"), ("ort-cpu", "fp32"), ("ort-cpu", "fp16"), ("ort-cpu", "int8")}
    if _torch_cuda():
        expected.add(("torch", "fp16"))  # runs where torch sees a GPU
    assert {(r["backend"], r["precision"]) for r in bench["rows"]} == expected
    pipeline = json.loads((demo / "results" / "pipeline.json").read_text())
    assert pipeline["frames"] == {"visible": 240, "infrared": 240} and pipeline["enrolled"]["identities"] >= 1
    assert (demo / "gallery.db").is_file() and (demo / "results" / "latency.png").stat().st_size > 1000
    markdown = (demo / "report.md").read_text()
    page = (demo / "report.html").read_text()
    for title in (
        "Accuracy on the held-out",
        "Export and parity",
        "Latency on this machine",
        "Real-time pipeline",
    ):
        assert f"## {title}" in markdown and f"<h2>{title}" in page
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):  # every figure the report links exists
        assert (demo / image).is_file(), image
    report = json.loads((tmp_path / "demo" / "results" / "evaluate.json").read_text())
    assert len(report["model"]["trials"]) == 10 and len(report["colour_histogram"]["trials"]) == 10
    assert (tmp_path / "demo" / "results" / "cmc.png").stat().st_size > 1000
    assert "result                 PASS" in first
    from vireid import ModelCard

    for name in ("demo.onnx", "demo.fp16.onnx", "demo.int8.onnx"):
        card = ModelCard.from_artifact(tmp_path / "demo" / "models" / name)
        assert card.input_size == (64, 32)
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "(reused)" in second and "already holds this training" in second
    # The demo regenerates its own data folders when they hold another generator version or other
    # settings (here --ids), and retrains when the training data changed under the same config.
    heldout_meta = demo / "data" / "sysu-heldout" / "meta.json"
    heldout_meta.write_text(json.dumps({**json.loads(heldout_meta.read_text()), "version": "0"}))
    assert main([("27" if arg == "24" else arg) for arg in args]) == 0
    third = capsys.readouterr().out
    assert (
        f"sysu-heldout: holds a synthetic set of other settings (version='0' (asked '{GENERATOR_VERSION}')"
        in third
    )
    assert "sysu-train: holds a synthetic set of other settings (ids=24 (asked 27)" in third
    assert json.loads(heldout_meta.read_text())["version"] == GENERATOR_VERSION
    assert json.loads(heldout_meta.read_text())["ids"] == 27
    assert "holds a training of another config or other data" in third and "trained 1 epochs" in third


def test_demo_regenerates_only_finished_synthetic_sets_and_never_through_a_symlink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vireid import DatasetError
    from vireid.demo import _generate
    from vireid.training.data.synth import SysuConfig, generate_sysu

    four, five = SysuConfig(ids=4, images_per_camera=1), SysuConfig(ids=5, images_per_camera=1)
    own = tmp_path / "own"
    generate_sysu(own, four, workers=1, show_progress=False)
    assert not _generate(generate_sysu, own, five, quiet=True).reused
    assert "(ids=4 (asked 5)); regenerating it" in capsys.readouterr().out
    linked = tmp_path / "linked"
    linked.symlink_to(own)
    with pytest.raises(DatasetError, match=r"ids=5 \(asked 4\)"):
        _generate(generate_sysu, linked, four, quiet=True)
    (own / "meta.json").unlink()  # an interrupted run, or a real dataset: never removed unasked
    with pytest.raises(DatasetError, match="delete the folder and run `make demo` again"):
        _generate(generate_sysu, own, five, quiet=True)
    assert (own / "cam1").is_dir()


def test_demo_names_a_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path), "--config", str(tmp_path / "nope.yaml")]) == 1
    assert "nope.yaml" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--bench-seconds", "0"], "--bench-seconds: seconds must be > 0"),
        (["--scene-seconds", "0.5"], "--scene-seconds: seconds must be in [1, 3600]"),
        (["--ids", "1"], "--ids: ids must be an integer >= 3"),
    ],
)
def test_demo_checks_its_numbers_before_the_first_stage(tmp_path: Path, capsys, option, message) -> None:
    """--bench-seconds 0 failed at the bench stage, after minutes of data and training."""
    assert main(["--out", str(tmp_path / "demo"), *option]) == 1
    assert message in capsys.readouterr().err and not (tmp_path / "demo").exists()


def _torch_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())
