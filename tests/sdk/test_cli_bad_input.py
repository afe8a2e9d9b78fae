"""Bad command-line input gets a clear error before any work, and loses nothing (from a CLI audit):
numbers out of range, output paths that would destroy a gallery, a model or an earlier log, options of
the other benchmark, malformed scene ground truth."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_gallery import DIM, SPACE, unit

from vireid import GalleryError
from vireid.cli.main import main
from vireid.errors import DatasetError, InputSpecError
from vireid.gallery import Gallery


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the CLI expecting argparse to refuse the arguments (exit 2); returns its message."""
    with pytest.raises(SystemExit) as stop:
        main(list(argv))
    assert stop.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["evaluate", "m.onnx", "--data", "d", "--batch", "0"], "--batch: must be a positive integer, got 0"),
        (["bench", "m.onnx", "--backend", "ort-cpu,foo"], "--backend: 'foo' is not one of torch, ort-cpu"),
        (["bench", "m.onnx", "--precision", "fp8"], "--precision: 'fp8' is not one of fp32, fp16, int8"),
        (["run", "-s", "visible=v.mp4", "-m", "m.onnx", "--threads", "0"], "--threads: must be a positive"),
        (
            ["run", "-s", "visible=v.mp4", "-m", "m.onnx", "--duration", "-1"],
            "--duration: must be a positive",
        ),
        (
            ["run", "-s", "visible=v.mp4", "-m", "m.onnx", "--detector-conf", "5"],
            "must be a number in [0, 1]",
        ),
        (
            ["run", "-s", "visible=v.mp4", "-m", "m.onnx", "--detector-conf", "nan"],
            "must be a number in [0, 1]",
        ),
        (["train", "--config", "c.yaml", "--data", "d", "--epochs", "0"], "--epochs: must be a positive"),
        (["verify", "m.onnx", "--identities", "0"], "--identities: must be a positive integer"),
        (["bench", "m.onnx", "--threads", "-1"], "--threads: must be a positive integer, got -1"),
        (["export", "c.safetensors", "--calibrate", "d", "--fmr", "2"], "--fmr: must be a number between 0"),
        (["verify", "m.onnx", "--min-cosine", "2"], "--min-cosine: must be a cosine in [-1, 1], got 2"),
        (["verify", "m.onnx", "--seed", "-1"], "--seed: must be a seed in [0, 2**32), got -1"),
        (["verify", "m.onnx", "--min-top1", "3"], "--min-top1: must be a number in [0, 1], got 3"),
        (["bench", "m.onnx", "--batch", "1,0"], "--batch: must be a positive integer, got 0"),
        (["bench", "m.onnx", "--batch", ","], "--batch: expected a comma-separated list, got ','"),
        (["bench", "m.onnx", "--warmup", "-1"], "--warmup: must be an integer >= 0, got -1"),
        (["bench", "m.onnx", "--seconds", "0"], "--seconds: must be a positive number, got 0"),
        (["bench", "pipeline", "m.onnx", "--threshold", "2"], "--threshold: must be a cosine in [-1, 1]"),
        (["bench", "pipeline", "m.onnx", "--enroll-seconds", "0"], "--enroll-seconds: must be a positive"),
        (
            ["run", "-s", "visible=v.mp4", "-m", "m.onnx", "--cross-threshold", "nan"],
            "--cross-threshold: must",
        ),
        (["evaluate", "m.onnx", "--data", "d", "--trials", "0"], "--trials: must be a positive integer"),
        (["export", "m.onnx", "--dla-core", "-1"], "--dla-core: must be an integer >= 0, got -1"),
        (["export", "m.onnx", "--workspace", "0"], "--workspace: must be a positive integer, got 0"),
        (["export", "m.onnx", "--int8-visible", "1.5"], "--int8-visible: must be a number in [0, 1]"),
        (["gallery", "search", "-g", "g.db", "-m", "m.onnx", "q.png", "-k", "0"], "-k: must be a positive"),
        (["gallery", "purge", "-g", "g.db", "--older-than-days", "-1"], "--older-than-days: must be a"),
    ],
)
def test_numbers_out_of_range_are_usage_errors(capsys, argv: list[str], expected: str) -> None:
    assert expected in usage_error(capsys, *argv)


