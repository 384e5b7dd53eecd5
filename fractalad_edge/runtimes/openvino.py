"""The OpenVINO backend: IR (or ONNX) artifacts on CPU, integrated GPU, NPU or AUTO.

No torch import. The inference precision is always set explicitly from the artifact:
OpenVINO's CPU plugin otherwise picks bf16 by itself on CPUs with AVX512-BF16/AMX, and an
fp32 artifact would silently lose about three decimal digits (and drift from the
thresholds it was calibrated with).

- fp32 and int8 artifacts: ``f32`` (int8 layers run int8; everything else stays f32).
- bf16: ``bf16``. A CPU without bf16 arithmetic (no AVX512-BF16/AMX, e.g. AVX2-only) runs
  f32 instead; OpenVINO resolves the hint to f32 there.
- fp16: ``f16``. GPUs and NPUs run f16; a CPU runs f16 only with native FP16 arithmetic
  (ARM, AVX512-FP16); other CPUs run f32 on the fp16 weights, which are upcast at load.

``describe()`` reports the precision the compiled model actually runs, read back from
OpenVINO, so a benchmark never claims bf16 where f32 ran.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fractalad_edge.artifact import ArtifactMetadata, ModelFormat, Precision
from fractalad_edge.errors import ConfigError, PredictorClosedError, RuntimeMismatchError
from fractalad_edge.extras import require
from fractalad_edge.runtimes.base import Backend


PRECISION_HINTS: dict[Precision, str] = {
    Precision.FP32: "f32",
    Precision.INT8: "f32",
    Precision.BF16: "bf16",
    Precision.FP16: "f16",
}
PERFORMANCE_HINTS = ("latency", "throughput")
DEVICES = ("cpu", "gpu", "npu", "auto")


def openvino_device(device: str) -> str:
    """'cpu' -> 'CPU', 'gpu:1' -> 'GPU.1' (OpenVINO's names)."""
    kind, _, index = device.lower().partition(":")
    if kind not in DEVICES or (index and not index.isdigit()):
        msg = f"OpenVINO device must be one of {', '.join(DEVICES)} (optionally 'gpu:N'), got {device!r}"
        raise ConfigError(msg)
    return kind.upper() + (f".{index}" if index else "")


class OpenVINOBackend(Backend):
    name = "openvino"
    async_queue = "openvino-async(THROUGHPUT)"

    def __init__(
        self,
        model_path: str | Path,
        *,
        weights_path: str | Path | None = None,
        precision: Precision = Precision.FP32,
        device: str = "cpu",
        performance_hint: str = "latency",
        threads: int | None = None,
    ) -> None:
        ov = require("openvino", "openvino")
        if performance_hint not in PERFORMANCE_HINTS:
            msg = f"performance_hint must be one of {', '.join(PERFORMANCE_HINTS)}, got {performance_hint!r}"
            raise ConfigError(msg)
        if threads is not None and threads < 1:
            msg = f"threads must be >= 1 (or None for OpenVINO's default), got {threads}"
            raise ConfigError(msg)
        target = openvino_device(device)
        core = ov.Core()
        if target != "AUTO" and target.split(".")[0] not in {d.split(".")[0] for d in core.available_devices}:
            msg = f"OpenVINO sees no {target} device here (available: {', '.join(core.available_devices)}); use device='cpu'"
            raise RuntimeMismatchError(msg)
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": performance_hint.upper(),
            "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
        }
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(
            core.read_model(str(model_path), None if weights_path is None else str(weights_path)), target, config
        )
        # An InferRequest is not thread-safe: each concurrent caller takes its own from a pool
        # (created on demand, returned after use), so threads never share one and OpenVINO runs
        # their requests in parallel on its streams.
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._requests.put(self.compiled.create_infer_request())
        self.model_path, self.weights_path = model_path, weights_path
        self.device = target
        self.precision = precision
        self.performance_hint = performance_hint
        self.threads = threads
        self.version = ov.get_version()
        shape = self.compiled.input(0).get_partial_shape()
        self.input_shape = tuple(d.get_length() if d.is_static else -1 for d in shape)
        self.max_batch = self.input_shape[0] if self.input_shape[0] > 0 else None

    @classmethod
    def open(
        cls,
        directory: Path,
        metadata: ArtifactMetadata,
        *,
        device: str = "cpu",
        performance_hint: str = "latency",
        threads: int | None = None,
        **options: Any,
    ) -> OpenVINOBackend:
        if options:
            msg = f"the openvino runtime takes the options device, performance_hint and threads, not {sorted(options)}"
            raise ConfigError(msg)
        if metadata.format is ModelFormat.OPENVINO:
            model_path, weights_path = metadata.model_file(directory, ".xml"), metadata.model_file(directory, ".bin")
        else:
            model_path, weights_path = metadata.model_file(directory, ".onnx"), None
        return cls(
            model_path,
            weights_path=weights_path,
            precision=metadata.precision,
            device=device,
            performance_hint=performance_hint,
            threads=threads,
        )

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.max_batch is not None and batch.shape != self.input_shape:
            msg = f"OpenVINO model expects input {self.input_shape}, got {batch.shape}"
            raise RuntimeMismatchError(msg)
        compiled = self.compiled
        if compiled is None:
            msg = "this OpenVINO predictor was closed; load the model again"
            raise PredictorClosedError(msg)
        try:
            request = self._requests.get_nowait()
        except queue.Empty:
            request = compiled.create_infer_request()
        try:
            request.infer({0: batch})
            return np.array(request.get_output_tensor(0).data[:, 0], dtype=np.float32, copy=True)
        finally:
            self._requests.put(request)

    def inference_precision(self) -> str:
        """The precision the compiled model runs (OpenVINO's resolution of the hint)."""
        try:
            value = self.compiled.get_property("INFERENCE_PRECISION_HINT")
            return value.get_type_name() if hasattr(value, "get_type_name") else str(value)  # ov.Type -> "f32"
        except RuntimeError:  # AUTO does not expose it; the device it picked decides
            return f"{PRECISION_HINTS[self.precision]} (hint; chosen device decides)"

    def async_rates(self, inputs: Sequence[np.ndarray], *, repeats: int = 3) -> tuple[list[float], int]:
        """Images/s through OpenVINO's AsyncInferQueue with the THROUGHPUT hint (several streams).

        This is how OpenVINO is meant to be fed when frames come from several cameras or a
        queue: the runtime picks the number of parallel requests. Inference only (inputs are
        already pre-processed); the model is compiled again for the hint, with this backend's
        precision hint and threads.
        """
        ov = require("openvino", "openvino")
        core = ov.Core()
        # The precision hint is explicit, as in __init__: left alone, the CPU plugin would run
        # an fp32 model in bf16 on CPUs that have it, and the row would compare apples to pears.
        config: dict[str, Any] = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": PRECISION_HINTS[self.precision]}
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        model = core.read_model(str(self.model_path), None if self.weights_path is None else str(self.weights_path))
        compiled = core.compile_model(model, self.device, config)
        requests = ov.AsyncInferQueue(compiled, 0)  # 0: the optimal number of requests for the hint
        for array in inputs[: len(requests)]:  # warm every request once
            requests.start_async({0: array})
        requests.wait_all()
        rates = []
        for _ in range(max(1, repeats)):
            started = time.perf_counter()
            for array in inputs:
                requests.start_async({0: array})
            requests.wait_all()
            rates.append(len(inputs) / (time.perf_counter() - started))
        return rates, len(requests)

    def close(self) -> None:
        self._requests = queue.SimpleQueue()
        self.compiled = None  # type: ignore[assignment]

    def describe(self) -> dict[str, str]:
        try:
            executing = ",".join(self.compiled.get_property("EXECUTION_DEVICES"))
        except RuntimeError:
            executing = self.device
        described = {
            "runtime": self.name,
            "device": executing,
            "inference_precision": self.inference_precision(),
            "performance_hint": self.performance_hint,
            "threads": "default" if self.threads is None else str(self.threads),
            "openvino": self.version,
        }
        for key in ("INFERENCE_NUM_THREADS", "NUM_STREAMS"):  # what the plugin chose
            try:
                described[key.lower()] = str(self.compiled.get_property(key))
            except Exception:  # noqa: BLE001, S112 - a plugin without the property
                continue
        return described
