"""Score spaces (sigmoid / logit / distance / fused), two-sided normalisation, and old artifacts unchanged."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fractalad_edge.artifact import (
    METADATA_FILENAME,
    SCHEMA_VERSION,
    ArtifactMetadata,
    ScoreCalibration,
    ScoreNormalization,
    ScoreSpec,
    read_metadata,
    sha256_file,
    write_metadata,
)
from fractalad_edge.calibration.thresholds import fit_thresholds, normalization_range
from fractalad_edge.errors import ArtifactError, ConfigError, ScoreSpaceError
from fractalad_edge.method import Method
from fractalad_edge.preprocess import (
    calibrated_scores,
    convert_maps,
    decisions,
    image_scores,
    normalize_two_sided,
    prepare_batch,
    sigmoid,
)
from fractalad_edge.score_space import LEGACY_SPACES, METHOD_SCORE_SPACES, ScoreSpace, check_space, default_space
from fractalad_edge.threshold_rule import ThresholdRule


def _old_style(directory: Path) -> dict:
    """Rewrite ``directory``'s metadata.json as schema version 3 wrote it: no score.space, no normalization."""
    data = json.loads((directory / METADATA_FILENAME).read_text())
    data["schema_version"] = 3
    data["score"].pop("space", None)
    if data.get("calibration"):
        data["calibration"].pop("normalization", None)
    (directory / METADATA_FILENAME).write_text(json.dumps(data, indent=2))
    return data


def _span_calibration(threshold: float, low: float, high: float) -> ScoreCalibration:
    return ScoreCalibration(
        image_threshold=threshold, image_min=low, image_max=high, pixel_threshold=threshold, pixel_min=low,
        pixel_max=high, rule=ThresholdRule(), source="synthetic", num_normal=3, num_anomalous=3,
    )


# ----------------------------------------------------------------------------- the table
def test_each_method_has_its_spaces_and_the_legacy_one_is_allowed() -> None:
    assert default_space(Method.FRACTALAD) is ScoreSpace.LOGIT
    assert default_space(Method.MEMORY) is ScoreSpace.DISTANCE and default_space(Method.FUSED) is ScoreSpace.FUSED
    for method, legacy in LEGACY_SPACES.items():
        assert legacy in METHOD_SCORE_SPACES[method]
    assert LEGACY_SPACES[Method.FRACTALAD] is ScoreSpace.SIGMOID
    with pytest.raises(ConfigError, match="cannot score in the 'logit' space; it scores in 'distance'"):
        check_space(Method.MEMORY, ScoreSpace.LOGIT)
    assert ScoreSpace.SIGMOID.bounded and not ScoreSpace.LOGIT.bounded


def test_metadata_refuses_a_space_its_method_cannot_output(tiny_run: Path) -> None:
    data = read_metadata(tiny_run).to_dict()
    data["score"]["space"] = "distance"
    with pytest.raises(ArtifactError, match="cannot score in the 'distance' space"):
        ArtifactMetadata.from_dict(data)
    data["score"]["space"] = "probability"
    with pytest.raises(ArtifactError, match="score space must be one of"):
        ArtifactMetadata.from_dict(data)


