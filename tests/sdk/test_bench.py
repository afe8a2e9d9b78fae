"""`vireid bench`: report schema, skipped-backend reasons, fair interleaving, stage split, CLI and chart.

Real ONNX Runtime and real torch on tiny models; the TensorRT row runs against the FAKE tensorrt/cudart
modules of fake_tensorrt.py (our stage-timing logic, not TensorRT's speed). Numbers are never asserted
against targets; only their consistency (percentiles ordered, throughput = batch / mean latency).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import fake_tensorrt as fake
import numpy as np
import pytest
from contract_model import build_contract_model, contract_card

from vireid import ConfigError, InputSpecError
from vireid.bench import BenchConfig, run_bench
from vireid.bench.runtime import ModelSource, compare_models, comparison, model_names
from vireid.cli.main import main

ROW_KEYS = {
    "backend", "precision", "batch", "device", "providers", "iterations", "p50_ms", "p90_ms", "p99_ms",
    "mean_ms", "throughput", "stages", "rss_mb", "gpu_memory_mb", "cosine_to_reference", "streams",
}  # fmt: skip


def check_row(row: dict) -> None:
    assert set(row) == ROW_KEYS
    assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
    assert row["throughput"] == pytest.approx(row["streams"] * row["batch"] / (row["mean_ms"] / 1e3))
    assert set(row["stages"]) == {"preprocess", "h2d", "infer", "d2h", "note"}
    assert row["stages"]["preprocess"] > 0 and row["stages"]["infer"] > 0 and row["rss_mb"] > 0


def test_bench_onnx_report_schema_and_skip_reasons(tmp_path: Path) -> None:
    model = build_contract_model(tmp_path / "contract.onnx")
    config = BenchConfig(batches=(1, 4), precisions=("fp32",), iters=4, rounds=2, warmup=1, threads=1)
    report = run_bench(model, config)
    data = json.loads(json.dumps(report.to_dict()))  # JSON-ready
    assert set(data) >= {"model", "input_size", "embedding_dim", "rows", "skipped", "environment", "config"}
    assert [(r["backend"], r["batch"]) for r in data["rows"]] == [("ort-cpu", 1), ("ort-cpu", 4)]
    for row in data["rows"]:
        check_row(row)
        assert row["iterations"] == 4 and row["device"] == "cpu"
        assert row["stages"]["h2d"] is None and "host memory" in row["stages"]["note"]
        assert row["cosine_to_reference"] == pytest.approx(1.0)
    reasons = {(s["backend"], s["precision"]): s["reason"] for s in data["skipped"]}
    assert set(reasons) == {
        ("torch", "fp32"),
        ("ort-cuda", "fp32"),
        ("ort-trt", "fp32"),
        ("tensorrt", "fp32"),
    }
    assert "needs a checkpoint" in reasons[("torch", "fp32")]
    assert "CUDAExecutionProvider" in reasons[("ort-cuda", "fp32")]
    assert "TensorrtExecutionProvider" in reasons[("ort-trt", "fp32")]
    assert "vireid export" in reasons[("tensorrt", "fp32")]
    env = data["environment"]
    assert env["cores"] >= 1 and env["versions"]["onnxruntime"] and env["python"]
    assert data["reference"] == "ort-cpu fp32"
    table = report.table()
    assert "ort-cpu" in table and "skipped: " in table and "p99 ms" in table


def test_bench_interleaves_configurations_in_rounds(tmp_path: Path, monkeypatch) -> None:
    model = build_contract_model(tmp_path / "contract.onnx")
    order: list[int] = []
    from vireid.bench import runtime

    original = runtime.BackendRunner.run

    def spy(self, images, modality):
        order.append(len(images))
        return original(self, images, modality)

    monkeypatch.setattr(runtime.BackendRunner, "run", spy)
    config = BenchConfig(
        backends=("ort-cpu",), precisions=("fp32",), batches=(1, 2), iters=3, rounds=3, warmup=0
    )
    run_bench(model, config)
    timed = order[1:]  # the first call is the cosine probe (up to 8 images)
    assert timed == [1, 2, 1, 2, 1, 2]  # one call per configuration per round, alternating


def two_models(tmp_path: Path) -> tuple[Path, Path]:
    """The same contract model saved as `a/m.onnx` and `b/m.onnx` (names that need their folder)."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    return build_contract_model(tmp_path / "a" / "m.onnx"), build_contract_model(tmp_path / "b" / "m.onnx")


