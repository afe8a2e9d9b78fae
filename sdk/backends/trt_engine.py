"""TensorRT engine helpers: log capture, compatibility check, tensor table and contract check.

Written against the named-tensor API that TensorRT 8.5 through 11.x share (`num_io_tensors`,
`get_tensor_name/mode/dtype/shape`, `get_tensor_profile_shape`). The `trt` module is passed in, never
imported here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..card import BatchProfile, ModelCard
from ..errors import ArtifactError

log = logging.getLogger("vireid")
MAX_LOG_LINES = 50


def make_logger(trt: Any) -> Any:
    """A `trt.ILogger` that forwards to the `vireid` logger and keeps warnings/errors for messages."""

    class CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)  # INTERNAL_ERROR 0, ERROR 1, WARNING 2, INFO 3, VERBOSE 4
            log.log(
                {0: logging.ERROR, 1: logging.ERROR, 2: logging.WARNING}.get(level, logging.DEBUG),
                "TensorRT: %s",
                msg,
            )
            if level <= 2:
                self.lines = [*self.lines[-(MAX_LOG_LINES - 1) :], str(msg)]

    return CapturingLogger()


def _version_key(version: str | None) -> tuple[int, ...]:
    parts = []
    for part in str(version or "").split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    while parts and parts[-1] == 0:  # "10.3" == "10.3.0"
        parts.pop()
    return tuple(parts)


def compatibility_problem(card: ModelCard, trt_version: str, gpu: str, capability: str) -> str | None:
    """Why an engine cannot run here (another TensorRT version or GPU type), or None.

    Fields the card leaves empty are not compared; deserialisation still has the last word.
    """
    wrong = []
    if card.tensorrt_version and _version_key(card.tensorrt_version) != _version_key(trt_version):
        wrong.append(f"TensorRT {card.tensorrt_version} (this machine runs {trt_version})")
    if card.compute_capability and _version_key(card.compute_capability) != _version_key(capability):
        built_on = f" ({card.gpu_name})" if card.gpu_name else ""
        wrong.append(
            f"compute capability {card.compute_capability}{built_on} (this GPU, {gpu}, is {capability})"
        )
    if not wrong:
        return None
    return "the engine was built for " + " and ".join(wrong)


def refuse_incompatible(path: Path, problem: str) -> ArtifactError:
    """The error for an engine from another TensorRT version or GPU type, with the fixes."""
    return ArtifactError(
        f"{path}: {problem}. A TensorRT engine runs only on the TensorRT version and GPU type it was "
        "built for: rebuild it on this machine from the model's .onnx (`vireid export`), or run the .onnx "
        "with device='cuda'/'tensorrt'. For engines built version- or hardware-compatible pass "
        "check_compatibility=False."
    )


# Leading bytes of the files most often given where an engine belongs, and what they are.
_SIGNATURES = (
    (b"PK\x03\x04", "a ZIP archive (an .npz or a PyTorch .pt file)"),
    (b"SQLite format 3\x00", "an SQLite database (a gallery?)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
)


def _looks_like_onnx(head: bytes) -> bool:
    """An ONNX ModelProto opens with its small ir_version (field 1) and then another of its fields."""
    next_fields = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42}  # producer, version, domain, ..., graph, opset
    return len(head) > 2 and head[0] == 0x08 and 1 <= head[1] <= 20 and head[2] in next_fields


def other_format(path: Path) -> str | None:
    """What `path` is when it is recognisably not a TensorRT engine (None: it may be one).

    An engine (plan) is an opaque binary blob that only TensorRT can validate, so this only catches the
    usual mix-ups before a card is written for them: an empty file, an ONNX model, a checkpoint, a
    gallery, an image, a text file (a card, a config).
    """
    with path.open("rb") as f:
        head = f.read(4096)
    if not head:
        return "empty"
    for magic, kind in _SIGNATURES:
        if head.startswith(magic):
            return kind
    if head[8:10] == b'{"':
        return "a safetensors file (a checkpoint)"
    if _looks_like_onnx(head):
        return "an ONNX model (the engine is built from it)"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return "a text file"
    return None


def deserialize(trt: Any, runtime: Any, logger: Any, path: Path) -> Any:
    """Deserialize an engine file; None from TensorRT becomes an `ArtifactError` quoting its log."""
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        lines = "\n  ".join(logger.lines[-10:]) or "(TensorRT logged nothing)"
        raise ArtifactError(
            f"{path}: TensorRT {trt.__version__} could not deserialize this engine. "
            f"TensorRT said:\n  {lines}\n"
            "Engines are specific to one TensorRT version and GPU type: rebuild it here from the .onnx "
            "(`vireid export`)."
        )
    return engine


@dataclass(frozen=True)
class TensorInfo:
    """One I/O tensor of an engine."""

    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int, ...]


# TensorRT data types by name (pybind11 enum members have `.name`). Not `trt.nptype`: TensorRT 8.5's
# builds a table holding `np.bool`, which numpy 1.24 removed, so it raises on every call there.
_NUMPY_DTYPES = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}


def numpy_dtype(trt_dtype: Any, tensor: str) -> np.dtype:
    """The numpy dtype of a TensorRT `DataType`.

    Raises:
        ArtifactError: a type with no numpy equivalent (BF16, FP8, INT4), which no vireid engine has.
    """
    name = str(getattr(trt_dtype, "name", trt_dtype)).rsplit(".", 1)[-1]
    if name not in _NUMPY_DTYPES:
        raise ArtifactError(
            f"engine tensor {tensor!r} has TensorRT type {name}, which vireid cannot feed or read; "
            f"vireid engines use {', '.join(_NUMPY_DTYPES)} I/O: rebuild it with `vireid export --to engine`"
        )
    return np.dtype(_NUMPY_DTYPES[name])


def tensor_table(trt: Any, engine: Any) -> dict[str, TensorInfo]:
    """Name → `TensorInfo` for every I/O tensor (shape `-1` = dynamic)."""
    table = {}
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        table[name] = TensorInfo(
            name=name,
            is_input=engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
            dtype=numpy_dtype(engine.get_tensor_dtype(name), name),
            shape=tuple(int(d) for d in engine.get_tensor_shape(name)),
        )
    return table


def expected_tensors(card: ModelCard) -> dict[str, TensorInfo]:
    """The tensors the card's contract promises (`-1` = dynamic batch)."""
    image_name, modality_name = card.input_names
    height, width = card.input_size
    return {
        image_name: TensorInfo(image_name, True, np.dtype(np.uint8), (-1, height, width, 3)),
        modality_name: TensorInfo(modality_name, True, np.dtype(np.int32), (-1,)),
        card.output_name: TensorInfo(card.output_name, False, np.dtype(np.float32), (-1, card.embedding_dim)),
    }


