"""ONNX artifacts on disk: load with typed errors, check the I/O contract, embed the card, save atomically.

Every export step reads and writes through here, so a truncated file, a foreign model or a graph that
breaks the contract of ARCHITECTURE.md (`images` uint8 `[N, H, W, 3]`, `modality` int32 `[N]`,
`embeddings` float32 `[N, D]`, symbolic batch N) is refused with the same message wherever it shows up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from vireid.atomic import write_atomic
from vireid.card import CARD_KEY, ModelCard
from vireid.errors import ArtifactError, CardError, require

log = logging.getLogger("vireid.export")

# ONNX TensorProto element types of the contract (uint8 = 2, int32 = 6, float = 1, float16 = 10).
UINT8, INT32, FLOAT, FLOAT16 = 2, 6, 1, 10
_TYPE_NAMES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}


def _onnx() -> Any:
    return require("onnx", "export", "Exporting or checking an ONNX model")


@contextmanager
def timed(step: str) -> Iterator[None]:
    """Log the start and the duration of a long step on the `vireid.export` logger (INFO)."""
    log.info("%s ...", step)
    start = time.perf_counter()
    yield
    log.info("%s: done in %.1f s", step, time.perf_counter() - start)


def load_onnx(path: str | Path) -> Any:
    """Load an ONNX file (weights included) or raise `ArtifactError` naming the file and the fix."""
    onnx = _onnx()
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path}: is a folder; pass the .onnx file inside it")
    if not path.is_file():
        raise ArtifactError(
            f"{path}: no such ONNX file; export one with `vireid export CHECKPOINT --to onnx`"
        )
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError and friends: the file is not a whole ONNX model
        raise ArtifactError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc}); the file may be truncated. "
            "Re-export it with `vireid export`."
        ) from None


def card_of(model: Any, source: str | Path) -> ModelCard:
    """The `ModelCard` in a loaded model's `metadata_props`."""
    props = {p.key: p.value for p in model.metadata_props}
    if CARD_KEY not in props:
        raise CardError(
            f"{source}: ONNX model has no '{CARD_KEY}' metadata; it was not exported by vireid. "
            "Export it with `vireid export CHECKPOINT --to onnx`."
        )
    return ModelCard.from_json(props[CARD_KEY], source=str(source))


def set_card(model: Any, card: ModelCard) -> None:
    """Store `card` in `metadata_props[vireid.card]`, replacing an earlier one."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != CARD_KEY]
    del model.metadata_props[:]
    for key, value in [*kept, (CARD_KEY, card.to_json())]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def save_onnx(model: Any, path: str | Path) -> Path:
    """Write a model atomically (`vireid.atomic`): a failure never leaves half a file.

    Raises:
        ArtifactError: the file cannot be written (full disk, no permission); nothing was changed.
    """
    return write_artifact(path, model.SerializeToString())


def write_artifact(path: str | Path, data: Any) -> Path:
    """`write_atomic` with its `OSError` as an `ArtifactError` naming the file and the fix."""
    try:
        return write_atomic(path, data)
    except OSError as exc:
        raise ArtifactError(
            f"{path}: cannot write it ({exc.strerror or exc}); free disk space or choose another --out. "
            "Nothing was written"
        ) from exc


def _dims(value_info: Any) -> list[int | str]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in shape.dim]


def _type_name(elem_type: int) -> str:
    return _TYPE_NAMES.get(elem_type, f"onnx type {elem_type}")


def contract_problems(model: Any, card: ModelCard) -> list[str]:
    """How a model's graph I/O differs from the contract its card states (empty when it follows it)."""
    image_name, modality_name = card.input_names
    height, width = card.input_size
    expected = {
        "input": {image_name: (UINT8, [height, width, 3]), modality_name: (INT32, [])},
        "output": {card.output_name: (FLOAT, [card.embedding_dim])},
    }
    initializers = {t.name for t in model.graph.initializer}
    actual = {
        "input": {v.name: v for v in model.graph.input if v.name not in initializers},
        "output": {v.name: v for v in model.graph.output},
    }
    problems = []
    for kind, want in expected.items():
        got = actual[kind]
        if list(got) != list(want):
            problems.append(f"{kind}s are {list(got)}, expected {list(want)}")
        for name, (elem, rest) in want.items():
            if name not in got:
                continue
            elem_got = got[name].type.tensor_type.elem_type
            if elem_got != elem:
                problems.append(f"{kind} '{name}' is {_type_name(elem_got)}, expected {_type_name(elem)}")
            dims = _dims(got[name])
            if not dims or not isinstance(dims[0], str) or dims[1:] != rest:
                problems.append(f"{kind} '{name}' has shape {dims}, expected {['N', *rest]} (N symbolic)")
    return problems


def check_contract(model: Any, card: ModelCard, source: str | Path) -> None:
    """Raise `ArtifactError` listing every way the model breaks the contract of its card."""
    problems = contract_problems(model, card)
    if problems:
        raise ArtifactError(
            f"{source}: the model does not follow the vireid I/O contract: "
            + "; ".join(problems)
            + ". Export it with `vireid export`, which writes images uint8 [N,H,W,3], modality int32 [N] "
            "and embeddings float32 [N,D]."
        )


def read_checked(path: str | Path) -> tuple[Any, ModelCard]:
    """Load an exported ONNX file and its card, and check the graph against the card's contract."""
    model = load_onnx(path)
    card = card_of(model, path)
    check_contract(model, card, path)
    return model, card


def update_card(path: str | Path, card: ModelCard) -> Path:
    """Replace the card stored in an ONNX file (rewrites the file atomically)."""
    model = load_onnx(path)
    set_card(model, card)
    return save_onnx(model, path)


def averaging_matmuls(model: Any) -> set[str]:
    """Names of the MatMul nodes that only average: a constant `[1, K]` row of 1/K times a `[N, K, C]`
    map (the models' spatial means, written as a product because ONNX Runtime runs it far faster than
    a `ReduceMean` over a channels-last map's middle axes). They are reductions, not learned weights:
    INT8 leaves them unquantised and FP16 keeps them in float32, like every other summing reduction.
    The row may be an initializer (after simplification) or a `Constant` node (a raw export)."""
    numpy_helper = _onnx().numpy_helper
    constants = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = node.attribute[0].t
    names = set()
    for node in model.graph.node:
        row = constants.get(node.input[0]) if node.op_type == "MatMul" else None
        if row is None or len(row.dims) != 2 or row.dims[0] != 1:
            continue
        values = numpy_helper.to_array(row).astype("float64")
        if np.allclose(values, 1.0 / values.size, rtol=1e-3, atol=0.0):  # 1e-3: a float16 row too
            names.add(node.name)
    return names
