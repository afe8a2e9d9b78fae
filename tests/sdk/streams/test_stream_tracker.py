"""Assignment, Kalman filter and the ByteTrack-style tracker: hand-made sequences and a generated scene."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from vireid import InputSpecError
from vireid.bench.scene import CameraTracks, SceneTruth
from vireid.streams import ByteTracker, Detections, MotionDetector
from vireid.streams.assignment import assign, iou_matrix, linear_sum_assignment
from vireid.streams.kalman import KalmanFilter, xyah_to_xyxy, xyxy_to_xyah


# ----- assignment ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (2, 5), (5, 2), (6, 6)])
def test_linear_sum_assignment_is_optimal(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        cost = rng.random(shape)
        rows, cols = linear_sum_assignment(cost)
        assert len(rows) == min(shape) and len(set(cols.tolist())) == len(cols)
        n, m = shape
        if n <= m:
            best = min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        else:
            best = min(sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))
        assert cost[rows, cols].sum() == pytest.approx(best)


def test_assign_uses_only_pairs_below_the_limit() -> None:
    cost = np.array([[0.1, 0.9], [0.2, 0.95]])
    matches, rows, cols = assign(cost, 0.5)
    assert matches.tolist() == [[0, 0]] and rows.tolist() == [1] and cols.tolist() == [1]
    # Matching both rows would cost 0.9 + 0.2 > 0.1 + (leave 2 unmatched) 0.5: one pair is best.
    empty = assign(np.zeros((0, 3)), 0.5)
    assert empty[0].shape == (0, 2) and empty[2].tolist() == [0, 1, 2]


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 1 / 3, 0.0]])


def test_kalman_follows_constant_velocity() -> None:
    kf = KalmanFilter()
    box = np.array([10.0, 20.0, 30.0, 80.0])
    assert np.allclose(xyah_to_xyxy(xyxy_to_xyah(box)), box)
    mean, cov = kf.initiate(xyxy_to_xyah(box))
    for step in range(1, 12):
        means, covs = kf.predict(mean[None], cov[None])
        mean, cov = kf.update(means[0], covs[0], xyxy_to_xyah(box + np.array([5 * step, 0, 5 * step, 0])))
    predicted, _ = kf.predict(mean[None], cov[None])
    assert xyah_to_xyxy(predicted[0])[0] == pytest.approx(10 + 5 * 12, abs=1.0)


# ----- tracker ------------------------------------------------------------------------------------
def _det(*boxes: list[float], score: float = 0.9) -> Detections:
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), score, np.float32))


def test_new_track_is_confirmed_on_its_second_frame_except_on_the_first_frame() -> None:
    tracker = ByteTracker()
    first = tracker.update(_det([10, 10, 30, 70]))
    assert first.started == [1] and [t.track_id for t in first.tracks] == [1]
    second = tracker.update(_det([12, 10, 32, 70], [100, 10, 120, 70]))
    assert second.started == [] and [t.track_id for t in second.tracks] == [1]  # the newcomer waits
    third = tracker.update(_det([14, 10, 34, 70], [102, 10, 122, 70]))
    assert third.started == [2] and sorted(t.track_id for t in third.tracks) == [1, 2]


def test_a_one_frame_blip_never_becomes_a_track() -> None:
    tracker = ByteTracker()
    tracker.update(_det([10, 10, 30, 70]))
    tracker.update(_det([10, 10, 30, 70], [200, 10, 220, 70]))
    out = [tracker.update(_det([10, 10, 30, 70])) for _ in range(3)]
    assert all(u.started == [] for u in out) and tracker.active_ids == [1]


def test_lost_track_is_found_again_then_ends_after_the_buffer() -> None:
    tracker = ByteTracker(track_buffer=5)
    for x in range(0, 20, 2):
        tracker.update(_det([100 + x, 10, 120 + x, 70]))
    for _ in range(3):  # occluded for 3 frames: predicted, kept
        assert tracker.update(Detections.empty()).tracks == []
    back = tracker.update(_det([126, 10, 146, 70]))
    assert [t.track_id for t in back.tracks] == [1] and back.started == []
    ended = []
    for _ in range(7):
        ended += tracker.update(Detections.empty()).ended
    assert ended == [1] and tracker.active_ids == []


def test_low_score_boxes_extend_tracks_but_never_start_them() -> None:
    tracker = ByteTracker()
    tracker.update(_det([10, 10, 30, 70]))
    update = tracker.update(_det([12, 10, 32, 70], score=0.3))  # second stage
    assert [t.track_id for t in update.tracks] == [1] and update.tracks[0].score == pytest.approx(0.3)
    for _ in range(3):
        update = tracker.update(_det([200, 10, 220, 70], score=0.3))
    assert update.started == [] and 2 not in tracker.active_ids


def test_track_leaving_the_frame_ends_at_once_when_size_is_given() -> None:
    tracker = ByteTracker(track_buffer=30)
    for x in range(0, 60, 10):
        tracker.update(_det([580 + x, 10, 620 + x, 70]), size=(480, 640))
    ended = []
    for _ in range(4):
        ended += tracker.update(Detections.empty(), size=(480, 640)).ended
    assert ended == [1]


def test_frame_jumps_predict_over_skipped_frames() -> None:
    tracker = ByteTracker()
    for i in range(10):
        tracker.update(_det([10 + 6 * i, 10, 30 + 6 * i, 70]), frame=i)
    # 4 frames dropped by a live source: the person moved 30 px; matched thanks to the prediction.
    update = tracker.update(_det([10 + 6 * 14, 10, 30 + 6 * 14, 70]), frame=14)
    assert [t.track_id for t in update.tracks] == [1]


def test_finish_returns_live_tracks_and_bad_settings_are_refused() -> None:
    tracker = ByteTracker()
    tracker.update(_det([10, 10, 30, 70], [50, 10, 70, 70]))
    assert tracker.finish() == [1, 2] and tracker.active_ids == []
    with pytest.raises(InputSpecError):
        ByteTracker(low=0.6, high=0.5)


def test_appearance_decides_who_is_who_when_a_box_fits_two_tracks() -> None:
    """A box exactly on A's prediction but dressed like B (A hidden behind B): IoU alone hands it to A's
    track, the colour signature to B's; the IoU gate still decides which tracks may take it at all."""
    dress = {"A": np.eye(4)[0], "B": np.eye(4)[1]}
    a, b = [100, 100, 150, 250], [115, 100, 165, 250]  # IoU 0.54
    ids = {}
    for appearance in (0.0, 1.5):
        tracker = ByteTracker(appearance=appearance)
        for _ in range(5):
            first = tracker.update(_det(a, b), features=np.stack([dress["A"], dress["B"]]))
        owner = {tuple(t.det_box.astype(int)): t.track_id for t in first.tracks}
        crossing = tracker.update(_det(a), features=dress["B"][None])
        ids[appearance] = crossing.tracks[0].track_id
        assert ids[appearance] in (owner[tuple(a)], owner[tuple(b)])
    assert ids[0.0] == owner[tuple(a)] and ids[1.5] == owner[tuple(b)]
    far = ByteTracker()
    far.update(_det(a), features=dress["A"][None])
    far.update(_det(a), features=dress["A"][None])
    moved = far.update(_det([400, 100, 450, 250]), features=dress["A"][None])  # same dress, no overlap
    assert moved.tracks == [] and moved.started == []  # a new (unconfirmed) track, not A teleported
    with pytest.raises(InputSpecError, match=r"features must be \[1, D\]"):
        far.update(_det(a), features=np.zeros((2, 4)))
    with pytest.raises(InputSpecError, match="features have 3 values per box, the tracks' \\[4\\]"):
        far.update(_det(a), features=np.ones((1, 3)) / np.sqrt(3))
    for bad in (None, "1.5", -1.0, True, float("inf"), float("nan")):
        with pytest.raises(InputSpecError, match="appearance must be a finite number >= 0"):
            ByteTracker(appearance=bad)
    frame_before = far.frame
    with pytest.raises(InputSpecError, match="features have 3 values per box"):
        far.update(_det(a), features=np.ones((1, 3)) / np.sqrt(3))
    assert far.frame == frame_before  # a refused frame changes nothing


