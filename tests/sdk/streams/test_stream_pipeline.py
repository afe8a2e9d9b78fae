"""The pipeline end to end: a generated scene scored against ground truth, sinks, lifecycle, failure
isolation and configuration errors. Embeddings come from the contract model, or from an oracle that
knows who is in each box (`vireid.bench.scene.Oracle`, a fake named as such) where identities must be
right."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from contract_model import build_contract_model, contract_card
from fake_capture import LiveCaptureFaked

from vireid import ConfigError, Embedder, Gallery, GalleryError, InputSpecError, StreamError
from vireid.bench.scene import (
    CameraTracks,
    Oracle,
    SceneTruth,
    name_of,
    score_cross_modal,
    score_identification,
)
from vireid.streams import (
    CallbackSink,
    CallerBoxes,
    Frame,
    JsonlSink,
    Pipeline,
    PipelineConfig,
    Sink,
    SourceState,
    TrackEnded,
    TrackStarted,
    VideoSink,
    VideoSource,
    event_from_dict,
)


@pytest.fixture(scope="module")
def embedder(contract_model: Path):
    with Embedder(contract_model, device="cpu", threads=1) as e:
        yield e


class OraclePipeline(Pipeline):
    """Embeddings from the ground truth instead of the model (fake, for testing the matching logic)."""

    oracle: Oracle

    def embed_crops(self, requests):
        return np.stack(
            [
                self.oracle.vector(
                    self.oracle.person_at(r.frame.camera, r.frame.index, r.box), str(r.frame.modality)
                )
                for r in requests
            ]
        )


def scene_sources(scene: Path) -> list[VideoSource]:
    return [VideoSource(scene / f"{c}.mp4", c, c, realtime=False) for c in ("visible", "infrared")]


def test_scene_identification_against_ground_truth(scene: Path, embedder: Embedder, tmp_path: Path) -> None:
    """Ground-truth boxes + oracle embeddings: the matcher names infrared tracks from a visible gallery."""
    truth = SceneTruth.load(scene)
    oracle = Oracle(truth, 64, noise=0.2)
    gallery = Gallery(":memory:", embedding_space=embedder.embedding_space, dim=64)
    for pid in oracle.basis:
        gallery.enroll(name_of(pid), np.stack([oracle.vector(pid, "visible") for _ in range(5)]), "visible")
    scored = {c: CameraTracks() for c in ("visible", "infrared")}

    def on_frame(result) -> None:
        boxes = np.array([t.box for t in result.tracks]).reshape(-1, 4)
        objects = truth.objects(result.frame.camera, result.frame.index)
        scored[result.frame.camera].add(
            objects, result.detections.boxes, [t.track_id for t in result.tracks], boxes
        )

    events = []
    detector = CallerBoxes(
        lambda f: [o["box"] for o in truth.objects(f.camera, f.index) if o["visibility"] >= 0.3]
    )
    sinks = [
        CallbackSink(lambda e: events.append(e.to_dict()), on_frame),
        JsonlSink(tmp_path / "events.jsonl"),
    ]
    pipeline = OraclePipeline(scene_sources(scene), embedder, gallery=gallery, sinks=sinks, detector=detector)
    pipeline.oracle = oracle
    stats = pipeline.run(handle_signals=False)
    assert {c: s.processed for c, s in stats.cameras.items()} == {"visible": 120, "infrared": 120}
    ident = score_identification("infrared", events, scored["infrared"], 10)
    assert ident.people == 3
    assert ident.precision >= 0.9 and ident.recall >= 0.8, ident
    cross = score_cross_modal(events, scored["visible"], scored["infrared"], 10)
    assert cross.matches >= 1 and cross.precision >= 0.9, cross
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [event_from_dict(json.loads(line)).to_dict() for line in lines] == events


def test_motion_pipeline_writes_every_sink_and_ends_every_track(
    scene: Path, embedder: Embedder, tmp_path: Path
) -> None:
    got = []
    sinks = [JsonlSink(tmp_path / "out" / "events.jsonl"), VideoSink(tmp_path / "video")]
    with Pipeline(scene_sources(scene), embedder, sinks=sinks, on_event=got.append) as pipeline:
        deadline = time.monotonic() + 30
        while not all(s.finished for s in pipeline.sources) and time.monotonic() < deadline:
            time.sleep(0.05)
    stats = pipeline.stats()
    events = [
        event_from_dict(json.loads(line))
        for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()
    ]
    assert [e.to_dict() for e in events] == [e.to_dict() for e in got]
    started = {(e.camera, e.track_id) for e in events if isinstance(e, TrackStarted)}
    ended = {(e.camera, e.track_id) for e in events if isinstance(e, TrackEnded)}
    assert len(started) >= 3 and started == ended
    assert {e.state for e in events if e.kind == "source"} >= {"live", "ended"}
    for camera in ("visible", "infrared"):
        cap = cv2.VideoCapture(str(tmp_path / "video" / f"{camera}.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == stats.cameras[camera].processed == 120
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(15.0)
    assert stats.stages["detect"].count == 240 and stats.stages["embed"].count >= 1
    assert stats.realtime_factor > 0 and "visible" in stats.status_line()


def test_an_infrared_camera_sending_colour_frames_is_flagged_once(embedder: Embedder, caplog) -> None:
    cameras = [VideoSource("unused-a.mp4", "visible", "a"), VideoSource("unused-b.mp4", "infrared", "b")]
    pipeline = Pipeline(cameras, embedder, detector=CallerBoxes(lambda f: []))
    colour = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    grey = np.repeat(colour[:, :, :1], 3, axis=2)
    with caplog.at_level("WARNING", logger="vireid"):
        for i in range(3):
            pipeline.step([Frame.of(colour, "visible", "a", i), Frame.of(colour, "infrared", "b", i)])
    assert (
        caplog.text.count("declared infrared but its frames are in colour") == 1 and "camera b" in caplog.text
    )
    caplog.clear()
    quiet = Pipeline(cameras, embedder, detector=CallerBoxes(lambda f: []))
    with caplog.at_level("WARNING", logger="vireid"):
        quiet.step([Frame.of(grey, "visible", "a", 0), Frame.of(grey, "infrared", "b", 0)])
    assert "in colour" not in caplog.text  # grey infrared frames, and grey visible ones (night) are fine
    pipeline.stop()
    quiet.stop()


def test_step_drives_the_pipeline_with_caller_frames_and_boxes(embedder: Embedder) -> None:
    cameras = [VideoSource("unused-a.mp4", "visible", "a"), VideoSource("unused-b.mp4", "infrared", "b")]
    pipeline = Pipeline(cameras, embedder, detector=CallerBoxes(lambda f: [[10, 20, 50, 120]]))
    image = np.random.default_rng(0).integers(0, 255, (160, 120, 3), dtype=np.uint8)
    events = []
    for i in range(3):
        events += pipeline.step([Frame.of(image, "visible", "a", i), Frame.of(image, "infrared", "b", i)])
    assert sorted((e.camera, e.track_id) for e in events if isinstance(e, TrackStarted)) == [
        ("a", 1),
        ("b", 1),
    ]
    assert pipeline.stats().stages["embed"].count >= 1
    pipeline.stop()
    pipeline.stop()  # idempotent


def test_a_failing_sink_is_dropped_and_the_rest_keep_working(scene: Path, embedder: Embedder) -> None:
    class Broken(Sink):
        def on_frame(self, result) -> None:
            raise RuntimeError("disk full")

    frames = []
    pipeline = Pipeline(
        scene_sources(scene), embedder, sinks=[Broken(), CallbackSink(on_frame=frames.append)]
    )
    pipeline.run(handle_signals=False)
    assert len(frames) == 240 and len(pipeline.sinks) == 1
    assert [type(sink).__name__ for sink in pipeline.dropped_sinks] == ["Broken"]  # reported, not silent


def test_a_sink_raising_a_vireid_error_is_dropped_too_and_the_status_line_says_so(
    scene: Path, embedder: Embedder
) -> None:
    """A snapshot sink hitting a full disk raises StreamError: it used to stop every camera."""

    class DiskFull(Sink):
        def __repr__(self) -> str:
            return "DiskFull()"

        def on_frame(self, result) -> None:
            raise StreamError("cannot write snapshots/x.jpg: No space left on device")

    frames = []
    pipeline = Pipeline(
        scene_sources(scene), embedder, sinks=[DiskFull(), CallbackSink(on_frame=frames.append)]
    )
    stats = pipeline.run(handle_signals=False)
    assert len(frames) == 240 and [repr(s) for s in pipeline.dropped_sinks] == ["DiskFull()"]
    assert stats.dropped_sinks == ("DiskFull()",) and "FAILED output: DiskFull()" in stats.status_line()
    assert pipeline.error is None and not pipeline.running


def test_a_dead_processing_thread_is_visible_to_callers_of_start(scene: Path, embedder: Embedder) -> None:
    def broken_boxes(frame):
        raise RuntimeError("detector crashed")

    pipeline = Pipeline(scene_sources(scene), embedder, detector=CallerBoxes(broken_boxes))
    with pipeline:
        deadline = time.monotonic() + 30
        while pipeline.running and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not pipeline.running
        assert isinstance(pipeline.error, RuntimeError) and "detector crashed" in str(pipeline.error)


def test_a_failed_constructor_closes_the_gallery_it_opened(tmp_path: Path, embedder: Embedder) -> None:
    from vireid.gallery.store import _OPEN_FILES

    path = tmp_path / "g.db"
    Gallery(path, embedding_space=embedder.embedding_space, dim=embedder.dim).close()
    bad_tracker = PipelineConfig(tracker={"track_buffer": -1})
    for _ in range(3):
        with pytest.raises(InputSpecError, match="track_buffer"):
            Pipeline(["visible=a.mp4"], embedder, gallery=path, config=bad_tracker)
    assert not _OPEN_FILES.holds(path)  # every failed construction released its connection


def test_the_pipeline_closes_a_detector_it_built_and_leaves_a_given_one_open(
    embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vireid.streams.pipeline as pipeline_module

    class Closable(CallerBoxes):
        closed = 0

        def close(self) -> None:
            self.closed += 1

    built = Closable(lambda frame: np.zeros((0, 4)))
    monkeypatch.setattr(pipeline_module, "make_detector", lambda name, **options: built)
    Pipeline(["visible=a.mp4"], embedder).stop()
    assert built.closed == 1
    given = Closable(lambda frame: np.zeros((0, 4)))
    Pipeline(["visible=a.mp4"], embedder, detector=given).stop()
    assert given.closed == 0  # the caller's: the caller closes it


def test_a_camera_changing_resolution_restarts_alone(embedder: Embedder) -> None:
    """A camera that reconnects with another stream profile used to stop every camera (the motion
    detector refused the new size); now its tracks end and its detector restarts."""
    from vireid.streams.detect.motion import MotionDetector

    cameras = [VideoSource("unused-a.mp4", "visible", "a"), VideoSource("unused-b.mp4", "infrared", "b")]
    pipeline = Pipeline(cameras, embedder, detector=MotionDetector())
    rng = np.random.default_rng(0)
    small, large = (rng.integers(0, 255, (h, w), dtype=np.uint8) for h, w in ((120, 160), (240, 320)))
    for i in range(3):
        pipeline.step([Frame.of(small, "visible", "a", i), Frame.of(small, "infrared", "b", i)])
    pipeline.step([Frame.of(large, "visible", "a", 3), Frame.of(small, "infrared", "b", 3)])
    assert pipeline.stats().cameras["a"].processed == 4 and pipeline.stats().cameras["b"].processed == 4
    pipeline.stop()


def test_a_cameras_two_frames_in_one_step_are_processed_in_order_across_a_size_change(
    embedder: Embedder,
) -> None:
    """Frames of a round are detected together, but a camera's second frame starts a new round: it
    is detected after its first was tracked, and a size change between them restarts the camera."""
    from vireid.streams.detect.motion import MotionDetector

    cameras = [VideoSource("unused-a.mp4", "visible", "a")]
    rng = np.random.default_rng(0)
    small, large = (rng.integers(0, 255, (h, w), dtype=np.uint8) for h, w in ((120, 160), (240, 320)))
    motion = Pipeline(cameras, embedder, detector=MotionDetector())
    frames = (Frame.of(img, "visible", "a", i) for i, img in enumerate([small, small, large]))
    motion.step(frames)  # a generator, one pass
    assert motion.stats().cameras["a"].processed == 3
    motion.stop()
    boxes = Pipeline(cameras, embedder, detector=CallerBoxes(lambda f: [[10, 20, 50, 110]]))
    boxes.step([Frame.of(small, "visible", "a", 0)])
    events = boxes.step([Frame.of(small, "visible", "a", 1), Frame.of(large, "visible", "a", 2)])
    kinds = [(type(e).__name__, e.track_id) for e in events if isinstance(e, (TrackStarted, TrackEnded))]
    assert kinds == [("TrackEnded", 1), ("TrackStarted", 2)]
    boxes.stop()


def test_crops_of_a_track_a_later_round_ended_are_not_embedded(embedder: Embedder) -> None:
    """A camera's size change in the second round of a step ends the tracks of its first: their crops
    would take the embedding slots (`max_crops`) of live tracks."""

    class Recording(Pipeline):
        def embed_crops(self, requests):
            asked.append(sorted({r.key for r in requests}))
            return super().embed_crops(requests)

    asked: list[list[tuple[str, int]]] = []
    cameras = [VideoSource("unused-a.mp4", "visible", "a")]
    rng = np.random.default_rng(0)
    small, large = (rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((120, 160), (240, 320)))
    config = PipelineConfig(embed_every=1)  # every live track asks for a crop on every frame
    pipeline = Recording(
        cameras, embedder, config=config, detector=CallerBoxes(lambda f: [[10, 20, 50, 110]])
    )
    for i in range(3):
        pipeline.step([Frame.of(small, "visible", "a", i)])
    assert asked[-1] == [("a", 1)]  # track 1 is embedded
    pipeline.step([Frame.of(small, "visible", "a", 3), Frame.of(large, "visible", "a", 4)])
    assert all(("a", 1) not in keys for keys in asked[3:])  # its round-1 crop was dropped: it ended
    pipeline.stop()


def test_a_bad_frame_anywhere_in_a_step_is_refused_before_any_is_processed(embedder: Embedder) -> None:
    cameras = [VideoSource("unused-a.mp4", "visible", "a")]
    pipeline = Pipeline(cameras, embedder, detector=CallerBoxes(lambda f: [[10, 20, 50, 110]]))
    image = np.zeros((120, 160, 3), np.uint8)
    with pytest.raises(InputSpecError, match="unknown camera 'z'"):
        pipeline.step([Frame.of(image, "visible", "a", 0), Frame.of(image, "visible", "z", 0)])
    assert pipeline.stats().cameras["a"].processed == 0 and not pipeline.matcher.records
    pipeline.stop()


def test_stop_from_an_event_callback_still_closes_every_output(
    scene: Path, embedder: Embedder, tmp_path
) -> None:
    """`stop()` on the processing thread could not join itself: the error was swallowed, sinks were
    never closed and started tracks never ended."""
    events = []

    def on_event(event) -> None:
        events.append(event)
        if isinstance(event, TrackStarted):
            pipeline.stop()

    sink = JsonlSink(tmp_path / "events.jsonl")
    pipeline = Pipeline(scene_sources(scene), embedder, sinks=[sink], on_event=on_event)
    pipeline.run(handle_signals=False)
    started = {(e.camera, e.track_id) for e in events if isinstance(e, TrackStarted)}
    ended = {(e.camera, e.track_id) for e in events if isinstance(e, TrackEnded)}
    assert started and started == ended and not pipeline.dropped_sinks
    assert sink.closed and len((tmp_path / "events.jsonl").read_text().splitlines()) == sink.lines


def test_a_one_frame_file_ends_every_track_it_started(embedder: Embedder, tmp_path: Path) -> None:
    """The camera of a file used to be closed in the round that polled its last frame, before that
    frame was processed: a track started on it was never ended."""
    image = np.zeros((160, 120, 3), np.uint8)
    paths = []
    for camera in ("a", "b"):
        paths.append(tmp_path / f"{camera}.png")
        cv2.imwrite(str(paths[-1]), image)

    class SlowPoll(VideoSource):  # a busy loop: by the time it takes the frame, the reader has ended
        def poll(self):
            time.sleep(0.2)
            return super().poll()

    cameras = [SlowPoll(paths[0], "visible", "a"), SlowPoll(paths[1], "infrared", "b")]
    events = []
    pipeline = Pipeline(
        cameras, embedder, detector=CallerBoxes(lambda f: [[10, 20, 50, 120]]), on_event=events.append
    )
    pipeline.run(handle_signals=False)
    started = {(e.camera, e.track_id) for e in events if isinstance(e, TrackStarted)}
    ended = {(e.camera, e.track_id) for e in events if isinstance(e, TrackEnded)}
    assert started == {("a", 1), ("b", 1)} and ended == started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_source_never_stops_the_others(scene: Path, embedder: Embedder) -> None:
    def exploding_opener(*args):
        raise RuntimeError("driver crashed")

    dead_url = VideoSource(
        f"rtsp://127.0.0.1:{_free_port()}/none", "infrared", "ir-net", backoff=(0.05, 0.2), open_timeout=1
    )
    crashing = VideoSource("0", "infrared", "ir-usb", opener=exploding_opener, backoff=(0.05, 0.2))
    good = VideoSource(scene / "visible.mp4", "visible", "vis", realtime=False)
    events = []
    pipeline = Pipeline([dead_url, crashing, good], embedder, on_event=events.append)
    pipeline.start()
    deadline = time.monotonic() + 30
    while pipeline.stats().cameras["vis"].processed < 120 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    stats = pipeline.stats()
    pipeline.stop()
    assert stats.cameras["vis"].processed == 120
    states = {s.camera: s.state for s in stats.sources}
    assert states["ir-net"] in (SourceState.RECONNECTING, SourceState.CONNECTING)
    assert states["ir-usb"] in (SourceState.RECONNECTING, SourceState.CONNECTING)
    assert "driver crashed" in {s.camera: s.error for s in stats.sources}["ir-usb"]
    assert any(e.kind == "source" and e.camera == "ir-net" and e.state == "reconnecting" for e in events)
    assert any(isinstance(e, TrackEnded) and e.camera == "vis" for e in events)


def test_configuration_errors(tmp_path: Path, scene: Path, embedder: Embedder) -> None:
    no_threshold = build_contract_model(
        tmp_path / "nothr.onnx", height=64, width=32, card=contract_card(64, 32, match_threshold=None)
    )
    with pytest.raises(ConfigError, match="no match_threshold"):
        Pipeline(["visible=a.mp4"], no_threshold, device="cpu")
    Pipeline(["visible=a.mp4"], no_threshold, device="cpu", config=PipelineConfig(threshold=0.4)).stop()
    visible_only = build_contract_model(
        tmp_path / "vis.onnx", height=64, width=32, card=contract_card(64, 32, modalities=("visible",))
    )
    with pytest.raises(ConfigError, match="takes visible crops only"):
        Pipeline(["ir=a.mp4"], visible_only, device="cpu")
    with pytest.raises(ConfigError, match="camera id 'visible'"):
        Pipeline(["visible=a.mp4", "rgb=b.mp4"], embedder)
    with pytest.raises(ConfigError, match="at least one source"):
        Pipeline([], embedder)
    with pytest.raises(ConfigError, match="unknown detector"):
        Pipeline(["visible=a.mp4"], embedder, config=PipelineConfig(detector="hog"))
    other = Gallery(tmp_path / "other.db", embedding_space="another-model", dim=16)
    other.close()
    with pytest.raises(GalleryError, match="another-model"):
        Pipeline(["visible=a.mp4"], embedder, gallery=tmp_path / "other.db")
    with pytest.raises(StreamError, match="no such file"):
        Pipeline([f"visible={tmp_path / 'missing.mp4'}"], embedder).run(handle_signals=False)


def _matcher_of(tmp_path: Path, card, config: PipelineConfig | None = None):
    """The matcher a pipeline builds for a real ONNX model with this card."""
    model = build_contract_model(tmp_path / "m.onnx", height=64, width=32, card=card)
    with Embedder(model, "cpu") as embedder:
        gallery = Gallery(tmp_path / "g.db", embedding_space=embedder.embedding_space, dim=16)
        pipeline = Pipeline(["visible=a.mp4"], embedder, gallery=gallery, config=config)
        pipeline.stop()
        gallery.close()
    (tmp_path / "g.db").unlink()
    return pipeline.matcher


def test_cross_modal_threshold_is_the_cards_for_track_means_unless_overridden(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The matcher compares track means with centroids, where impostors score higher than single
    images: the card's estimate for that comparison is the default when it resolves the target rate."""
    track = {"threshold_for_target": 0.61234, "impostor_pairs": 7600}
    card = contract_card(64, 32, match_threshold_fmr=1e-3, match_threshold_data={"track_means": track})
    with caplog.at_level("INFO", logger="vireid"):
        matcher = _matcher_of(tmp_path, card)
    assert matcher.threshold == 0.6124  # rounded up, never down
    assert matcher.cross_threshold == 0.5  # track pairs: single-image, as mutual best matches
    assert "cross-modal threshold 0.6124: the card's for track means" in caplog.text
    assert "(single images: 0.5000)" in caplog.text
    given = _matcher_of(tmp_path, card, PipelineConfig(threshold=0.55))
    assert given.threshold == 0.55 and given.cross_threshold == 0.55
    both = _matcher_of(tmp_path, card, PipelineConfig(threshold=0.55, cross_threshold=0.7))
    assert both.threshold == 0.55 and both.cross_threshold == 0.7
    few = card.replace(match_threshold_data={"track_means": {**track, "impostor_pairs": 500}})
    assert _matcher_of(tmp_path, few).threshold == 0.5  # 500 comparisons cannot resolve 1e-3
    assert _matcher_of(tmp_path, contract_card(64, 32)).threshold == 0.5  # a card without the estimate


