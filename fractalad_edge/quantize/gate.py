"""The accuracy gate: a quantized model ships only if it finds anomalies as well as the float one.

Both models run through the same :class:`~fractalad_edge.predictor.Predictor` path
(pre-processing, runtime, score reduction) on the held-out synthetic validation set: real
normal images the quantizer never saw, half of them carrying a fractal anomaly. The gate
compares image AUROC and pixel AUROC; a drop of more than ``max_drop`` points in either
refuses the export (``QuantizationError``) unless the user explicitly accepts it, in which
case the artifact records ``passed=False``.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fractalad_edge.artifact import QuantizationReport, ScoreSpec
from fractalad_edge.errors import CalibrationError, ConfigError, QuantizationError
from fractalad_edge.metrics import pixel_auroc, roc_auc
from fractalad_edge.preprocess import image_scores
from fractalad_edge.quantize import mask_at

if TYPE_CHECKING:
    from fractalad_edge.calibration.dataset import CalibrationSet
    from fractalad_edge.predictor import Predictor

logger = logging.getLogger(__name__)



@dataclass(frozen=True, kw_only=True)
class AccuracyComparison:
    """Reference vs candidate on one validation set; AUROCs in [0, 1], drops in points (x100)."""

    reference_image_auroc: float
    candidate_image_auroc: float
    reference_pixel_auroc: float
    candidate_pixel_auroc: float
    map_mean_abs_diff: float
    num_images: int

    @property
    def image_drop(self) -> float:
        return 100.0 * (self.reference_image_auroc - self.candidate_image_auroc)

    @property
    def pixel_drop(self) -> float:
        return 100.0 * (self.reference_pixel_auroc - self.candidate_pixel_auroc)

    @property
    def worst_drop(self) -> float:
        return max(self.image_drop, self.pixel_drop)


def _maps(predictor: Predictor, images: Sequence[np.ndarray]) -> np.ndarray:
    return predictor.raw_maps(images, channel_order="rgb").astype(np.float32, copy=False)


def compare_on_validation(
    reference: Predictor, candidate: Predictor, validation: CalibrationSet, *, score: ScoreSpec | None = None
) -> AccuracyComparison:
    """Run both predictors on ``validation`` and measure what quantization changed.

    ``score`` defaults to the reference artifact's score reduction; both models are scored
    the same way so only the model differs.
    """
    if len(validation) == 0:
        msg = "the validation set is empty; the accuracy gate needs held-out samples (CalibrationConfig.validation_count > 0)"
        raise CalibrationError(msg)
    labels = validation.labels
    if labels.all() or not labels.any():
        msg = (
            f"the validation set needs normal and anomalous samples to measure AUROC, got {int(labels.sum())} "
            f"anomalous of {len(labels)}; use an anomaly_ratio strictly between 0 and 1"
        )
        raise CalibrationError(msg)
    spec = score or reference.metadata.score
    images = validation.images
    reference_maps = _maps(reference, images)
    candidate_maps = _maps(candidate, images)
    if reference_maps.shape != candidate_maps.shape:
        msg = (
            f"reference and candidate maps differ in shape ({reference_maps.shape} vs {candidate_maps.shape}); "
            "the candidate must be an export of the same model at the same input size"
        )
        raise QuantizationError(msg)
    height, width = reference_maps.shape[1:]
    masks = np.stack([mask_at(sample.mask, height, width) for sample in validation])
    return AccuracyComparison(
        reference_image_auroc=roc_auc(labels, image_scores(reference_maps, spec)),
        candidate_image_auroc=roc_auc(labels, image_scores(candidate_maps, spec)),
        reference_pixel_auroc=pixel_auroc(masks, reference_maps),
        candidate_pixel_auroc=pixel_auroc(masks, candidate_maps),
        map_mean_abs_diff=float(np.abs(reference_maps - candidate_maps).mean()),
        num_images=len(validation),
    )


def accuracy_gate(
    reference: Predictor,
    candidate: Predictor,
    validation: CalibrationSet,
    *,
    max_drop: float,
    toolchain: str,
    mode: str,
    calibration: CalibrationSet,
    allow_drop: bool,
    ignored_layers: Sequence[str] = (),
) -> QuantizationReport:
    """Compare ``candidate`` (quantized) with ``reference`` (float) and record the verdict.

    Raises :class:`QuantizationError` when image or pixel AUROC drops by more than
    ``max_drop`` points, unless ``allow_drop``: then the report says ``passed=False`` and a
    ``RuntimeWarning`` is issued, so the choice is visible in the artifact and the logs.
    """
    if not max_drop >= 0.0:
        msg = f"max_drop is in AUROC points (x100) and must be >= 0, got {max_drop}"
        raise ConfigError(msg)
    comparison = compare_on_validation(reference, candidate, validation, score=candidate.metadata.score)
    passed = comparison.worst_drop <= max_drop
    report = QuantizationReport(
        toolchain=toolchain,
        mode=mode,
        calibration_images=len(calibration),
        calibration_anomaly_ratio=float(calibration.labels.mean()) if len(calibration) else 0.0,
        calibration_seed=int(calibration.config.seed),
        float_image_auroc=comparison.reference_image_auroc,
        quantized_image_auroc=comparison.candidate_image_auroc,
        float_pixel_auroc=comparison.reference_pixel_auroc,
        quantized_pixel_auroc=comparison.candidate_pixel_auroc,
        map_mean_abs_diff=comparison.map_mean_abs_diff,
        max_drop=float(max_drop),
        passed=passed,
        ignored_layers=tuple(ignored_layers),
    )
    if passed:
        logger.info(
            "INT8 accuracy gate passed (%s/%s): image AUROC %.2f -> %.2f, pixel AUROC %.2f -> %.2f, mean |map diff| %.4f",
            toolchain, mode, 100 * report.float_image_auroc, 100 * report.quantized_image_auroc,
            100 * report.float_pixel_auroc, 100 * report.quantized_pixel_auroc, report.map_mean_abs_diff,
        )
        return report
    msg = (
        f"INT8 model ({toolchain}, {mode}) lost more accuracy than allowed on {comparison.num_images} held-out synthetic "
        f"anomaly images: image AUROC {100 * report.float_image_auroc:.2f} -> {100 * report.quantized_image_auroc:.2f} "
        f"({comparison.image_drop:+.2f} points drop), pixel AUROC {100 * report.float_pixel_auroc:.2f} -> "
        f"{100 * report.quantized_pixel_auroc:.2f} ({comparison.pixel_drop:+.2f} points drop), mean |map diff| "
        f"{report.map_mean_abs_diff:.4f}; allowed drop {max_drop:g} points."
    )
    if not allow_drop:
        hint = (
            " Try --quant-mode accuracy-control (openvino format), more calibration images (--calib-count), fp16 instead of "
            "int8, or accept the loss with --allow-accuracy-drop (recorded as passed=false in metadata.json)."
        )
        raise QuantizationError(msg + hint)
    warnings.warn(msg + " Accepted because --allow-accuracy-drop was given; metadata.json records passed=false.",
                  RuntimeWarning, stacklevel=2)
    logger.warning("%s Accepted with --allow-accuracy-drop.", msg)
    return report


def bf16_gate(reference: Predictor, candidate: Predictor, validation: CalibrationSet, report: QuantizationReport) -> QuantizationReport:
    """``report`` with the gate repeated on ``candidate``: the same int8 model with its float layers in bf16.

    Same validation set, score reduction and ``max_drop`` as the int8 gate. A failure refuses
    nothing: the artifact records ``bf16_passed=False`` and runtimes keep f32 for those layers.
    """
    comparison = compare_on_validation(reference, candidate, validation, score=candidate.metadata.score)
    checked = dataclasses.replace(
        report,
        bf16_image_auroc=comparison.candidate_image_auroc,
        bf16_pixel_auroc=comparison.candidate_pixel_auroc,
        bf16_passed=comparison.worst_drop <= report.max_drop,
    )
    logger.info(
        "bf16 float layers %s the gate: image AUROC %.2f -> %.2f, pixel AUROC %.2f -> %.2f",
        "passed" if checked.bf16_passed else "failed", 100 * comparison.reference_image_auroc,
        100 * comparison.candidate_image_auroc, 100 * comparison.reference_pixel_auroc, 100 * comparison.candidate_pixel_auroc,
    )
    return checked
