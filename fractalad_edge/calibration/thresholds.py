"""Decision thresholds and score normalisation, set without real defects.

The model's maps are computed by whatever runtime the artifact runs on (so an INT8
model gets thresholds fitted to its own outputs), then:
- ``f1``: the threshold that maximises F1 on the synthetic set (normals vs fractal anomalies),
  in the middle of the score gap over which F1 is at its best (:func:`f1_threshold`);
- ``fpr``: the quantile of normal scores that gives a target false-alarm rate, which needs
  no anomalies at all and is what a line that cannot afford false stops asks for.
Pixel thresholds are F1-optimal over the synthetic set's pixels in both cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fractalad_edge.artifact import ScoreCalibration
from fractalad_edge.errors import CalibrationError
from fractalad_edge.metrics import f1_max
from fractalad_edge.preprocess import image_scores
from fractalad_edge.threshold_rule import ThresholdMethod, ThresholdRule

if TYPE_CHECKING:
    from fractalad_edge.predictor import Predictor


MAX_PIXELS = 2_000_000  # pixel F1 on a deterministic subsample keeps calibration to seconds


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
) -> ScoreCalibration:
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
    if pixel_labels.any() and not pixel_labels.all():
        pixel_threshold = f1_threshold(pixel_labels, pixel_values)
    else:
        pixel_threshold = 0.5  # no anomalous pixels to fit on: the sigmoid's own midpoint

    image_min, image_max = float(scores.min()), float(scores.max())
    pixel_min, pixel_max = float(pixel_values.min()), float(pixel_values.max())
    return ScoreCalibration(
        image_threshold=float(image_threshold),
        image_min=image_min,
        image_max=max(image_max, image_min + 1e-6),
        pixel_threshold=float(pixel_threshold),
        pixel_min=pixel_min,
        pixel_max=max(pixel_max, pixel_min + 1e-6),
        rule=rule,
        source=source,
        num_normal=int((~labels).sum()),
        num_anomalous=int(labels.sum()),
        seed=seed,
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
) -> ScoreCalibration:
    """Run the predictor's own runtime on RGB ``images`` and fit thresholds to its outputs."""
    maps = predictor.raw_maps(images, channel_order="rgb")
    scores = image_scores(maps, predictor.metadata.score)
    return fit_thresholds(maps, labels, masks, scores, rule=rule, source=source, seed=seed)
