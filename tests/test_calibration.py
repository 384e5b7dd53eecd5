"""Calibration sets (deterministic, disjoint sources) and thresholds fitted without real defects."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fractalad_edge.artifact import METADATA_FILENAME, ScoreNormalization, ScoreSpec, read_metadata, write_metadata
from fractalad_edge.calibration import CalibrationConfig, ThresholdMethod, ThresholdRule, build_calibration_sets, calibrate_scores
from fractalad_edge.calibration.thresholds import fit_thresholds
from fractalad_edge.errors import ArtifactError, CalibrationError, ConfigError
from fractalad_edge.preprocess import image_scores, normalize_image_scores, normalize_pixel_map

SIZE = 64


def _config(**changes: object) -> CalibrationConfig:
    values = {"count": 6, "validation_count": 4, "anomaly_ratio": 0.5, "seed": 7, "image_size": SIZE}
    values.update(changes)
    return CalibrationConfig(**values)


def _paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


# -- sets ------------------------------------------------------------------------------------


def test_same_seed_gives_identical_sets(normal_images_dir: Path) -> None:
    first = build_calibration_sets(_paths(normal_images_dir), _config())
    second = build_calibration_sets(list(reversed(_paths(normal_images_dir))), _config())  # listing order is irrelevant
    for a, b in zip(first, second, strict=True):
        assert len(a) == len(b) > 0
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x.image, y.image)
            np.testing.assert_array_equal(x.mask, y.mask)
            assert (x.is_anomalous, x.source) == (y.is_anomalous, y.source)


def test_different_seed_gives_different_sets(normal_images_dir: Path) -> None:
    first, _ = build_calibration_sets(_paths(normal_images_dir), _config(seed=7))
    second, _ = build_calibration_sets(_paths(normal_images_dir), _config(seed=8))
    assert not all(np.array_equal(a.image, b.image) for a, b in zip(first, second, strict=True))


def test_calibration_and_validation_use_disjoint_images(normal_images_dir: Path) -> None:
    calibration, validation = build_calibration_sets(_paths(normal_images_dir), _config(count=16, validation_count=8))
    cal_sources = {s.source for s in calibration}
    val_sources = {s.source for s in validation}
    assert cal_sources and val_sources
    assert cal_sources.isdisjoint(val_sources)
    assert cal_sources | val_sources <= {str(p) for p in _paths(normal_images_dir)}


def test_sets_hold_the_requested_mix_of_anomalies(normal_images_dir: Path) -> None:
    calibration, validation = build_calibration_sets(_paths(normal_images_dir), _config(count=8, validation_count=4))
    assert len(calibration) == 8 and len(validation) == 4
    assert calibration.labels.sum() == 4 and validation.labels.sum() == 2
    for sample in [*calibration, *validation]:
        assert sample.image.shape == (SIZE, SIZE, 3) and sample.image.dtype == np.uint8
        assert sample.mask.shape == (SIZE, SIZE)
        # anomalous samples carry a non-empty mask, normal ones an empty one
        assert bool(sample.mask.any()) == sample.is_anomalous
    assert calibration.masks.dtype == bool and calibration.masks.shape == (8, SIZE, SIZE)
    # interleaved: a quantizer that takes only a prefix still sees both kinds
    assert 0 < calibration.labels[:4].sum() < 4


def test_the_calibration_set_does_not_depend_on_the_validation_count(normal_images_dir: Path) -> None:
    """An fp32 export (8 parity images), an INT8 export (32 for its gate) and `calibrate` (none)
    fit their thresholds on one calibration set, so their decisions differ only where their
    runtimes do (the held-out sources once depended on the number of validation samples)."""
    paths = _paths(normal_images_dir)
    sets = {n: build_calibration_sets(paths, _config(count=8, validation_count=n)) for n in (0, 2, 8, 32)}
    reference, _ = sets[0]
    for count, (calibration, validation) in sets.items():
        assert len(validation) == count
        for x, y in zip(reference, calibration, strict=True):
            assert (x.source, x.is_anomalous) == (y.source, y.is_anomalous)
            np.testing.assert_array_equal(x.image, y.image)
            np.testing.assert_array_equal(x.mask, y.mask)
        if count:
            assert {s.source for s in validation}.isdisjoint({s.source for s in calibration})


def test_too_few_images_fall_back_to_shared_sources(normal_images_dir: Path) -> None:
    paths = _paths(normal_images_dir)[:3]
    calibration, validation = build_calibration_sets(paths, _config())
    assert {s.source for s in calibration} <= {str(p) for p in paths}
    assert {s.source for s in validation} & {s.source for s in calibration}


def test_no_images_is_a_calibration_error() -> None:
    with pytest.raises(CalibrationError, match="normal images"):
        build_calibration_sets([], _config())


@pytest.mark.parametrize(("field", "value"), [("count", 1), ("validation_count", -1), ("anomaly_ratio", 1.5)])
def test_invalid_config_is_refused(field: str, value: object) -> None:
    with pytest.raises(ConfigError):
        _config(**{field: value})


# -- thresholds on hand-made scores ------------------------------------------------------------


def _hand_made(n_normal: int = 20, n_anomalous: int = 10, size: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normal maps low everywhere; anomalous maps with a bright square where the mask is."""
    rng = np.random.default_rng(0)
    n = n_normal + n_anomalous
    maps = rng.uniform(0.0, 0.3, (n, size, size)).astype(np.float32)
    masks = np.zeros((n, size, size), dtype=bool)
    labels = np.array([0] * n_normal + [1] * n_anomalous)
    masks[n_normal:, 2:5, 2:5] = True
    maps[masks] = rng.uniform(0.6, 0.9, int(masks.sum()))
    return maps, labels, masks