def test_a_json_report_path_that_is_a_folder_is_refused_before_the_work(capsys, tmp_path: Path) -> None:
    message = usage_error(capsys, "evaluate", "m.onnx", "--data", "d", "--json", str(tmp_path))
    assert "is a folder; give a file path" in message


def test_report_paths_never_destroy_other_files(capsys, tmp_path: Path) -> None:
    """`--json model.onnx` used to replace the 5 MB model by a 1 kB report (exit 0)."""
    model = tmp_path / "demo.onnx"
    model.write_bytes(b"\x08\x07" + bytes(200))  # not JSON
    message = usage_error(capsys, "bench", str(model), "--json", str(model))
    assert "exists and is not a vireid --json report" in message and model.read_bytes()[:2] == b"\x08\x07"
    message = usage_error(capsys, "verify", str(model), str(model), "--json", str(model / "r.json"))
    assert f"{model} is a file, not a folder" in message
    assert "is not a PNG image" in usage_error(
        capsys, "evaluate", "m.onnx", "--data", "d", "--plot", str(model)
    )
    assert "ending in .png" in usage_error(capsys, "evaluate", "m.onnx", "--data", "d", "--plot", "cmc.jpg")
    report = tmp_path / "old.json"
    report.write_text('{"vireid_report": "evaluate", "a": 1}')  # a rerun may replace its own report
    assert (
        main(["evaluate", str(tmp_path / "missing.onnx"), "--data", str(tmp_path), "--json", str(report)])
        == 1
    )
    assert "no such file" in capsys.readouterr().err
    # JSON that is not a report: a checkpoint's JSON half, a dataset's meta.json, a model card
    checkpoint_json = tmp_path / "last.json"
    checkpoint_json.write_text('{"config": {}, "epoch": 40}')
    message = usage_error(capsys, "verify", str(model), str(model), "--json", str(checkpoint_json))
    assert "is not a vireid --json report" in message and "epoch" in checkpoint_json.read_text()


def test_report_paths_that_are_links_or_special_files_are_refused(capsys, tmp_path: Path) -> None:
    """A FIFO became a regular file and a symlink was replaced by the report (as root, /dev/full too)."""
    import os

    fifo = tmp_path / "p.json"
    os.mkfifo(fifo)
    assert "not a regular file" in usage_error(capsys, "verify", "a.onnx", "b.onnx", "--json", str(fifo))
    target = tmp_path / "target.json"
    target.write_text('{"vireid_report": "verify"}')
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert "is a symbolic link" in usage_error(capsys, "verify", "a.onnx", "b.onnx", "--json", str(link))
    assert link.is_symlink()
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        message = usage_error(capsys, "verify", "a.onnx", "b.onnx", "--json", str(locked / "r.json"))
        assert "is not writable" in message


def test_json_reports_are_marked_so_a_rerun_may_replace_them(tmp_path: Path) -> None:
    import json

    from vireid.cli.argtypes import REPORT_KEY, output_file, write_report

    path = write_report(tmp_path / "r.json", {"rows": [1]}, "bench")
    assert json.loads(path.read_text()) == {REPORT_KEY: "bench", "rows": [1]}
    assert output_file(str(path)) == path


def test_the_other_benchmarks_options_are_refused_not_ignored(capsys, tmp_path: Path) -> None:
    assert main(["bench", str(tmp_path / "m.onnx"), "--device", "cuda"]) == 1
    assert "--device: not an option of a model benchmark" in capsys.readouterr().err
    assert main(["bench", "pipeline", str(tmp_path / "m.onnx"), "--batch", "1"]) == 1
    assert "--batch: not an option of `vireid bench pipeline`" in capsys.readouterr().err


# ----- gallery export --------------------------------------------------------------------------------
@pytest.fixture
def enrolled(tmp_path: Path) -> Path:
    path = tmp_path / "g.db"
    with Gallery(path, SPACE, DIM) as gallery:
        gallery.enroll("alice", unit(np.random.default_rng(0), 2), "ir")
    return path


