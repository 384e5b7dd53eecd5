"""Parity: does the exported model give the torch model's maps and decisions on the same frames?

Checked on synthetic calibration images (real normals with and without fractal anomalies),
not random noise: noise drives activations into ranges no camera frame reaches, and its
maps sit flat around 0.5, so it can neither expose nor excuse a real difference.

Tolerances are on the anomaly map (values in [0, 1]), max absolute difference:

============  ==========  =============================================================
precision     tolerance   why
============  ==========  =============================================================
fp32          1e-4        (ExportOptions.tolerance) same arithmetic, other kernel order
fp16          3e-2        10-bit mantissa; the sigmoid divides logit errors by >= 4
bf16          1e-1        7-bit mantissa through ~100 convolutions
int8          2.5e-1      recorded only; the accuracy gate (AUROC drop) decides for int8
============  ==========  =============================================================

fp32, fp16 and bf16 beyond tolerance raise ParityError; int8 differences are expected and
judged by what they cost in detection quality instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fractalad_edge.artifact import ParityReport, Precision
from fractalad_edge.errors import ParityError
from fractalad_edge.preprocess import decisions

if TYPE_CHECKING:
    from fractalad_edge.predictor import Predictor

REDUCED_PRECISION_TOLERANCE: dict[Precision, float] = {
    Precision.FP16: 3e-2,
    Precision.BF16: 1e-1,
    Precision.INT8: 2.5e-1,
}
#: Precisions whose parity is only recorded; another check (the accuracy gate) decides.
RECORDED_ONLY = (Precision.INT8,)


def tolerance_for(precision: Precision, fp32_tolerance: float) -> float:
    """The map tolerance for a precision: the fp32 one, or the looser table value (never tighter)."""
    if precision is Precision.FP32:
        return fp32_tolerance
    return max(fp32_tolerance, REDUCED_PRECISION_TOLERANCE[precision])


def compare_maps(
    reference: Predictor,
    candidate: Predictor,
    images_rgb: Sequence[np.ndarray],
    *,
    tolerance: float,
    reference_name: str = "torch-fp32",
) -> ParityReport:
    """Run both predictors on the same RGB images and measure how far the candidate's maps are.

    Decisions are compared with the candidate's calibration applied to both sets of maps, so
    they disagree only where the maps do.
    """
    if len(images_rgb) == 0:
        msg = "parity needs at least one image"
        raise ParityError(msg)
    expected = reference.raw_maps(list(images_rgb), channel_order="rgb", batch_size=None)  # one batch each
    actual = candidate.raw_maps(list(images_rgb), channel_order="rgb", batch_size=None)
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    finite = bool(np.isfinite(actual).all())
    max_abs = float(diff.max()) if finite else float("inf")
    mean_abs = float(diff.mean()) if finite else float("inf")
    score, calibration = candidate.metadata.score, candidate.metadata.calibration
    agree = float(np.mean(decisions(expected, score, calibration) == decisions(actual, score, calibration)))
    return ParityReport(
        reference=reference_name,
        num_images=len(images_rgb),
        max_abs_diff=max_abs,
        mean_abs_diff=mean_abs,
        decisions_agree=agree,
        tolerance=tolerance,
        passed=finite and max_abs <= tolerance,
    )


def enforce_parity(report: ParityReport, precision: Precision, *, what: str) -> None:
    """Raise ParityError when a float export is beyond tolerance (int8 is left to the accuracy gate)."""
    if report.passed or precision in RECORDED_ONLY:
        return
    msg = (
        f"{what} differs from the {report.reference} model beyond tolerance: max |map difference| "
        f"{report.max_abs_diff:.3g} > {report.tolerance:.3g} (mean {report.mean_abs_diff:.3g}, decisions agree on "
        f"{report.decisions_agree:.0%} of {report.num_images} images). The runtime computes something else than the "
        "model; check the runtime version, or export with another opset (--opset) and report it."
    )
    raise ParityError(msg)


def format_parity(report: ParityReport, *, checked_with: str, recorded_only: bool = False) -> str:
    """One console line for the parity result (``recorded_only``: int8, where the gate decides)."""
    if report.passed:
        verdict = "passed"
    elif recorded_only:
        verdict = "beyond tolerance, recorded only (the int8 accuracy gate decides)"
    else:
        verdict = "FAILED"
    return (
        f"parity vs {report.reference} ({checked_with}, {report.num_images} synthetic images): max |diff| "
        f"{report.max_abs_diff:.2e}, mean {report.mean_abs_diff:.2e}, decisions agree {report.decisions_agree:.0%} "
        f"(tolerance {report.tolerance:.0e}) -> {verdict}"
    )


__all__ = [
    "RECORDED_ONLY",
    "REDUCED_PRECISION_TOLERANCE",
    "compare_maps",
    "enforce_parity",
    "format_parity",
    "tolerance_for",
]
