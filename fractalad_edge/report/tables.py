"""The HTML report's metric tables, as rows of strings, from the results eval and bench return.

The numbers and their formatting follow report.md (bench rows are the bench's own
:func:`~fractalad_edge.bench.render_markdown.summary_rows`); the per-defect table adds how many images
each defect type loses at the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fractalad_edge.bench.render_markdown import summary_rows
from fractalad_edge.bench.report import BenchReport
from fractalad_edge.evaluation import AccuracyReport, ThresholdCheck
from fractalad_edge.report.gallery import GalleryCard, misses_label


@dataclass(frozen=True, kw_only=True)
class Table:
    caption: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


def _pct(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.2f}"


def eval_tables(report: AccuracyReport) -> list[Table]:
    """The headline metrics, the score reductions and the thresholds on the real labels."""
    cal = report.calibrated
    headline = Table(
        caption="Accuracy on the labelled test set (%)",
        header=("category", "runtime", "precision", "images", "image AUROC", "pixel AUROC", "AUPRO", "F1-max",
                "F1 @ calibrated thr", "false alarms @ calibrated thr"),
        rows=((
            report.category, report.runtime, report.precision, f"{report.num_images} ({report.num_anomalous} defective)",
            _pct(report.image_auroc), _pct(report.pixel_auroc), _pct(report.aupro), _pct(report.image_f1_max),
            "-" if cal is None else _pct(cal.f1), "-" if cal is None else f"{100 * cal.false_alarm_rate:.1f} %",
        ),),
    )
    reductions = Table(
        caption="Image score reductions",
        header=("reduction", "image AUROC", "F1-max"),
        rows=tuple(
            (name + (" (used)" if name == report.reduction else ""), _pct(values.image_auroc), _pct(values.image_f1_max))
            for name, values in report.by_reduction.items()
        ),
    )
    checks: list[tuple[str, ThresholdCheck]] = [("F1-optimal on test (ceiling)", report.oracle)]
    if cal is not None:
        checks.insert(0, ("calibrated (no real defects)", cal))
    thresholds = Table(
        caption="Thresholds on the real test labels",
        header=("threshold", "value", "F1", "precision", "recall", "false-alarm rate"),
        rows=tuple(
            (name, f"{c.threshold:.4f}", _pct(c.f1), _pct(c.precision), _pct(c.recall), f"{100 * c.false_alarm_rate:.2f} %")
            for name, c in checks
        ),
        note="The gallery applies the calibrated threshold, the one the model carries."
        if cal is not None
        else "The model carries no calibration: the gallery applies the head's own midpoint to the raw score "
        "(0.5 to a probability, 0 to a logit).",
    )
    return [headline, reductions, thresholds]


def bench_tables(report: BenchReport) -> list[Table]:
    """The bench's headline table: one row per runtime x precision, failed ones with their reason."""
    header, rows = summary_rows(report)
    return [
        Table(
            caption="Latency x accuracy per runtime and precision",
            header=tuple(header),
            rows=tuple(tuple(row) for row in rows),
            note=f"Accuracy in % on {report.test_images} test images; latency batch 1 in ms; "
            f"speedup relative to {report.reference or '-'}. report.md says how each column was measured.",
        )
    ]


def defect_table(cards: Sequence[GalleryCard], per_defect_auroc: Mapping[str, float]) -> Table:
    """Per defect type: images, misses at the threshold and image AUROC (defect type vs good)."""
    defects = sorted({c.defect for c in cards}, key=lambda d: (d != "good", d))
    rows = []
    for defect in defects:
        group = [c for c in cards if c.defect == defect]
        rows.append((defect, str(len(group)), misses_label(defect, sum(c.miss for c in group)), _pct(per_defect_auroc.get(defect))))
    return Table(
        caption="Per defect type, at the model's threshold",
        header=("defect type", "images", "misses", "image AUROC"),
        rows=tuple(rows),
    )
