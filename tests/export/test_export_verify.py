"""`verify` → `ParityReport` with callables (fast, exact expectations) and threshold calibration."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from contract_model import contract_card

from vireid import ArtifactError, ConfigError, DatasetError, InputSpecError, ModelCard, Precision, jsonio
from vireid.backends import open_backend
from vireid.export import Thresholds, calibrate_threshold, synthetic_gallery, verify
from vireid.export.calibrate import (
    Calibration,
    TrackMeanCheck,
    WithinThreshold,
    check_track_means,
    cross_modal_scores,
    threshold_at_fmr,
    track_mean_scores,
    within_modality_scores,
)
from vireid.export.parity import Side, retrieval_agreement

SIZE = (32, 16)
PROJECTION = np.random.default_rng(0).standard_normal((3 * 4 * 2 + 1, 24))


def embed(images: np.ndarray, modality: np.ndarray) -> np.ndarray:
    """A stand-in model: pooled pixels and the modality, projected and L2-normalised."""
    n = len(images)
    pooled = images.reshape(n, 4, 8, 2, 8, 3).mean(axis=(2, 4)).reshape(n, -1) / 255.0
    x = np.concatenate([pooled, modality[:, None]], axis=1) @ PROJECTION
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def sized(fn):
    """A side with a known input size (callables have none)."""
    return Side(fn.__name__, fn, input_size=SIZE)


def inputs(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    images, modality, _ = synthetic_gallery(SIZE, identities=n // 2)
    return images, modality


def test_identical_models_pass_with_perfect_scores() -> None:
    report = verify(embed, embed, inputs(), thresholds=Thresholds.for_precision("fp32"))
    assert report and report.passed and not report.failures
    assert report.min_cosine == pytest.approx(1.0) and report.max_abs_error == 0.0
    assert (report.top1_agreement, report.top5_agreement, report.queries) == (1.0, 1.0, 40)
    assert report.batch_delta == 0.0
    text = str(report)
    assert "PASS" in text and "cosine min / mean" in text and "top-1 / top-5" in text
    assert json.loads(json.dumps(report.to_dict()))["passed"] is True


def test_noise_is_caught_and_reported() -> None:
    rng = np.random.default_rng(1)

    def noisy(images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        out = embed(images, modality) + rng.normal(0, 0.05, (len(images), 24)).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    report = verify(embed, noisy, inputs(), check_batch=False)
    assert not report and "min cosine" in report.failures[0]
    assert report.min_cosine < 0.999 and "FAIL" in str(report)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (lambda e: e * 2.0, "not unit length"),
        (lambda e: np.where(np.arange(len(e))[:, None] == 3, np.nan, e), "not finite"),
    ],
)
def test_non_normalised_or_non_finite_candidates_fail(broken, message) -> None:
    report = verify(embed, lambda i, m: broken(embed(i, m)), inputs(), check_batch=False)
    assert any(message in f for f in report.failures)


def test_a_non_finite_reference_fails_too() -> None:
    """An FP16 file is often the reference (engine vs FP16 ONNX): NaN rows there used to PASS
    (`nan < limit` is False)."""
    report = verify(
        lambda i, m: np.where(np.arange(len(i))[:, None] == 3, np.nan, embed(i, m)),
        embed,
        inputs(400),
        check_batch=False,
    )
    assert not report and any("1 reference rows are not finite" in f for f in report.failures)


def test_the_verdict_does_not_depend_on_which_side_is_the_reference() -> None:
    from vireid.export.parity import lower_precision

    fp32, fp16 = contract_card(), contract_card(precision="fp16")
    assert (
        lower_precision(fp32, fp16) == lower_precision(fp16, fp32) == lower_precision(fp16) == Precision.FP16
    )
    assert lower_precision(None, fp32) == Precision.FP32  # a checkpoint has no card
    assert lower_precision(contract_card(precision="int8"), fp16) == Precision.INT8


def test_batch_dependence_is_measured() -> None:
    def batch_dependent(images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        out = embed(images, modality) + 1e-3 * len(images)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    report = verify(embed, sized(batch_dependent), inputs(64), thresholds=Thresholds(0.9, 0.0, 1e-5))
    assert report.batch_delta > 1e-5 and any("alone vs batch" in f for f in report.failures)


def test_a_model_that_gives_nan_only_alone_fails_and_its_report_is_valid_json() -> None:
    """NaN compared with a limit is False, so a NaN batch delta used to PASS."""

    def nan_alone(images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        out = embed(images, modality)
        return np.full_like(out, np.nan) if len(images) == 1 else out

    report = verify(embed, sized(nan_alone), inputs(64))
    assert not report and any("alone vs batch" in f for f in report.failures)
    text = jsonio.dumps(report.to_dict())
    assert json.loads(text)["batch_delta"] is None and "NaN" not in text


def test_infinite_rows_score_cosine_zero_not_a_huge_error() -> None:
    report = verify(
        embed,
        lambda i, m: np.where(np.arange(len(i))[:, None] == 3, np.inf, embed(i, m)),
        inputs(),
        check_batch=False,
    )
    assert not report and report.min_cosine == 0.0 and report.max_abs_error <= 2.0


def test_retrieval_agreement_counts_swaps() -> None:
    modality = np.array([0, 0, 0, 1, 1, 1])
    ref = np.eye(6)[[0, 1, 2, 0, 1, 2]].astype(np.float32)  # each infrared row matches one visible row
    cand = ref.copy()
    cand[3] = np.eye(6)[1] * 0.9 + np.eye(6)[0] * 0.1  # one infrared query now prefers another visible row
    top1, top5, queries = retrieval_agreement(ref, cand, modality)
    assert queries == 6 and top1 == pytest.approx(5 / 6) and top5 == 1.0  # 3 gallery rows: top-k sets equal


def test_input_errors() -> None:
    with pytest.raises(InputSpecError, match="neither side states its input size"):
        verify(embed, embed)
    with pytest.raises(InputSpecError, match="uint8"):
        verify(sized(embed), embed, (np.zeros((2, *SIZE, 3), np.float32), np.zeros(2, np.int32)))
    with pytest.raises(InputSpecError, match="modality"):
        verify(sized(embed), embed, (np.zeros((2, *SIZE, 3), np.uint8), np.zeros(3, np.int32)))
    other = Side("other", embed, input_size=(64, 32))
    with pytest.raises(ArtifactError, match="not the same model"):
        verify(sized(embed), other)
    with pytest.raises(InputSpecError, match="cannot compare"):
        verify(sized(embed), 42)


def test_truncated_candidate_is_an_artifact_error(tiny_onnx: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(tiny_onnx.read_bytes()[:2000])
    with pytest.raises(ArtifactError):
        verify(tiny_onnx, bad, device="cpu")


# ----- calibration ----------------------------------------------------------------------------------
def test_threshold_at_fmr_meets_the_target() -> None:
    rng = np.random.default_rng(0)
    impostor, genuine = rng.normal(0.1, 0.1, 20000), rng.normal(0.7, 0.1, 500)
    threshold, achieved, tmr = threshold_at_fmr(genuine, impostor, 1e-3)
    assert achieved <= 1e-3 and np.sum(impostor >= threshold) == 20
    assert np.sum(impostor >= threshold - 1.01e-6) > 20  # the lowest such threshold, but for the margin
    # the runtime scores in float32: the boundary impostor must stay below the threshold there too
    boundary = np.sort(impostor)[::-1][20]
    assert np.float32(boundary) < np.float32(threshold)
    assert tmr == pytest.approx(np.mean(genuine >= threshold))
    # too few impostor pairs for the target: above every impostor, achieved 0
    threshold, achieved, _ = threshold_at_fmr(genuine, impostor[:100], 1e-3)
    assert threshold > impostor[:100].max() and achieved == 0.0
    with pytest.raises(ConfigError, match=r"in \(0, 1\)"):
        threshold_at_fmr(genuine, impostor, 0.0)
    with pytest.raises(ConfigError, match="no impostor"):
        threshold_at_fmr(genuine, [], 1e-3)


def test_cross_modal_pairs_only() -> None:
    emb = np.eye(4, dtype=np.float32)
    genuine, impostor = cross_modal_scores(emb, np.array([0, 0, 1, 1]), np.array([1, 2, 1, 2]))
    assert len(genuine) == 2 and len(impostor) == 2  # 2 visible x 2 infrared


def test_within_modality_pairs_each_unordered_pair_once() -> None:
    # visible: ids 1, 1, 2 (rows 0, 1, 4); infrared rows 2, 3 are left out
    emb = np.array([[1, 0], [0.6, 0.8], [0, 1], [1, 0], [0.8, 0.6]], np.float32)
    modality, pids = np.array([0, 0, 1, 1, 0]), np.array([1, 1, 1, 2, 2])
    genuine, impostor = within_modality_scores(emb, modality, pids, 0)
    np.testing.assert_allclose(genuine, [0.6], atol=1e-6)  # rows 0-1
    np.testing.assert_allclose(sorted(impostor), [0.8, 0.96], atol=1e-6)  # rows 0-4, 1-4
    rng = np.random.default_rng(0)
    emb, pids = rng.standard_normal((40, 4)), rng.integers(0, 5, 40)
    whole = within_modality_scores(emb, np.zeros(40, int), pids, 0)
    blocks = within_modality_scores(emb, np.zeros(40, int), pids, 0, block=7)  # same pairs, by blocks
    for a, b in zip(whole, blocks, strict=True):
        np.testing.assert_allclose(np.sort(a), np.sort(b))
    assert len(whole[0]) + len(whole[1]) == 40 * 39 // 2


def _identities(n_ids: int, per_modality: int, noise: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Unit embeddings of `n_ids` identities, half visible and half infrared: a direction all people
    share (as trained embeddings do) plus one of their own, plus Gaussian noise per image."""
    rng = np.random.default_rng(seed)
    prototypes = rng.standard_normal(32) + rng.standard_normal((n_ids, 32))
    pids = np.repeat(np.arange(n_ids), 2 * per_modality)
    modality = np.tile(np.repeat([0, 1], per_modality), n_ids)
    emb = prototypes[pids] + noise * rng.standard_normal((len(pids), 32))
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), modality, pids


