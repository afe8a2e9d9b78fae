"""Parity as an API: `verify(reference, candidate, inputs)` → `ParityReport`, truthy within thresholds.

Both sides embed the same uint8 batch (by default a synthetic cross-modal gallery: every identity
rendered once by a visible and once by an infrared camera of the synthetic SYSU set, at the card's
input size). The report holds the per-embedding cosine similarity (min / mean), the max absolute error,
the agreement of top-1 / top-5 retrieval in both directions (infrared queries against the visible
gallery and back), the worst deviation from unit norm, and how much an embedding changes between an
image run alone and inside a batch of 32. Thresholds default by the candidate's precision.

A side is any of: an artifact path (`.onnx`, `.engine`, … opened with `vireid.open_backend`), a
checkpoint path (`.safetensors` / `.json`, run with PyTorch), an opened `Backend`, a PyTorch model, or a
callable `(images, modality) -> embeddings`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vireid.card import ModelCard, Precision
from vireid.errors import ArtifactError, InputSpecError

from .artifact import log

EmbedFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
CHECKPOINT_SUFFIXES = (".safetensors", ".json")
BATCH_PROBE = 32


@dataclass(frozen=True)
class Thresholds:
    """Pass criteria of a parity check."""

    min_cosine: float
    min_top1: float
    max_batch_delta: float
    max_norm_error: float = 1e-3
    tie: float | None = None  # scores this close count as a tie in top-1 agreement; None: 1 - min_cosine

    @property
    def tie_tolerance(self) -> float:
        """How far apart two reference scores may be and still swap places without counting as an error."""
        return 1.0 - self.min_cosine if self.tie is None else self.tie

    @classmethod
    def for_precision(cls, precision: Precision | str) -> Thresholds:
        """Defaults: fp32 cos ≥ 0.99999, fp16 ≥ 0.999, int8 ≥ 0.95; top-1 agreement ≥ 0.99 (int8 0.90),
        ties within 1e-5, 1e-2 and 0.03."""
        return _DEFAULTS[Precision.parse(precision)]


_DEFAULTS = {
    Precision.FP32: Thresholds(min_cosine=0.99999, min_top1=0.99, max_batch_delta=1e-5, tie=1e-5),
    # FP16 rounding moves the trained demo model's scores by up to 3e-3 (cosines stay >= 0.9999), so
    # gallery items scored within 1e-2 of each other may swap places without anything being wrong.
    Precision.FP16: Thresholds(min_cosine=0.999, min_top1=0.99, max_batch_delta=1e-3, tie=1e-2),
    # INT8: set from the trained demo models, whose INT8 exports stay within 1 point of FP32 in R1 and
    # mAP in both directions while their parity galleries show min cosine 0.977 (2026-11-29 model) and
    # 0.959 (2026-11-30 second-session models); visible-only calibrations of those fall to 0.45-0.59.
    # Protocol accuracy (`vireid evaluate --reference`) is the check that matters.
    Precision.INT8: Thresholds(min_cosine=0.95, min_top1=0.90, max_batch_delta=1e-2, tie=0.03),
}


@dataclass(frozen=True)
class ParityReport:
    """Agreement of a candidate's embeddings with a reference's; `bool(report)` is the verdict."""

    reference: str
    candidate: str
    count: int
    min_cosine: float
    mean_cosine: float
    max_abs_error: float
    top1_agreement: float
    top5_agreement: float
    queries: int
    max_norm_error: float
    batch_delta: float | None
    thresholds: Thresholds
    failures: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return not self.failures

    @property
    def passed(self) -> bool:
        """True when every threshold is met."""
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (thresholds nested, `passed` added)."""
        return {**dataclasses.asdict(self), "failures": list(self.failures), "passed": self.passed}

    def __str__(self) -> str:
        t = self.thresholds
        batch = "not measured" if self.batch_delta is None else f"{self.batch_delta:.2e}"
        rows = [
            f"parity: {self.candidate}  vs  {self.reference}  ({self.count} images)",
            f"  cosine min / mean      {self.min_cosine:.8f} / {self.mean_cosine:.8f}   "
            f"(min >= {t.min_cosine})",
            f"  max abs error          {self.max_abs_error:.3e}",
            f"  top-1 / top-5 agree    {self.top1_agreement:.4f} / {self.top5_agreement:.4f}   "
            f"({self.queries} cross-modal queries; top-1 >= {t.min_top1}, "
            f"ties within {t.tie_tolerance:.0e})",
            f"  unit-norm error        {self.max_norm_error:.2e}   (<= {t.max_norm_error})",
            f"  alone vs batch of {BATCH_PROBE}   {batch}   (<= {t.max_batch_delta})",
            "  result                 " + ("PASS" if self.passed else "FAIL: " + "; ".join(self.failures)),
        ]
        return "\n".join(rows)


