"""The declarative table of export formats, checked before any work starts.

Each format lists the precisions it can produce, the export options it reads, the runtime
that runs it by default and the packages the export needs. ``check_export_request``
refuses an unknown format, a precision the format cannot produce, an option it would
ignore, or a missing package, with one message that says what is accepted, so a
ten-minute export never fails at its last step for a reason known at its first (the
ultralytics habit, without its boolean-flag dispatch).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from fractalad_edge.artifact import EngineInfo, InputSpec, ModelFormat, Precision
from fractalad_edge.errors import ExportError, RuntimeNotAvailableError
from fractalad_edge.export.defaults import DEFAULT_INT8_WEIGHTS, DEFAULT_MAX_DROP, DEFAULT_QUANT_MODE
from fractalad_edge.extras import MODULE_EXTRAS, install_hint, missing_modules, require_modules

if TYPE_CHECKING:
    from fractalad_edge.calibration.dataset import CalibrationSet
    from fractalad_edge.runtimes.base import Backend

#: Options every non-torch format reads: the calibration set (thresholds are refitted with
#: the exported runtime) and the parity check against the torch model.
_CALIBRATION_OPTIONS = (
    "precision", "calib_data", "calib_count", "calib_seed", "anomaly_ratio", "parity_images", "tolerance", "score_space",
)
#: The int8 accuracy gate after quantization (every int8 format).
_GATE_OPTIONS = ("max_drop", "allow_accuracy_drop")
#: Options that only mean something for int8: the gate, the onnx weight range, the
#: openvino quantization mode and its float regions.
INT8_OPTIONS = (*_GATE_OPTIONS, "int8_weights", "quant_mode", "keep_float")
#: int8 weight ranges of the onnx format: "reduced" (7-bit, every x86 CPU) or "full" (8-bit).
INT8_WEIGHT_RANGES = ("reduced", "full")
#: NNCF modes of the openvino format (fractalad_edge.quantize.openvino.MODES, kept here torch- and nncf-free).
QUANT_MODES = ("ptq", "accuracy-control")
_GRAPH_OPTIONS = ("opset", "device")


@dataclass(frozen=True, kw_only=True)
class ExportJob:
    """What a format's artifact writer is given: the model, where to write, the calibration data."""

    model: Any  # FractalAD in eval mode, fp32, CPU (typed loosely: this module stays torch-free)
    input_spec: InputSpec
    precision: Precision
    opset: int
    device: str
    directory: Path  # the artifact's files go here
    scratch: Path  # intermediate files (fp32 ONNX before quantization, calibration caches)
    calibration: CalibrationSet  # int8 calibration (and threshold refit) samples
    validation: CalibrationSet  # held-out samples: parity images, int8 accuracy gate
    progress: Callable[[str], None]
    int8_weights: str = DEFAULT_INT8_WEIGHTS  # onnx int8 weight range, one of INT8_WEIGHT_RANGES
    quant_mode: str = DEFAULT_QUANT_MODE  # openvino int8, one of QUANT_MODES
    max_drop: float = DEFAULT_MAX_DROP  # int8: allowed AUROC drop in points (the gate; accuracy-control's target)
    keep_float: tuple[str, ...] | None = None  # openvino int8: FloatRegion values kept float; None: the defaults


@dataclass(frozen=True, kw_only=True)
class ExportedModel:
    """What a writer produced, and how to run it to refit thresholds and check parity."""

    files: tuple[str, ...]  # relative to ExportJob.directory, hashed into metadata
    open_backend: Callable[[], Backend]  # the exported runtime on the written files
    checked_with: str  # said in the parity line, e.g. "onnxruntime cpu"
    checked_precision: Precision  # precision of what open_backend runs (sets the parity tolerance)
    engine: EngineInfo | None = None
    quantization: tuple[str, str] | None = None  # (toolchain, mode) of an int8 export
    float_layers: tuple[str, ...] = ()  # int8: graph nodes the quantizer left in float
    input_spec: InputSpec | None = None  # the graph's input, where the writer changed it (None: the run's)
    #: int8 where the export device has bf16 arithmetic: the same files with the float layers
    #: in bf16, which the gate checks too (quantization.bf16_passed); None: not offered
    open_bf16_backend: Callable[[], Backend] | None = None


@dataclass(frozen=True, kw_only=True)
class FormatSpec:
    """What one export format produces and accepts."""

    format: ModelFormat
    precisions: tuple[Precision, ...]  # the first is the default
    options: tuple[str, ...]  # ExportOptions fields this format reads
    runtime: str  # the runtime written into metadata (Predictor's default)
    requires: tuple[str, ...]  # modules the export imports
    precision_requires: Mapping[Precision, tuple[str, ...]] = field(default_factory=dict)
    requires_any: tuple[str, ...] = ()  # at least one of these (e.g. a runtime to check the result with)
    default_device: str = "cpu"  # where the export checks and calibrates the exported model
    writer: str  # "module:function" taking an ExportJob, returning an ExportedModel; imported when used

    def modules_for(self, precision: Precision) -> tuple[str, ...]:
        return self.requires + tuple(self.precision_requires.get(precision, ()))

    def load_writer(self) -> Callable[[ExportJob], ExportedModel]:
        module, _, function = self.writer.partition(":")
        return getattr(importlib.import_module(module), function)


