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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from fractalad_edge.errors import ArtifactError, ArtifactIntegrityError, ConfigError, SchemaVersionError, parse_enum
from fractalad_edge.method import MemoryConfig, Method, parse_method
from fractalad_edge.score_space import LEGACY_SPACES, ScoreSpace, check_space, parse_space
from fractalad_edge.threshold_rule import ThresholdRule

#: 2: ``model`` may carry ``method`` and ``memory`` (the memory branch: fractalad_edge/method.py,
#: validated here); a version-1 file has neither and reads as method ``fractalad``.
#: 3: ``calibration.rule`` (a :class:`ThresholdRule` object) replaces the ``calibration.method``
#: label; files of version <= 2 still read (their label is parsed once, on load).
#: 4: ``score.space`` (:class:`~fractalad_edge.score_space.ScoreSpace`: what the graph outputs;
#: ``fractalad`` exports now output logits) and ``calibration.normalization``
#: (:class:`ScoreNormalization`). Files of version <= 3 read as before: space ``sigmoid`` for
#: ``fractalad`` (``distance``/``fused`` for memory models), normalisation ``span``. The
#: version is bumped although both keys are optional, because a reader that ignored them
#: would be wrong, not merely less informed: it would clip logits to [0, 1] when
#: uncalibrated, and normalise two-sided thresholds with the span formula, so decisions and
#: scores would change silently. Version 3 readers refuse the file with "upgrade" instead.
SCHEMA_VERSION = 4
METADATA_FILENAME = "metadata.json"
#: model file names inside an artifact directory, named once for the writers and the runtimes
MODEL_FILENAME = "model.safetensors"  # torch: the FractalAD state dict
ONNX_FILENAME = "model.onnx"
IR_FILENAME = "model.xml"  # OpenVINO IR graph
IR_WEIGHTS_FILENAME = "model.bin"  # OpenVINO IR weights
ENGINE_FILENAME = "model.engine"  # a plain serialized TensorRT engine
#: a training run also holds these (the export refuses to write into one)
RUN_CONFIG_FILENAME = "config.json"  # the TrainConfig; its "data" is the training folder
CHECKPOINT_FILENAME = "checkpoint.safetensors"  # model + optimizer state for --resume
CHECKPOINT_STATE = "checkpoint.json"  # a readable copy of the checkpoint's header


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


#: what a graph input can be: (dtype, layout) pairs
INPUT_FORMATS: tuple[tuple[str, str], ...] = (("float32", "NCHW"), ("uint8", "NHWC"))


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """What the model graph consumes, after the frame is resized to ``height`` x ``width``.

    ``dtype="float32"`` (the default, and every artifact written before the field existed):
    NCHW, normalised with mean/std (0..255 units) on the host. ``dtype="uint8"``: the resized
    pixels as they are, NHWC; the graph converts, normalises and transposes them itself
    (OpenVINO artifacts, docs/experiments/edge-speed.md).
    """

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "rgb"  # of the model input; frames given to Predictor are BGR by default
    layout: str = "NCHW"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            _check_int(getattr(self, name), f"input.{name}", low=32, high=MAX_INPUT_SIZE)
        for name in ("mean", "std"):
            values = getattr(self, name)
            if not isinstance(values, (tuple, list)) or len(values) != 3:
                msg = f"input.{name} must be 3 numbers (one per channel), got {values!r}"
                raise ConfigError(msg)
            for value in values:
                _check_real(value, f"input.{name}", low=0.0, high=255.0)
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if any(s <= 0 for s in self.std):
            msg = f"mean and std need 3 values each with std > 0, got mean={self.mean}, std={self.std}"
            raise ConfigError(msg)
        if self.channel_order not in ("rgb", "bgr"):
            msg = f"input.channel_order must be 'rgb' or 'bgr', got {self.channel_order!r}"
            raise ConfigError(msg)
        if (self.dtype, self.layout) not in INPUT_FORMATS:
            allowed = ", ".join(f"dtype {d!r} with layout {lay!r}" for d, lay in INPUT_FORMATS)
            msg = f"unsupported input dtype={self.dtype!r} / layout={self.layout!r}; allowed: {allowed}"
            raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True)
