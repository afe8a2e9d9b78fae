from __future__ import annotations

import time

import numpy as np
import pytest
from reference_metrics import reference_regdb, reference_sysu

from vireid import InputSpecError
from vireid.metrics import RankMetrics, cosine_distance, evaluate_regdb, evaluate_sysu


def test_worked_example_from_model_md() -> None:
    # Positives at ranks 1 and 3 of 5: AP = (1/1 + 2/3) / 2, mINP = 2/3.
    distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    g_pids = np.array([7, 1, 7, 2, 3])
    m = evaluate_regdb(distmat, np.array([7]), g_pids, max_rank=5)
    assert m.mAP == pytest.approx((1 + 2 / 3) / 2)
    assert m.mINP == pytest.approx(2 / 3)
    np.testing.assert_allclose(m.cmc, [1, 1, 1, 1, 1])


def test_sysu_discards_every_camera2_image_for_camera3_queries() -> None:
    # Gallery ordered by distance: cam2 (id 9, a negative), cam2 (id 5, the positive), cam1 (id 5).
    distmat = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    g_pids, g_cams = np.array([9, 5, 5]), np.array([2, 2, 1])
    q_pids = np.array([5, 5])
    from_cam3 = evaluate_sysu(distmat[:1], q_pids[:1], g_pids, np.array([3]), g_cams, max_rank=3)
    from_cam6 = evaluate_sysu(distmat[1:], q_pids[1:], g_pids, np.array([6]), g_cams, max_rank=3)
    # cam3: only the cam1 image is left, ranked first.
    assert from_cam3.rank(1) == 1.0 and from_cam3.mAP == 1.0 and from_cam3.mINP == 1.0
    # cam6: nothing removed; first positive at rank 2 (AP = (1/2 + 2/3) / 2).
    assert from_cam6.rank(1) == 0.0 and from_cam6.rank(2) == 1.0
    assert from_cam6.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert from_cam6.mINP == pytest.approx(2 / 3)


def test_sysu_cmc_counts_each_gallery_identity_once() -> None:
    # Ranking: id 4, id 4, id 4, id 8 (positive). Plain CMC: rank 4; deduplicated: rank 2.
    distmat = np.array([[0.1, 0.2, 0.3, 0.4]])
    g_pids, g_cams = np.array([4, 4, 4, 8]), np.array([1, 1, 1, 1])
    m = evaluate_sysu(distmat, np.array([8]), g_pids, np.array([6]), g_cams, max_rank=4)
    np.testing.assert_allclose(m.cmc, [0, 1, 1, 1])
    assert m.mAP == pytest.approx(1 / 4)  # mAP uses the full list, not the deduplicated one
    plain = evaluate_regdb(distmat, np.array([8]), g_pids, max_rank=4)
    np.testing.assert_allclose(plain.cmc, [0, 0, 0, 1])


def test_queries_without_positive_are_skipped() -> None:
    distmat = np.array([[0.1, 0.2], [0.2, 0.1]])
    m = evaluate_regdb(distmat, np.array([1, 99]), np.array([1, 2]), max_rank=2)
    assert m.num_queries == 1 and m.rank(1) == 1.0 and m.mAP == 1.0
    with pytest.raises(InputSpecError, match="no query has a positive"):
        evaluate_regdb(distmat, np.array([98, 99]), np.array([1, 2]))


def test_input_shape_errors() -> None:
    with pytest.raises(InputSpecError, match="2-D"):
        evaluate_regdb(np.zeros(3), np.zeros(3), np.zeros(3))
    with pytest.raises(InputSpecError, match="pids must match"):
        evaluate_regdb(np.zeros((2, 3)), np.zeros(3), np.zeros(3))
    with pytest.raises(InputSpecError, match="max_rank must be >= 1, got 0"):
        evaluate_regdb(np.zeros((2, 3)), np.zeros(2), np.zeros(3), max_rank=0)
    with pytest.raises(InputSpecError, match=r"camids must match distmat \(2, 3\)"):
        evaluate_sysu(np.zeros((2, 3)), np.zeros(2), np.zeros(3), np.full(2, 3), np.ones(2))


