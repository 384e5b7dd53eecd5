"""A finished training run as a ``torch`` artifact, calibrated on synthetic anomalies.

A training run directory is written in the ``torch`` format, with thresholds fitted on
synthetic anomalies made from the training images, so ``Predictor`` loads it straight away.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from fractalad_edge.artifact import ArtifactMetadata, write_metadata
from fractalad_edge.calibration.dataset import CalibrationConfig, build_calibration_sets
from fractalad_edge.calibration.thresholds import calibrate_scores
from fractalad_edge.models.fractalad import FractalAD
from fractalad_edge.models.torch_format import torch_metadata
from fractalad_edge.predictor import Predictor
from fractalad_edge.runtimes.torch import TorchBackend
from fractalad_edge.train.config import TrainConfig


def write_run_artifact(
    model: FractalAD, config: TrainConfig, out: Path, *, paths: Sequence[Path], category: str
) -> ArtifactMetadata:
    """Metadata for a finished run, with thresholds fitted on synthetic anomalies of its normals."""
    metadata = torch_metadata(model, config.score, directory=out, category=category)
    predictor = Predictor(TorchBackend(model, device=str(next(model.parameters()).device)), metadata)
    calibration_set, _ = build_calibration_sets(
        paths,
        CalibrationConfig(
            count=config.calibration_images,
            validation_count=0,
            seed=config.seed + 1,
            image_size=config.model.input_size,
            object_placement=config.synth.object_placement,
            hold_out=False,  # nothing to validate: every training image may lend itself to a threshold
        ),
    )
    calibration = calibrate_scores(
        predictor, calibration_set.images, calibration_set.labels, calibration_set.masks, seed=config.seed + 1
    )
    metadata = dataclasses.replace(metadata, calibration=calibration)
    write_metadata(out, metadata)
    return metadata
