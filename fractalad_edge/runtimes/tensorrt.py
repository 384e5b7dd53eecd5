"""The TensorRT backend: runs a plain serialized engine, built from the artifact's ONNX.

Engines are tied to the TensorRT version and the GPU model that built them, so:

- an artifact exported where TensorRT runs carries ``model.engine`` (a plain engine file,
  no header: ``trtexec --loadEngine=model.engine`` opens it) and the ``EngineInfo`` of its
  builder; loading it with another TensorRT version or GPU model raises EngineMismatchError
  (runtimes/tensorrt_compat.py);
- an artifact exported without TensorRT carries only ``model.onnx`` (for int8, the symmetric
  Q/DQ graph of quantize/tensorrt.py); the first load builds the engine with
  export/tensorrt_engine.py, no calibration data needed, and caches it beside the artifact
  (or in ``~/.cache/fractalad-edge/engines`` when that folder is read-only) under a name
  keyed by the ONNX's sha256, the TensorRT version, the GPU model and the precision, with a
  JSON sidecar holding its EngineInfo. Later loads reuse it in milliseconds.

Running uses ``Runtime.deserialize_cuda_engine``, ``create_execution_context``,
``set_tensor_address`` and ``execute_async_v3`` (TensorRT 8.6, 10.x, 11.x); the first three
report failure by returning None / False, which is checked. Buffers and the stream come
from runtimes/cuda_memory.py on the requested ``cuda:N``, host buffers page-locked, and are
released on every path, a failed construction included.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fractalad_edge.artifact import ArtifactMetadata, EngineInfo
from fractalad_edge.errors import ConfigError, EngineMismatchError, PredictorClosedError, RuntimeMismatchError
from fractalad_edge.export.tensorrt_engine import DEFAULT_WORKSPACE_BYTES, TensorRTLogger, build_serialized_engine
from fractalad_edge.extras import require
from fractalad_edge.runtimes.base import Backend
from fractalad_edge.runtimes.cuda_memory import cuda_memory
from fractalad_edge.runtimes.tensorrt_compat import check_engine_compatible, current_engine_info, engine_cache_name

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
        self.context: Any = None
        self.engine: Any = None
        self.runtime: Any = None
        self.memory = cuda_memory(index)  # makes cuda:N current before the engine is deserialized
        try:
            self._load(trt, serialized_engine, source)
        except BaseException:
            self.close()  # the stream and any buffers, whichever step failed
            raise
        self.engine_info = engine_info
        self.device = device
        self.version = trt.__version__

    def _load(self, trt: Any, serialized_engine: bytes, source: str) -> None:
        self.runtime = trt.Runtime(TensorRTLogger.get(trt))  # kept: the runtime must outlive its engines
        self.engine = self.runtime.deserialize_cuda_engine(serialized_engine)
        if self.engine is None:
            msg = f"{source} could not be deserialized by TensorRT {trt.__version__} on this GPU; re-export on this device"
            raise EngineMismatchError(msg)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            msg = f"TensorRT {trt.__version__} could not create an execution context for {source} (out of device memory?)"
            raise RuntimeMismatchError(msg)
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
        self._host_in = self.memory.pinned(self.input_shape, self.input_dtype)
        self._host_out = self.memory.pinned(self.output_shape, self.output_dtype)
        self._in_ptr = self.memory.alloc(self._host_in.nbytes)
        self._out_ptr = self.memory.alloc(self._host_out.nbytes)
        for tensor, pointer in ((self._input, self._in_ptr), (self._output, self._out_ptr)):
            if not self.context.set_tensor_address(tensor, pointer):
                msg = f"TensorRT {trt.__version__} refused the device buffer for tensor {tensor!r} of {source}"
                raise RuntimeMismatchError(msg)
        # One execution context, one pair of device buffers and one host buffer pair: not
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
        index = cuda_device_index(device)
        current = current_engine_info(index)
        if metadata.engine is not None:
            engine_path = metadata.model_file(directory, ".engine")
            check_engine_compatible(metadata.engine, current, source=str(engine_path))
            return cls(engine_path.read_bytes(), device=device, engine_info=metadata.engine, source=str(engine_path))
        return cls.from_onnx(directory, metadata, device=device, current=current, workspace_bytes=workspace_bytes)

    @classmethod
    def from_onnx(
        cls, directory: Path, metadata: ArtifactMetadata, *, device: str, current: EngineInfo, workspace_bytes: int
    ) -> TensorRTBackend:
        """Build (once) and cache the engine for an artifact exported without TensorRT (int8: its Q/DQ ONNX)."""
        onnx_path = metadata.model_file(directory, ".onnx")
        onnx_entry = next(f for f in metadata.files if f.path.lower().endswith(".onnx"))
        cache = _cache_folder(directory) / engine_cache_name(current, onnx_sha256=onnx_entry.sha256, precision=metadata.precision)
        if cache.is_file():
            try:
                return cls(cache.read_bytes(), device=device, engine_info=current, source=str(cache))
            except EngineMismatchError:
                cache.unlink()  # a truncated cache file: rebuild it
        serialized = build_serialized_engine(
            onnx_path,
            precision=metadata.precision,
            device_index=cuda_device_index(device),
            workspace_bytes=workspace_bytes,
        )
        tmp = cache.with_suffix(".tmp")
        tmp.write_bytes(serialized)
        tmp.replace(cache)
        cache.with_suffix(".json").write_text(json.dumps(asdict(current), indent=2) + "\n")
        return cls(serialized, device=device, engine_info=current, source=str(cache))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if tuple(batch.shape) != self.input_shape:
            msg = f"TensorRT engine expects input {self.input_shape}, got {tuple(batch.shape)}"
            raise RuntimeMismatchError(msg)
        with self._lock:
            if self.context is None:
                msg = "this TensorRT predictor was closed; load the model again"
                raise PredictorClosedError(msg)
            self._host_in[...] = batch  # into page-locked memory, converted to the engine's input type
            self.memory.to_device(self._in_ptr, self._host_in)
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
            self._host_in = self._host_out = None  # views of pinned memory freed below
            self.memory.close()

    def describe(self) -> dict[str, str]:
        return {
            "runtime": self.name,
            "device": f"{self.device} ({self.engine_info.gpu_name}, sm{self.engine_info.compute_capability})",
            "tensorrt": self.version,
            "buffers": f"{self.memory.kind}, pinned host",
        }
