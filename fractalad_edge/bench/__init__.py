"""Benchmarks: accuracy on a real test set and latency/throughput/memory per runtime x precision.

``run_bench`` (in :mod:`.matrix`) is what ``fractalad-edge bench`` calls; accuracy comes
from :mod:`fractalad_edge.evaluation`, the one evaluation path every runtime shares.
Submodules are imported on first use.
"""

from __future__ import annotations

from fractalad_edge._lazy import lazy_exports

_LAZY = {
    "BenchConfig": "fractalad_edge.bench.config",
    "run_bench": "fractalad_edge.bench.matrix",
    "BenchReport": "fractalad_edge.bench.report",
    "ConfigResult": "fractalad_edge.bench.report",
    "LatencyStats": "fractalad_edge.bench.latency",
    "MacCount": "fractalad_edge.bench.flops",
    "count_macs": "fractalad_edge.bench.flops",
    "EnvironmentInfo": "fractalad_edge.bench.system",
    "capture_environment": "fractalad_edge.bench.system",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = sorted(_LAZY)
