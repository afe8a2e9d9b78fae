"""A small name → factory registry shared by backbones, models and losses.

Components are chosen by name from config files; a miss raises `ConfigError` listing every registered
name, so a typo in a YAML file is fixed without reading source code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from vireid.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories (classes or functions) of one kind of component.

    Args:
        kind: What the registry holds, used in error messages ("backbone", "model", "loss").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering a class or function under `name`; a duplicate name is a bug."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered under `name`; raises `ConfigError` listing the options on a miss."""
        try:
            return self._factories[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; available {self.kind}s: {', '.join(self.names())}"
            ) from None

    def build(self, name: str, **kwargs: Any) -> T:
        """Call the factory registered under `name` with keyword arguments."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
