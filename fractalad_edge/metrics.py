"""Anomaly detection and segmentation metrics: AUROC, AUPRO, F1-max (numpy only).

These are the numbers the field reports on MVTec AD, computed exactly (no threshold
grids) so that they can be compared with published results, and with numpy alone so
that they also run on an edge device without torch or scikit-learn.

Speed: ``np.argsort`` over tens of millions of pixels is slow, so it is avoided. All
pixel scores are sorted once with ``np.sort`` (SIMD-accelerated); each distinct score of
the anomalous pixels (usually a few percent of all) is located in it with
``np.searchsorted``. Pixel AUROC (Mann-Whitney) and AUPRO (a closed-form sum over the
anomalous pixels) both follow from those counts, which :func:`evaluate_maps` computes
once for both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from fractalad_edge.errors import DatasetError, InvalidInputError

__all__ = [
    "ClassificationAtThreshold",
    "SegmentationMetrics",
    "aupro",
    "binary_rates",
    "evaluate_maps",
    "f1_max",
    "pixel_auroc",
    "roc_auc",
]


# --------------------------------------------------------------------------- validation


def _as_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """1-D bool array from labels given as 0/1 or bool."""
    array = np.asarray(labels)
    if array.ndim != 1:
        msg = f"{name} must be 1-D (one label per image), got shape {array.shape}."
        raise InvalidInputError(msg)
    if array.dtype != np.bool_:
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            msg = f"{name} must be 0 (good) / 1 (anomalous) or bool, got dtype {array.dtype}."
            raise InvalidInputError(msg)
        invalid = ~np.isin(array, (0, 1))
        if invalid.any():
            bad = np.unique(array[invalid])[:5].tolist()
            msg = f"{name} must hold only 0 (good) and 1 (anomalous), got also {bad}."
            raise InvalidInputError(msg)
        array = array == 1
    return array


def _as_scores(scores: np.ndarray, length: int, name: str = "scores") -> np.ndarray:
    array = np.asarray(scores)
    if array.ndim != 1 or array.shape[0] != length:
        msg = f"{name} must be 1-D with one score per label ({length}), got shape {array.shape}."
        raise InvalidInputError(msg)
    return _finite_float(array, name)


def _finite_float(array: np.ndarray, name: str) -> np.ndarray:
    """Keep float32/float64 as they are (no 300 MB copies), convert the rest to float64."""
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        msg = f"{name} must be real numbers, got dtype {array.dtype}."
        raise InvalidInputError(msg)
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    if not np.isfinite(array).all():
        msg = f"{name} hold NaN or infinite values; every score must be finite. Check the model output."
        raise InvalidInputError(msg)
    return array


def _as_masks_and_maps(masks: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask_array = np.asarray(masks)
    map_array = np.asarray(maps)
    if mask_array.ndim != 3:
        msg = f"masks must have shape (N, H, W), got {mask_array.shape}."
        raise InvalidInputError(msg)
    if map_array.shape != mask_array.shape:
        msg = (
            f"maps must have the shape of masks {mask_array.shape}, got {map_array.shape}. "
            "Resize the anomaly maps to the mask size before evaluating."
        )
        raise InvalidInputError(msg)
    if mask_array.size == 0:
        msg = f"masks are empty (shape {mask_array.shape}); at least one pixel is needed."
        raise InvalidInputError(msg)
    if mask_array.dtype != np.bool_:
        mask_array = mask_array != 0
    return mask_array, _finite_float(map_array, "maps")


def _require_both_classes(positives: int, negatives: int, what: str) -> None:
    if positives == 0 or negatives == 0:
        missing = "anomalous" if positives == 0 else "normal"
        msg = (
            f"{what} needs both normal and anomalous {_UNITS[what]}, but there are {positives} anomalous "
            f"and {negatives} normal ones (no {missing} ones). Evaluate on a test set that holds both."
        )
        raise DatasetError(msg)


_UNITS = {"AUROC": "samples", "pixel AUROC": "pixels", "AUPRO": "pixels", "F1-max": "samples"}


# --------------------------------------------------------------------------- AUROC


def _auc_from_sorted(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Mann-Whitney AUROC from sorted normal and anomalous scores; ties count 1/2.

    Equals the trapezoidal area under the ROC curve that scikit-learn computes.
    """
    below = np.searchsorted(negatives, positives, side="left")
    below_or_equal = np.searchsorted(negatives, positives, side="right")
    wins = float(below.sum(dtype=np.int64)) + 0.5 * float((below_or_equal - below).sum(dtype=np.int64))
    return wins / (float(positives.size) * float(negatives.size))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (1 = anomalous scores higher), ties handled like scikit-learn.

    Raises :class:`DatasetError` when the labels hold only one class, since AUROC is then
    undefined.
    """
    truth = _as_labels(labels)
    values = _as_scores(scores, truth.shape[0])
    positives = np.sort(values[truth])
    negatives = np.sort(values[~truth])
    _require_both_classes(positives.size, negatives.size, "AUROC")
    return _auc_from_sorted(negatives, positives)


# --------------------------------------------------------------------------- pixel level


@dataclass(frozen=True)
class _AnomalousPixelRanks:
    """Where the anomalous pixels' scores fall among the normal pixels' scores.

    Pixel AUROC and AUPRO both reduce to these counts, taken once per distinct anomalous
    score: how many normal pixels score strictly lower, and how many exactly the same.
    """

    normal_below: np.ndarray  # int64 per distinct anomalous score
    normal_tied: np.ndarray  # int64 per distinct anomalous score
    pixel_count: np.ndarray  # int64: anomalous pixels with that score
    region_share: np.ndarray  # float64: sum of 1 / region size over those pixels (AUPRO only)
    num_normal: int
    num_anomalous: int
    num_regions: int  # 8-connected ground-truth regions over all images (AUPRO only)


def _anomalous_scores(
    masks: np.ndarray, maps: np.ndarray, *, with_regions: bool
) -> tuple[np.ndarray, np.ndarray, int]:
    """Anomalous pixel scores ascending, their 1 / region size in the same order, region count."""
    if not with_regions:
        return np.sort(maps[masks]), np.empty(0), 0
    scores: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    num_regions = 0
    for mask, anomaly_map in zip(masks, maps, strict=True):
        if not mask.any():
            continue
        # 8-connectivity, as scipy.ndimage.label with a 3x3 structure in the MVTec code.
        count, regions = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        sizes = np.bincount(regions.ravel(), minlength=count).astype(np.float64)
        scores.append(anomaly_map[mask])
        weights.append(1.0 / sizes[regions[mask]])
        num_regions += count - 1
    if not scores:
        return np.empty(0, maps.dtype), np.empty(0), 0
    all_scores = np.concatenate(scores)
    order = np.argsort(all_scores)  # only the anomalous pixels: usually a few percent
    return all_scores[order], np.concatenate(weights)[order], num_regions


def _rank_anomalous_pixels(masks: np.ndarray, maps: np.ndarray, *, with_regions: bool) -> _AnomalousPixelRanks:
    anomalous, weights, num_regions = _anomalous_scores(masks, maps, with_regions=with_regions)
    num_anomalous = anomalous.size
    num_normal = maps.size - num_anomalous
    if num_anomalous == 0 or num_normal == 0:
        empty = np.empty(0, np.int64)
        return _AnomalousPixelRanks(
            normal_below=empty,
            normal_tied=empty,
            pixel_count=empty,
            region_share=np.empty(0),
            num_normal=num_normal,
            num_anomalous=num_anomalous,
            num_regions=num_regions,
        )
    every = np.sort(maps, axis=None)
    # Distinct anomalous scores; `starts` also counts the anomalous pixels strictly below.
    starts = np.flatnonzero(np.concatenate(([True], anomalous[1:] != anomalous[:-1])))
    values = anomalous[starts]
    pixel_count = np.diff(np.append(starts, num_anomalous))
    every_below = np.searchsorted(every, values, side="left")
    after_own = every_below + pixel_count
    # A normal pixel ties with a value only if `every` still holds that value after the
    # value's own anomalous pixels; look up the end of the run only there.
    tied = (after_own < every.size) & (every[np.minimum(after_own, every.size - 1)] == values)
    every_at_or_below = after_own.copy()
    if tied.any():
        every_at_or_below[tied] = np.searchsorted(every, values[tied], side="right")
    region_share = np.add.reduceat(weights, starts) if with_regions else np.empty(0)
    return _AnomalousPixelRanks(
        normal_below=(every_below - starts).astype(np.int64),
        normal_tied=(every_at_or_below - after_own).astype(np.int64),
        pixel_count=pixel_count.astype(np.int64),
        region_share=region_share,
        num_normal=num_normal,
        num_anomalous=num_anomalous,
        num_regions=num_regions,
    )


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float:
    """AUROC over every pixel of every image (MVTec AD pixel-level AUROC).

    ``masks`` (N, H, W), non-zero = anomalous; ``maps`` (N, H, W) anomaly scores.
    """
    mask_array, map_array = _as_masks_and_maps(masks, maps)
    return _pixel_auroc_from_ranks(_rank_anomalous_pixels(mask_array, map_array, with_regions=False))


def _pixel_auroc_from_ranks(ranks: _AnomalousPixelRanks) -> float:
    """Mann-Whitney: each (anomalous, normal) pair won counts 1, a tie 1/2."""
    _require_both_classes(ranks.num_anomalous, ranks.num_normal, "pixel AUROC")
    wins = int(np.dot(ranks.pixel_count, ranks.normal_below))
    ties = int(np.dot(ranks.pixel_count, ranks.normal_tied))
    return (wins + 0.5 * ties) / (float(ranks.num_anomalous) * float(ranks.num_normal))


def aupro(masks: np.ndarray, maps: np.ndarray, *, fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap (PRO) curve up to ``fpr_limit`` FPR.

    Gives the value of the official MVTec AD evaluation code (``compute_pro`` +
    ``trapezoid_area``):

    - ground-truth regions are the 8-connected components of each mask; the PRO at a
      threshold is the mean, over all regions of all images, of the fraction of the
      region's pixels scoring at or above it;
    - the false-positive rate is over the normal pixels of *all* images;
    - every distinct score is a threshold (no grid); the curve starts at (0, 0) and
      joins its points with straight lines (trapezoid rule), the PRO at ``fpr_limit``
      being linearly interpolated; the area is divided by ``fpr_limit`` so that a
      perfect map scores 1.

    Instead of sorting all pixels and walking the curve, the area is summed per
    anomalous pixel: the piecewise-linear curve is the sum of one ramp per pixel (a step
    where no normal pixel ties with its score), each integrated in closed form up to
    ``fpr_limit``. Same number, without an argsort of every pixel.

    Images whose mask is empty add only normal pixels. Raises :class:`DatasetError` when
    there is no anomalous region or no normal pixel.
    """
    _check_fpr_limit(fpr_limit)
    mask_array, map_array = _as_masks_and_maps(masks, maps)
    return _aupro_from_ranks(_rank_anomalous_pixels(mask_array, map_array, with_regions=True), fpr_limit)


