"""`PipelineConfig`: typed pipeline settings, and the checks a pipeline runs on its sources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..embedder import Embedder
from ..errors import ConfigError
from .sources import VideoSource


@dataclass(frozen=True)
class PipelineConfig:
    """Pipeline settings (typed; the CLI builds one from its arguments).

    Attributes:
        detector: registered detector name (`motion`, `yolo`, `boxes`), used when no detector object
            is given to the pipeline.
        detector_options: keyword arguments for that detector (e.g. `{"model": "yolo.onnx"}`).
        threshold: gallery match threshold for identities enrolled in the other modality; None: the model
            card's `match_threshold`.
        within_threshold: gallery match threshold for identities matched through the track's own
            modality, one value or per modality (`{"visible": 0.7}`); None: the card's
            `match_threshold_within`, and `threshold` for a modality the card has none for.
        cross_threshold: visible ↔ infrared track threshold; None: `threshold`.
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
        if self.max_crops < 1:
            raise ConfigError(f"max_crops must be at least 1, got {self.max_crops}")


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
