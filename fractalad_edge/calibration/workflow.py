"""`fractalad-edge calibrate`: new thresholds for an existing model directory, no re-export.

Thresholds are fitted with the artifact's own runtime on synthetic anomalies made from
the given normal images. When real labelled defects are supplied they are used instead,
and both results are reported so the cost of calibrating without defects is visible.

``score_space`` switches what the thresholds are fitted on (fractalad_edge/score_space.py).
A ``torch`` artifact can: its forward drops or adds the sigmoid, the weights file is
unchanged. An exported graph (ONNX, OpenVINO, TensorRT) computes its own output, so a
sigmoid export is refused with :class:`~fractalad_edge.errors.ScoreSpaceError`: the logits
cannot be recovered from it where they matter: a float32 sigmoid is exactly 1 for every
logit above ~16.6 and has only a few values per logit unit near 15, and fp16/bf16 layers
round it far earlier; re-exporting from the run gives the logits themselves
(docs/experiments/score-space.md measures the difference on bottle).

A ``memory`` or ``fused`` model scores the images its memory was built from near zero, so
they are left out of the normal images (by content hash: fractalad_edge/memory_images.py),
and a folder holding nothing else is refused with :class:`MemoryOverlapError`; thresholds
fitted on them flagged 61 % of good magnetic tiles (docs/experiments/memory-method.md). A
run built before the hashes were recorded names its images in its config.json; an export
of that age cannot tell: a :class:`CalibrationWarning`.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fractalad_edge.artifact import (
    METADATA_FILENAME,
    RUN_CONFIG_FILENAME,
    ArtifactMetadata,
    ModelFormat,
    ScoreCalibration,
    read_metadata,
    write_metadata,
)
from fractalad_edge.calibration.dataset import CalibrationConfig, build_calibration_sets
from fractalad_edge.calibration.defaults import CALIBRATION_COUNT, CALIBRATION_SEED
from fractalad_edge.calibration.thresholds import calibrate_scores, fit_thresholds
from fractalad_edge.data.categories import category_defaults
from fractalad_edge.data.datasets import category_name, find_training_images
from fractalad_edge.errors import CalibrationWarning, ConfigError, MemoryOverlapError, ScoreSpaceError
from fractalad_edge.memory_images import image_digest, memory_paths_of_run, read_memory_images, split_memory_images
from fractalad_edge.method import Method
from fractalad_edge.preprocess import image_scores
from fractalad_edge.score_space import ScoreSpace, check_space, parse_space
from fractalad_edge.threshold_rule import DEFAULT_TARGET_FPR, ThresholdMethod, ThresholdRule


@dataclass(frozen=True, kw_only=True)
class RecalibrationResult:
    synthetic: ScoreCalibration
    real: ScoreCalibration | None
    written: ScoreCalibration
    model: Path
    space: ScoreSpace = ScoreSpace.SIGMOID  # what the thresholds are in (the artifact's score.space)
    previous_space: ScoreSpace = ScoreSpace.SIGMOID  # before this calibration
    normal_images: int = 0  # found in ``normal``
    #: of those, left out because they built the model's memory; None: a ``fractalad`` model
    #: (no memory), or a memory the artifact does not list (a :class:`CalibrationWarning` said so)
    memory_images_left_out: int | None = None
    object_placement: bool = False  # synthetic anomalies were pasted on the object only

    def summary(self) -> str:
        switched = "" if self.space is self.previous_space else f", switched from {self.previous_space.value!r}"
        lines = []
        if self.memory_images_left_out == 0:
            lines.append(f"none of the {self.normal_images} normal images is in this model's memory")
        elif self.memory_images_left_out is not None:
            kept = self.normal_images - self.memory_images_left_out
            lines.append(
                f"left out {self.memory_images_left_out} of {self.normal_images} normal images: they built this model's "
                f"memory (distances near zero); thresholds fitted on the other {kept}"
            )
        lines += [
            f"thresholds written to {self.model / METADATA_FILENAME} ({self.written.source}, {self.written.rule.label}; "
            f"{self.space.value!r} space{switched}, {self.written.normalization.value} normalisation; "
            f"synthetic anomalies {'on the object' if self.object_placement else 'anywhere in the frame'}):"
        ]
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
    score_space: ScoreSpace | str | None = None,
    object_placement: bool | None = None,
) -> RecalibrationResult:
    """Fit and write new thresholds; ``score_space`` (None: the artifact's own) switches a torch artifact's space.

    ``object_placement`` (None: as the run trained, see :func:`anomaly_placement`) pastes the
    synthetic anomalies on the object only, as training and ``export`` do where the run did.
    """
    from fractalad_edge.data.test_set import load_test_set
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.runtimes.base import load_backend

    try:
        threshold_method = ThresholdMethod(method)
    except ValueError:
        msg = f"--method must be 'f1' or 'fpr', got {method!r}"
        raise ConfigError(msg) from None
    rule = ThresholdRule.of(threshold_method, target_fpr)
    model = Path(model)
    original = read_metadata(model)
    metadata = in_space(original, model, score_space)
    paths = find_training_images(normal)
    kept, left_out = outside_memory(model, original, paths, normal)  # before any model is loaded
    predictor = Predictor(load_backend(model, metadata, runtime=runtime), metadata)
    placement = anomaly_placement(model, normal, object_placement)
    config = CalibrationConfig(
        count=count, validation_count=0, seed=seed, image_size=metadata.input.height, object_placement=placement
    )
    calibration_set, _ = build_calibration_sets(kept, config)
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
            rule=rule, source="real", space=metadata.score_space,
        )
    written = real or synthetic
    write_metadata(model, dataclasses.replace(metadata, calibration=written))
    return RecalibrationResult(
        synthetic=synthetic, real=real, written=written, model=model,
        space=metadata.score_space, previous_space=original.score_space,
        normal_images=len(paths), memory_images_left_out=left_out, object_placement=placement,
    )


def anomaly_placement(model: Path, normal: str | Path, given: bool | None) -> bool:
    """Where calibration pastes synthetic anomalies, so thresholds match the ones the run and ``export`` fitted.

    ``given`` wins; else the run's own setting (``config.json`` of a training run); else the
    category default of the normal folder's name (``.../screw/train/good`` -> ``screw``: on
    the object), as ``train`` chooses it.
    """
    if given is not None:
        return given
    train = _run_config(Path(model)).get("train")
    synth = train.get("synth") if isinstance(train, dict) else None
    if isinstance(synth, dict) and isinstance(synth.get("object_placement"), bool):
        return synth["object_placement"]
    return category_defaults(category_name(normal)).object_placement


def outside_memory(
    model: Path, metadata: ArtifactMetadata, paths: list[Path], normal: str | Path
) -> tuple[list[Path], int | None]:
    """``(paths not in the model's memory, how many were left out)``; None: nothing to check or not recorded.

    Refuses with :class:`MemoryOverlapError` when every image is in the memory; warns
    (:class:`CalibrationWarning`) when a memory model does not record its images (an export
    made before the list existed; a run of that age still names them in its config.json).
    """
    if metadata.method is Method.FRACTALAD:
        return paths, None
    digests = read_memory_images(model, metadata)
    if digests is None:
        digests = _run_memory_images(model)  # a run built before the list: its config.json names them
    if digests is None:
        msg = (
            f"{model} does not record which images built its memory (made before fractalad-edge recorded them), so "
            f"images of {normal} that are in it cannot be left out: they score near zero and pull the thresholds down "
            "(false alarms). Pass --normal images kept out of the memory, or rebuild the model (train --method "
            f"{metadata.method.value}) and export it again"
        )
        warnings.warn(msg, CalibrationWarning, stacklevel=3)
        return paths, None
    kept, in_memory = split_memory_images(paths, digests)
    if not kept:
        msg = (
            f"all {len(paths)} images in {normal} built this model's memory (they score near zero, so thresholds fitted on "
            f"them would flag good parts); pass --normal a folder of good images kept out of it: new good frames, or "
            f"{_holdout_hint(model)}"
        )
        raise MemoryOverlapError(msg)
    return kept, len(in_memory)


def _run_memory_images(model: Path) -> frozenset[str] | None:
    """Hashes of the images a memory run built its memory from, by its config.json; None where it names none."""
    paths = memory_paths_of_run(_run_config(model))
    return None if paths is None else frozenset(image_digest(p) for p in paths)


def _holdout_hint(model: Path) -> str:
    """Where the images the build held out are listed: this run's config.json, or the training run's."""
    holdout = _run_config(model).get("holdout")
    if isinstance(holdout, list) and holdout:
        return f"the {len(holdout)} images the build held out ('holdout' in {model / RUN_CONFIG_FILENAME})"
    return f"the images the build held out ('holdout' in the training run's {RUN_CONFIG_FILENAME})"


def _run_config(model: Path) -> dict[str, Any]:
    """A training run's config.json; empty for an export (it has none) or a file that is not a JSON object."""
    try:
        config = json.loads((model / RUN_CONFIG_FILENAME).read_text())
    except (OSError, ValueError):  # missing, unreadable, not UTF-8 or not JSON
        return {}
    return config if isinstance(config, dict) else {}


def in_space(metadata: ArtifactMetadata, model: Path, score_space: ScoreSpace | str | None) -> ArtifactMetadata:
    """``metadata`` scoring in ``score_space`` (None: unchanged); refused where the model cannot.

    Only a ``torch`` artifact can change space (its forward is built from the metadata); an
    exported graph raises :class:`ScoreSpaceError` naming the re-export that gives the space.
    """
    if score_space is None:
        return metadata
    space = parse_space(score_space)
    if space is metadata.score_space:
        return metadata
    check_space(metadata.method, space)
    if metadata.format is not ModelFormat.TORCH:
        msg = (
            f"{model} is a {metadata.format.value} export whose graph outputs {metadata.score_space.value!r} maps; it cannot "
            f"score in {space.value!r} without re-export: fractalad-edge export RUN --format {metadata.format.value} "
            f"--precision {metadata.precision.value} --score-space {space.value} --out NEW (RUN: the training run it came from)"
        )
        raise ScoreSpaceError(msg)
    return dataclasses.replace(metadata, score=dataclasses.replace(metadata.score, space=space), calibration=None)
