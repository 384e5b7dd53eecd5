"""Train one model per category folder as Ray tasks: retries, resume, a progress table, one summary.

Each category is one task with its own resources (``cpus_per_task`` cores, or one GPU each
where the cluster has GPUs). A task that loses its worker (a killed process, a lost node)
is retried by Ray (``max_retries``), and every attempt starts from what is on disk: a
category whose run is complete is skipped, an interrupted one continues from its last
checkpoint with the training loop's own resume (fractalad_edge/train/loop.py). Errors the
SDK raises on purpose (bad data, bad options) are not retried: they are reported as the
category's status and the other categories carry on.

On a multi-node cluster ``root`` and ``out`` must be on storage every node sees.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fractalad_edge.artifact import METADATA_FILENAME
from fractalad_edge.distributed.cluster import cluster_gpus, ray_session
from fractalad_edge.errors import ConfigError, DatasetNotFoundError, FractalADError
from fractalad_edge.outputs import atomic_write_text, check_output_folder

SUMMARY_JSON = "train_many.json"
SUMMARY_MD = "train_many.md"
EXPORTS_DIR = "exports"
EVAL_DIR = "eval"

#: Failures worth another attempt on the same task: I/O hiccups and memory pressure. Lost
#: workers (a killed process, a lost node) are retried by Ray itself (``max_retries``).
RETRY_EXCEPTIONS: list[type[BaseException]] = [OSError, MemoryError]


@dataclass(frozen=True, kw_only=True)
class TrainManyOptions:
    """The schedule every category gets, and how tasks are placed and retried."""

    steps: int
    batch_size: int
    lr: float = 1e-3
    lr_schedule: str = "constant"
    bf16: bool = False
    input_size: int = 256
    seed: int = 0
    checkpoint_every: int = 20  # steps between checkpoints: the most work a killed task redoes
    exports: tuple[str, ...] = ()  # formats to export each finished model to, e.g. ("openvino",)
    evaluate: bool = True  # metrics on the category's test/ folder when it has one
    cpus_per_task: int = 1
    gpus_per_task: float | None = None  # None: 1 where the cluster has GPUs, else 0
    max_retries: int = 3

    def __post_init__(self) -> None:
        checks = {
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "checkpoint_every": self.checkpoint_every >= 1,
            "cpus_per_task": self.cpus_per_task >= 1,
            "gpus_per_task": self.gpus_per_task is None or self.gpus_per_task >= 0,
            "max_retries": self.max_retries >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                msg = f"train-many option {name}={getattr(self, name)!r} is out of range"
                raise ConfigError(msg)
        from fractalad_edge.export.formats import FORMATS

        known = [f.value for f in FORMATS]
        unknown = [f for f in self.exports if f not in known]
        if unknown:
            msg = f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(known)}"
            raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True)
class CategoryResult:
    category: str
    status: str  # "trained", "resumed", "skipped" (complete before), "failed"
    run_dir: str
    seconds: float
    steps: int = 0
    resumed_from: int = 0  # the checkpoint step the last attempt started from
    attempts: int = 1
    metrics: dict[str, float] | None = None
    exports: list[str] = field(default_factory=list)
    error: str | None = None


def find_categories(root: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    """Category folders under ``root`` (MVTec layout: ``<category>/train/good``), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        msg = f"--data {root} is not a folder; pass a folder holding one MVTec-layout folder per category"
        raise DatasetNotFoundError(msg)
    found = {p.name: p for p in sorted(root.iterdir()) if (p / "train" / "good").is_dir()}
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            msg = f"categories not found under {root}: {', '.join(missing)}; found: {', '.join(found) or 'none'}"
            raise DatasetNotFoundError(msg)
        found = {n: found[n] for n in names}
    if not found:
        msg = f"no category folders under {root}; each needs train/good (MVTec layout)"
        raise DatasetNotFoundError(msg)
    return list(found.values())


class ProgressBoard:
    """A small actor the tasks report to, so the driver can draw one table for the whole cluster."""

    def __init__(self, categories: list[str]) -> None:
        self.rows: dict[str, dict[str, Any]] = {
            c: {"status": "waiting", "step": 0, "steps": 0, "loss": None, "attempts": 0, "started": None} for c in categories
        }

    def start(self, category: str, *, steps: int, resumed_from: int) -> int:
        row = self.rows[category]
        row.update(status="resuming" if resumed_from else "training", step=resumed_from, steps=steps, started=time.time())
        row["attempts"] += 1
        return int(row["attempts"])

    def report(self, category: str, **values: Any) -> None:
        self.rows[category].update(values)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self.rows