def test_look_alikes_are_assigned_as_iou_alone_would() -> None:
    """Equal signatures carry no information, so they must not change IoU's choice: here a newcomer
    appears beside A, and a bonus per match would hand A's track to the newcomer and B's to A (review)."""
    same = np.eye(4)[0]
    chosen = {}
    for appearance in (0.0, 1.5):
        tracker = ByteTracker(appearance=appearance)
        for _ in range(4):
            tracker.update(_det([0, 0, 100, 200], [60, 0, 160, 200]), features=np.stack([same, same]))
        update = tracker.update(_det([5, 0, 105, 200], [-60, 0, 40, 200]), features=np.stack([same, same]))
        chosen[appearance] = sorted((t.track_id, int(t.det_box[0])) for t in update.tracks)
    assert chosen[1.5] == chosen[0.0] and (1, 5) in chosen[0.0]


def test_colour_signatures_compare_clothes_not_backgrounds() -> None:
    from vireid.streams.appearance import SIGNATURE_DIM, colour_signatures

    frame = np.full((200, 300, 3), 90, np.uint8)
    frame[:, :, 0] = (np.arange(300) % 256).astype(np.uint8)[None, :]  # a varied background
    boxes = np.array([[10, 20, 60, 180], [110, 20, 160, 180], [210, 20, 260, 180], [5, 5, 6, 6]], np.float32)
    for x, colour in ((10, (0, 0, 200)), (110, (0, 0, 210)), (210, (200, 0, 0))):  # red, red, blue
        frame[20:180, x + 8 : x + 42] = colour  # the inner 60 % of the box and a little more
    sig = colour_signatures(frame, boxes)
    assert sig.shape == (4, SIGNATURE_DIM) and sig.dtype == np.float32
    assert np.allclose(np.linalg.norm(sig[:3], axis=1), 1.0) and not sig[3].any()  # too small: no signature
    assert sig[0] @ sig[1] > 0.9 > sig[0] @ sig[2]
    grey = colour_signatures(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), boxes[:3])
    hue_part = np.r_[0:32, 40:72]  # no hue on an infrared (grey) frame: brightness histograms only
    assert np.allclose(np.linalg.norm(grey, axis=1), 1.0) and not grey[:, hue_part].any()


