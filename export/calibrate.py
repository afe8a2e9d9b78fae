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

The stream pipeline does not compare single images: it compares a track's mean embedding with an
enrolled identity's centroid, and means of impostors score higher than single impostor images. The
calibration therefore also simulates that comparison (means of a few infrared images of a validation
identity against centroids of a few visible images of every identity) and records, in the card's
`match_threshold_data["track_means"]`, the false-match rate the threshold gives there and the threshold
that would give the target; a warning says when the two differ much.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vireid.card import ModelCard, rounded_up
from vireid.embeddings import unit_model_output
from vireid.errors import ConfigError, DatasetError
from vireid.modality import Modality

from .artifact import timed
from .parity import EmbedFn

# Simulated pipeline comparisons: a track's mean of 5 embeddings (about 50 frames at the pipeline's
# default embed_every 10) against an identity enrolled from 5 crops, 20 random draws per identity.
TRACK_IMAGES, CENTROID_IMAGES, TRACK_DRAWS = 5, 5, 20
# How far above the target the track-mean false-match rate may be before export warns (when the
# comparisons are too few to estimate the threshold the pipeline would use instead).
TRACK_MEAN_TOLERANCE = 2.0


def _achieved(rate: float, impostor_pairs: int) -> str:
    """A measured false-match rate; 0 of P pairs means below 1/P (the resolution), not zero."""
    if rate == 0 and impostor_pairs:
        return f"0 of {impostor_pairs} impostor pairs (below 1/{impostor_pairs}, the pairs' resolution)"
    return f"{rate:.2e}"


@dataclass(frozen=True)
class WithinThreshold:
    """The threshold for pairs within one modality at the calibration's false-match rate."""

    threshold: float
    fmr_achieved: float
    tmr: float
    genuine_pairs: int
    impostor_pairs: int


@dataclass(frozen=True)
class TrackMeanCheck:
    """The cross-modal threshold tried on simulated pipeline comparisons: unit means of `track_images`
    infrared images of an identity against unit centroids of `centroid_images` visible images of each
    identity (`draws` random draws per identity).

    The draws reuse each identity's few calibration images, so the comparisons are far from
    independent: the figures are estimates, not measurements at the pair count's resolution.

    Attributes:
        identities: validation identities with images in both modalities.
        fmr_at_threshold: false-match rate of those comparisons at the calibrated threshold.
        tmr_at_threshold: true-match rate there.
        threshold_for_target: the lowest threshold that gives the target false-match rate on them.
        tmr_for_target: the true-match rate at that threshold.
    """

    track_images: int
    centroid_images: int
    draws: int
    identities: int
    fmr_at_threshold: float
    tmr_at_threshold: float
    threshold_for_target: float
    tmr_for_target: float
    genuine_pairs: int
    impostor_pairs: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    track_means: TrackMeanCheck | None = None

    def achieved_text(self) -> str:
        """The achieved false-match rate, with the pairs' resolution when none matched falsely."""
        return _achieved(self.fmr_achieved, self.impostor_pairs)

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
                **({"track_means": self.track_means.to_dict()} if self.track_means else {}),
            },
        )

    def warnings(self) -> list[str]:
        """What makes this threshold untrustworthy: too few impostor pairs to measure the target rate,
        no genuine pair above it (a threshold no true match reaches is no threshold at all), or a
        false-match rate well above the target where the stream pipeline uses it (track means against
        enrolment centroids) with too few comparisons to estimate the threshold it uses instead
        (`ModelCard.track_mean_threshold`)."""
        out = _pair_warnings("", self.fmr_target, self.fmr_achieved, self.tmr, self.impostor_pairs)
        for name, w in self.within.items():
            out += _pair_warnings(
                f"within {name}: ", self.fmr_target, w.fmr_achieved, w.tmr, w.impostor_pairs
            )
        track = self.track_means
        if (
            track is not None
            and track.impostor_pairs * self.fmr_target < 1  # the pipeline cannot use the track threshold
            and track.fmr_at_threshold > TRACK_MEAN_TOLERANCE * self.fmr_target
        ):
            out.append(_track_mean_warning(track, self.fmr_target))
        return out

    def __str__(self) -> str:
        lines = [
            f"threshold {self.threshold:.4f} for false-match rate {self.fmr_target:g}: achieved "
            f"{self.achieved_text()}, true-match rate {self.tmr:.4f} "
            f"({self.genuine_pairs} genuine / {self.impostor_pairs} impostor cross-modal pairs)"
        ]
        lines += [
            f"within {name}: threshold {w.threshold:.4f}, "
            f"achieved {_achieved(w.fmr_achieved, w.impostor_pairs)}, true-match rate {w.tmr:.4f} "
            f"({w.genuine_pairs} genuine / {w.impostor_pairs} impostor pairs)"
            for name, w in self.within.items()
        ]
        if self.track_means is not None:
            t = self.track_means
            lines.append(
                f"track means ({t.track_images} infrared images vs {t.centroid_images}-image visible "
                f"centroids): false-match rate {t.fmr_at_threshold:.2e} at this threshold, "
                f"{rounded_up(t.threshold_for_target):.4f} for {self.fmr_target:g}, "
                f"the stream pipeline's default threshold ({t.genuine_pairs} genuine / "
                f"{t.impostor_pairs} impostor comparisons)"
            )
        return "\n".join(lines)


