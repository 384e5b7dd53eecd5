"""The self-describing model directory: metadata schema, read, validate, write.

Every model that leaves the training machine is a directory holding its model file(s)
and ``metadata.json``. The metadata says everything a runtime needs to turn a camera
frame into a score (input size, colour order, normalisation, score reduction,
thresholds) and lets loading refuse an altered or incompatible directory (sha256 of
every file, schema version). A training run directory is itself a ``torch`` artifact.

numpy-free and torch-free on purpose: this module is imported on every edge device.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from fractalad_edge.errors import ArtifactError, ArtifactIntegrityError, ConfigError, SchemaVersionError

#: 2: ``model`` may carry ``method`` and ``memory`` (the memory branch, models/memory.py); a
#: version-1 file has neither and reads as method ``fractalad``.
SCHEMA_VERSION = 2
METADATA_FILENAME = "metadata.json"


class ModelFormat(str, Enum):
    """Serialised model formats; each has an exporter and a default runtime."""

    TORCH = "torch"
    ONNX = "onnx"
    OPENVINO = "openvino"
    TENSORRT = "tensorrt"


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"


class ScoreReduction(str, Enum):
    """How a per-pixel anomaly map becomes one image score."""

    MEAN = "mean"  # the paper's
    MAX = "max"
    TOPK = "topk"  # mean of the top ``topk_fraction`` of pixels


def parse_enum(enum: type[Enum], value: Any, what: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)  # type: ignore[attr-defined]
        msg = f"{what} must be one of {allowed}, got {value!r}"
        raise ConfigError(msg) from None


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """What the model graph consumes: float32 NCHW, RGB, normalised with mean/std (0..255 units)."""

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "rgb"  # of the model input; frames given to Predictor are BGR by default
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        if self.height < 32 or self.width < 32:
            msg = f"input size must be at least 32 x 32, got {self.height} x {self.width}"
            raise ConfigError(msg)
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            msg = f"mean and std need 3 values each with std > 0, got mean={self.mean}, std={self.std}"
            raise ConfigError(msg)
        if self.channel_order not in ("rgb", "bgr") or self.layout != "NCHW":
            msg = f"unsupported input channel_order={self.channel_order!r} / layout={self.layout!r}"
            raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True)
class ScoreSpec:
    # Default measured on MVTec bottle (docs/RESULTS.md): the mean of the top 0.1 % of pixels
    # ranked defects as well as the max and better than the paper's mean, without resting on
    # a single pixel.
    reduction: ScoreReduction = ScoreReduction.TOPK
    topk_fraction: float = 0.001

    def __post_init__(self) -> None:
        object.__setattr__(self, "reduction", parse_enum(ScoreReduction, self.reduction, "score reduction"))
        if not 0.0 < self.topk_fraction <= 1.0:
            msg = f"topk_fraction must be in (0, 1], got {self.topk_fraction}"
            raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True)
class ScoreCalibration:
    """Thresholds on raw scores, and the span used to normalise scores so 0.5 is the threshold.

    ``normalized = clip(0.5 + (raw - threshold) / (span_max - span_min), 0, 1)`` per level.
    """

    image_threshold: float
    image_min: float
    image_max: float
    pixel_threshold: float
    pixel_min: float
    pixel_max: float
    method: str  # e.g. "f1-synthetic", "fpr-normal@0.01", "f1-real"
    source: str  # "synthetic" (no real defects used) or "real"
    num_normal: int = 0
    num_anomalous: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        values = (self.image_threshold, self.image_min, self.image_max, self.pixel_threshold, self.pixel_min, self.pixel_max)
        if not all(math.isfinite(v) for v in values):
            msg = f"score calibration values must be finite, got {values}"
            raise ConfigError(msg)
        if self.image_max <= self.image_min or self.pixel_max <= self.pixel_min:
            msg = (
                "score calibration needs max > min for image and pixel spans, got "
                f"image [{self.image_min}, {self.image_max}], pixel [{self.pixel_min}, {self.pixel_max}]"
            )
            raise ConfigError(msg)
        if self.source not in ("synthetic", "real"):
            msg = f"calibration source must be 'synthetic' or 'real', got {self.source!r}"
            raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True)
class ModelFile:
    path: str  # relative to the artifact directory
    sha256: str


@dataclass(frozen=True, kw_only=True)
class ParityReport:
    """How far an exported model's maps are from the torch reference on the same inputs."""

    reference: str  # "torch-fp32"
    num_images: int
    max_abs_diff: float
    mean_abs_diff: float
    decisions_agree: float  # fraction of images whose anomalous/normal decision matches
    tolerance: float
    passed: bool


