"""INT8 quantization calibrated on real normal images with synthetic fractal anomalies.

One module per toolchain (NNCF for OpenVINO, onnxruntime's static QDQ quantizer, a
symmetric Q/DQ graph for TensorRT) fed by the same :class:`~fractalad_edge.calibration.dataset.CalibrationSet`,
and one accuracy gate (:func:`~fractalad_edge.quantize.gate.accuracy_gate`) that compares
the quantized model with the float one on held-out synthetic anomalies.

Why calibrate on synthetic anomalies and not on random tensors or normals only: INT8
ranges are set from the activations seen during calibration. Random noise produces
activation statistics nothing like a camera frame's (and wrecks EfficientNet-Lite0's deep
stages); normals alone never show the head the large teacher/student disagreement an
anomaly causes, so its ranges clip exactly where the defect is.

Which parts stay in float is decided by measurement (see :data:`DEFAULT_KEEP_FLOAT` and
the toolchain modules). Toolchain packages are imported only when a toolchain is used, so
``import fractalad_edge.quantize`` costs nothing on a device that has none of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from typing import TYPE_CHECKING

import cv2
import numpy as np

from fractalad_edge._lazy import lazy_exports
from fractalad_edge.artifact import InputSpec
from fractalad_edge.errors import ConfigError
from fractalad_edge.preprocess import prepare_batch

if TYPE_CHECKING:
    from fractalad_edge.calibration.dataset import CalibrationSample


class FloatRegion(str, Enum):
    """Parts of the FractalAD graph that can be kept in float while the rest runs INT8.

    Found structurally in the graph (by op types and connections, not by node names), so
    the choice survives any exporter's naming; TEACHER_STEM is the one exception (see there).
    """

    #: cosine similarity attention: per-pixel dot products, norms, division, ``(1 - cos) / 2 * s``
    CSAM = "csam"
    #: the semantic-flow warps: flow convolutions, grid arithmetic and GridSample
    FLOW = "flow"
    #: the last convolution, which produces the anomaly logit, and everything after it
    #: (upsampling, and the sigmoid where a ``sigmoid``-space graph has one; ``logit`` graphs,
    #: the default, end at the upsampling): an INT8 logit would put steps into the map
    CLASSIFIER = "classifier"
    #: every teacher layer whose output is at stride 4 or finer: the stem and the first
    #: stage, which make the finest feature level (for EfficientNet-Lite0 also the expansion
    #: conv that opens block 3). The one region found partly by name: the teacher and the
    #: student are the same network, so the teacher is told apart by its module scope
    #: (TEACHER_SCOPE in node names, which the ONNX export and OpenVINO's conversion keep);
    #: the depth by the nodes' output size.
    TEACHER_STEM = "teacher-stem"
    #: the nearest-neighbour memory branch (models/memory.py): its nodes (module scope
    #: MEMORY_SCOPE: pooling, projection, the MatMul against the memory bank, norms,
    #: ReduceMin/TopK) and everything after the search to the output (upsampling, blur,
    #: normalisation and fusion). Distances to a memory are differences of large squared
    #: norms; INT8 steps in them reorder the nearest neighbours.
    MEMORY = "memory"


#: node-name prefix of the memory branch's layers in the exported graph (module ``FractalAD.memory``)
MEMORY_SCOPE = "/memory/"
#: op types that end the memory search (ONNX and OpenVINO spell them the same)
MEMORY_SEARCH_OPS = frozenset({"ReduceMin", "TopK"})


#: node-name prefix of the teacher's layers in the exported graph (module ``FractalAD.teacher``)
TEACHER_SCOPE = "/teacher/"
#: TEACHER_STEM ends at the first feature level, stride 4
TEACHER_STEM_STRIDE = 4


def in_teacher_stem(name: str, output_shape: Sequence[int], input_height: int) -> bool:
    """Whether a node named ``name`` with this (N, C, H, W) output belongs to FloatRegion.TEACHER_STEM."""
    return (
        name.startswith(TEACHER_SCOPE)
        and len(output_shape) == 4
        and output_shape[2] > 0
        and output_shape[2] >= input_height // TEACHER_STEM_STRIDE
    )


#: Regions kept in float unless the caller says otherwise; chosen by measurement, see the
#: toolchain modules' docstrings for the numbers.
DEFAULT_KEEP_FLOAT: tuple[FloatRegion, ...] = (
    FloatRegion.CSAM,
    FloatRegion.FLOW,
    FloatRegion.CLASSIFIER,
    FloatRegion.TEACHER_STEM,
    FloatRegion.MEMORY,
)


def float_regions(keep_float: Iterable[str | FloatRegion]) -> tuple[FloatRegion, ...]:
    """Validate region names given as strings or enum members (order kept, duplicates dropped)."""
    regions: list[FloatRegion] = []
    for value in keep_float:
        try:
            region = FloatRegion(value)
        except ValueError:
            allowed = ", ".join(repr(r.value) for r in FloatRegion)
            msg = f"unknown float region {value!r}; allowed: {allowed} (or none, for full INT8)"
            raise ConfigError(msg) from None
        if region not in regions:
            regions.append(region)
    return tuple(regions)


def model_input(sample: CalibrationSample, input_spec: InputSpec) -> np.ndarray:
    """One calibration sample as the graph's input (float32 (1, 3, H, W), or (1, H, W, 3) uint8 for a uint8 spec), pre-processed like production frames."""
    return prepare_batch([sample.image], input_spec, channel_order="rgb")[0]


def mask_at(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A sample's ground-truth mask as bool at the model's output size (nearest, no soft edges)."""
    binary = np.asarray(mask) > 0.5
    if binary.shape == (height, width):
        return binary
    resized = cv2.resize(binary.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return resized.astype(bool)


# Toolchain entry points, imported on first use (NNCF style: the backend only when it is used).
_LAZY = {
    "quantize_openvino_model": "fractalad_edge.quantize.openvino",
    "quantize_onnx_model": "fractalad_edge.quantize.onnxruntime",
    "quantize_for_tensorrt": "fractalad_edge.quantize.tensorrt",
    "accuracy_gate": "fractalad_edge.quantize.gate",
    "AccuracyComparison": "fractalad_edge.quantize.gate",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "DEFAULT_KEEP_FLOAT",
    "AccuracyComparison",
    "FloatRegion",
    "MEMORY_SCOPE",
    "MEMORY_SEARCH_OPS",
    "TEACHER_SCOPE",
    "accuracy_gate",
    "float_regions",
    "in_teacher_stem",
    "mask_at",
    "model_input",
    "quantize_for_tensorrt",
    "quantize_onnx_model",
    "quantize_openvino_model",
]