def test_track_mean_scores_pair_every_track_with_every_centroid() -> None:
    emb, modality, pids = _identities(6, 8, noise=1.0)
    genuine, impostor = track_mean_scores(emb, modality, pids, track_images=3, centroid_images=2, draws=4)
    assert len(genuine) == 4 * 6 and len(impostor) == 4 * 6 * 5
    assert np.all(np.abs(genuine) <= 1 + 1e-9) and genuine.mean() > impostor.mean()
    # an identity without infrared images has no track and no centroid: left out of both sides
    keep = ~((pids == 5) & (modality == 1))
    genuine, impostor = track_mean_scores(emb[keep], modality[keep], pids[keep], draws=2)
    assert len(genuine) == 2 * 5 and len(impostor) == 2 * 5 * 4


def test_tracks_are_infrared_means_and_centroids_visible_ones() -> None:
    """Identity 0: every infrared image is c; its visible images are c ± w, which average to c. A track
    of one infrared image against an 8-image visible centroid scores 1; swapped, it would score 0.71."""
    c, w = np.eye(3)[0], np.eye(3)[1]
    visible = [(c + sign * w) / np.sqrt(2) for sign in (1, -1) * 4]
    other = np.random.default_rng(0).standard_normal((4, 3))
    emb = np.vstack([*visible, c, c, *other])
    modality = np.array([0] * 8 + [1, 1] + [0, 0, 1, 1])
    pids = np.array([0] * 10 + [1] * 4)
    genuine, _ = track_mean_scores(emb, modality, pids, track_images=1, centroid_images=8, draws=3)
    np.testing.assert_allclose(genuine[::2], 1.0, atol=1e-9)  # identity 0 comes first in every draw