# ----------------------------------------------------------------------------- old artifacts
def test_old_metadata_without_the_new_keys_loads_and_scores_exactly_as_before(tiny_run: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from fractalad_edge.models.torch_format import load_model
    from fractalad_edge.predictor import Predictor

    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    metadata = read_metadata(old)
    write_metadata(old, dataclasses.replace(metadata, calibration=_span_calibration(0.52, 0.30, 0.90)))
    data = _old_style(old)
    assert "space" not in data["score"] and "normalization" not in data["calibration"]

    loaded = read_metadata(old)
    assert loaded.score_space is ScoreSpace.SIGMOID and loaded.calibration.normalization is ScoreNormalization.SPAN
    predictor = Predictor.load(old)
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    results = predictor.predict_batch(frames)

    # what the code before score spaces computed: sigmoid(logits), span normalisation
    model = load_model(tiny_run, metadata)
    batch, _ = prepare_batch(frames, loaded.input, channel_order="bgr")
    with torch.no_grad():
        probabilities = torch.sigmoid(model.logits(torch.from_numpy(batch)))[:, 0].numpy()
    np.testing.assert_allclose(predictor.raw_maps(frames), probabilities, rtol=0, atol=1e-6)
    raw = image_scores(probabilities, loaded.score)
    expected = np.clip(0.5 + (raw - 0.52) / (0.90 - 0.30), 0.0, 1.0)
    for result, score, value in zip(results, expected, raw, strict=True):
        assert result.pred_score == pytest.approx(float(score), abs=1e-6)
        assert result.pred_label == bool(score >= 0.5)
        assert result.raw_score == pytest.approx(float(value), abs=1e-6)

    # uncalibrated, an old model's scores are its probabilities, clipped (0.5 decides)
    write_metadata(old, dataclasses.replace(loaded, calibration=None))
    _old_style(old)
    uncalibrated = Predictor.load(old).predict_batch(frames)
    for result, value in zip(uncalibrated, raw, strict=True):
        assert result.pred_score == pytest.approx(float(np.clip(value, 0, 1)), abs=1e-6)


def test_rewritten_metadata_keeps_the_old_space_and_normalisation_explicitly(tiny_run: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    write_metadata(old, dataclasses.replace(read_metadata(old), calibration=_span_calibration(0.5, 0.0, 1.0)))
    _old_style(old)
    write_metadata(old, read_metadata(old))  # e.g. what a tool that rewrites metadata does
    data = json.loads((old / METADATA_FILENAME).read_text())
    assert data["schema_version"] == SCHEMA_VERSION == 4
    assert data["score"]["space"] == "sigmoid" and data["calibration"]["normalization"] == "span"


# ----------------------------------------------------------------------------- new runs and exports
def test_new_runs_and_exports_score_in_logits(tiny_run: Path, onnx_artifact) -> None:  # noqa: ANN001
    run = json.loads((tiny_run / METADATA_FILENAME).read_text())
    assert run["schema_version"] == 4 and run["score"]["space"] == "logit"
    exported = json.loads((onnx_artifact.path / METADATA_FILENAME).read_text())
    assert exported["score"]["space"] == "logit"
    assert exported["calibration"]["normalization"] == "two-sided"
    calibration = onnx_artifact.metadata.calibration
    assert calibration.image_min < calibration.image_threshold < calibration.image_max
    assert calibration.pixel_min < calibration.pixel_threshold < calibration.pixel_max


def test_logit_exports_agree_with_torch_across_runtimes(tiny_run: Path, onnx_artifact, openvino_artifact, normal_images_dir: Path) -> None:  # noqa: ANN001
    torch = pytest.importorskip("torch")
    from fractalad_edge.calibration import CalibrationConfig, build_calibration_sets
    from fractalad_edge.models.torch_format import load_model
    from fractalad_edge.predictor import Predictor

    calibration, _ = build_calibration_sets(
        sorted(normal_images_dir.glob("*.png")), CalibrationConfig(count=8, validation_count=0, image_size=64, seed=5)
    )
    images = calibration.images
    metadata = read_metadata(tiny_run)
    model = load_model(tiny_run, metadata)
    batch, _ = prepare_batch(images, metadata.input, channel_order="rgb")
    with torch.no_grad():
        logits = model.logits(torch.from_numpy(batch))[:, 0].numpy()
    for artifact in (onnx_artifact, openvino_artifact):
        assert artifact.metadata.score_space is ScoreSpace.LOGIT
        parity = artifact.metadata.parity
        assert parity.passed and parity.max_scaled_diff is not None and parity.max_scaled_diff <= parity.tolerance
        predictor = Predictor.load(artifact.path)
        maps = predictor.raw_maps(images, channel_order="rgb")
        assert maps.min() < 0.0 or maps.max() > 1.0 or np.allclose(maps, logits, atol=1e-3)  # logits, not probabilities
        np.testing.assert_allclose(maps, logits, rtol=1e-3, atol=1e-3)
        spec, cal = artifact.metadata.score, artifact.metadata.calibration
        np.testing.assert_array_equal(decisions(maps, spec, cal), decisions(logits, spec, cal))


def test_export_can_keep_the_sigmoid_and_calibrate_switches_only_torch_artifacts(
    tiny_run: Path, tmp_path: Path, normal_images_dir: Path
) -> None:
    pytest.importorskip("onnxruntime")
    from fractalad_edge.calibration.workflow import recalibrate
    from fractalad_edge.export import ExportOptions, export_model
    from fractalad_edge.predictor import Predictor

    options = ExportOptions(calib_count=8, parity_images=2, score_space="sigmoid")
    sigmoid_onnx = export_model(tiny_run, format="onnx", out=tmp_path / "onnx", options=options, progress=None)
    assert sigmoid_onnx.score_space is ScoreSpace.SIGMOID
    maps = Predictor.load(tmp_path / "onnx").raw_maps([np.zeros((64, 64, 3), np.uint8)])
    assert 0.0 <= maps.min() and maps.max() <= 1.0
    with pytest.raises(ScoreSpaceError, match="re-export: fractalad-edge export RUN --format onnx"):
        recalibrate(tmp_path / "onnx", normal=normal_images_dir, count=8, score_space="logit")
    with pytest.raises(ConfigError, match="cannot score in the 'distance' space"):
        recalibrate(tmp_path / "onnx", normal=normal_images_dir, count=8, score_space="distance")

    # an old sigmoid run switches to logits in place: same weights file, thresholds refitted in logits
    old = tmp_path / "old-run"
    shutil.copytree(tiny_run, old)
    write_metadata(old, dataclasses.replace(read_metadata(old), score=ScoreSpec()))  # space None: legacy sigmoid
    _old_style(old)
    weights = sha256_file(old / "model.safetensors")
    assert read_metadata(old).score_space is ScoreSpace.SIGMOID
    result = recalibrate(old, normal=normal_images_dir, count=8, score_space="logit")
    assert (result.previous_space, result.space) == (ScoreSpace.SIGMOID, ScoreSpace.LOGIT)
    assert "switched from 'sigmoid'" in result.summary()
    switched = read_metadata(old)
    assert switched.score_space is ScoreSpace.LOGIT and switched.calibration.normalization is ScoreNormalization.TWO_SIDED
    assert sha256_file(old / "model.safetensors") == weights
    frame = np.full((64, 64, 3), 128, np.uint8)
    logit_map = Predictor.load(old).raw_maps([frame])
    np.testing.assert_allclose(Predictor.load(tiny_run).raw_maps([frame]), logit_map, atol=1e-5)


# ----------------------------------------------------------------------------- uncalibrated logits
def test_an_uncalibrated_logit_model_decides_at_logit_zero(tiny_run: Path) -> None:
    pytest.importorskip("torch")
    from fractalad_edge.predictor import Predictor

    predictor = Predictor.load(tiny_run)
    assert predictor.metadata.calibration is None and predictor.metadata.score_space is ScoreSpace.LOGIT
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    maps = predictor.raw_maps(frames)
    for result, raw, amap in zip(predictor.predict_batch(frames), image_scores(maps, predictor.metadata.score), maps, strict=True):
        assert result.raw_score == pytest.approx(float(raw), abs=1e-5)
        assert result.pred_score == pytest.approx(float(sigmoid(np.array(raw))), abs=1e-6)
        assert result.pred_label == bool(raw >= 0.0)
        np.testing.assert_allclose(result.anomaly_map, sigmoid(amap), atol=1e-6)  # 64 px frames: no resize


def test_uncalibrated_logit_scores_are_the_sigmoid_of_the_raw_score() -> None:
    raw = np.array([-40.0, -2.0, -1e-9, 0.0, 1e-4, 3.0, 40.0], dtype=np.float32)
    scores = calibrated_scores(raw, ScoreSpec(space="logit"), None)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-raw.astype(np.float64))), atol=1e-7)
    assert list(scores >= 0.5) == [False, False, False, True, True, True, True]  # exact at 0, even in float32
    np.testing.assert_array_equal(calibrated_scores(raw, ScoreSpec(space="sigmoid"), None), np.clip(raw, 0, 1))


