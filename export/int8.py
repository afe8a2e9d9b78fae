"""INT8 for ONNX Runtime: static QDQ quantisation calibrated on both modalities, sensitive layers in float.

`to_int8(fp32.onnx, out, data=DIR)` draws a calibration set from the dataset's *training* identities
only (SYSU-MM01 `exp/train_id.txt` + `val_id.txt`, RegDB split 1's training part; the test identities
are checked absent), in a stated modality balance (default 50 % visible / 50 % infrared, because a
calibration on one kind of image clips the other's activations), runs ONNX Runtime's calibrator once
(min-max, entropy or percentile; ranges cached to a file with ONNX Runtime >= 1.27) and writes a QDQ
model with per-channel int8 weights and uint8 activations, the layout ONNX Runtime's x86 kernels (VNNI)
run fastest (or, with `Int8Options(target="tensorrt")`, int8 symmetric activations, the only QDQ
TensorRT parses).

Which layers stay in float is measured, not guessed: a sensitivity pass quantises the model with one
candidate group at a time kept in float (each stream's first convolution, each part-attention module,
the head) and keeps in float every group whose exclusion raises the cosine to the FP32 embeddings on
held-out calibration images by at least `min_gain`. GeM pooling, the BN-neck's normalisation and the
L2 normalisation are never quantised (only Conv, MatMul and Gemm are). The card says `int8` and records
the calibration set's fingerprint, size, balance, method and the layers kept in float.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vireid.card import ModelCard, Precision
from vireid.choices import Choice
from vireid.errors import ArtifactError, ConfigError, DatasetError, require
from vireid.modality import Modality

from .artifact import averaging_matmuls, read_checked, save_onnx, set_card, timed
from .quiet import quiet_quantiser

log = logging.getLogger("vireid.export")

INT8_TARGETS = ("onnxruntime", "tensorrt")
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
BACKBONE_OPS = ("Add", "MaxPool", "Relu", "Mul")
"""Also quantised inside the backbone: residual additions, ReLUs, the stem's pooling and the per-sample
stem selection (`visible·w + infrared·(1 − w)`), so a whole ResNet block stays in int8 (QLinearConv with
the ReLU folded in, QLinearAdd, QLinearMul) instead of dequantising around every activation; measured on
the full-size model this cut DequantizeLinear time from 17.8 to 2.8 ms per batch of 8, and quantising the
selection removed the layout transposes around the stems' output."""


def quantizable_nodes(model: Any) -> list[str]:
    """Conv/MatMul/Gemm anywhere except the averaging MatMuls (spatial means, see `averaging_matmuls`),
    plus `BACKBONE_OPS` inside the backbone except its output node.

    The backbone's output map feeds float ops (the part cascade, GeM). Left quantised, ONNX Runtime
    moves its DequantizeLinear past the stripe split and gives every consumer its own copy: four
    dequantisations of the whole map in MSPAC. A float output node (its inputs still dequantised once)
    took 3 % off INT8 latency at batch 32 on the full-size model.
    """
    backbone = {n.name for n in model.graph.node if "/backbone/" in n.name}
    exits = _exit_nodes(model, backbone)
    means = averaging_matmuls(model)
    return [
        n.name
        for n in model.graph.node
        if n.name
        and n.name not in means
        and (
            n.op_type in QUANTIZED_OPS
            or (n.name in backbone and n.name not in exits and n.op_type in BACKBONE_OPS)
        )
    ]


def _exit_nodes(model: Any, names: set[str]) -> set[str]:
    """The nodes among `names` whose results are used outside `names` (or are graph outputs)."""
    used_outside = {i for n in model.graph.node if n.name not in names for i in n.input}
    used_outside |= {o.name for o in model.graph.output}
    return {n.name for n in model.graph.node if n.name in names and used_outside.intersection(n.output)}