def test_track_means_score_impostors_higher_than_single_images_and_the_check_says_so() -> None:
    """Means cancel the per-image noise, so two people's means are as alike as their prototypes, which
    share a direction: the single-image threshold lets more impostors through, the reason the check
    exists."""
    emb, modality, pids = _identities(40, 10, noise=1.5)
    genuine, impostor = cross_modal_scores(emb, modality, pids)
    threshold, achieved, _ = threshold_at_fmr(genuine, impostor, 1e-2)
    check = check_track_means(emb, modality, pids, threshold, 1e-2)
    assert isinstance(check, TrackMeanCheck) and check.impostor_pairs == 20 * 40 * 39
    assert check.identities == 40 and check_track_means(emb, modality, pids, threshold, 1e-2) == check
    assert check.fmr_at_threshold > 2 * achieved and check.threshold_for_target > threshold
    assert check.tmr_at_threshold > 0.5  # and genuine means clear it more often too
    one_identity = pids == 0
    assert check_track_means(emb[one_identity], modality[one_identity], pids[one_identity], 0.5, 1e-2) is None


def test_a_high_track_mean_false_match_rate_is_reported_with_the_threshold_that_keeps_the_target() -> None:
    """Resolved, the track-mean threshold is the pipeline's default (reported, no warning); too few
    comparisons to resolve it and a rate well above the target there is a warning."""
    check = TrackMeanCheck(5, 5, 20, 20, 6.3e-3, 0.55, 0.70111, 0.31, genuine_pairs=400, impostor_pairs=7600)
    calibration = Calibration(0.575, 1e-3, 9.8e-4, 0.15, 2048, 38848, track_means=check)
    assert calibration.warnings() == []
    line = str(calibration).splitlines()[-1]
    assert line.startswith("track means (5 infrared images vs 5-image visible centroids)")
    assert "6.30e-03 at this threshold, 0.7012 for 0.001, the stream pipeline's default" in line
    few = replace(calibration, track_means=replace(check, impostor_pairs=240, genuine_pairs=80))
    (warning,) = few.warnings()
    assert "about 6.3e-03, 6.3x the target" in warning and "of 20 identities, an estimate" in warning
    assert "240 comparisons are too few to say which threshold gives 0.001" in warning
    assert "`vireid run --threshold`" in warning
    close = replace(few, track_means=replace(few.track_means, fmr_at_threshold=2e-3))
    assert close.warnings() == []


