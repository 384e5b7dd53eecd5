"""What a benchmark found: one :class:`ConfigResult` per runtime x precision, in a :class:`BenchReport`.

Failed rows are kept (a row that says why is more useful than a run that stopped). How a
report is shown lives beside it: :mod:`.render_markdown` (console table and report.md),
:mod:`.render_json` (report.json) and :mod:`.render_plot` (report.png);
:func:`write_reports` writes all three.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fractalad_edge.bench.latency import LatencyReport, ThroughputReport
from fractalad_edge.bench.memory import MemoryReport
from fractalad_edge.bench.system import EnvironmentInfo

OK = "ok"


@dataclass(frozen=True, kw_only=True)
class ConfigResult:
    """One runtime x precision configuration: how it was built, how accurate, how fast, how big."""

    name: str  # "<runtime>-<precision>"
    runtime: str
    precision: str
    device: str
    format: str
    status: str = OK  # "ok", "failed: <reason>" or "skipped: <reason>"
    artifact: str | None = None
    reused: bool = False  # an existing export of the same weights was reused
    export_seconds: float | None = None
    load_seconds: float | None = None
    size_mb: float | None = None
    accuracy: dict[str, Any] | None = None  # AccuracyReport.to_dict()
    map_mean_abs_diff: float | None = None  # vs the reference's maps on the same test images
    map_max_abs_diff: float | None = None
    decisions_agree: float | None = None  # fraction of test images with the reference's decision
    latency: LatencyReport | None = None
    throughput: ThroughputReport | None = None
    async_throughput: ThroughputReport | None = None
    memory: MemoryReport | None = None
    gflops_per_second: float | None = None  # 2 * MACs / inference-stage p50
    speedup: float | None = None  # reference full p50 / this full p50
    parity: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None
    backend: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == OK

    def metric(self, name: str) -> float:
        """An accuracy number (0..1) or NaN when there is none."""
        if self.accuracy is None:
            return math.nan
        value = self.accuracy.get(name)
        return float(value) if isinstance(value, (int, float)) else math.nan

    def calibrated(self, name: str) -> float:
        """F1 / false-alarm rate at the artifact's own threshold, NaN when it carries none."""
        check = None if self.accuracy is None else self.accuracy.get("calibrated")
        return float(check[name]) if isinstance(check, dict) and isinstance(check.get(name), (int, float)) else math.nan

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            data[key] = value.to_dict() if hasattr(value, "to_dict") else (list(value) if isinstance(value, tuple) else value)
        return data


@dataclass(frozen=True, kw_only=True)
class BenchReport:
    category: str
    run_dir: str
    data: str
    model: dict[str, Any]
    input_size: int
    macs: dict[str, Any] | None
    test_images: int
    test_anomalous: int
    test_images_available: int  # in the test set; more than test_images in the short mode
    reference: str | None  # the row speedups and map differences are relative to
    config: dict[str, Any]
    environment: EnvironmentInfo
    results: tuple[ConfigResult, ...]
    seconds: float
    files: dict[str, str] = field(default_factory=dict)  # "markdown", "json", "png" -> path

    def result(self, name: str) -> ConfigResult:
        for row in self.results:
            if row.name == name:
                return row
        msg = f"no configuration {name!r} in this report; it has {', '.join(r.name for r in self.results)}"
        raise KeyError(msg)

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "run_dir": self.run_dir,
            "data": self.data,
            "model": dict(self.model),
            "input_size": self.input_size,
            "macs": self.macs,
            "test_images": self.test_images,
            "test_anomalous": self.test_anomalous,
            "test_images_available": self.test_images_available,
            "reference": self.reference,
            "config": self.config,
            "environment": self.environment.to_dict(),
            "results": [row.to_dict() for row in self.results],
            "seconds": self.seconds,
            "files": dict(self.files),
        }


def write_reports(report: BenchReport, out: Path) -> BenchReport:
    """report.md, report.json and report.png in ``out``; returns the report with their paths."""
    from fractalad_edge.bench.render_json import write_json
    from fractalad_edge.bench.render_markdown import markdown_report
    from fractalad_edge.bench.render_plot import plot_report

    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": str(out / "report.md"), "json": str(out / "report.json")}
    png = plot_report(report, out / "report.png")
    if png is not None:
        files["png"] = str(png)
    report = dataclasses.replace(report, files=files)
    (out / "report.md").write_text(markdown_report(report))
    write_json(report, out / "report.json")
    return report
