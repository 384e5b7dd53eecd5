"""The rule a model's decision threshold was fitted with, as the artifact records it.

numpy-free, like :mod:`fractalad_edge.artifact` which stores it (``calibration.rule`` in
``metadata.json``, a small object such as ``{"method": "fpr", "target_fpr": 0.05}``); the
fitting itself is in :mod:`fractalad_edge.calibration.thresholds`. Metadata of schema
version 2 and earlier stored the rule as a label (``"f1"`` or ``"fpr@0.05"``), which
:meth:`ThresholdRule.from_label` still reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from fractalad_edge.errors import ConfigError


class ThresholdMethod(str, Enum):
    F1 = "f1"  # F1-optimal on synthetic anomalies (or real defects when given)
    FPR = "fpr"  # the normal-score quantile that gives a target false-alarm rate


DEFAULT_TARGET_FPR = 0.01  # the false-alarm rate ThresholdMethod.FPR aims at unless told otherwise


@dataclass(frozen=True, kw_only=True)
class ThresholdRule:
    """How the image threshold is chosen: ``f1``, or ``fpr`` at ``target_fpr`` (only there)."""

    method: ThresholdMethod = ThresholdMethod.F1
    target_fpr: float | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "method", ThresholdMethod(self.method))
        except ValueError:
            msg = f"threshold method must be one of {', '.join(m.value for m in ThresholdMethod)}, got {self.method!r}"
            raise ConfigError(msg) from None
        if self.method is ThresholdMethod.F1:
            if self.target_fpr is not None:
                msg = f"target_fpr belongs to the 'fpr' threshold method; the 'f1' method takes none (got {self.target_fpr!r})"
                raise ConfigError(msg)
            return
        fpr = self.target_fpr
        if isinstance(fpr, bool) or not isinstance(fpr, (int, float)) or not math.isfinite(fpr) or not 0.0 < fpr < 1.0:
            msg = f"the 'fpr' threshold method needs target_fpr, a false-alarm rate in (0, 1), got {fpr!r}"
            raise ConfigError(msg)
        object.__setattr__(self, "target_fpr", float(fpr))

    @classmethod
    def of(cls, method: ThresholdMethod | str, target_fpr: float = DEFAULT_TARGET_FPR) -> ThresholdRule:
        """The rule for ``method``; ``target_fpr`` is used by ``fpr`` only (as on the command line)."""
        return cls(method=method, target_fpr=None if method == ThresholdMethod.F1 else target_fpr)

    @property
    def label(self) -> str:
        """Short text for messages: ``f1`` or ``fpr@0.05`` (the form metadata version <= 2 stored)."""
        return self.method.value if self.method is ThresholdMethod.F1 else f"fpr@{self.target_fpr:g}"

    @classmethod
    def from_dict(cls, data: Any) -> ThresholdRule:
        """The ``calibration.rule`` object of metadata; unknown or missing fields are refused."""
        if not isinstance(data, Mapping) or set(data) != {"method", "target_fpr"}:
            msg = f"calibration.rule must be an object with exactly 'method' and 'target_fpr', got {data!r:.80}"
            raise ConfigError(msg)
        if not isinstance(data["method"], str):
            msg = f"calibration.rule.method must be a string, got {data['method']!r}"
            raise ConfigError(msg)
        return cls(method=data["method"], target_fpr=data["target_fpr"])

    @classmethod
    def from_label(cls, label: Any) -> ThresholdRule:
        """The rule a version <= 2 ``calibration.method`` label names: ``f1`` or ``fpr@<rate>``."""
        if label == ThresholdMethod.F1.value:
            return cls()
        if isinstance(label, str) and label.startswith("fpr@"):
            try:
                rate = float(label.removeprefix("fpr@"))
            except ValueError:
                rate = math.nan
            return cls(method=ThresholdMethod.FPR, target_fpr=rate)
        msg = f"calibration.method must be a threshold label 'f1' or 'fpr@<rate>', got {label!r}"
        raise ConfigError(msg)


__all__ = ["DEFAULT_TARGET_FPR", "ThresholdMethod", "ThresholdRule"]
