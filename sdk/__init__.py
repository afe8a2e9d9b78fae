"""vireid: visible-infrared (RGB-thermal) person re-identification runtime.

The runtime needs numpy and OpenCV only; ONNX Runtime and TensorRT load when a backend is opened.
Training (`vireid.training`) and export (`vireid.export`) need torch and live in their own packages.
"""

from __future__ import annotations

import os as _os

# A decompression bomb (a 160 KB PNG that decodes to 12000x12000) would otherwise take gigabytes: OpenCV
# refuses images above this many pixels (default 2**30). 2**26 is 8192x8192, above any camera frame
# (`VideoSource(max_pixels=...)` defaults to 7680x4320). OpenCV reads it once, when cv2 is first
# imported: a process that imported cv2 before vireid keeps its own limit. Set the variable to override.
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 26))

from ._version import __version__
from .backends import Backend, open_backend
from .card import BatchProfile, ModelCard, Precision
from .embedder import Embedder
from .embeddings import Embeddings
from .enrollment import EnrollReport, enroll_images
from .errors import (
    ArtifactError,
    BrokenDependencyError,
    CardError,
    ConfigError,
    DatasetError,
    DeviceError,
    GalleryError,
    InputSpecError,
    MissingDependencyError,
    ProcessingStalledError,
    StreamError,
    TrainingError,
    VireidError,
)
from .gallery import Gallery, GalleryInfo, IdentityEmbeddings, IdentityInfo, IdentityScore, Match
from .modality import Modality
from .preprocess import preprocess_boxes, preprocess_crops
from .streams import (
    CrossModalMatch,
    Frame,
    Identified,
    Pipeline,
    PipelineConfig,
    PipelineStats,
    SourceChanged,
    TrackEnded,
    TrackStarted,
    VideoSource,
)
from .thermal import ThermalScaling

__all__ = [
    "ArtifactError",
    "Backend",
    "BatchProfile",
    "BrokenDependencyError",
    "CardError",
    "ConfigError",
    "CrossModalMatch",
    "DatasetError",
    "DeviceError",
    "Embedder",
    "Embeddings",
    "EnrollReport",
    "Frame",
    "Gallery",
    "GalleryError",
    "GalleryInfo",
    "Identified",
    "IdentityEmbeddings",
    "IdentityInfo",
    "IdentityScore",
    "InputSpecError",
    "Match",
    "MissingDependencyError",
    "Modality",
    "ModelCard",
    "Pipeline",
    "PipelineConfig",
    "PipelineStats",
    "Precision",
    "ProcessingStalledError",
    "SourceChanged",
    "StreamError",
    "ThermalScaling",
    "TrackEnded",
    "TrackStarted",
    "TrainingError",
    "VideoSource",
    "VireidError",
    "__version__",
    "enroll_images",
    "open_backend",
    "preprocess_boxes",
    "preprocess_crops",
]
