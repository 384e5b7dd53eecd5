"""One command for the latency x accuracy matrix: every runtime x precision on one machine.

For each configuration the driver exports the training run to that runtime's natural
format (or reuses an earlier export of the same weights), measures accuracy on the real
test set through that runtime, then times every configuration together in one process in
interleaved rounds (see :mod:`.latency`), measures each one's memory in a fresh process
(see :mod:`.memory`) and writes report.md / report.json / report.png. A configuration that
cannot be built or run becomes a row that says why; the others still complete.

```python
from fractalad_edge.bench import BenchConfig, run_bench
report = run_bench(Path("runs/bottle"), Path("mvtec/bottle"), Path("bench/bottle"), BenchConfig())
```
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fractalad_edge.artifact import (
    METADATA_FILENAME,
    ArtifactMetadata,
    ModelFormat,
    Precision,
    read_metadata,
    sha256_file,
)
from fractalad_edge.bench.latency import (
    PredictorTimer,
    async_throughput,
    interleaved_rounds,
    latency_report,
    throughput_report,
)
from fractalad_edge.bench.config import BenchConfig
from fractalad_edge.bench.memory import measure_memory
from fractalad_edge.bench.memory_branch import memory_bank_size
from fractalad_edge.bench.render_markdown import console_table
from fractalad_edge.bench.report import BenchReport, ConfigResult, write_reports
from fractalad_edge.bench.system import capture_environment
from fractalad_edge.data.datasets import category_name
from fractalad_edge.data.test_set import TestSet, load_test_set, spread_subset
from fractalad_edge.errors import ConfigError
from fractalad_edge.evaluation import evaluate_predictor
from fractalad_edge.export.formats import FORMATS
from fractalad_edge.extras import missing_modules
from fractalad_edge.predictor import Predictor
from fractalad_edge.preprocess import convert_maps, decisions, prepare_batch
from fractalad_edge.runtimes.base import RUNTIMES

MODELS_DIRNAME = "models"
_SOURCE_SUFFIX = ".source.json"  # beside each export: which weights and options it was made from
_MEMORY_PREDICTIONS = 5


@dataclass(frozen=True, kw_only=True)
class _Planned:
    runtime: str
    precision: Precision
    device: str
    format: ModelFormat

    @property
    def name(self) -> str:
        suffix = "" if self.device == "cpu" else f"-{self.device.replace(':', '')}"
        return f"{self.runtime}-{self.precision.value}{suffix}"

    @property
    def export_precision(self) -> Precision:
        # a runtime with a precision option runs reduced precision on the fp32 export: one export
        return Precision.FP32 if RUNTIMES[self.runtime].precision_option else self.precision

    @property
    def export_name(self) -> str:
        return f"{self.runtime}-{self.export_precision.value}"


def plan(config: BenchConfig) -> list[tuple[_Planned, str | None]]:
    """Every runtime x precision with the reason it is skipped up front (None: run it)."""
    device = config.device.lower()
    planned = []
    for runtime in config.runtimes:
        for precision in config.precisions:
            entry = RUNTIMES[runtime]
            item = _Planned(runtime=runtime, precision=precision, device=device, format=entry.natural_format)
            reason = None
            kind = device.split(":")[0]
            if entry.precision_option is not None:
                runs = entry.option_precisions.get(kind, ())
                if precision not in runs:
                    reason = (
                        f"the {runtime} runtime has no {precision.value} path on {kind} "
                        f"(it runs {', '.join(p.value for p in runs) or 'nothing'} there)"
                    )
            elif precision not in FORMATS[item.format].precisions:
                accepted = ", ".join(p.value for p in FORMATS[item.format].precisions)
                reason = f"the {item.format.value} format has no {precision.value} export (it has {accepted})"
            planned.append((item, reason))
    return planned


def unavailable(runtime: str, device: str) -> str | None:
    """Why ``runtime`` cannot run here (package missing, device not supported), found before any export."""
    entry = RUNTIMES[runtime]
    if device.split(":")[0] not in entry.devices:
        return f"runtime {runtime!r} does not run on device {device!r} (it runs on {', '.join(entry.devices)})"
    if missing_modules([entry.package]):
        return f"{entry.package} is not installed; install it with: {entry.install_hint()}"
    return None


def _failure(exc: BaseException, stage: str) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"failed: {stage}: {type(exc).__name__}: {text}"


def _runtime_options(item: _Planned, threads: int | None) -> dict[str, Any]:
    """Options passed to ``Predictor.load`` for this configuration (JSON-able, for the memory probe too)."""
    entry = RUNTIMES[item.runtime]
    options: dict[str, Any] = {}
    if entry.precision_option is not None and item.precision is not item.export_precision:
        options[entry.precision_option] = item.precision.value
    if threads is not None and entry.thread_option is not None:
        options[entry.thread_option] = threads
    return options


# ------------------------------------------------------------------------------ export
def _source_record(run_sha: str, item: _Planned, config: BenchConfig) -> dict[str, Any]:
    """What an export was made from; an export is reused only when all of it matches."""
    return {
        "run_model_sha256": run_sha,
        "format": item.format.value,
        "precision": item.export_precision.value,
        "device": item.device,
        "calib_data": None if config.calib_data is None else str(config.calib_data.resolve()),
        "calib_count": config.calib_count,
        "allow_accuracy_drop": item.export_precision is Precision.INT8 and config.allow_accuracy_drop,
    }


def _reusable(directory: Path, record: dict[str, Any]) -> ArtifactMetadata | None:
    source = directory.with_name(directory.name + _SOURCE_SUFFIX)
    if not (directory / METADATA_FILENAME).is_file() or not source.is_file():
        return None
    try:
        if json.loads(source.read_text()) != record:
            return None
        return read_metadata(directory, verify=True)
    except (OSError, ValueError):
        return None


def _export(
    run_dir: Path, item: _Planned, directory: Path, config: BenchConfig, run_sha: str, progress: Callable[[str], None]
) -> tuple[ArtifactMetadata, bool]:
    """Export (or reuse) this configuration's artifact; returns its metadata and whether it was reused."""
    record = _source_record(run_sha, item, config)
    metadata = _reusable(directory, record)
    if metadata is not None:
        return metadata, True
    source = directory.with_name(directory.name + _SOURCE_SUFFIX)
    source.unlink(missing_ok=True)  # written again only once the new export succeeded
    from fractalad_edge.export.pipeline import ExportOptions, export_model

    # Only what differs from the defaults is passed: a format refuses options it would ignore.
    fields: dict[str, Any] = {"precision": item.export_precision}
    if config.calib_data is not None:
        fields["calib_data"] = config.calib_data
    if config.calib_count is not None:
        fields["calib_count"] = config.calib_count
    if item.export_precision is Precision.INT8 and config.allow_accuracy_drop:
        fields["allow_accuracy_drop"] = True
    if item.device != "cpu":
        fields["device"] = item.device
    metadata = export_model(
        run_dir, format=item.format, out=directory, options=ExportOptions(**fields), progress=lambda m: _relay(m, progress)
    )
    source.write_text(json.dumps(record, indent=2) + "\n")
    return metadata, False


