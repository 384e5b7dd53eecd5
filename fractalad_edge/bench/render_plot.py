"""A benchmark report as a PNG (report.png): the latency/accuracy trade-off at a glance."""

from __future__ import annotations

import math
from pathlib import Path

from fractalad_edge.bench.render_markdown import speedup_text
from fractalad_edge.bench.report import BenchReport


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

    measured = [(r, r.accuracy) for r in report.results if r.ok and r.latency is not None and r.accuracy is not None]
    use_pixel = any(math.isfinite(accuracy.pixel_auroc) for _, accuracy in measured)
    label = "pixel AUROC (%)" if use_pixel else "image AUROC (%)"
    points = [(r, accuracy.pixel_auroc if use_pixel else accuracy.image_auroc) for r, accuracy in measured]
    points = [(r, value) for r, value in points if math.isfinite(value)]
    if not points:
        return None
    rows = [r for r, _ in points]
    x = [r.latency.full.p50_ms for r in rows]  # type: ignore[union-attr]
    y = [100 * value for _, value in points]
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
            text += f"  {speedup_text(r.speedup)}"
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
    threads = report.config.threads or "default"
    ax.set_title(
        f"FractalAD {report.category or ''}: accuracy vs latency\n{env.short_cpu}, {env.usable_cpus} CPUs, threads: {threads}, device {report.config.device}",
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


__all__ = ["plot_report"]
