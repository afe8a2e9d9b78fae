"""`to_fp16`: FP16 weights and compute, float32 I/O, fragile parts in float32, parity with FP32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from contract_model import build_contract_model
from export_helpers import save_tiny_checkpoint
from onnx import TensorProto, helper, numpy_helper

from vireid import ArtifactError, CardError, ModelCard, Precision
from vireid.export import to_fp16, to_onnx, verify
from vireid.export.artifact import averaging_matmuls
from vireid.export.fp16 import convert_model, fp32_node_names


def value_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {t.name: t.data_type for t in inferred.graph.initializer}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        types[info.name] = info.type.tensor_type.elem_type
    return types


def test_fp16_file_keeps_the_io_contract_and_says_fp16(tiny_onnx: Path, tiny_fp16: Path) -> None:
    assert tiny_fp16.name == "tiny.fp16.onnx"
    card, parent = ModelCard.from_onnx(tiny_fp16), ModelCard.from_onnx(tiny_onnx)
    assert card.precision is Precision.FP16 and card.embedding_space() == parent.embedding_space()
    sess = ort.InferenceSession(str(tiny_fp16), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in sess.get_inputs()] == [
        ("images", "tensor(uint8)"),
        ("modality", "tensor(int32)"),
    ]
    assert [(o.name, o.type) for o in sess.get_outputs()] == [("embeddings", "tensor(float)")]


def test_weights_and_compute_are_fp16_but_fragile_parts_stay_fp32(tiny_fp16: Path) -> None:
    model = onnx.load(tiny_fp16)
    types = value_types(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv" and "/backbone/" in n.name]
    assert convs and all(types[n.input[1]] == TensorProto.FLOAT16 for n in convs)
    assert all(types[n.output[0]] == TensorProto.FLOAT16 for n in convs)
    fragile = [
        n for n in model.graph.node if n.name.startswith("/head/") or n.op_type in ("ReduceL2", "ReduceMean")
    ]
    assert {n.op_type for n in fragile} >= {"Pow", "ReduceMean", "BatchNormalization", "ReduceL2"}
    for node in fragile:
        assert all(types[t] == TensorProto.FLOAT for t in node.output if types.get(t) in (1, 10)), node.name
    first = next(n for n in model.graph.node if n.input and n.input[0] == "images")
    assert types[first.output[0]] in (TensorProto.UINT8, TensorProto.FLOAT)  # the input path is not FP16
    assert onnx.checker.check_model(model, full_check=True) is None


def test_spatial_means_stay_fp32(tiny_onnx: Path, tiny_fp16: Path) -> None:
    """The averaging MatMuls sum like ReduceMean does, so they stay float32 like it."""
    means = averaging_matmuls(onnx.load(str(tiny_onnx)))
    model = onnx.load(tiny_fp16)
    types = value_types(model)
    kept = [n for n in model.graph.node if n.name in means]
    assert means and len(kept) == len(means)
    assert all(types[t] == TensorProto.FLOAT for n in kept for t in [*n.input, *n.output])


def test_fp16_parity_with_fp32(tiny_onnx: Path, tiny_fp16: Path) -> None:
    report = verify(tiny_onnx, tiny_fp16, device="cpu", identities=16)
    assert report, str(report)
    assert report.min_cosine >= 0.999 and report.top1_agreement >= 0.99


def test_feature_gate_keeps_the_whole_cascade_fp32(tmp_path: Path) -> None:
    checkpoint = save_tiny_checkpoint(tmp_path / "feature", gate="feature")
    path = to_fp16(to_onnx(checkpoint, tmp_path / "feature.onnx"))
    model = onnx.load(path)
    types = value_types(model)
    cascade = [n for n in model.graph.node if n.name.startswith("/cascade/") and n.op_type in ("Mul", "Add")]
    assert cascade and all(types[n.output[0]] == TensorProto.FLOAT for n in cascade)


def test_converter_casts_outputs_back_and_retargets_casts() -> None:
    """A hand-made graph: FP16 region holding a Cast(to=FLOAT), a kept reduction, an FP16 graph output."""
    make = helper.make_node
    nodes = [
        make("Cast", ["x"], ["xf"], name="/cast_in", to=TensorProto.FLOAT),
        make("MatMul", ["xf", "w"], ["y"], name="/matmul"),
        make("Cast", ["y"], ["y2"], name="/recast", to=TensorProto.FLOAT),
        make("ReduceMean", ["y2"], ["m"], name="/mean", keepdims=1, axes=[1]),
        make("Sub", ["y2", "m"], ["out"], name="/sub"),
    ]
    weights = np.diag(np.full(4, 70000.0, np.float32))  # beyond FP16's 65504: clipped, not inf
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    keep = fp32_node_names(model, tail_scope="^/none/")
    assert keep == {"/cast_in", "/mean"}  # the input path up to the first MatMul, and the reduction
    assert convert_model(model, keep) == 4
    onnx.checker.check_model(model, full_check=True)
    types = value_types(model)
    assert types["out"] == TensorProto.FLOAT and types["y"] == TensorProto.FLOAT16
    assert {n.name: n.attribute[0].i for n in model.graph.node if n.op_type == "Cast"}["/recast"] == 10
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"x": np.ones((2, 4), np.uint8)})[0]
    assert out.dtype == np.float32 and np.array_equal(out, np.zeros((2, 4), np.float32))


def test_large_constants_are_clipped_and_counted_like_initializers() -> None:
    """A Constant node's 1e5 became inf in FP16 without a word (initializers were clipped, counted)."""
    make = helper.make_node
    big = numpy_helper.from_array(np.full(4, 1e5, np.float32), "big")
    nodes = [
        make("Cast", ["x"], ["xf"], name="/cast_in", to=TensorProto.FLOAT),
        make("Constant", [], ["c"], name="/const", value=big),
        make("MatMul", ["xf", "w"], ["y"], name="/matmul"),
        make("Add", ["y", "c"], ["out"], name="/add"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    assert convert_model(model, fp32_node_names(model, tail_scope="^/none/")) == 4
    constant = next(n for n in model.graph.node if n.op_type == "Constant")
    assert np.isfinite(numpy_helper.to_array(constant.attribute[0].t)).all()


# ----- errors ---------------------------------------------------------------------------------------
def test_refuses_fp16_input_wrong_contract_foreign_and_truncated_files(
    tiny_fp16: Path, tmp_path: Path
) -> None:
    with pytest.raises(ArtifactError, match="already fp16"):
        to_fp16(tiny_fp16, tmp_path / "again.onnx")
    wrong = build_contract_model(tmp_path / "float_images.onnx", images_dtype=TensorProto.FLOAT)
    with pytest.raises(ArtifactError, match="input 'images' is float32, expected uint8"):
        to_fp16(wrong)
    foreign = build_contract_model(tmp_path / "foreign.onnx", with_card=False)
    with pytest.raises(CardError, match="not exported by vireid"):
        to_fp16(foreign)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(tiny_fp16.read_bytes()[:5000])
    with pytest.raises(ArtifactError, match="truncated"):
        to_fp16(truncated)
    with pytest.raises(ArtifactError, match="no such ONNX file"):
        to_fp16(tmp_path / "missing.onnx")
