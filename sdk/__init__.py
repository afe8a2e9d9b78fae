"""vireid: visible-infrared (RGB-thermal) person re-identification runtime.

The runtime needs numpy and OpenCV only; ONNX Runtime and TensorRT load when a backend is opened.
Training (`vireid.training`) and export (`vireid.export`) need torch and live in their own packages.
"""

from __future__ import annotations

from ._version import __version__
from .card import BatchProfile, ModelCard, Precision
from .errors import (
    ArtifactError,
    CardError,
    ConfigError,
    DatasetError,
    DeviceError,
    GalleryError,
    InputSpecError,
    MissingDependencyError,
    StreamError,
    VireidError,
)
from .modality import Modality

__all__ = [
    "ArtifactError",
    "BatchProfile",
    "CardError",
    "ConfigError",
    "DatasetError",
    "DeviceError",
    "GalleryError",
    "InputSpecError",
    "MissingDependencyError",
    "Modality",
    "ModelCard",
    "Precision",
    "StreamError",
    "VireidError",
    "__version__",
]