def test_compare_models_times_every_model_in_the_same_rounds(tmp_path: Path, monkeypatch) -> None:
    first, second = two_models(tmp_path)
    order: list[tuple[str, int]] = []
    from vireid.bench import runtime

    original_init, original_run = runtime.BackendRunner.__init__, runtime.BackendRunner.run

    def init(self, path, device, **options):
        original_init(self, path, device, **options)
        self.folder = path.parent.name

    def spy(self, images, modality):
        order.append((self.folder, len(images)))
        return original_run(self, images, modality)

    monkeypatch.setattr(runtime.BackendRunner, "__init__", init)
    monkeypatch.setattr(runtime.BackendRunner, "run", spy)
    config = BenchConfig(
        backends=("ort-cpu",), precisions=("fp32",), batches=(1, 2), iters=2, rounds=2, warmup=0
    )
    reports = compare_models([first, second], config)
    assert [r.model for r in reports] == [str(first), str(second)]
    assert order[:2] == [("a", 2), ("b", 2)]  # the cosine probe of each model (up to 8 images)
    first_round = [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    second_round = [("b", 1), ("b", 2), ("a", 1), ("a", 2)]  # models in reverse: drift hits both alike
    assert order[2:] == first_round + second_round
    assert model_names(reports) == ["a/m.onnx", "b/m.onnx"]
    assert model_names([reports[0], reports[0]]) == ["m.onnx #1", "m.onnx #2"]
    assert all(r.rss_mb > 0 for report in reports for r in report.rows)
    table = comparison(reports)
    assert [(e["backend"], e["batch"]) for e in table] == [("ort-cpu", 1), ("ort-cpu", 2)]
    for entry, batch in zip(table, (1, 2), strict=True):
        rows = [r.row("ort-cpu", "fp32", batch) for r in reports]
        assert entry["throughput"] == [row.throughput for row in rows]
        assert entry["ratio_to_first"] == pytest.approx([1.0, rows[1].throughput / rows[0].throughput])


def test_bench_cli_compares_models_and_writes_one_json_and_chart(tmp_path: Path, capsys) -> None:
    first, second = two_models(tmp_path)
    out_json, out_png = tmp_path / "cmp.json", tmp_path / "cmp.png"
    argv = [
        "bench", str(first), str(second), "--backend", "ort-cpu", "--precision", "fp32", "--batch", "1",
        "--iters", "2", "--rounds", "1", "--json", str(out_json), "--plot", str(out_png),
    ]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "relative to a/m.onnx" in text and "b/m.onnx" in text
    data = json.loads(out_json.read_text())
    assert [m["model"] for m in data["models"]] == [str(first), str(second)]
    for model in data["models"]:
        (row,) = model["rows"]
        check_row(row)
    (entry,) = data["comparison"]
    assert entry["ratio_to_first"][0] == 1.0 and len(entry["throughput"]) == 2
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_streams_run_concurrent_copies_with_the_threads_split(tmp_path: Path, monkeypatch, capsys) -> None:
    model = build_contract_model(tmp_path / "m.onnx")
    opened: list[int | None] = []
    active, most = [0], [0]
    from vireid.bench import runtime

    original_init, original_run = runtime.BackendRunner.__init__, runtime.BackendRunner.run

    def init(self, path, device, **options):
        opened.append(options.get("threads"))
        original_init(self, path, device, **options)

    def run(self, images, modality):
        active[0] += 1
        most[0] = max(most[0], active[0])
        try:
            time.sleep(0.01)  # long enough for the other copy's call to start meanwhile
            return original_run(self, images, modality)
        finally:
            active[0] -= 1

    monkeypatch.setattr(runtime.BackendRunner, "__init__", init)
    monkeypatch.setattr(runtime.BackendRunner, "run", run)
    config = BenchConfig(
        backends=("ort-cpu",), precisions=("fp32",), batches=(2,), iters=4, rounds=1, threads=2, streams=2
    )
    report = run_bench(model, config)
    assert opened == [1, 1]  # two copies, one thread each
    assert most[0] == 2  # both copies ran at once
    (row,) = report.rows
    check_row(asdict(row))
    assert row.streams == 2 and row.throughput == pytest.approx(2 * 2 / (row.mean_ms / 1e3))
    assert "2 concurrent copies" in report.table()
    with pytest.raises(ConfigError, match="streams must be a positive integer"):
        BenchConfig(streams=0)


def test_bench_pipeline_takes_exactly_one_model(tmp_path: Path, capsys) -> None:
    model = build_contract_model(tmp_path / "m.onnx")
    assert main(["bench", "pipeline"]) == 1
    assert "takes one MODEL" in capsys.readouterr().err
    assert main(["bench", "pipeline", str(model), str(model)]) == 1
    assert "takes one MODEL" in capsys.readouterr().err


def test_bench_torch_and_fp16_rows_from_a_random_model_through_the_cli(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    argv = [
        "bench", "random:resnet_tiny@128x64", "--backend", "torch,ort-cpu", "--batch", "1,4", "--iters", "2",
        "--rounds", "1", "--threads", "1", "--json", str(out_json), "--plot", str(out_png),
    ]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    cuda = torch_cuda_available()
    assert cuda or "torch     fp16 skipped: torch fp16 runs on CUDA only" in text
    assert "peak RSS" in text
    data = json.loads(out_json.read_text())
    rows = {(r["backend"], r["precision"], r["batch"]): r for r in data["rows"]}
    configs = [
        ("torch", "fp32"),
        ("ort-cpu", "fp32"),
        ("ort-cpu", "fp16"),
        *([("torch", "fp16")] if cuda else []),
    ]
    assert set(rows) == {(b, p, n) for b, p in configs for n in (1, 4)}
    for row in rows.values():
        check_row(row)
    assert rows[("torch", "fp32", 1)]["cosine_to_reference"] > 0.9999  # torch vs ONNX fp32
    assert 0.99 < rows[("ort-cpu", "fp16", 4)]["cosine_to_reference"] < 1.0 + 1e-6
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_uses_the_fp16_sibling_of_an_onnx_file(tmp_path: Path) -> None:
    model = build_contract_model(tmp_path / "m.onnx")
    assert ModelSource.parse(model).onnx == {"fp32": model}
    sibling = build_contract_model(tmp_path / "m.fp16.onnx", card=contract_card(precision="fp16"))
    assert ModelSource.parse(model).onnx == {"fp32": model, "fp16": sibling}
    assert ModelSource.parse(sibling).onnx == {"fp16": sibling, "fp32": model}


def test_bench_leaves_out_a_sibling_that_is_another_model_or_precision(tmp_path: Path, caplog) -> None:
    """An INT8 file renamed .fp16.onnx was timed and reported as fp16; a stale sibling of another model
    crashed the run with a broadcast error after timing."""
    import logging

    model = build_contract_model(tmp_path / "m.onnx")
    build_contract_model(tmp_path / "m.fp16.onnx", card=contract_card(precision="int8"))
    build_contract_model(
        tmp_path / "m.int8.onnx", card=contract_card(precision="int8", embedding_dim=8), dim=8
    )
    with caplog.at_level(logging.WARNING, logger="vireid.bench"):
        assert ModelSource.parse(model).onnx == {"fp32": model}
    assert "its card says int8, its name fp16" in caplog.text and "another embedding space" in caplog.text


def test_bench_tensorrt_row_splits_stages_with_the_fake_tensorrt_module(tmp_path: Path, monkeypatch) -> None:
    runtime = fake.FakeCudart()
    monkeypatch.setitem(sys.modules, "tensorrt", fake.tensorrt_module())
    for name, module in fake.cuda_modules(runtime).items():
        monkeypatch.setitem(sys.modules, name, module)
    engine = fake.write_engine(tmp_path / "model.engine", fake.engine_spec())
    contract_card(
        tensorrt_version=fake.VERSION, compute_capability="8.6", gpu_name="NVIDIA Fake GPU"
    ).write_sidecar(engine)
    config = BenchConfig(
        backends=("tensorrt",), precisions=("fp32",), batches=(2,), iters=3, rounds=1, warmup=0
    )
    report = run_bench(engine, config)
    (row,) = report.rows
    assert row.device == "tensorrt" and row.stages.note == ""
    assert all(v is not None and v >= 0 for v in (row.stages.h2d, row.stages.infer, row.stages.d2h))
    # stage timing synchronises after each stage: 3 syncs per timed call (1 without it)
    assert len(runtime.calls["cudaStreamSynchronize"]) >= 3 * 3


def test_bench_config_errors_list_the_options(tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError, match="ort-cpu, ort-cuda"):
        BenchConfig(backends=("onnx",))
    with pytest.raises(ConfigError, match="positive integers"):
        BenchConfig(batches=(0,))
    with pytest.raises(InputSpecError, match="random:BACKBONE"):
        run_bench(tmp_path / "missing.onnx")
    model = build_contract_model(tmp_path / "contract.onnx")
    assert main(["bench", str(model), "--backend", "tensorrt", "--precision", "fp32"]) == 1
    assert "no configuration could run here" in capsys.readouterr().err
    shutil.copy(model, tmp_path / "model.bin")
    assert main(["bench", str(tmp_path / "model.bin")]) == 1
    assert "unknown model file type" in capsys.readouterr().err


def test_bench_stage_recording_is_off_by_default(tmp_path: Path) -> None:
    from vireid.backends import open_backend

    with open_backend(build_contract_model(tmp_path / "c.onnx"), "cpu") as backend:
        backend.infer(np.zeros((1, 32, 16, 3), np.uint8), np.zeros(1, np.int32))
        assert backend.record_stages is False and backend.last_stages == {}


def test_identification_recall_over_enrolled_people_counts_only_who_could_be_named() -> None:
    from vireid.bench.scene import CameraTracks, score_identification

    tracks = CameraTracks()
    boxes = np.array([[0, 0, 10, 20], [20, 0, 30, 20], [40, 0, 50, 20]], np.float64)
    objects = [{"id": pid, "box": boxes[i].tolist(), "visibility": 1.0} for i, pid in enumerate((1, 2, 3))]
    for _ in range(3):
        tracks.add(objects, boxes, [11, 12, 13], boxes)
    events = [
        {"event": "identified", "camera": "infrared", "track_id": 11, "name": "id1"},  # right
        {"event": "identified", "camera": "infrared", "track_id": 13, "name": "id2"},  # id3 is not enrolled
    ]
    ident = score_identification("infrared", events, tracks, min_frames=2, enrolled=[1, 2])
    assert (ident.precision, ident.recall) == (0.5, pytest.approx(1 / 3))
    assert (ident.enrolled_people, ident.enrolled_identified, ident.recall_enrolled) == (2, 1, 0.5)
    assert score_identification("infrared", events, tracks, min_frames=2).recall_enrolled is None


def test_random_spec_names_any_registered_model() -> None:
    pytest.importorskip("torch")
    source = ModelSource.parse("random:mpanet/resnet_tiny@128x64")
    assert source.random_backbone == ("mpanet", "resnet_tiny", (128, 64))
    assert source.torch_model().config.name == "mpanet" and not source.torch_model().training
    assert ModelSource.parse("random:resnet50").random_backbone == ("mspac", "resnet50", (288, 144))
    with pytest.raises(InputSpecError, match=r"random:\[MODEL/\]BACKBONE"):
        ModelSource.parse("random:/resnet50")
    log: list[str] = []
    with pytest.raises(ConfigError, match=r"^random:foo: unknown backbone 'foo'.*the form is random:"):
        ModelSource.parse("random:foo").onnx_file("fp32", log.append)
    assert log == []  # refused before "exporting the model to ONNX" is said


def torch_cuda_available() -> bool:
    """Whether torch sees a GPU (then the torch fp16 row runs instead of being skipped)."""
    import torch

    return bool(torch.cuda.is_available())


def test_skip_reasons_in_the_table_drop_the_file_and_keep_the_first_sentence() -> None:
    from vireid.bench.runtime import _short_reason

    reason = "models/m.fp16.onnx: device='cuda' needs the CUDA provider. Fix: pip install onnxruntime-gpu"
    assert _short_reason(reason) == "device='cuda' needs the CUDA provider"
    long = _short_reason("word " * 60)
    assert long.endswith(" ...") and len(long) <= 164 and "wor ..." not in long


def test_a_named_backend_that_gives_no_row_fails_the_command(tmp_path: Path, capsys) -> None:
    import onnxruntime

    from vireid.cli.main import main

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA: ort-cuda gives a row here")
    model = build_contract_model(tmp_path / "m.onnx")
    quick = ["--batch", "1", "--iters", "2", "--rounds", "1", "--precision", "fp32"]
    assert main(["bench", str(model), "--backend", "ort-cpu,ort-cuda", *quick]) == 1
    assert "--backend ort-cuda gave no row" in capsys.readouterr().err
    assert main(["bench", str(model), "--backend", "ort-cpu", *quick]) == 0


def test_a_configuration_that_fails_while_running_is_skipped_not_fatal_simulated_failure(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A runtime that opened and then fails at one batch (out of memory, a driver error; SIMULATED by
    wrapping the real ONNX Runtime runner) loses that row only, with the reason; the others are timed."""
    from vireid.bench import runtime

    model = build_contract_model(tmp_path / "m.onnx")
    original = runtime.BackendRunner.run

    def fails_at_batch_16(self, images, modality):
        if len(images) == 16:  # the cosine probe runs 8 images
            raise MemoryError("simulated: cannot allocate the batch")
        return original(self, images, modality)

    monkeypatch.setattr(runtime.BackendRunner, "run", fails_at_batch_16)
    config = BenchConfig(backends=("ort-cpu",), precisions=("fp32",), batches=(1, 16), iters=2, rounds=2)
    report = run_bench(model, config)
    assert [(r.backend, r.batch, r.iterations) for r in report.rows] == [("ort-cpu", 1, 2)]
    assert [(s.backend, s.precision) for s in report.skipped] == [("ort-cpu", "fp32")]
    assert "batch 16 failed while running" in report.skipped[0].reason
    assert "cannot allocate the batch" in report.skipped[0].reason
    assert "batch 16 failed while running" in report.table()
    # a runner failing on every call gives no row: the CLI names it and exits 1
    monkeypatch.setattr(runtime.BackendRunner, "run", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    quick = ["--batch", "1", "--iters", "2", "--rounds", "1", "--precision", "fp32"]
    assert main(["bench", str(model), "--backend", "ort-cpu", *quick]) == 1
    captured = capsys.readouterr()
    assert "failed while running" in captured.out + captured.err and "round 1/1 done" not in captured.err
