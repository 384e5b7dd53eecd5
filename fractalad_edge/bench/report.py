"""What a benchmark found: one :class:`ConfigResult` per runtime x precision, in a :class:`BenchReport`.

Failed rows are kept (a row that says why is more useful than a run that stopped). How a
report is shown lives beside it: :mod:`.render_markdown` (console table and report.md),
:mod:`.render_json` (report.json) and :mod:`.render_plot` (report.png);
:func:`write_reports` writes all three.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fractalad_edge.artifact import ParityReport, QuantizationReport
from fractalad_edge.bench.config import BenchConfig
from fractalad_edge.bench.flops import MacCount
from fractalad_edge.bench.latency import LatencyReport, ThroughputReport
from fractalad_edge.bench.memory import MemoryReport
from fractalad_edge.bench.memory_branch import MemoryBankSize
from fractalad_edge.bench.system import EnvironmentInfo
from fractalad_edge.evaluation import AccuracyReport

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
    accuracy: AccuracyReport | None = None  # on the real test set, through this configuration
    map_mean_abs_diff: float | None = None  # vs the reference's maps on the same test images
    map_max_abs_diff: float | None = None
    decisions_agree: float | None = None  # fraction of test images with the reference's decision
    latency: LatencyReport | None = None
    throughput: ThroughputReport | None = None
    async_throughput: ThroughputReport | None = None
    memory: MemoryReport | None = None
    gflops_per_second: float | None = None  # 2 * MACs / inference-stage p50
    memory_bank_mb: float | None = None  # memory/fused: the bank as the run's weights store it (rows x channels x dtype bytes)
    memory_macs: int | None = None  # memory/fused: MACs per image the memory branch adds (projection, search MatMul + norms, blur)
    speedup: float | None = None  # reference full p50 / this full p50
    parity: ParityReport | None = None  # the export's check against the torch model
    quantization: QuantizationReport | None = None  # int8: how it was calibrated, the accuracy gate's verdict
    backend: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if self.accuracy is not None:
            del data["accuracy"]["overlays"]  # the bench writes no overlays; report.json has never carried the key
        return data


def _plain(value: Any) -> Any:
    """A field as JSON-ready values: reports through their own ``to_dict``, others field by field."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


@dataclass(frozen=True, kw_only=True)
class ReportFiles:
    """The files :func:`write_reports` wrote."""

    markdown: str
    json: str
    png: str | None = None  # None: no configuration had both a latency and an accuracy to plot

    def paths(self) -> tuple[str, ...]:
        return (self.markdown, self.json) + (() if self.png is None else (self.png,))

    def to_dict(self) -> dict[str, str]:
        data = {"markdown": self.markdown, "json": self.json}
        if self.png is not None:
            data["png"] = self.png
        return data


@dataclass(frozen=True, kw_only=True)
class BenchReport:
    category: str
    run_dir: str
    data: str
    model: Mapping[str, Any]  # the run's architecture settings, as its metadata holds them
    input_size: int
    macs: MacCount | None
    test_images: int
    test_anomalous: int
    test_images_available: int  # in the test set; more than test_images in the short mode
    reference: str | None  # the row speedups and map differences are relative to
    config: BenchConfig
    environment: EnvironmentInfo
    results: tuple[ConfigResult, ...]
    seconds: float
    files: ReportFiles | None = None  # set by write_reports
    memory_bank: MemoryBankSize | None = None  # memory/fused runs: the bank as stored (None: fractalad)

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
            "macs": None if self.macs is None else self.macs.to_dict(),
            "test_images": self.test_images,
            "test_anomalous": self.test_anomalous,
            "test_images_available": self.test_images_available,
            "reference": self.reference,
            "config": self.config.to_dict(),
            "environment": self.environment.to_dict(),
            "results": [row.to_dict() for row in self.results],
            "seconds": self.seconds,
            "files": {} if self.files is None else self.files.to_dict(),
            "memory_bank": None if self.memory_bank is None else self.memory_bank.to_dict(),
        }


def write_reports(report: BenchReport, out: Path) -> BenchReport:
    """report.md, report.json and report.png in ``out``; returns the report with their paths."""
    from fractalad_edge.bench.render_json import write_json
    from fractalad_edge.bench.render_markdown import markdown_report
    from fractalad_edge.bench.render_plot import plot_report

    out.mkdir(parents=True, exist_ok=True)
    png = plot_report(report, out / "report.png")
    files = ReportFiles(markdown=str(out / "report.md"), json=str(out / "report.json"), png=None if png is None else str(png))
    report = dataclasses.replace(report, files=files)
    (out / "report.md").write_text(markdown_report(report))
    write_json(report, out / "report.json")
    return report
