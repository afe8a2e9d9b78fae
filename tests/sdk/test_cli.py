from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from vireid import Precision, __version__
from vireid.cli.main import COMMANDS, main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vireid.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_registered_command_is_listed_and_its_module_gives_help(name: str) -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    # its own line in the command list: the name, then the start of its help text
    start = " ".join(COMMANDS[name][1].split()[:3])
    assert re.search(rf"^\s+{name}\s+{re.escape(start)}", done.stdout, re.MULTILINE), done.stdout
    own = run_cli(name, "--help")  # imports the command's module and builds its parser
    assert own.returncode == 0 and f"usage: vireid {name}" in own.stdout


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0 and __version__ in done.stdout


def test_no_command_prints_help_and_returns_usage_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_vireid_error_becomes_message_and_exit_1(tmp_path: Path) -> None:
    done = run_cli("info", str(tmp_path / "missing.onnx"))
    assert done.returncode == 1
    assert "missing.onnx" in done.stderr and "Traceback" not in done.stderr


def test_info_prints_card(tmp_path: Path) -> None:
    from test_card import CARD_KEY, make_card, write_onnx

    path = write_onnx(tmp_path / "m.onnx", {CARD_KEY: make_card().to_json()})
    done = run_cli("info", str(path))
    assert done.returncode == 0, done.stderr
    assert "mspac (fp32)" in done.stdout and "[N, 288, 144, 3] RGB" in done.stdout
    int8 = make_card().replace(
        model_config={"backbone": "resnet50", "parts": [4, 2], "specific_stages": 2},
        precision=Precision.INT8,
        calibration={"method": "entropy", "images": 512, "split": "train", "visible_fraction": 1.0},
    )
    done = run_cli("info", str(write_onnx(tmp_path / "q.onnx", {CARD_KEY: int8.to_json()})))
    assert "resnet50 (parts [4, 2], specific_stages 2)" in done.stdout
    assert "entropy, 512 train images, 100% visible / 0% infrared" in done.stdout
    track = {
        "fmr_at_threshold": 6.3e-3,
        "track_images": 5,
        "centroid_images": 5,
        "threshold_for_target": 0.70111,  # shown rounded up
        "impostor_pairs": 7600,
    }
    calibrated = make_card().replace(
        match_threshold=0.575,
        match_threshold_fmr=1e-3,
        match_threshold_data={"impostor_pairs": 38848, "track_means": track},
    )
    done = run_cli("info", str(write_onnx(tmp_path / "c.onnx", {CARD_KEY: calibrated.to_json()})))
    assert "track means    false-match rate about 6.3e-03 at the threshold" in done.stdout
    assert "; 0.7012 gives 0.001, the stream pipeline's default" in done.stdout
    assert "impostor_pairs 38848" in done.stdout
    assert "'track_images'" not in done.stdout  # not repeated raw on the threshold data line
    few = calibrated.replace(match_threshold_data={"track_means": {**track, "impostor_pairs": 500}})
    done = run_cli("info", str(write_onnx(tmp_path / "f.onnx", {CARD_KEY: few.to_json()})))
    assert "at the threshold" in done.stdout and "too few comparisons to resolve 0.001" in done.stdout
    odd = calibrated.replace(match_threshold_data={"track_means": {"fmr_at_threshold": "?"}})
    done = run_cli("info", str(write_onnx(tmp_path / "o.onnx", {CARD_KEY: odd.to_json()})))
    assert done.returncode == 0 and "track means" not in done.stdout  # a card not written by us


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path: Path) -> None:
    """`vireid info m.onnx | head -1`: the pipe is closed before the command writes (buffered stdout, as
    without PYTHONUNBUFFERED); no traceback, exit 0."""
    import os

    from test_card import CARD_KEY, make_card, write_onnx

    model = write_onnx(tmp_path / "m.onnx", {CARD_KEY: make_card().to_json()})
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "vireid.cli.main", "info", "--json", str(model)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert "BrokenPipeError" not in done.stderr and "Traceback" not in done.stderr


def test_a_reader_that_leaves_mid_output_is_not_an_error(tmp_path: Path) -> None:
    """`vireid gallery list --json | head -1` on a large gallery: the pipe breaks in the middle of the
    output (more than stdout's buffer), not at the final flush; still no traceback, exit 0."""
    import os

    import numpy as np

    from vireid.embeddings import Embeddings
    from vireid.gallery import Gallery

    path = tmp_path / "big.db"
    vectors = np.eye(8, dtype=np.float32)
    with Gallery(path, embedding_space="space-x", dim=8) as gallery:
        for i in range(300):  # about 24 kB of JSON lines, three times the buffer
            gallery.enroll(f"person{i:05d}", Embeddings(vectors[i % 8 : i % 8 + 1], np.zeros(1, np.int8)))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "vireid.cli.main", "gallery", "list", "--json", "--gallery", str(path)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_the_global_quiet_flag_does_not_collide_with_a_commands_own() -> None:
    from vireid.cli.main import build_parser

    args = build_parser().parse_args(["-q", "run", "--source", "visible=a.mp4", "--model", "m.onnx"])
    assert args.log_quiet and not args.quiet  # -q: warnings only; run's --quiet: no status line
    args = build_parser().parse_args(["run", "--quiet", "--source", "visible=a.mp4", "--model", "m.onnx"])
    assert args.quiet and not args.log_quiet


def test_a_global_flag_after_the_command_says_where_it_goes(capsys) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["info", "-v", "m.onnx"])
    assert usage.value.code == 2
    assert "put them before the command, e.g. vireid -v run" in capsys.readouterr().err


def test_the_demo_finds_its_config_outside_a_checkout(tmp_path: Path, monkeypatch) -> None:
    """From an installed wheel `configs/` next to the package does not exist; the shipped copy is used."""
    import vireid.demo as demo

    monkeypatch.setattr(demo, "REPO", tmp_path)  # as in site-packages: no configs/ beside the package
    found = demo._demo_config()
    assert found.name == "demo_cpu.yaml" and found.is_file() and tmp_path not in found.parents


def test_help_shows_each_options_default_and_sub_commands_have_descriptions(capsys) -> None:
    from vireid.cli.main import main as cli_main

    for argv, expected in [
        (["--help"], ["exit status: 0 done; 1 an error", "2 a usage error; 130 interrupted"]),
        (["evaluate", "--help"], ["evaluation protocol (default: sysu-all)", "(default: 64)"]),
        (["run", "--help"], ["person detector (default: motion)"]),
        (["verify", "--help"], ["(default: 0)"]),  # a default of 0 is shown (0 == False)
        (["gallery", "remove", "--help"], ["Delete an identity and its embeddings.", "the identity's name"]),
        (["synth", "scene", "--help"], ["Generate a two-camera scene"]),
    ]:
        with pytest.raises(SystemExit):
            cli_main(argv)
        out = " ".join(capsys.readouterr().out.split())
        assert all(text in out for text in expected), (argv, out)


def test_train_refuses_a_run_folder_inside_the_dataset(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    from vireid.cli.main import main as cli_main

    data = tmp_path / "sysu"
    data.mkdir()
    for out in (data, data / "runs" / "x"):
        assert cli_main(["train", "--config", "demo_cpu", "--data", str(data), "--out", str(out)]) == 1
        assert "lies in the dataset folder" in capsys.readouterr().err
    assert sorted(p.name for p in data.iterdir()) == []  # nothing written there
