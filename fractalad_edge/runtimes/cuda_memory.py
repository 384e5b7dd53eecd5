"""Device buffers, pinned host buffers and a stream on ``cuda:N``, for the TensorRT runtime.

Two providers, picked at run time: cuda-python's runtime bindings (``cuda.bindings.runtime``,
or the older ``cuda.cudart``: the package TensorRT's own samples use), else torch CUDA
tensors (Jetson images ship torch but seldom cuda-python). Both:

* make ``cuda:N`` the current device before anything is created (``cudaSetDevice`` /
  ``torch.cuda.device``), so the builder, the engine and the buffers all live on N;
* copy through page-locked host buffers (``cudaMallocHost`` / ``pin_memory()``), which
  ``cudaMemcpyAsync`` needs to be asynchronous;
* raise :class:`~fractalad_edge.errors.CudaError` on any failed CUDA call, with the call's name;
* release what they created in :meth:`close`, which is safe to call twice and after a
  half-finished constructor.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from fractalad_edge.errors import CudaError, RuntimeNotAvailableError


@dataclass(frozen=True, kw_only=True)
class DeviceProperties:
    """What tells CUDA devices apart for TensorRT engines (see runtimes/tensorrt_compat.py)."""

    name: str
    compute_capability: str
    multiprocessor_count: int
    total_memory_bytes: int


def _cudart() -> Any:
    """cuda-python's runtime API module (new and old import paths), or None."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def check_cuda(cudart: Any, result: Any, call: str) -> Any:
    """cuda-python returns ``(error, *values)``; raise CudaError on anything but cudaSuccess."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if error != cudart.cudaError_t.cudaSuccess:
        msg = f"CUDA call {call} failed: {error}"
        raise CudaError(msg)
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def use_device(device_index: int) -> None:
    """Make ``cuda:device_index`` current for TensorRT (builder and runtime use the current device)."""
    cudart = _cudart()
    if cudart is not None:
        check_cuda(cudart, cudart.cudaSetDevice(device_index), f"cudaSetDevice({device_index})")
        return
    torch = _torch_cuda()
    _check_index(torch.cuda.device_count(), device_index)
    torch.cuda.set_device(device_index)


def device_properties(device_index: int) -> DeviceProperties:
    cudart = _cudart()
    if cudart is not None:
        props = check_cuda(cudart, cudart.cudaGetDeviceProperties(device_index), f"cudaGetDeviceProperties({device_index})")
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return DeviceProperties(
            name=name.rstrip("\x00"),
            compute_capability=f"{props.major}.{props.minor}",
            multiprocessor_count=int(props.multiProcessorCount),
            total_memory_bytes=int(props.totalGlobalMem),
        )
    torch = _torch_cuda()
    _check_index(torch.cuda.device_count(), device_index)
    props = torch.cuda.get_device_properties(device_index)
    return DeviceProperties(
        name=props.name,
        compute_capability=f"{props.major}.{props.minor}",
        multiprocessor_count=int(props.multi_processor_count),
        total_memory_bytes=int(props.total_memory),
    )


def _torch_cuda() -> Any:
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        msg = (
            "TensorRT needs CUDA memory from cuda-python or a CUDA build of torch; neither is installed. "
            "Install cuda-python (pip install cuda-python) or NVIDIA's CUDA build of torch"
        )
        raise RuntimeNotAvailableError(msg) from None
    if not torch.cuda.is_available():
        msg = "TensorRT needs a CUDA device and none is visible (torch.cuda.is_available() is False)"
        raise CudaError(msg)
    return torch


def _check_index(count: int, device_index: int) -> None:
    if not 0 <= device_index < count:
        msg = f"cuda:{device_index} does not exist; this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
        raise CudaError(msg)


class CudaPythonMemory:
    """Buffers and a stream through cuda-python on ``cuda:N``."""

    kind = "cuda-python"

    def __init__(self, device_index: int, cudart: Any) -> None:
        self.cudart = cudart
        self.device_index = device_index
        self.stream: Any = None
        self._device: list[int] = []
        self._host: list[int] = []
        self._call(cudart.cudaSetDevice(device_index), f"cudaSetDevice({device_index})")
        self.stream = self._call(cudart.cudaStreamCreate(), "cudaStreamCreate")

    def _call(self, result: Any, call: str) -> Any:
        return check_cuda(self.cudart, result, call)

    def alloc(self, nbytes: int) -> int:
        pointer = int(self._call(self.cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes})"))
        self._device.append(pointer)
        return pointer

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A page-locked host array (cudaMallocHost), freed by close()."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        pointer = int(self._call(self.cudart.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})"))
        self._host.append(pointer)
        import ctypes

        buffer = (ctypes.c_byte * nbytes).from_address(pointer)
        return np.frombuffer(buffer, dtype=dtype).reshape(shape)

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.cudart.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, self.stream), "cudaMemcpyAsync")

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.cudart.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, self.stream), "cudaMemcpyAsync")

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def synchronize(self) -> None:
        self._call(self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def close(self) -> None:
        """Free everything created so far; errors while freeing are collected and raised once."""
        failures = []
        for pointer in self._device:
            failures.append(self.cudart.cudaFree(pointer))
        for pointer in self._host:
            failures.append(self.cudart.cudaFreeHost(pointer))
        self._device.clear()
        self._host.clear()
        if self.stream is not None:
            failures.append(self.cudart.cudaStreamDestroy(self.stream))
            self.stream = None
        for result in failures:
            self._call(result, "cudaFree/cudaFreeHost/cudaStreamDestroy")


class TorchCudaMemory:
    """The same through torch CUDA tensors on ``cuda:N`` (torch's caching allocator frees them)."""

    kind = "torch"

    def __init__(self, device_index: int) -> None:
        torch = _torch_cuda()
        _check_index(torch.cuda.device_count(), device_index)
        self.torch = torch
        self.device_index = device_index
        self.device = torch.device("cuda", device_index)
        torch.cuda.set_device(self.device)  # TensorRT runs on the current device
        self.stream = torch.cuda.Stream(device=self.device)
        self._tensors: dict[int, Any] = {}
        self._host: list[Any] = []

    def alloc(self, nbytes: int) -> int:
        tensor = self.torch.empty(nbytes, dtype=self.torch.uint8, device=self.device)
        self._tensors[int(tensor.data_ptr())] = tensor
        return int(tensor.data_ptr())

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        tensor = self.torch.empty(nbytes, dtype=self.torch.uint8).pin_memory()
        self._host.append(tensor)
        return tensor.numpy().view(dtype).reshape(shape)

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        source = self.torch.from_numpy(array.reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(self.stream):
            self._tensors[pointer][: array.nbytes].copy_(source, non_blocking=source.is_pinned())

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        target = self.torch.from_numpy(array.reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(self.stream):
            target.copy_(self._tensors[pointer][: array.nbytes], non_blocking=target.is_pinned())

    @property
    def stream_handle(self) -> int:
        return int(self.stream.cuda_stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self._tensors.clear()
        self._host.clear()
        self.stream = None


def cuda_memory(device_index: int) -> CudaPythonMemory | TorchCudaMemory:
    """cuda-python when importable, else torch; neither -> RuntimeNotAvailableError naming the extra."""
    cudart = _cudart()
    if cudart is not None:
        return CudaPythonMemory(device_index, cudart)
    return TorchCudaMemory(device_index)


__all__ = ["CudaPythonMemory", "DeviceProperties", "TorchCudaMemory", "check_cuda", "cuda_memory", "device_properties", "use_device"]
