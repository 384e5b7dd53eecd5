"""The calibration defaults, named once: train, export, calibrate and the CLI read them here.

Import-light on purpose (no numpy), so the CLI can show them in its help.
"""

CALIBRATION_COUNT = 64  # synthetic images thresholds (and int8 ranges) are fitted on
CALIBRATION_SEED = 2026
ANOMALY_RATIO = 0.5  # share of calibration images carrying a fractal anomaly

__all__ = ["ANOMALY_RATIO", "CALIBRATION_COUNT", "CALIBRATION_SEED"]
