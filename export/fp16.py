"""FP32 ONNX → FP16 ONNX with float32 I/O, keeping the numerically fragile parts in float32.

FP16 weights and compute everywhere except:

- the input path (`images` uint8 → Cast → mean/std → transpose, up to the first Conv/MatMul/Gemm):
  pixel arithmetic stays exact and the graph still takes uint8;
- the head and everything after it (GeM `x^p` and mean, BN-neck, the final L2 norm, found from the
  `/head/` name scope): `x^3` and the sum of squares over D channels overflow 65504 easily;
- every reduction that sums (`ReduceMean`, `ReduceSum`, `ReduceL2`, …, and the averaging `MatMul`s
  that compute spatial means), every `Pow` and `LpNormalization`, wherever they sit (the attention's
  channel mean, for instance);
- with `gate: feature` the whole part cascade (its activations are quadratic in the trunk);
- nodes matching extra regexes passed as `keep_fp32`.

Casts are inserted on every edge that crosses the boundary; the output stays float32. The converter is
our own rather than onnxconverter-common's: with a node block list, version 1.16 produces graphs ONNX
Runtime refuses (a Cast relabelled FP16 that still emits float32) or fails outright
("The downstream node of the second cast node should be graph output") on these models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vireid.card import Precision
from vireid.errors import ArtifactError, require

from .artifact import (
    FLOAT,
    FLOAT16,
    averaging_matmuls,
    check_contract,
    log,
    read_checked,
    save_onnx,
    set_card,
    timed,
)

#: Ops kept in float32 wherever they appear (they accumulate or exponentiate).
FP32_OPS = frozenset(
    {
        "ReduceMean",
        "ReduceSum",
        "ReduceSumSquare",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceProd",
        "LpNormalization",
        "Pow",
        "Softmax",
        "LogSoftmax",
        "GlobalAveragePool",
        "GlobalLpPool",
    }
)
#: The tail (this scope and everything downstream of it) stays float32.
TAIL_SCOPE = r"^/head/"
#: First compute ops: the input path runs from the image input up to (excluding) these.
_COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
#: Inputs that ONNX requires to be float32 whatever the data type (op → input indices).
_FLOAT32_INPUTS = {"Resize": {2}, "Upsample": {1}}
_FP16_MAX = float(np.finfo(np.float16).max)


def _consumers(nodes: Sequence[Any]) -> dict[str, list[Any]]:
    table: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            if name:
                table.setdefault(name, []).append(node)
    return table


def _downstream(starts: Iterable[Any], consumers: dict[str, list[Any]], stop: frozenset[str]) -> set[str]:
    """Names of `starts` and every node reachable from their outputs, not entering ops in `stop`."""
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        for out in node.output:
            stack.extend(c for c in consumers.get(out, []) if c.op_type not in stop)
    return seen


def fp32_node_names(model: Any, keep_fp32: Sequence[str] = (), tail_scope: str = TAIL_SCOPE) -> set[str]:
    """Names of the nodes an FP16 conversion keeps in float32 (see the module docstring)."""
    nodes = list(model.graph.node)
    unnamed = [n for n in nodes if not n.name]
    if unnamed:
        raise ArtifactError(
            f"{len(unnamed)} nodes have no name (first: {unnamed[0].op_type}); cannot convert"
        )
    consumers = _consumers(nodes)
    image_input = model.graph.input[0].name
    front = _downstream(consumers.get(image_input, []), consumers, _COMPUTE_OPS)
    tail_re = re.compile(tail_scope)
    tail = _downstream([n for n in nodes if tail_re.search(n.name)], consumers, frozenset())
    patterns = [re.compile(p) for p in keep_fp32]
    extra = {n.name for n in nodes if n.op_type in FP32_OPS or any(p.search(n.name) for p in patterns)}
    return front | tail | extra | averaging_matmuls(model)


def _tensor_types(model: Any) -> dict[str, int]:
    onnx = require("onnx", "export", "Converting a model to FP16")
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = inferred.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        types[info.name] = info.type.tensor_type.elem_type
    return types


class _Converter:
    """Rewrites one graph in place: FP16 nodes, FP16 initialisers, Casts on boundary edges."""

    def __init__(self, model: Any, keep: set[str]) -> None:
        import onnx

        self.onnx, self.graph, self.keep = onnx, model.graph, keep
        self.types = _tensor_types(model)
        self.inits = {t.name: t for t in self.graph.initializer}
        self.producer = {out: n for n in self.graph.node for out in n.output}
        self.casts: dict[tuple[str, int], str] = {}
        self.new_nodes: list[Any] = []
        self.overflow = 0

    def is_half(self, node: Any) -> bool:
        return node.name not in self.keep

    def domain(self, tensor: str) -> int:
        """The float type a tensor will carry after conversion (FLOAT16 when an FP16 node makes it)."""
        node = self.producer.get(tensor)
        return FLOAT16 if node is not None and self.is_half(node) else FLOAT

    def cast(self, tensor: str, to: int) -> str:
        key = (tensor, to)
        if key not in self.casts:
            name = f"{tensor}__to_{'fp16' if to == FLOAT16 else 'fp32'}"
            self.new_nodes.append(
                self.onnx.helper.make_node("Cast", [tensor], [name], name=f"{name}_cast", to=to)
            )
            self.casts[key] = name
        return self.casts[key]

    def half_initializer(self, name: str) -> str:
        key = (name, FLOAT16)
        if key not in self.casts:
            array = self.onnx.numpy_helper.to_array(self.inits[name]).astype(np.float32)
            self.overflow += int(np.sum(np.abs(array) > _FP16_MAX))
            half = np.clip(array, -_FP16_MAX, _FP16_MAX).astype(np.float16)
            self.graph.initializer.append(self.onnx.numpy_helper.from_array(half, f"{name}__fp16"))
            self.casts[key] = f"{name}__fp16"
        return self.casts[key]

    def rewire(self, node: Any) -> None:
        want = FLOAT16 if self.is_half(node) else FLOAT
        fixed = _FLOAT32_INPUTS.get(node.op_type, set())
        for index, tensor in enumerate(node.input):
            if not tensor or self.types.get(tensor) != FLOAT:
                continue
            target = FLOAT if index in fixed else want
            if tensor in self.inits:
                if target == FLOAT16:
                    node.input[index] = self.half_initializer(tensor)
            elif self.domain(tensor) != target:
                node.input[index] = self.cast(tensor, target)
        if want == FLOAT16:
            self.retarget_attributes(node)

    def retarget_attributes(self, node: Any) -> None:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT:
                attr.i = FLOAT16
            elif attr.name == "value" and attr.t.data_type == FLOAT:  # Constant, ConstantOfShape
                array = self.onnx.numpy_helper.to_array(attr.t).astype(np.float32)
                self.overflow += int(np.sum(np.abs(array) > _FP16_MAX))  # clipped, as initializers
                half = np.clip(array, -_FP16_MAX, _FP16_MAX).astype(np.float16)
                attr.t.CopyFrom(self.onnx.numpy_helper.from_array(half, attr.t.name))
            elif attr.type == self.onnx.AttributeProto.GRAPH:
                raise ArtifactError(f"node {node.name} ({node.op_type}) has a subgraph; not supported")

    def outputs_stay_float32(self) -> None:
        for output in self.graph.output:
            if self.types.get(output.name) == FLOAT and self.domain(output.name) == FLOAT16:
                node = self.producer[output.name]
                inner = f"{output.name}__fp16"
                node.output[list(node.output).index(output.name)] = inner
                self.new_nodes.append(
                    self.onnx.helper.make_node(
                        "Cast", [inner], [output.name], name=f"{output.name}_cast", to=FLOAT
                    )
                )

    def run(self) -> None:
        for node in self.graph.node:
            self.rewire(node)
        self.outputs_stay_float32()
        used = {name for n in [*self.graph.node, *self.new_nodes] for name in n.input}
        unused = [t for t in self.graph.initializer if t.name not in used]
        for tensor in unused:
            self.graph.initializer.remove(tensor)
        self.graph.node.extend(self.new_nodes)
        _sort_topologically(self.graph)
        del self.graph.value_info[:]


def _sort_topologically(graph: Any) -> None:
    """Reorder nodes so every input is produced before use (inserted Casts sit at the end otherwise)."""
    ready = {t.name for t in graph.initializer} | {v.name for v in graph.input} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        progress = [n for n in pending if all(i in ready for i in n.input)]
        if not progress:
            raise ArtifactError(f"graph has a cycle or a dangling input near node {pending[0].name}")
        for node in progress:
            ready.update(node.output)
        ordered.extend(progress)
        done = {id(n) for n in progress}
        pending = [n for n in pending if id(n) not in done]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def convert_model(model: Any, keep: set[str]) -> int:
    """Convert a loaded FP32 model to FP16 in place, keeping `keep` nodes in float32.

    Returns:
        How many initialiser values were clipped to ±65504.
    """
    converter = _Converter(model, keep)
    converter.run()
    return converter.overflow


def to_fp16(onnx_path: str | Path, out: str | Path | None = None, *, keep_fp32: Sequence[str] = ()) -> Path:
    """Convert an exported FP32 ONNX file to FP16 compute with float32 I/O.

    Args:
        onnx_path: FP32 `.onnx` written by `to_onnx`.
        out: where to write; default `<stem>.fp16.onnx` beside the input.
        keep_fp32: extra node-name regexes to keep in float32 (the input path, the head, reductions and
            powers are always kept).

    Returns:
        The FP16 file; its card says `precision: fp16` (same embedding space as its parent).

    Raises:
        ArtifactError: the input is unreadable, not FP32, breaks the contract, or the result does not
            pass ONNX's checker and strict type inference.
    """
    onnx = require("onnx", "export", "Converting a model to FP16")
    onnx_path = Path(onnx_path)
    out = Path(out) if out is not None else onnx_path.with_name(f"{onnx_path.stem}.fp16.onnx")
    model, card = read_checked(onnx_path)
    if card.precision is not Precision.FP32:
        raise ArtifactError(f"{onnx_path}: the model is already {card.precision.value}; pass the FP32 export")
    patterns = [*keep_fp32, *([r"^/cascade/"] if card.model_config.get("gate") == "feature" else [])]
    with timed("FP16 conversion"):
        keep = fp32_node_names(model, patterns)
        clipped = convert_model(model, keep)
        if clipped:
            log.warning("FP16: %d weight values exceeded ±65504 and were clipped", clipped)
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception as exc:
            raise ArtifactError(
                f"{onnx_path}: the FP16 conversion produced an invalid graph: {exc}"
            ) from None
    log.info("FP16: %d of %d nodes kept in float32", len(keep), len(model.graph.node))
    fp16_card = card.replace(precision=Precision.FP16)
    check_contract(model, fp16_card, out)
    set_card(model, fp16_card)
    return save_onnx(model, out)
