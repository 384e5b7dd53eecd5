"""Decision thresholds and score normalisation, set without real defects.

The model's maps are computed by whatever runtime the artifact runs on (so an INT8
model gets thresholds fitted to its own outputs), then:
- ``f1``: the threshold that maximises F1 on the synthetic set (normals vs fractal anomalies),
  in the middle of the score gap over which F1 is at its best (:func:`f1_threshold`);
- ``fpr``: the quantile of normal scores that gives a target false-alarm rate, which needs
  no anomalies at all and is what a line that cannot afford false stops asks for.
Pixel thresholds are F1-optimal over the synthetic set's pixels in both cases.

Thresholds are fitted on the maps as the graph outputs them, in its score space
(fractalad_edge/score_space.py): for new ``fractalad`` models the head's logits, where the
middle of the F1 gap is a margin in logit units instead of a step of 1e-6 under a saturated
sigmoid. New calibrations normalise ``two-sided`` (:func:`normalization_range`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fractalad_edge.artifact import ScoreCalibration, ScoreNormalization
from fractalad_edge.errors import CalibrationError
from fractalad_edge.metrics import f1_max
from fractalad_edge.preprocess import image_scores
from fractalad_edge.score_space import ScoreSpace
from fractalad_edge.threshold_rule import ThresholdMethod, ThresholdRule

if TYPE_CHECKING:
    from fractalad_edge.predictor import Predictor


MAX_PIXELS = 2_000_000  # pixel F1 on a deterministic subsample keeps calibration to seconds
#: two-sided normalisation: ``min`` is this percentile of the normal calibration scores (half
#: the good parts read 0, the rest below 0.5) and ``max`` this percentile of the anomalous ones
#: (a defect as clear as the typical synthetic anomaly reads 1). On bottle (quick-cpu) the
#: median real defect then reads ~0.8 in logits, against 0.68 with the 90th percentile
#: (docs/experiments/score-space.md)
LOW_PERCENTILE = 50.0
HIGH_PERCENTILE = 50.0


def midpoint(space: ScoreSpace) -> float:
    """The head's own decision point where nothing can be fitted: sigmoid 0.5, logit 0.

    ``distance`` and ``fused`` have none; 0.5 there, as before score spaces existed.
    """
    return 0.0 if space is ScoreSpace.LOGIT else 0.5


def normalization_range(
    normal: np.ndarray, anomalous: np.ndarray, threshold: float, everything: np.ndarray
) -> tuple[float, float]:
    """``(min, max)`` of a two-sided normalisation around ``threshold``, strictly on either side of it.

    ``min``: the median (:data:`LOW_PERCENTILE`) of the normal values, ``max``: the median
    (:data:`HIGH_PERCENTILE`) of the anomalous ones; robust to outliers, unlike the extremes
    ``span`` used. Where a side has no values beyond the threshold (no anomalies,
    or normals all above it) it mirrors the other side's width; where neither has, the
    width is the spread of all values (or 1).
    """
    low = float(np.percentile(normal, LOW_PERCENTILE)) if normal.size else math.nan
    high = float(np.percentile(anomalous, HIGH_PERCENTILE)) if anomalous.size else math.nan
    low_ok, high_ok = low < threshold, high > threshold  # False for NaN
    if not low_ok and not high_ok:
        spread = float(everything.max() - everything.min()) if everything.size else 0.0
        width = spread if spread > 0 and math.isfinite(spread) else 1.0
        return threshold - width, threshold + width
    if not low_ok:
        low = threshold - (high - threshold)
    if not high_ok:
        high = threshold + (threshold - low)
    return low, high


def f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The F1-optimal threshold, in the middle of the score gap where F1 is at its best.

    :func:`~fractalad_edge.metrics.f1_max` returns the top of that gap: the lowest anomalous
    score it keeps. Every threshold between the highest score below it and it flags the
    same samples, so F1 on the calibration set is the same anywhere in the gap. Synthetic
    anomalies are blunter than real defects, so a threshold at the edge of their cluster
    misses real defects that score just below it; the middle of the gap leaves room on both
    sides (measured in docs/experiments/thresholds.md).
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    _, top = f1_max(np.asarray(labels).astype(np.int64).reshape(-1), values)
    below = values[values < top]
    if below.size == 0:
        return float(top)
    return float((below.max() + top) / 2.0)


def fit_thresholds(
    maps: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray,
    scores: np.ndarray,
    *,
    rule: ThresholdRule = ThresholdRule(),
    source: str = "synthetic",
    seed: int | None = None,
    space: ScoreSpace = ScoreSpace.SIGMOID,
    normalization: ScoreNormalization = ScoreNormalization.TWO_SIDED,
) -> ScoreCalibration:
    """Image and pixel thresholds on ``maps`` (in ``space``) and their ``normalization`` range.

    ``span`` keeps the old range (min and max of the scores); ``two-sided`` uses
    :func:`normalization_range`.
    """
    labels = np.asarray(labels).astype(bool)
    normal_scores = scores[~labels]
    if normal_scores.size == 0:
        msg = "calibration needs normal images; the calibration set has none"
        raise CalibrationError(msg)
    if rule.method is ThresholdMethod.F1:
        if labels.all() or not labels.any():
            msg = "the F1 threshold needs both normal and anomalous samples; use --method fpr or raise the anomaly ratio"
            raise CalibrationError(msg)
        image_threshold = f1_threshold(labels, scores)
    else:  # ThresholdRule checked target_fpr is in (0, 1)
        image_threshold = float(np.quantile(normal_scores, 1.0 - rule.target_fpr, method="higher")) + 1e-6

    pixel_labels = masks.reshape(-1)
    pixel_values = maps.reshape(-1)
    if pixel_values.size > MAX_PIXELS:
        pick = np.random.default_rng(0).choice(pixel_values.size, MAX_PIXELS, replace=False)
        pixel_labels, pixel_values = pixel_labels[pick], pixel_values[pick]
    pixel_labels = pixel_labels.astype(bool)
    if pixel_labels.any() and not pixel_labels.all():
        pixel_threshold = f1_threshold(pixel_labels, pixel_values)
    else:
        pixel_threshold = midpoint(space)  # no anomalous pixels to fit on: the head's own midpoint

    if normalization is ScoreNormalization.TWO_SIDED:
        image_min, image_max = normalization_range(normal_scores, scores[labels], image_threshold, scores)
        pixel_min, pixel_max = normalization_range(
            pixel_values[~pixel_labels], pixel_values[pixel_labels], pixel_threshold, pixel_values
        )
    else:
        image_min, image_max = float(scores.min()), float(scores.max())
        image_max = max(image_max, image_min + 1e-6)
        pixel_min, pixel_max = float(pixel_values.min()), float(pixel_values.max())
        pixel_max = max(pixel_max, pixel_min + 1e-6)
    return ScoreCalibration(
        image_threshold=float(image_threshold),
        image_min=float(image_min),
        image_max=float(image_max),
        pixel_threshold=float(pixel_threshold),
        pixel_min=float(pixel_min),
        pixel_max=float(pixel_max),
        rule=rule,
        source=source,
        num_normal=int((~labels).sum()),
        num_anomalous=int(labels.sum()),
        seed=seed,
        normalization=normalization,
    )


def calibrate_scores(
    predictor: Predictor,
    images: Sequence[np.ndarray],
    labels: np.ndarray,
    masks: np.ndarray,
    *,
    rule: ThresholdRule = ThresholdRule(),
    source: str = "synthetic",
    seed: int | None = None,
    normalization: ScoreNormalization = ScoreNormalization.TWO_SIDED,
) -> ScoreCalibration:
    """Run the predictor's own runtime on RGB ``images`` and fit thresholds to its outputs (in its score space)."""
    maps = predictor.raw_maps(images, channel_order="rgb")
    scores = image_scores(maps, predictor.metadata.score)
    return fit_thresholds(
        maps, labels, masks, scores, rule=rule, source=source, seed=seed,
        space=predictor.metadata.score_space, normalization=normalization,
    )