def _train_config(data_dir: Path, options: TrainManyOptions, device: str) -> Any:
    """The same TrainConfig ``fractalad-edge train`` builds for this category's defaults."""
    from fractalad_edge.artifact import ScoreSpec
    from fractalad_edge.data.categories import category_defaults
    from fractalad_edge.data.datasets import category_name
    from fractalad_edge.models.fractalad import ModelConfig
    from fractalad_edge.synth.anomaly import SynthConfig
    from fractalad_edge.train.config import TrainConfig

    defaults = category_defaults(category_name(data_dir))
    return TrainConfig(
        model=ModelConfig(input_size=options.input_size, distillation=defaults.distillation),
        synth=SynthConfig(image_size=options.input_size, object_placement=defaults.object_placement),
        score=ScoreSpec(),
        steps=options.steps,
        batch_size=options.batch_size,
        lr=options.lr,
        lr_schedule=options.lr_schedule,
        seed=options.seed,
        device=device,
        bf16=options.bf16,
        checkpoint_every=options.checkpoint_every,
    )


def _checkpoint_step(run_dir: Path) -> int:
    """The step of the checkpoint in ``run_dir`` (read from its header, as --resume does), 0 if none."""
    from fractalad_edge.train.checkpoint import read_training_state

    try:
        return int(read_training_state(run_dir)["step"])
    except (FractalADError, KeyError, TypeError, ValueError):
        return 0


def _is_complete(run_dir: Path, options: TrainManyOptions) -> bool:
    """Trained to the requested step, the model written and every export present."""
    return (
        (run_dir / METADATA_FILENAME).is_file()
        and _checkpoint_step(run_dir) >= options.steps
        and all((run_dir / EXPORTS_DIR / f / METADATA_FILENAME).is_file() for f in options.exports)
    )


def _read_metrics(run_dir: Path) -> dict[str, float] | None:
    path = run_dir / EVAL_DIR / "metrics.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    return {k: round(float(report[k]), 6) for k in ("image_auroc", "pixel_auroc", "aupro") if k in report}


def train_category(
    data_dir: str | Path, run_dir: str | Path, options: TrainManyOptions, board: Any | None = None
) -> CategoryResult:
    """Train (or resume, or skip) one category, export and evaluate it. Runs inside a Ray task."""
    import torch

    data_dir, run_dir = Path(data_dir), Path(run_dir)
    category = data_dir.name
    started = time.perf_counter()
    resumed_from = 0
    attempts = 1
    try:
        if _is_complete(run_dir, options):
            if board is not None:
                board.report.remote(category, status="skipped", step=options.steps, steps=options.steps)
            return CategoryResult(
                category=category, status="skipped", run_dir=str(run_dir), seconds=0.0, steps=_checkpoint_step(run_dir),
                attempts=0, metrics=_read_metrics(run_dir), exports=list(options.exports),
            )
        from fractalad_edge.train.loop import train

        gpus = options.gpus_per_task or 0
        device = "cuda" if gpus > 0 else "cpu"
        torch.set_num_threads(options.cpus_per_task)
        config = _train_config(data_dir, options, device)
        checkpoint = resumed_from = _checkpoint_step(run_dir)
        if board is not None:
            import ray

            attempts = ray.get(board.start.remote(category, steps=options.steps, resumed_from=resumed_from))

        def on_step(step: int, record: dict[str, float]) -> None:
            if board is not None:
                board.report.remote(category, step=step, loss=record["loss"])

        if checkpoint < options.steps or not (run_dir / METADATA_FILENAME).is_file():
            # No checkpoint: a new run, or an attempt killed before its first checkpoint, whose files
            # ``force`` replaces (train refuses a folder that is not a training run either way).
            train(
                config, data_dir, run_dir, resume=checkpoint > 0, force=checkpoint == 0, category=category,
                progress=False, on_step=on_step,
            )
        exports = []
        for fmt in options.exports:
            if board is not None:
                board.report.remote(category, status=f"export {fmt}")
            target = run_dir / EXPORTS_DIR / fmt
            if not (target / METADATA_FILENAME).is_file():
                from fractalad_edge.export.pipeline import ExportOptions, export_model

                export_model(run_dir, format=fmt, out=target, options=ExportOptions(), progress=lambda _: None)
            exports.append(fmt)
        metrics = None
        if options.evaluate and (data_dir / "test").is_dir():
            if board is not None:
                board.report.remote(category, status="evaluating")
            metrics = _evaluate(run_dir, data_dir, category)
        status = "resumed" if resumed_from else "trained"
        result = CategoryResult(
            category=category, status=status, run_dir=str(run_dir), seconds=round(time.perf_counter() - started, 1),
            steps=_checkpoint_step(run_dir), resumed_from=resumed_from, attempts=attempts, metrics=metrics, exports=exports,
        )
    except FractalADError as exc:  # bad data or options: another attempt would fail the same way
        result = CategoryResult(
            category=category, status="failed", run_dir=str(run_dir), seconds=round(time.perf_counter() - started, 1),
            steps=_checkpoint_step(run_dir), resumed_from=resumed_from, attempts=attempts, error=" ".join(str(exc).split()),
        )
    if board is not None:
        board.report.remote(category, status=result.status, step=result.steps)
    return result


