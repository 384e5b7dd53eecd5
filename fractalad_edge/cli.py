"""The ``fractalad-edge`` command line: each command builds a config, calls one library function, renders.

Heavy modules (torch, runtimes) are imported inside the commands that need them, so
``fractalad-edge predict`` on an OpenVINO device never imports torch.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

from fractalad_edge.bench.defaults import DEFAULT_PRECISIONS, DEFAULT_ROUNDS, DEFAULT_RUNS, DEFAULT_RUNTIMES, DEFAULT_WARMUP
from fractalad_edge.calibration.defaults import CALIBRATION_COUNT, CALIBRATION_SEED
from fractalad_edge.errors import FractalADError
from fractalad_edge.export.defaults import (
    DEFAULT_INT8_WEIGHTS,
    DEFAULT_MAX_DROP,
    DEFAULT_OPSET,
    DEFAULT_PRECISION,
    DEFAULT_QUANT_MODE,
)
from fractalad_edge.method import FusionRule, Method
from fractalad_edge.threshold_rule import DEFAULT_TARGET_FPR

app = typer.Typer(
    name="fractalad-edge",
    help="FractalAD anomaly segmentation: train on normal images, export to edge runtimes, predict, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: it wraps at the terminal's width without cutting option names or words,
    # and shows no type labels on flags (tests/test_cli_help.py checks it at 80 columns).
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., Any])


def _echo_err(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)


def friendly_errors(func: F) -> F:
    """Turn the SDK's own errors into one line and exit code 2; never a traceback for bad input."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FractalADError as exc:
            _echo_err(str(exc))
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            _echo_err("interrupted")
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def _setup_process() -> None:
    # The CLI owns its process, so it may tune malloc for large tensors (fractalad_edge.allocator).
    from fractalad_edge.allocator import keep_freed_memory

    keep_freed_memory()
    # SIGTERM (a service manager stopping the process) unwinds like Ctrl+C, so scratch
    # folders and temporary files are removed on the way out; kill -9 is swept at next start.
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


class Preset(str, Enum):
    published = "published"
    quick_cpu = "quick-cpu"
    tiny = "tiny"


class LrSchedule(str, Enum):
    constant = "constant"
    cosine = "cosine"


class Reduction(str, Enum):
    mean = "mean"
    max = "max"
    topk = "topk"


# Schedules. "published": the paper's (100 epochs of 391 samples, batch 32, lr 1e-3); "quick-cpu":
# the measured CPU schedule in docs/RESULTS.md, at twice the paper's learning rate (150 steps
# leave the student far from the teacher at 1e-3: docs/experiments/training-bottle-cpu.md);
# "tiny": smoke tests and the demo.
PRESETS: dict[Preset, dict[str, Any]] = {
    Preset.published: {"batch_size": 32, "epochs": 100.0, "lr": 1e-3, "bf16": False, "lr_schedule": "constant"},
    Preset.quick_cpu: {"batch_size": 16, "steps": 150, "lr": 2e-3, "bf16": False, "lr_schedule": "constant"},
    Preset.tiny: {"batch_size": 8, "steps": 60, "lr": 1e-3, "bf16": False, "lr_schedule": "constant"},
}
_PRESET_LRS = ", ".join(f"{preset.value} {schedule['lr']:g}" for preset, schedule in PRESETS.items())