# ----------------------------------------------------------------------------- thresholds and two-sided normalisation
def test_logit_thresholds_and_two_sided_normalisation_spread_the_scores() -> None:
    rng = np.random.default_rng(0)
    normal = rng.normal(-14.0, 1.5, 200)
    anomalous = rng.normal(4.0, 3.0, 200)
    labels = np.r_[np.zeros(200), np.ones(200)].astype(int)
    scores = np.r_[normal, anomalous].astype(np.float32)
    maps = np.repeat(scores[:, None, None], 4, axis=1).reshape(400, 2, 2)
    masks = np.repeat(labels.astype(bool)[:, None, None], 4, axis=1).reshape(400, 2, 2)
    cal = fit_thresholds(maps, labels, masks, scores, space=ScoreSpace.LOGIT)
    assert cal.normalization is ScoreNormalization.TWO_SIDED
    assert normal.max() < cal.image_threshold < anomalous.min() or cal.image_threshold == pytest.approx(
        (scores[scores < cal.image_threshold].max() + scores[scores >= cal.image_threshold].min()) / 2
    )
    assert cal.image_min == pytest.approx(np.median(normal), rel=1e-6)
    assert cal.image_max == pytest.approx(np.median(anomalous), rel=1e-6)
    normalised = calibrated_scores(scores, ScoreSpec(space="logit"), cal)
    assert np.median(normalised[labels == 1]) > 0.8  # a typical defect reads well above the threshold
    assert np.median(normalised[labels == 0]) <= 0.01  # a typical good part reads ~0
    np.testing.assert_array_equal(normalised >= 0.5, scores >= cal.image_threshold)
    # spread: defects are told apart from each other, not all clipped at 1
    assert np.percentile(normalised[labels == 1], 75) - np.percentile(normalised[labels == 1], 25) > 0.05


