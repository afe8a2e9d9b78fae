"""Which backend opens which artifact: one row per format, classes imported only when used.

`open_backend(path, device)` picks the row by the file's suffix, checks the device against the row, and
imports the backend class from its `"module:Class"` string, so ONNX Runtime or TensorRT load only when
an artifact of that kind is opened.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import ArtifactError, DeviceError, InputSpecError
from .base import Backend, check_device_name

log = logging.getLogger("vireid")


class BackendClass(Protocol):
    """A `Backend` subclass as `open_backend` calls it: `(path, device, **options)` (the base class's own
    constructor takes the card instead; each subclass reads it from the artifact)."""

    options: tuple[str, ...]

    def __call__(self, path: str | Path, device: str, **options: Any) -> Backend: ...


@dataclass(frozen=True)
class BackendFormat:
    """One artifact format and the backend that runs it.

    Attributes:
        id: short name (`onnx`, `tensorrt`).
        suffixes: lower-case file suffixes that select this format.
        runs_on_cpu: the format can run without a GPU.
        runs_on_gpu: the format can run on an NVIDIA GPU.
        backend: `"module:Class"` of the `Backend` subclass, imported lazily.
        devices: explicit `device=` values it accepts.
    """

    id: str
    suffixes: tuple[str, ...]
    runs_on_cpu: bool
    runs_on_gpu: bool
    backend: str
    devices: tuple[str, ...]


FORMATS: dict[str, BackendFormat] = {}


def register_format(fmt: BackendFormat) -> BackendFormat:
    """Add (or replace) a format row; suffixes must not collide with another format's."""
    for other in FORMATS.values():
        clash = set(other.suffixes) & set(fmt.suffixes)
        if other.id != fmt.id and clash:
            raise InputSpecError(
                f"suffixes {sorted(clash)} of format {fmt.id!r} already belong to {other.id!r}"
            )
    FORMATS[fmt.id] = fmt
    return fmt


register_format(
    BackendFormat(
        id="onnx",
        suffixes=(".onnx",),
        runs_on_cpu=True,
        runs_on_gpu=True,
        backend="vireid.backends.ort:OnnxRuntimeBackend",
        devices=("cpu", "cuda", "tensorrt"),
    )
)
register_format(
    BackendFormat(
        id="tensorrt",
        suffixes=(".engine", ".plan", ".trt"),
        runs_on_cpu=False,
        runs_on_gpu=True,
        backend="vireid.backends.tensorrt:TensorRTBackend",
        devices=("tensorrt",),
    )
)


def accepted_suffixes() -> list[str]:
    """Every suffix some backend opens."""
    return sorted(s for fmt in FORMATS.values() for s in fmt.suffixes)


def format_for(path: str | Path) -> BackendFormat:
    """The format row of an artifact path, chosen by suffix (case-insensitive).

    Raises:
        ArtifactError: no backend opens files with this suffix; the message lists the accepted ones.
    """
    suffix = Path(path).suffix.lower()
    for fmt in FORMATS.values():
        if suffix in fmt.suffixes:
            return fmt
    if Path(path).is_dir():
        raise ArtifactError(f"{path}: is a folder; pass the model file inside it (.onnx or .engine)")
    raise ArtifactError(
        f"{path}: no backend opens '{suffix or '(no suffix)'}' files; accepted suffixes: "
        f"{', '.join(accepted_suffixes())}. Export the model with `vireid export`."
    )


def backend_class(fmt: BackendFormat) -> BackendClass:
    """Import the backend class of a format (the runtime itself is imported only when it opens)."""
    module_name, _, class_name = fmt.backend.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def open_backend(path: str | Path, device: str = "auto", **options: Any) -> Backend:
    """Open a model artifact on a device.

    Args:
        path: an exported artifact: `.onnx` (ONNX Runtime) or `.engine`/`.plan`/`.trt` (TensorRT).
        device: `auto` (the fastest that works here, logged on the `vireid` logger), `cpu`, `cuda`
            or `tensorrt`. An explicit device that cannot be used raises; nothing falls back silently.
        **options: backend options (see `docs/runtime.md`), e.g. `threads=4` for ONNX Runtime on CPU.

    Raises:
        ArtifactError: unknown suffix, missing/corrupt file, or a file that breaks the contract.
        DeviceError: the format cannot run on `device`, or the device is unavailable.
        InputSpecError: unknown device name or option.
        MissingDependencyError: the runtime is not installed; the message names the pip extra.
    """
    path = Path(path)
    fmt = format_for(path)
    device = check_device_name(device)
    if device != "auto" and device not in fmt.devices:
        raise DeviceError(
            f"{path}: a {fmt.id} artifact runs on device {' or '.join(map(repr, fmt.devices))}, not "
            f"{device!r}; pass one of those or 'auto'"
            + ("; for CPU use the model's .onnx file" if not fmt.runs_on_cpu else "")
        )
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file; pass the path of an exported model")
    cls = backend_class(fmt)
    unknown = sorted(set(options) - set(cls.options))
    if unknown:
        raise InputSpecError(
            f"unknown {fmt.id} backend options {unknown}; accepted: {', '.join(cls.options) or 'none'}"
        )
    return cls(path, device, **options)
