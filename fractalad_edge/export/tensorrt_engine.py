"""Build a plain serialized TensorRT engine from the artifact's ONNX, on the branch of the installed version.

Used by the ``tensorrt`` export where TensorRT runs, and by the TensorRT runtime when an
artifact exported elsewhere is first loaded on the device. The branch (network typing,
network and builder flags) comes from :func:`~fractalad_edge.export.tensorrt_policy.plan_build`;
this module only turns it into calls: ``Builder``, ``create_network``, ``OnnxParser``,
``create_builder_config``, ``set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)``,
``set_flag`` / ``clear_flag`` and ``build_serialized_network`` (all present in 8.6, 10.x and
11.x). No calibrator is ever given: int8 comes from the Q/DQ nodes of the ONNX.

The build runs on the requested ``cuda:N``: the builder works on the current CUDA device,
so it is made current first (``cudaSetDevice`` through the device memory helper).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fractalad_edge.artifact import Precision
from fractalad_edge.errors import ExportError
from fractalad_edge.export.tensorrt_policy import BuildPlan, plan_build
from fractalad_edge.extras import require

DEFAULT_WORKSPACE_BYTES = 1 << 30  # 1 GiB: enough for this model's tactics, fits a Jetson Orin Nano


class TensorRTLogger:
    """One TensorRT logger per process (TensorRT warns when several are created)."""

    instance: Any = None

    @classmethod
    def get(cls, trt: Any) -> Any:
        if cls.instance is None:
            cls.instance = trt.Logger(trt.Logger.WARNING)
        return cls.instance


def network_creation_flags(trt: Any, plan: BuildPlan) -> int:
    """The bit mask ``Builder.create_network`` takes for the plan's NetworkDefinitionCreationFlag names."""
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    return flags


def build_serialized_engine(
    onnx_path: str | Path,
    *,
    precision: Precision,
    device_index: int = 0,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    fp16_layers: Callable[[str, tuple[int, ...]], bool] | None = None,
) -> bytes:
    """Parse the ONNX and build a serialized engine (bytes, exactly what trtexec writes).

    ``precision`` int8 expects an explicitly quantized ONNX (quantize/tensorrt.py). On the
    8.6 branch, ``fp16_layers(layer name, first output shape)`` picks layers of an int8
    engine pinned to fp16 (the teacher's stem); on 10.x / 11.x the ONNX's own types decide.
    """
    from fractalad_edge.runtimes.cuda_memory import use_device

    trt = require("tensorrt", "tensorrt")
    try:
        plan = plan_build(trt.__version__, precision)
    except Exception as exc:  # RuntimeMismatchError: the export's own words are ExportError
        raise ExportError(str(exc)) from None
    use_device(device_index)
    logger = TensorRTLogger.get(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(network_creation_flags(trt, plan))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        msg = f"TensorRT {trt.__version__} could not parse {onnx_path}: {errors}"
        raise ExportError(msg)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if plan.clear_tf32:
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if plan.pin_float_regions_fp16 and fp16_layers is not None and pin_fp16(trt, network, fp16_layers):
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        msg = (
            f"TensorRT {trt.__version__} failed to build a {precision.value} engine ({plan.typing.value} network) "
            f"from {onnx_path}; see its log above"
        )
        raise ExportError(msg)
    return bytes(serialized)


def pin_fp16(trt: Any, network: Any, selected: Callable[[str, tuple[int, ...]], bool]) -> int:
    """Set precision and output types of the selected layers to fp16 (8.6 branch); returns how many."""
    pinned = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.num_outputs == 0 or not selected(layer.name, tuple(layer.get_output(0).shape)):
            continue
        layer.precision = trt.float16
        for output in range(layer.num_outputs):
            layer.set_output_type(output, trt.float16)
        pinned += 1
    return pinned


__all__ = ["DEFAULT_WORKSPACE_BYTES", "TensorRTLogger", "build_serialized_engine", "network_creation_flags", "pin_fp16"]
