"""A benchmark report as JSON (report.json): everything, for scripts; NaN becomes null."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fractalad_edge.bench.report import BenchReport


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


__all__ = ["write_json"]