class ScoreSpec:
    # Default measured on MVTec bottle (docs/experiments/score-reduction.md): the mean of the top 0.1 % of pixels
    # ranked defects as well as the max and better than the paper's mean, without resting on
    # a single pixel.
    reduction: ScoreReduction = ScoreReduction.TOPK
    topk_fraction: float = 0.001
    #: what the graph's map is (fractalad_edge/score_space.py); None: not recorded, which
    #: :class:`ArtifactMetadata` reads as its method's legacy space (``sigmoid`` for fractalad)
    space: ScoreSpace | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "reduction", parse_enum(ScoreReduction, self.reduction, "score reduction"))
        if self.space is not None:
            object.__setattr__(self, "space", parse_space(self.space))
        _check_real(self.topk_fraction, "score.topk_fraction", low=0.0, high=1.0)
        if not 0.0 < self.topk_fraction <= 1.0:
            msg = f"topk_fraction must be in (0, 1], got {self.topk_fraction}"
            raise ConfigError(msg)


class ScoreNormalization(str, Enum):
    """How a raw score becomes the 0..1 score a user sees (0.5 is the threshold either way).

    ``span`` (every calibration written before the field): ``0.5 + (raw - thr) / (max - min)``,
    clipped. With a saturating sigmoid the threshold sits near ``max``, so a clear defect read
    0.52. ``two-sided`` (new calibrations): ``[min, thr] -> [0, 0.5]`` and ``[thr, max] -> [0.5, 1]``,
    linear on each side, clipped; ``min``/``max`` are the medians of the normal and of the
    anomalous calibration scores (calibration/thresholds.py), so good parts read near 0 and
    clear defects near 1.
    """

    SPAN = "span"
    TWO_SIDED = "two-sided"


@dataclass(frozen=True, kw_only=True)
class ScoreCalibration:
    """Thresholds on raw scores, and the range used to normalise scores so 0.5 is the threshold.

    ``normalization`` says how (:class:`ScoreNormalization`): ``span`` is
    ``clip(0.5 + (raw - threshold) / (max - min), 0, 1)`` per level; ``two-sided`` maps
    ``[min, threshold]`` to ``[0, 0.5]`` and ``[threshold, max]`` to ``[0.5, 1]``.
    """

    image_threshold: float
    image_min: float
    image_max: float
    pixel_threshold: float
    pixel_min: float
    pixel_max: float
    rule: ThresholdRule  # how image_threshold was chosen: f1, or fpr at a target false-alarm rate
    source: str  # "synthetic" (no real defects used) or "real"
    num_normal: int = 0
    num_anomalous: int = 0
    seed: int | None = None
    #: absent in files written before it: ``span``, so they normalise exactly as before
    normalization: ScoreNormalization = ScoreNormalization.SPAN

    def __post_init__(self) -> None:
        object.__setattr__(self, "normalization", parse_enum(ScoreNormalization, self.normalization, "calibration.normalization"))
        values = (self.image_threshold, self.image_min, self.image_max, self.pixel_threshold, self.pixel_min, self.pixel_max)
        if not all(_is_real(v) and math.isfinite(v) for v in values):
            msg = f"score calibration values must be finite, got {values}"
            raise ConfigError(msg)
        if self.image_max <= self.image_min or self.pixel_max <= self.pixel_min:
            msg = (
                "score calibration needs max > min for image and pixel spans, got "
                f"image [{self.image_min}, {self.image_max}], pixel [{self.pixel_min}, {self.pixel_max}]"
            )
            raise ConfigError(msg)
        if self.normalization is ScoreNormalization.TWO_SIDED and not (
            self.image_min < self.image_threshold < self.image_max and self.pixel_min < self.pixel_threshold < self.pixel_max
        ):
            msg = (
                "two-sided normalisation needs min < threshold < max at both levels, got image "
                f"[{self.image_min}, {self.image_threshold}, {self.image_max}], pixel "
                f"[{self.pixel_min}, {self.pixel_threshold}, {self.pixel_max}]; recalibrate with 'fractalad-edge calibrate'"
            )
            raise ConfigError(msg)
        if not isinstance(self.rule, ThresholdRule):
            msg = f"calibration.rule must be a ThresholdRule, got {self.rule!r:.60}"
            raise ConfigError(msg)
        _check_int(self.num_normal, "calibration.num_normal", low=0)
        _check_int(self.num_anomalous, "calibration.num_anomalous", low=0)
        if self.seed is not None:
            _check_int(self.seed, "calibration.seed")
        if self.source not in ("synthetic", "real"):
            msg = f"calibration source must be 'synthetic' or 'real', got {self.source!r}"
            raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True)