@dataclass(frozen=True, kw_only=True)
class QuantizationReport:
    """How a quantized model was calibrated and what the accuracy gate measured."""

    toolchain: str  # "nncf", "onnxruntime", "tensorrt"
    mode: str  # e.g. "ptq", "accuracy-control", "qdq-static"
    calibration_images: int
    calibration_anomaly_ratio: float
    calibration_seed: int
    float_image_auroc: float
    quantized_image_auroc: float
    float_pixel_auroc: float
    quantized_pixel_auroc: float
    map_mean_abs_diff: float
    max_drop: float  # allowed drop in points (x100)
    passed: bool
    ignored_layers: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EngineInfo:
    """What a TensorRT engine was built by; engines do not move between versions or GPUs."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


@dataclass(frozen=True, kw_only=True)
class ArtifactMetadata:
    format: ModelFormat
    precision: Precision
    runtime: str  # default runtime for this artifact
    model: Mapping[str, Any]  # ModelConfig.to_dict(): backbone, input_size, head_channels, distillation
    input: InputSpec
    score: ScoreSpec
    files: tuple[ModelFile, ...]
    calibration: ScoreCalibration | None = None
    parity: ParityReport | None = None
    quantization: QuantizationReport | None = None
    engine: EngineInfo | None = None
    category: str = ""
    package_version: str = ""
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", parse_enum(ModelFormat, self.format, "format"))
        object.__setattr__(self, "precision", parse_enum(Precision, self.precision, "precision"))
        object.__setattr__(self, "files", tuple(self.files))
        if not self.files:
            msg = "an artifact must list at least one model file"
            raise ArtifactError(msg)

    # -- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def convert(value: Any) -> Any:
            if isinstance(value, Enum):
                return value.value
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
            if isinstance(value, Mapping):
                return {k: convert(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [convert(v) for v in value]
            return value

        return convert(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "metadata") -> ArtifactMetadata:
        version = data.get("schema_version")
        if not isinstance(version, int):
            msg = f"{source}: 'schema_version' missing or not an integer (got {version!r}); is this a fractalad-edge model?"
            raise ArtifactError(msg)
        if version > SCHEMA_VERSION:
            msg = (
                f"{source}: schema version {version} was written by a newer fractalad-edge; this version reads "
                f"up to {SCHEMA_VERSION}. Upgrade: pip install -U fractalad-edge"
            )
            raise SchemaVersionError(msg)
        try:
            return cls(
                schema_version=version,
                format=data["format"],
                precision=data["precision"],
                runtime=data["runtime"],
                model=dict(data["model"]),
                input=InputSpec(**{**data["input"], "mean": tuple(data["input"]["mean"]), "std": tuple(data["input"]["std"])}),
                score=ScoreSpec(**data["score"]),
                files=tuple(ModelFile(**f) for f in data["files"]),
                calibration=_optional(ScoreCalibration, data.get("calibration")),
                parity=_optional(ParityReport, data.get("parity")),
                quantization=_optional(
                    QuantizationReport,
                    None if data.get("quantization") is None else {**data["quantization"], "ignored_layers": tuple(data["quantization"].get("ignored_layers", ()))},
                ),
                engine=_optional(EngineInfo, data.get("engine")),
                category=data.get("category", ""),
                package_version=data.get("package_version", ""),
                created=data.get("created", ""),
            )
        except (KeyError, TypeError) as exc:
            msg = f"{source}: malformed metadata ({type(exc).__name__}: {exc}); re-export the model"
            raise ArtifactError(msg) from None


def _optional(kind: type, value: Mapping[str, Any] | None) -> Any:
    return None if value is None else kind(**value)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_files(directory: Path, names: Sequence[str]) -> tuple[ModelFile, ...]:
    """Hash the given files (relative names) inside ``directory`` for the metadata."""
    return tuple(ModelFile(path=name, sha256=sha256_file(directory / name)) for name in names)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_version() -> str:
    from fractalad_edge import __version__

    return __version__


def write_metadata(directory: str | Path, metadata: ArtifactMetadata) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / METADATA_FILENAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metadata.to_dict(), indent=2) + "\n")
    tmp.replace(path)  # atomic: a crash never leaves half a metadata file
    return path


def read_metadata(directory: str | Path, *, verify: bool = True) -> ArtifactMetadata:
    """Read and validate ``metadata.json``; with ``verify`` also check every file's sha256."""
    directory = Path(directory)
    if not directory.is_dir():
        msg = f"model directory not found: {directory} (expected a folder written by 'fractalad-edge train' or 'export')"
        raise ArtifactError(msg)
    path = directory / METADATA_FILENAME
    if not path.is_file():
        msg = f"{directory} has no {METADATA_FILENAME}; it is not a fractalad-edge model directory"
        raise ArtifactError(msg)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        msg = f"{path} is not valid JSON ({exc}); re-export the model"
        raise ArtifactError(msg) from None
    if not isinstance(data, dict):
        msg = f"{path} must hold a JSON object, got {type(data).__name__}"
        raise ArtifactError(msg)
    metadata = ArtifactMetadata.from_dict(data, source=str(path))
    if verify:
        verify_files(directory, metadata)
    return metadata


def verify_files(directory: Path, metadata: ArtifactMetadata) -> None:
    for entry in metadata.files:
        file_path = directory / entry.path
        if not file_path.is_file():
            msg = f"{directory}: model file {entry.path!r} listed in {METADATA_FILENAME} is missing"
            raise ArtifactError(msg)
        actual = sha256_file(file_path)
        if actual != entry.sha256:
            msg = (
                f"{file_path}: sha256 {actual[:12]}... does not match {entry.sha256[:12]}... recorded in "
                f"{METADATA_FILENAME}; the file was altered or corrupted in transfer. Copy the model directory again."
            )
            raise ArtifactIntegrityError(msg)


def replace_metadata(metadata: ArtifactMetadata, **changes: Any) -> ArtifactMetadata:
    """A copy with some fields changed (frozen dataclasses are never edited in place)."""
    return dataclasses.replace(metadata, **changes)


__all__ = [
    "SCHEMA_VERSION",
    "METADATA_FILENAME",
    "ArtifactMetadata",
    "EngineInfo",
    "InputSpec",
    "ModelFile",
    "ModelFormat",
    "ParityReport",
    "Precision",
    "QuantizationReport",
    "ScoreCalibration",
    "ScoreReduction",
    "ScoreSpec",
    "describe_files",
    "now_iso",
    "package_version",
    "parse_enum",
    "read_metadata",
    "replace_metadata",
    "sha256_file",
    "verify_files",
    "write_metadata",
]
