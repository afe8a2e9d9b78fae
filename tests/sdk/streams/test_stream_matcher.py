"""Matcher: when crops are embedded, quality-weighted track embeddings, gallery naming with hysteresis,
and visible ↔ infrared track matching (synthetic vectors, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from vireid import Gallery, InputSpecError, Modality
from vireid.streams import (
    CrossModalMatch,
    Frame,
    Identified,
    Matcher,
    MatchThresholds,
    TrackEnded,
    TrackStarted,
)
from vireid.streams.matcher import CropRequest, TrackRecord
from vireid.streams.quality import crop_quality, occlusion
from vireid.streams.track import Track, TrackUpdate

DIM = 8
E = np.eye(DIM, dtype=np.float32)


def unit(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def frame(camera: str, modality: str, index: int, t: float | None = None, pts: float | None = None) -> Frame:
    return Frame(
        np.zeros((480, 640, 3), np.uint8),
        camera,
        Modality.parse(modality),
        index,
        t or 1000.0 + index,
        index / 15 if pts is None else pts,
    )


def track(track_id: int, box=(100, 100, 160, 260)) -> Track:
    b = np.asarray(box, np.float32)
    return Track(track_id, b, b, 0.9, 0, 5)


@pytest.fixture
def gallery():
    with Gallery(":memory:", embedding_space="test", dim=DIM) as g:
        g.enroll("alice", E[0:1], "visible")
        g.enroll("bob", E[1:2], "visible")
        yield g


def feed(matcher: Matcher, f: Frame, tid: int, vector, quality: float = 0.5):
    """Observe one track on a frame and give it one embedding; returns all events."""
    events = matcher.observe(
        f, TrackUpdate([track(tid)], started=[tid] if (f.camera, tid) not in matcher.records else [])
    )
    request = CropRequest((f.camera, tid), f, track(tid).det_box, quality)
    return events + matcher.update([request], unit(vector)[None])


def test_name_needs_confirmation_and_switches_only_past_the_margin(gallery) -> None:
    m = Matcher(0.5, gallery=gallery, confirm=2, margin=0.1)
    events = feed(m, frame("ir", "ir", 0), 1, E[0] + 0.1 * E[2])
    assert [type(e) for e in events] == [TrackStarted]  # one agreeing update is not enough
    events = feed(m, frame("ir", "ir", 1), 1, E[0])
    (named,) = [e for e in events if isinstance(e, Identified)]
    assert (named.name, named.previous, named.camera, named.track_id) == ("alice", None, "ir", 1)
    # The average drifts towards bob, but bob must beat alice by 0.1 on two updates in a row.
    names = []
    for i in range(2, 12):
        names += [e.name for e in feed(m, frame("ir", "ir", i), 1, E[1]) if isinstance(e, Identified)]
    assert names == ["bob"]
    assert m.records[("ir", 1)].name == "bob"


def test_alternating_evidence_does_not_flicker(gallery) -> None:
    m = Matcher(0.5, gallery=gallery, confirm=2, margin=0.05)
    vectors = [E[0] + 0.95 * E[1], E[1] + 0.95 * E[0]] * 6  # nearly tied, alternating
    names = [
        e.name
        for i, v in enumerate(vectors)
        for e in feed(m, frame("ir", "ir", i), 1, v)
        if isinstance(e, Identified)
    ]
    assert len(names) == 1


def test_below_threshold_stays_unnamed_and_ended_tracks_report(gallery) -> None:
    m = Matcher(0.9, gallery=gallery)
    for i in range(4):
        assert not [e for e in feed(m, frame("ir", "ir", i), 1, E[0] + E[2]) if isinstance(e, Identified)]
    (ended,) = m.end(("ir", 1))
    assert isinstance(ended, TrackEnded) and ended.name is None and ended.embeddings == 4
    assert m.end(("ir", 1)) == []


def test_gallery_modality_other_searches_only_the_other_modality(gallery) -> None:
    m = Matcher(0.5, gallery=gallery, gallery_modality="other", confirm=1)
    assert [e.name for e in feed(m, frame("ir", "ir", 0), 1, E[0]) if isinstance(e, Identified)] == ["alice"]
    m2 = Matcher(0.5, gallery=gallery, gallery_modality="other", confirm=1)
    assert not [e for e in feed(m2, frame("vis", "visible", 0), 1, E[0]) if isinstance(e, Identified)]


def named(m: Matcher, camera: str, modality: str, vector, frames: int = 2) -> list[str]:
    return [
        e.name
        for i in range(frames)
        for e in feed(m, frame(camera, modality, i), 1, vector)
        if isinstance(e, Identified)
    ]


def test_same_modality_matches_use_their_own_threshold(gallery) -> None:
    # cosine 0.8 to alice's visible embedding: clears the cross-modal 0.5, not the visible 0.9
    vector = 0.8 * E[0] + 0.6 * E[2]
    within = {"visible": 0.9, "infrared": 0.95}
    assert named(Matcher(0.5, within_threshold=within, gallery=gallery), "ir", "ir", vector) == ["alice"]
    assert named(Matcher(0.5, within_threshold=within, gallery=gallery), "vis", "visible", vector) == []
    assert named(Matcher(0.5, within_threshold=0.75, gallery=gallery), "vis", "visible", vector) == ["alice"]
    assert named(Matcher(0.5, gallery=gallery), "vis", "visible", vector) == ["alice"]  # none: threshold
    assert named(Matcher(0.5, within_threshold=np.float32(0.75), gallery=gallery), "v", "visible", vector)
    for bad, message in [
        ({"visible": 1.5}, "within threshold of visible is a cosine"),
        ({"visible": "x"}, "within threshold of visible is a cosine"),
        ({"thermal-ish": 0.7}, "unknown modality"),
        ("0.8", "within_threshold is a cosine or"),
    ]:
        with pytest.raises(InputSpecError, match=message):
            Matcher(0.5, within_threshold=bad)


def test_identities_rank_by_how_far_they_clear_their_pairs_threshold() -> None:
    # For a visible track: carol (enrolled in infrared) scores 0.7, clearing the cross-modal 0.5 by 0.2;
    # dave (enrolled in visible) scores higher, 0.85, but clears the same-modality 0.8 by only 0.05.
    def at(cosine: float) -> np.ndarray:
        return (cosine * E[0] + np.sqrt(1 - cosine**2) * E[1])[None]

    with Gallery(":memory:", embedding_space="test", dim=DIM) as g:
        g.enroll("carol", at(0.7), "infrared")
        g.enroll("dave", at(0.85), "visible")
        m = Matcher(0.5, within_threshold=0.8, gallery=g, confirm=1)
        events = [e for e in feed(m, frame("vis", "visible", 0), 1, E[0]) if isinstance(e, Identified)]
        m_raw = Matcher(0.5, gallery=g, confirm=1)  # one threshold for both: the higher score wins
        raw = [e.name for e in feed(m_raw, frame("vis", "visible", 0), 1, E[0]) if isinstance(e, Identified)]
    assert [(e.name, round(e.score, 3)) for e in events] == [("carol", 0.7)]  # the raw score is reported
    assert raw == ["dave"]


def test_identities_are_scored_by_their_centroid_unless_max_is_asked_for() -> None:
    # "crowd" has one image at cosine 0.95 to the track among four unrelated ones (centroid 0.42);
    # "steady" has two images at 0.8 (centroid 0.88).
    crowd = E[[0, 1, 2, 3, 4]].copy()
    crowd[0] = 0.95 * E[0] + np.sqrt(1 - 0.95**2) * E[5]
    with Gallery(":memory:", embedding_space="test", dim=DIM) as g:
        g.enroll("crowd", crowd, "visible")
        g.enroll("steady", np.stack([0.8 * E[0] + 0.6 * E[i] for i in (6, 7)]), "visible")
        assert named(Matcher(0.5, gallery=g), "ir", "ir", E[0]) == ["steady"]
        assert named(Matcher(0.5, gallery=g, identity_score="max"), "ir", "ir", E[0]) == ["crowd"]
        with pytest.raises(InputSpecError, match="expected one of: max, centroid"):
            Matcher(0.5, gallery=g, identity_score="median")


def test_track_embedding_is_quality_weighted() -> None:
    m = Matcher(0.5)
    feed(m, frame("vis", "visible", 0), 1, E[0], quality=0.9)
    feed(m, frame("vis", "visible", 10), 1, E[1], quality=0.1)
    emb = m.records[("vis", 1)].embedding
    assert emb @ E[0] > 0.9 * np.linalg.norm(emb) and emb @ E[1] < 0.2
    assert np.linalg.norm(emb) == pytest.approx(1.0)


def test_cross_modal_pairs_are_mutual_confirmed_and_reported_once() -> None:
    m = Matcher(0.5, confirm=2, min_samples=2)
    events = []
    for i in range(4):
        events += feed(m, frame("vis", "visible", i), 1, E[0] + 0.2 * E[3])
        events += feed(m, frame("vis", "visible", i), 2, E[1])
    for i in range(6):
        events += feed(m, frame("ir", "ir", i), 7, E[0])
    matches = [e for e in events if isinstance(e, CrossModalMatch)]
    assert len(matches) == 1
    match = matches[0]
    assert (match.visible_camera, match.visible_track, match.infrared_camera, match.infrared_track) == (
        "vis",
        1,
        "ir",
        7,
    )
    assert match.score > 0.9
    assert m.records[("ir", 7)].partner == ("vis", 1)


def test_a_partner_change_is_always_announced_and_both_sides_agree() -> None:
    """Switching back to an earlier partner used to change `partner` without an event (the pair had been
    announced once), and the released partner kept pointing at the track that left it."""
    m = Matcher(0.5, confirm=1, min_samples=1, margin=0.1)
    feed(m, frame("ir", "ir", 0), 1, E[0])
    feed(m, frame("ir", "ir", 0), 2, E[1])
    pairs = []
    for i, vector in enumerate([E[0]] + [E[1]] * 5 + [E[0]] * 15):
        pairs += [(e.visible_track, e.infrared_track) for e in feed(m, frame("vis", "visible", i), 1, vector)
                  if isinstance(e, CrossModalMatch)]  # fmt: skip
    assert pairs == [(1, 1), (1, 2), (1, 1)]  # each change announced, the return to the first one too
    visible, first, second = m.records[("vis", 1)], m.records[("ir", 1)], m.records[("ir", 2)]
    assert visible.partner == ("ir", 1) and first.partner == ("vis", 1) and second.partner is None
    # the infrared side now agrees: its own next update announces nothing new
    assert not any(isinstance(e, CrossModalMatch) for e in feed(m, frame("ir", "ir", 30), 1, E[0]))


def test_cross_modal_matches_ended_tracks_within_the_window() -> None:
    m = Matcher(0.5, confirm=1, min_samples=1, cross_window=5.0)
    feed(m, frame("vis", "visible", 0, t=100.0, pts=0.0), 1, E[0])
    m.end(("vis", 1))
    matched = feed(m, frame("ir", "ir", 0, t=103.0, pts=0.0), 1, E[0])  # the ir stream started 3 s later
    assert any(isinstance(e, CrossModalMatch) for e in matched)
    feed(m, frame("vis", "visible", 1, t=104.0, pts=4.0), 2, E[1])
    m.end(("vis", 2))
    late = feed(m, frame("ir", "ir", 1, t=200.0, pts=97.0), 2, E[1])
    assert not any(isinstance(e, CrossModalMatch) for e in late)


def test_the_cross_window_is_media_time_so_fast_replay_matches_as_real_time_does() -> None:
    """The window was measured on the wall clock: at 15x real time (`--fast`) 120 s covered 30 min of
    video, and the same files gave other pairs than in real time."""
    for speed in (1.0, 15.0):  # wall seconds = media seconds / speed
        m = Matcher(0.5, confirm=1, min_samples=1, cross_window=5.0)
        m.observe(frame("ir", "ir", 0, t=100.0, pts=0.0), TrackUpdate([], started=[]))  # both files start
        feed(m, frame("vis", "visible", 0, t=100.0, pts=0.0), 1, E[0])
        m.end(("vis", 1))
        late = feed(m, frame("ir", "ir", 1, t=100.0 + 20.0 / speed, pts=20.0), 1, E[0])  # 20 s of video later
        assert not any(isinstance(e, CrossModalMatch) for e in late), speed


def test_requests_follow_every_k_and_quality() -> None:
    m = Matcher(0.5, embed_every=5, min_quality=0.2, improve=0.2)
    f0 = frame("vis", "visible", 0)
    m.observe(f0, TrackUpdate([track(1), track(2)], started=[1, 2]))
    reqs = m.requests(f0, [track(1), track(2)], np.array([0.5, 0.1]))
    assert [r.key for r in reqs] == [("vis", 1)]  # track 2's crop is too poor
    m.update(reqs, E[:1])
    assert m.requests(frame("vis", "visible", 2), [track(1)], np.array([0.5])) == []  # too soon, no better
    assert len(m.requests(frame("vis", "visible", 2), [track(1)], np.array([0.7]))) == 1  # clearly better
    assert len(m.requests(frame("vis", "visible", 5), [track(1)], np.array([0.3]))) == 1  # k frames passed
    with pytest.raises(InputSpecError, match="threshold"):
        Matcher(1.5)


def test_crop_quality_factors() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    boxes = np.array(
        [
            [100, 100, 160, 260],
            [300, 100, 310, 125],
            [0, 100, 30, 260],
            [400, 100, 460, 260],
            [420, 100, 480, 260],
        ]
    )
    q = crop_quality(image, boxes)
    assert q.shape == (5,) and ((q >= 0) & (q <= 1)).all()
    assert q[1] < q[0] * 0.3  # small
    assert q[2] < q[0] * 0.6  # cut by the frame edge
    assert q[3] < q[0] * 0.5  # two thirds hidden behind the other
    assert occlusion(boxes)[3] == pytest.approx(2 / 3) and occlusion(boxes[:1]).tolist() == [0.0]
    flat = np.full((480, 640, 3), 90, np.uint8)
    assert crop_quality(flat, boxes[:1])[0] == 0.0  # no texture at all: not sharp


def test_a_named_track_keeps_its_last_real_score_when_its_identity_leaves_the_top(gallery) -> None:
    """The name stays; its score used to become the sentinel -1.0 (in events and annotated video)."""
    m = Matcher(0.5, gallery=gallery, confirm=1, top_k=1)
    for i in range(2):
        feed(m, frame("ir", "ir", i), 1, E[0])
    record = m.records[("ir", 1)]
    assert record.name == "alice" and record.score == pytest.approx(1.0)
    for i in range(2, 12):  # the track drifts to bob's side, below the threshold for him
        feed(m, frame("ir", "ir", i), 1, E[1] * 0.3 + E[3])
    assert record.name == "alice" and record.score > 0


def test_track_duration_is_media_time_not_read_time(gallery) -> None:
    """`--fast` reads a file several times faster than real time: the wall clock at read made a 3.7 s
    track last 0.5 s. Frames here are read one second apart but 1/15 s apart in the video."""
    m = Matcher(0.5, gallery=gallery)
    for i in range(15):
        feed(m, frame("ir", "ir", i), 1, E[0])
    (ended,) = m.end(("ir", 1))
    assert isinstance(ended, TrackEnded) and ended.duration == pytest.approx(14 / 15, abs=1e-3)


def test_track_started_carries_the_detection_box_drawn_on_that_frame() -> None:
    m = Matcher(0.5)
    detected, filtered = np.array([10, 20, 50, 120], np.float32), np.array([12, 21, 52, 118], np.float32)
    started = Track(1, filtered, detected, 0.9, 0, 1)  # the Kalman box differs from the detection's
    (event,) = m.observe(frame("vis", "visible", 0), TrackUpdate([started], started=[1]))
    assert isinstance(event, TrackStarted) and tuple(event.box) == (10, 20, 50, 120)


def test_two_near_equal_rivals_do_not_take_a_partner_from_each_other_on_every_update() -> None:
    """Taking a track from its partner needs `margin` too: two visible tracks at cosines 0.80 and 0.81
    to one infrared track, the closer one alternating, gave a CrossModalMatch on every swap."""
    from vireid.streams.matcher import TrackRecord

    m = Matcher(0.5, confirm=2, margin=0.05, min_samples=1)

    def record(camera: str, modality: Modality) -> TrackRecord:
        r = TrackRecord(camera, modality, 1, 0, 0.0, 0, 0.0, np.zeros(4, np.float32), samples=5, weight=1.0)
        m.records[r.key] = r
        return r

    first, second = record("v1", Modality.VISIBLE), record("v2", Modality.VISIBLE)
    infrared = record("t", Modality.INFRARED)
    infrared.vector_sum = np.array([1.0, 0, 0, 0])
    events = []
    for step in range(6):
        a, b = (0.80, 0.81) if step % 2 == 0 else (0.81, 0.80)
        first.vector_sum = np.array([a, np.sqrt(1 - a * a), 0, 0])
        second.vector_sum = np.array([b, 0, np.sqrt(1 - b * b), 0])
        for _ in range(2):
            for r in (first, second):
                events += m._cross_match([r], {r.key: float(step)})
    assert len([e for e in events if isinstance(e, CrossModalMatch)]) == 1


def test_the_window_follows_the_other_cameras_clock_when_frame_rates_differ() -> None:
    """In `--fast` the pipeline takes one frame per camera per step: a 10 fps thermal file's media time
    runs 3x ahead of a 30 fps colour file's. An ended infrared track was pruned by the thermal clock,
    while the colour camera, still 8 s of video behind, could yet see that person."""
    m = Matcher(0.5, confirm=1, min_samples=1, cross_window=5.0)

    def step_frame(camera: str, modality: str, step: int, fps: float) -> Frame:
        return frame(camera, modality, step, t=100.0 + 0.01 * step, pts=step / fps)  # 100x real time

    events = []
    for step in range(121):
        ir, vis = step_frame("ir", "ir", step, 10.0), step_frame("vis", "visible", step, 30.0)
        if step <= 30:  # the person is seen by the thermal camera for its first 3 s
            events += feed(m, ir, 1, E[0])
        elif step >= 100:  # someone else, 10 s into the thermal video
            events += feed(m, ir, 2, E[1])
        else:
            events += m.observe(ir, TrackUpdate([], ended=[1] if step == 31 else []))
        if step >= 120:  # and by the colour camera 4 s into its video
            events += feed(m, vis, 1, E[0])
        else:
            events += m.observe(vis, TrackUpdate([]))
    assert any(isinstance(e, CrossModalMatch) for e in events)


def test_a_wall_clock_step_between_cameras_first_frames_does_not_offset_their_clocks() -> None:
    """NTP setting a device's clock an hour forward between the two cameras' first frames: on wall time
    the infrared camera's clock ran an hour ahead and every ended visible track expired at once."""
    m = Matcher(0.5)
    image = np.zeros((48, 64, 3), np.uint8)
    visible = Frame(image, "v", Modality.VISIBLE, 0, 1000.0, 0.0, monotonic=50.0)
    infrared = Frame(image, "i", Modality.INFRARED, 0, 1000.0 + 3600.0, 0.0, monotonic=50.5)
    first = m.media_time(visible)  # the run's first frame: its wall time anchors the shared clock
    assert first == 1000.0 and m.media_time(infrared) - first == pytest.approx(0.5)
    later = Frame(image, "i", Modality.INFRARED, 30, 1000.0 + 3602.0, 2.0, monotonic=52.5)
    assert m.media_time(later) == pytest.approx(1002.5)  # the run's first wall time + 2.5 s
    old_style = Matcher(0.5)  # frames without a monotonic time keep their wall time, as before
    assert old_style.media_time(frame("x", "ir", 0, t=5000.0, pts=0.0)) == 5000.0


