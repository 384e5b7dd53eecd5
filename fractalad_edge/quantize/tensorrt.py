"""TensorRT INT8 calibration (implicit quantization) fed by the same calibration set as every toolchain.

TensorRT INT8 is symmetric (scale only, no zero point), so the entropy calibrator
(``IInt8EntropyCalibrator2``, TensorRT's recommended one for CNNs) picks each activation's
clipping threshold by minimising the KL divergence between the float and INT8 histograms.
The scales are written to a cache file, so rebuilding an engine on the same device (or
another engine for the same model) does not calibrate again; delete the cache when the
model or the calibration recipe changes.

TensorRT cannot be installed on every build machine, so it is imported only when the
calibrator is first used: ``from fractalad_edge.quantize.tensorrt import EntropyCalibrator``
resolves the class lazily (it subclasses ``trt.IInt8EntropyCalibrator2`` and so exists only
once TensorRT is imported). Device memory comes from cuda-python (``cuda.bindings.runtime``,
or the older ``cuda.cudart``), the package TensorRT's own samples use, or else from a torch
CUDA tensor (an export machine has torch anyway).

Using it with a builder (TensorRT 8.6 / 10.x)::

    calibrator = EntropyCalibrator(calibration, input_spec, cache_path)  # batch 1: the static ONNX graph
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = calibrator
    # a dynamic-batch network also needs a calibration profile at calibrator.batch_size:
    # profile.set_shape(name, shape, shape, shape); config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    calibrator.close()  # frees the device buffer

TensorRT 10.1 deprecates implicit-quantization calibrators in favour of explicit Q/DQ
graphs; they still build in 10.x.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fractalad_edge.artifact import InputSpec
from fractalad_edge.errors import CalibrationError, ConfigError, QuantizationError, RuntimeNotAvailableError
from fractalad_edge.preprocess import prepare_batch
from fractalad_edge.runtimes.base import require

if TYPE_CHECKING:
    from fractalad_edge.calibration.dataset import CalibrationSet


def calibration_batches(calibration: CalibrationSet, input_spec: InputSpec, batch_size: int) -> list[np.ndarray]:
    """The calibration set as contiguous float32 (batch_size, 3, H, W) batches, pre-processed like production frames.

    A last incomplete batch is dropped: TensorRT needs every batch at the calibration shape.
    """
    if batch_size < 1:
        msg = f"calibration batch_size must be >= 1, got {batch_size}"
        raise ConfigError(msg)
    if len(calibration) < batch_size:
        msg = (
            f"the calibration set has {len(calibration)} samples, fewer than one batch of {batch_size}; "
            "raise --calib-count or lower the calibration batch size"
        )
        raise CalibrationError(msg)
    usable = len(calibration) - len(calibration) % batch_size
    return [
        np.ascontiguousarray(
            prepare_batch([s.image for s in calibration[i : i + batch_size]], input_spec, channel_order="rgb")[0],
            dtype=np.float32,
        )
        for i in range(0, usable, batch_size)
    ]


class _DeviceBuffer:
    """One device allocation that host batches are copied into (cuda-python, else torch)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self._cudart = _cudart()
        self._tensor: Any = None
        if self._cudart is not None:
            self.pointer = int(self._check(self._cudart.cudaMalloc(nbytes), "cudaMalloc"))
            return
        try:
            torch = importlib.import_module("torch")
        except ImportError:
            torch = None
        if torch is None or not torch.cuda.is_available():
            msg = (
                "TensorRT INT8 calibration needs device memory from cuda-python (pip install cuda-python) or a CUDA "
                "build of torch; neither is available here"
            )
            raise RuntimeNotAvailableError(msg)
        self._tensor = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        self.pointer = int(self._tensor.data_ptr())

    def _check(self, result: Any, what: str) -> Any:
        """cuda-python returns (error, *values); raise on anything but success."""
        error, *values = result if isinstance(result, tuple) else (result,)
        if error != self._cudart.cudaError_t.cudaSuccess:
            msg = f"CUDA call {what} failed during TensorRT calibration: {error}"
            raise QuantizationError(msg)
        return values[0] if len(values) == 1 else None

    def upload(self, batch: np.ndarray) -> None:
        if batch.nbytes != self.nbytes:
            msg = f"calibration batch of {batch.nbytes} bytes does not fit the {self.nbytes}-byte device buffer"
            raise QuantizationError(msg)
        if self._cudart is not None:
            kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._check(self._cudart.cudaMemcpy(self.pointer, batch.ctypes.data, batch.nbytes, kind), "cudaMemcpy")
        else:
            import torch

            self._tensor.copy_(torch.from_numpy(batch.view(np.uint8).reshape(-1)))
            torch.cuda.synchronize()

    def free(self) -> None:
        if self._cudart is not None and self.pointer:
            self._check(self._cudart.cudaFree(self.pointer), "cudaFree")
        self._tensor = None
        self.pointer = 0


def _cudart() -> Any:
    """cuda-python's runtime API module (new and old import paths), or None."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


@functools.cache
def _entropy_calibrator_class() -> type:
    trt = require("tensorrt", "tensorrt")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        """Feeds pre-processed calibration batches to TensorRT through one device buffer.

        ``batch_size`` must equal the network's input batch (1 for the static ONNX graph
        this SDK exports). Scales are read from / written to ``cache_path``.
        """

        def __init__(
            self, calibration: CalibrationSet, input_spec: InputSpec, cache_path: str | Path, *, batch_size: int = 1
        ) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # pybind11 needs the explicit base init
            self.batch_size = batch_size
            self.cache_path = Path(cache_path)
            self._batches = calibration_batches(calibration, input_spec, batch_size)
            self._index = 0
            self._buffer: _DeviceBuffer | None = _DeviceBuffer(self._batches[0].nbytes)

        def get_batch_size(self) -> int:
            return self.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self._index >= len(self._batches) or self._buffer is None:
                return None  # no more data: TensorRT computes the scales
            self._buffer.upload(self._batches[self._index])
            self._index += 1
            return [self._buffer.pointer]  # the model has one input

        def read_calibration_cache(self) -> bytes | None:
            return self.cache_path.read_bytes() if self.cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            self.cache_path.write_bytes(bytes(cache))

        def close(self) -> None:
            if self._buffer is not None:
                self._buffer.free()
                self._buffer = None

    return EntropyCalibrator


def make_entropy_calibrator(
    calibration: CalibrationSet, input_spec: InputSpec, cache_path: str | Path, *, batch_size: int = 1
) -> Any:
    """An ``EntropyCalibrator`` (a ``trt.IInt8EntropyCalibrator2``) over ``calibration``."""
    return _entropy_calibrator_class()(calibration, input_spec, cache_path, batch_size=batch_size)


def __getattr__(name: str) -> Any:
    # ``from fractalad_edge.quantize.tensorrt import EntropyCalibrator`` imports TensorRT here, not at module import.
    if name == "EntropyCalibrator":
        return _entropy_calibrator_class()
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


# EntropyCalibrator is left out of __all__: a star import must not import TensorRT.
__all__ = ["calibration_batches", "make_entropy_calibrator"]
