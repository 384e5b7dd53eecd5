"""A benchmark report as text: the console table and the Markdown page (report.md).

The Markdown is meant to be read by people choosing a deployment: the numbers, the
machine, and how they were measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fractalad_edge.artifact import ParityReport, QuantizationReport
from fractalad_edge.bench.latency import ThroughputReport
from fractalad_edge.bench.report import OK, BenchReport, ConfigResult
from fractalad_edge.evaluation import AccuracyReport


def _pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _rate(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.1f} %"


def _ms(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def speedup_text(value: float) -> str:
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


def _gmacs(macs: int | None) -> str:
    """MACs in GMACs to three significant digits (a small memory search stays readable); ``-`` when not counted."""
    return "-" if macs is None else f"{macs / 1e9:.3g}"


def _accuracy_cells(accuracy: AccuracyReport | None) -> list[str]:
    """image AUROC, pixel AUROC, AUPRO, and F1 / false alarms at the artifact's own threshold."""
    if accuracy is None:
        return ["-"] * 5
    check = accuracy.calibrated
    return [
        _pct(accuracy.image_auroc), _pct(accuracy.pixel_auroc), _pct(accuracy.aupro),
        _pct(None if check is None else check.f1), _rate(None if check is None else check.false_alarm_rate),
    ]


#: relative p10-p90 spread of the full-path latency above which a row's timing is called noisy
NOISY_SPREAD = 0.5


def noisy_rows(report: BenchReport) -> list[ConfigResult]:
    """Working rows whose latency spread says the machine was not quiet while they were timed."""
    return [r for r in report.results if r.ok and r.latency is not None and r.latency.full.relative_spread > NOISY_SPREAD]


