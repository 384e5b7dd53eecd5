"""Which TensorRT API each supported major version is driven through (no TensorRT import here).

The builder branches on a parsed version, never on ``hasattr`` probing, so every branch can
be checked on a machine without TensorRT (tests/test_tensorrt.py) and a version outside the
table fails with a message that names it. Facts checked against NVIDIA's TensorRT sources
(NvInfer.h and the Python bindings, pyCore.cpp / pyGraph.cpp):

* 8.6 (JetPack 6.0): networks are weakly typed; ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``
  is needed for an ONNX network; precisions are chosen by ``BuilderFlag.FP16`` / ``INT8``;
  an explicitly quantized (Q/DQ) network needs ``BuilderFlag.INT8`` and ``FP16`` lets the
  float regions fall back to fp16. ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` does not
  exist yet.
* 10.x (JetPack 6.1 / 6.2 ship 10.3): ``EXPLICIT_BATCH`` is deprecated and implied (10.0);
  the implicit-quantization calibrators are deprecated in 10.1; ``BuilderFlag.FP16`` / ``INT8``
  and layer precision constraints are deprecated in 10.12 ("superseded by strong typing").
  int8 and fp32 build a ``STRONGLY_TYPED`` network, whose types come from the ONNX (the Q/DQ
  nodes for int8, float32 elsewhere: the float regions stay fp32, as validated with
  onnxruntime). fp16 still uses ``BuilderFlag.FP16`` on a weakly typed network (deprecated in
  10.12, not 10.1; the only fp16 route without an fp16-typed ONNX).
* 11.x: weakly typed networks, the FP16 / INT8 builder flags and implicit quantization are
  removed. fp32 and int8 build strongly typed networks as on 10.x; fp16 would need an
  fp16-typed ONNX, which this SDK does not write yet, so it is refused by name.

Anything older than 8.6 or newer than 11 is refused: an untested major is not guessed at.
The ``tensorrt`` extra in pyproject.toml carries the same bounds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from fractalad_edge.artifact import Precision
from fractalad_edge.errors import RuntimeMismatchError

#: oldest and newest-major versions with a branch here (the pyproject extra says the same)
OLDEST = (8, 6)
NEWEST_MAJOR = 11


class NetworkTyping(str, Enum):
    """How the network's tensor types are decided."""

    #: the builder picks precisions, steered by BuilderFlag.FP16 / INT8 (8.6; fp16 on 10.x)
    WEAK = "weakly-typed"
    #: types come from the ONNX: Q/DQ for int8, the graph's float types elsewhere (10.x, 11.x)
    STRONG = "strongly-typed"


@dataclass(frozen=True, kw_only=True)
class TensorRTVersion:
    major: int
    minor: int
    patch: int = 0
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> TensorRTVersion:
        match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", str(text))
        if match is None:
            msg = f"cannot read a TensorRT version from {text!r}; expected MAJOR.MINOR[.PATCH], e.g. '10.3.0'"
            raise RuntimeMismatchError(msg)
        return cls(major=int(match[1]), minor=int(match[2]), patch=int(match[3] or 0), text=str(text).strip())


@dataclass(frozen=True, kw_only=True)
class BuildPlan:
    """The builder calls one (version, precision) pair takes; read by export/tensorrt_engine.py."""

    version: TensorRTVersion
    precision: Precision
    typing: NetworkTyping
    #: NetworkDefinitionCreationFlag members to set, by name
    network_flags: tuple[str, ...]
    #: BuilderFlag members to set, by name (never any on a strongly typed network)
    builder_flags: tuple[str, ...]
    #: pin the teacher's stem to fp16 with layer precision constraints (8.6 int8 only: the
    #: constraints are deprecated in 10.12 and meaningless on a strongly typed network)
    pin_float_regions_fp16: bool
    #: clear BuilderFlag.TF32 so fp32 means fp32 (the flag is in the 8.6 and 10.x bindings; not
    #: relied on for 11.x, whose bindings were not checked for it)
    clear_tf32: bool


def plan_build(version: TensorRTVersion | str, precision: Precision) -> BuildPlan:
    """The branch for this TensorRT version and precision; RuntimeMismatchError naming both when none."""
    if not isinstance(version, TensorRTVersion):
        version = TensorRTVersion.parse(version)
    precision = Precision(precision)
    named = f"TensorRT {version.text or f'{version.major}.{version.minor}'}"
    if precision not in (Precision.FP32, Precision.FP16, Precision.INT8):
        msg = f"{named}: engines are built at fp32, fp16 or int8, not {precision.value}"
        raise RuntimeMismatchError(msg)
    if (version.major, version.minor) < OLDEST or version.major > NEWEST_MAJOR or version.major == 9:
        msg = (
            f"{named} is not supported: this SDK has tested branches for 8.6 (JetPack 6.0), 10.x and 11.x. "
            "Install one of those (pip install 'fractalad-edge[tensorrt]' picks a supported wheel; on Jetson use JetPack 6)"
        )
        raise RuntimeMismatchError(msg)
    if version.major == 8:
        flags = {Precision.FP32: (), Precision.FP16: ("FP16",), Precision.INT8: ("INT8", "FP16")}[precision]
        return BuildPlan(
            version=version, precision=precision, typing=NetworkTyping.WEAK, network_flags=("EXPLICIT_BATCH",),
            builder_flags=flags, pin_float_regions_fp16=precision is Precision.INT8, clear_tf32=True,
        )
    if precision is Precision.FP16:
        if version.major >= 11:
            msg = (
                f"{named} builds strongly typed networks only (BuilderFlag.FP16 is removed), and fractalad-edge does not "
                "write an fp16-typed ONNX yet; export with --precision int8 (explicit Q/DQ) or fp32, or use TensorRT 10.x"
            )
            raise RuntimeMismatchError(msg)
        return BuildPlan(
            version=version, precision=precision, typing=NetworkTyping.WEAK, network_flags=(),
            builder_flags=("FP16",), pin_float_regions_fp16=False, clear_tf32=True,
        )
    return BuildPlan(
        version=version, precision=precision, typing=NetworkTyping.STRONG, network_flags=("STRONGLY_TYPED",),
        builder_flags=(), pin_float_regions_fp16=False, clear_tf32=version.major < 11,
    )


__all__ = ["NEWEST_MAJOR", "OLDEST", "BuildPlan", "NetworkTyping", "TensorRTVersion", "plan_build"]