class CalibrationMethod(Choice):
    """How activation ranges are chosen from the calibration images."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"

    @classmethod
    def label(cls) -> str:
        return "calibration method"


@dataclass(frozen=True)
class Int8Options:
    """Settings of `to_int8`.

    Attributes:
        method: calibration method.
        images: calibration images in total.
        visible_fraction: share of visible images (0.5 = balanced, 1.0 = visible only).
        seed: which training images are drawn.
        sensitivity: run the sensitivity pass (else quantise every Conv/MatMul/Gemm).
        probe: held-out training images (half per modality) the sensitivity pass scores on.
        min_gain: mean-cosine gain a group must bring to stay in float.
        keep_float: extra node-name regexes to keep in float regardless of the pass.
        target: `onnxruntime` (uint8 asymmetric activations: what ONNX Runtime's x86 VNNI kernels run
            fastest) or `tensorrt` (int8 symmetric activations, zero points 0: the only QDQ TensorRT's
            ONNX parser accepts); None: `onnxruntime`, or `tensorrt` in an export chain that builds an
            engine.
    """

    method: CalibrationMethod | str = CalibrationMethod.MINMAX
    images: int = 128
    visible_fraction: float = 0.5
    seed: int = 0
    sensitivity: bool = True
    probe: int = 32
    min_gain: float = 0.002
    keep_float: tuple[str, ...] = ()
    target: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", CalibrationMethod.parse(self.method))
        if self.target is not None and self.target not in INT8_TARGETS:
            raise ConfigError(f"INT8 target must be one of {', '.join(INT8_TARGETS)}, got {self.target!r}")
        if not 0.0 <= self.visible_fraction <= 1.0:
            raise ConfigError(f"visible_fraction must be in [0, 1], got {self.visible_fraction}")
        if self.images < 2 or self.probe < 2:
            raise ConfigError(f"images and probe must be >= 2, got {self.images} and {self.probe}")

    @property
    def calibration_method(self) -> CalibrationMethod:
        """`method` as the enum (`__post_init__` has parsed it already; the field also accepts a name)."""
        return CalibrationMethod.parse(self.method)


@dataclass(frozen=True)
class CalibrationSet:
    """Calibration images drawn from a dataset's training split.

    Attributes:
        images: `uint8 [N, H, W, 3]` RGB at the model's input size.
        modality: `int32 [N]`.
        pids: identity of each image (for the leakage guard and the record).
        paths: the files, relative to `root`.
        root: the dataset folder.
    """

    images: np.ndarray
    modality: np.ndarray
    pids: np.ndarray
    paths: tuple[str, ...]
    root: Path

    @property
    def visible_fraction(self) -> float:
        return float(np.mean(self.modality == int(Modality.VISIBLE))) if len(self.modality) else 0.0

    def fingerprint(self) -> str:
        """SHA-256 over the (relative path, size) of every image, in order."""
        digest = hashlib.sha256()
        for rel in self.paths:
            digest.update(f"{rel}\0{(self.root / rel).stat().st_size}\n".encode())
        return digest.hexdigest()


def training_images(root: str | Path) -> tuple[Any, set[int]]:
    """The training split's `ImageSet` of a SYSU-MM01 or RegDB folder, and its test identities."""
    from vireid.training.data.regdb import RegDB
    from vireid.training.data.sysu import SysuMM01

    root = Path(root)
    if (root / "exp").is_dir():
        data = SysuMM01(root)
        return data.train_set(), set(data.ids("test"))
    regdb = RegDB(root)
    test = regdb.split(1, "test", Modality.VISIBLE)
    return regdb.train_set(1), {int(p) for p in test.pids}


def calibration_set(
    root: str | Path,
    input_size: tuple[int, int],
    images: int,
    visible_fraction: float,
    seed: int = 0,
    exclude: frozenset[str] = frozenset(),
) -> CalibrationSet:
    """Draw `images` training images, `visible_fraction` of them visible (files in `exclude`, relative
    to `root`, are never drawn).

    Raises:
        DatasetError: a drawn image belongs to a test identity (the split lists overlap), or a modality
            the balance asks for has no training images.
    """
    from vireid.training.images import load_resized

    train, test_ids = training_images(root)
    root = Path(root)
    allowed = np.array([str(Path(p).relative_to(root)) not in exclude for p in train.paths], dtype=bool)
    rng = np.random.default_rng(seed)
    want = {Modality.VISIBLE: round(images * visible_fraction)}
    want[Modality.INFRARED] = images - want[Modality.VISIBLE]
    rows: list[int] = []
    for mod, count in want.items():
        pool = np.flatnonzero((train.modalities == int(mod)) & allowed)
        if count and not len(pool):
            raise DatasetError(root, f"no {mod} training images to calibrate on")
        rows += rng.choice(pool, size=min(count, len(pool)), replace=False).tolist() if count else []
    leaked = sorted({int(train.pids[i]) for i in rows} & test_ids)
    if leaked:
        raise DatasetError(
            root,
            f"calibration would use test identities {leaked[:10]}: the training and test id lists overlap; "
            "fix exp/train_id.txt / exp/test_id.txt (never calibrate on the images you evaluate on)",
        )
    paths = [train.paths[i] for i in rows]
    return CalibrationSet(
        images=np.stack([load_resized(p, input_size) for p in paths]),
        modality=train.modalities[rows].astype(np.int32),
        pids=train.pids[rows].copy(),
        paths=tuple(str(Path(p).relative_to(root)) for p in paths),
        root=root,
    )