@app.command()
@friendly_errors
def train(
    data: Path = typer.Option(..., "--data", help="MVTec category folder (uses train/good) or a folder of normal images."),
    out: Path = typer.Option(..., "--out", help="Run directory to write (a torch model artifact)."),
    preset: Preset = typer.Option(Preset.published, help="Schedule preset: steps, batch size, lr; the options override it."),
    steps: Optional[int] = typer.Option(None, help="Optimizer steps."),
    epochs: Optional[float] = typer.Option(None, help="Epochs of 391 samples (the published unit); converted to steps."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    lr: Optional[float] = typer.Option(None, help=f"AdamW learning rate. Default from preset ({_PRESET_LRS})."),
    lr_schedule: Optional[LrSchedule] = typer.Option(
        None, help="constant (the published schedule) or cosine (annealed towards 0 over the run). Default from preset."
    ),
    seed: int = typer.Option(0),
    backbone: str = typer.Option("efficientnet_lite0", help="efficientnet_lite0 (weights ship with pip) or resnet18."),
    backbone_weights: Optional[Path] = typer.Option(None, help="ImageNet weights file (needed for resnet18)."),
    input_size: int = typer.Option(256, help="Square input side, multiple of 32."),
    head_channels: int = typer.Option(32, help="Segmentation head width C (docs/experiments/head-width.md)."),
    kd: Optional[bool] = typer.Option(None, "--kd/--no-kd", help="Distillation (student). Default: on, off for MVTec textures."),
    object_placement: Optional[bool] = typer.Option(
        None, "--object-placement/--no-object-placement", help="Place anomalies on the object. Default by MVTec category."
    ),
    score: Optional[Reduction] = typer.Option(
        None, help="Image score: mean of the map's top pixels (0.1 % fractalad, 2 % memory; default), mean or max (fused default)."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16", help="bf16 autocast (default from preset)."),
    workers: int = typer.Option(0, help="DataLoader worker processes for anomaly generation."),
    resume: bool = typer.Option(
        False, show_default=False, help="Continue an interrupted run in --out (same options; --steps may grow)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace a training run in --out (only its own files; others are kept)."),
    snapshot_every: Optional[int] = typer.Option(None, help="Also keep the weights every N steps (snapshots/)."),
    method: Optional[Method] = typer.Option(
        None,
        help="fractalad (train the head), memory (nearest neighbours in a memory of normal patches, no training) "
        "or fused (both). "
        "Default: fractalad for MVTec objects, memory otherwise (README).",
    ),
    memory_size: Optional[int] = typer.Option(None, help="memory/fused: memory rows (coreset size). Default: 16000 memory, 8000 fused."),
    memory_fraction: Optional[float] = typer.Option(None, help="memory/fused: memory size as a fraction of the candidate patches."),
    memory_channels: Optional[int] = typer.Option(None, help="memory/fused: reduce patch vectors to N channels (PCA of the memory images, kept in the weights)."),
    memory_strides: str = typer.Option("8,16", help="memory/fused: teacher strides whose features are concatenated."),
    memory_grid_stride: Optional[int] = typer.Option(None, help="memory/fused: stride of the patches compared (default 16)."),
    memory_pool: int = typer.Option(3, help="memory/fused: neighbourhood (average pooling) size."),
    memory_k: int = typer.Option(1, help="memory/fused: nearest neighbours averaged per patch."),
    memory_blur: Optional[float] = typer.Option(None, help="memory/fused: Gaussian blur sigma of the distance map, in pixels (default 8 memory, 4 fused)."),
    fusion: FusionRule = typer.Option(FusionRule.MEAN, help="fused: how the normalised branch maps combine."),
    holdout: float = typer.Option(0.05, help="memory/fused: share of normal images kept out of the memory (>= 8 images) to fit normalisation and thresholds."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="fused: add the memory to this trained FractalAD run instead of training one."),
) -> None:
    """Train FractalAD on normal images only (synthetic fractal anomalies), or build a memory (--method)."""
    from fractalad_edge.extras import require_modules

    require_modules(("torch", "safetensors"), what="training")
    from fractalad_edge.artifact import ScoreSpec
    from fractalad_edge.data.categories import category_defaults
    from fractalad_edge.data.datasets import category_name
    from fractalad_edge.models.fractalad import ModelConfig
    from fractalad_edge.synth.anomaly import SynthConfig
    from fractalad_edge.train.config import TrainConfig, steps_for_epochs
    from fractalad_edge.train.loop import train as run_training

    if method is None:
        from fractalad_edge.data.categories import default_method

        method = Method(default_method(category_name(data)))
        if method is Method.MEMORY and (steps is not None or epochs is not None or resume):
            _echo_err(
                f"{category_name(data)!r} is not an MVTec object, so the default --method is memory (no training), but "
                "--steps/--epochs/--resume were given: pass --method fractalad (or fused) to train the head"
            )
            raise typer.Exit(code=2)
    if method is not Method.FRACTALAD:
        _build_memory_command(
            method=method, data=data, out=out, init_from=init_from, memory_size=memory_size, memory_fraction=memory_fraction,
            memory_channels=memory_channels, memory_strides=memory_strides, memory_grid_stride=memory_grid_stride,
            memory_pool=memory_pool, memory_k=memory_k, memory_blur=memory_blur, fusion=fusion, holdout=holdout, seed=seed, backbone=backbone,
            backbone_weights=backbone_weights, input_size=input_size, score=score, object_placement=object_placement,
            force=force, resume=resume,
            train_first=None if init_from is not None or method is Method.MEMORY else dict(
                preset=preset, steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
                head_channels=head_channels, kd=kd, device=device, bf16=bf16, workers=workers,
                snapshot_every=snapshot_every,
            ),
        )
        return
    schedule = PRESETS[preset]
    batch = batch_size or schedule["batch_size"]
    if steps is not None and epochs is not None:
        _echo_err("give --steps or --epochs, not both")
        raise typer.Exit(code=2)
    if steps is None:
        steps = steps_for_epochs(epochs, batch) if epochs is not None else schedule.get("steps") or steps_for_epochs(schedule["epochs"], batch)
    defaults = category_defaults(category_name(data))
    config = TrainConfig(
        model=ModelConfig(
            backbone=backbone, input_size=input_size, head_channels=head_channels,
            distillation=defaults.distillation if kd is None else kd,
        ),
        synth=SynthConfig(
            image_size=input_size, object_placement=defaults.object_placement if object_placement is None else object_placement
        ),
        score=ScoreSpec(reduction=(score or Reduction.topk).value),
        steps=steps,
        batch_size=batch,
        lr=schedule["lr"] if lr is None else lr,
        lr_schedule=schedule["lr_schedule"] if lr_schedule is None else lr_schedule.value,
        seed=seed,
        device=device,
        bf16=schedule["bf16"] if bf16 is None else bf16,
        workers=workers,
    )
    typer.echo(
        f"training {config.model.backbone} on {data} for {config.steps} steps of {config.batch_size} "
        f"(distillation {'on' if config.model.distillation else 'off'}, object placement "
        f"{'on' if config.synth.object_placement else 'off'}{', bf16' if config.bf16 else ''})"
    )
    result = run_training(
        config, data, out, resume=resume, backbone_weights=backbone_weights, snapshot_every=snapshot_every, force=force
    )
    if result.steps_run:
        done = (
            f"done: {result.steps_run} steps in {result.seconds:.0f} s ({result.images_per_second:.1f} images/s), "
            f"now at step {result.steps}"
        )
    else:
        done = f"nothing to train: the checkpoint is already at step {result.steps}; model rewritten"
    typer.echo(f"{done}; model in {out}\nnext: fractalad-edge eval {out} --data {data}")


def _build_memory_command(
    *, method: Method, data: Path, out: Path, init_from: Optional[Path], memory_size: Optional[int],
    memory_fraction: Optional[float], memory_channels: Optional[int], memory_strides: str, memory_grid_stride: Optional[int],
    memory_pool: int, memory_k: int, memory_blur: Optional[float], fusion: FusionRule, holdout: float, seed: int,
    backbone: str, backbone_weights: Optional[Path], input_size: int, score: Optional[Reduction], object_placement: Optional[bool],
    force: bool, resume: bool, train_first: Optional[dict[str, Any]],
) -> None:
    """``train --method memory|fused``: build the memory (fused: on a FractalAD run, trained first unless --init-from).

    ``fused`` without ``--init-from`` trains the head into ``OUT-fractalad`` (``--resume``
    continues that training) and adds the memory to it in ``OUT``.
    """
    from fractalad_edge.artifact import ScoreSpec
    from fractalad_edge.data.categories import category_defaults
    from fractalad_edge.data.datasets import category_name
    from fractalad_edge.outputs import check_output_folder
    from fractalad_edge.train.loop import check_new_run_folder
    from fractalad_edge.train.memory import METHOD_DEFAULTS, MemoryBuildConfig, build_memory, check_memory_request

    try:
        strides = tuple(int(v) for v in memory_strides.split(",") if v.strip())
    except ValueError:
        _echo_err(f"--memory-strides must be comma-separated integers such as 8,16, got {memory_strides!r}")
        raise typer.Exit(code=2) from None
    config = MemoryBuildConfig(
        method=method.value, backbone=backbone, input_size=input_size, channels=memory_channels, fusion=fusion.value,
        strides=strides, grid_stride=memory_grid_stride, pool=memory_pool, k=memory_k,
        blur_sigma=memory_blur,
        size=memory_size, fraction=memory_fraction, holdout_fraction=holdout, seed=seed,
        score=None if score is None else ScoreSpec(reduction=score.value, topk_fraction=METHOD_DEFAULTS[method]["score"].topk_fraction),
    )
    placement = category_defaults(category_name(data)).object_placement if object_placement is None else object_placement
    if resume and train_first is None:
        _echo_err(f"--resume continues a FractalAD training; a {method.value} memory is built in one go: drop --resume (and use --force to rebuild)")
        raise typer.Exit(code=2)
    check_memory_request(config, data)
    if force:
        check_output_folder(out)  # build_memory replaces the run there (after a fused head is trained)
    else:
        check_new_run_folder(out, force=False)  # refused before any head is trained
    if train_first is not None:
        # fused without --init-from: train the FractalAD head as usual, then add the memory to that run
        head_run = out.with_name(f"{out.name}-fractalad")
        train(data=data, out=head_run, seed=seed, backbone=backbone, backbone_weights=backbone_weights,
              input_size=input_size, score=score, object_placement=object_placement, method=Method.FRACTALAD,
              memory_size=None, memory_fraction=None, memory_channels=None, memory_strides=memory_strides,
              memory_grid_stride=None, memory_pool=memory_pool, memory_k=memory_k, memory_blur=None, fusion=fusion, holdout=holdout,
              init_from=None,
              force=force, resume=resume, **train_first)
        init_from = head_run
    typer.echo(
        f"building the memory of a {method.value} model from {data} ({'on ' + str(init_from) if init_from else 'teacher ' + backbone}; "
        f"{'fraction ' + str(config.fraction) if config.fraction and not config.size else 'size ' + str(config.size or 'default')}, "
        f"held out {holdout:.0%})"
    )
    result = build_memory(
        config, data, out, init_from=init_from, backbone_weights=backbone_weights, object_placement=placement, force=force
    )
    typer.echo(
        f"done: memory of {result.size} patches ({result.memory_mb:.1f} MB) chosen from {result.candidates} candidates of "
        f"{result.memory_images} images ({result.holdout_images} held out) in {result.seconds:.0f} s; model in {out}\n"
        f"next: fractalad-edge eval {out} --data {data}"
    )


@app.command("eval")
@friendly_errors
def evaluate(
    model: Path = typer.Argument(..., help="Run directory or exported model directory."),
    data: Path = typer.Option(..., "--data", help="MVTec-layout category folder with test/ and ground_truth/."),
    out: Optional[Path] = typer.Option(None, help="Report folder (default: MODEL/eval)."),
    runtime: Optional[str] = typer.Option(None, help="Override the artifact's runtime."),
    device: str = typer.Option("cpu"),
    overlays: int = typer.Option(12, help="How many image | truth | heat map PNGs to write."),
) -> None:
    """Image/pixel AUROC, AUPRO and F1 on a labelled test set, with overlay PNGs."""
    from fractalad_edge.data.test_set import load_test_set
    from fractalad_edge.evaluation import evaluate_predictor, markdown_table, write_overlays, write_report
    from fractalad_edge.data.datasets import category_name
    from fractalad_edge.predictor import Predictor

    predictor = Predictor.load(model, runtime=runtime, device=device)
    test_set = load_test_set(data, predictor.metadata.input.height)
    with _progress("eval", len(test_set.images)) as advance:
        report, maps = evaluate_predictor(predictor, test_set, category=category_name(data), progress=advance)
    out = out or model / "eval"
    written = write_overlays(test_set, maps, out / "overlays", count=overlays, metadata=predictor.metadata)
    import dataclasses

    report = dataclasses.replace(report, overlays=written)
    write_report(report, out)
    from fractalad_edge.report import write_eval_html

    html = write_eval_html(report, test_set, maps, predictor.metadata, out, model=str(model), data=str(data))
    typer.echo(f"method: {report.method}\n" + markdown_table([report]))
    typer.echo(f"report: {out / 'report.md'}, {out / 'metrics.json'}; overlays: {out / 'overlays'}")
    typer.echo(f"browsable report (gallery of every image, misses first): {html}")


@app.command()
@friendly_errors
def export(
    model: Path = typer.Argument(..., help="Run directory written by 'train'."),
    format: str = typer.Option(..., "--format", help="torch, onnx, openvino or tensorrt."),
    out: Path = typer.Option(..., "--out"),
    precision: str = typer.Option(DEFAULT_PRECISION, help="fp32, fp16, bf16 or int8 (what each format accepts is checked first)."),
    calib_data: Optional[Path] = typer.Option(None, help="Normal images for INT8 calibration and thresholds (default: the training folder)."),
    calib_count: int = typer.Option(CALIBRATION_COUNT, help="Calibration samples (half get a fractal anomaly)."),
    calib_seed: int = typer.Option(CALIBRATION_SEED),
    max_drop: float = typer.Option(DEFAULT_MAX_DROP, help="INT8 accuracy gate: allowed AUROC drop in points on held-out synthetic anomalies."),
    allow_accuracy_drop: bool = typer.Option(
        False, help="Write the model even if the gate fails (recorded in metadata).", show_default=False
    ),
    opset: int = typer.Option(DEFAULT_OPSET, help="ONNX opset (>= 16 for GridSample; 17 suits TensorRT 8.6 / JetPack 6)."),
    device: Optional[str] = typer.Option(None, help="Device the export checks on (default: cpu; cuda for tensorrt)."),
    int8_weights: str = typer.Option(
        DEFAULT_INT8_WEIGHTS,
        "--int8-weights",
        help="onnx int8 weight range: reduced (7-bit, safe on every x86 CPU) or full (8-bit: CPUs with VNNI, ARM, GPUs).",
    ),
    quant_mode: str = typer.Option(
        DEFAULT_QUANT_MODE,
        "--quant-mode",
        help="openvino int8: ptq, or accuracy-control (reverts harmful layers to float until within --max-drop; slow).",
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace an export of the same format in --out (only its listed files; others are kept)."
    ),
    score_space: Optional[str] = typer.Option(
        None, "--score-space",
        help="What the graph outputs: logit (fractalad default: thresholds keep their spread) or sigmoid; memory/fused have one each.",
    ),
) -> None:
    """Export a trained model to a runtime format, with a parity check against torch."""
    from fractalad_edge.artifact import Precision, parse_enum
    from fractalad_edge.export.pipeline import ExportOptions, export_model

    options = ExportOptions(
        precision=parse_enum(Precision, precision, "--precision"),
        opset=opset,
        calib_data=calib_data,
        calib_count=calib_count,
        calib_seed=calib_seed,
        max_drop=max_drop,
        allow_accuracy_drop=allow_accuracy_drop,
        device=device,
        int8_weights=int8_weights,
        quant_mode=quant_mode,
        score_space=score_space,
    )
    export_model(model, format=format, out=out, options=options, progress=typer.echo, force=force)


@app.command()
@friendly_errors
def calibrate(
    model: Path = typer.Argument(..., help="Model directory (run or export) whose thresholds to set."),
    normal: Path = typer.Option(..., "--normal", help="Folder of normal images (or an MVTec category: uses train/good)."),
    defects: Optional[Path] = typer.Option(None, help="Optional MVTec category with real labelled defects in test/."),
    method: str = typer.Option("f1", help="f1 (F1-optimal on synthetic anomalies) or fpr (target false-alarm rate on normals)."),
    target_fpr: float = typer.Option(DEFAULT_TARGET_FPR, help="False-alarm rate for --method fpr."),
    count: int = typer.Option(CALIBRATION_COUNT),
    seed: int = typer.Option(CALIBRATION_SEED),
    runtime: Optional[str] = typer.Option(None),
    score_space: Optional[str] = typer.Option(
        None, "--score-space",
        help="Fit in another space: 'logit' moves an older sigmoid torch model (a run) to logits; exports are re-exported instead.",
    ),
    object_placement: Optional[bool] = typer.Option(
        None, "--object-placement/--no-object-placement",
        help="Paste synthetic anomalies on the object only. Default: as the run trained, else by MVTec category of --normal.",
    ),
) -> None:
    """Set decision thresholds without re-exporting (synthetic anomalies; real defects if given)."""
    import warnings

    from fractalad_edge.calibration.workflow import recalibrate
    from fractalad_edge.errors import CalibrationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalibrationWarning)
        result = recalibrate(
            model, normal=normal, defects=defects, method=method, target_fpr=target_fpr, count=count, seed=seed, runtime=runtime,
            score_space=score_space, object_placement=object_placement,
        )
    for warning in caught:  # the calibration's own warnings as one line each; others as Python shows them
        if issubclass(warning.category, CalibrationWarning):
            typer.secho(f"warning: {warning.message}", fg=typer.colors.YELLOW, err=True)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    typer.echo(result.summary())


@app.command()
@friendly_errors
def predict(
    model: Path = typer.Argument(..., help="Model directory."),
    inputs: list[Path] = typer.Argument(..., help="Image files, folders (searched recursively) or list files (one path a line)."),
    out: Optional[Path] = typer.Option(None, help="Folder for predictions.jsonl and overlay PNGs (named by relative path)."),
    runtime: Optional[str] = typer.Option(None),
    device: str = typer.Option("cpu"),
    batch_size: int = typer.Option(1, help="Images per inference call (>= 1)."),
    pattern: Optional[str] = typer.Option(None, "--pattern", help="Glob on the path relative to a folder, e.g. '*.png'."),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive", help="Search subfolders of folder inputs."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier predict's results in --out (other files are kept)."),
    max_pixels: Optional[int] = typer.Option(
        None, "--max-pixels", help="Refuse images larger than this many pixels (default 200 MP or FRACTALAD_MAX_IMAGE_PIXELS)."
    ),
    engine: str = typer.Option("local", help="local (this process) or ray (Ray Data + a pool of Predictor actors)."),
    address: Optional[str] = typer.Option(None, help="--engine ray: Ray cluster address (default: a local instance)."),
) -> None:
    """Score images; one bad image is reported and the rest still run."""
    if engine not in ("local", "ray"):
        _echo_err(f"--engine must be local or ray, got {engine!r}")
        raise typer.Exit(code=2)
    if engine == "ray":
        from fractalad_edge.distributed.batch_predict import RayPredictOptions, predict_files_ray

        summary = predict_files_ray(
            model, inputs, out=out, runtime=runtime, device=device, options=RayPredictOptions(batch_size=batch_size),
            address=address, echo=typer.echo, recursive=recursive, pattern=pattern, force=force, max_pixels=max_pixels,
        )
    else:
        from fractalad_edge.inference import predict_files

        summary = predict_files(
            model, inputs, out=out, runtime=runtime, device=device, batch_size=batch_size, echo=typer.echo,
            recursive=recursive, pattern=pattern, force=force, max_pixels=max_pixels,
        )
    if summary.failed:
        raise typer.Exit(code=1)