def test_f1_threshold_separates_separable_scores() -> None:
    maps, labels, masks = _hand_made()
    scores = maps.reshape(len(maps), -1).max(axis=1)
    calibration = fit_thresholds(maps, labels, masks, scores, rule=ThresholdRule(method=ThresholdMethod.F1), seed=3)
    assert scores[labels == 0].max() < calibration.image_threshold <= scores[labels == 1].min()
    assert 0.3 <= calibration.pixel_threshold <= maps[masks].min()
    assert (calibration.num_normal, calibration.num_anomalous, calibration.seed) == (20, 10, 3)
    assert calibration.rule == ThresholdRule(method=ThresholdMethod.F1, target_fpr=None) and calibration.source == "synthetic"


def test_fpr_threshold_keeps_the_false_alarm_rate_on_normals() -> None:
    rng = np.random.default_rng(1)
    n = 200
    scores = rng.normal(0.0, 1.0, n)
    maps = np.zeros((n, 4, 4), dtype=np.float32)
    labels = np.zeros(n, dtype=np.int64)  # fpr needs no anomalies at all
    masks = np.zeros((n, 4, 4), dtype=bool)
    for target in (0.01, 0.05, 0.2):
        calibration = fit_thresholds(maps, labels, masks, scores, rule=ThresholdRule(method=ThresholdMethod.FPR, target_fpr=target))
        false_alarms = float((scores >= calibration.image_threshold).mean())
        assert false_alarms <= target
        assert false_alarms >= target - 2.0 / n  # and not far stricter than asked
        assert calibration.rule.target_fpr == target
    assert calibration.pixel_threshold == 0.5  # no anomalous pixels: the sigmoid midpoint


def test_f1_without_anomalies_is_refused_and_fpr_range_checked() -> None:
    maps, labels, masks = _hand_made()
    normal = labels == 0
    scores = maps.reshape(len(maps), -1).max(axis=1)
    with pytest.raises(CalibrationError, match="fpr"):
        fit_thresholds(maps[normal], labels[normal], masks[normal], scores[normal], rule=ThresholdRule(method=ThresholdMethod.F1))
    for rate in (0.0, 1.0, float("nan"), None):
        with pytest.raises(ConfigError, match="false-alarm rate in"):
            ThresholdRule(method=ThresholdMethod.FPR, target_fpr=rate)
    with pytest.raises(ConfigError, match="takes none"):
        ThresholdRule(method=ThresholdMethod.F1, target_fpr=0.05)
    with pytest.raises(CalibrationError, match="normal"):
        fit_thresholds(maps[~normal], labels[~normal], masks[~normal], scores[~normal])


def test_normalisation_puts_the_thresholds_at_one_half() -> None:
    maps, labels, masks = _hand_made()
    scores = maps.reshape(len(maps), -1).max(axis=1)
    calibration = fit_thresholds(maps, labels, masks, scores)
    at = normalize_image_scores(np.array([calibration.image_threshold]), calibration)
    np.testing.assert_allclose(at, 0.5, atol=1e-6)
    normalised = normalize_image_scores(scores, calibration)
    assert np.all((normalised >= 0.5) == (scores >= calibration.image_threshold))
    assert normalised.min() >= 0.0 and normalised.max() <= 1.0
    pixel_at = normalize_pixel_map(np.full((2, 2), calibration.pixel_threshold, dtype=np.float32), calibration)
    np.testing.assert_allclose(pixel_at, 0.5, atol=1e-6)
    assert np.all((normalize_pixel_map(maps, calibration) >= 0.5) == (maps >= calibration.pixel_threshold))


def test_calibrate_scores_uses_the_predictors_own_maps(tiny_run: Path, normal_images_dir: Path) -> None:
    pytest.importorskip("torch")
    from fractalad_edge.predictor import Predictor

    predictor = Predictor.load(tiny_run)
    calibration_set, _ = build_calibration_sets(_paths(normal_images_dir), _config(count=6, validation_count=0))
    calibration = calibrate_scores(
        predictor, calibration_set.images, calibration_set.labels, calibration_set.masks, seed=5
    )
    maps = predictor.raw_maps(calibration_set.images, channel_order="rgb")
    scores = image_scores(maps, predictor.metadata.score)
    labels = calibration_set.labels.astype(bool)
    # two-sided normalisation (new calibrations): the normals' median and the anomalies' median,
    # moved to the other side of the threshold where they do not lie beyond it
    assert calibration.normalization is ScoreNormalization.TWO_SIDED
    assert calibration.image_min < calibration.image_threshold < calibration.image_max
    low, high = float(np.median(scores[~labels])), float(np.median(scores[labels]))
    if low < calibration.image_threshold:
        assert calibration.image_min == pytest.approx(low, abs=1e-5)
    if high > calibration.image_threshold:
        assert calibration.image_max == pytest.approx(high, abs=1e-5)
    assert (calibration.num_normal, calibration.num_anomalous) == (3, 3)
    # the calibrated predictor decides exactly by the threshold
    results = predictor.with_calibration(calibration).predict_batch([im[..., ::-1] for im in calibration_set.images])
    for result, raw in zip(results, scores, strict=True):
        assert result.is_anomalous == bool(raw >= calibration.image_threshold)


