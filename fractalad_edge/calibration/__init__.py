"""Calibration from normal images only: the sets quantizers and thresholds are fitted on.

Submodules are imported on first use, so :mod:`.defaults` stays import-light.
"""

from __future__ import annotations

from fractalad_edge._lazy import lazy_exports

_LAZY = {
    "CalibrationConfig": "fractalad_edge.calibration.dataset",
    "CalibrationSample": "fractalad_edge.calibration.dataset",
    "build_calibration_sets": "fractalad_edge.calibration.dataset",
    "calibrate_scores": "fractalad_edge.calibration.thresholds",
    "ThresholdMethod": "fractalad_edge.threshold_rule",
    "ThresholdRule": "fractalad_edge.threshold_rule",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = sorted(_LAZY)
