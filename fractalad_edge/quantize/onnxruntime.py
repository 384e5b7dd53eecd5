"""Static INT8 (QDQ) quantization of an ONNX model with onnxruntime's quantizer.

Recipe: ``quant_pre_process`` (shape inference and graph optimisation, so the quantizer
sees fused Conv+BN and known shapes), then ``quantize_static`` in QDQ format with
per-channel symmetric INT8 weights and unsigned (asymmetric) UINT8 activations: on x86
CPUs onnxruntime's fast INT8 convolution kernels take U8 activations x S8 weights, and
signed activations measured no faster than fp32 on this project's CPU. The QDQ graph stays
a plain ONNX file any runtime can read (OpenVINO runs it too).

The calibration reader feeds the same samples as every other toolchain: real normal images
with and without fractal anomalies, pre-processed exactly as production frames are.

Measured on the trained bottle model (C = 32; docs/experiments/ort-int8-avx2.md), judged on the
held-out *synthetic* validation set as the export gate does (pixel AUROC drop, points):

* weights ``reduce_range`` (7-bit) is required on CPUs without VNNI: full-range S8 weights
  saturate ``vpmaddubsw``'s int16 sums on AVX2 and the maps collapse;
* calibration: entropy 0.46, minmax 0.50, percentile (99.999) 0.58. Entropy is the default;
* U8 weights (no saturation, full range) lose nothing (0.00) but run 3x *slower* than
  fp32 on AVX2; quantizing only Conv inputs runs no faster than fp32, because without a
  quantized output onnxruntime cannot fuse QLinearConv;
* with 7-bit weights, the teacher's stem (FloatRegion.TEACHER_STEM) is where the real test
  sets lose: quantized, it cost 0.82 pixel-AUROC points on bottle and 8.04 image-AUROC
  points on magnetic tile; kept in float (a default region since 2026-11-28), 0.00 and 0.60.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    model_input,
)

if TYPE_CHECKING:
    import onnx

    from fractalad_edge.calibration.dataset import CalibrationSet

#: calibration methods onnxruntime offers that this module accepts
CALIBRATE_METHODS = ("minmax", "entropy", "percentile")

#: bound the activations the calibrator holds in memory at once (each one is a full set of
#: intermediate tensors of one image)
_CALIBRATION_CHUNK = 8


def onnx_float_node_names(model: onnx.ModelProto, keep_float: Iterable[str | FloatRegion]) -> list[str]:
    """Names of the nodes that make up the requested float regions (nodes need names)."""
    regions = float_regions(keep_float)
    nodes = list(model.graph.node)
    producer = {output: node for node in nodes for output in node.output}
    names: set[str] = set()
    if FloatRegion.CSAM in regions:
        names.update(_csam_nodes(nodes, producer))
    if FloatRegion.FLOW in regions:
        for node in nodes:
            if node.op_type == "GridSample":
                names.add(node.name)
                names.update(_upstream_until_conv(node.input[1], producer))
    if FloatRegion.CLASSIFIER in regions:
        # the logit conv, its upsampling and (sigmoid-space graphs) the sigmoid: quantizing the logit would step the map
        for output in model.graph.output:
            names.update(_upstream_until_conv(output.name, producer))
    if FloatRegion.TEACHER_STEM in regions:
        names.update(_teacher_stem_nodes(model))
    if FloatRegion.MEMORY in regions:
        names.update(_memory_nodes(nodes))
    return [node.name for node in nodes if node.name in names]


def _teacher_stem_nodes(model: onnx.ModelProto) -> set[str]:
    onnx = require("onnx", "export")
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    shapes = {
        info.name: [d.dim_value for d in info.type.tensor_type.shape.dim]
        for info in [*graph.input, *graph.value_info, *graph.output]
    }
    height = shapes[graph.input[0].name][2]
    found = {node.name for node in graph.node if node.output and in_teacher_stem(node.name, shapes.get(node.output[0], []), height)}
    if not found:
        msg = (
            f"float region {FloatRegion.TEACHER_STEM.value!r}: no node named {TEACHER_SCOPE}... at stride <= 4 in the graph; "
            "was it exported by fractalad_edge.export.onnx.export_onnx?"
        )
        raise QuantizationError(msg)
    return found


def _memory_nodes(nodes: Sequence[Any]) -> set[str]:
    """The memory branch (its module scope) and everything downstream of its search (ReduceMin/TopK)."""
    consumers: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = {node.name for node in nodes if node.name.startswith(MEMORY_SCOPE)}
    stack = [node for node in nodes if node.op_type in MEMORY_SEARCH_OPS]
    seen: set[str] = set()
    while stack:
        current = stack.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        found.add(current.name)
        for output in current.output:
            stack.extend(consumers.get(output, []))
    return found


def _csam_nodes(nodes: Sequence[Any], producer: dict[str, Any]) -> set[str]:
    """The cosine attention, anchored on ReduceSum (used nowhere else in the graph): the
    channel products it sums and everything after it up to the next convolution."""
    consumers: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: set[str] = set()
    for node in nodes:
        if node.op_type != "ReduceSum":
            continue
        product = producer.get(node.input[0])
        if product is not None and product.op_type == "Mul":
            found.add(product.name)
        stack = [node]
        while stack:
            current = stack.pop()
            if current.name in found and current is not node:
                continue
            found.add(current.name)
            for output in current.output:
                stack.extend(c for c in consumers.get(output, []) if c.op_type != "Conv")
    return found


def _upstream_until_conv(tensor: str, producer: dict[str, Any]) -> set[str]:
    """Nodes between ``tensor`` and the nearest convolution(s) above it, the convolutions included."""
    found: set[str] = set()
    stack = [tensor]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in found or node.op_type == "Constant":
            continue
        found.add(node.name)
        if node.op_type != "Conv":
            stack.extend(name for name in node.input if name)
    return found


class _SampleReader:
    """onnxruntime ``CalibrationDataReader`` over a calibration set, one image per batch."""

    def __init__(self, calibration: CalibrationSet, input_spec: InputSpec, input_name: str) -> None:
        self._calibration = calibration
        self._spec = input_spec
        self._name = input_name
        self._start, self._end = 0, len(calibration)
        self._position = 0

    def get_next(self) -> dict[str, Any] | None:
        if self._position >= self._end:
            return None
        sample = self._calibration[self._position]
        self._position += 1
        return {self._name: model_input(sample, self._spec)}

    def __len__(self) -> int:
        return len(self._calibration)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start, self._end = start_index, min(end_index, len(self._calibration))
        self._position = self._start

    def rewind(self) -> None:
        self._position = self._start


def quantize_onnx_model(
    fp32_path: Path,
    out_path: Path,
    calibration: CalibrationSet,
    input_spec: InputSpec,
    *,
    calibrate_method: str = "entropy",
    keep_float: Sequence[str | FloatRegion] = DEFAULT_KEEP_FLOAT,
    reduce_range: bool = True,
    symmetric: bool = False,
) -> tuple[str, ...]:
    """Write an INT8 QDQ copy of ``fp32_path`` to ``out_path``, calibrated on ``calibration``.

    ``symmetric=True`` writes what TensorRT's ONNX parser accepts: signed INT8 activations
    and weights, every zero point 0, full 8-bit range (see quantize/tensorrt.py).
    Returns the names of the nodes left in float, as named in the quantized graph.
    """
    onnx = require("onnx", "export")
    quantization = require("onnxruntime.quantization", "onnxruntime")
    shape_inference = require("onnxruntime.quantization.shape_inference", "onnxruntime")
    if calibrate_method not in CALIBRATE_METHODS:
        msg = f"calibrate_method must be one of {CALIBRATE_METHODS}, got {calibrate_method!r}"
        raise ConfigError(msg)
    if len(calibration) == 0:
        msg = "the calibration set is empty; give --calib-data a folder of normal images and a count >= 2"
        raise CalibrationError(msg)
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    method = {
        "minmax": quantization.CalibrationMethod.MinMax,
        "entropy": quantization.CalibrationMethod.Entropy,
        "percentile": quantization.CalibrationMethod.Percentile,
    }[calibrate_method]

    with tempfile.TemporaryDirectory(prefix="fractalad-quant-", dir=out_path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            shape_inference.quant_pre_process(str(fp32_path), str(prepared))
        except Exception as exc:  # onnxruntime raises bare Exceptions from its optimiser
            msg = f"onnxruntime could not pre-process {fp32_path} for quantization ({type(exc).__name__}: {exc})"
            raise QuantizationError(msg) from exc
        model = onnx.load(str(prepared))
        _name_nodes(model)
        onnx.save(model, str(prepared))
        input_name = model.graph.input[0].name
        excluded = onnx_float_node_names(model, keep_float)
        reader = _SampleReader(calibration, input_spec, input_name)
        chunk = _CALIBRATION_CHUNK if len(calibration) % _CALIBRATION_CHUNK == 0 else len(calibration)
        try:
            quantization.quantize_static(
                str(prepared),
                str(out_path),
                reader,
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=True,
                reduce_range=reduce_range and not symmetric,
                activation_type=quantization.QuantType.QInt8 if symmetric else quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=method,
                nodes_to_exclude=excluded,
                extra_options={
                    "CalibStridedMinMax": chunk,
                    # By default the quantizer deletes ReLU/Clip in front of a QuantizeLinear (the
                    # INT8 range clips instead); a float region reading that tensor would then see
                    # pre-activation values. onnxruntime fuses them back at session creation.
                    "QDQKeepRemovableActivations": bool(excluded),
                    # symmetric: zero points 0 for activations and weights (TensorRT's rule)
                    "ActivationSymmetric": symmetric,
                    "WeightSymmetric": True,
                    # TensorRT reads Conv biases as float; an int32 bias DequantizeLinear is not for it
                    "QuantizeBias": not symmetric,
                },
            )
        except Exception as exc:
            msg = f"onnxruntime static quantization of {fp32_path} failed ({type(exc).__name__}: {exc})"
            raise QuantizationError(msg) from exc
    if excluded:
        quantized = onnx.load(str(out_path))
        if feed_float_inputs(quantized, excluded):
            onnx.save(quantized, str(out_path))
    return tuple(excluded)


def feed_float_inputs(model: onnx.ModelProto, names: Iterable[str]) -> int:
    """Give the named (float) nodes their activations before quantization; returns how many inputs changed.

    onnxruntime's QDQ quantizer rewires *every* consumer of a quantized tensor to the
    dequantized copy, so a float region would still compute on INT8-rounded inputs (e.g.
    the cosine between INT8 teacher and student features). Reading the tensor that enters
    the QuantizeLinear instead makes the region float end to end.
    """
    producer = {output: node for node in model.graph.node for output in node.output}
    wanted = set(names)
    changed = 0
    for node in model.graph.node:
        if node.name not in wanted:
            continue
        for index, tensor in enumerate(node.input):
            dequantize = producer.get(tensor)
            if dequantize is None or dequantize.op_type != "DequantizeLinear":
                continue
            quantize = producer.get(dequantize.input[0])
            if quantize is None or quantize.op_type != "QuantizeLinear":
                continue  # an INT8 initializer (weights), not an activation
            node.input[index] = quantize.input[0]
            changed += 1
    _drop_unused_qdq(model)
    return changed


def _drop_unused_qdq(model: onnx.ModelProto) -> None:
    """Remove Q/DQ nodes (and their scales) that nobody reads any more after rewiring float regions."""
    orphans: set[str] = set()
    while True:
        used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
        dead = [
            node for node in model.graph.node
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in used for o in node.output)
        ]
        if not dead:
            break
        for node in dead:
            orphans.update(node.input[1:])  # scale and zero point
            model.graph.node.remove(node)
    read = {name for node in model.graph.node for name in node.input}
    for initializer in [i for i in model.graph.initializer if i.name in orphans and i.name not in read]:
        model.graph.initializer.remove(initializer)


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give unnamed nodes stable names, so float regions can be excluded by name."""
    used = {node.name for node in model.graph.node if node.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            candidate = f"{node.op_type}_{index}"
            while candidate in used:
                candidate += "_"
            node.name = candidate
            used.add(candidate)