def test_a_single_modality_site_keeps_no_ended_tracks_for_pairing() -> None:
    visible_only = Matcher(0.5, modalities=["visible"])
    both = Matcher(0.5, modalities=["visible", "infrared"])
    for m in (visible_only, both):
        for tid in range(1, 6):
            feed(m, frame("v", "visible", tid), tid, E[tid % DIM])
            m.end(("v", tid))
    assert len(visible_only._ended) == 0 and len(both._ended) == 5


@pytest.mark.parametrize(("gallery_modality", "searches"), [("any", 2), ("other", 2)])
def test_one_gallery_search_per_enrolled_modality_serves_both_modalities_tracks(
    gallery, monkeypatch: pytest.MonkeyPatch, gallery_modality: str, searches: int
) -> None:
    """A search scans every enrolled centroid (100k identities: ~0.3 s each); with a visible and an
    infrared track updated in one round there used to be one search per pair of modalities (4)."""
    gallery.enroll("carol", E[2:3], "infrared")
    calls: list[tuple[int, Modality]] = []
    real = gallery.search_identities

    def counting(queries, **kwargs):
        calls.append((len(queries), Modality.parse(kwargs["modality"])))
        return real(queries, **kwargs)

    monkeypatch.setattr(gallery, "search_identities", counting)
    m = Matcher(0.5, gallery=gallery, gallery_modality=gallery_modality, confirm=1)
    vis, ir = frame("vis", "visible", 0), frame("ir", "ir", 0)
    m.observe(vis, TrackUpdate([track(1)], started=[1]))
    m.observe(ir, TrackUpdate([track(2)], started=[2]))
    requests = [
        CropRequest(("vis", 1), vis, track(1).det_box, 0.5),
        CropRequest(("ir", 2), ir, track(2).det_box, 0.5),
    ]
    events = m.update(requests, np.stack([unit(E[2]), unit(E[0])]))
    assert len(calls) == searches
    if gallery_modality == "any":
        assert sorted(n for n, _ in calls) == [2, 2]  # both tracks in each search
        names = {(e.camera, e.name) for e in events if isinstance(e, Identified)}
        assert names == {("vis", "carol"), ("ir", "alice")}  # each across modalities
    else:
        assert sorted((n, str(mod)) for n, mod in calls) == [(1, "infrared"), (1, "visible")]


