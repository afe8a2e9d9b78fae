"""Two untrained matchers that a fair cross-modal dataset must defeat (numpy/OpenCV only).

- colour histogram: RGB histogram (8 x 8 x 8 bins) of the crop's central window (the crop resized to
  128x64, then rows 8..120 and columns 12..52, where the person is and the background mostly is not);
  features are the square roots of the normalised histogram, so their cosine is the Bhattacharyya
  coefficient.
- raw pixels: the crop resized to 32x16 grey, mean removed, L2-normalised (normalised cross-correlation).

Both return L2-normalised float32 rows, so `1 - a @ b.T` is their distance and
`embedder(name)` plugs into `vireid.training.data.protocols.run_protocol`.

`baseline_report(root)` scores both on a SYSU-style folder twice: across modalities (the SYSU-MM01
all-search single-shot protocol, infrared queries against a visible gallery) and within the visible
modality (indoor cameras 1, 2 against outdoor cameras 4, 5). A fair dataset makes the first low and the
second clearly higher: colour identifies people only where the camera sees colour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vireid.errors import ConfigError, DatasetError
from vireid.imageio import read_image
from vireid.metrics import RankMetrics, cosine_distance, evaluate_regdb
from vireid.modality import Modality

from ..protocols import METRIC_KEYS, Protocol, run_protocol
from ..sysu import IMAGE_SUFFIXES, SysuMM01

HIST_BINS = (8, 8, 8)
HIST_SIZE = (128, 64)  # H, W the crops are resized to before counting colours
HIST_WINDOW = (slice(8, 120), slice(12, 52))  # central window of the resized crop
PIXEL_SIZE = (32, 16)  # H, W of the raw-pixel vector
WITHIN_QUERY_CAMERAS = (1, 2)  # visible, indoor: every image of the test identities
WITHIN_GALLERY_CAMERAS = (4, 5)  # visible, outdoor: one image per identity and camera per trial

FeatureFn = Callable[[Sequence[np.ndarray]], np.ndarray]


def _normalise(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def colour_histogram_features(images: Sequence[np.ndarray]) -> np.ndarray:
    """Hellinger-mapped RGB histograms of RGB uint8 crops, `[N, 512]` float32, L2-normalised."""
    rows = []
    for image in images:
        window = cv2.resize(image, HIST_SIZE[::-1], interpolation=cv2.INTER_AREA)[HIST_WINDOW]
        hist = cv2.calcHist(
            [np.ascontiguousarray(window)], [0, 1, 2], None, list(HIST_BINS), [0, 256] * 3
        ).ravel()
        rows.append(np.sqrt(hist / max(hist.sum(), 1.0)))
    return _normalise(np.stack(rows)) if rows else np.zeros((0, int(np.prod(HIST_BINS))), np.float32)


def raw_pixel_features(images: Sequence[np.ndarray]) -> np.ndarray:
    """Zero-mean grey thumbnails (32x16) of RGB uint8 crops, `[N, 512]` float32, L2-normalised."""
    rows = []
    for image in images:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        small = cv2.resize(grey, PIXEL_SIZE[::-1], interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
        rows.append(small - small.mean())
    return _normalise(np.stack(rows)) if rows else np.zeros((0, PIXEL_SIZE[0] * PIXEL_SIZE[1]), np.float32)


MATCHERS: dict[str, FeatureFn] = {
    "colour-histogram": colour_histogram_features,
    "raw-pixel": raw_pixel_features,
}


def matcher(name: str) -> FeatureFn:
    """The feature function of a baseline matcher by name (`colour-histogram`, `raw-pixel`)."""
    if name not in MATCHERS:
        raise ConfigError(f"unknown baseline matcher {name!r}; expected one of: {', '.join(MATCHERS)}")
    return MATCHERS[name]


def embedder(name: str) -> Callable[[Sequence[Path], Modality], np.ndarray]:
    """An `embed(paths, modality)` function for `run_protocol` that reads images and applies a matcher."""
    features = matcher(name)

    def embed(paths: Sequence[Path], modality: Modality) -> np.ndarray:
        return features([read_image(p) for p in paths])

    return embed


@dataclass(frozen=True)
class BaselineScores:
    """Mean scores of one matcher (fractions, keys `R1`, `R5`, `R10`, `R20`, `mAP`, `mINP`).

    Attributes:
        matcher: matcher name (`colour-histogram`, `raw-pixel`).
        cross: SYSU-MM01 all-search single-shot, infrared query -> visible gallery.
        within: visible -> visible, cameras 1, 2 query -> cameras 4, 5 gallery.
    """

    matcher: str
    cross: dict[str, float]
    within: dict[str, float]

    def __post_init__(self) -> None:
        for name in ("cross", "within"):
            keys = set(getattr(self, name))
            if keys != set(METRIC_KEYS):
                raise ConfigError(
                    f"BaselineScores.{name} must have keys {list(METRIC_KEYS)}, got {sorted(keys)}"
                )


@dataclass(frozen=True)
class BaselineReport:
    """Untrained matchers on one SYSU-style folder, across and within modalities.

    Attributes:
        root: the dataset folder.
        trials: gallery draws averaged (seeds 0 .. trials-1) in both settings.
        scores: one entry per matcher, in `MATCHERS` order.
    """

    root: Path
    trials: int
    scores: tuple[BaselineScores, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "scores", tuple(self.scores))
        if not self.scores:
            raise ConfigError("BaselineReport needs at least one matcher's scores, got none")

    def __getitem__(self, matcher: str) -> BaselineScores:
        for row in self.scores:
            if row.matcher == matcher:
                return row
        raise KeyError(f"no scores for matcher {matcher!r}; have {[r.matcher for r in self.scores]}")

    def table(self) -> str:
        """Percentages, one row per matcher: cross-modal R1/mAP/mINP, then visible->visible R1/mAP."""
        head = f"{'matcher':<18}{'IR->VIS R1':>11}{'mAP':>8}{'mINP':>8}{'VIS->VIS R1':>13}{'mAP':>8}"
        lines = [f"baselines on {self.root} ({self.trials} trial(s), single-shot)", head]
        for row in self.scores:
            c, w = row.cross, row.within
            lines.append(
                f"{row.matcher:<18}{100 * c['R1']:11.2f}{100 * c['mAP']:8.2f}{100 * c['mINP']:8.2f}"
                f"{100 * w['R1']:13.2f}{100 * w['mAP']:8.2f}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-serialisable form (fractions)."""
        return {
            "root": str(self.root),
            "trials": self.trials,
            "scores": [{"matcher": r.matcher, "cross": r.cross, "within": r.within} for r in self.scores],
        }


