"""Streams: camera sources, person detection, tracking, and real-time cross-modal matching.

    sources   VideoSource (file | RTSP/HTTP URL | USB index | GStreamer pipeline), own thread, policy
              `latest` or `every`, reconnect with backoff; Frame
    detect    Detections, Detector, BatchDetector; MotionDetector (default), YoloDetector (ONNX), CallerBoxes
    track     ByteTracker (Kalman + two-stage IoU association), Track, TrackUpdate
    quality   crop_quality (size, sharpness, occlusion, truncation)
    matcher   Matcher (quality-weighted track embeddings, gallery + cross-modal matching, hysteresis)
    events    TrackStarted, Identified, CrossModalMatch, TrackEnded, SourceChanged
    sinks     JsonlSink, VideoSink, SnapshotSink, ShowSink, CallbackSink
    pipeline  Pipeline, PipelineConfig; stats: PipelineStats

Nothing here imports ONNX Runtime at module level (the YOLO detector loads it when created).
"""

from __future__ import annotations

from .config import PipelineConfig
from .detect import DETECTORS, BatchDetector, Detections, Detector, make_detector
from .detect.given import CallerBoxes
from .detect.motion import MotionDetector
from .detect.yolo import YoloDetector
from .events import (
    CrossModalMatch,
    Event,
    Identified,
    SourceChanged,
    TrackEnded,
    TrackStarted,
    event_from_dict,
)
from .frame import Frame
from .matcher import Matcher, MatchThresholds
from .pipeline import Pipeline
from .quality import crop_quality
from .sinks import CallbackSink, FrameResult, JsonlSink, ShowSink, Sink, SnapshotSink, TrackView, VideoSink
from .sources import Policy, SourceKind, SourceState, SourceStats, VideoSource, parse_source
from .stats import PipelineStats, StageStats
from .track import ByteTracker, Track, TrackUpdate

__all__ = [
    "DETECTORS",
    "BatchDetector",
    "ByteTracker",
    "CallbackSink",
    "CallerBoxes",
    "CrossModalMatch",
    "Detections",
    "Detector",
    "Event",
    "Frame",
    "FrameResult",
    "Identified",
    "JsonlSink",
    "MatchThresholds",
    "Matcher",
    "MotionDetector",
    "Pipeline",
    "PipelineConfig",
    "PipelineStats",
    "Policy",
    "ShowSink",
    "Sink",
    "SnapshotSink",
    "SourceChanged",
    "SourceKind",
    "SourceState",
    "SourceStats",
    "StageStats",
    "Track",
    "TrackEnded",
    "TrackStarted",
    "TrackUpdate",
    "TrackView",
    "VideoSink",
    "VideoSource",
    "YoloDetector",
    "crop_quality",
    "event_from_dict",
    "make_detector",
    "parse_source",
]