@app.command()
@friendly_errors
def bench(
    model: Path = typer.Argument(..., help="Run directory written by 'train'."),
    data: Path = typer.Option(..., "--data", help="MVTec-layout category with a labelled test set."),
    out: Path = typer.Option(Path("bench"), "--out"),
    runtimes: str = typer.Option(",".join(DEFAULT_RUNTIMES), help="Comma-separated runtimes."),
    precisions: str = typer.Option(",".join(DEFAULT_PRECISIONS), help="Comma-separated precisions."),
    runs: int = typer.Option(DEFAULT_RUNS, help="Timed runs per configuration (split into interleaved rounds)."),
    rounds: int = typer.Option(DEFAULT_ROUNDS, help="Interleaved rounds the timed runs are split into."),
    warmup: int = typer.Option(DEFAULT_WARMUP),
    calib_count: Optional[int] = typer.Option(None, help=f"Calibration images per export (default: the exporter's {CALIBRATION_COUNT})."),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Measure peak memory, each config in a fresh process."),
    threads: Optional[int] = typer.Option(None, help="Threads per runtime (default: all cores)."),
    device: str = typer.Option("cpu"),
    calib_data: Optional[Path] = typer.Option(None),
    max_test_images: Optional[int] = typer.Option(None, help="Evaluate on a subset (short mode)."),
) -> None:
    """Latency x accuracy for each runtime and precision: table, report.md/json/png/html."""
    from fractalad_edge.artifact import Precision, parse_enum
    from fractalad_edge.bench.matrix import BenchConfig, run_bench

    config = BenchConfig(
        runtimes=tuple(r.strip() for r in runtimes.split(",") if r.strip()),
        precisions=tuple(parse_enum(Precision, p.strip(), "--precisions") for p in precisions.split(",") if p.strip()),
        runs=runs,
        rounds=rounds,
        warmup=warmup,
        calib_count=calib_count,
        memory=memory,
        threads=threads,
        device=device,
        calib_data=calib_data,
        max_test_images=max_test_images,
    )
    report = run_bench(model, data, out, config, progress=typer.echo)
    from fractalad_edge.report import write_bench_html

    typer.echo(f"bench: browsable report (plot, table, gallery): {write_bench_html(report, out)}")