def contract_problems(table: dict[str, TensorInfo], card: ModelCard) -> list[str]:
    """How an engine's tensors differ from its card's contract (empty when they match)."""
    expected = expected_tensors(card)
    if set(table) != set(expected):
        return [f"tensors are {sorted(table)}, expected {sorted(expected)}"]
    problems = []
    for name, want in expected.items():
        got = table[name]
        if got.is_input != want.is_input:
            problems.append(f"'{name}' is an {'input' if got.is_input else 'output'}, expected the opposite")
        if got.dtype != want.dtype:
            problems.append(f"'{name}' is {got.dtype}, expected {want.dtype}")
        # every dimension but the batch must be fixed: buffers are allocated once for the profile's
        # largest batch, and a dynamic height or width (-1) has no size to allocate
        if got.shape[1:] != want.shape[1:] or got.shape[:1] != (-1,):
            dynamic = " (only the batch may be dynamic)" if -1 in got.shape[1:] else ""
            problems.append(
                f"'{name}' has shape {list(got.shape)}, expected {list(want.shape)} (-1 = batch){dynamic}"
            )
    return problems


def engine_profile(engine: Any, card: ModelCard, path: Path) -> BatchProfile:
    """Batch range of optimisation profile 0, intersected over both inputs; checked against the card."""
    lows, opts, highs = [], [], []
    for name in card.input_names:
        low, opt, high = engine.get_tensor_profile_shape(name, 0)
        lows.append(int(low[0]))
        opts.append(int(opt[0]))
        highs.append(int(high[0]))
    low, high = max(lows), min(highs)
    profile = BatchProfile(low, min(max(opts[0], low), high), high)
    if card.profile and (card.profile.min, card.profile.max) != (profile.min, profile.max):
        raise ArtifactError(
            f"{path}: engine profile batch {profile.min}..{profile.max} differs from its card's "
            f"{card.profile.min}..{card.profile.max}; the card was not written for this engine. Rebuild "
            "the engine with `vireid export`."
        )
    return profile
