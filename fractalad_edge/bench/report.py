"""What a benchmark found, and how it is shown: console table, Markdown, JSON and a PNG.

One :class:`ConfigResult` per runtime x precision row, failed ones included (a row that
says why is more useful than a run that stopped). The Markdown is meant to be read by
people choosing a deployment: the numbers, the machine, and how they were measured; the
JSON holds everything for scripts; the PNG shows the latency/accuracy trade-off at a
glance.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
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


# ---------------------------------------------------------------------------- formatting
def _pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _rate(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{100 * value:.1f} %"


def _ms(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _ratio(value: float) -> str:
    """A speedup with two significant digits: 0.15x, 2.5x, 12x."""
    return f"{value:.0f}x" if value >= 10 else f"{value:.1f}x" if value >= 1 else f"{value:.2f}x"


def _spread(row: ConfigResult) -> str:
    if row.latency is None:
        return "-"
    full = row.latency.full
    return f"{_ms(full.p50_ms)} ({_ms(full.p10_ms)}-{_ms(full.p90_ms)})"


def _throughput(report: ThroughputReport | None) -> str:
    return "-" if report is None else _num(report.images_per_second, 1)


def _memory(row: ConfigResult) -> str:
    return "-" if row.memory is None else _num(row.memory.increase_mb, 0)


#: relative p10-p90 spread of the full-path latency above which a row's timing is called noisy
NOISY_SPREAD = 0.5


def noisy_rows(report: BenchReport) -> list[ConfigResult]:
    """Working rows whose latency spread says the machine was not quiet while they were timed."""
    return [r for r in report.results if r.ok and r.latency is not None and r.latency.full.relative_spread > NOISY_SPREAD]


def summary_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """The headline table as strings: one row per configuration (failed ones say why)."""
    batch = report.config.get("throughput_batch", "")
    header = [
        "config", "device", "status", "size MB", "image AUROC", "pixel AUROC", "AUPRO", "F1 @thr", "false alarms",
        "p50 ms (p10-p90)", "p99 ms", "speedup", f"img/s @{batch}", "RSS +MB", "GFLOP/s",
    ]
    rows = []
    for r in report.results:
        if not r.ok:
            rows.append([r.name, r.device, r.status] + ["-"] * (len(header) - 3))
            continue
        rows.append([
            r.name, r.device, r.status, _num(r.size_mb, 1), _pct(r.metric("image_auroc")), _pct(r.metric("pixel_auroc")),
            _pct(r.metric("aupro")), _pct(r.calibrated("f1")), _rate(r.calibrated("false_alarm_rate")),
            _spread(r), _ms(None if r.latency is None else r.latency.full.p99_ms),
            "-" if r.speedup is None else _ratio(r.speedup), _throughput(r.throughput), _memory(r), _num(r.gflops_per_second, 1),
        ])
    return header, rows


def console_table(report: BenchReport) -> str:
    """A fixed-width table for the terminal; why a row failed or was skipped follows the table."""
    header, rows = summary_rows(report)
    reasons = [f"  {row[0]}: {row[2]}" for row in rows if row[2] != OK]
    rows = [[*row[:2], row[2].split(":")[0], *row[3:]] for row in rows]
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) if rows else len(header[i]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    noisy = noisy_rows(report)
    if noisy:
        reasons.append(
            f"  noisy timing ((p90-p10)/p50 > {NOISY_SPREAD:g}) for {', '.join(r.name for r in noisy)}: the machine was busy"
        )
    return "\n".join(lines + reasons)


def _md_cell(cell: str) -> str:
    return str(cell).replace("|", "\\|").replace("\n", " ")


def _parity_verdict(passed: bool, quantized: bool) -> str:
    """int8 parity is recorded, not enforced: the quantization gate column judges it."""
    if passed:
        return "pass"
    return "over (int8: see gate)" if quantized else "FAIL"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def markdown_report(report: BenchReport) -> str:
    env = report.environment
    cfg = report.config
    macs = report.macs or {}
    ok_rows = [r for r in report.results if r.ok]
    lines = [
        f"# Benchmark: {report.category or 'model'} on {env.cpu_model}",
        "",
        f"Model `{report.run_dir}` ({', '.join(f'{k}={v}' for k, v in report.model.items())}), "
        f"input {report.input_size} x {report.input_size}"
        + (f", {macs['gmacs']:.2f} GMACs per image" if macs.get("gmacs") else "")
        + f". Test set `{report.data}`: {report.test_images} images ({report.test_anomalous} anomalous)"
        + (
            f", an evenly spread subset of {report.test_images_available} (short mode: accuracy is indicative only)."
            if report.test_images < report.test_images_available
            else "."
        )
        + f" Device `{cfg.get('device')}`, {env.date}.",
        "",
        "## Results",
        "",
        "Accuracy in %, on the real test set, through each runtime. *F1 @thr* and *false alarms* use the threshold "
        "the artifact carries (fitted without real defects). Latency is batch 1 through `Predictor.predict` "
        "(pre-process + inference + post-process) on one frame at its stored size; speedup is relative to "
        f"`{report.reference or '-'}` in this same run.",
        "",
    ]
    lines += _md_table(*summary_rows(report))
    noisy = noisy_rows(report)
    if noisy:
        lines += [
            "",
            f"**Timing was noisy** ((p90 - p10) / p50 above {NOISY_SPREAD:g} for "
            + ", ".join(f"`{r.name}` {r.latency.full.relative_spread:.2f}" for r in noisy)  # type: ignore[union-attr]
            + "): the machine was busy or oversubscribed. Medians still compare within this run; for absolute "
            "numbers rerun on an idle machine, or cap threads (`threads`) below the number of free cores.",
        ]
    if ok_rows:
        lines += ["", "## Where the time goes", "", "Median ms per stage at batch 1 (p10-p90 of inference in brackets), timed separately in the same rounds. "
            "*Inference speedup* compares the graph alone (teacher + student + CSAM + head) with the reference's; "
            "pre- and post-processing are the same numpy/OpenCV code for every runtime.", ""]
        header = ["config", "pre-process", "inference", "inference speedup", "post-process", "stages sum", "full predict", "async img/s", "load s"]
        reference_row = next((r for r in ok_rows if r.name == report.reference and r.latency is not None), None)
        rows = []
        for r in ok_rows:
            lat = r.latency
            if lat is None:
                continue
            stages = lat.preprocess.p50_ms + lat.inference.p50_ms + lat.postprocess.p50_ms
            graph_speedup = "-" if reference_row is None else _ratio(reference_row.latency.inference.p50_ms / lat.inference.p50_ms)  # type: ignore[union-attr]
            rows.append([
                r.name, _ms(lat.preprocess.p50_ms), f"{_ms(lat.inference.p50_ms)} ({_ms(lat.inference.p10_ms)}-{_ms(lat.inference.p90_ms)})",
                graph_speedup, _ms(lat.postprocess.p50_ms), _ms(stages), _ms(lat.full.p50_ms),
                "-" if r.async_throughput is None else f"{r.async_throughput.images_per_second:.1f} ({r.async_throughput.requests} requests)",
                _num(r.load_seconds, 2),
            ])
        lines += _md_table(header, rows)
        lines += ["", "## Export, parity and memory", ""]
        header = ["config", "format", "artifact", "parity max abs diff (tol)", "map diff vs reference on test (mean / max)", "same decisions (%)", "quantization gate", "RSS baseline / loaded / peak MB"]
        rows = []
        for r in ok_rows:
            parity = r.parity
            parity_cell = "-" if parity is None else f"{parity['max_abs_diff']:.2g} ({parity['tolerance']:.2g}) {_parity_verdict(parity['passed'], r.quantization is not None)}"
            quant = r.quantization
            quant_cell = "-" if quant is None else (
                f"{quant['toolchain']} {quant['mode']}: pixel AUROC {100 * quant['float_pixel_auroc']:.2f} -> {100 * quant['quantized_pixel_auroc']:.2f} "
                f"({'pass' if quant['passed'] else 'FAIL'})"
            )
            memory_cell = "-" if r.memory is None else f"{r.memory.baseline_mb:.0f} / {r.memory.loaded_mb:.0f} / {r.memory.peak_mb:.0f}"
            diff_cell = "-" if r.map_mean_abs_diff is None else f"{r.map_mean_abs_diff:.2g} / {r.map_max_abs_diff:.2g}"
            rows.append([
                r.name, r.format, ("-" if r.artifact is None else f"`{r.artifact}`") + (" (reused)" if r.reused else ""), parity_cell, diff_cell,
                _pct(r.decisions_agree, 1), quant_cell, memory_cell,
            ])
        lines += _md_table(header, rows)
    notes = [f"- `{r.name}`: {note}" for r in report.results for note in r.notes]
    if notes:
        lines += ["", "## Notes per configuration", "", *notes]
    lines += ["", "## Environment", ""]
    settings = [f"  - `{r.name}`: " + ", ".join(f"{k}={v}" for k, v in r.backend.items() if k != "runtime") for r in ok_rows if r.backend]
    lines += [
        f"- CPU: {env.cpu_model}; {env.usable_cpus} usable of {env.logical_cpus} logical CPUs"
        + (f"; container quota {env.cpu_quota:g} cores" if env.cpu_quota else "")
        + (f"; {env.memory_total_mb / 1024:.1f} GiB RAM" if env.memory_total_mb else ""),
        f"- GPU: {env.gpu or 'none used'}",
        f"- Threads: requested {cfg.get('threads') or 'runtime defaults'}; torch.get_num_threads()={env.torch_threads}; "
        f"environment {', '.join(f'{k}={v}' for k, v in env.thread_env.items()) or 'no thread variables set'}",
        f"- malloc: {env.malloc}",
        "- Runtime settings (as each backend reports them):" + ("" if settings else " -"),
        *settings,
        f"- Packages: {', '.join(f'{k} {v}' for k, v in env.packages.items())}",
        f"- Platform: {env.platform}, Python {env.python}",
        f"- Bench: {report.seconds:.0f} s in total",
        *[f"- {note}" for note in env.notes],
    ]
    lines += ["", "## How this was measured", ""]
    lines += [
        f"- Every configuration is loaded in one process and timed in {cfg.get('rounds')} interleaved rounds "
        f"({cfg.get('runs')} timed `predict` calls each in total, after {cfg.get('warmup')} warm-up calls); "
        "in round r the configurations run in an order rotated by r, and each block starts with one untimed call, "
        "so a machine that drifts (heat, other jobs) affects all of them alike. Medians and p10-p90 are reported, "
        "p99 for the tail.",
        "- The stage split times the same work as `predict` with a clock between pre-process "
        "(resize to the input size, colour order, normalise), the runtime's inference, and post-process "
        "(image score, calibration, map resized back to the frame); one staged call follows each timed `predict`.",
        f"- Throughput: `predict_batch` on {cfg.get('throughput_batch')} frames, interleaved the same way; "
        "OpenVINO rows also report its AsyncInferQueue with the THROUGHPUT hint (inference only).",
        "- Accuracy: every test image through the configuration's own predictor (`evaluation.evaluate_predictor`); "
        "image AUROC uses the artifact's score reduction, AUPRO integrates to 30 % FPR.",
        "- Memory: each configuration is loaded again in a fresh Python process; RSS is read after importing numpy, "
        "OpenCV and the Predictor (baseline), after loading (the runtime package's import counts) and at the "
        "high-water mark after 5 predictions. *RSS +MB* = peak - baseline. GPU memory is not included.",
        "- GFLOP/s = 2 x MACs per image / inference-stage p50. MACs are counted on the torch model with forward "
        "hooks on convolutions and linear layers (element-wise work, resizing and grid_sample are not counted).",
        "- Model size: the files listed in the artifact's metadata.json.",
    ]
    return "\n".join(lines) + "\n"


def write_json(report: BenchReport, path: Path) -> Path:
    def default(value: Any) -> Any:
        if hasattr(value, "to_dict"):
            return value.to_dict()
        if isinstance(value, Path):
            return str(value)
        if hasattr(value, "item"):  # numpy scalars
            return value.item()
        if hasattr(value, "value"):  # enums
            return value.value
        msg = f"cannot serialise {type(value).__name__}"
        raise TypeError(msg)

    def clean(value: Any) -> Any:
        # JSON has no NaN; null says "not measured" to any reader.
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(json.loads(json.dumps(report.to_dict(), default=default))), indent=2) + "\n")
    return path


_RUNTIME_COLOURS = {"torch": "#d62728", "onnxruntime": "#1f77b4", "openvino": "#6a3d9a", "tensorrt": "#2ca02c"}
_PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "bf16": "D", "int8": "^"}


def plot_report(report: BenchReport, path: Path) -> Path | None:
    """Latency (x) against pixel AUROC (y), one labelled point per working configuration.

    Falls back to image AUROC on the y axis when the test set has no masks. Returns None
    (and writes nothing) when no configuration produced both numbers.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [r for r in report.results if r.ok and r.latency is not None]
    use_pixel = any(math.isfinite(r.metric("pixel_auroc")) for r in rows)
    key, label = ("pixel_auroc", "pixel AUROC (%)") if use_pixel else ("image_auroc", "image AUROC (%)")
    rows = [r for r in rows if math.isfinite(r.metric(key))]
    if not rows:
        return None
    x = [r.latency.full.p50_ms for r in rows]  # type: ignore[union-attr]
    y = [100 * r.metric(key) for r in rows]
    lo = [r.latency.full.p50_ms - r.latency.full.p10_ms for r in rows]  # type: ignore[union-attr]
    hi = [r.latency.full.p90_ms - r.latency.full.p50_ms for r in rows]  # type: ignore[union-attr]

    fig, ax = plt.subplots(figsize=(8.0, 5.2), dpi=130)
    for r, xi, yi, l, h in zip(rows, x, y, lo, hi):
        colour = _RUNTIME_COLOURS.get(r.runtime, "#444444")
        ax.errorbar(
            xi, yi, xerr=[[l], [h]], fmt=_PRECISION_MARKERS.get(r.precision, "o"), color=colour, ecolor=colour,
            elinewidth=1.2, capsize=4, markersize=9, markeredgecolor="white", markeredgewidth=0.8, zorder=3,
        )
    # Labels: four alternating lines (above, below, further above, further below) so that
    # neighbours in latency never print on the same line.
    order = sorted(range(len(rows)), key=lambda i: x[i])
    for rank, i in enumerate(order):
        r = rows[i]
        text = f"{r.runtime} {r.precision}" + ("" if r.device == "cpu" else f" ({r.device})")
        if r.speedup is not None and r.name != report.reference:
            text += f"  {_ratio(r.speedup)}"
        dy = (11, -17, 25, -31)[rank % 4]
        ax.annotate(text, (x[i], y[i]), textcoords="offset points", xytext=(6, dy), fontsize=9, color=_RUNTIME_COLOURS.get(r.runtime, "#444444"))

    span = max(x) / min(x) if min(x) > 0 else 1.0
    if span > 4:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    x_lo, x_hi = min(xi - l for xi, l in zip(x, lo)), max(xi + h for xi, h in zip(x, hi))
    if span > 4:  # room for the labels, which sit to the right of each point
        ax.set_xlim(x_lo / 1.3, x_hi * 1.8)
    else:
        pad = (x_hi - x_lo) * 0.15 or max(x) * 0.2
        ax.set_xlim(max(x_lo - pad, 0.0), x_hi + pad * 2.5)
    y_lo, y_hi = min(y), max(y)
    y_pad = max((y_hi - y_lo) * 0.25, 0.5)
    ax.set_ylim(y_lo - y_pad, min(100.0 + y_pad * 0.2, y_hi + y_pad) if y_hi <= 100 else y_hi + y_pad)
    ax.grid(True, which="both", alpha=0.25)
    ax.set_xlabel("latency per frame, batch 1, median ms (bars: p10-p90)" + ("  [log scale]" if span > 4 else ""))
    ax.set_ylabel(label)
    env = report.environment
    threads = report.config.get("threads") or "default"
    ax.set_title(
        f"FractalAD {report.category or ''}: accuracy vs latency\n{env.short_cpu}, {env.usable_cpus} CPUs, threads: {threads}, device {report.config.get('device')}",
        fontsize=11,
    )
    failed = [r.name for r in report.results if not r.ok]
    if failed:
        fig.text(0.01, 0.01, "not shown (failed/skipped): " + ", ".join(failed), fontsize=7.5, color="#777777")
    # Legend for precision markers only; runtime is in each label's colour.
    from matplotlib.lines import Line2D

    known = list(_PRECISION_MARKERS)
    precisions = sorted({r.precision for r in rows}, key=lambda p: known.index(p) if p in known else len(known))
    handles = [Line2D([], [], linestyle="", marker=_PRECISION_MARKERS.get(p, "o"), color="#555555", markersize=8, label=p) for p in precisions]
    ax.legend(handles=handles, title="precision", loc="lower right", fontsize=8, title_fontsize=8, framealpha=0.85)
    fig.tight_layout(rect=(0, 0.03 if failed else 0, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def write_reports(report: BenchReport, out: Path) -> BenchReport:
    """report.md, report.json and report.png in ``out``; returns the report with their paths."""
    import dataclasses

    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": str(out / "report.md"), "json": str(out / "report.json")}
    png = plot_report(report, out / "report.png")
    if png is not None:
        files["png"] = str(png)
    report = dataclasses.replace(report, files=files)
    (out / "report.md").write_text(markdown_report(report))
    write_json(report, out / "report.json")
    return report
