"""`fractalad-edge calibrate`: new thresholds for an existing model directory, no re-export.

Thresholds are fitted with the artifact's own runtime on synthetic anomalies made from
the given normal images. When real labelled defects are supplied they are used instead,
and both results are reported so the cost of calibrating without defects is visible.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fractalad_edge.artifact import METADATA_FILENAME, ScoreCalibration, read_metadata, write_metadata
from fractalad_edge.calibration.dataset import CalibrationConfig, build_calibration_sets
from fractalad_edge.calibration.defaults import CALIBRATION_COUNT, CALIBRATION_SEED
from fractalad_edge.calibration.thresholds import calibrate_scores, fit_thresholds
from fractalad_edge.data.datasets import find_training_images
from fractalad_edge.errors import ConfigError
from fractalad_edge.preprocess import image_scores
from fractalad_edge.threshold_rule import DEFAULT_TARGET_FPR, ThresholdMethod, ThresholdRule


@dataclass(frozen=True, kw_only=True)
class RecalibrationResult:
    synthetic: ScoreCalibration
    real: ScoreCalibration | None
    written: ScoreCalibration
    model: Path

    def summary(self) -> str:
        lines = [f"thresholds written to {self.model / METADATA_FILENAME} ({self.written.source}, {self.written.rule.label}):"]
        for name, cal in (("synthetic anomalies", self.synthetic), ("real defects", self.real)):
            if cal is not None:
                lines.append(
                    f"  {name:20s} image threshold {cal.image_threshold:.5f}  pixel threshold {cal.pixel_threshold:.4f}"
                    f"  ({cal.num_normal} normal, {cal.num_anomalous} anomalous)"
                )
        return "\n".join(lines)


def recalibrate(
    model: str | Path,
    *,
    normal: str | Path,
    defects: str | Path | None = None,
    method: str = "f1",
    target_fpr: float = DEFAULT_TARGET_FPR,
    count: int = CALIBRATION_COUNT,
    seed: int = CALIBRATION_SEED,
    runtime: str | None = None,
) -> RecalibrationResult:
    from fractalad_edge.data.test_set import load_test_set
    from fractalad_edge.predictor import Predictor

    try:
        threshold_method = ThresholdMethod(method)
    except ValueError:
        msg = f"--method must be 'f1' or 'fpr', got {method!r}"
        raise ConfigError(msg) from None
    rule = ThresholdRule.of(threshold_method, target_fpr)
    model = Path(model)
    metadata = read_metadata(model)
    predictor = Predictor.load(model, runtime=runtime)
    config = CalibrationConfig(count=count, validation_count=0, seed=seed, image_size=metadata.input.height)
    calibration_set, _ = build_calibration_sets(find_training_images(normal), config)
    synthetic = calibrate_scores(
        predictor, calibration_set.images, calibration_set.labels, calibration_set.masks,
        rule=rule, source="synthetic", seed=seed,
    )
    real = None
    if defects is not None:
        test_set = load_test_set(defects, metadata.input.height)
        maps = predictor.raw_maps(test_set.images, channel_order="rgb")
        labels = np.array([s.label for s in test_set.samples])
        real = fit_thresholds(
            maps, labels, test_set.masks, image_scores(maps, metadata.score),
            rule=rule, source="real",
        )
    written = real or synthetic
    write_metadata(model, dataclasses.replace(metadata, calibration=written))
    return RecalibrationResult(synthetic=synthetic, real=real, written=written, model=model)