def test_an_export_never_replaces_the_gallery_a_model_or_an_older_export(enrolled: Path) -> None:
    model = enrolled.with_name("model.onnx")
    model.write_bytes(b"weights")
    old = enrolled.with_name("old.npz")
    old.write_bytes(b"an earlier export")
    with Gallery.open(enrolled) as gallery:
        with pytest.raises(GalleryError, match=r"an export is a \.npz file"):
            gallery.export_npz(enrolled)
        with pytest.raises(GalleryError, match=r"an export is a \.npz file"):
            gallery.export_npz(model)
        with pytest.raises(GalleryError, match="exists; choose another path, or pass overwrite=True"):
            gallery.export_npz(old)
        assert old.read_bytes() == b"an earlier export" and model.read_bytes() == b"weights"
        gallery.export_npz(old, overwrite=True)
    assert old.read_bytes()[:2] == b"PK"  # replaced on request, by a real export
    with Gallery.open(enrolled) as gallery:
        assert [i.name for i in gallery.identities()] == ["alice"]


def test_gallery_export_cli_needs_overwrite_for_an_existing_file(enrolled: Path) -> None:
    out = enrolled.with_name("g.npz")
    argv = ["gallery", "export", "-g", str(enrolled), "--out", str(out), "--allow-biometric-export"]
    assert main(argv) == 0
    assert main(argv) == 1  # refused: exists
    assert main([*argv, "--overwrite"]) == 0


# ----- run --events ------------------------------------------------------------------------------------
def test_run_refuses_an_events_file_that_is_an_input_or_an_earlier_log(enrolled: Path) -> None:
    model = enrolled.with_name("m.onnx")
    model.write_bytes(b"not read: the events path is checked first")
    base = ["run", "-s", "visible=v.mp4", "-m", str(model), "-g", str(enrolled)]
    before = enrolled.read_bytes()
    assert main([*base, "--events", str(enrolled), "--overwrite"]) == 1  # the gallery itself
    assert main([*base, "--events", str(model), "--overwrite"]) == 1
    assert enrolled.read_bytes() == before and model.read_bytes().startswith(b"not read")
    log = enrolled.with_name("events.jsonl")
    log.write_text('{"event": "track_started"}\n')
    assert main([*base, "--events", str(log)]) == 1  # neither --append nor --overwrite
    assert log.read_text() == '{"event": "track_started"}\n'


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "is an SQLite database (a gallery?)"),  # a copy of the gallery, not this run's input
        (b"\x00\x01binary", "its first line is not JSON"),
        (b'{"name": "alice"}\n', 'has no "event" field'),
    ],
    ids=["gallery", "binary", "other-json"],
)
def test_run_and_purge_never_overwrite_a_file_that_is_not_an_events_log(
    enrolled: Path, capsys, content: bytes | None, problem: str
) -> None:
    target = enrolled.with_name("not-events.db")
    target.write_bytes(enrolled.read_bytes() if content is None else content)
    before = target.read_bytes()
    model = enrolled.with_name("m.onnx")
    model.write_bytes(b"not read: the events path is checked first")
    for flag in ("--overwrite", "--append"):
        assert main(["run", "-s", "visible=v.mp4", "-m", str(model), "--events", str(target), flag]) == 1
        assert problem in capsys.readouterr().err
    purge = ["gallery", "purge", "-g", str(enrolled), "--older-than-days", "1e-9", "--events", str(target)]
    with Gallery.open(enrolled) as gallery:
        count = gallery.info().num_embeddings
    assert main(purge) == 1
    assert f"{problem}" in capsys.readouterr().err
    assert target.read_bytes() == before
    with Gallery.open(enrolled) as gallery:  # refused before the gallery's part ran
        assert gallery.info().num_embeddings == count


# ----- malformed inputs deeper down -----------------------------------------------------------------
@pytest.mark.parametrize("content", ["{not json", "{}", "[]", json.dumps({"cameras": {"visible": 3}})])
def test_a_malformed_scene_ground_truth_is_a_dataset_error(tmp_path: Path, content: str) -> None:
    from vireid.bench.scene import SceneTruth

    (tmp_path / "gt.json").write_text(content)
    with pytest.raises(DatasetError, match=r"gt\.json: .*regenerate the scene with `vireid synth scene`"):
        SceneTruth.load(tmp_path)


def test_a_nan_cross_modal_threshold_is_refused() -> None:
    from vireid.streams.matcher import Matcher

    with pytest.raises(InputSpecError, match=r"cross_threshold .* in \[-1, 1\], got nan"):
        Matcher(threshold=0.5, cross_threshold=math.nan)
    with pytest.raises(InputSpecError, match="got 5"):
        Matcher(threshold=0.5, cross_threshold=5.0)


