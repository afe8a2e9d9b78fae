"""`vireid export` and `vireid verify` (command modules run as `vireid.cli.main` runs them)."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

import fake_tensorrt as fake
import pytest

from vireid import ArtifactError, ConfigError, InputSpecError, MissingDependencyError, ModelCard, VireidError
from vireid.cli import export as export_cmd
from vireid.cli import verify as verify_cmd
from vireid.export.triton import parse_config

HEAVY = ("torch", "onnx", "onnxruntime", "tensorrt", "onnxslim", "tritonclient")


def cli(module, argv: list[str]) -> int:
    """Parse and run one command module; a `VireidError` propagates (main turns it into exit 1)."""
    parser = argparse.ArgumentParser(prog=f"vireid {module.__name__.rsplit('.', 1)[-1]}")
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


def test_export_chain_with_calibration_and_triton(tiny_checkpoint, tiny_sysu, tmp_path, capsys) -> None:
    pytest.importorskip("tritonclient", reason="the triton step checks its config with it (dev extra)")
    out = tmp_path / "out"
    argv = [str(tiny_checkpoint), "--to", "onnx,fp16,triton", "--out", str(out), "--name", "m"]
    argv += [
        "--calibrate",
        str(tiny_sysu),
        "--fmr",
        "0.01",
        "--identities",
        "8",
        "--json",
        str(out / "r.json"),
    ]
    assert cli(export_cmd, argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("result                 PASS") == 2  # ONNX vs PyTorch, FP16 vs FP32 ONNX
    assert "m.onnx (cpu)  vs  tiny.safetensors (PyTorch)" in printed and "false-match rate 0.01" in printed
    for name in ("m.onnx", "m.fp16.onnx"):
        card = ModelCard.from_onnx(out / name)
        assert card.match_threshold is not None and card.match_threshold_fmr == 0.01
        assert card.match_threshold_data["precision"] == card.precision.value
        impostors = card.match_threshold_data["impostor_pairs"]
        step = "fp16" if "fp16" in name else "onnx"
        warned = f"{step}: warning: {impostors} impostor pairs cannot measure" in printed
        assert warned == (impostors * 0.01 < 1)  # warned exactly when the pairs cannot resolve 1 %
    assert ModelCard.from_artifact(out / "triton" / "m") == ModelCard.from_onnx(out / "m.fp16.onnx")  # info
    config = parse_config((out / "triton" / "m" / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx" and (out / "triton" / "m" / "1" / "model.onnx").is_file()
    result = json.loads((out / "r.json").read_text())
    assert result["passed"] and set(result["reports"]) == {"onnx", "fp16"}
    assert set(result["artifacts"]) == {"onnx", "fp16", "triton"} and result["seconds"]["onnx"] > 0
    # calibration records are JSON objects all the way down, not Python reprs of nested dataclasses
    calibration = result["calibrations"]["onnx"]
    track = calibration["track_means"]  # the tiny set has several people in both modalities
    assert set(track) >= {"identities", "fmr_at_threshold", "tmr_at_threshold", "threshold_for_target"}
    assert track["identities"] >= 2 and 0.0 <= track["fmr_at_threshold"] <= 1.0
    assert "Check(" not in json.dumps(result["calibrations"])


@pytest.mark.parametrize(
    ("val_split", "same_data", "warned"),
    [("test", True, True), (None, True, True), ("val", True, False), ("test", False, False)],
)
def test_calibrating_on_val_identities_the_checkpoint_trained_on_is_flagged(
    tiny_sysu, tmp_path, val_split, same_data, warned
) -> None:
    import shutil

    from vireid.export.chain import seen_calibration_identities
    from vireid.training.data.sysu import SysuMM01
    from vireid.training.factory import data_fingerprint

    trained = data_fingerprint("sysu", tiny_sysu, SysuMM01(tiny_sysu).train_set())
    moved = shutil.copytree(tiny_sysu, tmp_path / "moved")  # recognised by content, not by path
    train_config = {"data": {"dataset": "sysu"} | ({"val_split": val_split} if val_split else {})}
    meta = {"train_config": train_config, "data": trained | ({} if same_data else {"sha256": "0" * 64})}
    (tmp_path / "run.json").write_text(json.dumps(meta))
    warning = seen_calibration_identities(tmp_path / "run.safetensors", moved)
    assert (warning is not None) == warned
    if warned:
        assert "trained on the val identities" in warning and "data.val_split: val" in warning
    assert seen_calibration_identities(tmp_path / "run.onnx", moved) is None  # no training record
    assert seen_calibration_identities(tmp_path / "run.safetensors", tmp_path / "nothing") is None


def test_dla_chain_is_refused_before_any_step_runs(tiny_checkpoint, tmp_path) -> None:
    for to, batch, message in [
        ("onnx,fp16", "4,4,4", "add engine to --to"),
        ("onnx,fp16,engine,triton", "4,4,4", "serve it with --batch 1,1,1"),
        ("onnx,engine", "4,4,4", "DLA runs FP16 or INT8 only"),
        ("onnx,fp16,engine", "1,8,32", "DLA has no dynamic shapes"),
    ]:
        argv = [str(tiny_checkpoint), "--to", to, "--out", str(tmp_path / "out"), "--batch", batch]
        with pytest.raises(ConfigError, match=message):
            cli(export_cmd, [*argv, "--dla-core", "0"])
        assert not (tmp_path / "out").exists()  # nothing was exported first


def test_engine_step_without_tensorrt_prints_trtexec(monkeypatch, tiny_fp16, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError, match=r"(?s)vireid\[tensorrt\].*trtexec --onnx="):
        cli(export_cmd, [str(tiny_fp16), "--to", "engine", "--out", str(tmp_path), "--no-verify"])


def test_engine_and_triton_steps_with_fake_tensorrt(monkeypatch, tiny_fp16, tmp_path, capsys) -> None:
    pytest.importorskip("tritonclient", reason="the triton step checks its config with it (dev extra)")
    monkeypatch.setitem(sys.modules, "tensorrt", fake.tensorrt_module())
    for name, module in fake.cuda_modules(fake.FakeCudart()).items():
        monkeypatch.setitem(sys.modules, name, module)
    argv = [
        str(tiny_fp16),
        "--to",
        "engine,triton",
        "--out",
        str(tmp_path),
        "--batch",
        "1,4,16",
        "--no-verify",
    ]
    assert cli(export_cmd, argv) == 0
    engine = tmp_path / "tiny.fp16.engine"
    assert ModelCard.from_engine(engine).profile.max == 16 and (tmp_path / "timing.cache").is_file()
    config = parse_config((tmp_path / "triton" / "tiny" / "config.pbtxt").read_text())
    assert (config.platform, config.max_batch_size) == ("tensorrt_plan", 16)
    assert "engine: wrote" in capsys.readouterr().out


def test_trtexec_and_attach_helpers_fake_engine_file(tiny_fp16, tmp_path, capsys) -> None:
    out = tmp_path / "new"  # created, so that trtexec can save there after its build
    assert cli(export_cmd, [str(tiny_fp16), "--trtexec", "--out", str(out), "--batch", "1,4,16"]) == 0
    command, _, attach = capsys.readouterr().out.strip().splitlines()
    assert command.startswith("trtexec ") and "--maxShapes=images:16x128x64x3,modality:16" in command
    assert f"--saveEngine={out / 'tiny.fp16.engine'}" in command and out.is_dir()
    # the card line repeats the profile, so the card describes the engine trtexec builds
    assert attach == f"vireid export {tiny_fp16} --attach {out / 'tiny.fp16.engine'} --batch=1,4,16"
    engine = fake.write_engine(
        tmp_path / "tiny.fp16.engine", fake.engine_spec(128, 64, 128, profile=(1, 4, 16))
    )
    assert cli(export_cmd, [str(tiny_fp16), "--attach", str(engine), "--batch", "1,4,16"]) == 0
    assert ModelCard.from_engine(engine).profile.max == 16
    # an engine built elsewhere can go on into a Triton repository, and nowhere else
    assert cli(export_cmd, [str(engine), "--to", "triton", "--out", str(tmp_path / "t")]) == 0
    assert "tensorrt_plan" in (tmp_path / "t" / "triton" / "tiny" / "config.pbtxt").read_text()
    with pytest.raises(ConfigError, match="the only step from an engine is triton"):
        cli(export_cmd, [str(engine), "--to", "fp16", "--out", str(tmp_path / "t2")])
    with pytest.raises(ConfigError, match=r"--calibrate: .* is an engine"):
        cli(
            export_cmd,
            [str(engine), "--to", "triton", "--calibrate", str(tmp_path), "--out", str(tmp_path / "t2")],
        )
    assert not (tmp_path / "t2").exists()  # refused before anything was written
    with pytest.raises(ArtifactError, match="not a training checkpoint"):
        cli(export_cmd, [str(engine.with_suffix(".bin")), "--out", str(tmp_path / "t3")])


def test_trtexec_and_attach_carry_an_fp16_build_of_an_fp32_onnx_fake_engine_file(
    tiny_onnx, tmp_path, capsys
) -> None:
    assert cli(export_cmd, [str(tiny_onnx), "--trtexec", "--precision", "fp16", "--out", str(tmp_path)]) == 0
    command, _, attach = capsys.readouterr().out.strip().splitlines()
    assert "--fp16" in command and attach.endswith("--precision=fp16")
    engine = fake.write_engine(tmp_path / "tiny.engine", fake.engine_spec(128, 64, 128, profile=(1, 8, 32)))
    assert cli(export_cmd, [str(tiny_onnx), "--attach", str(engine), "--precision", "fp16"]) == 0
    assert ModelCard.from_engine(engine).precision.value == "fp16"


def test_trtexec_and_attach_name_the_onnx_they_need(tiny_checkpoint, tmp_path) -> None:
    for flag in (["--trtexec", "--out", str(tmp_path)], ["--attach", str(tmp_path / "x.engine")]):
        with pytest.raises(InputSpecError, match=rf"{flag[0]} takes the exported .onnx"):
            cli(export_cmd, [str(tiny_checkpoint), *flag])
    with pytest.raises(ConfigError, match="--out: not read by --attach"):  # the card goes beside the engine
        cli(
            export_cmd, [str(tiny_checkpoint), "--attach", str(tmp_path / "x.engine"), "--out", str(tmp_path)]
        )


@pytest.mark.parametrize(
    ("argv", "error", "match"),
    [
        (["--to", "onnx,tflite"], ConfigError, "onnx, fp16, int8, engine, triton"),
        (["--to", "onnx"], ConfigError, "already ONNX"),
        (["--to", "fp16"], ConfigError, "already FP16"),
        (["--to", "int8"], ConfigError, "int8 step needs calibration images: pass --int8-data"),
        (
            ["--to", "int8", "--int8-data", "/nonexistent/sysu"],
            ConfigError,
            "--int8-data /nonexistent/sysu: no",
        ),
        (
            ["--to", "triton", "--calibrate", "/nonexistent/sysu"],
            ConfigError,
            "--calibrate /nonexistent/sysu: no",
        ),
    ],
)
def test_export_argument_errors(tiny_fp16, tmp_path, argv, error, match) -> None:
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        cli(export_cmd, [str(tiny_fp16), "--out", str(out), *argv])
    assert not out.exists() or not any(out.iterdir())  # refused before the first step wrote anything
    with pytest.raises(SystemExit):
        cli(export_cmd, [str(tiny_fp16), "--batch", "1,2"])


def test_verify_prints_the_report_and_sets_the_exit_status(tiny_onnx, tiny_fp16, tmp_path, capsys) -> None:
    base = [str(tiny_onnx), str(tiny_fp16), "--device", "cpu", "--identities", "8"]
    assert cli(verify_cmd, [*base, "--json", str(tmp_path / "r.json")]) == 0
    assert "PASS" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["thresholds"]["min_cosine"] == 0.999  # fp16 default
    assert cli(verify_cmd, [*base, "--min-cosine", "1", "--no-batch-check"]) == 1  # fp16 never reaches 1
    printed = capsys.readouterr().out
    assert "FAIL: " in printed and "cosine" in printed.split("FAIL: ")[1] and "not measured" in printed


def test_verify_of_a_missing_file_is_a_vireid_error(tiny_onnx, tmp_path) -> None:
    with pytest.raises(VireidError, match=r"missing\.onnx"):
        cli(verify_cmd, [str(tiny_onnx), str(tmp_path / "missing.onnx"), "--device", "cpu"])


def test_export_modules_import_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import vireid.cli.export, vireid.cli.verify, vireid.export\n"
        "from vireid.export import artifact, calibrate, chain, fp16, onnx_export, parity, tensorrt, triton\n"
        "from vireid.export import to_engine, to_triton, verify\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_dotted_checkpoint_name_exports_that_checkpoint(tiny_checkpoint, tmp_path, capsys) -> None:
    """`model.best.safetensors` next to `model.safetensors`: the export reads the file it was given and
    names its artifacts after it (it once read `model.safetensors` and wrote `model.onnx`)."""
    import hashlib
    import shutil

    from vireid.training.checkpoint import paths_for

    for name in ("model", "model.best+ema"):
        for path in paths_for(tiny_checkpoint):
            shutil.copy(path, tmp_path / f"{name}{path.suffix}")
    other = tmp_path / "model.safetensors"
    other.write_bytes(other.read_bytes()[:-8] + b"\0" * 8)  # same shapes, other weights: another checkpoint
    source = tmp_path / "model.best+ema.safetensors"
    assert (
        cli(export_cmd, [str(source), "--to", "onnx,triton", "--out", str(tmp_path / "out"), "--no-verify"])
        == 0
    )
    card = ModelCard.from_onnx(tmp_path / "out" / "model.best+ema.onnx")
    assert card.source_checkpoint_sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert card.source_checkpoint_sha256 != hashlib.sha256(other.read_bytes()).hexdigest()
    assert (tmp_path / "out" / "triton" / "model.best_ema" / "config.pbtxt").is_file()  # a Triton-safe name
    from vireid.training.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "model.best+ema").path == source  # the bare dotted name too


def test_late_step_options_are_checked_before_the_first_step(tiny_checkpoint, tiny_sysu, tmp_path) -> None:
    """(A calibration set with one val identity used to stop the export after the ONNX step, leaving a
    file without a threshold.)"""
    from vireid.training.data.synth import generate

    one_val = tmp_path / "one-val"
    generate(
        "sysu", one_val, workers=1, show_progress=False, ids=8, images_per_camera=1, val_ids=1, test_ids=3
    )
    out = tmp_path / "out"
    cases = [
        (["--to", "onnx,engine", "--batch", "8,4,2"], "batch"),
        (["--to", "onnx,triton", "--triton-name", ".."], "may not start with '.'"),
        (["--to", "onnx", "--calibrate", str(tmp_path)], "SYSU-MM01-layout folder"),
        (["--to", "onnx,fp16", "--calibrate", str(one_val)], r"1 val identities .* needs at least 2"),
    ]
    for extra, message in cases:
        with pytest.raises(ConfigError, match=message):
            cli(export_cmd, [str(tiny_checkpoint), "--out", str(out), "--no-verify", *extra])
        assert not out.exists()  # refused before anything was written


def test_calibrate_on_an_onnx_source_calibrates_a_copy_and_packages_it(
    tiny_onnx, tiny_sysu, tmp_path
) -> None:
    """--calibrate with an .onnx source and --to triton used to be ignored without a word."""
    import hashlib

    before = hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    out = tmp_path / "out"
    argv = [str(tiny_onnx), "--to", "triton", "--calibrate", str(tiny_sysu), "--out", str(out), "--no-verify"]
    assert cli(export_cmd, argv) == 0
    assert hashlib.sha256(tiny_onnx.read_bytes()).hexdigest() == before  # the given file is untouched
    calibrated = ModelCard.from_onnx(out / tiny_onnx.name)
    assert calibrated.match_threshold is not None
    assert ModelCard.from_artifact(out / "triton" / "tiny") == calibrated


def test_an_export_never_replaces_an_earlier_ones_artifacts_unasked(tiny_onnx, tmp_path, capsys) -> None:
    """A second export into the same folder replaced the first's files without a word, even when the
    new one then failed its parity check."""
    out = tmp_path / "out"
    argv = [str(tiny_onnx), "--to", "fp16", "--out", str(out), "--no-verify"]
    assert cli(export_cmd, argv) == 0
    fp16 = out / f"{tiny_onnx.stem}.fp16.onnx"
    before = fp16.stat().st_mtime_ns
    with pytest.raises(ConfigError, match=r"an earlier export left .*\.fp16\.onnx; pass --overwrite"):
        cli(export_cmd, argv)
    assert fp16.stat().st_mtime_ns == before
    assert cli(export_cmd, [*argv, "--overwrite"]) == 0
    assert cli(export_cmd, [*argv, "--name", "other"]) == 0  # another name is another set of files
    for bad in ("../escaped", "", "a/b"):
        with pytest.raises(ConfigError, match="give a plain file name"):
            cli(export_cmd, [*argv, "--name", bad])
    assert not (tmp_path / "escaped.fp16.onnx").exists()


def test_planned_outputs_name_what_each_step_writes(tiny_onnx, tiny_fp16, tmp_path) -> None:
    from vireid.export.chain import ChainOptions, planned_outputs

    out = tmp_path / "out"
    paths = planned_outputs(tiny_onnx, ["fp16", "engine", "triton"], out, "m", ChainOptions())
    assert paths == [
        out / "m.fp16.onnx",
        out / "m.fp16.engine",
        out / "m.fp16.engine.json",
    ]  # not the Triton entry: exporting it again updates it (to_triton replaces its version)
    paths = planned_outputs(tiny_fp16, ["engine"], out, "m", ChainOptions())
    assert paths == [out / f"{tiny_fp16.stem}.engine", out / f"{tiny_fp16.stem}.engine.json"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--precision", "fp16"], "--precision: only --trtexec and --attach read it"),
        (["--int8-method", "entropy"], "--int8-method: options of the int8 step; add int8 to --to"),
        (["--int8-data", "."], "--int8-data: options of the int8 step"),
        (["--triton-name", "m"], "--triton-name: options of the triton step"),
        (["--timing-cache", "t.cache"], "--timing-cache: options of the engine step"),
        (["--batch", "1,4,8", "--workspace", "512"], "--batch, --workspace: options of the engine step"),
        (["--no-verify", "--identities", "8"], "--identities sizes the parity checks"),
        (["--trtexec", "--json", "r.json"], "--json: not read by --trtexec"),
        (["--trtexec", "--to", "int8", "--calibrate", "."], "--to, --calibrate: not read by --trtexec"),
    ],
)
def test_options_nothing_reads_are_refused_not_ignored(tiny_onnx, tmp_path, extra, message) -> None:
    argv = [str(tiny_onnx), "--to", "fp16", "--out", str(tmp_path / "out"), *extra]
    if "--to" in extra:
        argv = [str(tiny_onnx), "--out", str(tmp_path / "out"), *extra]
    with pytest.raises(ConfigError, match=re.escape(message)):
        cli(export_cmd, argv)
    assert not (tmp_path / "out").exists()
