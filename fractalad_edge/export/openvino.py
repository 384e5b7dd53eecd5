"""The ``openvino`` format: IR (``model.xml`` + ``model.bin``) converted from the ONNX graph.

Converted with ``ov.convert_model`` from the checked ONNX rather than from torch: TorchScript
tracing of the cosine attention fails in OpenVINO's frontend, and going through ONNX means
every runtime runs the one graph that parity was checked on.

Precisions:

- fp32: weights stored fp32. ``ov.save_model`` compresses weights to fp16 *by default*;
  ``compress_to_fp16=False`` is passed explicitly so an fp32 artifact is fp32.
- fp16: weights stored fp16 (half the file); the runtime hints f16 where the device has
  fp16 arithmetic (GPU, NPU, ARM / AVX512-FP16 CPUs) and f32 elsewhere.
- bf16: weights stored fp32, the runtime hints bf16 (CPUs with AVX512-BF16 or AMX).
- int8: NNCF post-training quantization on the synthetic calibration set
  (``fractalad_edge.quantize.openvino``), or with ``quant_mode="accuracy-control"`` NNCF's
  accuracy-controlled variant on the held-out synthetic set; then the accuracy gate. On an
  export CPU with bf16 arithmetic the gate runs a second time with the float layers in bf16
  and records the verdict (``quantization.bf16_passed``): where it passed, the runtime runs
  those layers in bf16 on CPUs that have it (runtimes/openvino.py).

Input: the graph takes the resized frame as uint8 NHWC (``InputSpec.dtype="uint8"``).
OpenVINO's PrePostProcessor adds the conversion to float, ``(x - mean) / std`` and the
NHWC -> NCHW transpose in front of the network (after quantization, which calibrates the
float graph), so the host does not normalise and transpose in numpy and the input is a
quarter of the bytes. The resize stays on the host (OpenCV's area filter when shrinking,
which OpenVINO's resize does not offer). Measured in docs/experiments/edge-speed.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fractalad_edge.artifact import IR_FILENAME, IR_WEIGHTS_FILENAME, ONNX_FILENAME, InputSpec, Precision
from fractalad_edge.errors import ExportError
from fractalad_edge.export.formats import ExportedModel, ExportJob
from fractalad_edge.export.onnx import export_onnx
from fractalad_edge.extras import require
from fractalad_edge.telemetry import openvino_telemetry_declined


def write_openvino_artifact(job: ExportJob) -> ExportedModel:
    """ONNX -> ov.Model (-> NNCF int8) -> IR in ``job.directory``."""
    ov = require("openvino", "openvino")
    from fractalad_edge.runtimes.openvino import OpenVINOBackend, cpu_has_bf16, openvino_device

    onnx_path = export_onnx(job.model, job.scratch / ONNX_FILENAME, input_size=job.input_spec.height, opset=job.opset)
    with openvino_telemetry_declined():  # it would send usage events (and wait ~3 s for a network)
        model = ov.convert_model(str(onnx_path))
    quantization = None
    float_layers: tuple[str, ...] = ()
    if job.precision is Precision.INT8:
        from fractalad_edge.quantize import DEFAULT_KEEP_FLOAT
        from fractalad_edge.quantize.openvino import float_node_names, quantize_openvino_model

        regions = DEFAULT_KEEP_FLOAT if job.keep_float is None else job.keep_float
        float_layers = tuple(float_node_names(model, regions))
        job.progress(f"quantizing to int8 (NNCF {job.quant_mode}) on {len(job.calibration)} calibration images")
        model = quantize_openvino_model(
            model, job.calibration, job.input_spec, validation=job.validation, mode=job.quant_mode, max_drop=job.max_drop,
            keep_float=regions,
        )
        quantization = ("nncf", job.quant_mode)
    model, input_spec = uint8_input(model, job.input_spec)
    xml = job.directory / IR_FILENAME
    ov.save_model(model, str(xml), compress_to_fp16=job.precision is Precision.FP16)
    bf16 = job.precision is Precision.INT8 and openvino_device(job.device) == "CPU" and cpu_has_bf16()
    return ExportedModel(
        input_spec=input_spec,
        files=(IR_FILENAME, IR_WEIGHTS_FILENAME),
        open_backend=lambda: OpenVINOBackend(xml, precision=job.precision, device=job.device),
        open_bf16_backend=(
            (lambda: OpenVINOBackend(xml, precision=job.precision, device=job.device, inference_precision="bf16")) if bf16 else None
        ),
        checked_with=f"openvino {job.device}",
        checked_precision=job.precision,
        quantization=quantization,
        float_layers=float_layers,
    )


def uint8_input(model: Any, spec: InputSpec) -> tuple[Any, InputSpec]:
    """``model`` (float32 NCHW input, normalised) behind a uint8 NHWC input that it normalises itself."""
    ov = require("openvino", "openvino")
    from openvino.preprocess import PrePostProcessor

    if spec.dtype != "float32":
        msg = f"uint8_input expects a float32 NCHW graph input spec, got dtype {spec.dtype!r}"
        raise ExportError(msg)
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).mean(list(spec.mean)).scale(list(spec.std))
    return ppp.build(), dataclasses.replace(spec, dtype="uint8", layout="NHWC")


__all__ = ["uint8_input", "write_openvino_artifact"]