def test_fmr_without_calibrate_is_refused_rather_than_ignored(capsys, tmp_path: Path) -> None:
    assert main(["export", str(tmp_path / "c.safetensors"), "--fmr", "0.01"]) == 1
    assert "--fmr sets the false-match rate of the --calibrate threshold" in capsys.readouterr().err


def test_a_folder_where_a_file_belongs_is_named_as_such(capsys, tmp_path: Path) -> None:
    folder = tmp_path / "models.onnx"
    folder.mkdir()
    assert main(["info", str(folder)]) == 1
    assert "is a folder without a vireid_card.json; give an .onnx file" in capsys.readouterr().err
    assert main(["gallery", "list", "-g", str(folder)]) == 1
    assert "is a folder; a gallery is one SQLite file" in capsys.readouterr().err


def test_info_on_a_checkpoint_says_to_export_it(capsys, tmp_path: Path) -> None:
    checkpoint = tmp_path / "last.safetensors"
    checkpoint.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    assert main(["info", str(checkpoint)]) == 1
    err = capsys.readouterr().err
    assert "a training checkpoint, not an exported model" in err and f"vireid export {checkpoint}" in err


def test_yolo_options_without_the_yolo_detector_are_refused(capsys, tmp_path: Path) -> None:
    argv = ["run", "-s", f"visible={tmp_path / 'v.mp4'}", "-m", str(tmp_path / "m.onnx")]
    assert main([*argv, "--detector-conf", "0.5"]) == 1
    assert (
        "--detector-conf: options of --detector yolo; the motion detector has none" in capsys.readouterr().err
    )
    assert "must be an integer >= 2, got 1" in usage_error(
        capsys, "export", "c.safetensors", "--int8-images", "1"
    )


def test_events_options_need_events_and_a_long_pipeline_source_is_no_file(capsys, tmp_path: Path) -> None:
    model = str(tmp_path / "missing.onnx")
    assert main(["run", "-s", "visible=v.mp4", "-m", model, "--append"]) == 1
    assert "give --events" in capsys.readouterr().err
    log = tmp_path / "events.jsonl"
    log.write_text('{"event": "track_started"}\n')
    pipeline = "visible=videotestsrc " + "! videoconvert " * 30 + "! appsink"  # > 255 characters, no '/'
    assert main(["run", "-s", pipeline, "-m", model, "--events", str(log), "--append"]) == 1
    assert "missing.onnx" in capsys.readouterr().err  # got past the events check without an OSError


def test_missing_data_or_model_is_reported_before_any_model_is_loaded(tmp_path: Path, capsys) -> None:
    """The first file is not a model at all: had it been loaded first, its error would come instead."""
    garbage = tmp_path / "m.onnx"
    garbage.write_bytes(b"not a model")
    assert main(["evaluate", str(garbage), "--data", str(tmp_path / "nowhere")]) == 1
    assert f"{tmp_path / 'nowhere'}: no such folder; --data takes a SYSU-MM01" in capsys.readouterr().err
    assert main(["verify", str(garbage), str(tmp_path / "c.onnx")]) == 1
    assert f"{tmp_path / 'c.onnx'}: no such file" in capsys.readouterr().err


def test_purge_checks_every_line_of_its_events_files_before_the_gallery(enrolled: Path, capsys) -> None:
    """A file whose first line is an event but which is not UTF-8 further down: refused before the gallery's
    part runs, so the purge never stops half-way."""
    log = enrolled.with_name("events.jsonl")
    log.write_bytes(b'{"event": "track_started", "time": 1}\n' + b'{"event": "x", "time": 2, "n": "\xff"}\n')
    with Gallery.open(enrolled) as gallery:
        count = gallery.info().num_embeddings
    assert (
        main(["gallery", "purge", "-g", str(enrolled), "--older-than-days", "1e-9", "--events", str(log)])
        == 1
    )
    assert "is not UTF-8 text at line 2" in capsys.readouterr().err
    with Gallery.open(enrolled) as gallery:
        assert gallery.info().num_embeddings == count


def test_a_system_error_is_one_line_with_the_path_not_a_traceback(capsys, tmp_path: Path) -> None:
    """`vireid export ... --out /proc/xx` failed in mkdir with a Python traceback."""
    pytest.importorskip("onnx")
    from contract_model import build_contract_model

    model = build_contract_model(tmp_path / "m.onnx")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["export", str(model), "--to", "fp16", "--out", str(blocker / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vireid export: error: ") and str(blocker) in err and "Traceback" not in err
