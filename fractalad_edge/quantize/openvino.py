"""INT8 for OpenVINO with NNCF, applied to the OpenVINO model (not to the torch module).

NNCF's OpenVINO backend needs nothing but ``openvino`` and ``nncf``; the torch backend
would compile a C++ extension at first use, which edge build machines often cannot do.

Two modes:

* ``ptq``: ``nncf.quantize`` with every calibration sample (``subset_size=len(calibration)``),
  fast bias correction on;
* ``accuracy-control``: ``nncf.quantize_with_accuracy_control``, which reverts the most
  harmful quantizers to float until pixel AUROC on the held-out synthetic validation set
  is within ``max_drop`` points of the float model.

Float regions (:class:`~fractalad_edge.quantize.FloatRegion`) are found in the graph and
passed as an ``IgnoredScope`` by node name. See :data:`DEFAULT_KEEP_FLOAT` for the measured
choice. The teacher's stem joined the defaults on 2026-11-28: on magnetic tile, quantizing it
cost 1.78 image-AUROC points on the real test set and keeping it float gained 0.87; on
bottle both are within 0.35 points of fp32 (docs/experiments/int8-float-regions.md). For
magnetic tile's ``memory`` model, quantizing it cost 1.34 image points while the synthetic
gate saw 0.39 (2026-12-01, docs/experiments/edge-speed.md), so it stays float.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fractalad_edge.artifact import InputSpec
from fractalad_edge.errors import CalibrationError, ConfigError, QuantizationError
from fractalad_edge.extras import require
from fractalad_edge.quantize import (
    DEFAULT_KEEP_FLOAT,
    TEACHER_SCOPE,
    MEMORY_SCOPE,
    MEMORY_SEARCH_OPS,
    FloatRegion,
    float_regions,
    in_teacher_stem,
    mask_at,
    model_input,
)

if TYPE_CHECKING:
    import openvino as ov

    from fractalad_edge.calibration.dataset import CalibrationSample, CalibrationSet

MODES = ("ptq", "accuracy-control")
PRESETS = ("performance", "mixed")

_CONVOLUTIONS = frozenset({"Convolution", "GroupConvolution"})
_LEAVES = frozenset({"Constant", "Parameter"})


def float_node_names(model: ov.Model, keep_float: Iterable[str | FloatRegion]) -> list[str]:
    """Friendly names of the ops that make up the requested float regions, in graph order."""
    regions = float_regions(keep_float)
    names: set[str] = set()
    ops = list(model.get_ordered_ops())
    if FloatRegion.CSAM in regions:
        names.update(_csam_ops(ops))
    if FloatRegion.FLOW in regions:
        for op in ops:
            if op.get_type_name() == "GridSample":
                names.add(op.get_friendly_name())
                names.update(_upstream_until_conv(op.input_value(1).get_node()))
    if FloatRegion.CLASSIFIER in regions:
        names.update(_output_path_to_conv(model))
    if FloatRegion.TEACHER_STEM in regions:
        names.update(_teacher_stem_ops(model, ops))
    if FloatRegion.MEMORY in regions:
        names.update(_memory_ops(ops))
    return [op.get_friendly_name() for op in ops if op.get_friendly_name() in names]


def _teacher_stem_ops(model: ov.Model, ops: Sequence[Any]) -> set[str]:
    height = model.inputs[0].get_partial_shape()[2].get_length()
    found = set()
    for op in ops:
        if op.get_output_size() == 0 or op.get_type_name() in _LEAVES:
            continue
        shape = op.get_output_partial_shape(0)
        if shape.rank.is_static and shape.is_static:
            if in_teacher_stem(op.get_friendly_name(), [d.get_length() for d in shape], height):
                found.add(op.get_friendly_name())
    if not found:
        msg = (
            f"float region {FloatRegion.TEACHER_STEM.value!r}: no op named {TEACHER_SCOPE}... at stride <= 4 in the model; "
            "was it converted from fractalad_edge.export.onnx.export_onnx's graph?"
        )
        raise QuantizationError(msg)
    return found


def _memory_ops(ops: Sequence[Any]) -> set[str]:
    """The memory branch (its module scope) and everything downstream of its search (ReduceMin/TopK)."""
    found = {op.get_friendly_name() for op in ops if op.get_friendly_name().startswith(MEMORY_SCOPE) and op.get_type_name() not in _LEAVES}
    stack = [op for op in ops if op.get_type_name() in MEMORY_SEARCH_OPS]
    seen: set[str] = set()
    while stack:
        current = stack.pop()
        name = current.get_friendly_name()
        if name in seen or current.get_type_name() == "Result":
            continue
        seen.add(name)
        found.add(name)
        for output in current.outputs():
            stack.extend(target.get_node() for target in output.get_target_inputs())
    return found


def _csam_ops(ops: Sequence[Any]) -> set[str]:
    """The cosine attention: each channel sum (ReduceSum), the product it sums, and everything
    after it up to the next convolution (norms, clamp, division, ``(1 - cos) / 2``, ``a * s``).

    Anchored on ReduceSum, which the backbones and the head never use, so nothing else is
    caught even in an unnormalised graph where Clip became Minimum/Maximum and BatchNorm
    became Subtract/Divide.
    """
    found: set[str] = set()
    for op in ops:
        if op.get_type_name() != "ReduceSum":
            continue
        product = op.input_value(0).get_node()
        if product.get_type_name() == "Multiply":
            found.add(product.get_friendly_name())
        stack = [op]
        while stack:
            current = stack.pop()
            if current.get_friendly_name() in found and current is not op:
                continue
            found.add(current.get_friendly_name())
            for output in current.outputs():
                for target in output.get_target_inputs():
                    node = target.get_node()
                    if node.get_type_name() not in _CONVOLUTIONS | {"Result"}:
                        stack.append(node)
    return found


def _upstream_until_conv(node: Any) -> set[str]:
    """The grid's producers back to (and including) the flow convolution."""
    found: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        name, kind = current.get_friendly_name(), current.get_type_name()
        if name in found or kind in _LEAVES:
            continue
        found.add(name)
        if kind in _CONVOLUTIONS:
            continue
        stack.extend(value.get_node() for value in current.input_values())
    return found


