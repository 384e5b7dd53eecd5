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
  accuracy-controlled variant on the held-out synthetic set; then the accuracy gate.
"""

from __future__ import annotations

from fractalad_edge.artifact import IR_FILENAME, IR_WEIGHTS_FILENAME, ONNX_FILENAME, Precision
from fractalad_edge.export.formats import ExportedModel, ExportJob
from fractalad_edge.export.onnx import export_onnx
from fractalad_edge.extras import require


def write_openvino_artifact(job: ExportJob) -> ExportedModel:
    """ONNX -> ov.Model (-> NNCF int8) -> IR in ``job.directory``."""
    ov = require("openvino", "openvino")
    from fractalad_edge.runtimes.openvino import OpenVINOBackend

    onnx_path = export_onnx(job.model, job.scratch / ONNX_FILENAME, input_size=job.input_spec.height, opset=job.opset)
    model = ov.convert_model(str(onnx_path))
    quantization = None
    float_layers: tuple[str, ...] = ()
    if job.precision is Precision.INT8:
        from fractalad_edge.quantize import DEFAULT_KEEP_FLOAT
        from fractalad_edge.quantize.openvino import float_node_names, quantize_openvino_model

        float_layers = tuple(float_node_names(model, DEFAULT_KEEP_FLOAT))
        job.progress(f"quantizing to int8 (NNCF {job.quant_mode}) on {len(job.calibration)} calibration images")
        model = quantize_openvino_model(
            model, job.calibration, job.input_spec, validation=job.validation, mode=job.quant_mode, max_drop=job.max_drop
        )
        quantization = ("nncf", job.quant_mode)
    xml = job.directory / IR_FILENAME
    ov.save_model(model, str(xml), compress_to_fp16=job.precision is Precision.FP16)
    return ExportedModel(
        files=(IR_FILENAME, IR_WEIGHTS_FILENAME),
        open_backend=lambda: OpenVINOBackend(xml, precision=job.precision, device=job.device),
        checked_with=f"openvino {job.device}",
        checked_precision=job.precision,
        quantization=quantization,
        float_layers=float_layers,
    )


__all__ = ["write_openvino_artifact"]
