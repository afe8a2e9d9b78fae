"""INT8 (QDQ) for ONNX Runtime: two-modality calibration recorded in the card, the leakage guard, the
sensitivity pass, evaluation and benchmarking through the INT8 artifact, `vireid export --to int8`, and
INT8 engines from the QDQ file with the FAKE tensorrt module (builder flags only)."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import fake_tensorrt as fake
import numpy as np
import onnx
import pytest

from vireid import ModelCard
from vireid.bench import BenchConfig, run_bench
from vireid.card import Precision
from vireid.cli.main import main
from vireid.errors import ConfigError, DatasetError
from vireid.export import to_engine, to_onnx, trtexec_command
from vireid.export.artifact import averaging_matmuls
from vireid.export.int8 import (
    Int8Options,
    calibration_set,
    candidate_groups,
    quantizable_nodes,
    to_int8,
)
from vireid.training.evaluate import evaluate_any


def test_int8_card_records_the_calibration(tiny_int8: Path, tiny_sysu: Path) -> None:
    card = ModelCard.from_onnx(tiny_int8)
    assert card.precision is Precision.INT8
    record = card.calibration
    assert record["split"] == "train" and record["method"] == "minmax" and record["images"] == 16
    assert record["visible_fraction"] == 0.5 and record["infrared_fraction"] == 0.5
    assert len(record["fingerprint"]) == 64 and record["dataset"] == str(tiny_sysu)
    assert set(record["probe_cosine"]) == {"visible_mean", "visible_min", "infrared_mean", "infrared_min"}
    model = onnx.load(str(tiny_int8))
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) > 10
    kept = set(record["kept_float"])
    convs_in_float = {n.name for n in model.graph.node if n.op_type == "Conv"} & kept
    assert convs_in_float == {n for n in kept if n.endswith("/Conv")}  # what the card lists stays float


def test_visible_only_calibration_is_reported_as_such(
    tiny_onnx: Path, tiny_sysu: Path, tmp_path: Path
) -> None:
    options = Int8Options(images=12, probe=4, visible_fraction=1.0, sensitivity=False)
    result = to_int8(tiny_onnx, tmp_path / "vis.int8.onnx", data=tiny_sysu, options=options)
    record = ModelCard.from_onnx(result.path).calibration
    assert record["visible_fraction"] == 1.0 and record["infrared_fraction"] == 0.0
    assert record["kept_float"] == [] and result.sensitivity.keys() == {"all"}


def test_quantiser_chatter_is_silenced_and_the_root_logger_restored(
    tiny_onnx: Path, tiny_sysu: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = logging.getLogger()
    options = Int8Options(images=8, probe=4, sensitivity=False)
    with caplog.at_level(logging.DEBUG):
        to_int8(tiny_onnx, tmp_path / "quiet.int8.onnx", data=tiny_sysu, options=options)
        assert root.level == logging.DEBUG and not root.filters  # restored after the quantiser ran
    root_records = [r for r in caplog.records if r.name == "root"]
    assert not [r for r in root_records if "pre-processing" in r.getMessage()]
    assert not [r for r in root_records if r.levelno < logging.WARNING]
    assert not [r for r in caplog.records if r.name.startswith("onnxruntime") and r.levelno < logging.WARNING]
    assert any(r.name == "vireid.export" for r in caplog.records)  # our own progress still logs


def test_entropy_calibrators_progress_prints_go_to_the_debug_log(
    tiny_onnx: Path, tiny_sysu: Path, tmp_path: Path, capsys, caplog: pytest.LogCaptureFixture
) -> None:
    options = Int8Options(images=8, probe=4, sensitivity=False, method="entropy")
    with caplog.at_level(logging.DEBUG, logger="vireid.export"):
        to_int8(tiny_onnx, tmp_path / "entropy.int8.onnx", data=tiny_sysu, options=options)
    assert "Number of tensors" not in capsys.readouterr().out
    assert any("Number of tensors" in r.getMessage() for r in caplog.records if r.name == "vireid.export")


def test_quiet_quantiser_leaves_an_unconfigured_root_logger_unconfigured() -> None:
    from vireid.export.quiet import quiet_quantiser

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = []
    try:
        with quiet_quantiser():
            logging.warning("as the quantiser does")  # installs a stderr handler on a bare root logger
        assert root.handlers == []
    finally:
        root.handlers[:] = saved


def test_calibration_draws_only_training_identities_in_the_stated_balance(tiny_sysu: Path) -> None:
    from vireid.training.data.sysu import SysuMM01

    data = calibration_set(tiny_sysu, (128, 64), images=12, visible_fraction=0.25)
    assert data.images.shape == (12, 128, 64, 3) and data.visible_fraction == 0.25
    assert not set(data.pids.tolist()) & set(SysuMM01(tiny_sysu).ids("test"))
    again = calibration_set(tiny_sysu, (128, 64), images=12, visible_fraction=0.25)
    assert again.fingerprint() == data.fingerprint()  # same seed, same files


def test_leakage_guard_refuses_test_identities_in_the_training_list(tiny_sysu: Path, tmp_path: Path) -> None:
    leaky = tmp_path / "leaky"
    shutil.copytree(tiny_sysu, leaky)
    train = (leaky / "exp" / "train_id.txt").read_text().strip()
    test = (leaky / "exp" / "test_id.txt").read_text().strip()
    (leaky / "exp" / "train_id.txt").write_text(f"{train},{test}\n")  # test ids listed as training ids
    with pytest.raises(DatasetError, match=r"identities are in both train_id\.txt and test_id\.txt"):
        calibration_set(leaky, (128, 64), images=200, visible_fraction=0.5)


def test_leakage_guard_refuses_a_regdb_split_whose_lists_share_people(tmp_path: Path) -> None:
    """SYSU-MM01 split lists are checked when the folder is read; RegDB's index files by this guard."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
    from layouts import make_regdb

    root = make_regdb(tmp_path / "regdb")
    shared = (root / "idx" / "test_visible_1.txt").read_text().splitlines()[0]  # a test person's image
    with (root / "idx" / "train_visible_1.txt").open("a") as index:
        index.write(shared + "\n")
    with pytest.raises(DatasetError, match="calibration would use test identities"):
        calibration_set(root, (32, 16), images=40, visible_fraction=1.0)


