"""Typed errors for every way vireid can refuse input.

Every message names the thing at fault (a file, a value), what was expected, and how to fix it, so a
user never needs a traceback from a third-party library to understand what went wrong.
"""

from __future__ import annotations

from pathlib import Path


class VireidError(Exception):
    """Base class of every error vireid raises on purpose."""


class ArtifactError(VireidError):
    """A model artifact (ONNX, engine, checkpoint, card) is missing, corrupt or breaks the contract."""


class CardError(ArtifactError):
    """A model card is missing, malformed or from an unknown schema version."""


class MissingDependencyError(VireidError, ImportError):
    """An optional dependency is not installed; the message names the pip extra that provides it."""

    def __init__(self, module: str, extra: str, purpose: str, hint: str = "") -> None:
        self.module = module
        self.extra = extra
        self.hint = hint
        self._arguments = (module, extra, purpose, hint)
        message = (
            f"{purpose} needs the Python package '{module}', which is not installed. "
            f"Install it with: pip install 'vireid[{extra}]'"
        )
        super().__init__(message + (f"\n{hint}" if hint else ""))

    def __reduce__(self) -> tuple:  # picklable: raised in a worker process, re-raised in the parent
        return (type(self), self._arguments)


class InputSpecError(VireidError, ValueError):
    """Arrays or arguments passed to the API have the wrong shape, dtype or value."""


class DeviceError(VireidError):
    """A requested device or execution provider is not available; vireid never falls back silently."""


class StreamError(VireidError):
    """A camera or video source cannot be opened or stopped delivering frames."""


class ProcessingStalledError(StreamError):
    """The pipeline's processing loop stopped going round (a model call or an output that hangs), so
    `Pipeline.run(stall_timeout=...)` stopped it: a service restarts instead of looking alive."""


class DatasetError(VireidError):
    """A dataset folder is missing or does not follow the expected layout."""

    def __init__(self, path: str | Path, problem: str, expected: str = "") -> None:
        self.path, self.problem, self.expected = Path(path), problem, expected
        message = f"{self.path}: {problem}"
        if expected:
            message += f"\nExpected layout:\n{expected}"
        super().__init__(message)

    def __reduce__(self) -> tuple:  # picklable: raised in a worker process, re-raised in the parent
        return (type(self), (self.path, self.problem, self.expected))


class ConfigError(VireidError, ValueError):
    """A configuration file or value is invalid; the message names the key."""


class TrainingError(VireidError):
    """A training run cannot go on (its loss or gradients stay NaN/inf: it diverged)."""


class GalleryError(VireidError):
    """A gallery database is corrupt, from another model, or used in a way it does not support."""


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise `MissingDependencyError` naming its pip extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:  # it is there; something it needs is not
            raise BrokenDependencyError(module, f"{type(exc).__name__}: {exc}") from exc
        raise MissingDependencyError(module, extra, purpose) from exc
    except ImportError as exc:  # installed, but it does not load (e.g. built for another numpy)
        raise BrokenDependencyError(module, f"{type(exc).__name__}: {exc}") from exc


class BrokenDependencyError(VireidError, ImportError):
    """An optional dependency is installed but fails to import; the message quotes why."""

    def __init__(self, module: str, reason: str) -> None:
        self._arguments = (module, reason)
        super().__init__(
            f"the Python package '{module}' is installed but fails to import ({reason}); reinstall it, or a "
            "version built for this Python and numpy: pip install --force-reinstall PACKAGE"
        )

    def __reduce__(self) -> tuple:  # picklable, like the other errors
        return (type(self), self._arguments)
