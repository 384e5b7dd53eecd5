"""Metrics against scikit-learn, a transcription of the MVTec AD AUPRO code, and hand cases."""

from __future__ import annotations

import math
from bisect import bisect

import numpy as np
import pytest
# the reference implementations come with the dev extra; the base install skips this module
scipy_label = pytest.importorskip("scipy.ndimage").label
_sklearn_metrics = pytest.importorskip("sklearn.metrics")
precision_recall_curve, roc_auc_score = _sklearn_metrics.precision_recall_curve, _sklearn_metrics.roc_auc_score

from fractalad_edge.errors import DatasetError, InvalidInputError
from fractalad_edge.metrics import (
    ClassificationAtThreshold,
    SegmentationMetrics,
    aupro,
    binary_rates,
    evaluate_maps,
    f1_max,
    pixel_auroc,
    roc_auc,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20230127)


def _blob_masks(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """Masks with a few rectangles each; the first image is left defect-free."""
    masks = np.zeros((count, size, size), bool)
    for index in range(1, count):
        for _ in range(int(rng.integers(1, 4))):
            top, left = rng.integers(0, size - 4, size=2)
            height, width = rng.integers(1, 6, size=2)
            masks[index, top : top + height, left : left + width] = True
    return masks


def _reference_aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float) -> float:
    """The official MVTec AD compute_pro + trapezoid_area, transcribed plainly (slow, float64)."""
    structure = np.ones((3, 3), dtype=int)
    fp_changes = np.zeros(maps.shape, np.float64)
    pro_changes = np.zeros(maps.shape, np.float64)
    num_ok = 0
    num_regions = 0
    for index, gt in enumerate(masks):
        labeled, count = scipy_label(gt, structure)
        num_regions += count
        ok = labeled == 0
        num_ok += int(ok.sum())
        fp_changes[index][ok] = 1
        for k in range(count):
            region = labeled == k + 1
            pro_changes[index][region] = 1.0 / region.sum()
    scores = maps.ravel()
    order = np.argsort(scores, kind="stable")[::-1]
    scores_sorted = scores[order]
    fprs = np.cumsum(fp_changes.ravel()[order]) / num_ok
    pros = np.cumsum(pro_changes.ravel()[order]) / num_regions
    keep = np.append(np.diff(scores_sorted) != 0, True)
    fprs = np.concatenate(([0.0], np.clip(fprs[keep], None, 1.0), [1.0]))
    pros = np.concatenate(([0.0], np.clip(pros[keep], None, 1.0), [1.0]))
    correction = 0.0
    if fpr_limit not in fprs:
        ins = bisect(fprs.tolist(), fpr_limit)
        y_interp = pros[ins - 1] + (pros[ins] - pros[ins - 1]) * (fpr_limit - fprs[ins - 1]) / (fprs[ins] - fprs[ins - 1])
        correction = 0.5 * (y_interp + pros[ins - 1]) * (fpr_limit - fprs[ins - 1])
    mask = fprs <= fpr_limit
    x, y = fprs[mask], pros[mask]
    return float((np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction) / fpr_limit)


