"""Calibration from normal images only: the sets quantizers and thresholds are fitted on."""

from fractalad_edge.calibration.dataset import CalibrationConfig, CalibrationSample, build_calibration_sets
from fractalad_edge.calibration.thresholds import ThresholdMethod, calibrate_scores

__all__ = [
    "CalibrationConfig",
    "CalibrationSample",
    "ThresholdMethod",
    "build_calibration_sets",
    "calibrate_scores",
]