def test_two_sided_is_exact_at_the_threshold_and_never_rounds_a_miss_up() -> None:
    threshold = 7.25
    values = np.array([threshold, np.nextafter(threshold, 0.0), -1e9, 1e9, 3.0, 11.0])
    result = normalize_two_sided(values, threshold, -1.0, 15.0)
    assert result[0] == 0.5 and result[1] < 0.5 and result[2] == 0.0 and result[3] == 1.0
    assert result[4] == pytest.approx(0.5 * (3.0 + 1.0) / (threshold + 1.0))
    assert result[5] == pytest.approx(0.5 + 0.5 * (11.0 - threshold) / (15.0 - threshold))
    assert result.dtype == np.float32


def test_normalization_range_falls_back_to_a_mirrored_side() -> None:
    # no anomalies (fpr rule at anomaly ratio 0): the top mirrors the bottom
    assert normalization_range(np.array([0.0, 1.0, 2.0]), np.array([]), 3.0, np.array([0.0, 2.0])) == (1.0, 5.0)
    # anomalies all below the threshold: mirrored from the normals' side
    low, high = normalization_range(np.array([0.0, 2.0]), np.array([0.5]), 4.0, np.array([0.0, 2.0]))
    assert (low, high) == (1.0, 7.0)
    # nothing on either side: the spread of everything
    assert normalization_range(np.array([5.0]), np.array([1.0]), 3.0, np.array([1.0, 5.0])) == (-1.0, 7.0)