# ----- sides ----------------------------------------------------------------------------------------
@dataclass
class Side:
    """One side of a comparison: how to embed, what it is, and how to release it."""

    label: str
    embed: EmbedFn
    card: ModelCard | None = None
    input_size: tuple[int, int] | None = None
    close: Callable[[], None] = lambda: None


def _torch_side(model: Any, label: str) -> Side:
    import torch

    model.eval()

    def embed(images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), 64):
                batch = torch.from_numpy(np.ascontiguousarray(images[start : start + 64]))
                mods = torch.from_numpy(np.ascontiguousarray(modality[start : start + 64], dtype=np.int32))
                out.append(model(batch, mods).float().numpy())
        return np.concatenate(out)

    size = tuple(int(v) for v in model.config.input_size)
    return Side(label, embed, input_size=size)  # type: ignore[arg-type]


def open_side(obj: Any, device: str = "auto") -> Side:
    """Wrap a path, backend, PyTorch model or callable as a `Side`."""
    from vireid.backends.base import Backend

    if isinstance(obj, Side):
        return obj
    if isinstance(obj, (str, Path)):
        path = Path(obj)
        if path.suffix.lower() in CHECKPOINT_SUFFIXES:
            from .onnx_export import load_for_export

            return _torch_side(load_for_export(path)[0], f"{path.name} (PyTorch)")
        from vireid.backends import open_backend

        backend = open_backend(path, device=device)
        side = open_side(backend)
        side.label, side.close = f"{path.name} ({backend.device})", backend.close
        return side
    if isinstance(obj, Backend):
        return Side(f"{obj.path.name} ({obj.device})", obj.infer, obj.card, obj.card.input_size)
    if hasattr(obj, "config") and hasattr(obj, "embedding_dim") and hasattr(obj, "eval"):
        return _torch_side(obj, f"{type(obj).__name__} (PyTorch)")
    if callable(obj):
        return Side(getattr(obj, "__name__", type(obj).__name__), obj)
    raise InputSpecError(
        f"cannot compare {type(obj).__name__}; pass an artifact or checkpoint path, a Backend, a "
        "PyTorch model or a callable (images, modality) -> embeddings"
    )


