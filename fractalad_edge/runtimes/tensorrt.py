"""The TensorRT backend: a plain serialized engine, built from the artifact's ONNX.

Engines are tied to the TensorRT version and the GPU that built them, so:

- an artifact exported where TensorRT runs carries ``model.engine`` (a plain engine file,
  no header: ``trtexec --loadEngine=model.engine`` opens it) and the ``EngineInfo`` of its
  builder; loading it with another TensorRT version or GPU raises EngineMismatchError;
- an artifact exported without TensorRT carries only ``model.onnx``; the first load builds
  the engine and caches it beside the artifact (or in ``~/.cache/fractalad-edge/engines``
  when that folder is read-only) under a name keyed by the ONNX's sha256, the TensorRT
  version, the GPU and the precision, with a JSON sidecar holding its EngineInfo. Later
  loads reuse it in milliseconds.

Written against the TensorRT 8.6 (JetPack 6) and 10.x Python APIs: ``OnnxParser``,
``set_memory_pool_limit``, ``build_serialized_network``, ``set_tensor_address`` and
``execute_async_v3``. Device buffers and the stream come from cuda-python
(``cuda.bindings.runtime`` or the older ``cuda.cudart``) when it is installed, else from
torch CUDA tensors; ``describe()`` says which. No torch import otherwise.

fp32 engines are built with TF32 switched off, so an fp32 engine is fp32 (TensorRT enables
TF32 by default on Ampere and newer, which costs about three decimal digits).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fractalad_edge.artifact import ArtifactMetadata, EngineInfo, Precision
from fractalad_edge.errors import ConfigError, EngineMismatchError, ExportError, PredictorClosedError, RuntimeMismatchError
from fractalad_edge.runtimes.base import Backend, require

ENGINE_FILENAME = "model.engine"
DEFAULT_WORKSPACE_BYTES = 1 << 30  # 1 GiB: enough for this model's tactics, fits a Jetson Orin Nano


# ----------------------------------------------------------------------------- compatibility
def check_engine_compatible(recorded: EngineInfo, current: EngineInfo, *, source: str) -> None:
    """Refuse an engine built by another TensorRT version or GPU (they do not load, or load wrong)."""
    problems = []
    if recorded.tensorrt_version != current.tensorrt_version:
        problems.append(f"TensorRT {recorded.tensorrt_version} (this machine: {current.tensorrt_version})")
    if recorded.gpu_name != current.gpu_name or recorded.compute_capability != current.compute_capability:
        problems.append(
            f"GPU {recorded.gpu_name} sm{recorded.compute_capability} "
            f"(this machine: {current.gpu_name} sm{current.compute_capability})"
        )
    if problems:
        msg = (
            f"{source} was built by {' and '.join(problems)}; TensorRT engines only run where they were built. "
            "Re-export on this device: fractalad-edge export RUN --format tensorrt --out DIR"
        )
        raise EngineMismatchError(msg)


def engine_cache_name(info: EngineInfo, *, onnx_sha256: str, precision: Precision) -> str:
    """File name of an engine built here from a given ONNX, e.g. ``model.3f9a0c1d2e4b.trt10.3.0.nvidia-orin.sm87.fp16.engine``."""
    gpu = re.sub(r"[^a-z0-9]+", "-", info.gpu_name.lower()).strip("-") or "gpu"
    version = re.sub(r"[^0-9.]+", "", info.tensorrt_version)
    cc = info.compute_capability.replace(".", "")
    return f"model.{onnx_sha256[:12]}.trt{version}.{gpu}.sm{cc}.{precision.value}.engine"


# ----------------------------------------------------------------------------- CUDA memory
class _CudaPythonMemory:
    """Device buffers and a stream through cuda-python's runtime bindings."""

    kind = "cuda-python"

    def __init__(self, device_index: int) -> None:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python
        self.cudart = cudart
        self._call(cudart.cudaSetDevice(device_index))
        self.stream = self._call(cudart.cudaStreamCreate())
        self._allocations: list[int] = []

    def _call(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.cudart.cudaError_t.cudaSuccess:
            msg = f"CUDA runtime call failed: {err}"
            raise RuntimeMismatchError(msg)
        return rest[0] if len(rest) == 1 else tuple(rest)

    def device_info(self, device_index: int) -> tuple[str, str]:
        props = self._call(self.cudart.cudaGetDeviceProperties(device_index))
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return name.rstrip("\x00"), f"{props.major}.{props.minor}"

    def alloc(self, nbytes: int) -> int:
        pointer = int(self._call(self.cudart.cudaMalloc(nbytes)))
        self._allocations.append(pointer)
        return pointer

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.cudart.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, self.stream))

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.cudart.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, self.stream))

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def synchronize(self) -> None:
        self._call(self.cudart.cudaStreamSynchronize(self.stream))

    def close(self) -> None:
        for pointer in self._allocations:
            self.cudart.cudaFree(pointer)
        self._allocations.clear()
        self.cudart.cudaStreamDestroy(self.stream)