def test_a_two_sided_calibration_needs_the_threshold_inside_its_range() -> None:
    with pytest.raises(ConfigError, match="min < threshold < max"):
        dataclasses.replace(_span_calibration(0.9, 0.0, 0.5), normalization=ScoreNormalization.TWO_SIDED)
    with pytest.raises(ConfigError, match="calibration.normalization must be one of"):
        dataclasses.replace(_span_calibration(0.4, 0.0, 0.5), normalization="both")


def test_fit_thresholds_keeps_span_when_asked() -> None:
    scores = np.array([0.1, 0.2, 0.8, 0.9], dtype=np.float32)
    maps = np.repeat(scores[:, None, None], 4, axis=1).reshape(4, 2, 2)
    masks = np.zeros_like(maps, dtype=bool)
    cal = fit_thresholds(maps, np.array([0, 0, 1, 1]), masks, scores, normalization=ScoreNormalization.SPAN)
    assert (cal.image_min, cal.image_max) == (pytest.approx(0.1), pytest.approx(0.9))
    assert cal.pixel_threshold == 0.5  # no anomalous pixels: the sigmoid's midpoint
    logit = fit_thresholds(maps, np.array([0, 0, 1, 1]), masks, scores, space=ScoreSpace.LOGIT)
    assert logit.pixel_threshold == 0.0  # ... and the logit's


# ----------------------------------------------------------------------------- converting
def test_sigmoid_and_logit_maps_convert_with_the_float32_saturation_clipped() -> None:
    logits = np.array([-30.0, -5.0, 0.0, 5.0, 15.0, 30.0], dtype=np.float32)
    probabilities = convert_maps(logits, ScoreSpace.LOGIT, ScoreSpace.SIGMOID)
    back = convert_maps(probabilities, ScoreSpace.SIGMOID, ScoreSpace.LOGIT)
    np.testing.assert_allclose(back[:4], logits[:4], atol=1e-4)  # small probabilities keep their precision
    assert back[4] == pytest.approx(15.0, abs=0.2) and back[4] != pytest.approx(15.0, abs=0.01)  # near 1, float32 keeps few values
    assert back[5] == pytest.approx(np.log(2.0**24 - 1), abs=1e-3)  # float32 sigmoid(30) is 1: no inverse, clipped
    assert convert_maps(logits, ScoreSpace.LOGIT, ScoreSpace.LOGIT) is logits
    with pytest.raises(ConfigError, match="cannot be expressed"):
        convert_maps(logits, ScoreSpace.DISTANCE, ScoreSpace.LOGIT)


def test_the_torch_module_outputs_the_space_it_is_set_to() -> None:
    torch = pytest.importorskip("torch")
    from fractalad_edge.models.fractalad import ModelConfig, build_model
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.runtimes.torch import TorchBackend

    torch.manual_seed(0)
    model = build_model(ModelConfig(input_size=64, head_channels=8), pretrained_teacher=False).eval()
    assert model.output_space is ScoreSpace.LOGIT
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        model.output_space = "sigmoid"
        torch.testing.assert_close(model(x), torch.sigmoid(logits))
    with pytest.raises(ConfigError, match="cannot score in the 'fused' space"):
        model.output_space = ScoreSpace.FUSED
    # a backend whose module outputs another space than the metadata says is refused
    with pytest.raises(ConfigError, match="outputs 'sigmoid' maps but its metadata says score.space 'logit'"):
        Predictor(TorchBackend(model), _logit_metadata(model))


def _logit_metadata(model) -> ArtifactMetadata:  # noqa: ANN001
    from fractalad_edge.artifact import ModelFile
    from fractalad_edge.models.torch_format import input_spec_for

    return ArtifactMetadata(
        format="torch", precision="fp32", runtime="torch", model=model.config.to_dict(), input=input_spec_for(model),
        score=ScoreSpec(space="logit"), files=(ModelFile(path="model.safetensors", sha256="0" * 64),),
    )