def _camera_files(root: Path, cam: int, pid: int) -> list[Path]:
    folder = root / f"cam{cam}" / f"{pid:04d}"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def within_visible(
    embed: Callable[[Sequence[Path], Modality], np.ndarray], root: str | Path, trials: int = 10
) -> list[RankMetrics]:
    """Visible -> visible retrieval of the test identities, one `RankMetrics` per trial.

    Queries are every image of cameras 1, 2; the gallery of trial `t` holds one image per identity and
    camera of 4, 5, drawn with `numpy.random.RandomState(t)`. Plain CMC (`evaluate_regdb`) on cosine
    distance; queries whose identity has no gallery image are skipped.
    """
    data = SysuMM01(root)
    test = sorted(data.ids("test"))
    query = [
        (p, pid) for pid in test for cam in WITHIN_QUERY_CAMERAS for p in _camera_files(data.root, cam, pid)
    ]
    slots = [
        (fs, pid)
        for pid in test
        for cam in WITHIN_GALLERY_CAMERAS
        if (fs := _camera_files(data.root, cam, pid))
    ]
    if not query or not slots:
        raise DatasetError(data.root, "no visible test images under cam1/cam2 (query) or cam4/cam5 (gallery)")
    candidates = sorted({p for files, _ in slots for p in files})
    vectors = dict(zip(candidates, np.asarray(embed(candidates, Modality.VISIBLE)), strict=True))
    q_feats = np.asarray(embed([p for p, _ in query], Modality.VISIBLE))
    q_pids = np.array([pid for _, pid in query])
    g_pids = np.array([pid for _, pid in slots])
    results = []
    for trial in range(trials):
        rng = np.random.RandomState(trial)
        g_feats = np.stack([vectors[files[rng.randint(len(files))]] for files, _ in slots])
        results.append(evaluate_regdb(cosine_distance(q_feats, g_feats), q_pids, g_pids))
    return results


def baseline_report(root: str | Path, trials: int = 10) -> BaselineReport:
    """Score every baseline matcher on a SYSU-style folder across and within modalities.

    Args:
        root: a SYSU-MM01-layout folder (e.g. from `vireid synth sysu`).
        trials: gallery draws to average (10 in the standard protocol).

    Raises:
        ConfigError: `trials` < 1.
        DatasetError: the folder does not follow the SYSU-MM01 layout.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"trials must be an integer >= 1, got {trials!r}")
    scores = []
    for name in MATCHERS:
        embed = embedder(name)
        cross = run_protocol(embed, root, Protocol.SYSU_ALL, shots=1, trials=trials).mean()
        within = [m.as_dict() for m in within_visible(embed, root, trials)]
        mean_within = {key: float(np.mean([row[key] for row in within])) for key in METRIC_KEYS}
        scores.append(BaselineScores(name, cross, mean_within))
    return BaselineReport(Path(root), trials, tuple(scores))