def test_backbone_output_stays_float_and_is_dequantised_once(tiny_onnx: Path, tiny_int8: Path) -> None:
    """The map the cascade reads is made by a float node, so ONNX Runtime cannot hand each of its
    consumers a private DequantizeLinear; every other backbone Add/ReLU is quantised."""
    source = onnx.load(str(tiny_onnx))
    cascade_inputs = {i for n in source.graph.node if n.name.startswith("/cascade/") for i in n.input}
    (exit_node,) = [n for n in source.graph.node if "/backbone/" in n.name and set(n.output) & cascade_inputs]
    quantised = set(quantizable_nodes(source))
    assert exit_node.name not in quantised
    inner = {n.name for n in source.graph.node if "/backbone/" in n.name and n.op_type in ("Add", "Relu")}
    assert inner - {exit_node.name} <= quantised
    int8 = onnx.load(str(tiny_int8))
    consumers = [n.op_type for n in int8.graph.node if exit_node.output[0] in n.input]
    assert consumers and "QuantizeLinear" not in consumers


def test_spatial_means_stay_float(tiny_onnx: Path, tiny_int8: Path) -> None:
    """The averaging MatMuls (one per channel attention, one in GeM) are reductions: never quantised."""
    source = onnx.load(str(tiny_onnx))
    means = averaging_matmuls(source)
    parts = ModelCard.from_onnx(tiny_onnx).model_config["parts"]
    assert len(means) == sum(parts) + 1
    assert not means & set(quantizable_nodes(source))
    assert not any(means & set(nodes) for nodes in candidate_groups(source).values())
    int8 = onnx.load(str(tiny_int8))
    float_constants = {i.name for i in int8.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    kept = [n for n in int8.graph.node if n.name in means]
    assert len(kept) == len(means) and all(n.op_type == "MatMul" for n in kept)
    assert all(n.input[0] in float_constants for n in kept)  # the 1/K row itself, not a dequantised copy


def test_spatial_means_are_found_before_simplification_and_in_float16(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """A raw export (no onnxslim; it still follows the contract) keeps the 1/K rows as Constant
    nodes; a float16 row equals 1/K only to ~1e-3; a row of other values is no average."""
    raw = onnx.load(str(to_onnx(tiny_checkpoint, tmp_path / "raw.onnx", simplify=False)))
    parts = ModelCard.from_onnx(tmp_path / "raw.onnx").model_config["parts"]
    means = averaging_matmuls(raw)
    assert len(means) == sum(parts) + 1
    rows = {n.input[0] for n in raw.graph.node if n.name in means}
    constants = [n for n in raw.graph.node if n.op_type == "Constant" and n.output[0] in rows]
    assert constants
    for node in constants:
        value = onnx.numpy_helper.to_array(node.attribute[0].t)
        node.attribute[0].t.CopyFrom(onnx.numpy_helper.from_array(value.astype("float16")))
    assert averaging_matmuls(raw) == means
    value = onnx.numpy_helper.to_array(constants[0].attribute[0].t).astype("float32")
    constants[0].attribute[0].t.CopyFrom(onnx.numpy_helper.from_array(2.0 * value))
    assert len(averaging_matmuls(raw)) < len(means)


def test_sensitivity_candidates_cover_stems_and_attention(tiny_onnx: Path) -> None:
    groups = candidate_groups(onnx.load(str(tiny_onnx)))
    assert {"first conv of visible_stem", "first conv of infrared_stem"} <= set(groups)
    assert any(name.startswith("part attention") for name in groups)


def test_int8_artifact_evaluates_and_benchmarks_next_to_fp32(
    tiny_onnx: Path, tiny_int8: Path, tiny_sysu
) -> None:
    fp32 = evaluate_any(tiny_onnx, tiny_sysu, "sysu-all", trials=2, device="cpu")
    int8 = evaluate_any(tiny_int8, tiny_sysu, "sysu-all", trials=2, device="cpu")
    assert int8.mean()["mAP"] == pytest.approx(fp32.mean()["mAP"], abs=0.15)
    shutil.copy(tiny_int8, tiny_onnx.with_name("tiny.int8.onnx"))  # the sibling name bench looks for
    config = BenchConfig(backends=("ort-cpu",), precisions=("fp32", "int8"), batches=(2,), iters=2, rounds=1)
    report = run_bench(tiny_onnx, config)
    row = report.row("ort-cpu", "int8", 2)
    assert row is not None and 0.9 < row.cosine_to_reference <= 1.0 + 1e-6


def test_export_cli_int8_step(tiny_checkpoint: Path, tiny_sysu: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    argv = [
        "export",
        str(tiny_checkpoint),
        "--to",
        "onnx,int8",
        "--out",
        str(out),
        "--int8-data",
        str(tiny_sysu),
    ]
    argv += ["--int8-images", "12", "--int8-no-sensitivity", "--json", str(tmp_path / "r.json")]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "int8: wrote" in text and "probe cosine to FP32" in text
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["reports"]["int8"]["passed"] is True and (out / "tiny.int8.onnx").is_file()
    assert report["seconds"]["int8"] > 0
    assert main(["export", str(tiny_checkpoint), "--to", "onnx,int8", "--out", str(out)]) == 1
    assert "--int8-data" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("version", "strongly_typed", "flags"),
    [("8.6.1", False, {"INT8", "FP16"}), ("10.3.0", True, set()), ("11.4.0", True, set())],
)
def test_int8_engine_from_the_qdq_file_with_the_fake_tensorrt_module(
    monkeypatch,
    tiny_int8_tensorrt: Path,
    tiny_onnx: Path,
    tmp_path: Path,
    version: str,
    strongly_typed: bool,
    flags: set,
) -> None:
    cudart = fake.FakeCudart()
    for name, module in fake.cuda_modules(cudart).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.tensorrt_module(version))
    engine = to_engine(tiny_int8_tensorrt, tmp_path / "m.engine")
    build = json.loads(engine.read_bytes()[len(fake.MAGIC) :])["build"]
    assert build["strongly_typed"] is strongly_typed and set(build["flags"]) - {"TF32"} == flags
    assert ModelCard.from_engine(engine).precision is Precision.INT8
    with pytest.raises(ConfigError, match="INT8 QDQ ONNX"):
        to_engine(tiny_onnx, tmp_path / "x.engine", precision="int8")


def test_an_int8_file_quantised_for_onnxruntime_is_refused_by_the_engine_step(
    tiny_int8: Path, tiny_int8_tensorrt: Path, tmp_path: Path
) -> None:
    """TensorRT's ONNX parser refuses uint8 or non-zero zero points ('TRT only supports symmetric
    quantization'); the refusal comes before any build, with the fix."""
    from vireid.export.int8 import tensorrt_incompatible_quantisation

    assert "zero points" in (tensorrt_incompatible_quantisation(onnx.load(str(tiny_int8))) or "")
    model = onnx.load(str(tiny_int8_tensorrt))
    assert tensorrt_incompatible_quantisation(model) is None
    points = [t for t in model.graph.initializer if t.name.endswith("zero_point")]
    assert points and all(onnx.numpy_helper.to_array(t).dtype == np.int8 for t in points)
    with pytest.raises(ConfigError, match=r"Quantise for TensorRT: .*--to int8,engine"):
        to_engine(tiny_int8, tmp_path / "m.engine")
    with pytest.raises(ConfigError, match="Quantise for TensorRT"):
        trtexec_command(tiny_int8)  # the printed build would fail in trtexec the same way
    from vireid.export import ChainOptions, export_chain

    explicit = ChainOptions(int8_data=tmp_path, int8=Int8Options(target="onnxruntime"))
    with pytest.raises(ConfigError, match="--int8-target onnxruntime cannot become a TensorRT engine"):
        export_chain(tiny_int8.with_name("x.onnx"), "int8,engine", tmp_path / "out", explicit)
    assert ModelCard.from_onnx(tiny_int8_tensorrt).calibration["target"] == "tensorrt"


def test_export_chain_int8_engine_is_built_from_the_qdq_file_with_the_fake_tensorrt_module(
    monkeypatch, tiny_onnx: Path, tiny_sysu: Path, tmp_path: Path
) -> None:
    from vireid.export import ChainOptions, export_chain

    for name, module in fake.cuda_modules(fake.FakeCudart()).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.tensorrt_module())
    int8 = Int8Options(images=12, probe=4, sensitivity=False)
    options = ChainOptions(int8_data=tiny_sysu, int8=int8, verify=False)
    result = export_chain(tiny_onnx, "int8,engine", tmp_path, options, emit=lambda line: None)
    assert result.artifacts["engine"] == tmp_path / "tiny.int8.engine"
    assert ModelCard.from_engine(result.artifacts["engine"]).precision is Precision.INT8


def test_int8_then_triton_packages_the_int8_model(tiny_onnx: Path, tiny_sysu: Path, tmp_path: Path) -> None:
    from vireid.export import ChainOptions, export_chain

    int8 = Int8Options(images=12, probe=4, sensitivity=False)
    options = ChainOptions(int8_data=tiny_sysu, int8=int8, verify=False)
    result = export_chain(tiny_onnx, "int8,triton", tmp_path, options, emit=lambda line: None)
    packaged = result.artifacts["triton"] / "1" / "model.onnx"
    assert packaged.read_bytes() == (tmp_path / "tiny.int8.onnx").read_bytes()
    assert ModelCard.from_onnx(packaged).precision is Precision.INT8
