"""Match-threshold calibration at export: the cosine threshold for a stated false-match rate.

Validation pairs are cross-modal: every visible image of the validation identities of a SYSU-MM01-layout
folder (`exp/val_id.txt`, real or from `vireid synth sysu`) against every infrared one. Same identity =
genuine pair, different identity = impostor pair. The threshold is the lowest cosine at which at most
`fmr × impostors` impostor pairs still score at or above it; the card records the target, the rate
achieved on these pairs, the true-match rate there and what the pairs were. With P impostor pairs the
smallest measurable rate is 1/P: the card's pair count says how far to trust a tiny target.

Pairs within one modality (visible × visible, infrared × infrared, each unordered pair once) score
higher than cross-modal ones, so the same false-match rate needs a higher threshold there: each
modality gets its own, written to the card's `match_threshold_within` and used for same-modality
matches (a visible camera searched against a visible gallery).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vireid.card import ModelCard
from vireid.errors import ConfigError, DatasetError
from vireid.modality import Modality

from .artifact import timed
from .parity import EmbedFn


@dataclass(frozen=True)
class WithinThreshold:
    """The threshold for pairs within one modality at the calibration's false-match rate."""

    threshold: float
    fmr_achieved: float
    tmr: float
    genuine_pairs: int
    impostor_pairs: int


@dataclass(frozen=True)
class Calibration:
    """A calibrated cross-modal threshold (and per-modality ones) and how they were obtained."""

    threshold: float
    fmr_target: float
    fmr_achieved: float
    tmr: float
    genuine_pairs: int
    impostor_pairs: int
    data: dict[str, Any] = field(default_factory=dict)
    within: dict[str, WithinThreshold] = field(default_factory=dict)

    def apply(self, card: ModelCard) -> ModelCard:
        """`card` with the threshold, target and achieved false-match rates and the pair description."""
        within = {
            name: {
                "fmr_achieved": w.fmr_achieved,
                "true_match_rate": w.tmr,
                "genuine_pairs": w.genuine_pairs,
                "impostor_pairs": w.impostor_pairs,
            }
            for name, w in self.within.items()
        }
        return card.replace(
            match_threshold=self.threshold,
            match_threshold_fmr=self.fmr_target,
            match_threshold_fmr_achieved=self.fmr_achieved,
            match_threshold_within={name: w.threshold for name, w in self.within.items()} or None,
            match_threshold_data={
                **self.data,
                "genuine_pairs": self.genuine_pairs,
                "impostor_pairs": self.impostor_pairs,
                "true_match_rate": self.tmr,
                "precision": card.precision.value,
                **({"within": within} if within else {}),
            },
        )

    def warnings(self) -> list[str]:
        """What makes this threshold untrustworthy: too few impostor pairs to measure the target rate,
        or no genuine pair above it (a threshold no true match reaches is no threshold at all)."""
        out = []
        if self.impostor_pairs * self.fmr_target < 1:
            out.append(
                f"{self.impostor_pairs} impostor pairs cannot measure a false-match rate of "
                f"{self.fmr_target:g} (the smallest they resolve is {1 / self.impostor_pairs:.1e}): the "
                "threshold only clears every impostor seen. Calibrate on a folder with more validation "
                f"identities, or raise --fmr to at least {1 / self.impostor_pairs:.1e}"
            )
        if not self.tmr > 0:  # 0, or NaN when there are no genuine pairs at all
            out.append(
                "no genuine pair reaches the threshold (true-match rate 0): the model does not separate "
                "these identities; check the model and the folder before deploying this threshold"
            )
        return out

    def __str__(self) -> str:
        lines = [
            f"threshold {self.threshold:.4f} for false-match rate {self.fmr_target:g}: achieved "
            f"{self.fmr_achieved:.2e}, true-match rate {self.tmr:.4f} "
            f"({self.genuine_pairs} genuine / {self.impostor_pairs} impostor cross-modal pairs)"
        ]
        lines += [
            f"within {name}: threshold {w.threshold:.4f}, achieved {w.fmr_achieved:.2e}, true-match rate "
            f"{w.tmr:.4f} ({w.genuine_pairs} genuine / {w.impostor_pairs} impostor pairs)"
            for name, w in self.within.items()
        ]
        return "\n".join(lines)


def threshold_at_fmr(genuine: np.ndarray, impostor: np.ndarray, fmr: float) -> tuple[float, float, float]:
    """`(threshold, achieved FMR, TMR)`: the lowest threshold with FMR(score ≥ t) ≤ `fmr`.

    Raises:
        ConfigError: `fmr` is not in (0, 1) or there are no impostor pairs.
    """
    if not 0.0 < fmr < 1.0:
        raise ConfigError(f"false-match rate must be in (0, 1), got {fmr!r}")
    impostor = np.sort(np.asarray(impostor, np.float64))[::-1]
    if impostor.size == 0:
        raise ConfigError("no impostor pairs: calibration needs at least two validation identities")
    allowed = math.floor(fmr * impostor.size + 1e-9)  # false matches tolerated (< size since fmr < 1)
    # just above the highest impostor score that would exceed the allowance; a cosine is at most 1
    threshold = min(float(np.nextafter(impostor[allowed], np.inf)), 1.0)
    achieved = float(np.mean(impostor >= threshold))
    tmr = float(np.mean(np.asarray(genuine) >= threshold)) if len(genuine) else float("nan")
    return threshold, achieved, tmr


