"""YOLO-format ONNX person detector: letterbox, confidence threshold, class filter, NMS.

Takes the common exported layouts (one image in, one tensor out, no NMS inside the graph):

- `v8` (Ultralytics YOLOv8/YOLO11 export): output `[1, 4 + C, N]`: `cx, cy, w, h` then C class scores.
- `v5` (YOLOv5/YOLOv7 export): output `[1, N, 5 + C]`: `cx, cy, w, h, objectness` then C class
  scores; a box's score is objectness × class score.

Input: `[1, 3, H, W]` float32 (or float16) RGB scaled to 0..1, letterboxed (aspect kept, padded with grey
114, centred) to the model's H×W (or `imgsz` when the model's size is dynamic). On CUDA, a model exported
with a dynamic batch (Ultralytics `export(dynamic=True)`) takes the frames of several cameras in one
inference (`detect_batch`, which the pipeline uses; `max_batch`). Coordinates are in
letterboxed input pixels and are mapped back to the frame. ONNX Runtime is imported when the detector
is created, never by `import vireid`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ...backends import ort_config as cfg
from ...errors import ArtifactError, DeviceError, InputSpecError, StreamError, require
from ..frame import Frame
from .base import Detections, nms

log = logging.getLogger("vireid")
LAYOUTS = ("auto", "v8", "v5")
PAD_VALUE = 114


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping the aspect and pad (grey 114, centred) to `size` = (H, W).

    Returns the padded image, the scale applied and the (left, top) padding in pixels.
    """
    height, width = image.shape[:2]
    target_h, target_w = size
    scale = min(target_h / height, target_w / width)
    new_w, new_h = round(width * scale), round(height * scale)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR) if scale != 1 else image
    left, top = round((target_w - new_w) / 2 - 0.1), round((target_h - new_h) / 2 - 0.1)
    right, bottom = target_w - new_w - left, target_h - new_h - top
    padded = cv2.copyMakeBorder(
        resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    return padded, scale, (left, top)


NMS_INSIDE_MAX_ROWS = 1000
"""A `[1, N, 6]` output with at most this many rows is taken for finished detections (NMS inside); a
raw single-class head at the smallest input (320) already has 6,300 candidate rows."""


def _bgr(image: np.ndarray) -> np.ndarray:
    """A grey frame as 3-channel BGR (the network's input has three channels)."""
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image


def _blob(padded: np.ndarray, dtype: type[np.floating]) -> np.ndarray:
    """A letterboxed BGR image as the network's `[3, H, W]` RGB input scaled to 0..1."""
    return (cv2.cvtColor(padded, cv2.COLOR_BGR2RGB).transpose(2, 0, 1).astype(dtype) / 255.0).astype(
        dtype, copy=False
    )


def _quiet_run_options() -> Any:
    """Run options that keep ONNX Runtime from printing its own error for a batch that fails: the
    detector retries it frame by frame and says what happened itself."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = 4  # fatal only
    return options


class YoloDetector:
    """Person detector running a YOLO-format ONNX model with ONNX Runtime.

    Args:
        model: path of the `.onnx` detector.
        device: `cpu`, `cuda` or `auto` (CUDA when onnxruntime-gpu can start it; logged).
        threads: ONNX Runtime intra-op threads (default: physical cores available).
        conf: minimum score.
        iou: NMS IoU threshold.
        classes: class indices that count as a person (COCO: 0).
        imgsz: input (H, W) when the model's input size is dynamic (default 640×640).
        layout: `auto` (channel-first output → `v8`, channel-last → `v5`), `v8` or `v5`.
        max_det: most boxes kept per frame.
        max_batch: most frames per inference in `detect_batch` (the pipeline's cameras of one round)
            when the model's batch dimension is dynamic; a model exported with batch 1 runs frame by
            frame (`batchable` says which). Default: 16 on CUDA, 1 on the CPU, where a batch of 2 or 4
            640×640 frames took 15-18 % longer than the same frames one by one (docs/pipeline.md).

    Raises:
        ArtifactError: the file is missing or not a single-input image detector.
        DeviceError: `cuda` was asked for and cannot run.
        MissingDependencyError: onnxruntime is not installed (`pip install 'vireid[onnx]'`).
    """

    name = "yolo"

    def __init__(
        self,
        model: str | Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        conf: float = 0.25,
        iou: float = 0.45,
        classes: Sequence[int] = (0,),
        imgsz: int | tuple[int, int] = 640,
        layout: str = "auto",
        max_det: int = 300,
        max_batch: int | None = None,
    ) -> None:
        if layout not in LAYOUTS:
            raise InputSpecError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if not classes:
            raise InputSpecError("classes must name at least one class index (COCO person: 0)")
        if max_batch is not None and max_batch < 1:
            raise InputSpecError(f"max_batch must be at least 1, got {max_batch}")
        self.path = Path(model)
        self._warned_non_finite = False
        if not self.path.is_file():
            raise ArtifactError(f"{self.path}: no such detector model; give a YOLO-format .onnx file")
        self.conf, self.iou, self.layout, self.max_det = float(conf), float(iou), layout, int(max_det)
        self.classes = tuple(int(c) for c in classes)
        self._session = self._open(device, threads)
        self._refuse_nms_inside()
        self._input = self._session.get_inputs()[0]
        self.input_size = self._input_size(imgsz)
        self._dtype: type[np.floating] = np.float16 if self._input.type == "tensor(float16)" else np.float32
        self._quiet = _quiet_run_options()
        on_cuda = self._session.get_providers()[0] == cfg.CUDA_EP
        self.max_batch = int(max_batch) if max_batch is not None else (16 if on_cuda else 1)
        self.batchable = self.max_batch > 1 and not isinstance(self._input.shape[0], int)
        """Whether `detect_batch` runs several frames per inference (the model's batch is dynamic and
        `max_batch` above 1)."""

    def _open(self, device: str, threads: int | None) -> Any:
        ort = require("onnxruntime", "onnx", "The YOLO person detector")
        available = ort.get_available_providers()
        if device not in ("cpu", "cuda", "auto"):
            raise InputSpecError(f"device must be cpu, cuda or auto, got {device!r}")
        use_cuda = device == "cuda" or (device == "auto" and cfg.CUDA_EP in available)
        providers = [cfg.CUDA_EP, cfg.CPU_EP] if use_cuda else [cfg.CPU_EP]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cfg.default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:
            raise ArtifactError(f"{self.path}: ONNX Runtime cannot load this detector ({exc})") from exc
        if device == "cuda" and session.get_providers()[0] != cfg.CUDA_EP:
            raise DeviceError(f"{self.path}: device='cuda' requested but ONNX Runtime runs it on CPU")
        if device == "auto":
            log.info("detector %s runs on %s", self.path.name, "cuda" if use_cuda else "cpu")
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or not outputs:
            shapes = [(i.name, i.shape) for i in inputs]
            raise ArtifactError(f"{self.path}: expected one image input [1, 3, H, W], got {shapes}")
        return session

    def _refuse_nms_inside(self) -> None:
        """An end-to-end export (NMS inside: YOLOv10, Ultralytics `export(nms=True)`) outputs a few
        hundred finished detections `[1, max_det, 6]`, not a head's thousands of candidates: decoded as
        a head it silently finds nobody (person class 0 times the score is 0). Refused at open."""
        shape = self._session.get_outputs()[0].shape
        if self.layout != "auto" or len(shape) != 3 or shape[2] != 6 or not isinstance(shape[1], int):
            return
        if shape[1] <= NMS_INSIDE_MAX_ROWS:
            raise ArtifactError(
                f"{self.path}: output {list(shape)} looks like an export with NMS inside (rows x1, y1, x2, "
                "y2, score, class; YOLOv10 or export(nms=True)), which this detector does not decode; export "
                "the raw head (Ultralytics: export(format='onnx', nms=False), a YOLOv5/v8 model), or pass "
                "layout='v5' if it truly is a single-class v5 head"
            )

    def _input_size(self, imgsz: int | tuple[int, int]) -> tuple[int, int]:
        _, channels, height, width = self._input.shape
        if isinstance(channels, int) and channels != 3:
            raise ArtifactError(f"{self.path}: input has {channels} channels, expected 3 (RGB)")
        if isinstance(height, int) and isinstance(width, int):
            return height, width
        size = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
        return int(size[0]), int(size[1])

    def for_camera(self) -> YoloDetector:
        """The same detector (it keeps no per-camera state; ONNX Runtime sessions are thread-safe)."""
        return self

    def close(self) -> None:
        """Release the ONNX Runtime session (its threads; on CUDA, its GPU memory). Idempotent; a closed
        detector refuses `detect`."""
        self._session = None

    def __enter__(self) -> YoloDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def detect(self, image: np.ndarray, frame: Frame | None = None) -> Detections:
        """People in a uint8 BGR (or grey) image."""
        return self.detect_batch([image])[0]

    def detect_batch(
        self, images: Sequence[np.ndarray], frames: Sequence[Frame | None] | None = None
    ) -> list[Detections]:
        """People in each of several uint8 BGR (or grey) images, of any sizes: one inference per
        `max_batch` images when the model's batch size is dynamic (`batchable`), else one per image.
        The pipeline calls this with every camera's frame of a round."""
        if self._session is None:
            raise StreamError(f"{self.path}: this detector was closed; create a new one")
        found: list[Detections] = []
        start = 0
        while start < len(images):
            size = self.max_batch if self.batchable else 1  # read per chunk: a failed batch lowers it
            chunk = [_bgr(image) for image in images[start : start + size]]
            start += len(chunk)
            placed = [letterbox(image, self.input_size) for image in chunk]
            raw = self._infer(np.stack([_blob(padded, self._dtype) for padded, _, _ in placed]))
            for image, (_, scale, offset), out in zip(chunk, placed, raw, strict=True):
                found.append(self._in_frame(out, image.shape, scale, offset))
        return found

    def _infer(self, blob: np.ndarray) -> np.ndarray:
        """The raw head output for a `[N, 3, H, W]` blob, `[N, ...]`.

        A batch that fails is run again one image at a time. If that works the batch was the
        problem: a model whose input says its batch is dynamic but whose graph pins it at 1, or a
        batch too large for the GPU's memory; `max_batch` becomes half the failed batch (1: no more batching),
        with a warning. If the images fail one at a time too, that error is raised and the batch size
        stays."""
        if len(blob) > 1:
            try:
                return self._run(blob, self._quiet)
            except Exception as exc:  # onnxruntime raises its own plain exception types
                outputs = self._run_one_by_one(blob)
                self.max_batch = max(1, len(blob) // 2)
                self.batchable = self.max_batch > 1
                log.warning(
                    "%s: a batch of %d frames failed (%s) where single frames work; detecting %s from now",
                    self.path,
                    len(blob),
                    str(exc).splitlines()[0][:200],
                    f"at most {self.max_batch} frames at a time" if self.batchable else "one frame at a time",
                )
                return outputs
        return self._run_one_by_one(blob)

    def _run_one_by_one(self, blob: np.ndarray) -> np.ndarray:
        return np.concatenate([self._run(blob[i : i + 1]) for i in range(len(blob))])

    def _run(self, blob: np.ndarray, options: Any = None) -> np.ndarray:
        """One inference; the output with its batch axis (`[N, ...]`), checked to hold N results."""
        raw = np.asarray(self._session.run(None, {self._input.name: blob}, options)[0], dtype=np.float32)
        if raw.ndim == 2 and len(blob) == 1:  # a head exported without its batch axis: [4 + C, N]
            raw = raw[None]
        if raw.ndim < 3 or raw.shape[0] != len(blob):
            raise ArtifactError(
                f"{self.path}: {len(blob)} input frame(s) gave an output of shape {raw.shape}; expected "
                f"[{len(blob)}, 4+C, N] (v8) or [{len(blob)}, N, 5+C] (v5), one result per frame"
            )
        return raw

    def _in_frame(
        self, raw: np.ndarray, shape: tuple[int, ...], scale: float, offset: tuple[int, int]
    ) -> Detections:
        """Decode one image's output and map its boxes from letterboxed input pixels to the frame."""
        boxes, scores = self.decode(raw[None])
        if not len(boxes):
            return Detections.empty()
        left, top = offset
        boxes[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - left) / scale, 0, shape[1])
        boxes[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - top) / scale, 0, shape[0])
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return Detections(boxes[valid], scores[valid])

    def _finite(self, rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows with a finite score and box. A model giving NaN/inf everywhere is broken (an FP16
        overflow): refused, rather than detecting nothing forever; a few such rows are dropped."""
        finite = np.isfinite(scores) & np.isfinite(rows[:, :4]).all(axis=1)
        if finite.all():
            return rows, scores
        if not finite.any():
            raise ArtifactError(
                f"{self.path}: every detection row is NaN or infinite: the model overflows (an FP16 "
                "export?); use its FP32 ONNX file"
            )
        if not self._warned_non_finite:
            self._warned_non_finite = True
            log.warning("%s: dropped %d detection rows with NaN/inf values", self.path, int((~finite).sum()))
        return rows[finite], scores[finite]

    def decode(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (xyxy, input pixels) and scores of the person classes after threshold and NMS."""
        if raw.ndim == 3:
            if raw.shape[0] != 1:
                raise ArtifactError(f"{self.path}: expected a batch of 1 in the output, got {raw.shape}")
            raw = raw[0]
        if raw.ndim != 2:
            raise ArtifactError(
                f"{self.path}: expected an output [1, 4+C, N] or [1, N, 5+C], got {raw.shape}"
            )
        layout = self.layout
        if layout == "auto":
            layout = "v8" if raw.shape[0] < raw.shape[1] else "v5"
        rows = raw.T if layout == "v8" else raw
        first = 4 if layout == "v8" else 5
        num_classes = rows.shape[1] - first
        if num_classes <= max(self.classes):
            raise ArtifactError(
                f"{self.path}: the {layout} output has {num_classes} classes, fewer than class index "
                f"{max(self.classes)}; pass classes= or layout= to match the model"
            )
        scores = rows[:, [first + c for c in self.classes]].max(axis=1)
        if layout == "v5":
            scores = scores * rows[:, 4]
        rows, scores = self._finite(rows, scores)
        if len(scores) and (scores.max() > 1.0 + 1e-3 or scores.min() < -1e-3):
            raise ArtifactError(
                f"{self.path}: decoded as {layout}, output {tuple(raw.shape)} gives scores outside [0, 1] "
                f"({scores.min():.3g} to {scores.max():.3g}); a model exported with NMS inside (YOLOv10, "
                "`export(nms=True)`: rows x1, y1, x2, y2, score, class) is not a raw v5/v8 head: export it "
                "without NMS, or pass layout= if the layout was guessed wrong"
            )
        keep = scores >= self.conf
        rows, scores = rows[keep], scores[keep]
        cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
        kept = nms(boxes, scores, self.iou)[: self.max_det]
        return boxes[kept], scores[kept].astype(np.float32)