def _relay(message: str, progress: Callable[[str], None]) -> None:
    """Pass the exporter's progress on, indented, without its "next: <command>" hint (the bench is the next step)."""
    if not message.startswith("next:"):
        progress(f"bench:   {message}")


def _size_mb(directory: Path, metadata: ArtifactMetadata) -> float:
    return sum((directory / f.path).stat().st_size for f in metadata.files) / 1e6


# ------------------------------------------------------------------------------ driver
def _guarded(task: Callable[[], Any], errors: dict[str, BaseException], name: str, width: int) -> Callable[[], Any]:
    """A timing task that records its first exception and then returns NaNs, so one config cannot stop the rounds."""

    def run() -> Any:
        if name in errors:
            return (math.nan,) * width if width > 1 else math.nan
        try:
            return task()
        except Exception as exc:  # noqa: BLE001 - becomes the row's status
            errors[name] = exc
            return (math.nan,) * width if width > 1 else math.nan

    return run


def run_bench(
    run_dir: Path, data: Path, out: Path, config: BenchConfig, *, progress: Callable[[str], None] = print
) -> BenchReport:
    """Export, evaluate and time every runtime x precision of ``config``; write the reports to ``out``."""
    started = time.perf_counter()
    run_dir, data, out = Path(run_dir), Path(data), Path(out)
    run_metadata = read_metadata(run_dir, verify=True)
    if run_metadata.format is not ModelFormat.TORCH:
        msg = f"{run_dir} is a {run_metadata.format.value!r} artifact; the bench starts from a training run directory (torch format)"
        raise ConfigError(msg)
    run_sha = sha256_file(run_dir / run_metadata.files[0].path)
    memory_bank = memory_bank_size(run_dir, run_metadata)  # read before any work: a broken bank stops the bench here
    size = run_metadata.input.height
    category = run_metadata.category or category_name(data)
    out.mkdir(parents=True, exist_ok=True)
    models_dir = out / MODELS_DIRNAME
    env_notes: list[str] = []
    macs = None
    try:
        from fractalad_edge.bench.flops import count_artifact_macs

        macs = count_artifact_macs(run_dir)
    except Exception as exc:  # noqa: BLE001 - no torch on this machine: no MAC count, the rest still runs
        env_notes.append(f"MACs not counted ({type(exc).__name__}: {exc})")

    progress(f"bench: reading the test set in {data}")
    full_test_set = load_test_set(data, size)
    test_set = spread_subset(full_test_set, config.max_test_images)
    labels = np.array([s.label for s in test_set.samples])
    frame_path = test_set.samples[0].image_path
    frame = np.ascontiguousarray(test_set.images[0][..., ::-1])  # BGR, like a camera frame
    batch_frames = [np.ascontiguousarray(test_set.images[i % len(test_set.images)][..., ::-1]) for i in range(config.throughput_batch)]

    rows: dict[str, ConfigResult] = {}
    predictors: dict[str, Predictor] = {}
    maps_by_row: dict[str, np.ndarray] = {}
    items: dict[str, _Planned] = {}
    for item, skip_reason in plan(config):
        row = ConfigResult(name=item.name, runtime=item.runtime, precision=item.precision.value, device=item.device, format=item.format.value)
        items[item.name] = item
        if skip_reason is not None:
            rows[item.name] = dataclasses.replace(row, status=f"skipped: {skip_reason}")
            progress(f"bench: {item.name}: skipped ({skip_reason})")
            continue
        reason = unavailable(item.runtime, item.device)
        if reason is not None:
            rows[item.name] = dataclasses.replace(row, status=f"failed: {reason}")
            progress(f"bench: {item.name}: failed ({reason})")
            continue
        try:
            row, predictor, maps = _prepare(item, row, run_dir, models_dir, run_sha, config, test_set, category, progress)
        except _StepFailed as failed:  # one configuration's failure is a row, not a crash
            rows[item.name] = dataclasses.replace(row, status=_failure(failed.error, failed.step))
            progress(f"bench: {item.name}: {rows[item.name].status}")
            continue
        rows[item.name], predictors[item.name], maps_by_row[item.name] = row, predictor, maps

    # the reference: the torch format at fp32 (what every export is checked against), else the first working row
    reference = next(
        (n for n in predictors if items[n].format is ModelFormat.TORCH and items[n].precision is Precision.FP32),
        next(iter(predictors), None),
    )
    if reference is not None:
        ref_maps = maps_by_row[reference]
        ref_metadata = predictors[reference].metadata
        ref_decisions = decisions(ref_maps, ref_metadata.score, ref_metadata.calibration)
        ref_space = ref_metadata.score_space
        for name, maps in maps_by_row.items():
            metadata = predictors[name].metadata
            changes: dict[str, Any] = {"decisions_agree": float(np.mean(decisions(maps, metadata.score, metadata.calibration) == ref_decisions))}
            # an export reused from before its run's space changed is compared in the reference's
            # units where that is a change of units (sigmoid/logit); otherwise no map difference is claimed
            try:
                diff = np.abs(convert_maps(maps, metadata.score_space, ref_space) - ref_maps)
                changes.update(map_mean_abs_diff=float(diff.mean()), map_max_abs_diff=float(diff.max()))
            except ConfigError:
                pass
            rows[name] = dataclasses.replace(rows[name], **changes)

    if predictors:
        rows.update(_time_all(predictors, rows, config, frame, batch_frames, progress))
        if config.async_throughput:
            rows.update(_async_throughput(predictors, rows, config, batch_frames, progress))
    environment = capture_environment(notes=env_notes)
    for predictor in predictors.values():
        predictor.close()
    predictors.clear()

    if config.memory:
        rows.update(_measure_memory(rows, items, config, frame_path, progress))

    memory_macs = None if memory_bank is None or macs is None else macs.by_type.get("memory")
    ref_p50 = None if reference is None or rows[reference].latency is None else rows[reference].latency.full.p50_ms
    for name, row in rows.items():
        if not row.ok:
            continue
        if memory_bank is not None:  # every format is exported from this bank and runs this search
            row = rows[name] = dataclasses.replace(row, memory_bank_mb=memory_bank.mb, memory_macs=memory_macs)
        if row.latency is None:
            continue
        changes: dict[str, Any] = {}
        if macs is not None:
            changes["gflops_per_second"] = macs.gflops_per_second(row.latency.inference.p50_ms / 1e3)
        if ref_p50 is not None:
            changes["speedup"] = ref_p50 / row.latency.full.p50_ms
        rows[name] = dataclasses.replace(row, **changes)

    report = BenchReport(
        category=category,
        run_dir=str(run_dir),
        data=str(data),
        model=dict(run_metadata.model),
        input_size=size,
        macs=macs,
        test_images=len(test_set.samples),
        test_anomalous=int(labels.sum()),
        test_images_available=len(full_test_set.samples),
        reference=reference,
        config=config,
        environment=environment,
        results=tuple(rows.values()),
        seconds=time.perf_counter() - started,
        memory_bank=memory_bank,
    )
    report = write_reports(report, out)
    progress(console_table(report))
    progress(f"bench: wrote {', '.join(report.files.paths())}")  # type: ignore[union-attr]
    return report


