"""Benchmarks: accuracy on a real test set and latency/throughput/memory per runtime x precision.

``run_bench`` (in :mod:`.matrix`) is what ``fractalad-edge bench`` calls; accuracy comes
from :mod:`fractalad_edge.evaluation`, the one evaluation path every runtime shares.
Submodules are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = sorted(_LAZY)