class ModelFile:
    path: str  # relative to the artifact directory, '/'-separated, never leaving it
    sha256: str

    def __post_init__(self) -> None:
        path = self.path
        if not isinstance(path, str) or not path or "\\" in path or "\x00" in path:
            msg = f"a model file path must be a non-empty relative path with '/' separators, got {path!r}"
            raise ConfigError(msg)
        pure = PurePosixPath(path)
        if pure.is_absolute() or PureWindowsPath(path).drive or any(part in ("..", ".") for part in path.split("/")):
            msg = f"model file path {path!r} must stay inside the artifact folder (relative, no '..', not absolute)"
            raise ConfigError(msg)
        if not isinstance(self.sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            msg = f"sha256 of {path!r} must be 64 lowercase hex digits, got {self.sha256!r}"
            raise ConfigError(msg)


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
    #: max |diff| / max(1, |reference|): what ``tolerance`` bounds in the unbounded spaces
    #: (export/parity.py); None: files written before it, where max_abs_diff was bounded
    max_scaled_diff: float | None = None


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
    #: the same gate with the float layers in bf16 (OpenVINO on an export CPU with bf16
    #: arithmetic); None: not checked. Runtimes run bf16 by default only where it passed.
    bf16_image_auroc: float | None = None
    bf16_pixel_auroc: float | None = None
    bf16_passed: bool | None = None

    def __post_init__(self) -> None:
        bf16 = (self.bf16_image_auroc, self.bf16_pixel_auroc, self.bf16_passed)
        if None in bf16 and any(value is not None for value in bf16):
            msg = f"quantization.bf16_image_auroc, bf16_pixel_auroc and bf16_passed are set together or not at all, got {bf16}"
            raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True)
class EngineInfo:
    """What a TensorRT engine was built by; engines do not move between versions or GPUs.

    Jetson Orin modules all report sm87 and may share a name, so the SM count and the
    total memory are recorded too (0: not recorded, artifacts written before they were).
    """

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    multiprocessor_count: int = 0
    total_memory_bytes: int = 0


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
        _check_int(self.schema_version, "schema_version", low=1, high=SCHEMA_VERSION)
        _check_str(self.runtime, "runtime")
        if not self.runtime:
            msg = "runtime must name a runtime, got ''"
            raise ConfigError(msg)
        if not isinstance(self.model, Mapping) or not all(isinstance(k, str) for k in self.model):
            msg = f"model must be an object of architecture settings (backbone, input_size, ...), got {self.model!r:.60}"
            raise ConfigError(msg)
        _check_method(self.model, self.schema_version)
        if not isinstance(self.score, ScoreSpec):
            msg = f"score must be a ScoreSpec, got {self.score!r:.60}"
            raise ConfigError(msg)
        if self.score.space is None:  # not recorded (schema <= 3, or a caller that left it): the method's legacy space
            object.__setattr__(self, "score", dataclasses.replace(self.score, space=LEGACY_SPACES[self.method]))
        check_space(self.method, self.score.space)
        for name in ("category", "package_version", "created"):
            _check_str(getattr(self, name), name)
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            msg = f"files lists a path twice: {paths}"
            raise ConfigError(msg)
        for suffix in FORMAT_FILE_SUFFIXES[self.format] + ((".engine",) if self.engine is not None else ()):
            matching = [p for p in paths if p.lower().endswith(suffix)]
            if len(matching) != 1:
                msg = (
                    f"a {self.format.value} artifact must list exactly one {suffix} file in files, got {matching or 'none'}; "
                    "re-export the model"
                )
                raise ConfigError(msg)

    @property
    def method(self) -> Method:
        """What the model scores with (``model.method``; absent: ``fractalad``)."""
        return parse_method(self.model.get("method", Method.FRACTALAD.value))

    @property
    def score_space(self) -> ScoreSpace:
        """What the model's maps are (``score.space``; absent: the method's legacy space)."""
        assert self.score.space is not None  # resolved in __post_init__
        return self.score.space

    @property
    def memory(self) -> MemoryConfig | None:
        """The memory branch's settings and fusion statistics (``memory`` and ``fused`` models)."""
        memory = self.model.get("memory")
        return None if memory is None else MemoryConfig.from_dict(memory)

    def model_file(self, directory: str | Path, suffix: str) -> Path:
        """The listed (and hashed) file with this suffix, resolved inside ``directory``.

        Runtimes load exactly this path, never a fixed name, so what they run is what
        :func:`verify_files` hashed.
        """
        matching = [f for f in self.files if f.path.lower().endswith(suffix)]
        if len(matching) != 1:
            msg = f"{directory}: {METADATA_FILENAME} must list exactly one {suffix} file, got {[f.path for f in matching]}"
            raise ArtifactError(msg)
        return resolve_inside(Path(directory), matching[0].path)

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
        """Validate every field's type, range and finiteness; one ArtifactError line on the first problem."""
        version = data.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            msg = f"{source}: 'schema_version' must be an integer >= 1 (got {version!r}); is this a fractalad-edge model?"
            raise ArtifactError(msg)
        if version > SCHEMA_VERSION:
            msg = (
                f"{source}: schema version {version} was written by a newer fractalad-edge; this version reads "
                f"up to {SCHEMA_VERSION}. Upgrade: pip install -U fractalad-edge"
            )
            raise SchemaVersionError(msg)
        try:
            _check_keys(data, {f.name for f in dataclasses.fields(cls)}, "metadata")
            files = data["files"]
            if not isinstance(files, list):
                msg = f"files must be a list of {{path, sha256}} objects, got {files!r:.60}"
                raise ConfigError(msg)
            quantization = _section(data, "quantization", QuantizationReport, optional=True)
            if quantization is not None:
                quantization["ignored_layers"] = tuple(_check_str(v, "quantization.ignored_layers") for v in quantization.get("ignored_layers", ()))
            return cls(
                schema_version=version,
                format=_check_str(data["format"], "format"),
                precision=_check_str(data["precision"], "precision"),
                runtime=data["runtime"],
                model=data["model"],
                input=InputSpec(**_section(data, "input", InputSpec)),
                score=ScoreSpec(**_section(data, "score", ScoreSpec)),
                files=tuple(ModelFile(**_checked_mapping(f, ModelFile, "files[]")) for f in files),
                calibration=_build(ScoreCalibration, _calibration_section(data, version)),
                parity=_build(ParityReport, _section(data, "parity", ParityReport, optional=True)),
                quantization=_build(QuantizationReport, quantization),
                engine=_build(EngineInfo, _section(data, "engine", EngineInfo, optional=True)),
                category=data.get("category", ""),
                package_version=data.get("package_version", ""),
                created=data.get("created", ""),
            )
        except KeyError as exc:
            msg = f"{source}: required field {exc} is missing; re-export the model"
            raise ArtifactError(msg) from None
        except (ConfigError, TypeError) as exc:
            msg = f"{source}: invalid metadata: {exc}; re-export the model"
            raise ArtifactError(msg) from None


