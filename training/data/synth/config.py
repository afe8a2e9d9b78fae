"""Settings of the synthetic generator: every default lives here, and nowhere else.

Each dataset kind has a frozen dataclass validated in `__post_init__`; a bad value raises `ConfigError`
naming the option. `to_meta()` is what `meta.json` records, so a re-run with equal settings can reuse a
folder. The number of worker processes is not a setting: it never changes the output.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from vireid.errors import ConfigError

GENERATOR_VERSION = "2"
"""Bumped whenever the same settings would render different bytes (2: hats, bags and patterns show in
infrared)."""

MAX_DIFFICULTY = 3.0


def _positive(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _seed(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {value!r}")


def _difficulty(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= MAX_DIFFICULTY:
        raise ConfigError(
            f"difficulty must be a number in [0, {MAX_DIFFICULTY}] (0 easy, 1 default), got {value!r}"
        )


class _Meta:
    """Shared `to_meta` for the config dataclasses."""

    kind: str = ""

    def to_meta(self) -> dict[str, Any]:
        """Everything that determines the output, plus the generator version, as JSON-ready values."""
        fields = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {"generator": "vireid.synth", "version": GENERATOR_VERSION, "kind": self.kind, **fields}


@dataclass(frozen=True)
class SysuConfig(_Meta):
    """A SYSU-MM01-style dataset: six cameras, `exp/` identity splits.

    Attributes:
        ids: identities, numbered 1..ids.
        seed: master seed; every image is seeded by (seed, pid, camera, index).
        images_per_camera: images of an identity in each camera it appears in.
        test_ids: test identities; `None` = 96 when ids >= 240, else about a third of them.
        val_ids: validation identities; `None` = about a tenth of the non-test identities (at least 1).
        difficulty: nuisance scale, 0 (easy) .. 3; 1 is the default.
        camera_gap: probability that an identity misses a camera (each identity keeps at least one
            visible and one infrared camera).
    """

    kind = "sysu"
    ids: int = 300
    seed: int = 0
    images_per_camera: int = 8
    test_ids: int | None = None
    val_ids: int | None = None
    difficulty: float = 1.0
    camera_gap: float = 0.1

    def __post_init__(self) -> None:
        _positive("ids", self.ids, minimum=3)
        _seed(self.seed)
        _positive("images_per_camera", self.images_per_camera)
        _difficulty(self.difficulty)
        if not 0.0 <= self.camera_gap <= 0.5:
            raise ConfigError(f"camera_gap must be in [0, 0.5], got {self.camera_gap!r}")
        if self.test_ids is not None:
            _positive("test_ids", self.test_ids)
        if self.val_ids is not None:
            _positive("val_ids", self.val_ids)
        test, val = self.split_sizes()
        if test + val >= self.ids:
            raise ConfigError(
                f"test_ids ({test}) + val_ids ({val}) must leave at least one training identity "
                f"out of ids={self.ids}; lower --test-ids or raise --ids"
            )
        object.__setattr__(self, "test_ids", test)
        object.__setattr__(self, "val_ids", val)
        object.__setattr__(self, "difficulty", float(self.difficulty))

    def split_sizes(self) -> tuple[int, int]:
        """(test, val) identity counts after applying the defaults."""
        test = self.test_ids if self.test_ids is not None else (96 if self.ids >= 240 else self.ids // 3)
        test = max(1, test)
        val = self.val_ids if self.val_ids is not None else max(1, round(0.1 * (self.ids - test)))
        return test, val


@dataclass(frozen=True)
class RegDBConfig(_Meta):
    """A RegDB-style dataset: one visible and one thermal camera, 10 train/test splits.

    Attributes:
        ids: identities, numbered 1..ids (the real RegDB has 412).
        seed: master seed.
        images_per_modality: images per identity and modality (10 in the real RegDB).
        difficulty: nuisance scale, 0 (easy) .. 3.
    """

    kind = "regdb"
    ids: int = 412
    seed: int = 0
    images_per_modality: int = 10
    difficulty: float = 1.0

    def __post_init__(self) -> None:
        _positive("ids", self.ids, minimum=2)
        _seed(self.seed)
        _positive("images_per_modality", self.images_per_modality)
        _difficulty(self.difficulty)
        object.__setattr__(self, "difficulty", float(self.difficulty))


@dataclass(frozen=True)
class SceneConfig(_Meta):
    """Two fixed cameras (visible, infrared) filming the same people walking by at different times.

    Attributes:
        seed: master seed.
        seconds: video length.
        people: identities walking through both views.
        fps: frames per second.
        width: frame width in pixels (even, 160..3840).
        height: frame height in pixels (even, 120..2160).
        difficulty: nuisance scale, 0 (easy) .. 3.
        thermal16: also write the infrared camera as 16-bit radiometric PNG frames
            (`infrared16/%06d.png`, centi-Kelvin, 15..40 °C), as many thermal cameras deliver them.
    """

    kind = "scene"
    seed: int = 0
    seconds: float = 60.0
    people: int = 8
    fps: int = 15
    width: int = 640
    height: int = 480
    difficulty: float = 1.0
    thermal16: bool = False

    def to_meta(self) -> dict[str, Any]:
        """As for every kind; `thermal16` only when set, so scenes written before it existed still match."""
        meta = super().to_meta()
        if not self.thermal16:
            meta.pop("thermal16")
        return meta

    def __post_init__(self) -> None:
        _seed(self.seed)
        if not isinstance(self.thermal16, bool):
            raise ConfigError(f"thermal16 must be true or false, got {self.thermal16!r}")
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, (int, float)):
            raise ConfigError(f"seconds must be a number, got {self.seconds!r}")
        if not 1.0 <= self.seconds <= 3600.0:
            raise ConfigError(f"seconds must be in [1, 3600], got {self.seconds!r}")
        _positive("people", self.people)
        _positive("fps", self.fps)
        if self.fps > 60:
            raise ConfigError(f"fps must be at most 60, got {self.fps}")
        _positive("width", self.width, minimum=160)
        _positive("height", self.height, minimum=120)
        if self.width > 3840 or self.height > 2160:
            raise ConfigError(f"frame size must be at most 3840x2160, got {self.width}x{self.height}")
        if self.width % 2 or self.height % 2:
            raise ConfigError(
                f"width and height must be even (MPEG-4 video drops an odd last row or column), "
                f"got {self.width}x{self.height}"
            )
        _difficulty(self.difficulty)
        object.__setattr__(self, "seconds", float(self.seconds))
        object.__setattr__(self, "difficulty", float(self.difficulty))

    @property
    def frames(self) -> int:
        """Number of frames per camera."""
        return round(self.seconds * self.fps)