def _output_path_to_conv(model: ov.Model) -> set[str]:
    """Everything between each output and its nearest convolution: the logit conv, its bias,
    the final upsampling and, in a ``sigmoid``-space graph, the sigmoid (quantizing the logit
    itself would step the map). A ``logit`` graph ends at the upsampling; the walk is the same."""
    found: set[str] = set()
    for result in model.get_results():
        found.update(_upstream_until_conv(result.input_value(0).get_node()))
    return found


def quantize_openvino_model(
    model: ov.Model,
    calibration: CalibrationSet,
    input_spec: InputSpec,
    *,
    validation: CalibrationSet | None = None,
    mode: str = "ptq",
    keep_float: Sequence[str | FloatRegion] = DEFAULT_KEEP_FLOAT,
    preset: str = "performance",
    max_drop: float = 0.5,
    max_reverted: int = 5,
) -> ov.Model:
    """An INT8 copy of ``model`` calibrated on ``calibration`` (real normals + fractal anomalies).

    ``max_drop`` (pixel AUROC points) and ``max_reverted`` (how many quantizer groups NNCF
    may put back to float) are used by ``accuracy-control`` only. NNCF re-ranks every group
    on the validation set before each reversion (minutes per step for this model on two CPU
    cores), hence the small cap. The final check for every mode is
    :func:`fractalad_edge.quantize.gate.accuracy_gate`.
    """
    nncf = require("nncf", "openvino")  # with OpenVINO's telemetry declined (extras.require)
    if mode not in MODES:
        msg = f"OpenVINO quantization mode must be one of {MODES}, got {mode!r}"
        raise ConfigError(msg)
    if preset not in PRESETS:
        msg = f"NNCF preset must be one of {PRESETS}, got {preset!r}"
        raise ConfigError(msg)
    if len(calibration) == 0:
        msg = "the calibration set is empty; give --calib-data a folder of normal images and a count >= 2"
        raise CalibrationError(msg)

    def transform(sample: CalibrationSample) -> np.ndarray:
        return model_input(sample, input_spec)

    ignored = float_node_names(model, keep_float)
    common: dict[str, Any] = {
        "preset": nncf.QuantizationPreset(preset),
        "subset_size": len(calibration),
        "ignored_scope": nncf.IgnoredScope(names=ignored) if ignored else None,
    }
    if mode == "accuracy-control":
        if validation is None or len(validation) == 0:
            msg = "accuracy-control quantization needs a validation set; build one with CalibrationConfig(validation_count > 0)"
            raise CalibrationError(msg)
        _require_both_classes(validation)
        if max_drop < 0 or max_reverted < 1:
            msg = f"max_drop must be >= 0 AUROC points and max_reverted >= 1, got {max_drop} and {max_reverted}"
            raise ConfigError(msg)
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    dataset = nncf.Dataset(calibration, transform)
    with _quiet_nncf():
        try:
            if mode == "ptq":
                return nncf.quantize(model, dataset, **common)
            return nncf.quantize_with_accuracy_control(
                model,
                dataset,
                nncf.Dataset(validation, transform),
                _pixel_auroc_validation(input_spec),
                max_drop=max_drop / 100.0,
                advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                    max_num_iterations=max_reverted, ranking_subset_size=min(len(validation), 16)
                ),
                **common,
            )
        except nncf.ValidationError as exc:  # e.g. an ignored-scope name NNCF cannot find
            msg = f"NNCF refused the model: {exc}"
            raise QuantizationError(msg) from exc


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF logs one INFO line per op it leaves unquantized (hundreds): at NNCF's default level
    keep warnings only, then restore (a logger the user set to DEBUG is left alone)."""
    logger = logging.getLogger("nncf")
    level = logger.level
    if level in (logging.NOTSET, logging.INFO):
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _require_both_classes(validation: CalibrationSet) -> None:
    labels = validation.labels
    if labels.all() or not labels.any():
        msg = (
            f"the validation set needs normal and anomalous samples to measure AUROC, got {int(labels.sum())} "
            f"anomalous of {len(labels)}; use an anomaly_ratio strictly between 0 and 1"
        )
        raise CalibrationError(msg)


def _pixel_auroc_validation(input_spec: InputSpec) -> Any:
    """NNCF validation function: pixel AUROC of the maps against the synthetic masks.

    Pixel AUROC is the stable metric on a few dozen images (image AUROC moves in steps of
    1 / (normals x anomalies)). The per-sample maps are returned too, so NNCF ranks
    quantizers by how much they change the output instead of by a per-image metric that a
    normal image alone cannot define.
    """
    from fractalad_edge.metrics import pixel_auroc

    def validate(compiled_model: Any, samples: Iterable[CalibrationSample]) -> tuple[float, list[list[np.ndarray]]]:
        maps, masks = [], []
        for sample in samples:
            output = np.asarray(compiled_model(model_input(sample, input_spec))[0], dtype=np.float32)
            maps.append(output.reshape(input_spec.height, input_spec.width))
            masks.append(mask_at(sample.mask, input_spec.height, input_spec.width))
        values = [[m] for m in maps]
        stacked = np.stack(masks)
        if not stacked.any() or stacked.all():
            return float("nan"), values  # NNCF probes with a single item to learn the return type
        return pixel_auroc(stacked, np.stack(maps)), values

    return validate