class _TorchCudaMemory:
    """The same through torch CUDA tensors, for machines with torch but no cuda-python (e.g. Jetson images)."""

    kind = "torch"

    def __init__(self, device_index: int) -> None:
        import torch

        if not torch.cuda.is_available():
            msg = "TensorRT needs a CUDA device and none is visible (torch.cuda.is_available() is False)"
            raise RuntimeMismatchError(msg)
        self.torch = torch
        self.device = torch.device("cuda", device_index)
        self.stream = torch.cuda.Stream(device=self.device)
        self._tensors: list[Any] = []

    def device_info(self, device_index: int) -> tuple[str, str]:
        major, minor = self.torch.cuda.get_device_capability(device_index)
        return self.torch.cuda.get_device_name(device_index), f"{major}.{minor}"

    def alloc(self, nbytes: int) -> int:
        tensor = self.torch.empty(nbytes, dtype=self.torch.uint8, device=self.device)
        self._tensors.append(tensor)
        return int(tensor.data_ptr())

    def _tensor_at(self, pointer: int) -> Any:
        return next(t for t in self._tensors if t.data_ptr() == pointer)

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        with self.torch.cuda.stream(self.stream):
            self._tensor_at(pointer)[: array.nbytes].copy_(self.torch.from_numpy(array.reshape(-1).view(np.uint8)))

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        with self.torch.cuda.stream(self.stream):
            host = self._tensor_at(pointer)[: array.nbytes].to("cpu")
        self.stream.synchronize()
        array.reshape(-1).view(np.uint8)[:] = host.numpy()

    @property
    def stream_handle(self) -> int:
        return int(self.stream.cuda_stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self._tensors.clear()


def cuda_memory(device_index: int) -> _CudaPythonMemory | _TorchCudaMemory:
    """cuda-python when importable, else torch; neither -> RuntimeNotAvailableError naming both."""
    try:
        return _CudaPythonMemory(device_index)
    except ImportError:
        pass
    try:
        return _TorchCudaMemory(device_index)
    except ImportError:
        require("cuda.bindings", "tensorrt")  # raises RuntimeNotAvailableError with the install hint
        raise


# ----------------------------------------------------------------------------- building
class _Logger:
    """One TensorRT logger per process (TensorRT warns when several are created)."""

    instance: Any = None

    @classmethod
    def get(cls, trt: Any) -> Any:
        if cls.instance is None:
            cls.instance = trt.Logger(trt.Logger.WARNING)
        return cls.instance


def build_serialized_engine(
    onnx_path: str | Path,
    *,
    precision: Precision,
    int8_calibrator: Any = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    fp16_layers: Callable[[str, tuple[int, ...]], bool] | None = None,
) -> bytes:
    """Parse the ONNX and build a serialized engine (bytes, exactly what trtexec writes).

    int8 uses ``int8_calibrator`` (a ``trt.IInt8Calibrator``) for implicit quantization, or,
    without one, the Q/DQ scales of an explicitly quantized ONNX. In an int8 engine,
    ``fp16_layers(layer name, first output shape)`` picks layers pinned to fp16 (the
    float regions of the INT8 recipe); TensorRT is asked to prefer those constraints.
    """
    if precision not in (Precision.FP32, Precision.FP16, Precision.INT8):
        msg = f"TensorRT engines are built at fp32, fp16 or int8, not {precision.value}"
        raise ExportError(msg)
    trt = require("tensorrt", "tensorrt")
    logger = _Logger.get(trt)
    builder = trt.Builder(logger)
    flags = 0
    explicit_batch = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if explicit_batch is not None and int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(explicit_batch)  # TensorRT 8.x; deprecated and implied from 10.0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        msg = f"TensorRT {trt.__version__} could not parse {onnx_path}: {errors}"
        raise ExportError(msg)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32
    # fp16, and for int8 also fp16 so that layers without int8 kernels fall back to fp16, not fp32
    wanted = {Precision.FP32: (), Precision.FP16: ("FP16",), Precision.INT8: ("INT8", "FP16")}[precision]
    missing = [flag for flag in wanted if not hasattr(trt.BuilderFlag, flag)]
    if missing:
        msg = (
            f"TensorRT {trt.__version__} builds strongly typed networks only and has no {'/'.join(missing)} builder "
            "flag; export fp32, or use TensorRT 8.6 / 10.x"
        )
        raise ExportError(msg)
    for flag in wanted:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if int8_calibrator is not None:
        if precision is not Precision.INT8:
            msg = f"an int8 calibrator was given for a {precision.value} engine; it is only used for int8"
            raise ExportError(msg)
        config.int8_calibrator = int8_calibrator
    if fp16_layers is not None and precision is Precision.INT8:
        if _pin_fp16(trt, network, fp16_layers):
            config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        msg = f"TensorRT {trt.__version__} failed to build a {precision.value} engine from {onnx_path}; see its log above"
        raise ExportError(msg)
    return bytes(serialized)


def _pin_fp16(trt: Any, network: Any, selected: Callable[[str, tuple[int, ...]], bool]) -> int:
    """Set precision and output types of the selected layers to fp16; returns how many."""
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


def current_engine_info(device_index: int = 0) -> EngineInfo:
    """TensorRT version and GPU of this machine, as an engine built here would record them."""
    trt = require("tensorrt", "tensorrt")
    memory = cuda_memory(device_index)
    try:
        name, capability = memory.device_info(device_index)
    finally:
        memory.close()
    return EngineInfo(tensorrt_version=trt.__version__, gpu_name=name, compute_capability=capability)


# ----------------------------------------------------------------------------- running
def cuda_device_index(device: str) -> int:
    kind, _, index = device.lower().partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        msg = f"TensorRT runs on device 'cuda' or 'cuda:N', got {device!r}"
        raise ConfigError(msg)
    return int(index or 0)


def _cache_folder(directory: Path) -> Path:
    if os.access(directory, os.W_OK):
        return directory
    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fractalad-edge" / "engines"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, serialized_engine: bytes, *, device: str = "cuda", engine_info: EngineInfo, source: str) -> None:
        trt = require("tensorrt", "tensorrt")
        index = cuda_device_index(device)
        self.memory = cuda_memory(index)
        self.engine_info = engine_info
        self.runtime = trt.Runtime(_Logger.get(trt))  # kept: the runtime must outlive its engines
        self.engine = self.runtime.deserialize_cuda_engine(serialized_engine)
        if self.engine is None:
            msg = f"{source} could not be deserialized by TensorRT {trt.__version__} on this GPU; re-export on this device"
            raise EngineMismatchError(msg)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            msg = f"{source} has inputs {inputs} and outputs {outputs}; a FractalAD engine has one of each"
            raise RuntimeMismatchError(msg)
        self._input, self._output = inputs[0], outputs[0]
        self.input_shape = tuple(self.engine.get_tensor_shape(self._input))
        self.output_shape = tuple(self.engine.get_tensor_shape(self._output))
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self._input)))
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self._output)))
        self.max_batch = int(self.input_shape[0])
        self._host_out = np.empty(self.output_shape, dtype=self.output_dtype)
        in_ptr = self.memory.alloc(int(np.prod(self.input_shape)) * self.input_dtype.itemsize)
        out_ptr = self.memory.alloc(self._host_out.nbytes)
        self._in_ptr, self._out_ptr = in_ptr, out_ptr
        self.context.set_tensor_address(self._input, in_ptr)
        self.context.set_tensor_address(self._output, out_ptr)
        self.device = device
        self.version = trt.__version__
        # One execution context, one pair of device buffers and one host output buffer: not
        # thread-safe, so concurrent callers take turns (the GPU runs one request at a time anyway).
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        directory: Path,
        metadata: ArtifactMetadata,
        *,
        device: str = "cuda",
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
        **options: Any,
    ) -> TensorRTBackend:
        if options:
            msg = f"the tensorrt runtime takes the options device and workspace_bytes, not {sorted(options)}"
            raise ConfigError(msg)
        directory = Path(directory)
        current = current_engine_info(cuda_device_index(device))
        if metadata.engine is not None:
            engine_path = metadata.model_file(directory, ".engine")
            check_engine_compatible(metadata.engine, current, source=str(engine_path))
            return cls(engine_path.read_bytes(), device=device, engine_info=metadata.engine, source=str(engine_path))
        return cls.from_onnx(directory, metadata, device=device, current=current, workspace_bytes=workspace_bytes)

    @classmethod
    def from_onnx(
        cls, directory: Path, metadata: ArtifactMetadata, *, device: str, current: EngineInfo, workspace_bytes: int
    ) -> TensorRTBackend:
        """Build (once) and cache the engine for an artifact exported without TensorRT."""
        if metadata.precision is Precision.INT8:
            msg = (
                f"{directory} is an int8 TensorRT artifact without an engine; int8 engines are calibrated at export. "
                "Export on a machine with TensorRT: fractalad-edge export RUN --format tensorrt --precision int8"
            )
            raise RuntimeMismatchError(msg)
        onnx_path = metadata.model_file(directory, ".onnx")
        onnx_entry = next(f for f in metadata.files if f.path.lower().endswith(".onnx"))
        cache = _cache_folder(directory) / engine_cache_name(current, onnx_sha256=onnx_entry.sha256, precision=metadata.precision)
        if cache.is_file():
            try:
                return cls(cache.read_bytes(), device=device, engine_info=current, source=str(cache))
            except EngineMismatchError:
                cache.unlink()  # a truncated cache file: rebuild it
        serialized = build_serialized_engine(onnx_path, precision=metadata.precision, workspace_bytes=workspace_bytes)
        tmp = cache.with_suffix(".tmp")
        tmp.write_bytes(serialized)
        tmp.replace(cache)
        cache.with_suffix(".json").write_text(json.dumps(asdict(current), indent=2) + "\n")
        return cls(serialized, device=device, engine_info=current, source=str(cache))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        if batch.shape != self.input_shape:
            msg = f"TensorRT engine expects input {self.input_shape}, got {batch.shape}"
            raise RuntimeMismatchError(msg)
        with self._lock:
            if self.context is None:
                msg = "this TensorRT predictor was closed; load the model again"
                raise PredictorClosedError(msg)
            self.memory.to_device(self._in_ptr, batch)
            if not self.context.execute_async_v3(self.memory.stream_handle):
                msg = "TensorRT execute_async_v3 failed; see the TensorRT log"
                raise RuntimeMismatchError(msg)
            self.memory.to_host(self._host_out, self._out_ptr)
            self.memory.synchronize()
            return self._host_out[:, 0].astype(np.float32, copy=True)

    def close(self) -> None:
        with self._lock:
            self.context = None  # release in reverse order of creation
            self.engine = None
            self.runtime = None
            self.memory.close()

    def describe(self) -> dict[str, str]:
        return {
            "runtime": self.name,
            "device": f"{self.device} ({self.engine_info.gpu_name}, sm{self.engine_info.compute_capability})",
            "tensorrt": self.version,
            "buffers": self.memory.kind,
        }
