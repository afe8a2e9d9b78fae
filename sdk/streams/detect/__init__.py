"""Person detectors behind one interface, chosen by name from a table.

| name     | class                                                  | what it needs                    |
|----------|--------------------------------------------------------|----------------------------------|
| `motion` | `vireid.streams.detect.motion:MotionDetector`          | nothing (fixed cameras; default) |
| `yolo`   | `vireid.streams.detect.yolo:YoloDetector`              | a YOLO-format `.onnx`, onnxruntime |
| `boxes`  | `vireid.streams.detect.given:CallerBoxes`              | a function frame → boxes         |

Classes are imported only when one is made, so `import vireid` never loads ONNX Runtime.
"""

from __future__ import annotations

import importlib
from typing import Any

from ...errors import ConfigError
from .base import BatchDetector, Detections, Detector, nms

DETECTORS: dict[str, str] = {
    "motion": "vireid.streams.detect.motion:MotionDetector",
    "yolo": "vireid.streams.detect.yolo:YoloDetector",
    "boxes": "vireid.streams.detect.given:CallerBoxes",
}


def detector_class(name: str) -> type:
    """The class registered under `name`.

    Raises:
        ConfigError: no detector of that name; the message lists the names that exist.
    """
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; available: {', '.join(DETECTORS)}")
    module_name, _, class_name = DETECTORS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_detector(name: str, *args: Any, **options: Any) -> Detector:
    """Create the detector registered under `name`, e.g. `make_detector("yolo", "m.onnx", conf=0.4)`."""
    return detector_class(name)(*args, **options)


__all__ = ["DETECTORS", "BatchDetector", "Detections", "Detector", "detector_class", "make_detector", "nms"]
