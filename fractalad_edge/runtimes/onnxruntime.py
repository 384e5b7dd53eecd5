"""The onnxruntime backend: CPU by default, CUDA or TensorRT execution providers on request.

No torch import: this is what runs on a plain x86 or ARM box. Graph optimisation is set
to ALL (constant folding, node fusions, layout optimisations); the intra-op thread count
is an option because on a shared edge CPU the default (every core) is rarely right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fractalad_edge.artifact import ArtifactMetadata, Precision
from fractalad_edge.errors import ConfigError, PredictorClosedError, RuntimeMismatchError
from fractalad_edge.extras import require
from fractalad_edge.runtimes.base import Backend


#: device name -> execution providers, in priority order (CPU always last as the fallback
#: for any node the accelerator cannot take)
PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
_RUNS = (Precision.FP32, Precision.INT8)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model_path: str | Path, *, device: str = "cpu", threads: int | None = None) -> None:
        ort = require("onnxruntime", "onnxruntime")
        kind, _, index = device.lower().partition(":")
        if kind not in PROVIDERS:
            msg = f"onnxruntime device must be one of {', '.join(PROVIDERS)} (optionally ':N'), got {device!r}"
            raise ConfigError(msg)
        if threads is not None and threads < 1:
            msg = f"threads must be >= 1 (or None for onnxruntime's default), got {threads}"
            raise ConfigError(msg)
        wanted = PROVIDERS[kind]
        available = ort.get_available_providers()
        if wanted[0] not in available:
            msg = (
                f"onnxruntime has no {wanted[0]} here (available: {', '.join(available)}); device {device!r} needs the "
                "GPU build (pip install onnxruntime-gpu) and a CUDA device, or use device='cpu'"
            )
            raise RuntimeMismatchError(msg)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers: list[Any] = [
            (p, {"device_id": int(index)}) if index and p != "CPUExecutionProvider" else p for p in wanted
        ]
        self.session = ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
        self.device = device
        self.threads = threads
        self.version = ort.__version__
        self._input = self.session.get_inputs()[0]
        self._output = self.session.get_outputs()[0].name
        batch = self._input.shape[0]
        self.max_batch = batch if isinstance(batch, int) else None
        self.input_shape = tuple(self._input.shape)

    @classmethod
    def open(
        cls, directory: Path, metadata: ArtifactMetadata, *, device: str = "cpu", threads: int | None = None, **options: Any
    ) -> OnnxRuntimeBackend:
        if options:
            msg = f"the onnxruntime runtime takes the options device and threads, not {sorted(options)}"
            raise ConfigError(msg)
        if metadata.precision not in _RUNS:
            msg = (
                f"onnxruntime runs fp32 and int8 ONNX artifacts; this one ({directory}) is {metadata.precision.value}. "
                "Load it with its own runtime or re-export"
            )
            raise RuntimeMismatchError(msg)
        return cls(metadata.model_file(directory, ".onnx"), device=device, threads=threads)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        expected = tuple(d if isinstance(d, int) else batch.shape[i] for i, d in enumerate(self.input_shape))
        if batch.shape != expected:
            msg = f"onnxruntime model expects input {self.input_shape}, got {batch.shape}"
            raise RuntimeMismatchError(msg)
        session = self.session  # InferenceSession.run is thread-safe; nothing else here is mutated
        if session is None:
            msg = "this onnxruntime predictor was closed; load the model again"
            raise PredictorClosedError(msg)
        (maps,) = session.run([self._output], {self._input.name: batch})
        return maps[:, 0]

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]

    def describe(self) -> dict[str, str]:
        return {
            "runtime": self.name,
            "device": self.device,
            "providers": ",".join(self.session.get_providers()) if self.session is not None else "",
            "threads": "default (one per physical core)" if self.threads is None else str(self.threads),
            "onnxruntime": self.version,
        }