def validation_images(
    root: str | Path, size: tuple[int, int], per_camera: int | None = 4, split: str = "val", seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """`(images, modality, pids, description)` of a split's identities, at most `per_camera` images
    per identity and camera (seeded choice), resized exactly as the runtime resizes crops."""
    from vireid.training.data.sysu import SysuMM01
    from vireid.training.images import load_resized

    if split not in ("val", "train"):
        raise ConfigError(
            f"calibrate on the val (or train) identities, not {split!r}: test is for evaluation"
        )
    dataset = SysuMM01(root)
    everything = dataset.train_set()  # train + val identities, every camera
    chosen = _subsample(everything.select(np.isin(everything.pids, dataset.ids(split))), per_camera, seed)
    if len(chosen) == 0 or len(set(chosen.modalities.tolist())) < 2:
        raise DatasetError(root, f"the {split} identities need images in both modalities to calibrate")
    images = np.stack([load_resized(p, size) for p in chosen.paths])
    description = {
        "dataset": "sysu",
        "root": str(root),
        "split": split,
        "identities": len(set(chosen.pids.tolist())),
        "images": len(chosen),
        "per_camera": per_camera,
    }
    return images, chosen.modalities.astype(np.int32), chosen.pids, description


def _subsample(images: Any, per_camera: int | None, seed: int) -> Any:
    if per_camera is None:
        return images
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for pid, cam in sorted(set(zip(images.pids.tolist(), images.camids.tolist(), strict=True))):
        rows = np.flatnonzero((images.pids == pid) & (images.camids == cam))
        keep.extend(sorted(rng.choice(rows, min(per_camera, len(rows)), replace=False).tolist()))
    return images.select(np.asarray(keep, np.int64))


def cross_modal_scores(
    emb: np.ndarray, modality: np.ndarray, pids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of every visible × infrared pair, split into `(genuine, impostor)`."""
    visible, infrared = modality == 0, modality != 0
    scores = emb[visible].astype(np.float64) @ emb[infrared].astype(np.float64).T
    same = pids[visible][:, None] == pids[infrared][None, :]
    return scores[same], scores[~same]


def within_modality_scores(
    emb: np.ndarray, modality: np.ndarray, pids: np.ndarray, which: int, block: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of every unordered pair of `which`-modality images, split into `(genuine, impostor)`.

    Genuine pairs include two images of one camera, so the true-match rate they give is optimistic for
    matching across cameras; the threshold depends on the impostor pairs only. Rows are scored in
    blocks, so memory grows with the pairs kept, not with a full N × N matrix.
    """
    rows = np.flatnonzero(modality == which)
    vectors, labels = emb[rows].astype(np.float64), pids[rows]
    genuine, impostor = [], []
    for start in range(0, len(rows), block):
        scores = vectors[start : start + block] @ vectors.T
        later = np.arange(len(rows))[None, :] > np.arange(start, start + len(scores))[:, None]
        same = labels[start : start + block, None] == labels[None, :]
        genuine.append(scores[later & same])
        impostor.append(scores[later & ~same])
    empty = np.zeros(0)
    return np.concatenate([empty, *genuine]), np.concatenate([empty, *impostor])


def calibrate_within(
    emb: np.ndarray, modality: np.ndarray, pids: np.ndarray, fmr: float
) -> dict[str, WithinThreshold]:
    """Per-modality thresholds at `fmr`; a modality with fewer than two identities is left out."""
    out: dict[str, WithinThreshold] = {}
    for which in Modality:
        genuine, impostor = within_modality_scores(emb, modality, pids, int(which))
        if impostor.size:
            threshold, achieved, tmr = threshold_at_fmr(genuine, impostor, fmr)
            out[str(which)] = WithinThreshold(threshold, achieved, tmr, len(genuine), len(impostor))
    return out


def calibrate_threshold(
    embed: EmbedFn,
    data_root: str | Path,
    size: tuple[int, int],
    fmr: float = 1e-3,
    *,
    split: str = "val",
    per_camera: int | None = 4,
    seed: int = 0,
) -> Calibration:
    """Calibrate the match threshold of a model (given as its embed function) on validation pairs.

    Args:
        embed: `(images uint8 [N,H,W,3], modality int32 [N]) -> [N, D]`, e.g. `backend.infer` of the
            artifact being exported (calibrate every precision on itself).
        data_root: SYSU-MM01-layout folder with `exp/val_id.txt`.
        size: the model's input `(H, W)`.
        fmr: target false-match rate.
        split: identity split to use (`val`, or `train` for data without a validation split).
        per_camera: cap on images per identity and camera (None = all); bounds the cost.
    """
    with timed(f"threshold calibration on {data_root} ({split} identities)"):
        images, modality, pids, description = validation_images(data_root, size, per_camera, split, seed)
        emb = np.asarray(embed(images, modality))
        genuine, impostor = cross_modal_scores(emb, modality, pids)
        threshold, achieved, tmr = threshold_at_fmr(genuine, impostor, fmr)
        within = calibrate_within(emb, modality, pids, fmr)
    return Calibration(threshold, fmr, achieved, tmr, len(genuine), len(impostor), description, within)