def _check_fpr_limit(fpr_limit: float) -> None:
    if isinstance(fpr_limit, bool) or not isinstance(fpr_limit, int | float) or not 0.0 < fpr_limit <= 1.0:
        msg = f"fpr_limit must be a number in (0, 1], got {fpr_limit!r}. The MVTec AD protocol uses 0.3."
        raise InvalidInputError(msg)


def _aupro_from_ranks(ranks: _AnomalousPixelRanks, fpr_limit: float) -> float:
    """Integrate each anomalous score's contribution to the PRO curve over [0, fpr_limit].

    Pixels with score v join the curve at the threshold v, where the FPR moves from
    ``above / N`` (normal pixels scoring higher) to ``(above + tied) / N``: their PRO
    contribution is 0 before, 1 after, and linear in between (the curve's straight line
    across a diagonal step), so its integral up to L has a closed form.
    """
    _require_both_classes(ranks.num_anomalous, ranks.num_normal, "AUPRO")
    num_normal = float(ranks.num_normal)
    above = ranks.num_normal - ranks.normal_below - ranks.normal_tied
    start = above / num_normal
    width = ranks.normal_tied / num_normal
    covered = np.clip(fpr_limit - start, 0.0, width)
    ramp = np.divide(covered * covered, 2.0 * width, out=np.zeros_like(width), where=width > 0)
    plateau = np.maximum(fpr_limit - (start + width), 0.0)
    area = float(np.dot(ranks.region_share, ramp + plateau)) / ranks.num_regions
    return area / fpr_limit


