"""The two camera modalities and how users may name them."""

from __future__ import annotations

import enum

from .errors import InputSpecError

_ALIASES = {
    "visible": ("visible", "vis", "rgb", "color", "colour", "day", "v", "0"),
    "infrared": ("infrared", "ir", "thermal", "nir", "night", "t", "i", "1"),
}


class Modality(enum.IntEnum):
    """Camera modality; the integer value is what the model's `modality` input receives."""

    VISIBLE = 0
    INFRARED = 1

    @classmethod
    def parse(cls, value: Modality | str | int) -> Modality:
        """Turn a user's word (`rgb`, `thermal`, `ir`, 0, 1, ...) into a `Modality`.

        Raises:
            InputSpecError: the value names no modality; the message lists the accepted words.
        """
        if isinstance(value, Modality):
            return value
        if isinstance(value, (int,)) and not isinstance(value, bool) and value in (0, 1):
            return cls(value)
        word = str(value).strip().lower()
        for name, aliases in _ALIASES.items():
            if word in aliases:
                return cls[name.upper()]
        accepted = ", ".join(a for names in _ALIASES.values() for a in names)
        raise InputSpecError(f"unknown modality {value!r}; accepted: {accepted}")

    @property
    def other(self) -> Modality:
        """The opposite modality (what a cross-modal match looks for)."""
        return Modality.INFRARED if self is Modality.VISIBLE else Modality.VISIBLE

    def __str__(self) -> str:
        return self.name.lower()
