"""The exported model directory: metadata round trip, integrity and schema checks on load."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from fractalad_edge.artifact import (
    METADATA_FILENAME,
    SCHEMA_VERSION,
    ArtifactMetadata,
    read_metadata,
    write_metadata,
)
from fractalad_edge.errors import ArtifactError, ArtifactIntegrityError, SchemaVersionError
from fractalad_edge.predictor import Predictor

pytestmark = pytest.mark.onnxruntime


@pytest.fixture()
def artifact_copy(onnx_artifact, tmp_path: Path) -> Path:
    """A private copy of the exported ONNX artifact that a test may damage."""
    directory = tmp_path / "model"
    shutil.copytree(onnx_artifact.path, directory)
    return directory


def test_metadata_round_trips_through_json(onnx_artifact, tmp_path: Path) -> None:
    metadata = read_metadata(onnx_artifact.path)
    assert metadata.calibration is not None and metadata.parity is not None  # the nested parts travel too
    assert ArtifactMetadata.from_dict(json.loads(json.dumps(metadata.to_dict()))) == metadata
    write_metadata(tmp_path, metadata)
    assert read_metadata(tmp_path, verify=False) == metadata
    assert json.loads((tmp_path / METADATA_FILENAME).read_text())["schema_version"] == SCHEMA_VERSION


def test_an_altered_model_file_is_refused(artifact_copy: Path) -> None:
    model = artifact_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte deep inside the weights
    model.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="does not match"):
        Predictor.load(artifact_copy)
    assert read_metadata(artifact_copy, verify=False).format.value == "onnx"  # metadata itself is fine


def test_a_missing_model_file_is_refused(artifact_copy: Path) -> None:
    (artifact_copy / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match="'model.onnx' listed in metadata.json is missing"):
        Predictor.load(artifact_copy)


def test_metadata_from_a_newer_schema_is_refused(artifact_copy: Path) -> None:
    path = artifact_copy / METADATA_FILENAME
    data = json.loads(path.read_text())
    data["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(SchemaVersionError, match="newer fractalad-edge"):
        Predictor.load(artifact_copy)


def test_broken_or_missing_metadata_is_an_artifact_error(artifact_copy: Path, tmp_path: Path) -> None:
    (artifact_copy / METADATA_FILENAME).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        Predictor.load(artifact_copy)
    (artifact_copy / METADATA_FILENAME).unlink()
    with pytest.raises(ArtifactError, match="not a fractalad-edge model directory"):
        Predictor.load(artifact_copy)
    with pytest.raises(ArtifactError, match="not found"):
        Predictor.load(tmp_path / "nowhere")


def test_loaded_artifact_uses_its_own_thresholds(onnx_artifact) -> None:
    """The thresholds refitted at export are the ones a loaded Predictor applies (score 0.5 = threshold)."""
    import numpy as np

    with Predictor.load(onnx_artifact.path) as predictor:
        calibration = predictor.metadata.calibration
        assert calibration == onnx_artifact.metadata.calibration
        frame = np.full((64, 64, 3), 90, np.uint8)
        result = predictor.predict(frame)
        raw, low, thr, high = result.raw_score, calibration.image_min, calibration.image_threshold, calibration.image_max
        assert calibration.normalization.value == "two-sided"  # new exports: [min, thr] -> [0, 0.5], [thr, max] -> [0.5, 1]
        expected = 0.5 + 0.5 * (raw - thr) / (high - thr) if raw >= thr else 0.5 * (raw - low) / (thr - low)
        assert result.pred_score == pytest.approx(min(max(expected, 0.0), 1.0), abs=1e-6)
        other = dataclasses.replace(
            calibration, image_threshold=raw - 1e-3, image_min=min(low, raw - 1.0), image_max=max(high, raw + 1.0)
        )
        assert predictor.with_calibration(other).predict(frame).pred_label is True