def test_same_modality_thresholds_come_from_the_card_unless_overridden(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def matcher_of(card, config: PipelineConfig | None = None):
        return _matcher_of(tmp_path, card, config)

    within = {"visible": 0.8, "infrared": 0.75}
    matcher = matcher_of(contract_card(64, 32, match_threshold_within=within))
    assert matcher.threshold == 0.5 and {str(k): v for k, v in matcher.within_threshold.items()} == within
    config = PipelineConfig(threshold=0.4, within_threshold=0.9)
    matcher = matcher_of(contract_card(64, 32, match_threshold_within=within), config)
    assert matcher.threshold == 0.4 and set(matcher.within_threshold.values()) == {0.9}
    with caplog.at_level("WARNING", logger="vireid"):
        matcher = matcher_of(contract_card(64, 32))  # exported before same-modality calibration
    assert set(matcher.within_threshold.values()) == {0.5}
    assert "no same-modality threshold for visible and infrared" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="vireid"):
        matcher = matcher_of(contract_card(64, 32, match_threshold_within={"visible": 0.8}))
    assert {str(k): v for k, v in matcher.within_threshold.items()} == {"visible": 0.8, "infrared": 0.5}
    assert "no same-modality threshold for infrared" in caplog.text


def test_snapshot_sink_keeps_spaced_named_frames_up_to_its_limit(tmp_path: Path) -> None:
    from vireid.modality import Modality
    from vireid.streams import Detections, FrameResult, SnapshotSink, TrackView

    sink = SnapshotSink(tmp_path / "frames", every=3, limit=2)
    image = np.zeros((48, 64, 3), np.uint8)
    for index in range(12):
        name = "id1" if index >= 4 else None  # nobody named in the first frames
        frame = Frame(image, "ir", Modality.INFRARED, index, time.time(), index / 15)
        tracks = (TrackView(1, (4.0, 4.0, 20.0, 40.0), name, 0.8),)
        sink.on_frame(FrameResult(frame, Detections([[4, 4, 20, 40]], [0.9]), tracks))
    assert [p.name for p in sink.paths["ir"]] == ["ir_000004.jpg", "ir_000007.jpg"]
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["ir_000004.jpg", "ir_000007.jpg"]
    assert cv2.imread(str(sink.paths["ir"][0])).shape == (48, 64, 3)
    assert {p.stat().st_mode & 0o777 for p in sink.paths["ir"]} == {0o600}  # owner-only, as events
    with pytest.raises(InputSpecError, match="every and limit"):
        SnapshotSink(tmp_path, every=0)