def test_tracker_on_a_generated_scene(scene: Path) -> None:
    """Motion detector + tracker vs ground truth: most people covered, few identity switches."""
    truth = SceneTruth.load(scene)
    for camera in ("visible", "infrared"):
        detector, tracker, scored = MotionDetector(), ByteTracker(), CameraTracks()
        cap = cv2.VideoCapture(str(scene / f"{camera}.mp4"))
        index = started = 0
        while True:
            ok, image = cap.read()
            if not ok:
                break
            det = detector.detect(image)
            update = tracker.update(det, index, image.shape[:2])
            started += len(update.started)
            boxes = np.array([t.box for t in update.tracks]).reshape(-1, 4)
            scored.add(truth.objects(camera, index), det.boxes, [t.track_id for t in update.tracks], boxes)
            index += 1
        people = scored.people(10)
        assert len(people) == 3
        assert scored.tracks.recall >= 0.85, (camera, scored.tracks.recall)
        assert started <= 2 * len(people)
        assert scored.id_switches <= 4, (camera, scored.id_switches)
        covered = {scored.identity(t) for t in scored.votes}
        assert len(covered & people) >= 2, (camera, covered)


# ----- assignment by groups vs the padded solver ---------------------------------------------------
def _padded_assign(cost: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference: `assign` as it was, one (n + m)-square extended problem over the whole matrix."""
    cost = np.asarray(cost, np.float64)
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.zeros((0, 2), np.int64), np.arange(n), np.arange(m)
    big = np.full((n + m, n + m), 1e9)
    big[:n, :m] = np.where(cost < limit, cost, 1e9)
    big[n:, m:] = 0.0
    big[np.arange(n), m + np.arange(n)] = limit / 2
    big[n + np.arange(m), np.arange(m)] = limit / 2
    rows, cols = linear_sum_assignment(big)
    pairs = (rows < n) & (cols < m)
    matches = np.stack([rows[pairs], cols[pairs]], axis=1).astype(np.int64)
    return matches, np.setdiff1d(np.arange(n), matches[:, 0]), np.setdiff1d(np.arange(m), matches[:, 1])


def _best_total(cost: np.ndarray, limit: float) -> float:
    """Exhaustive search: the least sum of `cost - limit` over matchings of pairs below the limit."""
    n, m = cost.shape

    def best(row: int, used: frozenset[int]) -> float:
        if row == n:
            return 0.0
        options = [best(row + 1, used)]  # the row left unmatched
        options += [
            cost[row, j] - limit + best(row + 1, used | {j})
            for j in range(m)
            if j not in used and cost[row, j] < limit
        ]
        return min(options)

    return best(0, frozenset())


def _check_valid(cost: np.ndarray, limit: float, result: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    matches, rows, cols = result
    assert matches.dtype == np.int64 and matches.shape == (len(matches), 2)
    assert matches[:, 0].tolist() == sorted(set(matches[:, 0].tolist()))  # sorted by row, each once
    assert len(set(matches[:, 1].tolist())) == len(matches)
    assert (cost[matches[:, 0], matches[:, 1]] < limit).all()
    assert sorted(matches[:, 0].tolist() + rows.tolist()) == list(range(cost.shape[0]))
    assert sorted(matches[:, 1].tolist() + cols.tolist()) == list(range(cost.shape[1]))


def _random_cost(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """Uniform costs, some rows and columns refused everywhere, some matrices sparse like a tracker's."""
    cost = rng.random((n, m)) * 1.4
    if n and m and rng.random() < 0.5:
        cost[rng.random((n, m)) < 0.7] = np.inf
    cost[rng.random(n) < 0.15] = 2.0
    cost[:, rng.random(m) < 0.15] = 2.0
    return cost


def test_assign_gives_the_padded_solvers_matches_on_random_costs() -> None:
    """Real-valued costs (no exact ties): every match, unmatched row and column is the padded solver's."""
    rng = np.random.default_rng(7)
    shapes = [(0, 0), (0, 4), (3, 0), (1, 1), (1, 6), (6, 1)] + [
        tuple(s) for s in rng.integers(1, 9, (150, 2))
    ]
    shapes += [tuple(s) for s in rng.integers(10, 31, (10, 2))]
    for n, m in shapes:
        cost, limit = _random_cost(rng, n, m), float(rng.choice([0.5, 0.8, 1.0]))
        got, want = assign(cost, limit), _padded_assign(cost, limit)
        _check_valid(cost, limit, got)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype and g.tolist() == w.tolist(), (cost, limit)


def test_assign_is_optimal_when_costs_tie() -> None:
    """Costs in eighths (sums exact): many equal optima; whichever is chosen must be one of them."""
    rng = np.random.default_rng(8)
    for _ in range(300):
        n, m = rng.integers(0, 6, 2)
        cost = rng.choice([0.125, 0.25, 0.5, 0.75, 0.875, 1.0, 3.0], (n, m))
        if n and m and rng.random() < 0.3:  # identical rows and columns: duplicate tracks and boxes
            cost[rng.integers(n)] = cost[rng.integers(n)]
            cost[:, rng.integers(m)] = cost[:, rng.integers(m)]
        got = assign(cost, 1.0)
        _check_valid(cost, 1.0, got)
        total = float((cost[got[0][:, 0], got[0][:, 1]] - 1.0).sum())
        assert total == _best_total(cost, 1.0), cost
        padded = _padded_assign(cost, 1.0)[0]
        assert total == float((cost[padded[:, 0], padded[:, 1]] - 1.0).sum())


def test_assign_breaks_ties_by_order_within_a_group_alone() -> None:
    """A row's equal partners: the first column wins (a column's: the first row), and a group's choice
    never depends on the rest of the matrix. The padded solver let an unrelated person decide: it gave
    this row its first tied box alone and its last one with somebody else on the row above."""
    row = np.array([[0.75, 0.5, 0.5]])
    assert assign(row, 1.0)[0].tolist() == [[0, 1]]
    assert assign(row.T, 1.0)[0].tolist() == [[1, 0]]
    assert assign(np.array([[0.2, 0.2, 0.2]]).T, 1.0)[0].tolist() == [[0, 0]]
    other = np.full((2, 5), 9.0)
    other[0, :2], other[1, 2:] = 0.3, row[0]
    assert _padded_assign(other, 1.0)[0].tolist() == [[0, 0], [1, 4]]  # the old, order-dependent tie
    assert assign(other, 1.0)[0].tolist() == [[0, 0], [1, 3]]
    rng = np.random.default_rng(9)
    for _ in range(100):  # groups stacked block-diagonally are solved as each is alone
        blocks = [rng.choice([0.25, 0.5, 0.75, 3.0], tuple(rng.integers(1, 4, 2))) for _ in range(3)]
        whole = np.full((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)), 3.0)
        expected, r0, c0 = [], 0, 0
        for block in blocks:
            whole[r0 : r0 + block.shape[0], c0 : c0 + block.shape[1]] = block
            expected += [[r0 + i, c0 + j] for i, j in assign(block, 1.0)[0].tolist()]
            r0, c0 = r0 + block.shape[0], c0 + block.shape[1]
        assert assign(whole, 1.0)[0].tolist() == sorted(expected)