def test_calibration_on_validation_identities_goes_into_the_card(tiny_onnx: Path, tiny_sysu: Path) -> None:
    with open_backend(tiny_onnx, device="cpu") as backend:
        calibration = calibrate_threshold(backend.infer, tiny_sysu, backend.card.input_size, fmr=0.01)
        card = calibration.apply(backend.card)
    assert calibration.genuine_pairs > 0 and calibration.impostor_pairs > calibration.genuine_pairs
    assert calibration.fmr_achieved <= 0.01 and -1.0 <= calibration.threshold <= 1.0
    assert calibration.data["identities"] == 4 and calibration.data["split"] == "val"
    again = ModelCard.from_json(card.to_json())
    assert again.match_threshold == calibration.threshold and again.match_threshold_fmr == 0.01
    assert again.match_threshold_fmr_achieved == calibration.fmr_achieved
    assert again.match_threshold_data["impostor_pairs"] == calibration.impostor_pairs
    assert "threshold" in str(calibration)
    assert set(calibration.within) == {"visible", "infrared"}
    for name, within in calibration.within.items():
        assert within.fmr_achieved <= 0.01 and within.impostor_pairs > within.genuine_pairs > 0
        assert again.match_threshold_within[name] == within.threshold
        assert again.match_threshold_data["within"][name]["impostor_pairs"] == within.impostor_pairs
        assert f"within {name}: threshold" in str(calibration)
    assert calibration.track_means is not None
    assert again.match_threshold_data["track_means"] == calibration.track_means.to_dict()


def test_a_calibration_that_cannot_be_trusted_says_why() -> None:
    fine = Calibration(0.5, 1e-3, 9e-4, 0.3, genuine_pairs=2048, impostor_pairs=38848)
    assert fine.warnings() == []
    tiny = Calibration(0.95, 1e-3, 0.0, 0.0, genuine_pairs=171, impostor_pairs=324)
    few, blind = tiny.warnings()
    assert "324 impostor pairs cannot measure a false-match rate of 0.001" in few and "3.1e-03" in few
    assert "true-match rate 0" in blind
    assert "achieved 0 of 324 impostor pairs (below 1/324" in str(tiny)  # not "0.00e+00"
    assert "achieved 9.00e-04" in str(fine) and tiny.achieved_text().startswith("0 of 324")
    no_genuine = Calibration(0.5, 1e-3, 0.0, float("nan"), genuine_pairs=0, impostor_pairs=38848)
    assert any("true-match rate 0" in w for w in no_genuine.warnings())  # NaN: no genuine pair at all


