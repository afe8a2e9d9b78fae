"""Detectors: `Detections`, NMS, the motion detector (synthetic frames and a generated scene vs ground
truth), the YOLO-format ONNX detector (tiny models built here; batched across cameras in the pipeline)
and caller-supplied boxes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from vireid import ConfigError, Embedder, InputSpecError
from vireid.bench.scene import BoxScore, SceneTruth, score_boxes
from vireid.errors import ArtifactError
from vireid.streams import (
    CallerBoxes,
    Detections,
    Frame,
    MotionDetector,
    Pipeline,
    VideoSource,
    YoloDetector,
    make_detector,
)
from vireid.streams.assignment import iou_matrix
from vireid.streams.detect import detector_class, nms
from vireid.streams.detect.yolo import letterbox


# ----- Detections and NMS -------------------------------------------------------------------------
def test_detections_convert_and_select() -> None:
    det = Detections([[0, 0, 10, 20], [5, 5, 15, 30]], [0.9, 0.2])
    assert det.boxes.dtype == np.float32 and det.boxes.shape == (2, 4) and len(det) == 2
    assert len(det[det.scores > 0.5]) == 1
    assert len(Detections.empty()) == 0


@pytest.mark.parametrize(
    ("boxes", "scores", "message"),
    [
        ([[0, 0, 10, 10]], [0.5, 0.6], "1 boxes but 2 scores"),
        ([[10, 0, 5, 10]], [0.5], "empty"),
        ([[0, 0, np.nan, 10]], [0.5], "finite"),
        ("abc", [0.5], "boxes (K, 4)"),
    ],
)
def test_detections_reject_bad_input(boxes, scores, message: str) -> None:
    with pytest.raises(InputSpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Detections(boxes, scores)


def test_nms_keeps_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    keep = nms(boxes, np.array([0.8, 0.9, 0.5], np.float32), 0.5)
    assert keep.tolist() == [1, 2]


def test_registry_lists_names_on_a_miss() -> None:
    with pytest.raises(ConfigError, match="motion, yolo, boxes"):
        make_detector("hog")
    assert detector_class("motion") is MotionDetector


# ----- motion detector ----------------------------------------------------------------------------
def _moving_person(frames: int, grey: bool) -> tuple[list[np.ndarray], list[list[int]]]:
    rng = np.random.default_rng(0)
    background = rng.integers(60, 90, (240, 320), dtype=np.uint8)
    images, truth = [], []
    for i in range(frames):
        img = np.clip(background.astype(np.int16) + rng.integers(-3, 4, background.shape), 0, 255).astype(
            np.uint8
        )
        x = 8 * i - 240  # enters from the left edge after 30 frames of empty background
        if x > 0:
            img[60:180, x : x + 40] = 200
        images.append(img if grey else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
        truth.append([x, 60, x + 40, 180])
    return images, truth


@pytest.mark.parametrize("grey", [False, True], ids=["bgr", "thermal-grey"])
def test_motion_detector_finds_a_moving_upright_blob(grey: bool) -> None:
    detector = MotionDetector(work_width=160, warmup=3)
    images, truth = _moving_person(56, grey)
    found = []
    for image, box in zip(images, truth, strict=True):
        det = detector.detect(image)
        if len(det) and box[0] > 0:
            found.append(float(iou_matrix(det.boxes, np.array([box]))[:, 0].max()))
    assert len(found) >= 22
    assert np.mean(found) > 0.8
    assert detector.detect(images[-1]).scores.min(initial=1) >= 0.5  # upright: high score


def test_motion_detector_scores_wide_blobs_low_and_drops_tiny_ones() -> None:
    detector = MotionDetector(work_width=320, warmup=1)
    base = np.full((240, 320), 70, np.uint8)
    detector.detect(base)
    detector.detect(base)
    frame = base.copy()
    frame[100:180, 20:200] = 220  # a wide blob: two people side by side, a car...
    frame[10:14, 300:303] = 220  # a speck
    det = detector.detect(frame)
    assert len(det) == 1 and det.scores[0] < 0.5
    assert det.boxes[0, 2] > 190


def test_motion_detector_per_camera_copies_and_size_check() -> None:
    detector = MotionDetector(history=50)
    other = detector.for_camera()
    assert other is not detector and other.settings == detector.settings
    detector.detect(np.zeros((120, 160), np.uint8))
    with pytest.raises(InputSpecError, match="frame size changed"):
        detector.detect(np.zeros((240, 320), np.uint8))
    with pytest.raises(InputSpecError, match="min_height"):
        MotionDetector(min_height=0.9, max_height=0.5)


def test_motion_detector_recall_and_iou_on_a_generated_scene(scene: Path) -> None:
    """Against ground truth: recall and IoU of people ≥ 90% visible; boxes on nobody count as false."""
    truth = SceneTruth.load(scene)
    for camera in ("visible", "infrared"):
        detector, score = MotionDetector(), BoxScore()
        cap = cv2.VideoCapture(str(scene / f"{camera}.mp4"))
        index = 0
        while True:
            ok, image = cap.read()
            if not ok:
                break
            det = detector.detect(image)
            if index >= 10:  # required: ≥ 90% visible (the fraction counts frame edges too)
                score_boxes(truth.objects(camera, index), det.boxes, score, 0.5, 0.9)
            index += 1
        assert index == truth.num_frames
        assert score.required > 50
        assert score.recall >= 0.9, (camera, score.recall)
        assert score.mean_iou >= 0.8, (camera, score.mean_iou)
        assert score.precision >= 0.9, (camera, score.precision)


# ----- YOLO-format ONNX detector ------------------------------------------------------------------
def _yolo_model(
    path: Path, table: np.ndarray, size: tuple[int, int] | None = (64, 64), batch: int | str = 1
) -> Path:
    """A model whose output is `table` (plus 0 x the image mean, so it depends on the input), whatever
    the batch (`batch="N"` declares it dynamic)."""
    dims = [batch, 3, *size] if size else [batch, 3, "H", "W"]
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),  # over everything: a scalar
            helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
            helper.make_node("Add", ["table", "nothing"], ["output0"]),
        ],
        "yolo_fixture",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(table.shape))],
        initializer=[
            numpy_helper.from_array(table.astype(np.float32), "table"),
            numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


# Rows: cx, cy, w, h (letterboxed 64x64 input pixels), person score, other-class score.
_CANDIDATES = np.array(
    [
        [32, 32, 16, 32, 0.90, 0.01],  # a person
        [33, 33, 16, 32, 0.80, 0.01],  # the same person again: removed by NMS
        [12, 20, 8, 16, 0.05, 0.95],  # another class
        [50, 40, 8, 16, 0.10, 0.00],  # below conf
    ]
    + [[0, 0, 1, 1, 0.0, 0.0]] * 6,  # padding so N (10) > channels (6), as in real exports
    np.float32,
)


def test_letterbox_pads_and_scales() -> None:
    padded, scale, (left, top) = letterbox(np.zeros((128, 64, 3), np.uint8), (64, 64))
    assert padded.shape == (64, 64, 3) and scale == 0.5 and (left, top) == (16, 0)
    assert padded[0, 0, 0] == 114 and padded[0, 20, 0] == 0


@pytest.mark.parametrize("layout", ["auto", "v8"])
def test_yolo_v8_layout_maps_boxes_back_to_the_frame(tmp_path: Path, layout: str) -> None:
    model = _yolo_model(tmp_path / "v8.onnx", _CANDIDATES.T[None])  # [1, 4 + 2, 10]
    detector = YoloDetector(model, conf=0.25, iou=0.5, layout=layout, threads=1)
    assert detector.for_camera() is detector and detector.input_size == (64, 64)
    det = detector.detect(np.zeros((128, 64, 3), np.uint8))  # scale 0.5, 16 px padding left and right
    assert len(det) == 1
    np.testing.assert_allclose(det.boxes[0], [16, 32, 48, 96], atol=1e-4)
    assert det.scores[0] == pytest.approx(0.9)


def test_yolo_v5_layout_multiplies_objectness(tmp_path: Path) -> None:
    rows = np.insert(_CANDIDATES, 4, 1.0, axis=1)  # objectness column
    rows[0, 4] = 0.5  # person: 0.5 x 0.9 = 0.45
    model = _yolo_model(tmp_path / "v5.onnx", rows[None])  # [1, 10, 5 + 2]
    det = YoloDetector(model, layout="v5", threads=1).detect(np.zeros((64, 64), np.uint8))  # grey works too
    np.testing.assert_allclose(det.scores, [0.8], atol=1e-6)  # the duplicate (objectness 1) now wins NMS
    other = YoloDetector(model, layout="v5", classes=(1,), threads=1).detect(np.zeros((64, 64, 3), np.uint8))
    np.testing.assert_allclose(other.scores, [0.95], atol=1e-6)


def test_yolo_rows_with_nan_are_dropped_and_an_all_nan_output_is_refused(tmp_path: Path, caplog) -> None:
    """NaN compares False with the confidence and the [0, 1] range check, so a broken (overflowing
    FP16) detector used to detect nothing, forever, without a word."""
    some = _CANDIDATES.copy()
    some[1, 0] = np.nan  # the duplicate's box: dropped, the person stays
    det = YoloDetector(_yolo_model(tmp_path / "some.onnx", some.T[None]), threads=1).detect(
        np.zeros((64, 64, 3), np.uint8)
    )
    assert len(det) == 1 and det.scores[0] == pytest.approx(0.9)
    assert "dropped 1 detection rows with NaN/inf values" in caplog.text
    broken = YoloDetector(
        _yolo_model(tmp_path / "nan.onnx", np.full_like(_CANDIDATES, np.nan).T[None]), threads=1
    )
    with pytest.raises(ArtifactError, match=r"nan\.onnx: every detection row is NaN or infinite"):
        broken.detect(np.zeros((64, 64, 3), np.uint8))


def test_a_closed_yolo_detector_released_its_session_and_says_so(tmp_path: Path) -> None:
    from vireid import StreamError

    model = _yolo_model(tmp_path / "v8.onnx", _CANDIDATES.T[None])
    with YoloDetector(model, threads=1) as detector:
        assert len(detector.detect(np.zeros((64, 64, 3), np.uint8)))
    assert detector._session is None
    detector.close()  # idempotent
    with pytest.raises(StreamError, match="was closed"):
        detector.detect(np.zeros((64, 64, 3), np.uint8))


def test_yolo_dynamic_input_uses_imgsz(tmp_path: Path) -> None:
    model = _yolo_model(tmp_path / "dyn.onnx", _CANDIDATES.T[None], size=None)
    detector = YoloDetector(model, imgsz=(64, 64), threads=1)
    assert detector.input_size == (64, 64)
    assert len(detector.detect(np.zeros((64, 64, 3), np.uint8))) == 1


def test_yolo_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such detector model"):
        YoloDetector(tmp_path / "missing.onnx")
    model = _yolo_model(tmp_path / "v8.onnx", _CANDIDATES.T[None])
    with pytest.raises(ArtifactError, match="fewer than class index 5"):
        YoloDetector(model, classes=(5,), threads=1).detect(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InputSpecError, match="layout"):
        YoloDetector(model, layout="v3")
    # an end-to-end export (NMS inside: x1, y1, x2, y2, score, class) read as v5 found nobody (person
    # class 0 x score = 0) or gave a car with score 1.76: refused when it is opened
    end_to_end = np.zeros((1, 300, 6), np.float32)
    end_to_end[0, :2] = [[10, 10, 30, 50, 0.92, 0], [40, 15, 60, 60, 0.88, 2]]
    nms_inside = _yolo_model(tmp_path / "e2e.onnx", end_to_end)
    with pytest.raises(ArtifactError, match=r"output \[1, 300, 6\] looks like an export with NMS inside"):
        YoloDetector(nms_inside, threads=1)
    # forced as v5 (a user's choice), impossible scores still stop it rather than mislabel a car
    with pytest.raises(ArtifactError, match=r"scores outside \[0, 1\]"):
        YoloDetector(nms_inside, layout="v5", threads=1).detect(np.zeros((64, 64, 3), np.uint8))


def _batch_yolo_model(
    path: Path, fixed_batch_in_graph: bool = False, reshape: list[int] | None = None
) -> Path:
    """A v8-layout model with a dynamic batch whose person box moves with each image's brightness:
    output[n] = `_CANDIDATES.T` with the person's cx shifted by 10 x the mean of image n (0..1). With
    `fixed_batch_in_graph` the input still says dynamic but a Reshape pins the batch at 1 (what some
    hand-edited exports do); `reshape` gives that Reshape's target shape instead."""
    shift = np.zeros((1, 6, 10), np.float32)
    shift[0, 0, 0] = 10.0
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),  # [N, 1, 1, 1]
        helper.make_node("Reshape", ["mean", "per_image"], ["mean3"]),
        helper.make_node("Mul", ["mean3", "shift"], ["moved"]),
        helper.make_node("Add", ["table", "moved"], ["output0"]),
    ]
    per_image = reshape or ([1, 1, 1] if fixed_batch_in_graph else [-1, 1, 1])
    graph = helper.make_graph(
        nodes,
        "yolo_batch_fixture",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 6, 10])],
        initializer=[
            numpy_helper.from_array(_CANDIDATES.T[None].astype(np.float32), "table"),
            numpy_helper.from_array(shift, "shift"),
            numpy_helper.from_array(np.array(per_image, np.int64), "per_image"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _frames_of_two_brightnesses() -> list[np.ndarray]:
    """A dark colour frame at the model's size and a bright grey one twice as large (scale 0.5); no
    letterbox padding, so each input's mean is 0 or 1."""
    return [np.zeros((64, 64, 3), np.uint8), np.full((128, 128), 255, np.uint8)]


def test_yolo_detects_several_frames_in_one_batched_inference(tmp_path: Path) -> None:
    assert not YoloDetector(_batch_yolo_model(tmp_path / "dyn.onnx"), threads=1).batchable  # CPU default
    detector = YoloDetector(tmp_path / "dyn.onnx", threads=1, max_batch=16)
    assert detector.batchable
    runs: list[np.ndarray] = []
    detector._session = _CountingSession(detector._session, runs)
    images = _frames_of_two_brightnesses()
    batch = detector.detect_batch(images)
    assert [len(b) for b in runs] == [2]  # both frames in one inference
    alone = [detector.detect(image) for image in images]
    assert [len(b) for b in runs] == [2, 1, 1]
    for together, single in zip(batch, alone, strict=True):
        np.testing.assert_allclose(together.boxes, single.boxes, atol=1e-4)
        np.testing.assert_allclose(together.scores, single.scores, atol=1e-6)
    # each image got its own output: the bright one's person moved right by 10 input px
    np.testing.assert_allclose(batch[0].boxes[0], [24, 16, 40, 48], atol=1e-4)
    np.testing.assert_allclose(batch[1].boxes[0], [68, 32, 100, 96], atol=1e-4)


def test_yolo_batches_are_capped_by_max_batch_and_a_batch_1_model_runs_frame_by_frame(tmp_path: Path) -> None:
    capped = YoloDetector(_batch_yolo_model(tmp_path / "dyn.onnx"), threads=1, max_batch=2)
    runs: list[np.ndarray] = []
    capped._session = _CountingSession(capped._session, runs)
    assert len(capped.detect_batch([np.zeros((64, 64, 3), np.uint8)] * 5)) == 5
    assert [len(b) for b in runs] == [2, 2, 1]
    fixed = YoloDetector(_yolo_model(tmp_path / "b1.onnx", _CANDIDATES.T[None]), threads=1, max_batch=8)
    assert not fixed.batchable
    found = fixed.detect_batch([np.zeros((64, 64, 3), np.uint8)] * 3)
    assert [len(d) for d in found] == [1, 1, 1]
    with pytest.raises(InputSpecError, match="max_batch must be at least 1"):
        YoloDetector(tmp_path / "dyn.onnx", max_batch=0)


def test_a_batch_that_fails_where_single_frames_work_halves_the_batch_with_a_warning(
    tmp_path: Path, caplog, capfd
) -> None:
    """A model whose input says dynamic but whose graph pins the batch at 1 (or a batch too large for
    the GPU): the batch is halved until it runs; the frames are detected meanwhile, each its own."""
    pinned = _batch_yolo_model(tmp_path / "pinned.onnx", fixed_batch_in_graph=True)
    detector = YoloDetector(pinned, threads=1, max_batch=4)
    assert detector.batchable  # the input says so
    dark, bright = _frames_of_two_brightnesses()
    found = detector.detect_batch([dark, bright, dark, bright])
    assert detector.max_batch == 2 and detector.batchable
    assert "a batch of 4 frames failed" in caplog.text and "at most 2 frames at a time" in caplog.text
    np.testing.assert_allclose(found[1].boxes[0], [68, 32, 100, 96], atol=1e-4)  # still each its own
    np.testing.assert_allclose(found[2].boxes[0], [24, 16, 40, 48], atol=1e-4)
    caplog.clear()
    assert len(detector.detect_batch([dark, bright])) == 2
    assert not detector.batchable and "one frame at a time" in caplog.text
    caplog.clear()
    assert len(detector.detect_batch([dark, bright])) == 2 and "failed" not in caplog.text  # said once
    assert "[E:onnxruntime" not in capfd.readouterr().err  # ONNX Runtime's own error print is silenced


def test_an_error_that_single_frames_hit_too_is_raised_and_batching_stays(tmp_path: Path) -> None:
    # a graph that fails at run time whatever the batch (its reshape needs a multiple of 5 frames)
    broken = _batch_yolo_model(tmp_path / "broken.onnx", reshape=[5, -1, 1])
    detector = YoloDetector(broken, threads=1, max_batch=4)
    with pytest.raises(Exception, match="Reshape"):
        detector.detect_batch(_frames_of_two_brightnesses())
    assert detector.batchable and detector.max_batch == 4


def test_an_output_without_its_batch_axis_works_and_a_wrong_batch_is_named(tmp_path: Path) -> None:
    flat = YoloDetector(_yolo_model(tmp_path / "flat.onnx", _CANDIDATES.T), threads=1)  # [4 + 2, 10]
    assert len(flat.detect(np.zeros((64, 64, 3), np.uint8))) == 1
    single = _yolo_model(tmp_path / "one.onnx", _CANDIDATES.T[None], batch="N")
    one = YoloDetector(single, threads=1, max_batch=2)
    assert one.batchable  # and always answers with one result
    with pytest.raises(ArtifactError, match=r"2 input frame\(s\) gave an output of shape \(1, 6, 10\)"):
        one._run(np.zeros((2, 3, 64, 64), np.float32))


def test_the_pipeline_detects_every_cameras_frame_in_one_batched_call(
    tmp_path: Path, contract_model: Path
) -> None:
    detector = YoloDetector(_batch_yolo_model(tmp_path / "dyn.onnx"), threads=1, max_batch=4)
    runs: list[np.ndarray] = []
    detector._session = _CountingSession(detector._session, runs)
    cameras = [VideoSource("a.mp4", "visible", "a"), VideoSource("b.mp4", "infrared", "b")]
    with Embedder(contract_model, device="cpu", threads=1) as embedder:
        pipeline = Pipeline(cameras, embedder, detector=detector)
        dark, bright = _frames_of_two_brightnesses()
        for i in range(3):
            pipeline.step([Frame.of(dark, "visible", "a", i), Frame.of(bright, "infrared", "b", i)])
        stages = pipeline.stats().stages
        boxes = {
            cam: [r.box.tolist() for r in pipeline.matcher.records.values() if r.camera == cam]
            for cam in "ab"
        }
        pipeline.stop()
    assert [len(b) for b in runs] == [2, 2, 2]  # one inference per round for both cameras
    assert stages["detect"].count == 6  # still one `detect` sample per frame (each its share)
    # each camera tracks what its own frame's output holds: in the dark frame the person and its
    # duplicate overlap (one box after NMS); in the bright one the person moved 10 input px off its
    # duplicate (two boxes), at scale 0.5
    assert np.allclose(boxes["a"], [[24, 16, 40, 48]], atol=0.5)
    assert np.allclose(sorted(boxes["b"]), [[50, 34, 82, 98], [68, 32, 100, 96]], atol=0.5)


def test_a_batch_detector_returning_the_wrong_number_of_results_is_named(contract_model: Path) -> None:
    class Short(CallerBoxes):
        def detect_batch(self, images, frames=None):
            return [Detections.empty()]

    cameras = [VideoSource("a.mp4", "visible", "a"), VideoSource("b.mp4", "infrared", "b")]
    image = np.zeros((64, 64, 3), np.uint8)
    with Embedder(contract_model, device="cpu", threads=1) as embedder:
        pipeline = Pipeline(cameras, embedder, detector=Short(lambda f: []))
        with pytest.raises(InputSpecError, match=r"Short\.detect_batch returned 1 results for 2 frames"):
            pipeline.step([Frame.of(image, "visible", "a", 0), Frame.of(image, "infrared", "b", 0)])
        pipeline.stop()


class _CountingSession:
    """Wraps a real ONNX Runtime session, recording each run's input batch (the detector's calls)."""

    def __init__(self, session, runs: list) -> None:
        self._session, self._runs = session, runs

    def run(self, outputs, feeds, options=None):
        self._runs.append(next(iter(feeds.values())))
        return self._session.run(outputs, feeds, options)

    def __getattr__(self, name: str):
        return getattr(self._session, name)


# ----- caller boxes -------------------------------------------------------------------------------
def test_caller_boxes_accept_arrays_scores_and_detections() -> None:
    frame = Frame.of(np.zeros((100, 100, 3), np.uint8), "visible", index=3)
    assert CallerBoxes(lambda f: [[0, 0, 10, 10]]).detect(frame.image, frame).scores.tolist() == [1.0]
    assert CallerBoxes(lambda f: [[0, 0, 10, 10, 0.3]]).detect(frame.image, frame).scores.tolist() == [
        pytest.approx(0.3)
    ]
    assert len(CallerBoxes(lambda f: None).detect(frame.image, frame)) == 0
    given = Detections([[1, 1, 5, 5]], [0.7])
    assert CallerBoxes(lambda f: given).detect(frame.image, frame) is given
    with pytest.raises(InputSpecError, match=r"\(K, 4\) or \(K, 5\)"):
        CallerBoxes(lambda f: [[1, 2, 3]]).detect(frame.image, frame)
    with pytest.raises(InputSpecError, match="needs the Frame"):
        CallerBoxes(lambda f: []).detect(frame.image)


def test_box_scoring_counts_a_duplicate_on_a_matched_person_as_false() -> None:
    """An unmatched box overlapping any person used to be excused, so a detector that doubled every
    person kept precision 1.0; only a box on someone no other box matched is excused now."""
    people = [
        {"box": [10, 10, 50, 130], "visibility": 1.0},
        {"box": [200, 10, 240, 130], "visibility": 0.3},  # mostly hidden: not required, not matched
    ]
    score = BoxScore()
    boxes = np.array([[10, 10, 50, 130], [12, 14, 52, 126], [205, 60, 240, 130], [400, 10, 440, 130]])
    score_boxes(people, boxes, score, 0.5, 0.9)
    # matched: box 0 with person 0, box 2 with the partly hidden person 1 (IoU 0.51; not required)
    assert (score.required, score.matched_required, score.predicted) == (1, 1, 4)
    assert score.false_positives == 2  # the duplicate on person 0, and the box on nobody
