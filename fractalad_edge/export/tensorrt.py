"""The ``tensorrt`` format: ``model.onnx`` plus, where TensorRT runs, a plain ``model.engine``.

Where TensorRT is installed (a Jetson, an x86 box with an NVIDIA GPU) the engine is built
here with the TensorRT Python API (see :mod:`fractalad_edge.runtimes.tensorrt`), written as
a plain serialized engine (``trtexec --loadEngine=model.engine`` opens it) and the artifact
records the builder's EngineInfo; thresholds are then refitted and parity checked on the
engine itself. int8 engines are calibrated here with the entropy calibrator of
:mod:`fractalad_edge.quantize.tensorrt` on the synthetic calibration set.

Where TensorRT is not installed, the artifact carries ``model.onnx`` only (``engine`` is
None in metadata); the ONNX is checked with onnxruntime against torch, thresholds are fitted
on its fp32 outputs, and the engine is built on the device at first load and cached there.
For fp16 that means thresholds from fp32 maps: export on the device to refit them on the
engine's own outputs.
"""

from __future__ import annotations

from collections.abc import Callable

from fractalad_edge.artifact import Precision
from fractalad_edge.export.formats import ExportedModel, ExportJob, missing_modules
from fractalad_edge.export.onnx import ONNX_FILENAME, export_onnx
from fractalad_edge.runtimes.tensorrt import (
    ENGINE_FILENAME,
    TensorRTBackend,
    cuda_device_index,
    build_serialized_engine,
    current_engine_info,
)


def write_tensorrt_artifact(job: ExportJob) -> ExportedModel:
    onnx_path = export_onnx(job.model, job.directory / ONNX_FILENAME, input_size=job.input_spec.height, opset=job.opset)
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
            checked_precision=Precision.FP32,
        )
    calibrator = None
    quantization = None
    fp16_layers: Callable[[str, tuple[int, ...]], bool] | None = None
    if job.precision is Precision.INT8:
        from fractalad_edge.quantize import in_teacher_stem
        from fractalad_edge.quantize.tensorrt import EntropyCalibrator

        calibrator = EntropyCalibrator(job.calibration, job.input_spec, job.scratch / "tensorrt-int8.cache")
        quantization = ("tensorrt", "entropy-calibration")
        height = job.input_spec.height

        def in_stem(name: str, shape: tuple[int, ...]) -> bool:
            # FloatRegion.TEACHER_STEM, the region where INT8 lost accuracy on onnxruntime and
            # OpenVINO (docs/experiments/int8-float-regions.md), in fp16. Not measured with TensorRT.
            return in_teacher_stem(name, shape, height)

        fp16_layers = in_stem

    job.progress(
        f"building a {job.precision.value} TensorRT engine (this takes a while)"
        + ("; the teacher's stem pinned to fp16" if fp16_layers is not None else "")
    )
    try:
        serialized = build_serialized_engine(
            onnx_path, precision=job.precision, int8_calibrator=calibrator, fp16_layers=fp16_layers
        )
    finally:
        if calibrator is not None:
            calibrator.close()  # frees its device buffer before the engine is loaded for the parity check
    engine_path = job.directory / ENGINE_FILENAME
    engine_path.write_bytes(serialized)
    info = current_engine_info(cuda_device_index(job.device))
    return ExportedModel(
        files=(ONNX_FILENAME, ENGINE_FILENAME),
        open_backend=lambda: TensorRTBackend(serialized, device=job.device, engine_info=info, source=str(engine_path)),
        checked_with=f"tensorrt {job.device} ({info.gpu_name})",
        checked_precision=job.precision,
        engine=info,
        quantization=quantization,
    )


__all__ = ["write_tensorrt_artifact"]