def test_track_ids_stay_unique_when_a_camera_restarts(embedder: Embedder) -> None:
    cameras = [VideoSource("unused-a.mp4", "visible", "a"), VideoSource("unused-b.mp4", "infrared", "b")]
    pipeline = Pipeline(cameras, embedder, detector=CallerBoxes(lambda f: [[10, 20, 50, 120]]))
    small, large = np.zeros((160, 120, 3), np.uint8), np.zeros((320, 240, 3), np.uint8)
    events = []
    for i in range(4):
        events += pipeline.step([Frame.of(small, "visible", "a", i)])
    for i in range(4, 8):
        events += pipeline.step([Frame.of(large, "visible", "a", i)])
    pipeline.stop()
    started = [e.track_id for e in events if isinstance(e, TrackStarted)]
    ended = [e.track_id for e in events if isinstance(e, TrackEnded)]
    assert started == [1, 2] and ended[:1] == [1]  # the restarted camera's track is 2, not 1 again


@pytest.mark.parametrize("lost", [SourceState.RECONNECTING, SourceState.STALLED])
def test_a_camera_whose_source_reconnects_ends_its_tracks_and_keeps_ids_unique(
    embedder: Embedder, lost: SourceState
) -> None:
    """The tracker counts frames: after an outage the next frame was `previous + 1`, and whoever stood
    where a track was predicted inherited its id and name. A reconnecting source now restarts its
    camera's detector and tracker (the source's state callback, as its reader thread calls it)."""
    cameras = [VideoSource("unused-a.mp4", "visible", "a"), VideoSource("unused-b.mp4", "infrared", "b")]
    pipeline = Pipeline(cameras, embedder, detector=CallerBoxes(lambda f: [[10, 20, 50, 120]]))
    image = np.zeros((160, 120, 3), np.uint8)
    events = []
    for i in range(4):
        events += pipeline.step([Frame.of(image, "visible", "a", i), Frame.of(image, "infrared", "b", i)])
    cameras[0].on_state(cameras[0], lost, "connection lost")
    events += pipeline._drain_source_events()  # what the processing loop does each round
    ended = [(e.camera, e.track_id) for e in events if isinstance(e, TrackEnded)]
    assert ended == [("a", 1)]  # camera b carries on
    for i in range(4, 8):
        events += pipeline.step([Frame.of(image, "visible", "a", i)])
    pipeline.stop()
    started = [(e.camera, e.track_id) for e in events if isinstance(e, TrackStarted)]
    assert started == [("a", 1), ("b", 1), ("a", 2)]  # a new track after the outage, with a new id