def _pair_warnings(label: str, fmr: float, achieved: float, tmr: float, impostor_pairs: int) -> list[str]:
    """What makes one threshold (cross-modal, or within a modality) untrustworthy."""
    out = []
    if impostor_pairs * fmr < 1:
        out.append(
            f"{label}{impostor_pairs} impostor pairs cannot measure a false-match rate of {fmr:g} (the "
            f"smallest they resolve is {1 / impostor_pairs:.1e}): the threshold only clears every "
            "impostor seen. Calibrate on a folder with more validation identities, or raise --fmr to at "
            f"least {1 / impostor_pairs:.1e}"
        )
    if achieved > fmr:  # only when the threshold was capped at 1.0: impostors scoring as high as possible
        out.append(
            f"{label}the false-match rate is {achieved:.2e}, above the target {fmr:g}, even at the "
            "highest threshold (1.0): that many impostor pairs score 1.0, i.e. different identities "
            "gave identical embeddings (duplicated images under two identities, or a collapsed model)"
        )
    if not tmr > 0:  # 0, or NaN when there are no genuine pairs at all
        out.append(
            f"{label}no genuine pair reaches the threshold (true-match rate 0): the model does not "
            "separate these identities; check the model and the folder before deploying this threshold"
        )
    return out


def _track_mean_warning(track: TrackMeanCheck, fmr: float) -> str:
    """Too few comparisons to resolve the track-mean threshold: the pipeline falls back to the
    single-image one, which lets more impostors through there."""
    return (
        f"the stream pipeline compares track means with enrolment centroids, where this threshold gives "
        f"a false-match rate of about {track.fmr_at_threshold:.1e}, {track.fmr_at_threshold / fmr:.1f}x "
        f"the target (simulated with means of {track.track_images} infrared images against "
        f"{track.centroid_images}-image visible centroids of {track.identities} identities, an estimate), "
        f"and {track.impostor_pairs} comparisons are too few to say which threshold gives {fmr:g} there, "
        "so the pipeline will use this one: calibrate on a folder with more identities (--calibrate), or "
        "pass a higher `vireid run --threshold`"
    )


SCORE_MARGIN = 1e-6
"""Above float32's rounding of a cosine (about 6e-8 near 0.6) with room for summation order."""


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
    # above the highest impostor score that would exceed the allowance by more than float32 rounding:
    # the runtime scores in float32, where that impostor can come out a few ulps higher than here
    threshold = min(float(impostor[allowed]) + SCORE_MARGIN, 1.0)
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


