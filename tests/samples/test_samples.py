"""Every file in `samples/` runs as users run it (`python samples/X.py ...`), on tiny generated data.

Data, made once per module: the contract ONNX model of `tests/sdk/contract_model.py` (32×16 input,
16-d, threshold 0.5), a synthetic SYSU set (6 identities, seed 1) and an 8 s scene with 3 people of
the same seed (so the scene's people are identities 1-3 of the SYSU set). The runtime-only samples run
under `python -X importtime`, and the test fails if they imported torch or `vireid.training`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
sys.path.insert(0, str(REPO / "tests" / "sdk"))

from contract_model import build_contract_model  # noqa: E402

import vireid  # noqa: E402

TESTED = {"embed_and_search.py", "two_camera_pipeline.py", "export_and_verify.py", "benchmark.py"}
HEAVY = re.compile(r"\|\s*(torch|vireid\.training)(\.\S*)?\s*$")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from vireid.training.data.synth import SceneConfig, SysuConfig, generate_scene, generate_sysu

    root = tmp_path_factory.mktemp("samples-data")
    sysu, scene = root / "sysu", root / "scene"
    generate_sysu(sysu, SysuConfig(ids=6, images_per_camera=2, seed=1), workers=1, show_progress=False)
    generate_scene(scene, SceneConfig(seconds=8, people=3, seed=1), workers=1, show_progress=False)
    return {"model": build_contract_model(root / "contract.onnx"), "sysu": sysu, "scene": scene}


def run_sample(name: str, *args: object, cwd: Path, light: bool = True) -> str:
    """Run `samples/NAME`, check it exits 0 (and, when `light`, imported no torch); returns stdout."""
    flags = ["-X", "importtime"] if light else []
    command = [sys.executable, *flags, str(SAMPLES / name), *map(str, args)]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    log = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("import time:"))
    assert done.returncode == 0, f"{name} exited {done.returncode}\n{done.stdout}\n{log}"
    if light:
        heavy = sorted({m.group(1) for m in map(HEAVY.search, done.stderr.splitlines()) if m})
        assert not heavy, f"{name} imported {heavy}; the runtime samples must not"
    return done.stdout


def test_every_sample_is_tested() -> None:
    assert {p.name for p in SAMPLES.glob("*.py")} == TESTED


def test_embed_and_search(data: dict[str, Path], tmp_path: Path) -> None:
    gallery = tmp_path / "gallery.db"
    args = [data["model"], data["sysu"], "--gallery", gallery, "--people", 6, "-k", 3]
    out = run_sample("embed_and_search.py", *args, cwd=tmp_path)
    queries = [line for line in out.splitlines() if " -> " in line]
    assert len(queries) == 6, out
    for line in queries:  # "cam3/0001/0001.jpg (person 0001) -> 0005 0.516  0002 0.417  0001 0.404"
        assert re.fullmatch(
            r"cam[36]/\d{4}/\d{4}\.jpg \(person \d{4}\) -> (\d{4} -?[01]\.\d{3}\*?\s*){3}", line
        )
    firsts = [re.search(r"\(person (\d{4})\) -> (\d{4})", line).groups() for line in queries]
    right = sum(own == best for own, best in firsts)  # the printed count is the lines' own tally
    assert re.search(rf"^rank-1: {right}/6 infrared queries", out, re.M), out
    assert f"{gallery}: 6 identities, 24 visible embeddings" in out
    with vireid.Gallery.open(gallery) as stored:
        first = stored.info()
    assert first.num_identities == 6 and first.num_embeddings == 6 * 4
    run_sample("embed_and_search.py", *args, cwd=tmp_path)  # a re-run re-enrols, never duplicates
    with vireid.Gallery.open(gallery) as stored:
        assert stored.info().num_embeddings == first.num_embeddings
    fewer = run_sample("embed_and_search.py", *args[:-4], "--people", 2, cwd=tmp_path)
    assert "(4 of them enrolled by earlier runs; they take part in the search)" in fewer


@pytest.mark.parametrize("name", sorted(TESTED - {"export_and_verify.py"}))
def test_samples_turn_bad_input_into_one_line_not_a_traceback(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.onnx"
    args = {
        "embed_and_search.py": [missing, tmp_path],
        "two_camera_pipeline.py": [missing, tmp_path],
        "benchmark.py": [missing, "--backend", "ort-cpu", "--seconds", 0.1],
    }[name]
    (tmp_path / "cam3" / "0001").mkdir(parents=True)  # a person for embed_and_search to get that far
    (tmp_path / "cam1" / "0001").mkdir(parents=True)
    (tmp_path / "cam1" / "0001" / "0001.jpg").write_bytes(b"")
    command = [sys.executable, str(SAMPLES / name), *map(str, args)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: ") and "missing.onnx" in done.stderr, done.stderr


def test_two_camera_pipeline(data: dict[str, Path], tmp_path: Path) -> None:
    args = [data["model"], data["scene"], "--crops", data["sysu"] / "cam1", "--threshold", 0.3]
    out = run_sample("two_camera_pipeline.py", *args, cwd=tmp_path)
    enrolled = len([p for p in (data["sysu"] / "cam1").iterdir() if p.is_dir()])
    assert f"gallery: {enrolled} identities enrolled" in out
    started = re.findall(r"^(visible|infrared)#(\d+) started", out, re.M)
    ended = re.findall(r"^(visible|infrared)#(\d+) ended after \d+ frames", out, re.M)
    assert {camera for camera, _ in started} == {"visible", "infrared"}, out
    assert sorted(started) == sorted(ended), "every started track must end"
    assert re.search(r"^(visible|infrared)#\d+ is \d{4} \(score", out, re.M), out
    assert "visible: 120 frames" in out and "infrared: 120 frames" in out
    counts = dict(re.findall(r"(\w+) (\d+)", out.split("events: ")[1].splitlines()[0]))
    assert int(counts["track_started"]) == len(started) and int(counts["identified"]) >= 1


def test_two_camera_pipeline_leaves_the_gallery_unchanged_when_a_crop_is_unreadable(
    data: dict[str, Path], tmp_path: Path
) -> None:
    """It removed a person's stored enrolment before reading the new crops: one bad file lost them."""
    import shutil

    crops = tmp_path / "crops"
    shutil.copytree(data["sysu"] / "cam1", crops)
    gallery = tmp_path / "g.db"
    args = [data["model"], data["scene"], "--crops", crops, "--gallery", gallery, "--limit", 2]
    run_sample("two_camera_pipeline.py", *args, cwd=tmp_path)
    with vireid.Gallery.open(gallery) as stored:
        before = {i.name: i.num_embeddings for i in stored.identities()}
    first = sorted(p for p in crops.iterdir() if p.is_dir())[0]
    (first / "zzz_broken.jpg").write_bytes(b"not a jpeg")
    command = [sys.executable, str(SAMPLES / "two_camera_pipeline.py"), *map(str, args)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode != 0 and "zzz_broken.jpg" in done.stderr
    with vireid.Gallery.open(gallery) as stored:
        assert {i.name: i.num_embeddings for i in stored.identities()} == before


def test_export_and_verify(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = run_sample("export_and_verify.py", "--out", tmp_path / "models", cwd=tmp_path, light=False)
    assert out.count("result                 PASS") == 2, out
    assert "both files PASS their parity checks" in out
    cards = [vireid.ModelCard.from_onnx(tmp_path / "models" / n) for n in ("model.onnx", "model.fp16.onnx")]
    assert [c.precision.value for c in cards] == ["fp32", "fp16"]
    assert cards[0].input_size == (128, 64) and cards[0].embedding_space() == cards[1].embedding_space()


def test_benchmark(data: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    args = [data["model"], "--backend", "ort-cpu,torch", "--precision", "fp32", "--batch", "1,4"]
    out = run_sample("benchmark.py", *args, "--seconds", 0.1, "--json", report, cwd=tmp_path)
    assert "input 32x16, 16-d" in out
    assert re.search(r"^ort-cpu\s+fp32\s+1\s+\d", out, re.M) and re.search(
        r"^ort-cpu\s+fp32\s+4\s", out, re.M
    )
    assert re.search(r"^torch\s+fp32 skipped: .*needs a checkpoint", out, re.M), out
    rows = json.loads(report.read_text())["rows"]
    assert [(r["backend"], r["batch"]) for r in rows] == [("ort-cpu", 1), ("ort-cpu", 4)]
    assert all(r["throughput"] > 0 for r in rows)