# ----- inputs ---------------------------------------------------------------------------------------
def synthetic_gallery(
    size: tuple[int, int], identities: int = 32, seed: int = 0, difficulty: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(images uint8 [2K, H, W, 3], modality int32 [2K], pids [2K])`: K identities, each seen once by
    a visible camera (SYSU cam 1) and once by an infrared one (cam 3), rendered at `size`."""
    from vireid.preprocess import preprocess_crops
    from vireid.training.data.synth.cameras import SYSU_CAMERAS
    from vireid.training.data.synth.person import sample_identity
    from vireid.training.data.synth.render import render_crop

    crops, modality, pids = [], [], []
    for pid in range(1, identities + 1):
        person = sample_identity(seed, pid)
        for code, cam in ((0, 1), (1, 3)):
            rng = np.random.default_rng([seed, pid, cam])
            camera = SYSU_CAMERAS[cam].at(difficulty)
            crops.append(render_crop(seed, person, camera, difficulty, rng, size=(size[0], size[1])))
            modality.append(code)
            pids.append(pid)
    images = preprocess_crops(crops, size)
    return images, np.asarray(modality, np.int32), np.asarray(pids, np.int64)


def _check_inputs(inputs: Any, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    try:
        images, modality = inputs
    except (TypeError, ValueError):
        raise InputSpecError("inputs must be a pair (images uint8 [N,H,W,3], modality int32 [N])") from None
    images, modality = np.asarray(images), np.asarray(modality)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (*size, 3):
        raise InputSpecError(
            f"inputs images must be uint8 [N, {size[0]}, {size[1]}, 3], got {images.shape} {images.dtype}"
        )
    if modality.shape != (len(images),) or not np.issubdtype(modality.dtype, np.integer):
        raise InputSpecError(f"inputs modality must be integer [{len(images)}], got {modality.shape}")
    return images, modality.astype(np.int32)


def _input_size(reference: Side, candidate: Side, inputs: Any) -> tuple[int, int]:
    sizes = {s.input_size for s in (reference, candidate) if s.input_size is not None}
    if len(sizes) > 1:
        raise ArtifactError(
            f"{reference.label} takes {reference.input_size} images but {candidate.label} takes "
            f"{candidate.input_size}; they are not the same model"
        )
    if sizes:
        return sizes.pop()
    shape: tuple[int, ...] = (
        getattr(inputs[0], "shape", ()) if isinstance(inputs, (tuple, list)) and inputs else ()
    )
    if len(shape) != 4:
        raise InputSpecError("neither side states its input size; pass inputs=(images, modality)")
    return int(shape[1]), int(shape[2])


# ----- metrics --------------------------------------------------------------------------------------
def retrieval_agreement(
    reference: np.ndarray, candidate: np.ndarray, modality: np.ndarray, k: int = 5, tie: float = 0.0
) -> tuple[float, float, int]:
    """Top-1 agreement and mean top-k overlap of cross-modal retrieval; returns `(top1, topk, queries)`.

    Infrared rows query the visible rows and vice versa; with one modality only, every row queries all
    the others. Top-1 is tie-aware: the candidate's first pick agrees when the reference scores it within
    `tie` of the reference's own first pick (near-ties swap places under the precision's rounding without
    any retrieval being wrong; `verify` passes the precision's `Thresholds.tie_tolerance`).
    """
    infrared, visible = modality != 0, modality == 0
    if infrared.any() and visible.any():
        directions = [(infrared, visible), (visible, infrared)]
    else:
        everything = np.ones(len(modality), bool)
        directions = [(everything, everything)]
    top1: list[bool] = []
    topk: list[float] = []
    for queries, gallery in directions:
        ranks, all_scores = [], []
        for emb in (reference, candidate):
            scores = emb[queries].astype(np.float64) @ emb[gallery].astype(np.float64).T
            if queries is gallery:
                np.fill_diagonal(scores, -np.inf)
            all_scores.append(scores)
            ranks.append(np.argsort(-scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])])
        ref_rank, cand_rank = ranks
        ref_scores = all_scores[0]
        rows = np.arange(len(ref_rank))
        best, picked = ref_scores[rows, ref_rank[:, 0]], ref_scores[rows, cand_rank[:, 0]]
        top1.extend(picked >= best - tie)
        topk.extend(len(set(a) & set(b)) / len(a) for a, b in zip(ref_rank, cand_rank, strict=True))
    return float(np.mean(top1)), float(np.mean(topk)), len(top1)


def batch_delta(embed: EmbedFn, images: np.ndarray, modality: np.ndarray, batched: np.ndarray) -> float:
    """Max |embedding alone − embedding inside the batch| over a few probes (both modalities)."""
    n = len(images)
    probes = sorted({0, 1, n // 2, n - 1} & set(range(n)))
    alone = np.concatenate([embed(images[i : i + 1], modality[i : i + 1]) for i in probes])
    return float(np.max(np.abs(alone - batched[probes])))


def _finite_rows(values: np.ndarray) -> np.ndarray:
    """float64 copy with every row holding NaN/inf set to zeros."""
    values = values.astype(np.float64)
    values[~np.isfinite(values).all(axis=1)] = 0.0
    return values


def _compare(ref: np.ndarray, cand: np.ndarray, label: str) -> tuple[np.ndarray, float, float, list[str]]:
    if ref.shape != cand.shape:
        raise ArtifactError(f"embeddings differ in shape: reference {ref.shape}, {label} {cand.shape}")
    failures = []
    for side, values in (("candidate", cand), ("reference", ref)):  # an FP16 file is often the reference
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            failures.append(f"{int(bad.sum())} {side} rows are not finite (FP16 overflow?)")
    ref64, cand64 = _finite_rows(ref), _finite_rows(cand)  # a row with NaN/inf scores cosine 0
    norms = np.linalg.norm(cand64, axis=1)
    denom = np.maximum(np.linalg.norm(ref64, axis=1) * norms, 1e-12)
    cosine = np.sum(ref64 * cand64, axis=1) / denom
    return cosine, float(np.max(np.abs(ref64 - cand64))), float(np.max(np.abs(norms - 1.0))), failures


def verify(
    reference: Any,
    candidate: Any,
    inputs: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    thresholds: Thresholds | None = None,
    device: str = "auto",
    identities: int = 32,
    seed: int = 0,
    check_batch: bool = True,
) -> ParityReport:
    """Compare a candidate's embeddings with a reference's on the same images.

    Args:
        reference: the trusted side (e.g. the checkpoint, or the FP32 ONNX when checking FP16).
        candidate: the side under test.
        inputs: `(images uint8 [N,H,W,3], modality [N])`; default: `synthetic_gallery` of
            `identities` people in both modalities (2 × identities images).
        thresholds: pass criteria; default `Thresholds.for_precision(candidate's card precision)`.
        device: device for artifact paths (`auto`, `cpu`, `cuda`, `tensorrt`).
        check_batch: also measure alone-vs-batch-of-32 on the candidate.

    Returns:
        A `ParityReport`; `bool(report)` is True when every threshold is met.
    """
    ref_side = open_side(reference, device)
    try:
        cand_side = open_side(candidate, device)
    except BaseException:  # the reference holds a backend (GPU memory for an engine): release it
        ref_side.close()
        raise
    try:
        size = _input_size(ref_side, cand_side, inputs)
        if inputs is None:
            images, modality, _ = synthetic_gallery(size, identities, seed)
        else:
            images, modality = _check_inputs(inputs, size)
        limits = thresholds or Thresholds.for_precision(lower_precision(ref_side.card, cand_side.card))
        ref = np.asarray(ref_side.embed(images, modality))
        cand = np.asarray(cand_side.embed(images, modality))
        delta = None
        if check_batch:
            probe = slice(0, min(len(images), BATCH_PROBE))
            batched = (
                cand[probe] if len(images) <= BATCH_PROBE else cand_side.embed(images[probe], modality[probe])
            )
            delta = batch_delta(cand_side.embed, images[probe], modality[probe], batched)
    finally:
        ref_side.close()
        cand_side.close()
    return _report(ref_side.label, cand_side.label, ref, cand, modality, delta, limits)


_RANK = {Precision.FP32: 0, Precision.FP16: 1, Precision.INT8: 2}


def lower_precision(*cards: ModelCard | None) -> Precision:
    """The lowest precision among the sides (a checkpoint, without a card, is FP32): the parity
    thresholds are those of the pair, whichever side is called the reference."""
    precisions = [card.precision for card in cards if card is not None] or [Precision.FP32]
    return max(precisions, key=_RANK.__getitem__)


def _report(
    ref_label: str,
    cand_label: str,
    ref: np.ndarray,
    cand: np.ndarray,
    modality: np.ndarray,
    delta: float | None,
    limits: Thresholds,
) -> ParityReport:
    cosine, max_abs, norm_error, failures = _compare(ref, cand, cand_label)
    top1, top5, queries = retrieval_agreement(ref, _finite_rows(cand), modality, tie=limits.tie_tolerance)
    if not cosine.min() >= limits.min_cosine:  # written so that NaN fails
        failures.append(f"min cosine {cosine.min():.8f} < {limits.min_cosine}")
    if not top1 >= limits.min_top1:
        failures.append(f"top-1 agreement {top1:.4f} < {limits.min_top1}")
    if not norm_error <= limits.max_norm_error:
        failures.append(f"embeddings are not unit length (max error {norm_error:.2e})")
    if delta is not None and not delta <= limits.max_batch_delta:  # NaN fails too
        failures.append(f"alone vs batch differs by {delta:.2e} > {limits.max_batch_delta}")
    report = ParityReport(
        reference=ref_label,
        candidate=cand_label,
        count=len(ref),
        min_cosine=float(cosine.min()),
        mean_cosine=float(cosine.mean()),
        max_abs_error=max_abs,
        top1_agreement=top1,
        top5_agreement=top5,
        queries=queries,
        max_norm_error=norm_error,
        batch_delta=delta,
        thresholds=limits,
        failures=tuple(failures),
    )
    log.debug("parity %s vs %s: %s", cand_label, ref_label, "pass" if report else "FAIL")
    return report