@dataclass
class Int8Result:
    """What `to_int8` wrote and measured.

    Attributes:
        path: the INT8 `.onnx`.
        kept_float: candidate groups kept in float by the sensitivity pass (name → node names).
        sensitivity: mean cosine to FP32 on the probe images, per variant (`all` = everything quantised).
        cosine: mean and min cosine of the final model to FP32 on the probe images, per modality.
    """

    path: Path
    kept_float: dict[str, list[str]] = field(default_factory=dict)
    sensitivity: dict[str, float] = field(default_factory=dict)
    cosine: dict[str, float] = field(default_factory=dict)


class _Reader:
    """An ONNX Runtime `CalibrationDataReader` over a calibration set, in batches."""

    def __init__(self, data: CalibrationSet, names: tuple[str, str], batch: int = 8) -> None:
        self.data, self.names, self.batch = data, names, batch
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self.data.modality), self.batch):
            yield {
                self.names[0]: np.ascontiguousarray(self.data.images[i : i + self.batch]),
                self.names[1]: np.ascontiguousarray(self.data.modality[i : i + self.batch]),
            }

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


def candidate_groups(model: Any) -> dict[str, list[str]]:
    """Node groups the sensitivity pass may keep in float, in graph order: the first Conv of each
    modality stem, each cascade stage's part-attention modules, and any MatMul/Gemm outside them."""
    quantised = set(quantizable_nodes(model))
    nodes = [n for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.name in quantised]
    groups: dict[str, list[str]] = {}
    for node in nodes:
        stem = re.search(r"/([^/]*_stem)/", node.name)
        stage = re.search(r"/cascade/stages\.(\d+)\.", node.name)
        if stem and node.op_type == "Conv":
            groups.setdefault(f"first conv of {stem.group(1)}", [node.name])
        elif stage:
            groups.setdefault(f"part attention, cascade stage {stage.group(1)}", []).append(node.name)
        elif node.op_type in ("MatMul", "Gemm"):
            groups.setdefault("head", []).append(node.name)
    return groups


def to_int8(
    onnx_path: str | Path,
    out: str | Path | None = None,
    *,
    data: str | Path,
    options: Int8Options | None = None,
) -> Int8Result:
    """Quantise an FP32 export to INT8 (QDQ) calibrated on `data`'s training images (see module doc).

    Raises:
        ArtifactError: the input is not an FP32 vireid export.
        DatasetError: the calibration data is unusable or would leak test identities.
        MissingDependencyError: onnx / onnxruntime are not installed (extra `export`).
    """
    onnx = require("onnx", "export", "INT8 quantisation")
    quant = require("onnxruntime.quantization", "onnx", "INT8 quantisation")
    options = options or Int8Options()
    onnx_path = Path(onnx_path)
    out = Path(out) if out is not None else onnx_path.with_name(f"{onnx_path.stem}.int8.onnx")
    model, card = read_checked(onnx_path)
    if card.precision is not Precision.FP32:
        raise ArtifactError(
            f"{onnx_path}: the model is {card.precision.value}; INT8 starts from the FP32 export"
        )
    calib = calibration_set(data, card.input_size, options.images, options.visible_fraction, options.seed)
    # the probe scores fidelity in both modalities whatever the calibration balance, on other images
    probe = calibration_set(
        data, card.input_size, options.probe, 0.5, options.seed + 1, frozenset(calib.paths)
    )
    reference = _embed(onnx_path, probe, card)
    with tempfile.TemporaryDirectory(prefix="vireid-int8-") as tmp:
        cache = Path(tmp) / "ranges.json"
        forced = _forced_float(model, options.keep_float)
        nodes = quantizable_nodes(model)

        def quantise(exclude: Sequence[str], target: Path) -> float:
            _quantize(
                quant, onnx_path, target, calib, card, options, cache, sorted(set(exclude) | forced), nodes
            )
            return float(np.mean(_cosines(_embed(target, probe, card), reference)))

        result = Int8Result(out)
        with timed(f"INT8 calibration ({len(calib.modality)} images, {options.calibration_method.value})"):
            result.sensitivity["all"] = quantise([], Path(tmp) / "all.onnx")
        excluded: list[str] = []
        if options.sensitivity:
            excluded = _sensitivity_pass(model, quantise, Path(tmp), result, options.min_gain)
        final_exclude = sorted(set(excluded) | forced)
        _quantize(quant, onnx_path, out, calib, card, options, cache, final_exclude, nodes)
    cos = {}
    for mod in (Modality.VISIBLE, Modality.INFRARED):
        rows = probe.modality == int(mod)
        values = _cosines(_embed(out, probe, card)[rows], reference[rows])
        cos[f"{mod}_mean"], cos[f"{mod}_min"] = float(values.mean()), float(values.min())
    result.cosine = cos
    quantized = onnx.load(str(out))
    int8_card = card.replace(
        precision=Precision.INT8,
        calibration={
            "method": options.calibration_method.value,
            "images": len(calib.modality),
            "visible_fraction": calib.visible_fraction,
            "infrared_fraction": 1.0 - calib.visible_fraction,
            "split": "train",
            "dataset": str(Path(data)),
            "fingerprint": calib.fingerprint(),
            "seed": options.seed,
            "target": options.target or "onnxruntime",
            "kept_float": final_exclude,
            "probe_cosine": cos,
        },
    )
    set_card(quantized, int8_card)
    save_onnx(quantized, out)
    log.debug("INT8: %s, %d nodes kept in float, probe cosine %s", out.name, len(final_exclude), cos)
    return result