# --------------------------------------------------------------------------- thresholds


@dataclass(frozen=True, kw_only=True)
class ClassificationAtThreshold:
    """Image-level decision quality at one threshold (anomalous when score >= threshold).

    Rates whose denominator is zero (e.g. recall without anomalous samples, precision
    when nothing is flagged) are NaN rather than a made-up 0 or 1.
    """

    threshold: float
    precision: float
    recall: float
    f1: float
    false_alarm_rate: float  # false positives / normal samples
    miss_rate: float  # false negatives / anomalous samples
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def binary_rates(labels: np.ndarray, scores: np.ndarray, threshold: float) -> ClassificationAtThreshold:
    """Precision, recall, F1, false-alarm and miss rates when ``score >= threshold`` is anomalous."""
    truth = _as_labels(labels)
    values = _as_scores(scores, truth.shape[0])
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating | np.integer):
        msg = f"threshold must be a real number, got {threshold!r}."
        raise InvalidInputError(msg)
    if not math.isfinite(float(threshold)):
        msg = f"threshold must be finite, got {threshold!r}."
        raise InvalidInputError(msg)
    flagged = values >= threshold
    tp = int(np.count_nonzero(flagged & truth))
    fp = int(np.count_nonzero(flagged & ~truth))
    fn = int(np.count_nonzero(~flagged & truth))
    tn = int(np.count_nonzero(~flagged & ~truth))
    return ClassificationAtThreshold(
        threshold=float(threshold),
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        false_alarm_rate=_ratio(fp, fp + tn),
        miss_rate=_ratio(fn, tp + fn),
        true_positives=tp,
        false_positives=fp,
        true_negatives=tn,
        false_negatives=fn,
    )


