"""The scoring method a model was built with, and its memory branch's settings (torch-free).

``Method``, ``FusionRule``, ``FusionStats`` and ``MemoryConfig`` describe a ``memory`` or
``fused`` model (models/memory.py builds the branch from them). They are part of the
artifact schema (``metadata.json`` -> ``model.method`` / ``model.memory``, schema version
2), so artifact.py validates them without importing torch, and runtimes read them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any

from fractalad_edge.errors import ConfigError, parse_enum

__all__ = ["HEAD_SPACES", "FusionRule", "FusionStats", "MemoryConfig", "Method", "parse_method"]


class Method(str, Enum):
    """What a model scores with: the FractalAD head, the memory branch, or both fused."""

    FRACTALAD = "fractalad"
    MEMORY = "memory"
    FUSED = "fused"


class FusionRule(str, Enum):
    """How the two normalised branch maps become one (see :func:`fuse_maps`)."""

    MEAN = "mean"
    MAX = "max"
    NOISY_OR = "noisy-or"
    WEIGHTED = "weighted"


HEAD_SPACES = ("sigmoid", "logit")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, kw_only=True)
class FusionStats:
    """Per-branch normalisation ``z = (v - low) / (high - low)`` and the weights of the weighted rule.

    ``low``/``high`` are percentiles of each branch's pixel values on held-out normal images
    (head: logits; memory: distances); weights come from each branch's separation on
    synthetic anomalies divided by its spread on normals, scaled to sum to 1.
    """

    head_low: float = 0.0
    head_high: float = 1.0
    memory_low: float = 0.0
    memory_high: float = 1.0
    head_weight: float = 0.5
    memory_weight: float = 0.5

    def __post_init__(self) -> None:
        values = [getattr(self, f.name) for f in fields(self)]
        if not all(_finite(v) for v in values):
            msg = f"fusion statistics must be finite numbers, got {values}"
            raise ConfigError(msg)
        if self.head_high <= self.head_low or self.memory_high <= self.memory_low:
            msg = f"fusion statistics need high > low per branch, got {self}; rebuild the memory with more held-out images"
            raise ConfigError(msg)
        if self.head_weight < 0 or self.memory_weight < 0 or self.head_weight + self.memory_weight <= 0:
            msg = f"fusion weights must be >= 0 and not both 0, got {self.head_weight} and {self.memory_weight}"
            raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True)
class MemoryConfig:
    """Architecture of the memory branch; saved in ``metadata.json`` under ``model.memory``.

    ``strides``: teacher stages read (their outputs are pooled, brought to one grid and
    concatenated). ``grid_stride``: the stride of that grid, i.e. of the patches compared
    (None: the finest of ``strides``; a coarser grid cuts the search's cost by its square).
    ``pool``: neighbourhood (average pooling) size. ``channels``:
    width after a PCA projection fitted on the memory images (None: no reduction). ``size``: rows of the memory
    bank (set by the builder). ``k``: neighbours averaged per patch. ``blur_sigma``: Gaussian
    smoothing of the map at input size (0: none).
    """

    strides: tuple[int, ...] = (8, 16)
    grid_stride: int | None = None
    pool: int = 3
    channels: int | None = None
    size: int = 1
    k: int = 1
    blur_sigma: float = 4.0
    fusion: FusionRule = FusionRule.MEAN
    #: the head's map as fused: "sigmoid" (its probability map, as the fractalad method outputs;
    #: the builder's default) or "logit" (what a config without the key means); the
    #: normalisation statistics are taken in the same space
    head_space: str = "logit"
    stats: FusionStats = FusionStats()

    def __post_init__(self) -> None:
        object.__setattr__(self, "strides", tuple(self.strides))
        try:
            object.__setattr__(self, "fusion", FusionRule(self.fusion))
        except ValueError:
            allowed = ", ".join(repr(r.value) for r in FusionRule)
            msg = f"fusion rule must be one of {allowed}, got {self.fusion!r}"
            raise ConfigError(msg) from None
        if self.head_space not in HEAD_SPACES:
            msg = f"memory head_space must be one of {', '.join(HEAD_SPACES)}, got {self.head_space!r}"
            raise ConfigError(msg)
        if isinstance(self.stats, Mapping):
            known = {f.name for f in fields(FusionStats)}
            unknown = sorted(map(str, set(self.stats) - known))
            if unknown:
                msg = f"memory stats has unknown fields {unknown}; allowed: {sorted(known)}"
                raise ConfigError(msg)
            object.__setattr__(self, "stats", FusionStats(**self.stats))
        if not isinstance(self.stats, FusionStats):
            msg = f"memory stats must be fusion statistics (an object), got {self.stats!r:.60}"
            raise ConfigError(msg)
        ints = {"pool": self.pool, "size": self.size, "k": self.k, **({"channels": self.channels} if self.channels is not None else {}),
                **({"grid_stride": self.grid_stride} if self.grid_stride is not None else {})}
        for name, value in ints.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"memory {name} must be an int >= 1, got {value!r}"
                raise ConfigError(msg)
        if self.pool % 2 == 0:
            msg = f"memory pool must be odd (a centred neighbourhood), got {self.pool}; e.g. 3"
            raise ConfigError(msg)
        if not self.strides or any(isinstance(s, bool) or not isinstance(s, int) for s in self.strides):
            msg = f"memory strides must be a non-empty tuple of ints, got {self.strides!r}; e.g. (8, 16)"
            raise ConfigError(msg)
        if self.k > self.size:
            msg = f"memory k={self.k} exceeds the memory size {self.size}; use k <= size"
            raise ConfigError(msg)
        if not (_finite(self.blur_sigma) and 0.0 <= self.blur_sigma <= 32.0):
            msg = f"memory blur_sigma must be in [0, 32], got {self.blur_sigma!r}; e.g. 4"
            raise ConfigError(msg)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["strides"] = list(self.strides)
        data["fusion"] = self.fusion.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryConfig:
        """Inverse of :meth:`to_dict`; unknown keys and wrong types are a ConfigError."""
        if not isinstance(data, Mapping):
            msg = f"the memory config must be an object, got {data!r:.60}"
            raise ConfigError(msg)
        known = {f.name for f in fields(cls)}
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            msg = f"the memory config has unknown keys {unknown}; allowed keys: {sorted(known)}"
            raise ConfigError(msg)
        strides = data.get("strides", (8, 16))
        if not isinstance(strides, (list, tuple)):
            msg = f"memory strides must be a list of ints, got {strides!r}; e.g. [8, 16]"
            raise ConfigError(msg)
        return cls(**{**data, "strides": tuple(strides)})


def parse_method(value: Any) -> Method:
    """A :class:`Method` from its name; a ConfigError naming the allowed ones otherwise."""
    return parse_enum(Method, value, "method")