def _forced_float(model: Any, patterns: Sequence[str]) -> set[str]:
    regexes = [re.compile(p) for p in patterns]
    return {n.name for n in model.graph.node if any(r.search(n.name) for r in regexes)}


def _sensitivity_pass(model: Any, quantise: Any, tmp: Path, result: Int8Result, min_gain: float) -> list[str]:
    """Greedy: keep in float each candidate group whose exclusion raises the probe cosine by min_gain."""
    excluded: list[str] = []
    best = result.sensitivity["all"]
    for name, nodes in candidate_groups(model).items():
        with timed(f"INT8 sensitivity: {name} in float"):
            score = quantise([*excluded, *nodes], tmp / "probe.onnx")
        result.sensitivity[name] = score
        if score - best >= min_gain or (math.isfinite(score) and not math.isfinite(best)):
            excluded += nodes
            result.kept_float[name] = list(nodes)
            best = score
    return excluded


def _quantize(
    quant: Any,
    source: Path,
    target: Path,
    calib: CalibrationSet,
    card: ModelCard,
    options: Int8Options,
    cache: Path,
    exclude: Sequence[str],
    nodes: Sequence[str],
) -> None:
    method = {
        CalibrationMethod.MINMAX: quant.CalibrationMethod.MinMax,
        CalibrationMethod.ENTROPY: quant.CalibrationMethod.Entropy,
        CalibrationMethod.PERCENTILE: quant.CalibrationMethod.Percentile,
    }[options.calibration_method]
    tensorrt = options.target == "tensorrt"  # None: onnxruntime
    try:
        with quiet_quantiser():
            quant.quantize_static(
                str(source),
                str(target),
                _Reader(calib, card.input_names),
                quant_format=quant.QuantFormat.QDQ,
                op_types_to_quantize=[*QUANTIZED_OPS, *BACKBONE_OPS],
                nodes_to_quantize=nodes,
                per_channel=True,
                activation_type=quant.QuantType.QInt8 if tensorrt else quant.QuantType.QUInt8,
                weight_type=quant.QuantType.QInt8,
                nodes_to_exclude=list(exclude),
                calibrate_method=method,
                # TensorRT: signed symmetric activations, and biases left in float (its parser takes
                # int8 Q/DQ only; it fuses the float bias into the int8 convolution itself)
                extra_options={
                    "WeightSymmetric": True,
                    "ActivationSymmetric": tensorrt,
                    "QuantizeBias": not tensorrt,
                },
                **_cache_argument(quant, cache),
            )
    except Exception as exc:  # onnxruntime raises plain exceptions from deep inside the quantiser
        raise ArtifactError(
            f"{source}: ONNX Runtime could not quantise the model: {type(exc).__name__}: {exc}"
        ) from exc


def _cache_argument(quant: Any, cache: Path) -> dict[str, str]:
    """`calibration_cache_path` where this ONNX Runtime's `quantize_static` takes it (from 1.27)."""
    import inspect

    accepted = inspect.signature(quant.quantize_static).parameters
    return {"calibration_cache_path": str(cache)} if "calibration_cache_path" in accepted else {}


def tensorrt_incompatible_quantisation(model: Any) -> str | None:
    """Why TensorRT's ONNX parser would refuse this QDQ model (uint8 or non-zero zero points), or None."""
    from onnx import numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zero_point = initializers.get(node.input[2])
        if zero_point is None:
            continue
        values = numpy_helper.to_array(zero_point)
        if values.dtype != np.int8 or np.any(values != 0):
            return (
                f"node {node.name or node.op_type} has {values.dtype} zero points "
                f"{'(non-zero) ' if np.any(values != 0) else ''}: quantised for ONNX Runtime's CPU kernels "
                "(uint8 asymmetric activations, int32 biases), which TensorRT refuses (it takes int8 with "
                "zero points 0)"
            )
    return None


def _embed(path: Path, data: CalibrationSet, card: ModelCard) -> np.ndarray:
    from vireid.backends import open_backend

    with open_backend(path, "cpu") as backend:
        return backend.infer(data.images, data.modality)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.sum(a * b, axis=1)