# --------------------------------------------------------------------------- AUROC


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_roc_auc_matches_sklearn_with_ties(rng: np.random.Generator, dtype: type) -> None:
    for _ in range(5):
        labels = rng.random(300) < 0.4
        scores = (rng.integers(0, 12, size=300)).astype(dtype)  # many ties
        assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    labels = rng.random(500) < 0.2
    scores = rng.normal(size=500) + labels
    assert roc_auc(labels.astype(int), scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_hand_cases() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    # one positive 0.3 beats one of two negatives and ties none -> 1/2
    assert roc_auc([0, 1, 0], [0.1, 0.3, 0.5]) == 0.5


def test_roc_auc_rejects_single_class_and_bad_input() -> None:
    with pytest.raises(DatasetError, match="no anomalous"):
        roc_auc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(DatasetError, match="no normal"):
        roc_auc([1, 1], [0.1, 0.2])
    with pytest.raises(InvalidInputError, match="NaN"):
        roc_auc([0, 1], [0.1, float("nan")])
    with pytest.raises(InvalidInputError, match="only 0"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(InvalidInputError, match="one score per label"):
        roc_auc([0, 1, 1], [0.1, 0.2])


def test_pixel_auroc_matches_sklearn(rng: np.random.Generator) -> None:
    masks = _blob_masks(rng, 6, 24)
    for maps in (
        np.round(rng.random(masks.shape), 2) + 0.3 * masks,  # ties and some signal
        rng.random(masks.shape).astype(np.float32),
    ):
        expected = roc_auc_score(masks.ravel(), maps.ravel())
        assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc(masks.astype(np.uint8) * 255, masks.astype(np.float32)) == 1.0


def test_pixel_auroc_rejects_shape_mismatch_and_no_defects(rng: np.random.Generator) -> None:
    masks = _blob_masks(rng, 3, 16)
    with pytest.raises(InvalidInputError, match="Resize"):
        pixel_auroc(masks, rng.random((3, 8, 8)))
    with pytest.raises(DatasetError, match="no anomalous"):
        pixel_auroc(np.zeros((2, 4, 4), bool), rng.random((2, 4, 4)))


# --------------------------------------------------------------------------- AUPRO


def test_aupro_perfect_and_inverted_maps(rng: np.random.Generator) -> None:
    masks = _blob_masks(rng, 5, 32)
    perfect = masks.astype(np.float32) * 0.5 + 0.1 * rng.random(masks.shape).astype(np.float32) * masks
    assert aupro(masks, perfect) == pytest.approx(1.0, abs=1e-12)
    assert aupro(masks, 1.0 - perfect) == pytest.approx(0.0, abs=1e-12)


def test_aupro_random_map_is_half_the_limit(rng: np.random.Generator) -> None:
    masks = _blob_masks(rng, 8, 64)
    maps = rng.random(masks.shape)
    # PRO ~= FPR for an uninformative map, so the normalised area is ~ limit / 2 / limit.
    assert aupro(masks, maps) == pytest.approx(0.15, abs=0.03)


def test_aupro_two_regions_one_found_first() -> None:
    """Region A (one pixel) scores highest; region B only after two false positives.

    Curve: PRO 1/2 for FPR in [0, 2/14], then PRO 1 up to 0.3:
    area = 0.5 * 2/14 + 1 * (0.3 - 2/14), divided by 0.3.
    """
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True  # region A
    mask[3, 3] = True  # region B, not 8-connected to A
    scores = np.linspace(0.0, 0.13, 14)  # 14 normal pixels, all below 0.5...
    scores[-2:] = [0.8, 0.9]  # ...except two false positives above B
    anomaly_map = np.zeros((4, 4))
    anomaly_map[~mask] = scores
    anomaly_map[0, 0], anomaly_map[3, 3] = 1.0, 0.5
    expected = (0.5 * 2 / 14 + 1.0 * (0.3 - 2 / 14)) / 0.3
    assert aupro(mask[None], anomaly_map[None]) == pytest.approx(expected, abs=1e-12)
    assert _reference_aupro(mask[None], anomaly_map[None], 0.3) == pytest.approx(expected, abs=1e-12)


def test_aupro_uses_8_connectivity_and_averages_regions() -> None:
    """A pixel diagonal to a 2-pixel bar is one 3-pixel region (8-connected), not two."""
    mask = np.zeros((5, 5), bool)
    mask[1, 1] = True
    mask[2, 2:4] = True
    anomaly_map = np.full((5, 5), 0.5)  # normal pixels: all false positives at once
    anomaly_map[1, 1] = 1.0  # the single pixel is found first
    anomaly_map[2, 2:4] = 0.0  # the bar only after every normal pixel
    # PRO stays 1/3 (4-connectivity would give the mean of 1 and 0: 1/2) up to FPR 1.
    assert aupro(mask[None], anomaly_map[None]) == pytest.approx(1 / 3, abs=1e-12)
    # Two images, a 1-pixel region found and a 9-pixel region missed: regions are
    # averaged (PRO 1/2), not pixels (which would give 1/10).
    masks = np.zeros((2, 5, 5), bool)
    masks[0, 1, 1] = True
    masks[1, 1:4, 1:4] = True
    maps = np.full(masks.shape, 0.5)
    maps[0, 1, 1] = 1.0
    maps[1][masks[1]] = 0.0
    assert aupro(masks, maps) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_aupro_matches_official_transcription(rng: np.random.Generator, fpr_limit: float) -> None:
    masks = _blob_masks(rng, 6, 32)
    maps = np.round(rng.random(masks.shape) + 0.4 * masks, 2)  # ties across and within regions
    expected = _reference_aupro(masks, maps, fpr_limit)
    assert aupro(masks, maps, fpr_limit=fpr_limit) == pytest.approx(expected, abs=1e-10)
    float32_maps = rng.random(masks.shape).astype(np.float32) + 0.2 * masks
    expected = _reference_aupro(masks, float32_maps.astype(np.float64), fpr_limit)
    assert aupro(masks, float32_maps, fpr_limit=fpr_limit) == pytest.approx(expected, abs=1e-10)


def test_aupro_rejects_bad_limit_and_no_regions(rng: np.random.Generator) -> None:
    masks = _blob_masks(rng, 3, 16)
    maps = rng.random(masks.shape)
    for limit in (0.0, 1.5, float("nan")):
        with pytest.raises(InvalidInputError, match="fpr_limit"):
            aupro(masks, maps, fpr_limit=limit)
    with pytest.raises(DatasetError, match="AUPRO"):
        aupro(np.zeros_like(masks), maps)


# --------------------------------------------------------------------------- F1 and rates


def test_f1_max_hand_example() -> None:
    labels = [0, 0, 1, 1, 0, 1]
    scores = [0.1, 0.4, 0.35, 0.8, 0.2, 0.9]
    # threshold 0.35 flags 0.9, 0.8, 0.4, 0.35: tp 3, fp 1, fn 0 -> F1 = 6/7
    best, threshold = f1_max(labels, scores)
    assert best == pytest.approx(6 / 7)
    assert threshold == 0.35


def test_f1_max_matches_precision_recall_curve(rng: np.random.Generator) -> None:
    labels = rng.random(400) < 0.3
    scores = np.round(rng.normal(size=400) + labels, 1)
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))[:-1]
    best, threshold = f1_max(labels, scores)
    assert best == pytest.approx(f1.max(), abs=1e-12)
    assert binary_rates(labels, scores, threshold).f1 == pytest.approx(best, abs=1e-12)