@app.command()
@friendly_errors
def demo(
    out: Path = typer.Option(Path("demo"), "--out", help="Where to write the dataset, run, models and predictions."),
    steps: int = typer.Option(120, help="Training steps (the demo data is easy)."),
) -> None:
    """End to end on the generated dataset that ships with the package: train, eval, export, predict."""
    from fractalad_edge.demo import run_demo

    run_demo(out, steps=steps, echo=typer.echo)


class _progress:
    """A small stderr progress line for loops that are not training (tqdm when present)."""

    def __init__(self, desc: str, total: int) -> None:
        self.desc, self.total, self.bar = desc, total, None

    def __enter__(self) -> Callable[[int, int], None]:
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit="img", file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            self.bar = None

        def advance(done: int, total: int) -> None:
            if self.bar is not None:
                self.bar.update(done - self.bar.n)

        return advance

    def __exit__(self, *_: object) -> None:
        if self.bar is not None:
            self.bar.close()


@app.command("train-many")
@friendly_errors
def train_many(
    data: Path = typer.Option(..., "--data", help="Folder holding one MVTec-layout folder per category."),
    out: Path = typer.Option(..., "--out", help="Runs folder: one run per category, plus train_many.json/.md."),
    categories: Optional[str] = typer.Option(None, help="Comma-separated category names (default: every folder with train/good)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (default: a local instance sized to this machine)."),
    preset: Preset = typer.Option(Preset.quick_cpu, help="Schedule preset; --steps/--batch-size override it."),
    steps: Optional[int] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    input_size: int = typer.Option(256),
    export: str = typer.Option("", help="Comma-separated formats to export each model to (e.g. openvino,onnx)."),
    cpus_per_task: int = typer.Option(1, help="CPU cores per category task (torch threads)."),
    gpus_per_task: Optional[float] = typer.Option(None, help="GPUs per task (default: 1 where the cluster has GPUs)."),
    max_retries: int = typer.Option(3, help="Retries of a category whose worker is lost."),
    checkpoint_every: int = typer.Option(20, help="Steps between checkpoints (what a retried task redoes at most)."),
) -> None:
    """Train one model per category as Ray tasks; finished categories are skipped, interrupted ones resume."""
    from fractalad_edge.extras import require_modules

    require_modules(("torch", "safetensors", "ray"), what="train-many")
    from fractalad_edge.distributed.train_many import TrainManyOptions, train_many as run_train_many
    from fractalad_edge.train.config import steps_for_epochs

    schedule = PRESETS[preset]
    batch = batch_size or schedule["batch_size"]
    options = TrainManyOptions(
        steps=steps or schedule.get("steps") or steps_for_epochs(schedule["epochs"], batch),
        batch_size=batch,
        lr=schedule["lr"],
        lr_schedule=schedule["lr_schedule"],
        bf16=schedule["bf16"],
        input_size=input_size,
        exports=tuple(f.strip() for f in export.split(",") if f.strip()),
        cpus_per_task=cpus_per_task,
        gpus_per_task=gpus_per_task,
        max_retries=max_retries,
        checkpoint_every=checkpoint_every,
    )
    names = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    results = run_train_many(data, out, options, categories=names, address=address, echo=typer.echo)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(code=1)


