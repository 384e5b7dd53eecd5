"""What a benchmark measures and how long it times it: :class:`BenchConfig`.

Its own module so the report (:mod:`.report`) can carry the configuration it was run
with, typed, without importing the driver (:mod:`.matrix`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fractalad_edge.artifact import Precision
from fractalad_edge.bench.defaults import DEFAULT_PRECISIONS, DEFAULT_ROUNDS, DEFAULT_RUNS, DEFAULT_RUNTIMES, DEFAULT_WARMUP
from fractalad_edge.bench.latency import round_sizes
from fractalad_edge.errors import ConfigError
from fractalad_edge.runtimes.base import RUNTIMES


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """What to benchmark and how long to time it.

    ``runs`` timed ``predict`` calls per configuration are split into ``rounds``
    interleaved rounds. ``threads`` caps every runtime's intra-op threads (None: each
    runtime's default). ``max_test_images`` evaluates accuracy on an evenly spread subset
    (a short mode for smoke runs; published numbers use the whole test set).
    """

    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    precisions: tuple[Precision, ...] = tuple(Precision(p) for p in DEFAULT_PRECISIONS)
    warmup: int = DEFAULT_WARMUP
    runs: int = DEFAULT_RUNS
    rounds: int = DEFAULT_ROUNDS
    throughput_batch: int = 8
    threads: int | None = None
    device: str = "cpu"
    calib_data: Path | None = None
    max_test_images: int | None = None
    #: synthetic calibration images per export (None: the exporter's default, 64); fewer for smoke runs
    calib_count: int | None = None
    #: keep an int8 model that fails the export's accuracy gate, so its speed and real-test
    #: accuracy are still measured; the row shows the gate's verdict
    allow_accuracy_drop: bool = True
    memory: bool = True  # peak RSS per configuration, each in a fresh process
    async_throughput: bool = True  # through the runtime's own async queue where it has one (OpenVINO: THROUGHPUT hint)

    def __post_init__(self) -> None:
        runtimes = tuple(self.runtimes)
        if not runtimes:
            msg = f"choose at least one runtime; available: {', '.join(RUNTIMES)}"
            raise ConfigError(msg)
        unknown = [name for name in runtimes if name not in RUNTIMES]
        if unknown:
            msg = f"unknown runtime(s) {unknown}; choose from {', '.join(RUNTIMES)}"
            raise ConfigError(msg)
        if len(set(runtimes)) != len(runtimes):
            msg = f"runtimes are listed twice: {list(runtimes)}; list each once"
            raise ConfigError(msg)
        precisions = []
        for value in self.precisions:
            try:
                precisions.append(Precision(value))
            except ValueError:
                msg = f"unknown precision {value!r}; choose from {', '.join(p.value for p in Precision)}"
                raise ConfigError(msg) from None
        if not precisions or len(set(precisions)) != len(precisions):
            msg = f"choose each precision once and at least one, got {list(self.precisions)}"
            raise ConfigError(msg)
        object.__setattr__(self, "runtimes", runtimes)
        object.__setattr__(self, "precisions", tuple(precisions))
        for name in ("warmup", "runs", "rounds", "throughput_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                msg = f"{name} must be an int, got {value!r}"
                raise ConfigError(msg)
        if self.warmup < 0:
            msg = f"warmup must be >= 0, got {self.warmup}"
            raise ConfigError(msg)
        round_sizes(self.runs, self.rounds)  # runs >= rounds >= 1, with its own message
        if self.throughput_batch < 1:
            msg = f"throughput_batch must be >= 1, got {self.throughput_batch}"
            raise ConfigError(msg)
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1):
            msg = f"threads must be None (runtime defaults) or an int >= 1, got {self.threads!r}"
            raise ConfigError(msg)
        if not isinstance(self.device, str) or self.device.split(":")[0].lower() not in ("cpu", "cuda"):
            msg = f"device must be 'cpu' or 'cuda' (optionally 'cuda:N'), got {self.device!r}"
            raise ConfigError(msg)
        if self.calib_data is not None:
            object.__setattr__(self, "calib_data", Path(self.calib_data))
        if self.calib_count is not None and (isinstance(self.calib_count, bool) or not isinstance(self.calib_count, int) or self.calib_count < 4):
            msg = f"calib_count must be None (the exporter's default) or an int >= 4, got {self.calib_count!r}"
            raise ConfigError(msg)
        if self.max_test_images is not None and (isinstance(self.max_test_images, bool) or not isinstance(self.max_test_images, int) or self.max_test_images < 2):
            msg = f"max_test_images must be None (all) or an int >= 2 (one good and one defective at least), got {self.max_test_images!r}"
            raise ConfigError(msg)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["precisions"] = [p.value for p in self.precisions]
        data["runtimes"] = list(self.runtimes)
        data["calib_data"] = None if self.calib_data is None else str(self.calib_data)
        return data


__all__ = ["BenchConfig"]
