"""Whether a TensorRT engine may run here: what built it, what this machine is, and the cache name.

NVIDIA: a serialized engine is specific to the TensorRT version and the exact GPU model it
was built on. Name and compute capability do not tell Jetson Orin modules apart (every Orin
is sm87, and several report the same name), so the SM count and the total memory are
recorded and compared as well. Memory is compared in whole GiB: Jetson modules share it
with the CPU, and the reported total moves by a few MiB with carve-outs between JetPack
releases. Orin NX 8GB and Orin Nano 8GB agree on all of these (8 SMs, 8 GB); only the
clocks differ, which CUDA does not report portably, so those two are not told apart.
"""

from __future__ import annotations

import re

from fractalad_edge.artifact import EngineInfo, Precision
from fractalad_edge.errors import EngineMismatchError
from fractalad_edge.extras import require

_GIB = 1 << 30


def check_engine_compatible(recorded: EngineInfo, current: EngineInfo, *, source: str) -> None:
    """Refuse an engine built by another TensorRT version or GPU model (they do not load, or load wrong)."""
    problems = []
    if recorded.tensorrt_version != current.tensorrt_version:
        problems.append(f"TensorRT {recorded.tensorrt_version} (this machine: {current.tensorrt_version})")
    if recorded.gpu_name != current.gpu_name or recorded.compute_capability != current.compute_capability:
        problems.append(
            f"GPU {recorded.gpu_name} sm{recorded.compute_capability} "
            f"(this machine: {current.gpu_name} sm{current.compute_capability})"
        )
    if recorded.multiprocessor_count and recorded.multiprocessor_count != current.multiprocessor_count:
        problems.append(f"a GPU with {recorded.multiprocessor_count} SMs (this machine: {current.multiprocessor_count})")
    if recorded.total_memory_bytes and round(recorded.total_memory_bytes / _GIB) != round(current.total_memory_bytes / _GIB):
        problems.append(
            f"a GPU with {recorded.total_memory_bytes / _GIB:.1f} GiB (this machine: {current.total_memory_bytes / _GIB:.1f} GiB)"
        )
    if problems:
        msg = (
            f"{source} was built by {' and '.join(problems)}; TensorRT engines only run on the GPU model and TensorRT "
            "version that built them. Re-export on this device (fractalad-edge export RUN --format tensorrt --out DIR), "
            "or copy the artifact without model.engine so the first load builds one here"
        )
        raise EngineMismatchError(msg)


def engine_cache_name(info: EngineInfo, *, onnx_sha256: str, precision: Precision) -> str:
    """File name of an engine built here, e.g. ``model.3f9a0c1d2e4b.trt10.3.0.orin.sm87-8sm-7gib.int8.engine``."""
    gpu = re.sub(r"[^a-z0-9]+", "-", info.gpu_name.lower()).strip("-") or "gpu"
    version = re.sub(r"[^0-9.]+", "", info.tensorrt_version)
    cc = info.compute_capability.replace(".", "")
    model = f"{info.multiprocessor_count}sm-{round(info.total_memory_bytes / _GIB)}gib"
    return f"model.{onnx_sha256[:12]}.trt{version}.{gpu}.sm{cc}-{model}.{precision.value}.engine"


def current_engine_info(device_index: int = 0) -> EngineInfo:
    """TensorRT version and GPU model of ``cuda:device_index``, as an engine built there records them."""
    from fractalad_edge.runtimes.cuda_memory import device_properties

    trt = require("tensorrt", "tensorrt")
    props = device_properties(device_index)
    return EngineInfo(
        tensorrt_version=trt.__version__,
        gpu_name=props.name,
        compute_capability=props.compute_capability,
        multiprocessor_count=props.multiprocessor_count,
        total_memory_bytes=props.total_memory_bytes,
    )


__all__ = ["check_engine_compatible", "current_engine_info", "engine_cache_name"]