def track_mean_scores(
    emb: np.ndarray,
    modality: np.ndarray,
    pids: np.ndarray,
    track_images: int = TRACK_IMAGES,
    centroid_images: int = CENTROID_IMAGES,
    draws: int = TRACK_DRAWS,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """`(genuine, impostor)` cosines of simulated pipeline comparisons: per draw, every identity with
    images in both modalities gets a track (unit mean of `track_images` random infrared images, fewer
    when it has fewer) and a centroid (the same of `centroid_images` visible images); every track is
    scored against every centroid."""
    rng = np.random.default_rng(seed)
    vectors = emb.astype(np.float64)
    rows = {
        (pid, which): np.flatnonzero((pids == pid) & (modality == which))
        for pid in np.unique(pids)
        for which in (0, 1)
    }
    both = [pid for pid in np.unique(pids) if len(rows[(pid, 0)]) and len(rows[(pid, 1)])]
    genuine, impostor = [], []
    for _ in range(draws):
        tracks = _unit_means(vectors, [rows[(pid, 1)] for pid in both], track_images, rng)
        centroids = _unit_means(vectors, [rows[(pid, 0)] for pid in both], centroid_images, rng)
        scores = tracks @ centroids.T
        same = np.eye(len(both), dtype=bool)
        genuine.append(scores[same])
        impostor.append(scores[~same])
    empty = np.zeros(0)
    return np.concatenate([empty, *genuine]), np.concatenate([empty, *impostor])


def _unit_means(
    vectors: np.ndarray, groups: list[np.ndarray], size: int, rng: np.random.Generator
) -> np.ndarray:
    """Per group, the unit-length mean of `size` of its rows drawn without replacement (all, if fewer)."""
    means = np.stack([vectors[rng.choice(g, min(size, len(g)), replace=False)].mean(0) for g in groups])
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


def check_track_means(
    emb: np.ndarray, modality: np.ndarray, pids: np.ndarray, threshold: float, fmr: float, seed: int = 0
) -> TrackMeanCheck | None:
    """The calibrated cross-modal `threshold` tried on simulated track-mean comparisons (None when fewer
    than two identities have images in both modalities)."""
    genuine, impostor = track_mean_scores(emb, modality, pids, seed=seed)
    if impostor.size == 0:
        return None
    for_target, _, tmr_for_target = threshold_at_fmr(genuine, impostor, fmr)
    return TrackMeanCheck(
        track_images=TRACK_IMAGES,
        centroid_images=CENTROID_IMAGES,
        draws=TRACK_DRAWS,
        identities=round(len(genuine) / TRACK_DRAWS),
        fmr_at_threshold=float(np.mean(impostor >= threshold)),
        tmr_at_threshold=float(np.mean(genuine >= threshold)) if genuine.size else float("nan"),
        threshold_for_target=for_target,
        tmr_for_target=tmr_for_target,
        genuine_pairs=len(genuine),
        impostor_pairs=len(impostor),
    )


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
    source: object = "the model",
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
        source: what `embed` runs (the artifact's path), named in the error for bad output.

    Raises:
        ArtifactError: the model returned zero or non-finite vectors. Its vectors are normalised like
            the runtime's (`Embedder`), so the threshold holds for what the runtime compares.
    """
    with timed(f"threshold calibration on {data_root} ({split} identities)"):
        images, modality, pids, description = validation_images(data_root, size, per_camera, split, seed)
        emb = unit_model_output(np.asarray(embed(images, modality)), source)
        genuine, impostor = cross_modal_scores(emb, modality, pids)
        threshold, achieved, tmr = threshold_at_fmr(genuine, impostor, fmr)
        within = calibrate_within(emb, modality, pids, fmr)
        track_means = check_track_means(emb, modality, pids, threshold, fmr, seed)
    return Calibration(
        threshold, fmr, achieved, tmr, len(genuine), len(impostor), description, within, track_means
    )