def test_f1_threshold_sits_in_the_middle_of_the_best_gap() -> None:
    from fractalad_edge.calibration.thresholds import f1_threshold
    from fractalad_edge.metrics import f1_max

    # separated: anything in (0.3, 0.9] is perfect; the middle is 0.6, not the edge 0.9
    assert f1_threshold(np.array([0, 0, 0, 1, 1, 1]), np.array([0.1, 0.2, 0.3, 0.9, 0.95, 0.99])) == pytest.approx(0.6)
    # overlapping: best F1 (6/7) flags everything from 0.4 up; the gap below it is (0.2, 0.4]
    labels, scores = np.array([0, 1, 0, 1, 1]), np.array([0.2, 0.4, 0.5, 0.7, 0.8])
    threshold = f1_threshold(labels, scores)
    assert threshold == pytest.approx(0.3)
    flagged = scores >= threshold
    assert 2 * (flagged & (labels == 1)).sum() / (flagged.sum() + labels.sum()) == pytest.approx(f1_max(labels, scores)[0])
    # nothing below the best threshold: it stays where it is
    assert f1_threshold(np.array([1, 1, 0]), np.array([0.2, 0.3, 0.9])) == pytest.approx(0.2)


def _model_with_rule(tiny_run: Path, model: Path, rule: ThresholdRule) -> Path:
    """A copy of the run whose metadata carries thresholds fitted with ``rule``."""
    rng = np.random.default_rng(0)
    labels = np.array([0] * 20 + [1] * 20)
    maps = rng.random((40, 8, 8)).astype(np.float32)
    scores = image_scores(maps, ScoreSpec()) + labels
    written = fit_thresholds(maps, labels, np.zeros((40, 8, 8), dtype=bool), scores, rule=rule)
    shutil.copytree(tiny_run, model)
    write_metadata(model, dataclasses.replace(read_metadata(tiny_run), calibration=written))
    return model


def test_the_threshold_rule_in_metadata_reads_back_as_the_rule_that_wrote_it(tiny_run: Path, tmp_path: Path) -> None:
    for rule in (ThresholdRule(), ThresholdRule.of("fpr", 0.05)):
        model = _model_with_rule(tiny_run, tmp_path / rule.method.value, rule)
        stored = json.loads((model / METADATA_FILENAME).read_text())["calibration"]["rule"]
        assert stored == {"method": rule.method.value, "target_fpr": rule.target_fpr}  # a small object, no label to parse
        assert read_metadata(model).calibration.rule == rule
    assert ThresholdRule.of("f1", 0.05) == ThresholdRule()  # --target-fpr is for the fpr method only


@pytest.mark.parametrize(("label", "rule"), [("f1", ThresholdRule()), ("fpr@0.05", ThresholdRule.of("fpr", 0.05))])
def test_metadata_written_before_schema_3_keeps_its_threshold_label(tiny_run: Path, tmp_path: Path, label: str, rule: ThresholdRule) -> None:
    model = _model_with_rule(tiny_run, tmp_path / "old", ThresholdRule.of("fpr", 0.2))
    data = json.loads((model / METADATA_FILENAME).read_text())
    data["schema_version"] = 2  # the old form: calibration.method, a label string
    data["calibration"]["method"] = label
    del data["calibration"]["rule"]
    (model / METADATA_FILENAME).write_text(json.dumps(data))
    assert read_metadata(model).calibration.rule == rule
    data["calibration"]["method"] = "fpr@2"
    (model / METADATA_FILENAME).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="false-alarm rate in"):
        read_metadata(model)
    data["calibration"]["method"] = "f1-guess"
    (model / METADATA_FILENAME).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="'f1' or 'fpr@<rate>'"):
        read_metadata(model)


def test_export_refits_thresholds_with_the_runs_rule(tiny_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from fractalad_edge.export import ExportOptions, export_model

    rule = ThresholdRule.of("fpr", 0.2)
    run = _model_with_rule(tiny_run, tmp_path / "run", rule)
    messages: list[str] = []
    metadata = export_model(
        run, format="onnx", out=tmp_path / "onnx", options=ExportOptions(calib_count=8, parity_images=4), progress=messages.append
    )
    assert metadata.calibration is not None and metadata.calibration.rule == rule
    assert any("fpr@0.2" in m for m in messages)  # the refit says which rule it kept
