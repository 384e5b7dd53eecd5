"""TensorRT INT8 by explicit quantization: a symmetric Q/DQ ONNX made and judged on the training machine.

TensorRT's ONNX parser reads INT8 only as explicit quantization: QuantizeLinear /
DequantizeLinear pairs with signed int8 zero points equal to 0 (TensorRT quantization is
symmetric, scale only), per-tensor scales for activations and per-channel scales for
weights on the output-channel axis (axis 0 of a Conv weight). This module writes such a
graph with onnxruntime's static quantizer (``quantize_static`` in QDQ format,
``QuantType.QInt8`` for activations and weights, ``per_channel``, ``reduce_range`` off,
``extra_options`` ActivationSymmetric / WeightSymmetric), calibrated on the same synthetic
calibration set as every toolchain and with the same float regions
(:data:`~fractalad_edge.quantize.DEFAULT_KEEP_FLOAT`), and checks the result against the
rules above (:func:`check_tensorrt_qdq`). The export then judges it with onnxruntime CPU
through the usual accuracy gate, so the INT8 model is validated before it leaves the
training machine; the device builds the engine from it with no calibration data.

Why onnxruntime's quantizer and not NVIDIA Model Optimizer (``nvidia-modelopt``): the
project already calibrates its onnxruntime INT8 path with it (one reader, one float-region
finder, the same entropy calibration), it runs on a CPU-only training machine, and it is a
dependency of the ``onnxruntime`` extra already; modelopt's ONNX PTQ would add a package with
heavy optional GPU extras for the same symmetric Q/DQ output. See docs/JETSON.md.

Why not TensorRT's implicit calibrators (``IInt8EntropyCalibrator2``): deprecated in
TensorRT 10.1 (superseded by explicit quantization) and absent from TensorRT 11; they also
need TensorRT, a GPU and the calibration images on the device, and the pybind wrapper turns
an exception raised in ``get_batch`` into "no more data", so a failing upload calibrated on
fewer batches silently. Explicit Q/DQ is read by every TensorRT this SDK supports (8.6 on).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fractalad_edge.artifact import InputSpec
from fractalad_edge.errors import QuantizationError
from fractalad_edge.extras import require
from fractalad_edge.quantize import DEFAULT_KEEP_FLOAT, FloatRegion

if TYPE_CHECKING:
    import onnx

    from fractalad_edge.calibration.dataset import CalibrationSet

#: what the artifact records as the INT8 recipe of a TensorRT export
QUANTIZATION_MODE = "explicit q/dq, symmetric int8 (onnxruntime qdq-static)"

#: ops whose second input is a weight quantized per output channel (axis 0)
_WEIGHTED_OPS = {"Conv": 0, "ConvTranspose": 1}


def quantize_for_tensorrt(
    fp32_path: Path,
    out_path: Path,
    calibration: CalibrationSet,
    input_spec: InputSpec,
    *,
    keep_float: Sequence[str | FloatRegion] = DEFAULT_KEEP_FLOAT,
) -> tuple[str, ...]:
    """Write the TensorRT-bound symmetric INT8 Q/DQ copy of ``fp32_path``; return the float nodes.

    Raises QuantizationError when the result breaks a rule of TensorRT's ONNX parser.
    """
    from fractalad_edge.quantize.onnxruntime import quantize_onnx_model

    float_layers = quantize_onnx_model(
        Path(fp32_path), Path(out_path), calibration, input_spec, keep_float=keep_float, symmetric=True
    )
    onnx = require("onnx", "export")
    problems = check_tensorrt_qdq(onnx.load(str(out_path)))
    if problems:
        msg = f"{out_path} is not a Q/DQ graph TensorRT accepts: " + "; ".join(problems[:5])
        raise QuantizationError(msg)
    return float_layers


def check_tensorrt_qdq(model: onnx.ModelProto) -> list[str]:
    """Every way ``model`` breaks TensorRT's explicit-quantization rules (empty when it follows them).

    Rules: each QuantizeLinear / DequantizeLinear has a float32 scale > 0 and an int8
    zero point equal to 0 (signed, symmetric); activations are quantized per tensor;
    a weight that feeds a Conv (through its DequantizeLinear) is quantized per output
    channel, on axis 0 (ConvTranspose: axis 1). A graph without any Q/DQ node breaks the
    rule "is INT8" and is reported too.
    """
    onnx = require("onnx", "export")
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        return ["no QuantizeLinear/DequantizeLinear node: the graph is not quantized"]
    weight_axis = {}  # DequantizeLinear output feeding a weight input -> required axis
    for node in model.graph.node:
        if node.op_type in _WEIGHTED_OPS and len(node.input) > 1:
            weight_axis[node.input[1]] = _WEIGHTED_OPS[node.op_type]
    problems: list[str] = []
    for node in qdq:
        where = f"{node.op_type} {node.name or node.output[0]!r}"
        if len(node.input) < 3 or node.input[2] not in initializers:
            problems.append(f"{where} has no constant zero point (TensorRT needs an explicit int8 zero point of 0)")
            continue
        zero = initializers[node.input[2]]
        if zero.data_type != onnx.TensorProto.INT8:
            problems.append(f"{where} zero point is {onnx.TensorProto.DataType.Name(zero.data_type)}, not signed INT8")
        if np.any(numpy_helper.to_array(zero) != 0):
            problems.append(f"{where} zero point is not 0 (asymmetric); TensorRT quantization is symmetric")
        scale = initializers.get(node.input[1])
        if scale is None or scale.data_type != onnx.TensorProto.FLOAT:
            problems.append(f"{where} scale is not a float32 constant")
            continue
        scales = numpy_helper.to_array(scale)
        if np.any(~np.isfinite(scales)) or np.any(scales <= 0):
            problems.append(f"{where} has a scale that is not finite and > 0")
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        is_weight = node.op_type == "DequantizeLinear" and node.output[0] in weight_axis
        if is_weight and scales.ndim != 1:
            problems.append(f"{where} quantizes a Conv weight per tensor; per output channel is required")
        elif is_weight and axis != weight_axis[node.output[0]]:
            problems.append(f"{where} quantizes a Conv weight on axis {axis}, not the output-channel axis")
        elif not is_weight and node.input[0] not in initializers and scales.ndim != 0:
            problems.append(f"{where} quantizes an activation per channel; TensorRT activations are per tensor")
    return problems


__all__ = ["QUANTIZATION_MODE", "check_tensorrt_qdq", "quantize_for_tensorrt"]
