"""String enums whose `parse` accepts a member or its name and lists the options on a miss."""

from __future__ import annotations

import enum
from typing import TypeVar

from .errors import ConfigError, InputSpecError, VireidError

C = TypeVar("C", bound="Choice")


class Choice(str, enum.Enum):
    """Base of vireid's option enums (precision, protocol, calibration method, ...).

    Subclasses override `label()` (what the option is called in errors) and, where a bad value is not
    a configuration mistake, `error_type()`.
    """

    @classmethod
    def label(cls) -> str:
        """The option's name in error messages."""
        return cls.__name__.lower()

    @classmethod
    def error_type(cls) -> type[VireidError]:
        """The exception a bad value raises."""
        return ConfigError

    @classmethod
    def parse(cls: type[C], value: C | str) -> C:
        """The member for `value` (case-insensitive), or the `error_type()` listing every option."""
        try:
            return cls(str(getattr(value, "value", value)).lower())
        except ValueError:
            options = ", ".join(member.value for member in cls)
            raise cls.error_type()(f"unknown {cls.label()} {value!r}; expected one of: {options}") from None


class InputChoice(Choice):
    """An option given with the data of a call (not a configuration file): a miss is an `InputSpecError`."""

    @classmethod
    def error_type(cls) -> type[VireidError]:
        return InputSpecError
