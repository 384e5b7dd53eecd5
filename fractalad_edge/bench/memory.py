"""Peak resident memory of one configuration, measured in a fresh process.

In the benchmark process every runtime is loaded at once, so its RSS says nothing about
what one deployment needs. Each configuration is therefore loaded in its own child
process: the child records its RSS after importing only what every deployment imports
(numpy, OpenCV, the Predictor), then loads the model with its runtime (importing the
runtime package counts: a device that runs torch pays for torch), runs a few predictions
and reports its peak RSS (the kernel's high-water mark). The increase over the baseline is
the configuration's cost; GPU memory is not included.

Run as ``python -m fractalad_edge.bench.memory <model dir> <frame.png> <json options>``;
prints one JSON line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")


@dataclass(frozen=True, kw_only=True)
class MemoryReport:
    baseline_mb: float  # python + numpy + OpenCV + fractalad_edge.predictor
    loaded_mb: float  # after Predictor.load (runtime imported, model compiled)
    peak_mb: float  # high-water mark after the predictions
    increase_mb: float  # peak - baseline: what this configuration costs
    predictions: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class _ProbeRequest:
    """What the child process loads and runs; crosses the process boundary as one JSON argument."""

    runtime: str
    device: str
    options: dict[str, Any]
    predictions: int


def _status_mb(key: str) -> float | None:
    """VmRSS / VmHWM from /proc (Linux); None elsewhere."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def _rss_mb() -> float:
    current = _status_mb("VmRSS")
    return current if current is not None else _peak_mb()


def _peak_mb() -> float:
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    import resource  # Unix only; imported here so Windows can still read benchmark reports

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else maxrss / 1024.0  # bytes on macOS, KiB on Linux


def measure_memory(
    directory: Path,
    frame_path: Path,
    *,
    runtime: str,
    device: str = "cpu",
    options: dict[str, Any] | None = None,
    predictions: int = 5,
    timeout_s: float = 300.0,
) -> MemoryReport:
    """Load ``directory`` with ``runtime`` in a child process and report its memory (see module doc)."""
    request = _ProbeRequest(runtime=runtime, device=device, options=options or {}, predictions=predictions)
    completed = subprocess.run(
        [sys.executable, "-m", "fractalad_edge.bench.memory", str(directory), str(frame_path), json.dumps(asdict(request))],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        msg = f"memory probe for {directory} ({runtime}) exited with {completed.returncode}: {tail}"
        raise RuntimeError(msg)
    return MemoryReport(**json.loads(lines[-1]))


def _child(argv: list[str]) -> None:
    directory, frame_path, request = Path(argv[0]), Path(argv[1]), _ProbeRequest(**json.loads(argv[2]))
    import cv2  # noqa: F401 - part of the baseline every deployment pays
    import numpy as np  # noqa: F401

    from fractalad_edge.data.images import read_image_bgr
    from fractalad_edge.predictor import Predictor

    frame = read_image_bgr(frame_path)
    baseline = _rss_mb()
    predictor = Predictor.load(directory, runtime=request.runtime, device=request.device, **request.options)
    loaded = _rss_mb()
    for _ in range(request.predictions):
        predictor.predict(frame)
    peak = _peak_mb()
    report = MemoryReport(
        baseline_mb=baseline, loaded_mb=loaded, peak_mb=peak, increase_mb=peak - baseline, predictions=request.predictions
    )
    print(json.dumps(report.to_dict()), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1:])
