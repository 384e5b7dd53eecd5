"""The export defaults, named once: ExportOptions, ExportJob and the CLI read them here.

Import-light on purpose (no numpy), so the CLI can show them in its help.
"""

DEFAULT_PRECISION = "fp32"  # a Precision value
DEFAULT_OPSET = 17  # GridSample needs >= 16; TensorRT 8.6 (JetPack 6) reads up to 17
DEFAULT_MAX_DROP = 0.5  # int8 accuracy gate: allowed AUROC drop in points (x100)
DEFAULT_INT8_WEIGHTS = "reduced"  # onnx int8 weight range (7-bit: safe on every x86 CPU)
DEFAULT_QUANT_MODE = "ptq"  # openvino int8: NNCF post-training quantization

__all__ = ["DEFAULT_INT8_WEIGHTS", "DEFAULT_MAX_DROP", "DEFAULT_OPSET", "DEFAULT_PRECISION", "DEFAULT_QUANT_MODE"]
