"""The small interface every runtime implements, and the table that picks one lazily.

A backend only runs the graph: the batch its artifact's ``InputSpec`` describes in (float32
NCHW, or uint8 NHWC for a graph that normalises its input), anomaly maps in [0, 1] out. Pre- and
post-processing live in :mod:`fractalad_edge.preprocess`, written once. Backends are
imported only when chosen, so an OpenVINO device never imports torch.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fractalad_edge.artifact import ArtifactMetadata, ModelFormat
from fractalad_edge.errors import ConfigError, RuntimeMismatchError, RuntimeNotAvailableError


class Backend(ABC):
    """Runs one exported graph. Subclasses set ``name`` and implement ``infer``."""

    name: ClassVar[str]
    #: largest batch one call accepts; None = any (static engines take 1 and are looped)
    max_batch: int | None = None

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 normalised (or (N, H, W, 3) uint8) -> (N, H, W) float32 anomaly maps in [0, 1]."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release device memory or sessions; the default has nothing to release."""

    def describe(self) -> dict[str, str]:
        """Device and settings, for benchmark reports."""
        return {"runtime": self.name}


@dataclass(frozen=True, kw_only=True)
class RuntimeEntry:
    name: str
    module: str  # imported only when this runtime is chosen
    cls: str
    extra: str  # pip extra that installs what it needs
    formats: tuple[ModelFormat, ...]  # artifact formats it can run
    devices: tuple[str, ...]


RUNTIMES: dict[str, RuntimeEntry] = {
    entry.name: entry
    for entry in (
        RuntimeEntry(
            name="torch", module="fractalad_edge.runtimes.torch", cls="TorchBackend", extra="train",
            formats=(ModelFormat.TORCH,), devices=("cpu", "cuda"),
        ),
        RuntimeEntry(
            name="onnxruntime", module="fractalad_edge.runtimes.onnxruntime", cls="OnnxRuntimeBackend", extra="onnxruntime",
            formats=(ModelFormat.ONNX,), devices=("cpu", "cuda", "tensorrt"),
        ),
        RuntimeEntry(
            name="openvino", module="fractalad_edge.runtimes.openvino", cls="OpenVINOBackend", extra="openvino",
            formats=(ModelFormat.OPENVINO, ModelFormat.ONNX), devices=("cpu", "gpu", "npu", "auto"),
        ),
        RuntimeEntry(
            name="tensorrt", module="fractalad_edge.runtimes.tensorrt", cls="TensorRTBackend", extra="tensorrt",
            formats=(ModelFormat.TENSORRT,), devices=("cuda",),
        ),
    )
}


def get_runtime_entry(name: str) -> RuntimeEntry:
    if name not in RUNTIMES:
        msg = f"unknown runtime {name!r}; choose one of {', '.join(RUNTIMES)}"
        raise ConfigError(msg)
    return RUNTIMES[name]


def load_backend(
    directory: Path, metadata: ArtifactMetadata, *, runtime: str | None = None, device: str = "cpu", **options: Any
) -> Backend:
    """Import the chosen runtime's module and open the artifact with it."""
    entry = get_runtime_entry(runtime or metadata.runtime)
    if metadata.format not in entry.formats:
        accepted = ", ".join(f.value for f in entry.formats)
        msg = (
            f"runtime {entry.name!r} cannot run a {metadata.format.value!r} artifact ({directory}); it runs {accepted}. "
            f"Export to a format it runs, or load with runtime={metadata.runtime!r}"
        )
        raise RuntimeMismatchError(msg)
    if device.split(":")[0].lower() not in entry.devices:
        msg = f"runtime {entry.name!r} does not run on device {device!r}; it supports {', '.join(entry.devices)}"
        raise RuntimeMismatchError(msg)
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        msg = (
            f"runtime {entry.name!r} needs a package that is not installed ({exc.name or exc}); "
            f"install it with: pip install 'fractalad-edge[{entry.extra}]'"
        )
        raise RuntimeNotAvailableError(msg) from None
    return getattr(module, entry.cls).open(directory, metadata, device=device, **options)


def require(module_name: str, extra: str) -> Any:
    """Import a runtime's third-party package with an error that names the extra."""
    try:
        return importlib.import_module(module_name)
    except ImportError:
        msg = f"{module_name} is not installed; install it with: pip install 'fractalad-edge[{extra}]'"
        raise RuntimeNotAvailableError(msg) from None