def test_f1_max_matches_brute_force_and_prefers_the_highest_threshold(rng: np.random.Generator) -> None:
    for _ in range(5):
        labels = rng.random(60) < 0.4
        scores = rng.integers(0, 8, size=60).astype(float)  # heavy ties
        f1_by_threshold = {t: binary_rates(labels, scores, t).f1 for t in np.unique(scores)}
        best = max(f1_by_threshold.values())
        highest = max(t for t, f1 in f1_by_threshold.items() if f1 >= best - 1e-12)
        assert f1_max(labels, scores) == (pytest.approx(best, abs=1e-12), highest)
    # 0.9 (tp 1, fp 0, fn 1) and 0.5 (tp 2, fp 2) both give F1 2/3; the higher one is returned.
    assert f1_max([1, 0, 0, 1, 0], [0.9, 0.7, 0.6, 0.5, 0.1]) == (pytest.approx(2 / 3), 0.9)


def test_f1_max_needs_an_anomalous_sample() -> None:
    with pytest.raises(DatasetError, match="anomalous"):
        f1_max([0, 0], [0.2, 0.3])


def test_binary_rates_hand_example() -> None:
    rates = binary_rates([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9], 0.35)
    assert rates == ClassificationAtThreshold(
        threshold=0.35,
        precision=0.75,
        recall=1.0,
        f1=pytest.approx(6 / 7),
        false_alarm_rate=pytest.approx(1 / 3),
        miss_rate=0.0,
        true_positives=3,
        false_positives=1,
        true_negatives=2,
        false_negatives=0,
    )


def test_binary_rates_undefined_rates_are_nan() -> None:
    normal_only = binary_rates([0, 0, 0, 0], [0.1, 0.2, 0.6, 0.9], 0.5)
    assert normal_only.false_alarm_rate == 0.5
    assert math.isnan(normal_only.recall) and math.isnan(normal_only.miss_rate)
    assert normal_only.precision == 0.0 and normal_only.f1 == 0.0
    nothing_flagged = binary_rates([0, 1], [0.1, 0.2], 0.9)
    assert math.isnan(nothing_flagged.precision) and nothing_flagged.miss_rate == 1.0


# --------------------------------------------------------------------------- evaluate_maps


def test_evaluate_maps_agrees_with_the_single_metrics(rng: np.random.Generator) -> None:
    masks = _blob_masks(rng, 8, 32)
    labels = masks.any(axis=(1, 2)).astype(int)
    maps = (rng.random(masks.shape) * 0.6 + 0.4 * masks).astype(np.float32)
    image_scores = maps.max(axis=(1, 2))
    result = evaluate_maps(labels, image_scores, masks, maps)
    assert isinstance(result, SegmentationMetrics)
    assert result.image_auroc == roc_auc(labels, image_scores)
    assert result.pixel_auroc == pytest.approx(pixel_auroc(masks, maps), abs=1e-15)
    assert result.aupro == pytest.approx(aupro(masks, maps), abs=1e-15)
    assert (result.image_f1_max, result.image_f1_threshold) == f1_max(labels, image_scores)
    assert set(result.to_dict()) == {"image_auroc", "pixel_auroc", "aupro", "image_f1_max", "image_f1_threshold"}


def test_evaluate_maps_image_only(rng: np.random.Generator) -> None:
    labels = np.array([0, 0, 1, 1])
    result = evaluate_maps(labels, [0.1, 0.2, 0.3, 0.4])
    assert result.image_auroc == 1.0 and result.image_f1_max == 1.0 and result.image_f1_threshold == 0.3
    assert math.isnan(result.pixel_auroc) and math.isnan(result.aupro)
    with pytest.raises(InvalidInputError, match="both masks and maps"):
        evaluate_maps(labels, [0.1, 0.2, 0.3, 0.4], masks=np.zeros((4, 2, 2), bool))
    with pytest.raises(InvalidInputError, match="one entry per label"):
        evaluate_maps(labels, [0.1, 0.2, 0.3, 0.4], np.ones((3, 2, 2), bool), rng.random((3, 2, 2)))
    with pytest.raises(InvalidInputError, match="same order"):
        evaluate_maps(labels, [0.1, 0.2, 0.3, 0.4], np.ones((4, 2, 2), bool), rng.random((4, 2, 2)))
