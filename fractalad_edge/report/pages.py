"""report.html for ``eval`` and ``bench``: which results go on which page.

``eval`` already holds the test set and the raw maps, so its page costs only the
thumbnails. ``bench`` keeps no maps, so its gallery scores the test set once more through
the reference configuration's own artifact (the row speedups are relative to).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fractalad_edge import __version__
from fractalad_edge.artifact import ArtifactMetadata
from fractalad_edge.bench.report import BenchReport
from fractalad_edge.data.test_set import load_test_set
from fractalad_edge.evaluation import AccuracyReport, evaluate_predictor
from fractalad_edge.report.gallery import GalleryCard, LabelledImages, gallery_cards
from fractalad_edge.report.html import ReportPage, write_html
from fractalad_edge.report.tables import bench_tables, defect_table, eval_tables

_GALLERY_HELP = (
    "Each card: the image and its heat map (white outline: the ground-truth defect), the image score, the "
    "threshold the model applies and the decision. Red cards are misses; click a card to see it at full size."
)


def _footer() -> str:
    return f"fractalad-edge {__version__}, {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC"


def eval_page(report: AccuracyReport, cards: Sequence[GalleryCard], *, model: str = "", data: str = "") -> ReportPage:
    threshold = cards[0].threshold if cards else None
    return ReportPage(
        title=f"Evaluation: {report.category or 'model'} ({report.runtime}, {report.precision})",
        summary=tuple(
            line
            for line in (
                f"model: {model}" if model else "",
                f"test set: {data}" if data else "",
                f"{report.num_images} images ({report.num_anomalous} defective), score {report.reduction}, "
                + ("" if threshold is None else f"threshold {threshold:.4f}, ")
                + f"evaluated in {report.seconds:.1f} s",
            )
            if line
        ),
        tables=(*eval_tables(report), defect_table(cards, report.per_defect_auroc)),
        gallery_caption=_GALLERY_HELP,
        cards=tuple(cards),
        footer=_footer(),
    )


def write_eval_html(
    report: AccuracyReport, test_set: LabelledImages, maps: np.ndarray, metadata: ArtifactMetadata, out: Path, *,
    model: str = "", data: str = "",
) -> Path:
    """``out/report.html`` for one evaluation: metrics, per-defect misses and the full gallery."""
    cards = gallery_cards(test_set, maps, metadata)
    return write_html(eval_page(report, cards, model=model, data=data), out)


def bench_page(
    report: BenchReport, cards: Sequence[GalleryCard], plot_png: bytes | None, per_defect_auroc: Mapping[str, float]
) -> ReportPage:
    env = report.environment
    tables = bench_tables(report)
    if cards:
        tables.append(defect_table(cards, per_defect_auroc))
    return ReportPage(
        title=f"Benchmark: {report.category or 'model'} on {env.cpu_model}",
        summary=(
            f"model: {report.run_dir}; test set: {report.data} ({report.test_images} of {report.test_images_available} images)",
            f"device {report.config.device}, {env.usable_cpus} CPUs, threads {report.config.threads or 'default'}, "
            f"{env.date}; bench took {report.seconds:.0f} s",
        ),
        tables=tuple(tables),
        plot_png=plot_png,
        plot_caption="Median latency per frame at batch 1 (bars p10-p90) against accuracy; one point per working configuration.",
        gallery_caption=(
            f"All {len(cards)} test images through {report.reference} (the reference configuration). " + _GALLERY_HELP
            if cards
            else ""
        ),
        cards=tuple(cards),
        footer=_footer(),
    )


def write_bench_html(report: BenchReport, out: Path) -> Path:
    """``out/report.html`` for a bench: the table, the plot and the reference configuration's gallery."""
    from fractalad_edge.predictor import Predictor

    cards: list[GalleryCard] = []
    per_defect_auroc: dict[str, float] = {}
    reference = None if report.reference is None else report.result(report.reference)
    if reference is not None and reference.artifact is not None:
        test_set = load_test_set(report.data, report.input_size)
        with Predictor.load(Path(reference.artifact), runtime=reference.runtime, device=reference.device) as predictor:
            accuracy, maps = evaluate_predictor(predictor, test_set, category=report.category)
            cards = gallery_cards(test_set, maps, predictor.metadata)
        per_defect_auroc = accuracy.per_defect_auroc  # on every test image, like the gallery
    png = None if report.files is None else report.files.png
    plot_png = Path(png).read_bytes() if png else None
    return write_html(bench_page(report, cards, plot_png, per_defect_auroc), out)
