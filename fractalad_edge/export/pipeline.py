"""The export driver: training run in, checked and calibrated artifact out.

One path for every format (the FORMATS table supplies the writer):

1. check the request against FORMATS (format, precision, options, packages) before any work;
2. read the run (a ``torch`` artifact) and build the synthetic calibration and validation
   sets from its normal images (fractal anomalies on half of them);
3. the format's writer exports (and for int8 quantizes) into a staging folder;
4. thresholds are refitted *with the exported runtime* on the calibration set, so an int8 or
   fp16 model is judged by thresholds fitted to its own outputs; they are fitted in the
   export's score space (``score_space``; ``fractalad`` models export their logits by
   default, whatever space the run was written in: fractalad_edge/score_space.py);
5. parity against the torch model on held-out synthetic images (ParityError for float
   precisions beyond tolerance), and for int8 the accuracy gate;
6. the run's list of memory images is copied (``memory``/``fused`` models:
   fractalad_edge/memory_images.py), metadata.json (sha256 of every file, parity, precision,
   runtime, versions) is written and the staged files are moved into ``out``
   (fractalad_edge.outputs): a new folder in one rename; with ``force``, over an export of
   the same format, only the files its metadata lists are replaced, metadata.json last. A
   failed or killed export never leaves a half artifact, and never deletes a file it did not
   write: a training run, a folder of other files or an export of another format is refused
   before any work.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fractalad_edge.artifact import (
    CHECKPOINT_FILENAME,
    CHECKPOINT_STATE,
    METADATA_FILENAME,
    RUN_CONFIG_FILENAME,
    ArtifactMetadata,
    ModelFormat,
    Precision,
    QuantizationReport,
    ScoreCalibration,
    describe_files,
    now_iso,
    package_version,
    read_metadata,
    resolve_inside,
    write_metadata,
)
from fractalad_edge.calibration.dataset import CalibrationConfig, build_calibration_sets
from fractalad_edge.calibration.defaults import ANOMALY_RATIO, CALIBRATION_COUNT, CALIBRATION_SEED
from fractalad_edge.calibration.thresholds import calibrate_scores
from fractalad_edge.errors import CalibrationError, ConfigError, ExportError, FractalADError, OutputExistsError
from fractalad_edge.export.defaults import DEFAULT_INT8_WEIGHTS, DEFAULT_MAX_DROP, DEFAULT_OPSET, DEFAULT_PRECISION, DEFAULT_QUANT_MODE
from fractalad_edge.export.formats import (
    INT8_WEIGHT_RANGES,
    QUANT_MODES,
    ExportedModel,
    ExportJob,
    FormatSpec,
    check_export_request,
    parse_format,
)
from fractalad_edge.export.onnx import MAX_OPSET, MIN_OPSET
from fractalad_edge.export.parity import RECORDED_ONLY, compare_maps, enforce_parity, format_parity, tolerance_for
from fractalad_edge.memory_images import listed_memory_images, memory_paths_of_run, read_memory_images, split_memory_images
from fractalad_edge.outputs import StagedOutput, check_output_folder, folder_is_empty
from fractalad_edge.score_space import ScoreSpace, check_space, default_space, parse_space
from fractalad_edge.threshold_rule import ThresholdRule

if TYPE_CHECKING:
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.runtimes.base import Backend


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """How to export. Fields left at their default are not "set"; a format refuses set fields it would ignore."""

    precision: Precision = Precision(DEFAULT_PRECISION)
    opset: int = DEFAULT_OPSET  # GridSample needs >= 16; TensorRT 8.6 (JetPack 6) reads up to 17
    #: normal images for int8 calibration and the threshold refit; default: the run's training folder
    calib_data: Path | None = None
    calib_count: int = CALIBRATION_COUNT
    calib_seed: int = CALIBRATION_SEED
    anomaly_ratio: float = ANOMALY_RATIO  # share of calibration images carrying a fractal anomaly
    max_drop: float = DEFAULT_MAX_DROP  # int8 accuracy gate: allowed AUROC drop in points (x100)
    allow_accuracy_drop: bool = False  # int8: keep a model that fails the gate (recorded as failed)
    parity_images: int = 8  # held-out synthetic images compared with the torch model
    #: fp32 map tolerance; fp16 / bf16 / int8 use the looser values of export.parity (never tighter)
    tolerance: float = 1e-4
    #: where the export runs the exported model: None = the format's default (cpu; cuda for
    #: tensorrt). onnx: cpu, cuda, tensorrt (execution providers); openvino: cpu, gpu, npu, auto.
    device: str | None = None
    #: onnx int8 weight range. "reduced" (7-bit) is safe on every x86 CPU; "full" (8-bit) is
    #: for targets whose INT8 dot products do not saturate: x86 CPUs with VNNI, ARM, GPUs.
    #: On an x86 CPU without VNNI, onnxruntime's u8 x s8 kernels overflow with full-range weights.
    int8_weights: str = DEFAULT_INT8_WEIGHTS
    #: openvino int8: "ptq" (NNCF post-training quantization) or "accuracy-control" (NNCF puts
    #: the most harmful layers back to float until the synthetic validation set is within
    #: max_drop points; minutes per reverted layer on a small CPU)
    quant_mode: str = DEFAULT_QUANT_MODE
    #: openvino int8: the graph regions kept in float (fractalad_edge.quantize.FloatRegion values,
    #: e.g. ("csam", "flow", "classifier", "memory") to quantize the teacher's stem too);
    #: None: quantize.DEFAULT_KEEP_FLOAT, chosen by measurement. The accuracy gate still decides.
    keep_float: tuple[str, ...] | None = None
    #: what the exported graph outputs (fractalad_edge/score_space.py): None = the method's
    #: default (``logit`` for fractalad; ``sigmoid`` puts the sigmoid back in the graph)
    score_space: ScoreSpace | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "precision", Precision(self.precision))
        except ValueError:
            msg = f"precision must be one of {', '.join(p.value for p in Precision)}, got {self.precision!r}"
            raise ConfigError(msg) from None
        if self.score_space is not None:
            object.__setattr__(self, "score_space", parse_space(self.score_space))
        if self.calib_data is not None:
            object.__setattr__(self, "calib_data", Path(self.calib_data))
        if self.keep_float is not None:
            from fractalad_edge.quantize import float_regions

            if isinstance(self.keep_float, str):
                msg = f"keep_float is a sequence of float region names, got the string {self.keep_float!r}; pass e.g. ('csam', 'flow')"
                raise ConfigError(msg)
            object.__setattr__(self, "keep_float", tuple(region.value for region in float_regions(self.keep_float)))
        checks = {
            "opset": MIN_OPSET <= self.opset <= MAX_OPSET,
            "calib_count": self.calib_count >= 2,
            "anomaly_ratio": 0.0 <= self.anomaly_ratio < 1.0,
            "max_drop": self.max_drop >= 0.0,
            "parity_images": self.parity_images >= 1,
            "tolerance": self.tolerance > 0.0,
            "int8_weights": self.int8_weights in INT8_WEIGHT_RANGES,
            "quant_mode": self.quant_mode in QUANT_MODES,
        }
        allowed = {
            "opset": f"{MIN_OPSET}..{MAX_OPSET} (GridSample needs 16)",
            "calib_count": ">= 2",
            "anomaly_ratio": "in [0, 1)",
            "max_drop": ">= 0 points",
            "parity_images": ">= 1",
            "tolerance": "> 0",
            "int8_weights": " or ".join(INT8_WEIGHT_RANGES),
            "quant_mode": " or ".join(QUANT_MODES),
        }
        for name, ok in checks.items():
            if not ok:
                msg = f"export option {name}={getattr(self, name)!r} is out of range; allowed: {allowed[name]}"
                raise ConfigError(msg)
        if self.device is not None and (not isinstance(self.device, str) or not self.device):
            msg = f"device must be a device name such as 'cpu', 'cuda', 'gpu' or None, got {self.device!r}"
            raise ConfigError(msg)

    def explicit_options(self) -> tuple[str, ...]:
        """Names of the fields set to something other than their default (what check_export_request vets)."""
        defaults = ExportOptions()
        return tuple(f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(defaults, f.name))


def export_model(
    run_dir: str | Path,
    *,
    format: str | ModelFormat,  # noqa: A002 - the CLI's word
    out: str | Path,
    options: ExportOptions = ExportOptions(),  # noqa: B008 - frozen, so a shared default is safe
    progress: Callable[[str], None] | None = print,
    force: bool = False,
) -> ArtifactMetadata:
    """Export a training run to ``format`` in ``out``; return the written metadata.

    ``out`` must be new or empty; with ``force`` it may also hold an export of the same
    format, whose listed files are then replaced (other files there are kept).
    """
    say = progress or (lambda _message: None)
    spec = check_export_request(parse_format(format), options.precision, options.explicit_options())
    device = options.device or spec.default_device
    _check_device(spec, device)
    run_dir, out = Path(run_dir), Path(out)
    previous = _check_destination(out, run_dir, spec.format, force=force)
    run_metadata = read_metadata(run_dir)
    if run_metadata.format is not ModelFormat.TORCH:
        msg = (
            f"{run_dir} is a {run_metadata.format.value} artifact; export reads a training run (a torch artifact), "
            "pass the folder written by 'fractalad-edge train'"
        )
        raise ExportError(msg)
    _check_method(spec, options.precision, run_metadata)
    space = check_space(run_metadata.method, options.score_space or default_space(run_metadata.method))
    paths, object_placement = _calibration_sources(run_dir, options.calib_data, run_metadata)
    calibration, validation = build_calibration_sets(
        paths,
        CalibrationConfig(
            count=options.calib_count,
            validation_count=_validation_count(options),
            anomaly_ratio=options.anomaly_ratio,
            seed=options.calib_seed,
            image_size=run_metadata.input.height,
            object_placement=object_placement,
        ),
    )
    say(
        f"export {run_dir} -> {out}: {spec.format.value} {options.precision.value}; "
        f"{len(calibration)} calibration + {len(validation)} validation synthetic images from {len(paths)} normals"
    )
    from fractalad_edge.models.torch_format import load_model  # torch is imported when an export runs

    model = load_model(run_dir, run_metadata)
    model.output_space = space  # before any writer traces it: the exported graph outputs this space
    if space is not run_metadata.score_space:
        say(f"the run scores in the {run_metadata.score_space.value!r} space; this export outputs {space.value!r}")
    # the run as the export sees it, in the export's space (its calibration is read for its rule only)
    run_metadata = dataclasses.replace(run_metadata, score=dataclasses.replace(run_metadata.score, space=space))
    with StagedOutput(out) as staged:
        job = ExportJob(
            model=model,
            input_spec=run_metadata.input,
            precision=options.precision,
            opset=options.opset,
            device=device,
            directory=staged.files,
            scratch=staged.scratch,
            calibration=calibration,
            validation=validation,
            progress=say,
            int8_weights=options.int8_weights,
            quant_mode=options.quant_mode,
            max_drop=options.max_drop,
            keep_float=options.keep_float,
        )
        exported = spec.load_writer()(job)
        carried = _carry_memory_images(run_dir, run_metadata, staged.files)
        metadata = _check_and_calibrate(spec, exported, job, run_metadata, options, say, carried=carried)
        write_metadata(staged.files, metadata)
        staged.commit([f.path for f in metadata.files], manifest=METADATA_FILENAME, previous=previous)
    say(f"wrote {out} ({', '.join(f.path for f in metadata.files)}, {METADATA_FILENAME})")
    say(f"next: fractalad-edge predict {out} images/*.png --out preds/")
    return metadata


# ----------------------------------------------------------------------------- steps
def _check_and_calibrate(
    spec: FormatSpec,
    exported: ExportedModel,
    job: ExportJob,
    run_metadata: ArtifactMetadata,
    options: ExportOptions,
    say: Callable[[str], None],
    *,
    carried: tuple[str, ...] = (),
) -> ArtifactMetadata:
    """Refit thresholds with the exported runtime, check parity (and the int8 gate); the final metadata.

    ``carried``: files copied from the run into ``job.directory`` beside the model files, listed too.
    """
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.runtimes.torch import TorchBackend

    metadata = dataclasses.replace(
        run_metadata,
        format=spec.format,
        precision=options.precision,
        runtime=spec.runtime,
        files=describe_files(job.directory, (*exported.files, *carried)),
        input=exported.input_spec or run_metadata.input,
        calibration=None,
        parity=None,
        quantization=None,
        engine=exported.engine,
        package_version=package_version(),
        created=now_iso(),
    )
    # The reference is built after the writer ran: TorchBackend moves the module to channels_last.
    reference = Predictor(TorchBackend(job.model), run_metadata)
    backend = exported.open_backend()
    checked_with = _checked_with(exported.checked_with, backend)
    try:
        candidate = Predictor(backend, metadata)
        # keep the run's thresholding rule (F1 on synthetic anomalies, or a target false-alarm rate)
        rule = ThresholdRule() if run_metadata.calibration is None else run_metadata.calibration.rule
        cal = job.calibration
        calibration = calibrate_scores(candidate, cal.images, cal.labels, cal.masks, rule=rule, seed=options.calib_seed)
        candidate = candidate.with_calibration(calibration)
        say(
            f"thresholds refitted with {checked_with} on {len(cal)} synthetic images "
            f"({calibration.num_normal} normal, {calibration.num_anomalous} fractal anomalies; {calibration.rule.label}): "
            f"image {calibration.image_threshold:.4g}, pixel {calibration.pixel_threshold:.4g}"
        )
        parity = compare_maps(
            reference,
            candidate,
            job.validation.images[: options.parity_images],
            tolerance=tolerance_for(exported.checked_precision, options.tolerance, metadata.score_space),
        )
        say(format_parity(parity, checked_with=checked_with, recorded_only=exported.checked_precision in RECORDED_ONLY))
        enforce_parity(parity, exported.checked_precision, what=f"the {spec.format.value} {options.precision.value} export")
        quantization = None
        if exported.quantization is not None:
            from fractalad_edge.quantize.gate import accuracy_gate

            toolchain, mode = exported.quantization
            quantization = accuracy_gate(
                reference,
                candidate,
                job.validation,
                max_drop=options.max_drop,
                toolchain=toolchain,
                mode=mode,
                calibration=job.calibration,
                allow_drop=options.allow_accuracy_drop,
                ignored_layers=exported.float_layers,
            )
            say(
                f"int8 accuracy gate ({toolchain} {mode}): image AUROC {quantization.float_image_auroc:.4f} -> "
                f"{quantization.quantized_image_auroc:.4f}, pixel AUROC {quantization.float_pixel_auroc:.4f} -> "
                f"{quantization.quantized_pixel_auroc:.4f} (max drop {quantization.max_drop} points) -> "
                f"{'passed' if quantization.passed else 'FAILED (kept: allow_accuracy_drop)'}"
            )
            if exported.open_bf16_backend is not None:
                quantization = _bf16_gate(exported.open_bf16_backend, reference, metadata, calibration, job, quantization, say)
    finally:
        backend.close()
    return dataclasses.replace(metadata, calibration=calibration, parity=parity, quantization=quantization)


def _bf16_gate(
    open_backend: Callable[[], Backend],
    reference: Predictor,
    metadata: ArtifactMetadata,
    calibration: ScoreCalibration,
    job: ExportJob,
    quantization: QuantizationReport,
    say: Callable[[str], None],
) -> QuantizationReport:
    """The int8 gate again with the float layers in bf16; the verdict goes into the report (a failure refuses nothing)."""
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.quantize.gate import bf16_gate

    backend = open_backend()
    try:
        checked = bf16_gate(reference, Predictor(backend, metadata).with_calibration(calibration), job.validation, quantization)
    finally:
        backend.close()
    say(
        f"int8 with bf16 float layers: image AUROC {checked.bf16_image_auroc:.4f}, pixel AUROC {checked.bf16_pixel_auroc:.4f} -> "
        + ("passed: runs bf16 by default on CPUs with bf16 arithmetic" if checked.bf16_passed else "failed: runs f32")
    )
    return checked


def _carry_memory_images(run_dir: Path, run_metadata: ArtifactMetadata, directory: Path) -> tuple[str, ...]:
    """Copy the run's list of memory images (already sha256-checked on read) into the export, so its
    ``calibrate`` leaves those images out too; nothing for a model without one."""
    listed = listed_memory_images(run_metadata)
    if listed is None:
        return ()
    shutil.copyfile(resolve_inside(run_dir, listed), directory / listed)
    return (listed,)


def _validation_count(options: ExportOptions) -> int:
    # int8 needs a validation set large enough for a meaningful AUROC in the accuracy gate.
    if options.precision is Precision.INT8:
        return max(options.parity_images, options.calib_count // 2)
    return options.parity_images


def _calibration_sources(run_dir: Path, calib_data: Path | None, run_metadata: ArtifactMetadata) -> tuple[list[Path], bool]:
    """The normal images to calibrate on, and whether the run placed anomalies on the object.

    A memory model's own images are left out of ``calib_data``: by content where the run
    records them (copies elsewhere too), else by path (a run built before the list: its
    config.json names them), as ``calibrate`` does.
    """
    from fractalad_edge.data.datasets import find_training_images

    config_path = run_dir / RUN_CONFIG_FILENAME
    config: dict = {}
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as exc:
            msg = f"{config_path} is not valid JSON ({exc}); pass calib_data (--calib-data) with a folder of normal images"
            raise CalibrationError(msg) from None
    folder = calib_data if calib_data is not None else config.get("data")
    if folder is None:
        msg = (
            f"no calibration images: {run_dir} has no {RUN_CONFIG_FILENAME} naming its training folder; pass calib_data "
            "(--calib-data) with a folder of normal images"
        )
        raise CalibrationError(msg)
    synth = config.get("train", {}).get("synth", {}) if isinstance(config.get("train"), dict) else {}
    placement = bool(synth.get("object_placement", False))
    if not config.get("holdout"):
        return find_training_images(folder), placement
    # a memory model: images in the memory score near zero, so calibrate on the held-out ones
    if calib_data is None:
        return [Path(p) for p in config["holdout"]], placement
    paths = find_training_images(folder)
    digests = read_memory_images(run_dir, run_metadata)
    if digests is not None:
        paths, _ = split_memory_images(paths, digests)
    elif (in_memory := memory_paths_of_run(config)) is not None:
        excluded = {p.resolve() for p in in_memory}
        paths = [p for p in paths if p.resolve() not in excluded]
    if not paths:
        msg = (
            f"--calib-data {calib_data}: every image there is in the model's memory (it scores near zero, so thresholds "
            "fitted on it would flag every new frame); pass other normal images, or leave --calib-data out to use the "
            "images the build held out"
        )
        raise CalibrationError(msg)
    return paths, placement


def _checked_with(runtime: str, backend: Backend) -> str:
    """What thresholds and parity were checked with, and the precision it resolved (e.g. OpenVINO running a bf16 hint as f32 on AVX2)."""
    ran = backend.inference_precision()
    return runtime + (f", runs {ran}" if ran else "")


def _check_method(spec: FormatSpec, precision: Precision, run_metadata: ArtifactMetadata) -> None:
    """The memory search needs float32: squared distances are differences of large squared norms.

    ONNX Runtime and OpenVINO keep it in float by graph region (quantize.FloatRegion.MEMORY);
    a TensorRT engine built in fp16 or int8 would run it in reduced precision.
    """
    method = run_metadata.method.value
    if method != "fractalad" and spec.format is ModelFormat.TENSORRT and precision is not Precision.FP32:
        msg = (
            f"a {method!r} model cannot run as a TensorRT {precision.value} engine (its nearest-neighbour search needs "
            "float32); export it to tensorrt with --precision fp32, or to openvino/onnx for int8"
        )
        raise ExportError(msg)


def _check_destination(out: Path, run_dir: Path, format: ModelFormat, *, force: bool) -> tuple[str, ...]:  # noqa: A002
    """Refuse, before any work, every ``out`` whose files export did not write; the files a forced export replaces."""
    check_output_folder(out)
    if out.exists() and out.resolve() == run_dir.resolve():
        msg = f"--out {out} is the training run itself; choose another folder (e.g. {run_dir}-{format.value})"
        raise ExportError(msg)
    if not out.exists() or folder_is_empty(out):
        return ()
    new_folder = f"choose a new or empty folder (e.g. {out}-{format.value})"
    if any((out / name).exists() for name in (CHECKPOINT_FILENAME, CHECKPOINT_STATE, RUN_CONFIG_FILENAME)):
        msg = f"--out {out} is a training run (its weights and checkpoints would be lost); export never writes into it: {new_folder}"
        raise OutputExistsError(msg)
    try:
        existing = read_metadata(out, verify=False)
    except FractalADError:
        msg = f"--out {out} is not empty and holds no model exported by fractalad-edge; export never writes into it: {new_folder}"
        raise OutputExistsError(msg) from None
    if existing.format is not format:
        msg = (
            f"--out {out} holds a {existing.format.value} export; --force replaces only an export of the same format "
            f"({format.value}): {new_folder}"
        )
        raise OutputExistsError(msg)
    if not force:
        msg = (
            f"--out {out} already holds a {format.value} export; pass --force to replace its files "
            f"({', '.join(f.path for f in existing.files)}, {METADATA_FILENAME}; other files there are kept), or {new_folder}"
        )
        raise OutputExistsError(msg)
    return tuple(f.path for f in existing.files)


def _check_device(spec: FormatSpec, device: str) -> None:
    """The device must be one the format's runtime runs on (checked before any work)."""
    from fractalad_edge.runtimes.base import get_runtime_entry

    devices = get_runtime_entry(spec.runtime).devices
    if device.split(":")[0].lower() not in devices:
        msg = f"format {spec.format.value!r} is checked on its runtime {spec.runtime!r}, which runs on {', '.join(devices)}; got device {device!r}"
        raise ExportError(msg)


__all__ = ["ExportOptions", "export_model"]