def test_non_finite_distances_are_refused_not_scored() -> None:
    """NaN used to sort last and give R1 0.33 / mAP 0.51 for an all-NaN matrix."""
    distmat = np.full((3, 3), np.nan)
    with pytest.raises(InputSpecError, match="9 NaN or infinite distances"):
        evaluate_regdb(distmat, np.arange(3), np.arange(3))
    distmat = np.zeros((3, 3))
    distmat[0, 1] = np.inf
    with pytest.raises(InputSpecError, match="1 NaN or infinite"):
        evaluate_sysu(distmat, np.arange(3), np.arange(3), np.full(3, 3), np.ones(3))


def _random_case(rng: np.random.Generator, num_q: int, num_g: int, ties: bool) -> tuple:
    distmat = rng.integers(0, 4, (num_q, num_g)).astype(float) if ties else rng.random((num_q, num_g))
    q_pids = rng.integers(0, 12, num_q)
    g_pids = rng.integers(0, 12, num_g)
    q_cams = rng.choice([3, 6], num_q)
    g_cams = rng.choice([1, 2, 4, 5], num_g)
    return distmat, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("ties", [False, True])
def test_agrees_with_reference_implementation(seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    num_q, num_g = int(rng.integers(1, 40)), int(rng.integers(1, 60))
    distmat, q_pids, g_pids, q_cams, g_cams = _random_case(rng, num_q, num_g, ties)
    try:
        ref = reference_sysu(distmat, q_pids, g_pids, q_cams, g_cams)
    except (ValueError, ZeroDivisionError):  # no valid query: ours must refuse too
        with pytest.raises(InputSpecError):
            evaluate_sysu(distmat, q_pids, g_pids, q_cams, g_cams)
    else:
        ours = evaluate_sysu(distmat, q_pids, g_pids, q_cams, g_cams)
        np.testing.assert_allclose(ours.cmc, ref[0], atol=1e-6)
        assert ours.mAP == pytest.approx(ref[1], abs=1e-6)
        assert ours.mINP == pytest.approx(ref[2], abs=1e-6)
    if np.isin(q_pids, g_pids).any():
        ref = reference_regdb(distmat, q_pids, g_pids)
        ours = evaluate_regdb(distmat, q_pids, g_pids)
        np.testing.assert_allclose(ours.cmc, ref[0], atol=1e-6)
        assert ours.mAP == pytest.approx(ref[1], abs=1e-6)
        assert ours.mINP == pytest.approx(ref[2], abs=1e-6)


def test_full_size_sysu_evaluation_is_fast_and_correct() -> None:
    """3,803 queries x 301 gallery: the real SYSU all-search size (timing is reported, not asserted)."""
    rng = np.random.default_rng(0)
    q_pids = rng.integers(0, 96, 3803)
    g_pids = np.repeat(np.arange(96), 4)[:301]
    feats_q = rng.normal(size=(3803, 64)).astype(np.float32)
    feats_g = rng.normal(size=(301, 64)).astype(np.float32)
    distmat = cosine_distance(feats_q, feats_g)
    q_cams, g_cams = rng.choice([3, 6], 3803), rng.choice([1, 2, 4, 5], 301)
    start = time.perf_counter()
    ours = evaluate_sysu(distmat, q_pids, g_pids, q_cams, g_cams)
    elapsed = time.perf_counter() - start
    ref = reference_sysu(distmat, q_pids, g_pids, q_cams, g_cams)
    np.testing.assert_allclose(ours.cmc, ref[0], atol=1e-6)
    assert ours.mAP == pytest.approx(ref[1], abs=1e-6)
    print(f"evaluate_sysu 3803x301: {elapsed * 1000:.1f} ms")


def test_rank_metrics_accessors() -> None:
    m = RankMetrics(cmc=np.linspace(0.5, 1.0, 20), mAP=0.4, mINP=0.2, num_queries=3)
    assert m.rank(1) == 0.5 and m.rank(50) == 1.0
    assert set(m.as_dict()) == {"R1", "R5", "R10", "R20", "mAP", "mINP"}
    with pytest.raises(InputSpecError):
        m.rank(0)
