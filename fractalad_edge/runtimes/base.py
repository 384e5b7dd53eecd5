"""The small interface every runtime implements, and the table that picks one lazily.

A backend only runs the graph: the batch its artifact's ``InputSpec`` describes in (float32
NCHW, or uint8 NHWC for a graph that normalises its input), anomaly maps out, in the space the
artifact's ``score.space`` names (probabilities, logits, distances, ...). Pre- and
post-processing live in :mod:`fractalad_edge.preprocess`, written once. Backends are
imported only when chosen, so an OpenVINO device never imports torch.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fractalad_edge.artifact import ArtifactMetadata, ModelFormat, Precision
from fractalad_edge.errors import ConfigError, RuntimeMismatchError, RuntimeNotAvailableError
from fractalad_edge.extras import install_hint
from fractalad_edge.score_space import ScoreSpace


class Backend(ABC):
    """Runs one exported graph. Subclasses set ``name`` and implement ``infer``."""

    name: ClassVar[str]
    #: largest batch one call accepts; None = any (static engines take 1 and are looped)
    max_batch: int | None = None
    #: the runtime's own asynchronous queue, named for reports (None: it has none; see ``async_rates``)
    async_queue: ClassVar[str | None] = None

    @property
    def score_space(self) -> ScoreSpace | None:
        """The space of the maps this backend returns, where it can tell (a torch module can);
        None for a fixed graph, whose space only the artifact's metadata records."""
        return None

    @classmethod
    @abstractmethod
    def open(cls, directory: Path, metadata: ArtifactMetadata, *, device: str = "cpu", **options: Any) -> Backend:
        """Open an artifact directory; unknown ``options`` are refused with a message naming the accepted ones."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 normalised (or (N, H, W, 3) uint8) -> (N, H, W) float32 anomaly maps (score.space)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release device memory or sessions; the default has nothing to release."""

    def describe(self) -> dict[str, str]:
        """Device and settings, for benchmark reports."""
        return {"runtime": self.name}

    def inference_precision(self) -> str | None:
        """The arithmetic precision the runtime resolved for the graph, where it decides one itself.

        OpenVINO resolves its precision hint per device (a bf16 hint runs f32 on a CPU
        without bf16), so what runs can differ from what was asked; None: this runtime runs
        the artifact's precision as stored and reports nothing else.
        """
        return None

    def async_rates(self, inputs: Sequence[np.ndarray], *, repeats: int = 3) -> tuple[list[float], int]:
        """Images/s of each of ``repeats`` passes of pre-processed (1, 3, H, W) ``inputs`` through
        ``async_queue``, and how many requests it kept in flight. Only where ``async_queue`` is set."""
        msg = f"the {self.name} runtime has no asynchronous queue to measure"
        raise RuntimeMismatchError(msg)


@dataclass(frozen=True, kw_only=True)
class RuntimeEntry:
    """Everything the rest of the package knows about one runtime: adding a runtime is a module plus one entry."""

    name: str
    module: str  # imported only when this runtime is chosen
    cls: str  # the Backend subclass in ``module``; its ``open`` loads an artifact
    package: str  # the third-party module without which the runtime cannot run
    extra: str  # pip extra that installs what it needs
    formats: tuple[ModelFormat, ...]  # artifact formats it can run; the first is its own (the one the bench exports to)
    devices: tuple[str, ...]
    thread_option: str | None = None  # the ``open`` option that caps intra-op threads
    #: the ``open`` option that runs an fp32 artifact at a reduced precision (None: the precision is the export's)
    precision_option: str | None = None
    #: with ``precision_option``: the precisions it runs per device kind
    option_precisions: Mapping[str, tuple[Precision, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what in ("name", "module", "cls", "package", "extra"):
            if not isinstance(getattr(self, what), str) or not getattr(self, what):
                msg = f"RuntimeEntry.{what} must be a non-empty string, got {getattr(self, what)!r}"
                raise ConfigError(msg)
        if not self.formats or not all(isinstance(f, ModelFormat) for f in self.formats):
            msg = f"runtime {self.name!r}: formats must list at least one ModelFormat (its own first), got {self.formats!r}"
            raise ConfigError(msg)
        if not self.devices:
            msg = f"runtime {self.name!r}: devices must list at least one device kind (e.g. 'cpu')"
            raise ConfigError(msg)
        if self.option_precisions and self.precision_option is None:
            msg = f"runtime {self.name!r}: option_precisions needs the precision_option that selects them"
            raise ConfigError(msg)

    @property
    def natural_format(self) -> ModelFormat:
        return self.formats[0]

    def install_hint(self) -> str:
        return install_hint(self.extra)


RUNTIMES: dict[str, RuntimeEntry] = {
    entry.name: entry
    for entry in (
        RuntimeEntry(
            name="torch", module="fractalad_edge.runtimes.torch", cls="TorchBackend", package="torch", extra="train",
            formats=(ModelFormat.TORCH,), devices=("cpu", "cuda"), thread_option="threads",
            # reduced precision runs the fp32 weights: bf16 autocast on CPU, weights cast on CUDA
            precision_option="precision",
            option_precisions={
                "cpu": (Precision.FP32, Precision.BF16),
                "cuda": (Precision.FP32, Precision.FP16, Precision.BF16),
            },
        ),
        RuntimeEntry(
            name="onnxruntime", module="fractalad_edge.runtimes.onnxruntime", cls="OnnxRuntimeBackend",
            package="onnxruntime", extra="onnxruntime",
            formats=(ModelFormat.ONNX,), devices=("cpu", "cuda", "tensorrt"), thread_option="threads",
        ),
        RuntimeEntry(
            name="openvino", module="fractalad_edge.runtimes.openvino", cls="OpenVINOBackend", package="openvino",
            extra="openvino", formats=(ModelFormat.OPENVINO, ModelFormat.ONNX), devices=("cpu", "gpu", "npu", "auto"),
            thread_option="threads",
        ),
        RuntimeEntry(
            name="tensorrt", module="fractalad_edge.runtimes.tensorrt", cls="TensorRTBackend", package="tensorrt",
            extra="tensorrt", formats=(ModelFormat.TENSORRT,), devices=("cuda",),
        ),
    )
}


def register_runtime(entry: RuntimeEntry) -> RuntimeEntry:
    """Add a runtime to ``RUNTIMES``; a name that is taken is refused."""
    if entry.name in RUNTIMES:
        msg = f"a runtime named {entry.name!r} is already registered ({RUNTIMES[entry.name].module}); choose another name"
        raise ConfigError(msg)
    RUNTIMES[entry.name] = entry
    return entry


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
            f"install it with: {entry.install_hint()}"
        )
        raise RuntimeNotAvailableError(msg) from None
    return getattr(module, entry.cls).open(directory, metadata, device=device, **options)


