"""The ``tensorrt`` format: ``model.onnx`` plus, where TensorRT runs, a plain ``model.engine``.

int8 is explicit quantization: ``model.onnx`` is the symmetric INT8 Q/DQ graph of
:mod:`fractalad_edge.quantize.tensorrt`, calibrated here on the synthetic calibration set;
no TensorRT and no GPU are needed for it, and the engine needs no calibration data.

Where TensorRT is installed (a Jetson, an x86 box with an NVIDIA GPU) the engine is built
here (:mod:`fractalad_edge.export.tensorrt_engine`, on the branch of
:mod:`fractalad_edge.export.tensorrt_policy`), written as a plain serialized engine
(``trtexec --loadEngine=model.engine`` opens it) and the artifact records the builder's
EngineInfo; thresholds are then refitted, parity checked and the int8 gate run on the
engine itself.

Where TensorRT is not installed, the artifact carries ``model.onnx`` only (``engine`` is
None in metadata); it is checked with onnxruntime CPU (for int8: the Q/DQ graph, through
the accuracy gate) and the engine is built on the device at first load and cached there.
For fp16 that means thresholds from fp32 maps: export on the device to refit them on the
engine's own outputs. The default ``logit`` score space (fractalad_edge/score_space.py) is
what makes fp32 thresholds carry to an fp16 engine at all: below 1.0 fp16 values are
4.9e-4 apart, so a ``sigmoid`` engine rounds every image threshold of 0.9999x (trained
bottle heads) and most normal scores to exactly 1.0, while logits of +-30 keep fp16
steps of at most 0.016. Written for TensorRT, not run on one here.
"""

from __future__ import annotations

from pathlib import Path

from fractalad_edge.artifact import ENGINE_FILENAME, ONNX_FILENAME, Precision
from fractalad_edge.export.formats import ExportedModel, ExportJob, missing_modules
from fractalad_edge.export.onnx import export_onnx


def write_tensorrt_artifact(job: ExportJob) -> ExportedModel:
    onnx_path = job.directory / ONNX_FILENAME
    quantization = None
    float_layers: tuple[str, ...] = ()
    if job.precision is Precision.INT8:
        from fractalad_edge.quantize.tensorrt import QUANTIZATION_MODE, quantize_for_tensorrt

        fp32_path = export_onnx(job.model, job.scratch / "model-fp32.onnx", input_size=job.input_spec.height, opset=job.opset)
        job.progress(
            f"quantizing to int8 for TensorRT (explicit symmetric Q/DQ, onnxruntime) on {len(job.calibration)} "
            "calibration images"
        )
        float_layers = quantize_for_tensorrt(fp32_path, onnx_path, job.calibration, job.input_spec)
        quantization = ("onnxruntime", QUANTIZATION_MODE)
    else:
        export_onnx(job.model, onnx_path, input_size=job.input_spec.height, opset=job.opset)
    if missing_modules(["tensorrt"]):
        from fractalad_edge.runtimes.onnxruntime import OnnxRuntimeBackend

        job.progress(
            "TensorRT is not installed here: the artifact carries model.onnx and the engine is built on the device at "
            "first load (cached beside the artifact)"
        )
        return ExportedModel(
            files=(ONNX_FILENAME,),
            open_backend=lambda: OnnxRuntimeBackend(onnx_path, device="cpu"),
            checked_with="onnxruntime cpu on model.onnx, TensorRT not installed here",
            checked_precision=Precision.INT8 if job.precision is Precision.INT8 else Precision.FP32,
            quantization=quantization,
            float_layers=float_layers,
        )
    return _write_engine(job, onnx_path, quantization, float_layers)


def _write_engine(
    job: ExportJob, onnx_path: Path, quantization: tuple[str, str] | None, float_layers: tuple[str, ...]
) -> ExportedModel:
    from fractalad_edge.export.tensorrt_engine import build_serialized_engine
    from fractalad_edge.quantize import in_teacher_stem
    from fractalad_edge.runtimes.tensorrt import TensorRTBackend, cuda_device_index
    from fractalad_edge.runtimes.tensorrt_compat import current_engine_info

    height = job.input_spec.height
    index = cuda_device_index(job.device)
    job.progress(f"building a {job.precision.value} TensorRT engine on {job.device} (this takes a while)")
    serialized = build_serialized_engine(
        onnx_path,
        precision=job.precision,
        device_index=index,
        # 8.6 branch only: FloatRegion.TEACHER_STEM in fp16 inside an int8 engine
        fp16_layers=lambda name, shape: in_teacher_stem(name, shape, height),
    )
    engine_path = job.directory / ENGINE_FILENAME
    engine_path.write_bytes(serialized)
    info = current_engine_info(index)
    return ExportedModel(
        files=(ONNX_FILENAME, ENGINE_FILENAME),
        open_backend=lambda: TensorRTBackend(serialized, device=job.device, engine_info=info, source=str(engine_path)),
        checked_with=f"tensorrt {job.device} ({info.gpu_name})",
        checked_precision=job.precision,
        engine=info,
        quantization=quantization,
        float_layers=float_layers,
    )


__all__ = ["write_tensorrt_artifact"]
