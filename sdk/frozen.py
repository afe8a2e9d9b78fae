"""Read-only JSON-like values for frozen dataclasses (a model card's config, a pipeline's options).

A frozen dataclass holding a plain dict is frozen on the outside only: `card.model_config["seed"] = 1`
would change the card in place (and with it the fingerprint that decides which gallery its model may
use). These dict and list subclasses refuse every change, yet stay a `dict` and a `list`, so `json`,
`copy` and `dataclasses.asdict` handle them as usual.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

READ_ONLY = "read-only (part of a frozen vireid object): make a changed copy with .replace(...)"


class _ReadOnlyDict(dict):
    """A dict that refuses changes (still a dict, so `json` writes it as one)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(READ_ONLY)

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple:  # copy and pickle rebuild it whole, not key by key
        return (type(self), (dict(self),))


class _ReadOnlyList(list):
    """A list that refuses changes (still a list, so `json` writes it as one)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(READ_ONLY)

    __setitem__ = __delitem__ = append = extend = insert = pop = remove = clear = _refuse
    sort = reverse = __iadd__ = __imul__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple:  # copy and pickle rebuild it whole, not item by item
        return (type(self), (list(self),))


def read_only(value: Any) -> Any:
    """A deep copy of JSON-like `value` whose dicts and lists refuse changes."""
    if isinstance(value, Mapping):
        return _ReadOnlyDict((key, read_only(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return _ReadOnlyList(read_only(item) for item in value)
    return value
