"""What a pipeline reports, as typed, frozen dataclasses with a JSON form.

Every event has `time` (wall clock of the frame it comes from, seconds since the epoch) and a `kind`
name used in JSON (`{"event": "identified", ...}`). `event_from_dict` reads the JSON form back.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import InputSpecError
from ..modality import Modality


def _box(value: Any) -> tuple[float, float, float, float]:
    box = tuple(round(float(v), 1) for v in value)
    if len(box) != 4:
        raise InputSpecError(f"box must have 4 values x1, y1, x2, y2, got {value!r}")
    return box


def _score(value: Any, what: str) -> float:
    score = float(value)
    if not math.isfinite(score) or abs(score) > 1.001:
        raise InputSpecError(f"{what} must be a cosine similarity in [-1, 1], got {value!r}")
    return round(score, 4)


@dataclass(frozen=True)
class Event:
    """Base of every pipeline event."""

    kind: ClassVar[str] = "event"
    time: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: `{"event": kind, ...fields}` with modalities as words and boxes as lists."""
        out: dict[str, Any] = {"event": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Modality):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


@dataclass(frozen=True)
class TrackEvent(Event):
    """An event about one track of one camera."""

    camera: str
    modality: Modality
    track_id: int
    frame: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "modality", Modality.parse(self.modality))
        object.__setattr__(self, "camera", str(self.camera))
        object.__setattr__(self, "track_id", int(self.track_id))


@dataclass(frozen=True)
class TrackStarted(TrackEvent):
    """A tracker confirmed a new person track. `box`: `x1, y1, x2, y2` on that frame."""

    kind: ClassVar[str] = "track_started"
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "box", _box(self.box))


@dataclass(frozen=True)
class Identified(TrackEvent):
    """A track was matched to an enrolled identity (or switched to another one: `previous`)."""

    kind: ClassVar[str] = "identified"
    name: str = ""
    score: float = 0.0
    previous: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.name:
            raise InputSpecError("Identified.name must be the enrolled identity's name, got ''")
        object.__setattr__(self, "score", _score(self.score, "Identified.score"))


@dataclass(frozen=True)
class CrossModalMatch(Event):
    """A visible track and an infrared track were found to show the same person."""

    kind: ClassVar[str] = "cross_modal_match"
    visible_camera: str = ""
    visible_track: int = 0
    infrared_camera: str = ""
    infrared_track: int = 0
    score: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "score", _score(self.score, "CrossModalMatch.score"))


@dataclass(frozen=True)
class TrackEnded(TrackEvent):
    """A track ended (the person left, was lost for too long, or the pipeline stopped).

    Attributes:
        name: the identity it held at the end, or None.
        score: that identity's last score (0 when none).
        frames: frames on which it was matched.
        duration: seconds of video from its first to its last frame (their `pts`: media time, so a file
            processed faster than real time reports the time it shows).
        embeddings: crops embedded for it.
    """

    kind: ClassVar[str] = "track_ended"
    name: str | None = None
    score: float = 0.0
    frames: int = 0
    duration: float = 0.0
    embeddings: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "score", _score(self.score, "TrackEnded.score"))


@dataclass(frozen=True)
class SourceChanged(Event):
    """A source changed state (`connecting`, `live`, `reconnecting`, `stalled`, `ended`, `failed`,
    `stopped`)."""

    kind: ClassVar[str] = "source"
    camera: str = ""
    modality: Modality = Modality.VISIBLE
    state: str = ""
    message: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "modality", Modality.parse(self.modality))


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (TrackStarted, Identified, CrossModalMatch, TrackEnded, SourceChanged)
}


def event_kinds(kinds: Iterable[str | type[Event]] | None) -> frozenset[str] | None:
    """Event kinds a sink keeps, given as names (`"identified"`) or classes (`Identified`); None: all.

    Raises:
        InputSpecError: an unknown kind (a typo would make the sink silently never fire); lists them.
    """
    if kinds is None:
        return None
    if isinstance(kinds, str):  # "identified" is one kind, not eleven letters
        kinds = [kinds]
    names = [k.kind if isinstance(k, type) and issubclass(k, Event) else k for k in kinds]
    unknown = [k for k in names if k not in EVENT_TYPES]
    if unknown:
        raise InputSpecError(f"unknown event kinds {unknown!r}; expected some of {sorted(EVENT_TYPES)}")
    return frozenset(names)


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Rebuild an event from its `to_dict()` form (e.g. a line of an events JSONL file).

    Raises:
        InputSpecError: unknown `event` kind or fields that do not fit it.
    """
    fields = dict(data)
    kind = fields.pop("event", None)
    if kind not in EVENT_TYPES:
        raise InputSpecError(f"unknown event kind {kind!r}; expected one of {sorted(EVENT_TYPES)}")
    cls = EVENT_TYPES[kind]
    if "box" in fields:
        fields["box"] = tuple(fields["box"])
    try:
        return cls(**fields)
    except TypeError as exc:
        raise InputSpecError(f"{kind} event: {exc}") from None
