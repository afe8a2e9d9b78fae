"""`PipelineConfig`: typed pipeline settings, and the checks a pipeline runs on its sources."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..embedder import Embedder
from ..errors import ConfigError, VireidError
from ..frozen import read_only
from ..gallery.types import IdentityScore
from .detect import detector_class
from .sources import VideoSource
from .track import ByteTracker


@dataclass(frozen=True)
class PipelineConfig:
    """Pipeline settings (typed; the CLI builds one from its arguments).

    Attributes:
        detector: registered detector name (`motion`, `yolo`, `boxes`), used when no detector object
            is given to the pipeline.
        detector_options: keyword arguments for that detector (e.g. `{"model": "yolo.onnx"}`).
        threshold: gallery match threshold for identities enrolled in the other modality; None: the model
            card's threshold for track means (`ModelCard.track_mean_threshold`: what the matcher
            compares, a track's mean embedding with an identity's centroid), else its single-image
            `match_threshold` (cards exported before vireid estimated the former).
        within_threshold: gallery match threshold for identities matched through the track's own
            modality, one value or per modality (`{"visible": 0.7}`); None: the card's
            `match_threshold_within`, and `threshold` for a modality the card has none for.
        cross_threshold: visible ↔ infrared track threshold; None: `threshold` when given, else the
            card's single-image `match_threshold` (pairs must also be mutual best matches).
        embed_every: frames between two embeddings of a track.
        min_quality: crops below this quality are not embedded.
        margin: hysteresis margin for changing a name or a partner.
        confirm: consecutive agreeing updates before a name or partner is set.
        cross_window: seconds of video (media time, not processing time) an ended track stays matchable
            across modalities.
        gallery_modality: `any` or `other` (search only the other modality's enrolled embeddings).
        identity_score: `max` or `centroid`: how an identity is scored from its enrolled embeddings.
        max_crops: most crops embedded per round (the rest wait for the next round).
        tracker: keyword arguments for `ByteTracker` (e.g. `{"track_buffer": 30}`).
    """

    detector: str = "motion"
    detector_options: Mapping[str, Any] = field(default_factory=dict)
    threshold: float | None = None
    within_threshold: float | Mapping[str, float] | None = None
    cross_threshold: float | None = None
    embed_every: int = 10
    min_quality: float = 0.1
    margin: float = 0.05
    confirm: int = 2
    cross_window: float = 120.0
    gallery_modality: str = "any"
    identity_score: str = "centroid"
    max_crops: int = 32
    tracker: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Checks every setting here, where it is given, with `ConfigError` naming it (not later, from
        the matcher or the tracker, in their terms); the option dicts are copied read-only."""
        problems = [
            *_counts(self, ("embed_every", "confirm", "max_crops")),
            *_ranges(self, {"min_quality": (0.0, 1.0), "margin": (0.0, 2.0), "cross_window": (0.0, 1e9)}),
            *_cosines(self),
        ]
        if self.gallery_modality not in ("any", "other"):
            problems.append(f"gallery_modality must be 'any' or 'other', got {self.gallery_modality!r}")

        def score_problems() -> list[str]:
            IdentityScore.parse(self.identity_score)  # raises for an unknown score
            return []

        checks: tuple[Callable[[], list[str]], ...] = (
            score_problems,
            lambda: _unknown_keys("tracker", self.tracker, ByteTracker),
            lambda: _unknown_keys("detector_options", self.detector_options, detector_class(self.detector)),
        )
        for check in checks:
            try:
                problems += check()
            except VireidError as exc:  # an unknown score or detector name: the message lists the options
                problems.append(str(exc))
        if problems:
            raise ConfigError("invalid pipeline configuration: " + "; ".join(problems))
        object.__setattr__(self, "detector_options", read_only(self.detector_options))
        object.__setattr__(self, "tracker", read_only(self.tracker))


def _is_number(value: Any, kind: type) -> bool:
    """A number of `kind` (numbers.Integral or Real: numpy scalars too), never a bool."""
    return isinstance(value, kind) and not isinstance(value, bool | np.bool_)


def _counts(config: PipelineConfig, names: tuple[str, ...]) -> list[str]:
    return [
        f"{name} must be a whole number of at least 1, got {getattr(config, name)!r}"
        for name in names
        if not (_is_number(getattr(config, name), numbers.Integral) and getattr(config, name) >= 1)
    ]


def _ranges(config: PipelineConfig, limits: Mapping[str, tuple[float, float]]) -> list[str]:
    return [
        f"{name} must be in [{low:g}, {high:g}], got {getattr(config, name)!r}"
        for name, (low, high) in limits.items()
        if not (_is_number(getattr(config, name), numbers.Real) and low <= getattr(config, name) <= high)
    ]


def _cosines(config: PipelineConfig) -> list[str]:
    within = config.within_threshold
    values = {"threshold": config.threshold, "cross_threshold": config.cross_threshold}
    if isinstance(within, Mapping):
        values.update({f"within_threshold[{key!r}]": value for key, value in within.items()})
    else:
        values["within_threshold"] = within
    return [
        f"{name} is a cosine similarity in [-1, 1], got {value!r}"
        for name, value in values.items()
        if value is not None and not (_is_number(value, numbers.Real) and -1.0 <= value <= 1.0)
    ]


def _unknown_keys(what: str, options: Mapping[str, Any], target: Any) -> list[str]:
    """Keyword arguments `target` (a class) does not take; a typo would otherwise be a bare TypeError."""
    parameters = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return []
    accepted = [name for name, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = sorted(set(options) - set(accepted))
    return [f"{what} has unknown keys {unknown}; {target.__name__} takes {accepted}"] if unknown else []


def check_cameras(sources: list[VideoSource]) -> None:
    if not sources:
        raise ConfigError("a pipeline needs at least one source, e.g. visible=cam.mp4")
    seen: dict[str, VideoSource] = {}
    for source in sources:
        if source.camera in seen:
            raise ConfigError(
                f"two sources use camera id {source.camera!r} ({seen[source.camera].display_uri!r} and "
                f"{source.display_uri!r}); name them, e.g. visible@gate=... and visible@hall=..."
            )
        seen[source.camera] = source


def check_modalities(sources: list[VideoSource], embedder: Embedder) -> None:
    accepted = set(embedder.card.modalities)
    for source in sources:
        if source.modality not in accepted:
            raise ConfigError(
                f"camera {source.camera} is {source.modality}, but model {embedder.card.model_name} takes "
                f"{', '.join(str(m) for m in embedder.card.modalities)} crops only"
            )
