"""The ``torch`` format: safetensors + metadata, the reference every other format is checked against.

A training run directory is written in this format, calibrated on synthetic anomalies
made from the training images, so it can be loaded by ``Predictor`` straight away.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from fractalad_edge.artifact import (
    ArtifactMetadata,
    InputSpec,
    ModelFormat,
    Precision,
    ScoreSpec,
    describe_files,
    now_iso,
    package_version,
    write_metadata,
)
from fractalad_edge.calibration.dataset import CalibrationConfig, build_calibration_sets
from fractalad_edge.calibration.thresholds import calibrate_scores
from fractalad_edge.models.fractalad import FractalAD
from fractalad_edge.train.checkpoint import MODEL_FILENAME
from fractalad_edge.train.config import TrainConfig


def input_spec_for(model: FractalAD) -> InputSpec:
    spec = model.teacher.spec
    size = model.config.input_size
    return InputSpec(height=size, width=size, mean=tuple(spec.mean), std=tuple(spec.std))


def torch_metadata(model: FractalAD, score: ScoreSpec, *, directory: Path, category: str) -> ArtifactMetadata:
    return ArtifactMetadata(
        format=ModelFormat.TORCH,
        precision=Precision.FP32,
        runtime="torch",
        model=model.config.to_dict(),
        input=input_spec_for(model),
        score=score,
        files=describe_files(directory, [MODEL_FILENAME]),
        category=category,
        package_version=package_version(),
        created=now_iso(),
    )


def write_run_artifact(
    model: FractalAD, config: TrainConfig, out: Path, *, paths: Sequence[Path], category: str
) -> ArtifactMetadata:
    """Metadata for a finished run, with thresholds fitted on synthetic anomalies of its normals."""
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.runtimes.torch import TorchBackend

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
        ),
    )
    calibration = calibrate_scores(
        predictor, calibration_set.images, calibration_set.labels, calibration_set.masks, seed=config.seed + 1
    )
    metadata = dataclasses.replace(metadata, calibration=calibration)
    write_metadata(out, metadata)
    return metadata