class _DyingCapture:
    """A FAKE capture: a camera that delivers `frames` frames, then its stream ends for good."""

    def __init__(self, frames: int = 30) -> None:
        self.frames = frames

    def isOpened(self) -> bool:  # OpenCV's name
        return True

    def read(self) -> tuple[bool, np.ndarray]:
        time.sleep(0.005)
        self.frames -= 1
        return self.frames > 0, np.zeros((60, 80, 3), np.uint8)

    def get(self, prop: int) -> float:
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        return True

    def release(self) -> None:
        pass


class _SlowClosingSink(Sink):
    def __init__(self) -> None:
        self.closes, self.ended = 0, 0

    def on_event(self, event) -> None:
        self.ended += isinstance(event, TrackEnded)

    def close(self) -> None:
        time.sleep(0.2)  # a JSONL fsync, a video being finalised
        self.closes += 1


def test_stop_from_a_source_callback_or_a_second_thread_still_closes_every_sink_with_a_fake_capture(
    embedder: Embedder,
) -> None:
    """stop() from a source's on_state callback (its reader thread) marked the pipeline stopped, then
    failed to join that thread: sinks never closed, TrackEnded never sent. A second stop() caller (run()'s
    own) returned while the first was still closing the sinks."""
    sink, holder = _SlowClosingSink(), {}

    def on_state(source, state, message) -> None:  # "the camera died: shut everything down"
        if state in (SourceState.ENDED, SourceState.FAILED):
            holder["pipeline"].stop()

    source = VideoSource("rtsp://camera.invalid/1", "visible", "v", opener=lambda *a: _DyingCapture(),
                         reconnect=False, on_state=on_state)  # fmt: skip
    pipeline = holder["pipeline"] = Pipeline(
        [source], embedder, sinks=[sink], detector=CallerBoxes(lambda f: [[10, 10, 40, 55]])
    )
    pipeline.run(handle_signals=False)
    assert sink.closes == 1 and sink.ended == 1  # run() returned after the sink was closed, once
    pipeline.stop()
    assert sink.closes == 1