def summary_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """The headline table as strings: one row per configuration (failed ones say why)."""
    batch = report.config.throughput_batch
    header = [
        "config", "device", "status", "size MB", "image AUROC", "pixel AUROC", "AUPRO", "F1 @thr", "false alarms",
        "p50 ms (p10-p90)", "p99 ms", "speedup", f"img/s @{batch}", "RSS +MB", "GFLOP/s", "memory bank MB", "memory GMACs",
    ]
    rows = []
    for r in report.results:
        if not r.ok:
            rows.append([r.name, r.device, r.status] + ["-"] * (len(header) - 3))
            continue
        rows.append([
            r.name, r.device, r.status, _num(r.size_mb, 1), *_accuracy_cells(r.accuracy), _spread(r), _ms(None if r.latency is None else r.latency.full.p99_ms),
            "-" if r.speedup is None else speedup_text(r.speedup), _throughput(r.throughput), _memory(r), _num(r.gflops_per_second, 1),
            _num(r.memory_bank_mb, 2), _gmacs(r.memory_macs),
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


def _parity_cell(parity: ParityReport | None, quantized: bool) -> str:
    """Max map difference (tolerance) and the verdict; int8 parity is recorded, the quantization gate column judges it."""
    if parity is None:
        return "-"
    verdict = "pass" if parity.passed else "over (int8: see gate)" if quantized else "FAIL"
    return f"{parity.max_abs_diff:.2g} ({parity.tolerance:.2g}) {verdict}"


def _quantization_cell(quant: QuantizationReport | None) -> str:
    if quant is None:
        return "-"
    return (
        f"{quant.toolchain} {quant.mode}: pixel AUROC {100 * quant.float_pixel_auroc:.2f} -> {100 * quant.quantized_pixel_auroc:.2f} "
        f"({'pass' if quant.passed else 'FAIL'})"
    )


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def markdown_report(report: BenchReport) -> str:
    env = report.environment
    cfg = report.config
    macs = report.macs
    bank = report.memory_bank
    ok_rows = [r for r in report.results if r.ok]
    lines = [
        f"# Benchmark: {report.category or 'model'} on {env.cpu_model}",
        "",
        f"Model `{report.run_dir}` ({', '.join(f'{k}={v}' for k, v in report.model.items())}), "
        f"input {report.input_size} x {report.input_size}"
        + (f", {macs.gmacs:.2f} GMACs per image" if macs is not None and macs.gmacs else "")
        + (
            f"; memory bank {bank.rows} x {bank.channels} {bank.dtype} ({bank.mb:.2f} MB)"
            if bank is not None
            else ""
        )
        + f". Test set `{report.data}`: {report.test_images} images ({report.test_anomalous} anomalous)"
        + (
            f", an evenly spread subset of {report.test_images_available} (short mode: accuracy is indicative only)."
            if report.test_images < report.test_images_available
            else "."
        )
        + f" Device `{cfg.device}`, {env.date}.",
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
            graph_speedup = "-" if reference_row is None else speedup_text(reference_row.latency.inference.p50_ms / lat.inference.p50_ms)  # type: ignore[union-attr]
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
            memory_cell = "-" if r.memory is None else f"{r.memory.baseline_mb:.0f} / {r.memory.loaded_mb:.0f} / {r.memory.peak_mb:.0f}"
            diff_cell = "-" if r.map_mean_abs_diff is None else f"{r.map_mean_abs_diff:.2g} / {r.map_max_abs_diff:.2g}"
            rows.append([
                r.name, r.format, ("-" if r.artifact is None else f"`{r.artifact}`") + (" (reused)" if r.reused else ""),
                _parity_cell(r.parity, r.quantization is not None), diff_cell, _pct(r.decisions_agree, 1),
                _quantization_cell(r.quantization), memory_cell,
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
        f"- Threads: requested {cfg.threads or 'runtime defaults'}; torch.get_num_threads()={env.torch_threads}; "
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
        f"- Every configuration is loaded in one process and timed in {cfg.rounds} interleaved rounds "
        f"({cfg.runs} timed `predict` calls each in total, after {cfg.warmup} warm-up calls); "
        "in round r the configurations run in an order rotated by r, and each block starts with one untimed call, "
        "so a machine that drifts (heat, other jobs) affects all of them alike. Medians and p10-p90 are reported, "
        "p99 for the tail.",
        "- The stage split times the same work as `predict` with a clock between pre-process "
        "(resize to the input size, colour order, normalise), the runtime's inference, and post-process "
        "(image score, calibration, map resized back to the frame); one staged call follows each timed `predict`.",
        f"- Throughput: `predict_batch` on {cfg.throughput_batch} frames, interleaved the same way; "
        "OpenVINO rows also report its AsyncInferQueue with the THROUGHPUT hint (inference only).",
        "- Accuracy: every test image through the configuration's own predictor (`evaluation.evaluate_predictor`); "
        "image AUROC uses the artifact's score reduction, AUPRO integrates to 30 % FPR.",
        "- Memory: each configuration is loaded again in a fresh Python process; RSS is read after importing numpy, "
        "OpenCV and the Predictor (baseline), after loading (the runtime package's import counts) and at the "
        "high-water mark after 5 predictions. *RSS +MB* = peak - baseline. GPU memory is not included.",
        "- GFLOP/s = 2 x MACs per image / inference-stage p50. MACs are counted on the torch model with forward "
        "hooks on convolutions and linear layers (element-wise work, resizing and grid_sample are not counted).",
        "- Model size: the files listed in the artifact's metadata.json.",
        "- Memory bank MB (`memory` and `fused` models): rows x channels x bytes of the stored dtype of the bank in the "
        "run's weights file (its safetensors header), which every export is made from. Memory GMACs: what the memory "
        "branch adds per image (channel projection, the search's MatMul and norms, the blur), counted like the rest; "
        "`-` for `fractalad` models.",
    ]
    return "\n".join(lines) + "\n"


__all__ = ["NOISY_SPREAD", "console_table", "markdown_report", "noisy_rows", "speedup_text", "summary_rows"]