#: the model files each format must list (one of each suffix); runtimes load those, by suffix
FORMAT_FILE_SUFFIXES: dict[ModelFormat, tuple[str, ...]] = {
    ModelFormat.TORCH: (".safetensors",),
    ModelFormat.ONNX: (".onnx",),
    ModelFormat.OPENVINO: (".xml", ".bin"),
    ModelFormat.TENSORRT: (".onnx",),
}
MAX_INPUT_SIZE = 4096


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_real(value: Any, what: str, *, low: float | None = None, high: float | None = None) -> float:
    if not _is_real(value) or not math.isfinite(value):
        msg = f"{what} must be a finite number, got {value!r}"
        raise ConfigError(msg)
    if (low is not None and value < low) or (high is not None and value > high):
        msg = f"{what} must be in [{low}, {high}], got {value!r}"
        raise ConfigError(msg)
    return float(value)


def _check_int(value: Any, what: str, *, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{what} must be an integer, got {value!r} ({type(value).__name__})"
        raise ConfigError(msg)
    if (low is not None and value < low) or (high is not None and value > high):
        msg = f"{what} must be in [{low}, {high}], got {value}"
        raise ConfigError(msg)
    return value


def _check_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        msg = f"{what} must be a string, got {value!r} ({type(value).__name__})"
        raise ConfigError(msg)
    return value


def _check_keys(data: Mapping[str, Any], known: set[str], what: str) -> None:
    unknown = sorted(map(str, set(data) - known))
    if unknown:
        msg = f"{what} has unknown fields {unknown}; allowed: {sorted(known)}"
        raise ConfigError(msg)


def _checked_mapping(value: Any, kind: type, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        msg = f"{what} must be an object, got {value!r:.60}"
        raise ConfigError(msg)
    _check_keys(value, {f.name for f in dataclasses.fields(kind)}, what)
    return dict(value)


def _section(data: Mapping[str, Any], key: str, kind: type, *, optional: bool = False) -> dict[str, Any] | None:
    if optional and data.get(key) is None:
        return None
    return _checked_mapping(data[key], kind, key)


def _calibration_section(data: Mapping[str, Any], version: int) -> dict[str, Any] | None:
    """``calibration`` with its threshold rule built: an object since version 3, a label before."""
    section = data.get("calibration")
    if version < 3 and isinstance(section, Mapping) and "method" in section:
        section = {("rule" if k == "method" else k): v for k, v in section.items()}
        section["rule"] = ThresholdRule.from_label(section["rule"])
    fields = _section({"calibration": section}, "calibration", ScoreCalibration, optional=True)
    if fields is not None and not isinstance(fields["rule"], ThresholdRule):
        fields["rule"] = ThresholdRule.from_dict(fields["rule"])
    return fields


def _build(kind: type, fields: Mapping[str, Any] | None) -> Any:
    if fields is None:
        return None
    built = kind(**fields)
    for f in dataclasses.fields(kind):  # reports: every number finite, every flag a bool, every name a str
        value = getattr(built, f.name)
        expected = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if value is None and "None" in expected:
            continue
        if expected.startswith("float"):
            _check_real(value, f"{kind.__name__}.{f.name}")
        elif expected.startswith("int"):
            _check_int(value, f"{kind.__name__}.{f.name}")
        elif expected.startswith("bool") and not isinstance(value, bool):
            msg = f"{kind.__name__}.{f.name} must be true or false, got {value!r}"
            raise ConfigError(msg)
        elif expected.startswith("str"):
            _check_str(value, f"{kind.__name__}.{f.name}")
    return built


def _check_method(model: Mapping[str, Any], schema_version: int) -> None:
    """``model.method`` names a known method; ``model.memory`` is a valid memory config exactly when it needs one."""
    method = parse_method(model.get("method", Method.FRACTALAD.value))
    memory = model.get("memory")
    if method is Method.FRACTALAD:
        if memory is not None:
            msg = "model.memory is set but model.method is 'fractalad'; a memory belongs to a 'memory' or 'fused' model"
            raise ConfigError(msg)
        return
    if schema_version < 2:
        msg = f"model.method {method.value!r} needs schema version >= 2 (the file says {schema_version})"
        raise ConfigError(msg)
    if memory is None:
        msg = f"a {method.value!r} model needs model.memory (its memory branch's settings)"
        raise ConfigError(msg)
    MemoryConfig.from_dict(memory)


def resolve_inside(directory: Path, relative: str) -> Path:
    """``directory / relative``, refused if it (or a symlink on the way) leads outside ``directory``."""
    root = directory.resolve()
    target = (directory / relative).resolve()
    if target != root and root not in target.parents:
        msg = f"{directory}: listed file {relative!r} resolves to {target}, outside the artifact folder; refusing to read it"
        raise ArtifactIntegrityError(msg)
    return target


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
    # Unique temporary name, fsync, rename, fsync the folder: a crash (or a second `calibrate`
    # at the same time) never leaves half a metadata file.
    from fractalad_edge.outputs import atomic_write_text

    # written in this version's form, whatever version the metadata was read as
    metadata = dataclasses.replace(metadata, schema_version=SCHEMA_VERSION)
    atomic_write_text(path, json.dumps(metadata.to_dict(), indent=2) + "\n")
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
        file_path = resolve_inside(directory, entry.path)
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


__all__ = [
    "SCHEMA_VERSION",
    "METADATA_FILENAME",
    "FORMAT_FILE_SUFFIXES",
    "INPUT_FORMATS",
    "MODEL_FILENAME",
    "ONNX_FILENAME",
    "IR_FILENAME",
    "IR_WEIGHTS_FILENAME",
    "ENGINE_FILENAME",
    "RUN_CONFIG_FILENAME",
    "CHECKPOINT_FILENAME",
    "CHECKPOINT_STATE",
    "ArtifactMetadata",
    "EngineInfo",
    "InputSpec",
    "ModelFile",
    "ModelFormat",
    "ParityReport",
    "Precision",
    "QuantizationReport",
    "ScoreCalibration",
    "ScoreNormalization",
    "ScoreReduction",
    "ScoreSpace",
    "ScoreSpec",
    "describe_files",
    "now_iso",
    "package_version",
    "parse_enum",
    "read_metadata",
    "resolve_inside",
    "sha256_file",
    "verify_files",
    "write_metadata",
]