def test_a_tracks_kept_unit_embedding_follows_a_new_vector_sum() -> None:
    """The unit embedding is kept between samples (pairing reads every track's on every update); it
    must follow `vector_sum` whenever that is replaced, samples counted or not."""
    record = TrackRecord("c", Modality.VISIBLE, 1, 0, 0.0, 0, 0.0, np.zeros(4, np.float32), samples=5)
    record.vector_sum = np.array([3.0, 4.0, 0.0, 0.0])
    np.testing.assert_allclose(record.embedding, [0.6, 0.8, 0, 0])
    record.vector_sum = np.array([0.0, 0.0, 2.0, 0.0])  # same sample count
    np.testing.assert_allclose(record.embedding, [0, 0, 1, 0])


def test_match_thresholds_are_checked_and_read_only() -> None:
    used = Matcher(0.6, within_threshold={"visible": 0.7}, cross_threshold=0.55).thresholds()
    assert used.to_dict() == {"cross_modal": 0.6, "within": {"visible": 0.7, "infrared": 0.6}, "pairs": 0.55}
    assert str(used) == "across modalities 0.6000, within visible 0.7000, infrared 0.6000, track pairs 0.5500"
    with pytest.raises(TypeError, match="read-only"):
        used.within["visible"] = 0.1  # type: ignore[index]
    for bad in ({"cross_modal": float("nan")}, {"pairs": 2.0}, {"within": {"visible": True}}):
        with pytest.raises(InputSpecError, match="is a cosine in"):
            MatchThresholds(**{"cross_modal": 0.5, "within": {}, "pairs": 0.5, **bad})
