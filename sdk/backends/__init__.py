"""Runtime backends: one class per artifact format, chosen from a table by `open_backend`.

`vireid.backends.open_backend(path, device)` opens `.onnx` files with ONNX Runtime and `.engine`
files with TensorRT. Nothing heavy is imported here: each backend imports its runtime when it opens.
"""

from __future__ import annotations

from .base import DEVICES, Backend
from .registry import FORMATS, BackendFormat, accepted_suffixes, format_for, open_backend, register_format

__all__ = [
    "DEVICES",
    "FORMATS",
    "Backend",
    "BackendFormat",
    "accepted_suffixes",
    "format_for",
    "open_backend",
    "register_format",
]