def f1_max(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Best F1 over every threshold, and that threshold (anomalous when score >= it).

    Every distinct score is a candidate, but the best F1 always sits at an anomalous
    sample's score (moving the threshold up to the next anomalous score drops false
    alarms and keeps every hit), so only those are evaluated: one ``np.sort`` and a
    search, fast enough for pixel-level use on millions of pixels. When several
    thresholds give the same best F1 the highest is returned (fewest false alarms).
    Needs at least one anomalous sample.
    """
    truth = _as_labels(labels)
    values = _as_scores(scores, truth.shape[0])
    positives = np.sort(values[truth])
    if positives.size == 0:
        msg = (
            f"F1-max needs at least one anomalous sample, got {truth.size} samples all labelled good. "
            "Evaluate on a test set that holds defects."
        )
        raise DatasetError(msg)
    every = np.sort(values)
    starts = np.flatnonzero(np.concatenate(([True], positives[1:] != positives[:-1])))
    thresholds = positives[starts]
    true_positives = positives.size - starts
    flagged = every.size - np.searchsorted(every, thresholds, side="left")
    f1 = 2.0 * true_positives / (flagged + positives.size)
    best = int(np.flatnonzero(f1 == f1.max())[-1])
    return float(f1[best]), float(thresholds[best])


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True, kw_only=True)
class SegmentationMetrics:
    """The MVTec AD metrics of one evaluation, as fractions in [0, 1] (callers show x100).

    ``image_f1_threshold`` is in image-score units. Pixel metrics are NaN when the
    evaluation had no masks.
    """

    image_auroc: float
    pixel_auroc: float
    aupro: float
    image_f1_max: float
    image_f1_threshold: float

    def to_dict(self) -> dict[str, float]:
        """Plain dict for JSON reports."""
        return asdict(self)


def evaluate_maps(
    labels: np.ndarray,
    image_scores: np.ndarray,
    masks: np.ndarray | None = None,
    maps: np.ndarray | None = None,
    *,
    fpr_limit: float = 0.3,
) -> SegmentationMetrics:
    """All metrics of one test set: image AUROC and F1-max, pixel AUROC and AUPRO.

    ``masks`` and ``maps`` are (N, H, W), one per label, good images with all-zero masks.
    Pass neither for image-level evaluation only (pixel metrics become NaN). Pixels are
    sorted and ranked once for both pixel metrics. A good image (label 0) whose mask has
    anomalous pixels is refused: it means the lists are out of order.
    """
    image_auc = roc_auc(labels, image_scores)
    best_f1, best_threshold = f1_max(labels, image_scores)
    pixel_auc = region_overlap = math.nan
    if (masks is None) != (maps is None):
        msg = "Pass both masks and maps for pixel metrics, or neither for image-level metrics only."
        raise InvalidInputError(msg)
    if masks is not None and maps is not None:
        _check_fpr_limit(fpr_limit)
        mask_array, map_array = _as_masks_and_maps(masks, maps)
        count = np.asarray(labels).shape[0]
        if mask_array.shape[0] != count:
            msg = f"masks and maps must hold one entry per label ({count}), got {mask_array.shape[0]}."
            raise InvalidInputError(msg)
        good_with_defect = np.flatnonzero(~_as_labels(labels) & mask_array.any(axis=(1, 2)))
        if good_with_defect.size:
            msg = (
                f"Images labelled good (0) have anomalous mask pixels, at indices {good_with_defect[:5].tolist()}. "
                "labels, masks and maps must list the same images in the same order."
            )
            raise InvalidInputError(msg)
        ranks = _rank_anomalous_pixels(mask_array, map_array, with_regions=True)
        pixel_auc = _pixel_auroc_from_ranks(ranks)
        region_overlap = _aupro_from_ranks(ranks, fpr_limit)
    return SegmentationMetrics(
        image_auroc=image_auc,
        pixel_auroc=pixel_auc,
        aupro=region_overlap,
        image_f1_max=best_f1,
        image_f1_threshold=best_threshold,
    )