FORMATS: Mapping[ModelFormat, FormatSpec] = MappingProxyType(
    {
        spec.format: spec
        for spec in (
            FormatSpec(
                format=ModelFormat.TORCH,
                precisions=(Precision.FP32,),
                options=_CALIBRATION_OPTIONS + ("device",),
                runtime="torch",
                requires=("torch", "safetensors"),
                writer="fractalad_edge.export.torch:write_torch_artifact",
            ),
            FormatSpec(
                format=ModelFormat.ONNX,
                precisions=(Precision.FP32, Precision.INT8),
                options=_CALIBRATION_OPTIONS + _GATE_OPTIONS + ("int8_weights",) + _GRAPH_OPTIONS,
                runtime="onnxruntime",
                requires=("torch", "onnx", "onnxscript", "onnxruntime"),
                writer="fractalad_edge.export.onnx:write_onnx_artifact",
            ),
            FormatSpec(
                format=ModelFormat.OPENVINO,
                precisions=(Precision.FP32, Precision.FP16, Precision.BF16, Precision.INT8),
                options=_CALIBRATION_OPTIONS + _GATE_OPTIONS + ("quant_mode", "keep_float") + _GRAPH_OPTIONS,
                runtime="openvino",
                requires=("torch", "onnx", "onnxscript", "openvino"),
                precision_requires={Precision.INT8: ("nncf",)},
                writer="fractalad_edge.export.openvino:write_openvino_artifact",
            ),
            FormatSpec(
                format=ModelFormat.TENSORRT,
                precisions=(Precision.FP32, Precision.FP16, Precision.INT8),
                options=_CALIBRATION_OPTIONS + _GATE_OPTIONS + _GRAPH_OPTIONS,
                runtime="tensorrt",
                requires=("torch", "onnx", "onnxscript"),
                # int8 is a symmetric Q/DQ ONNX made with onnxruntime's quantizer (no TensorRT needed);
                # without TensorRT the ONNX is checked with onnxruntime and built at first load
                precision_requires={Precision.INT8: ("onnxruntime",)},
                requires_any=("tensorrt", "onnxruntime"),
                default_device="cuda",
                writer="fractalad_edge.export.tensorrt:write_tensorrt_artifact",
            ),
        )
    }
)


def parse_format(value: str | ModelFormat) -> ModelFormat:
    try:
        return ModelFormat(value)
    except ValueError:
        msg = f"unknown export format {value!r}; choose one of {', '.join(f.value for f in FORMATS)}"
        raise ExportError(msg) from None


def parse_precision(value: str | Precision) -> Precision:
    try:
        return Precision(value)
    except ValueError:
        msg = f"unknown precision {value!r}; choose one of {', '.join(p.value for p in Precision)}"
        raise ExportError(msg) from None


def check_export_request(
    format: str | ModelFormat, precision: str | Precision, options: Collection[str] = ()
) -> FormatSpec:
    """Validate a request against FORMATS before any work; return the format's spec.

    ``options`` names the export options the caller set explicitly (not left at their
    default); an option the format would ignore is refused rather than silently dropped.
    """
    spec = FORMATS[parse_format(format)]
    precision = parse_precision(precision)
    if precision not in spec.precisions:
        msg = (
            f"format {spec.format.value!r} cannot be exported at precision {precision.value!r}; it accepts "
            f"{', '.join(p.value for p in spec.precisions)}. "
            + ("For int8 choose openvino, onnx or tensorrt." if precision is Precision.INT8 else "")
        ).strip()
        raise ExportError(msg)
    unknown = [name for name in options if name not in spec.options]
    if unknown:
        msg = (
            f"format {spec.format.value!r} does not take option(s) {', '.join(sorted(unknown))}; it accepts "
            f"{', '.join(spec.options)}"
        )
        raise ExportError(msg)
    int8_only = [name for name in options if name in INT8_OPTIONS]
    if int8_only and precision is not Precision.INT8:
        msg = (
            f"option(s) {', '.join(sorted(int8_only))} apply to int8 quantization and mean nothing at "
            f"precision {precision.value!r}; drop them or export with precision int8"
        )
        raise ExportError(msg)
    what = f"exporting to {spec.format.value} ({precision.value})"
    require_modules(spec.modules_for(precision), what=what)
    if spec.requires_any and len(missing_modules(spec.requires_any)) == len(spec.requires_any):
        extras = sorted({MODULE_EXTRAS.get(name, name) for name in spec.requires_any})
        msg = (
            f"{what} needs one of {', '.join(spec.requires_any)} to check the exported model, and none is installed; "
            f"install one: {' or '.join(install_hint(e) for e in extras)}"
        )
        raise RuntimeNotAvailableError(msg)
    return spec


__all__ = [
    "FORMATS",
    "ExportJob",
    "ExportedModel",
    "INT8_OPTIONS",
    "INT8_WEIGHT_RANGES",
    "QUANT_MODES",
    "MODULE_EXTRAS",
    "FormatSpec",
    "check_export_request",
    "missing_modules",
    "parse_format",
    "parse_precision",
    "require_modules",
]
