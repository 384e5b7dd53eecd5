"""Every error (and warning) the SDK raises on purpose.

One base class, :class:`FractalADError`, so callers can catch everything the SDK
raises deliberately; each subclass also inherits the matching builtin so code that
catches ``ValueError`` or ``FileNotFoundError`` keeps working. Messages say what was
wrong, the value received, what is allowed and how to fix it.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class FractalADError(Exception):
    """Base class of every error raised on purpose by fractalad-edge."""


class ConfigError(FractalADError, ValueError):
    """A configuration value is out of range or inconsistent."""


class DatasetError(FractalADError, ValueError):
    """A dataset folder is missing, empty or not in a supported layout."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset folder or file does not exist."""


class ImageReadError(FractalADError, ValueError):
    """An image file cannot be read or decoded (missing, truncated, not an image)."""


class InvalidInputError(FractalADError, ValueError):
    """An array given to a predictor has the wrong rank, channels, dtype or values."""


class MaskMismatchError(DatasetError):
    """A ground-truth mask does not match its image (size, missing file)."""


class WeightsNotFoundError(FractalADError, FileNotFoundError):
    """Pretrained weights are needed but not available locally (nothing is downloaded)."""


class CheckpointError(FractalADError, ValueError):
    """A checkpoint is missing, corrupt or belongs to another model configuration."""


class InsufficientMemoryError(FractalADError, MemoryError):
    """A job would need more RAM than the machine has available (estimated before it starts)."""


class ArtifactError(FractalADError, ValueError):
    """An exported model directory is incomplete, altered or inconsistent."""


class ArtifactIntegrityError(ArtifactError):
    """A model file's sha256 does not match the one recorded in metadata.json."""


class SchemaVersionError(ArtifactError):
    """metadata.json was written by a newer, incompatible schema."""


class ScoreSpaceError(ArtifactError):
    """An artifact cannot score in the space asked for (an exported graph fixes its own output)."""


class PredictorClosedError(FractalADError, ValueError):
    """A predictor was used after close(), like a closed file."""


class InvalidOutputError(FractalADError, ArithmeticError):
    """The model produced NaN or infinite values: no score, no decision can be given."""


class RuntimeNotAvailableError(FractalADError, ImportError):
    """The package a runtime needs is not installed; the message names the extra."""


class RuntimeMismatchError(FractalADError, ValueError):
    """A runtime cannot run this artifact (wrong format, precision or device)."""


class EngineMismatchError(RuntimeMismatchError):
    """A TensorRT engine was built by another TensorRT version or GPU."""


class CudaError(FractalADError, RuntimeError):
    """A CUDA call failed (device missing, out of memory, copy failed); the message names the call."""


class ExportError(FractalADError, RuntimeError):
    """Export to a format failed, or an option is not accepted by that format."""


class ParityError(ExportError):
    """An exported model's maps differ from the torch reference beyond tolerance."""


class QuantizationError(FractalADError, RuntimeError):
    """Quantization failed or its result lost more accuracy than the gate allows."""


class CalibrationError(FractalADError, ValueError):
    """Calibration data is missing or cannot support a threshold."""


class MemoryOverlapError(CalibrationError):
    """Every normal image given to calibrate a memory/fused model is in its memory (distances near zero)."""


class CalibrationWarning(UserWarning):
    """Calibration went ahead, but its thresholds may be biased (the message says why and the fix)."""


class OutputPathError(FractalADError, ValueError):
    """An output path cannot be written safely: a symbolic link, a file, an unwritable folder."""


class OutputExistsError(OutputPathError, FileExistsError):
    """An output folder holds files this command did not write (or --force is needed to replace them)."""


class RunIdentityError(CheckpointError):
    """A checkpoint belongs to another training run than the options given to --resume."""


class ImageTooLargeError(ImageReadError):
    """An image file declares more pixels than the configured limit; refused before decoding."""


class ScoringOrderError(FractalADError, RuntimeError):
    """A scorer (the local loop or a Ray actor pool) returned fewer, extra or reordered results."""


def parse_enum(enum: type[Enum], value: Any, what: str) -> Any:
    """``enum(value)``; a ConfigError naming ``what`` and the allowed values otherwise."""
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)  # type: ignore[attr-defined]
        msg = f"{what} must be one of {allowed}, got {value!r}"
        raise ConfigError(msg) from None