class _StepFailed(Exception):
    """A configuration failed in one step; becomes its row's status."""

    def __init__(self, step: str, error: Exception) -> None:
        super().__init__(f"{step}: {error}")
        self.step, self.error = step, error


@contextmanager
def _step(name: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - any error of one configuration is reported in its row
        raise _StepFailed(name, exc) from exc


def _prepare(
    item: _Planned,
    row: ConfigResult,
    run_dir: Path,
    models_dir: Path,
    run_sha: str,
    config: BenchConfig,
    test_set: TestSet,
    category: str,
    progress: Callable[[str], None],
) -> tuple[ConfigResult, Predictor, np.ndarray]:
    """Export (or reuse), load and evaluate one configuration; a failure names its step (:class:`_StepFailed`)."""
    directory = models_dir / item.export_name
    progress(f"bench: {item.name}: export to {directory}")
    tic = time.perf_counter()
    with _step("export"):
        metadata, reused = _export(run_dir, item, directory, config, run_sha, progress)
    notes = list(row.notes)
    if metadata.quantization is not None and not metadata.quantization.passed:
        notes.append("int8 accuracy gate FAILED at export; kept so it can be measured (allow_accuracy_drop)")
    if item.precision is not item.export_precision:
        option = RUNTIMES[item.runtime].precision_option
        notes.append(f"runs the fp32 artifact at {item.precision.value} ({option}={item.precision.value!r}); its thresholds are the fp32 ones")
    row = dataclasses.replace(
        row, artifact=str(directory), reused=reused, export_seconds=None if reused else time.perf_counter() - tic,
        size_mb=_size_mb(directory, metadata), notes=tuple(notes),
        parity=metadata.parity, quantization=metadata.quantization,
    )
    tic = time.perf_counter()
    with _step("load"):
        predictor = Predictor.load(directory, runtime=item.runtime, device=item.device, **_runtime_options(item, config.threads))
    try:
        row = dataclasses.replace(
            row, load_seconds=time.perf_counter() - tic, backend={k: str(v) for k, v in predictor.backend.describe().items()}
        )
        progress(f"bench: {item.name}: accuracy on {len(test_set.images)} test images")
        with _step("accuracy"):
            accuracy, maps = evaluate_predictor(predictor, test_set, category=category)
    except BaseException:
        predictor.close()
        raise
    return dataclasses.replace(row, accuracy=accuracy), predictor, maps


def _time_all(
    predictors: dict[str, Predictor],
    rows: dict[str, ConfigResult],
    config: BenchConfig,
    frame: np.ndarray,
    batch_frames: list[np.ndarray],
    progress: Callable[[str], None],
) -> dict[str, ConfigResult]:
    """Latency (full + stages) and batch throughput, all configurations interleaved; the timed rows."""
    timers = {name: PredictorTimer(p, frame, batch_frames) for name, p in predictors.items()}
    errors: dict[str, BaseException] = {}
    progress(
        f"bench: timing {len(timers)} configurations: {config.warmup} warm-up + {config.runs} runs each in {config.rounds} interleaved rounds"
    )
    latency = interleaved_rounds(
        {n: _guarded(t.full_and_stages, errors, n, 4) for n, t in timers.items()},
        runs=config.runs, rounds=config.rounds, warmup=config.warmup,
        on_round=lambda r, total: progress(f"bench: latency round {r}/{total}"),
    )
    batches = max(config.rounds, math.ceil(config.runs / config.throughput_batch))
    progress(f"bench: throughput at batch {config.throughput_batch}: {batches} batches each, interleaved")
    throughput = interleaved_rounds(
        {n: _guarded(t.batch, errors, n, 1) for n, t in timers.items() if n not in errors},
        runs=batches, rounds=config.rounds, warmup=min(2, config.warmup),
    )
    timed = {}
    for name in timers:
        if name in errors:
            timed[name] = dataclasses.replace(rows[name], status=_failure(errors[name], "timing"))
            continue
        timed[name] = dataclasses.replace(
            rows[name], latency=latency_report(latency[name]), throughput=throughput_report(throughput[name], config.throughput_batch)
        )
    return timed


def _measure_memory(
    rows: dict[str, ConfigResult], items: dict[str, _Planned], config: BenchConfig, frame_path: Path, progress: Callable[[str], None]
) -> dict[str, ConfigResult]:
    """Peak RSS per working configuration, each in its own fresh process; the measured rows.

    The probes run after all timing is done, several at once (one per usable CPU): each
    process's high-water mark is its own, so running them side by side changes no number.
    """
    from concurrent.futures import ThreadPoolExecutor

    from fractalad_edge.bench.system import usable_cpus

    names = [name for name, row in rows.items() if row.ok and row.artifact is not None]
    if not names:
        return {}
    progress(f"bench: peak memory of {len(names)} configurations, each in a fresh process")

    def probe(name: str) -> tuple[str, Any]:
        row = rows[name]
        try:
            return name, measure_memory(
                Path(row.artifact), frame_path, runtime=row.runtime, device=row.device,  # type: ignore[arg-type]
                options=_runtime_options(items[name], config.threads), predictions=_MEMORY_PREDICTIONS,
            )
        except Exception as exc:  # noqa: BLE001 - memory is one column; keep the row
            return name, exc

    measured = {}
    with ThreadPoolExecutor(max_workers=max(1, min(len(names), usable_cpus()))) as pool:
        for name, result in pool.map(probe, names):
            row = rows[name]
            if isinstance(result, Exception):
                measured[name] = dataclasses.replace(row, notes=(*row.notes, f"memory not measured: {result}"))
            else:
                measured[name] = dataclasses.replace(row, memory=result)
    return measured


def _async_throughput(
    predictors: dict[str, Predictor],
    rows: dict[str, ConfigResult],
    config: BenchConfig,
    batch_frames: list[np.ndarray],
    progress: Callable[[str], None],
) -> dict[str, ConfigResult]:
    """Throughput through the runtime's own async queue (``Backend.async_queue``) on CPU rows; the measured rows."""
    measured = {}
    for name, predictor in predictors.items():
        row, backend = rows[name], predictor.backend
        if not row.ok or backend.async_queue is None or row.device != "cpu":
            continue
        progress(f"bench: {name}: async throughput ({backend.async_queue})")
        inputs = [prepare_batch([f], predictor.metadata.input, channel_order="bgr")[0] for f in batch_frames]
        count = max(4 * config.throughput_batch, 16)
        inputs = (inputs * math.ceil(count / len(inputs)))[:count]
        try:
            rates, requests = backend.async_rates(inputs)
            result = async_throughput(rates, frames_per_pass=len(inputs), requests=requests, method=backend.async_queue)
            measured[name] = dataclasses.replace(row, async_throughput=result)
        except Exception as exc:  # noqa: BLE001 - an optional column
            measured[name] = dataclasses.replace(row, notes=(*row.notes, f"async throughput not measured: {exc}"))
    return measured


__all__ = ["BenchConfig", "plan", "run_bench"]
