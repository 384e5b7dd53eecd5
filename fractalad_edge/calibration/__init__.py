"""Calibration from normal images only: the sets quantizers and thresholds are fitted on.

Submodules are imported on first use, so :mod:`.defaults` stays import-light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "CalibrationConfig": "fractalad_edge.calibration.dataset",
    "CalibrationSample": "fractalad_edge.calibration.dataset",
    "build_calibration_sets": "fractalad_edge.calibration.dataset",
    "calibrate_scores": "fractalad_edge.calibration.thresholds",
    "ThresholdMethod": "fractalad_edge.threshold_rule",
    "ThresholdRule": "fractalad_edge.threshold_rule",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = sorted(_LAZY)
