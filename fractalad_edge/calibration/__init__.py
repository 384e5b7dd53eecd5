"""Calibration from normal images only: the sets quantizers and thresholds are fitted on."""

from fractalad_edge.calibration.dataset import CalibrationConfig, CalibrationSample, build_calibration_sets
from fractalad_edge.calibration.thresholds import calibrate_scores
from fractalad_edge.threshold_rule import ThresholdMethod, ThresholdRule

__all__ = [
    "CalibrationConfig",
    "CalibrationSample",
    "ThresholdMethod",
    "ThresholdRule",
    "build_calibration_sets",
    "calibrate_scores",
]