def test_stop_returns_the_last_events_to_a_caller_driving_step(embedder: Embedder) -> None:
    """A caller of step() got every TrackStarted but the TrackEnded events went only to sinks."""
    cameras = [VideoSource("unused-a.mp4", "visible", "a")]
    pipeline = Pipeline(cameras, embedder, detector=CallerBoxes(lambda f: [[10, 20, 50, 120]]))
    image = np.zeros((160, 120, 3), np.uint8)
    events = []
    for i in range(4):
        events += pipeline.step([Frame.of(image, "visible", "a", i)])
    last = pipeline.stop()
    assert [(e.camera, e.track_id) for e in last if isinstance(e, TrackEnded)] == [("a", 1)]
    assert pipeline.stop() == []  # once


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"min_quality": -5}, r"min_quality must be in \[0, 1\], got -5"),
        ({"confirm": 0, "margin": float("nan")}, r"confirm must be a whole number .*; margin must be in"),
        ({"threshold": 1.5}, r"threshold is a cosine similarity in \[-1, 1\], got 1.5"),
        ({"within_threshold": {"visible": float("nan")}}, r"within_threshold\['visible'\] is a cosine"),
        ({"identity_score": "mean"}, r"unknown identity score 'mean'; expected one of: max, centroid"),
        ({"gallery_modality": "same"}, r"gallery_modality must be 'any' or 'other'"),
        (
            {"tracker": {"buffer": 30}},
            r"tracker has unknown keys \['buffer'\]; ByteTracker takes \[.*'track_buffer'",
        ),
        (
            {"detector_options": {"thresh": 9}},
            r"detector_options has unknown keys \['thresh'\]; MotionDetector",
        ),
    ],
)
def test_pipeline_config_checks_every_setting_where_it_is_given(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PipelineConfig(**settings)


def test_pipeline_config_options_are_read_only_copies() -> None:
    import dataclasses

    options = {"track_buffer": 30}
    config = PipelineConfig(tracker=options)
    options["track_buffer"] = 1  # the caller's dict is not the config's
    assert config.tracker == {"track_buffer": 30}
    with pytest.raises(TypeError, match="read-only"):
        config.tracker["track_buffer"] = 1  # type: ignore[index]
    assert dataclasses.asdict(config)["tracker"] == {"track_buffer": 30}


def test_a_pipelines_repr_names_its_cameras_model_gallery_and_state(
    tmp_path: Path, embedder: Embedder
) -> None:
    path = tmp_path / "g.db"
    Gallery(path, embedding_space=embedder.embedding_space, dim=embedder.dim).close()
    pipeline = Pipeline(["visible@gate=a.mp4", "ir@yard=b.mp4"], embedder, gallery=path)
    text = repr(pipeline)
    assert text.startswith("Pipeline([gate=visible, yard=infrared], Embedder(") and "g.db" in text
    assert text.endswith(", ready)")
    pipeline.stop()
    assert repr(pipeline).endswith(", stopped)")


def test_pipeline_config_takes_numpy_numbers_but_not_booleans() -> None:
    config = PipelineConfig(margin=np.float32(0.05), embed_every=np.int64(5), threshold=np.float64(0.5))
    assert config.embed_every == 5
    with pytest.raises(ConfigError, match="max_crops must be a whole number of at least 1, got True"):
        PipelineConfig(max_crops=True)


def test_stopping_waits_for_blocked_readers_against_one_deadline_with_a_fake_capture(
    embedder: Embedder,
) -> None:
    """Readers were joined one after another, each for up to read_timeout + 1 s: three hung cameras
    took three times that to stop, past a container runtime's 10 s grace period (then SIGKILL)."""
    sources = [
        VideoSource(
            f"rtsp://camera.invalid/{i}",
            "visible",
            f"c{i}",
            read_timeout=1.0,
            opener=lambda *a: LiveCaptureFaked(hang_after=1, hang=6.0),
        )
        for i in range(3)
    ]
    pipeline = Pipeline(sources, embedder, detector=CallerBoxes(lambda f: []))
    pipeline.start()
    time.sleep(0.5)  # every reader is now blocked in its second read
    assert [source.state.value for source in sources] == ["live"] * 3
    started = time.monotonic()
    pipeline.stop()
    assert time.monotonic() - started < 4.0  # one deadline (2 s), not 3 x 2 s


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this system")
def test_a_hangup_the_process_ignores_stays_ignored(embedder: Embedder, scene: Path) -> None:
    """`nohup vireid run ... &` must keep running after the terminal closes (the pipeline used to take
    SIGHUP over and stop)."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        sources = [VideoSource(scene / f"{c}.mp4", c, c) for c in ("visible", "infrared")]  # real time
        pipeline = Pipeline(sources, embedder, detector=CallerBoxes(lambda f: []))
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGHUP)).start()
        stats = pipeline.run(duration=1.5)
        assert pipeline.stop_signal is None and not pipeline.interrupted
        assert stats.elapsed >= 1.4  # ran its whole duration: not stopped at 0.5 s
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