def _evaluate(run_dir: Path, data_dir: Path, category: str) -> dict[str, float]:
    from fractalad_edge.data.test_set import load_test_set
    from fractalad_edge.evaluation import evaluate_predictor, write_report
    from fractalad_edge.predictor import Predictor

    with Predictor.load(run_dir) as predictor:
        test_set = load_test_set(data_dir, predictor.metadata.input.height)
        report, _ = evaluate_predictor(predictor, test_set, category=category)
    write_report(report, run_dir / EVAL_DIR)
    return _read_metrics(run_dir) or {}


def train_many(
    root: str | Path,
    out: str | Path,
    options: TrainManyOptions,
    *,
    categories: Sequence[str] | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    echo: Callable[[str], None] = print,
    poll_seconds: float = 10.0,
) -> list[CategoryResult]:
    """Train every category under ``root`` into ``out/<category>``; write out/train_many.json and .md."""
    folders = find_categories(root, categories)
    out = Path(out)
    check_output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in folders]
    started = time.perf_counter()
    with ray_session(address, num_cpus=num_cpus) as ray:
        gpus = options.gpus_per_task if options.gpus_per_task is not None else (1.0 if cluster_gpus(ray) else 0.0)
        task_options = TrainManyOptions(**{**asdict(options), "exports": tuple(options.exports), "gpus_per_task": gpus})
        board = ray.remote(num_cpus=0)(ProgressBoard).remote(names)
        task = ray.remote(train_category).options(
            num_cpus=options.cpus_per_task,
            num_gpus=gpus,
            max_retries=options.max_retries,
            retry_exceptions=RETRY_EXCEPTIONS,
        )
        refs = {task.remote(str(f), str(out / f.name), task_options, board): f.name for f in folders}
        echo(f"train-many: {len(refs)} categories, {options.cpus_per_task} CPU{'' if options.cpus_per_task == 1 else 's'}"
             f"{f' and {gpus:g} GPU' if gpus else ''} per task, up to {options.max_retries} retries")
        results: dict[str, CategoryResult] = {}
        pending = list(refs)
        last_table = ""
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=poll_seconds)
            for ref in done:
                name = refs[ref]
                try:
                    results[name] = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - retries are spent; report and carry on with the others
                    reason = " ".join(str(exc).split())[:300]
                    results[name] = CategoryResult(
                        category=name, status="failed", run_dir=str(out / name), seconds=0.0,
                        steps=_checkpoint_step(out / name), attempts=options.max_retries + 1, error=reason,
                    )
            table = progress_table(ray.get(board.snapshot.remote()))
            if table != last_table:
                echo(table)
                last_table = table
    ordered = [results[n] for n in names]
    write_summary(ordered, out, seconds=time.perf_counter() - started)
    echo(summary_markdown(ordered))
    echo(f"summary: {out / SUMMARY_JSON}, {out / SUMMARY_MD}")
    return ordered


def progress_table(rows: dict[str, dict[str, Any]]) -> str:
    now = time.time()
    lines = [f"{'category':<20} {'status':<12} {'step':>9} {'loss':>7} {'attempt':>7} {'time':>7}"]
    for name, row in rows.items():
        step = f"{row['step']}/{row['steps']}" if row["steps"] else "-"
        loss = f"{row['loss']:.3f}" if row["loss"] is not None else "-"
        elapsed = f"{now - row['started']:.0f} s" if row["started"] and row["status"] in ("training", "resuming") else ""
        lines.append(f"{name:<20} {row['status']:<12} {step:>9} {loss:>7} {row['attempts']:>7} {elapsed:>7}")
    return "\n".join(lines)


def summary_markdown(results: Sequence[CategoryResult]) -> str:
    lines = [
        "| category | status | steps | resumed from | attempts | time (s) | image AUROC | pixel AUROC | AUPRO | exports | error |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.metrics or {}
        cells = [f"{100 * m[k]:.2f}" if k in m else "-" for k in ("image_auroc", "pixel_auroc", "aupro")]
        lines.append(
            f"| {r.category} | {r.status} | {r.steps} | {r.resumed_from or '-'} | {r.attempts} | {r.seconds:.0f} | "
            f"{' | '.join(cells)} | {', '.join(r.exports) or '-'} | {r.error or ''} |"
        )
    return "\n".join(lines)


def write_summary(results: Sequence[CategoryResult], out: Path, *, seconds: float) -> None:
    payload = {"seconds": round(seconds, 1), "categories": [asdict(r) for r in results]}
    atomic_write_text(out / SUMMARY_JSON, json.dumps(payload, indent=2) + "\n")
    atomic_write_text(out / SUMMARY_MD, f"# train-many ({seconds:.0f} s)\n\n{summary_markdown(results)}\n")