def test_calibration_normalises_like_the_runtime_and_refuses_broken_output(tiny_sysu: Path) -> None:
    """The runtime renormalises every vector (`Embedder`): a threshold calibrated on the raw output of
    a model whose vectors are not unit length would not hold for what the runtime compares."""
    unit = calibrate_threshold(embed, tiny_sysu, SIZE, fmr=0.05)
    half = calibrate_threshold(lambda i, m: 0.5 * embed(i, m), tiny_sysu, SIZE, fmr=0.05)
    assert half.threshold == pytest.approx(unit.threshold, abs=1e-6)

    def one_nan(images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        out = embed(images, modality)
        out[2] = np.nan
        return out

    with pytest.raises(ArtifactError, match=r"fp16\.onnx: .*zero or non-finite embeddings for items \[2\]"):
        calibrate_threshold(one_nan, tiny_sysu, SIZE, fmr=0.05, source="fp16.onnx")


def test_within_modality_thresholds_get_the_same_warnings() -> None:
    blind = WithinThreshold(0.9, 0.0, 0.0, genuine_pairs=10, impostor_pairs=5000)
    capped = WithinThreshold(1.0, 0.02, 0.5, genuine_pairs=10, impostor_pairs=5000)
    calibration = Calibration(
        0.5, 1e-3, 9e-4, 0.3, 2048, 38848, within={"infrared": blind, "visible": capped}
    )
    infrared, visible = calibration.warnings()
    assert infrared.startswith("within infrared: no genuine pair reaches the threshold")
    assert visible.startswith("within visible: the false-match rate is 2.00e-02, above the target 0.001")


def test_calibration_data_errors(tmp_path: Path, tiny_sysu: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        calibrate_threshold(embed, tmp_path / "nothing", SIZE)
    with pytest.raises(ConfigError, match="not 'test'"):
        calibrate_threshold(embed, tiny_sysu, SIZE, split="test")


def test_top1_agreement_forgives_near_ties_within_the_score_error_but_not_real_swaps() -> None:
    from vireid.export.parity import retrieval_agreement

    def unit(rows):
        rows = np.asarray(rows, np.float64)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    modality = np.array([1, 0, 0])  # one infrared query, two visible gallery items
    reference = unit([[1.0, 0.0], [0.9, 0.1], [0.9, 0.1005]])  # a near-tie between the two gallery rows
    swapped = unit([[1.0, 0.0], [0.9, 0.1005], [0.9, 0.1]])  # rounding-sized change flips the tie
    assert retrieval_agreement(reference, swapped, modality, tie=1e-3)[0] == 1.0
    assert retrieval_agreement(reference, swapped, modality, tie=0.0)[0] < 1.0  # exact comparison
    reference = unit([[1.0, 0.0], [1.0, 0.05], [0.2, 1.0]])  # a clear winner
    wrong = unit([[1.0, 0.0], [0.2, 1.0], [1.0, 0.05]])  # candidate ranks the other item first
    top1, _, queries = retrieval_agreement(reference, wrong, modality, tie=1e-2)
    assert queries == 3 and top1 == 2 / 3  # the infrared query disagrees; each visible query has one item


def test_precision_tie_tolerances_scale_with_the_rounding_each_precision_allows() -> None:
    # FP16 moves scores by ~1e-3..3e-3 on a trained model: a swap between items 5e-3 apart is a tie
    # at FP16 but an error at FP32; an explicit `tie` wins over the 1 - min_cosine default.
    fp32, fp16, int8 = (Thresholds.for_precision(p) for p in ("fp32", "fp16", "int8"))
    assert fp32.tie_tolerance == pytest.approx(1e-5) and int8.tie_tolerance == pytest.approx(0.03)
    assert fp16.tie_tolerance == 1e-2
    assert fp32.tie_tolerance < 5e-3 < fp16.tie_tolerance
    assert Thresholds(0.9, 0.5, 1e-3).tie_tolerance == pytest.approx(0.1)


def test_fp16_report_forgives_a_rounding_sized_swap_but_fails_a_real_one() -> None:
    from vireid.export.parity import _report

    def unit(rows):
        rows = np.asarray(rows, np.float64)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def swapped_report(gap: float):
        # One infrared query, two visible items the reference scores `gap` apart; the candidate swaps them.
        a, b = np.array([1.0, 0.0]), np.array([np.cos(0.5), np.sin(0.5)])
        second = np.array([np.cos(0.5 + gap / np.sin(0.5)), np.sin(0.5 + gap / np.sin(0.5))])
        reference = unit([a, b, second])
        candidate = unit([a, second, b])
        modality = np.array([1, 0, 0])
        return _report("ref", "cand", reference, candidate, modality, None, Thresholds.for_precision("fp16"))

    near, far = swapped_report(5e-3), swapped_report(2e-2)
    assert near.top1_agreement == 1.0
    assert far.top1_agreement < 1.0 and any("top-1" in f for f in far.failures)