@app.command()
@friendly_errors
def serve(
    models: list[Path] = typer.Argument(..., help="Model directories to serve."),
    name: Optional[list[str]] = typer.Option(None, "--name", help="URL name per model, in order (default: folder names)."),
    replicas: int = typer.Option(1, help="Replicas per model."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000),
    max_batch_size: int = typer.Option(8, help="Requests scored together at most."),
    batch_wait_ms: float = typer.Option(5.0, help="How long a request waits for others to batch with."),
    runtime: Optional[str] = typer.Option(None),
    device: str = typer.Option("cpu"),
    max_pixels: Optional[int] = typer.Option(
        None, "--max-pixels", help="Answer 413 to images larger than this many pixels (default 200 MP or FRACTALAD_MAX_IMAGE_PIXELS)."
    ),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (default: a local instance)."),
) -> None:
    """HTTP scoring with Ray Serve: POST an image to /predict/<name>; GET /health."""
    from fractalad_edge.distributed.serve import ServeOptions, serve_models

    names = name or [m.resolve().name for m in models]
    if len(names) != len(models) or len(set(names)) != len(names):
        _echo_err(f"give one distinct --name per model: {len(models)} models, names {names}")
        raise typer.Exit(code=2)
    options = ServeOptions(
        host=host, port=port, replicas=replicas, max_batch_size=max_batch_size, batch_wait_ms=batch_wait_ms,
        runtime=runtime, device=device, max_pixels=max_pixels,
    )
    serve_models(dict(zip(names, models)), options, address=address, echo=typer.echo)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