def test_assign_solves_a_hundred_independent_people() -> None:
    """100 tracks, 100 boxes in shuffled order: each track overlaps its own box and sometimes a
    neighbour's (costlier); some people are missed and some boxes are newcomers. Each track must get
    its own box, exactly what the padded solver finds."""
    rng = np.random.default_rng(10)
    n = 100
    box_of = rng.permutation(n)  # track i's own box
    missed = rng.random(n) < 0.1
    cost = np.full((n, n), 1.0)
    for i in range(n):
        if not missed[i]:
            cost[i, box_of[i]] = rng.uniform(0.05, 0.4)
        if i and rng.random() < 0.4 and not missed[i - 1]:
            cost[i, box_of[i - 1]] = rng.uniform(0.45, 0.79)  # overlaps the previous person's box too
    matches, rows, cols = assign(cost, 0.8)
    assert matches.tolist() == [[i, box_of[i]] for i in range(n) if not missed[i]]
    assert rows.tolist() == np.flatnonzero(missed).tolist() and cols.tolist() == sorted(box_of[missed])
    for got, want in zip((matches, rows, cols), _padded_assign(cost, 0.8), strict=True):
        assert got.tolist() == want.tolist()


def test_tracker_follows_a_crowd_as_with_the_padded_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    """40 people walking, crossing and overlapping: the tracker reports the same tracks on every frame
    whichever solver it uses (its costs are real-valued IoUs: no exact ties)."""
    import vireid.streams.track as track_module

    rng = np.random.default_rng(11)
    n = 40
    height = rng.uniform(100, 220, n)
    x, y = rng.uniform(0, 900, n), rng.uniform(0, 500, n)
    boxes = np.stack([x, y, x + 0.4 * height, y + height], 1)
    velocity = rng.normal(0, 5, (n, 2))
    frames = []
    for _ in range(25):
        boxes += np.tile(velocity, 2)
        seen = rng.random(n) > 0.1
        noisy = (boxes + rng.normal(0, 2, boxes.shape))[seen]
        scores = rng.uniform(0.2, 0.95, int(seen.sum()))
        frames.append(Detections(noisy.astype(np.float32), scores.astype(np.float32)))

    def run() -> list[tuple[list[int], list[int], list[list[float]]]]:
        tracker = ByteTracker()
        out = []
        for detections in frames:
            update = tracker.update(detections, size=(800, 1100))
            out.append(
                (update.started, update.ended, [[t.track_id, *t.det_box.tolist()] for t in update.tracks])
            )
        return out

    fast = run()
    monkeypatch.setattr(track_module, "assign", _padded_assign)
    assert run() == fast and sum(len(tracks) for _, _, tracks in fast) > 20 * n * 0.8
