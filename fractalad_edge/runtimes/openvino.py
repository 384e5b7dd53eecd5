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

``inference_precision`` ("f32", "bf16", "f16") overrides the hint the artifact implies. On a
CPU with AMX or AVX512-BF16, ``"bf16"`` on an int8 artifact runs the layers that stay in
float (the INT8 float regions) in bf16: 1.22x faster inference and 0.19 points less pixel
AUROC on MVTec bottle (docs/experiments/edge-speed.md).

That is the default for an int8 artifact on a CPU with bf16 arithmetic (OpenVINO lists
``BF16`` in ``OPTIMIZATION_CAPABILITIES``) when its export repeated the accuracy gate in
bf16 and it passed (``quantization.bf16_passed``, :func:`default_inference_precision`);
everywhere else, and for artifacts whose gate did not check or failed bf16, the float
layers run f32. An explicit ``inference_precision`` always wins.

``describe()`` reports the precision the compiled model actually runs, read back from
OpenVINO, so a benchmark never claims bf16 where f32 ran.

A batch of several frames on a batch-1 graph runs as parallel infer requests
(``start_async``), as many at a time as OpenVINO says the compiled model runs best
(OPTIMAL_NUMBER_OF_INFER_REQUESTS: one per stream, so one with the latency hint and one
per core group with the throughput hint).
"""

from __future__ import annotations

import contextlib
import functools
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
INFERENCE_PRECISIONS = ("f32", "bf16", "f16")
DEVICES = ("cpu", "gpu", "npu", "auto")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin has bf16 arithmetic here (AVX512-BF16 or AMX)."""
    ov = require("openvino", "openvino")
    try:
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:  # no CPU plugin
        return False


def default_inference_precision(metadata: ArtifactMetadata, device: str) -> str | None:
    """``"bf16"`` for an int8 artifact whose export gate passed with bf16 float layers, on a CPU
    with bf16 arithmetic; None (the artifact's own hint, f32 for int8) otherwise."""
    gate = metadata.quantization
    if metadata.precision is not Precision.INT8 or gate is None or gate.bf16_passed is not True:
        return None
    return "bf16" if openvino_device(device) == "CPU" and cpu_has_bf16() else None


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
        inference_precision: str | None = None,
    ) -> None:
        ov = require("openvino", "openvino")
        if performance_hint not in PERFORMANCE_HINTS:
            msg = f"performance_hint must be one of {', '.join(PERFORMANCE_HINTS)}, got {performance_hint!r}"
            raise ConfigError(msg)
        if inference_precision is not None and inference_precision not in INFERENCE_PRECISIONS:
            msg = (
                f"inference_precision must be one of {', '.join(INFERENCE_PRECISIONS)} (or None: the artifact's), "
                f"got {inference_precision!r}"
            )
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
            "INFERENCE_PRECISION_HINT": inference_precision or PRECISION_HINTS[precision],
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
        self.requested_precision = inference_precision
        self.version = ov.get_version()
        port = self.compiled.input(0)
        shape = port.get_partial_shape()
        self.input_shape = tuple(d.get_length() if d.is_static else -1 for d in shape)
        # float32 NCHW, or uint8 NHWC for graphs that normalise their input (InputSpec.dtype)
        self.input_dtype = np.dtype(port.get_element_type().to_dtype())
        # a static batch size: larger batches are split here and run on parallel requests
        self.graph_batch = self.input_shape[0] if self.input_shape[0] > 0 else None
        try:
            self.parallel_requests = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except RuntimeError:
            self.parallel_requests = 1

    @classmethod
    def open(
        cls,
        directory: Path,
        metadata: ArtifactMetadata,
        *,
        device: str = "cpu",
        performance_hint: str = "latency",
        threads: int | None = None,
        inference_precision: str | None = None,
        **options: Any,
    ) -> OpenVINOBackend:
        if options:
            msg = (
                "the openvino runtime takes the options device, performance_hint, threads and inference_precision, "
                f"not {sorted(options)}"
            )
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
            inference_precision=inference_precision or default_inference_precision(metadata, device),
        )

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if batch.dtype != self.input_dtype:
            # never cast silently: float pixels in a uint8 graph (or the reverse) would be garbage
            msg = (
                f"this OpenVINO model takes {self.input_dtype} input of shape {self.input_shape}, got {batch.dtype}; "
                "prepare it with fractalad_edge.preprocess.prepare_batch and the artifact's input spec"
            )
            raise RuntimeMismatchError(msg)
        batch = np.ascontiguousarray(batch)
        per = self.graph_batch or batch.shape[0]
        if self.graph_batch is not None and (batch.shape[1:] != self.input_shape[1:] or batch.shape[0] % per):
            msg = f"OpenVINO model expects input {self.input_shape} (or a multiple of its batch), got {batch.shape}"
            raise RuntimeMismatchError(msg)
        compiled = self.compiled
        if compiled is None:
            msg = "this OpenVINO predictor was closed; load the model again"
            raise PredictorClosedError(msg)
        chunks = [batch[i : i + per] for i in range(0, batch.shape[0], per)]
        requests = [self._take_request(compiled) for _ in range(min(len(chunks), self.parallel_requests))]
        maps: list[np.ndarray] = []
        try:
            if len(requests) == 1:
                for chunk in chunks:
                    requests[0].infer({0: chunk})
                    maps.append(self._maps(requests[0]))
            else:  # round robin: request i % k takes chunk i once it has handed back chunk i - k
                for index, chunk in enumerate(chunks):
                    request = requests[index % len(requests)]
                    if index >= len(requests):
                        request.wait()
                        maps.append(self._maps(request))
                    request.start_async({0: chunk})
                for index in range(max(0, len(chunks) - len(requests)), len(chunks)):
                    request = requests[index % len(requests)]
                    request.wait()
                    maps.append(self._maps(request))
        finally:
            for request in requests:
                # idle ones return at once; after a failure, no busy request goes back to the pool
                # (its own error, if any, is the one already propagating)
                with contextlib.suppress(RuntimeError):
                    request.wait()
                self._requests.put(request)
        return maps[0] if len(maps) == 1 else np.concatenate(maps)

    def _take_request(self, compiled: Any) -> Any:
        try:
            return self._requests.get_nowait()
        except queue.Empty:
            return compiled.create_infer_request()

    @staticmethod
    def _maps(request: Any) -> np.ndarray:
        return np.array(request.get_output_tensor(0).data[:, 0], dtype=np.float32, copy=True)

    def inference_precision(self) -> str:
        """The precision the compiled model runs (OpenVINO's resolution of the hint), e.g. ``"f32"``."""
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
        hint = self.requested_precision or PRECISION_HINTS[self.precision]
        config: dict[str, Any] = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": hint}
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
            "parallel_requests": str(self.parallel_requests),
            "openvino": self.version,
        }
        for key in ("INFERENCE_NUM_THREADS", "NUM_STREAMS"):  # what the plugin chose
            try:
                described[key.lower()] = str(self.compiled.get_property(key))
            except Exception:  # noqa: BLE001, S112 - a plugin without the property
                continue
        return described
