"""Parity: does the exported model give the torch model's maps and decisions on the same frames?

Checked on synthetic calibration images (real normals with and without fractal anomalies),
not random noise: noise drives activations into ranges no camera frame reaches, and its
maps sit flat around 0.5, so it can neither expose nor excuse a real difference.

Tolerances bound the largest map difference, measured as ``|diff| / max(1, |reference|)``
(``ParityReport.max_scaled_diff``). On ``sigmoid`` maps (values in [0, 1]) that is the plain
absolute difference, the check every artifact before score spaces had. ``logit``, ``distance``
and ``fused`` maps are unbounded: a trained head's logits reach +-20 to 30, where float32
kernels in another order differ by a relative 1e-6..1e-5, i.e. absolute differences the size
of the fp32 tolerance, which the sigmoid used to flatten (its slope there is ~e^-|logit|).
Bounding ``|diff| / max(1, |reference|)`` keeps the check absolute below 1 and relative above,
which is what float arithmetic guarantees (bottle quick-cpu, ONNX Runtime fp32 on 8 synthetic images:
max |diff| 1.9e-5, scaled 1.6e-5; docs/experiments/score-space.md).

``distance`` and ``fused`` maps get ten times the fp32 tolerance: the memory search computes
squared distances as ``|x|^2 + |m|^2 - 2 x.m`` (one MatMul, what every runtime accelerates),
which cancels. Its float32 rounding is relative to the squared feature norms, not to the
small nearest distances of normal patches, and the square root amplifies it there. Measured:
bottle ``fused`` exports 3.3e-5 and 3.7e-5 (ONNX Runtime, OpenVINO), the test suite's small
fused run 1.04e-4 on an AVX512 CPU (tests/test_memory.py), with every decision equal.

============  ==========  ======================  ===============================================
precision     sigmoid     logit / distance/fused  why
============  ==========  ======================  ===============================================
fp32          1e-4        1e-4 / 1e-3             (ExportOptions.tolerance) other kernel order;
                                                  x10 for the search's cancellation (above)
fp16          3e-2        1.2e-1                  10-bit mantissa; the sigmoid divided logit
                                                  errors by >= 4, so without it 4x the budget
bf16          1e-1        4e-1                    7-bit mantissa through ~100 convolutions; x4 idem
int8          2.5e-1      1.0                     recorded only; the accuracy gate decides int8
============  ==========  ======================  ===============================================

fp32, fp16 and bf16 beyond tolerance raise ParityError; int8 differences are expected and
judged by what they cost in detection quality instead. Decisions are compared too
(``decisions_agree``), each at the candidate's threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fractalad_edge.artifact import ParityReport, Precision
from fractalad_edge.errors import ParityError
from fractalad_edge.preprocess import decisions
from fractalad_edge.score_space import ScoreSpace

if TYPE_CHECKING:
    from fractalad_edge.predictor import Predictor

REDUCED_PRECISION_TOLERANCE: dict[Precision, float] = {
    Precision.FP16: 3e-2,
    Precision.BF16: 1e-1,
    Precision.INT8: 2.5e-1,
}
#: reduced-precision tolerances are this much looser on maps without the sigmoid: its slope
#: is at most 1/4, so it divided every logit error by 4 or more
UNBOUNDED_FACTOR = 4.0
#: the fp32 tolerance is this much looser on maps made by the memory search (its squared
#: distances cancel; see the module docstring)
SEARCH_FP32_FACTOR = 10.0
SEARCH_SPACES = (ScoreSpace.DISTANCE, ScoreSpace.FUSED)
#: Precisions whose parity is only recorded; another check (the accuracy gate) decides.
RECORDED_ONLY = (Precision.INT8,)


def tolerance_for(precision: Precision, fp32_tolerance: float, space: ScoreSpace = ScoreSpace.SIGMOID) -> float:
    """The map tolerance for a precision in a score space: the fp32 one (x10 for the memory search's
    spaces), or the looser table value (never tighter)."""
    if precision is Precision.FP32:
        return fp32_tolerance * (SEARCH_FP32_FACTOR if space in SEARCH_SPACES else 1.0)
    factor = 1.0 if space.bounded else UNBOUNDED_FACTOR
    return max(fp32_tolerance, factor * REDUCED_PRECISION_TOLERANCE[precision])


def scaled_difference(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """``|actual - expected| / max(1, |expected|)``, float64: absolute below 1, relative beyond."""
    expected = expected.astype(np.float64)
    return np.abs(actual.astype(np.float64) - expected) / np.maximum(1.0, np.abs(expected))


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
    max_scaled = float(scaled_difference(actual, expected).max()) if finite else float("inf")
    score, calibration = candidate.metadata.score, candidate.metadata.calibration
    agree = float(np.mean(decisions(expected, score, calibration) == decisions(actual, score, calibration)))
    return ParityReport(
        reference=reference_name,
        num_images=len(images_rgb),
        max_abs_diff=max_abs,
        mean_abs_diff=mean_abs,
        decisions_agree=agree,
        tolerance=tolerance,
        passed=finite and max_scaled <= tolerance,
        max_scaled_diff=max_scaled,
    )


def enforce_parity(report: ParityReport, precision: Precision, *, what: str) -> None:
    """Raise ParityError when a float export is beyond tolerance (int8 is left to the accuracy gate)."""
    if report.passed or precision in RECORDED_ONLY:
        return
    msg = (
        f"{what} differs from the {report.reference} model beyond tolerance: max |map difference| / max(1, |reference|) "
        f"{_scaled(report):.3g} > {report.tolerance:.3g} (max absolute {report.max_abs_diff:.3g}, mean {report.mean_abs_diff:.3g}, decisions agree on "
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
    scaled = "" if report.max_scaled_diff is None or report.max_scaled_diff == report.max_abs_diff else (
        f", scaled {report.max_scaled_diff:.2e}"
    )
    return (
        f"parity vs {report.reference} ({checked_with}, {report.num_images} synthetic images): max |diff| "
        f"{report.max_abs_diff:.2e}{scaled}, mean {report.mean_abs_diff:.2e}, decisions agree {report.decisions_agree:.0%} "
        f"(tolerance {report.tolerance:.0e}) -> {verdict}"
    )


def _scaled(report: ParityReport) -> float:
    return report.max_abs_diff if report.max_scaled_diff is None else report.max_scaled_diff


__all__ = [
    "RECORDED_ONLY",
    "REDUCED_PRECISION_TOLERANCE",
    "UNBOUNDED_FACTOR",
    "compare_maps",
    "enforce_parity",
    "format_parity",
    "scaled_difference",
    "tolerance_for",
]
