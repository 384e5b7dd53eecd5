"""Accuracy on a labelled test set (MVTec layout), through any runtime's Predictor.

One evaluation path for every runtime and precision: the predictor produces raw maps,
scores come from the artifact's own reduction, and the MVTec AD protocol metrics are
computed in numpy. The threshold the artifact carries (fitted without real defects) is
also applied to the real labels, next to the F1-optimal threshold chosen on the test set
itself (the ceiling), so users see what calibration without defects costs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fractalad_edge.artifact import ArtifactMetadata, ScoreReduction, ScoreSpec
from fractalad_edge.data.test_set import TestSet
from fractalad_edge.metrics import binary_rates, evaluate_maps, f1_max, roc_auc
from fractalad_edge.preprocess import display_maps, image_scores, overlay, resize_image
from fractalad_edge.predictor import Predictor

REDUCTIONS: tuple[ScoreSpec, ...] = (
    ScoreSpec(reduction=ScoreReduction.MEAN),
    ScoreSpec(reduction=ScoreReduction.MAX),
    ScoreSpec(reduction=ScoreReduction.TOPK, topk_fraction=0.01),
    ScoreSpec(reduction=ScoreReduction.TOPK, topk_fraction=0.001),
)


def reduction_name(spec: ScoreSpec) -> str:
    return f"topk@{spec.topk_fraction:g}" if spec.reduction is ScoreReduction.TOPK else spec.reduction.value


@dataclass(frozen=True, kw_only=True)
class ThresholdCheck:
    """A threshold applied to the real test labels."""

    threshold: float
    f1: float
    precision: float
    recall: float
    false_alarm_rate: float


@dataclass(frozen=True, kw_only=True)
class ReductionScores:
    """Image-level numbers of one score reduction."""

    image_auroc: float
    image_f1_max: float


@dataclass(frozen=True, kw_only=True)
class AccuracyReport:
    category: str
    runtime: str
    precision: str
    num_images: int
    num_anomalous: int
    image_auroc: float
    pixel_auroc: float
    aupro: float
    image_f1_max: float
    reduction: str
    by_reduction: dict[str, ReductionScores]  # reduction name -> image AUROC and F1-max
    calibrated: ThresholdCheck | None  # the artifact's own threshold on the real labels
    oracle: ThresholdCheck  # F1-optimal threshold chosen on the test set (the ceiling)
    per_defect_auroc: dict[str, float]
    seconds: float
    overlays: list[str] = field(default_factory=list)
    method: str = "fractalad"  # the model's scoring method (fractalad, memory, fused)

    def to_dict(self) -> dict:
        return asdict(self)


def _threshold_check(labels: np.ndarray, scores: np.ndarray, threshold: float) -> ThresholdCheck:
    rates = binary_rates(labels, scores, threshold)
    return ThresholdCheck(
        threshold=float(threshold),
        f1=float(rates.f1),
        precision=float(rates.precision),
        recall=float(rates.recall),
        false_alarm_rate=float(rates.false_alarm_rate),
    )


def evaluate_predictor(
    predictor: Predictor,
    test_set: TestSet,
    *,
    category: str = "",
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[AccuracyReport, np.ndarray]:
    """MVTec protocol metrics for one predictor; returns the report and the raw maps."""
    started = time.perf_counter()
    total = len(test_set.images)
    maps = predictor.raw_maps(test_set.images, channel_order="rgb", batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - started
    labels = np.array([s.label for s in test_set.samples], dtype=np.int64)
    by_reduction = {}
    for spec in REDUCTIONS:
        scores = image_scores(maps, spec)
        by_reduction[reduction_name(spec)] = ReductionScores(image_auroc=roc_auc(labels, scores), image_f1_max=f1_max(labels, scores)[0])
    spec = predictor.metadata.score
    scores = image_scores(maps, spec)
    has_masks = bool(test_set.masks.any())
    # pixels are sorted and ranked once for pixel AUROC and AUPRO together
    metrics = evaluate_maps(labels, scores, test_set.masks, maps) if has_masks else evaluate_maps(labels, scores)
    calibration = predictor.metadata.calibration
    per_defect = {}
    for defect in sorted({s.defect for s in test_set.samples} - {"good"}):
        keep = np.array([s.defect in (defect, "good") for s in test_set.samples])
        per_defect[defect] = roc_auc(labels[keep], scores[keep])
    report = AccuracyReport(
        category=category,
        runtime=predictor.runtime,
        precision=predictor.metadata.precision.value,
        method=predictor.metadata.method.value,
        num_images=total,
        num_anomalous=int(labels.sum()),
        image_auroc=metrics.image_auroc,
        pixel_auroc=metrics.pixel_auroc,
        aupro=metrics.aupro,
        image_f1_max=metrics.image_f1_max,
        reduction=reduction_name(spec),
        by_reduction=by_reduction,
        calibrated=None if calibration is None else _threshold_check(labels, scores, calibration.image_threshold),
        oracle=_threshold_check(labels, scores, metrics.image_f1_threshold),
        per_defect_auroc=per_defect,
        seconds=seconds,
    )
    return report, maps


def write_overlays(
    test_set: TestSet, maps: np.ndarray, out: Path, *, count: int = 12, seed: int = 0, metadata: ArtifactMetadata | None = None
) -> list[str]:
    """image | ground truth | heat map panels for a spread of test images (anomalous first).

    With the artifact's ``metadata`` the heat maps are coloured as the report's are
    (:func:`~fractalad_edge.preprocess.display_maps`: logits and distances normalised by the
    calibration); without it ``maps`` are taken to be in [0, 1].
    """
    if metadata is not None:
        maps = display_maps(maps, metadata.score, metadata.calibration)
    if count <= 0:  # `eval --overlays 0`
        return []
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    anomalous = [i for i, s in enumerate(test_set.samples) if s.label == 1]
    normal = [i for i, s in enumerate(test_set.samples) if s.label == 0]
    n_anomalous = min(len(anomalous), max(1, (count * 3) // 4))
    chosen = list(rng.choice(anomalous, n_anomalous, replace=False)) if anomalous else []
    chosen += list(rng.choice(normal, min(len(normal), count - len(chosen)), replace=False)) if normal else []
    written = []
    size = maps.shape[-1]
    for index in sorted(int(i) for i in chosen):
        sample = test_set.samples[index]
        image = resize_image(test_set.images[index], size, size)
        truth = np.repeat((test_set.masks[index].astype(np.uint8) * 255)[..., None], 3, axis=2)
        heat = overlay(image, maps[index])
        panel = np.concatenate([image, truth, heat], axis=1)
        name = f"{sample.defect}_{sample.image_path.stem}.png"
        cv2.imwrite(str(out / name), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
        written.append(str(out / name))
    return written


def markdown_table(reports: Sequence[AccuracyReport]) -> str:
    lines = [
        "| category | runtime | precision | image AUROC | pixel AUROC | AUPRO | F1-max | F1 @ calibrated thr | false alarms @ calibrated thr |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        cal = r.calibrated
        lines.append(
            f"| {r.category} | {r.runtime} | {r.precision} | {100 * r.image_auroc:.2f} | {100 * r.pixel_auroc:.2f} | "
            f"{100 * r.aupro:.2f} | {100 * r.image_f1_max:.2f} | {'-' if cal is None else f'{100 * cal.f1:.2f}'} | "
            f"{'-' if cal is None else f'{100 * cal.false_alarm_rate:.1f} %'} |"
        )
    return "\n".join(lines)


def write_report(report: AccuracyReport, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    lines = [f"# Evaluation: {report.category} ({report.method}, {report.runtime}, {report.precision})", "", markdown_table([report]), ""]
    lines += ["## Image score reductions", "", "| reduction | image AUROC | F1-max |", "|---|---|---|"]
    for name, values in report.by_reduction.items():
        marker = " (used)" if name == report.reduction else ""
        lines.append(f"| {name}{marker} | {100 * values.image_auroc:.2f} | {100 * values.image_f1_max:.2f} |")
    lines += ["", "## Thresholds on the real test labels", "", "| threshold | value | F1 | precision | recall | false-alarm rate |", "|---|---|---|---|---|---|"]
    for name, check in (("calibrated (no real defects)", report.calibrated), ("F1-optimal on test (ceiling)", report.oracle)):
        if check is not None:
            lines.append(
                f"| {name} | {check.threshold:.4f} | {100 * check.f1:.2f} | {100 * check.precision:.2f} | "
                f"{100 * check.recall:.2f} | {100 * check.false_alarm_rate:.2f} % |"
            )
    if report.per_defect_auroc:
        lines += ["", "## Image AUROC per defect type", "", "| defect | image AUROC |", "|---|---|"]
        lines += [f"| {d} | {100 * v:.2f} |" for d, v in report.per_defect_auroc.items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")
