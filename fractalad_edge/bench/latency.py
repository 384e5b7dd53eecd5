"""Latency and throughput measured so that a drifting machine cannot favour one configuration.

All configurations live in one process and are timed in interleaved rounds: in round ``r``
every configuration runs its share of the iterations, in an order rotated by ``r``. Thermal
throttling, a noisy neighbour or a background job then lands on every configuration alike
instead of on whichever happened to run last. Each block starts with untimed calls so the
previous configuration's thread pools and caches do not bill the next one. Statistics are
order statistics (median, p10-p90, p99), never a mean alone: latency distributions have
long right tails.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np

from fractalad_edge.errors import ConfigError
from fractalad_edge.predictor import Predictor
from fractalad_edge.preprocess import prepare_batch

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class LatencyStats:
    """Order statistics of one timing series, in milliseconds."""

    count: int
    p10_ms: float
    p25_ms: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    samples_ms: tuple[float, ...] = ()  # every timing in run order, for re-analysis from report.json

    @classmethod
    def from_seconds(cls, samples: Sequence[float]) -> LatencyStats:
        values = np.asarray(samples, dtype=np.float64) * 1e3
        if values.size == 0 or not np.all(np.isfinite(values)):
            msg = f"need at least one finite timing to summarise, got {values.size} values"
            raise ConfigError(msg)
        p10, p25, p50, p75, p90, p99 = np.percentile(values, [10, 25, 50, 75, 90, 99])
        return cls(
            count=int(values.size), p10_ms=float(p10), p25_ms=float(p25), p50_ms=float(p50), p75_ms=float(p75),
            p90_ms=float(p90), p99_ms=float(p99), mean_ms=float(values.mean()), min_ms=float(values.min()),
            max_ms=float(values.max()), samples_ms=tuple(round(float(v), 4) for v in values),
        )

    @property
    def iqr_ms(self) -> float:
        return self.p75_ms - self.p25_ms

    @property
    def relative_spread(self) -> float:
        """(p90 - p10) / p50: how noisy the series was; above ~0.2 the machine was busy."""
        return (self.p90_ms - self.p10_ms) / self.p50_ms if self.p50_ms > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        samples = data.pop("samples_ms")
        return {**data, "iqr_ms": self.iqr_ms, "relative_spread": self.relative_spread, "samples_ms": list(samples)}


@dataclass(frozen=True, kw_only=True)
class LatencyReport:
    """Batch-1 latency through ``Predictor.predict`` and its three stages, timed separately."""

    full: LatencyStats  # Predictor.predict(frame) end to end
    preprocess: LatencyStats  # resize + colour order + normalise (prepare_batch)
    inference: LatencyStats  # the backend's graph only
    postprocess: LatencyStats  # score, calibration, map resized to the frame

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).to_dict() for name in ("full", "preprocess", "inference", "postprocess")}


@dataclass(frozen=True, kw_only=True)
class ThroughputReport:
    """Images per second when frames arrive in batches (or through an async queue)."""

    batch: int
    images_per_second: float  # batch / median batch time
    images_per_second_p10: float  # at the p90 (slow) batch time
    images_per_second_p90: float  # at the p10 (fast) batch time
    batches: int
    method: str  # "predict_batch" or "openvino-async(THROUGHPUT)"
    requests: int = 1  # inference requests in flight (OpenVINO's choice for the THROUGHPUT hint)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def round_sizes(runs: int, rounds: int) -> list[int]:
    """Split ``runs`` timed iterations over ``rounds`` as evenly as possible (sums to ``runs``)."""
    if runs < 1 or rounds < 1 or rounds > runs:
        msg = f"need runs >= rounds >= 1, got runs={runs}, rounds={rounds}; lower --rounds or raise --runs"
        raise ConfigError(msg)
    base, extra = divmod(runs, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def interleaved_rounds(
    tasks: Mapping[str, Callable[[], T]],
    *,
    runs: int,
    rounds: int,
    warmup: int,
    settle: int = 1,
    on_round: Callable[[int, int], None] | None = None,
) -> dict[str, list[T]]:
    """Run every task ``runs`` times in ``rounds`` rotated rounds; returns each task's results in order.

    ``warmup`` untimed calls per task come first (one task after the other: first-call
    compilation, allocator growth); ``settle`` untimed calls open every block. A task
    returns its own measurement (a duration, or a tuple of stage durations), so timing
    stays inside the task, around exactly what it measures.
    """
    if warmup < 0 or settle < 0:
        msg = f"warmup and settle must be >= 0, got warmup={warmup}, settle={settle}"
        raise ConfigError(msg)
    sizes = round_sizes(runs, rounds)
    names = list(tasks)
    results: dict[str, list[T]] = {name: [] for name in names}
    for name in names:
        for _ in range(warmup):
            tasks[name]()
    for index, size in enumerate(sizes):
        shift = index % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            task = tasks[name]
            for _ in range(settle):
                task()
            results[name].extend(task() for _ in range(size))
        if on_round is not None:
            on_round(index + 1, len(sizes))
    return results


class PredictorTimer:
    """Timed calls on one predictor: the full path, its stages, and a batch."""

    def __init__(self, predictor: Predictor, frame: np.ndarray, batch_frames: Sequence[np.ndarray]) -> None:
        self.predictor = predictor
        self.frame = frame
        self.batch_frames = list(batch_frames)

    def full(self) -> float:
        started = time.perf_counter()
        self.predictor.predict(self.frame)
        return time.perf_counter() - started

    def stages(self) -> tuple[float, float, float]:
        """The same work as ``predict``, with a clock between the stages."""
        predictor = self.predictor
        t0 = time.perf_counter()
        batch, sizes = prepare_batch([self.frame], predictor.metadata.input, channel_order=predictor.channel_order)
        t1 = time.perf_counter()
        maps = predictor.backend.infer(batch)
        t2 = time.perf_counter()
        predictor.results_from_maps(maps, sizes)
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    def full_and_stages(self) -> tuple[float, float, float, float]:
        """One timed ``predict`` and one staged call: both series see the same machine state."""
        return (self.full(), *self.stages())

    def batch(self) -> float:
        started = time.perf_counter()
        self.predictor.predict_batch(self.batch_frames)
        return time.perf_counter() - started


def latency_report(samples: Sequence[tuple[float, float, float, float]]) -> LatencyReport:
    columns = list(zip(*samples))
    return LatencyReport(
        full=LatencyStats.from_seconds(columns[0]),
        preprocess=LatencyStats.from_seconds(columns[1]),
        inference=LatencyStats.from_seconds(columns[2]),
        postprocess=LatencyStats.from_seconds(columns[3]),
    )


def throughput_report(batch_seconds: Sequence[float], batch: int, *, method: str = "predict_batch") -> ThroughputReport:
    stats = LatencyStats.from_seconds(batch_seconds)
    return ThroughputReport(
        batch=batch,
        images_per_second=batch / (stats.p50_ms / 1e3),
        images_per_second_p10=batch / (stats.p90_ms / 1e3),
        images_per_second_p90=batch / (stats.p10_ms / 1e3),
        batches=stats.count,
        method=method,
    )


def async_throughput(rates: Sequence[float], *, frames_per_pass: int, requests: int, method: str) -> ThroughputReport:
    """A throughput row from the images/s of several passes of ``frames_per_pass`` frames through an async queue."""
    ordered = sorted(rates)
    return ThroughputReport(
        batch=1,
        images_per_second=float(np.median(ordered)),
        images_per_second_p10=ordered[0],
        images_per_second_p90=ordered[-1],
        batches=frames_per_pass * len(ordered),
        method=method,
        requests=requests,
    )
