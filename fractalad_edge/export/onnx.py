"""The ``onnx`` format: one static-shape ONNX graph, the source every other format is built from.

Choices, measured on this model (torch 2.13, 64 px tiny model on 2 shared cores):

* ``dynamo=False`` (the TorchScript exporter). The dynamo exporter builds opset 18 and cannot
  convert the graph down to 17 ("No Adapter To Version 17 for Pad"), and TensorRT 8.6 on
  JetPack 6 reads opset 17; it also took ~64 s against ~8 s. The TorchScript exporter's raw
  graph carries shape arithmetic (padding and resize sizes computed with Shape, Slice,
  ConstantOfShape); with static shapes all of it is constant, so onnxscript's optimizer folds
  it, fuses the explicit pads into the convolutions and leaves 285 nodes of plain Conv,
  Clip, Mul, Add, ReduceSum, Sqrt, Resize, GridSample, Concat, Transpose (and Sigmoid in a
  ``sigmoid``-space graph; the default ``logit`` graph ends before it)
  (TorchScript raw: 721 nodes; dynamo: 298 at opset 18).
* Static batch 1 (``1 x 3 x S x S``). A dynamic batch axis keeps Shape ops in the graph
  (the resize sizes depend on it), needs TensorRT optimisation profiles, and an edge camera
  sends one frame at a time; the Predictor loops larger batches.
* Weights inside the one file (no external data): the artifact's sha256 covers everything
  and the file copies as one unit. Fine below ONNX's 2 GB protobuf limit (this model: ~25 MB).
* opset 17 by default; GridSample (the flow warp) needs >= 16.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from fractalad_edge.artifact import ONNX_FILENAME, Precision
from fractalad_edge.errors import ExportError
from fractalad_edge.export.formats import ExportedModel, ExportJob

if TYPE_CHECKING:
    import onnx
    import torch

INPUT_NAME = "image"
OUTPUT_NAME = "anomaly_map"
MIN_OPSET = 16  # GridSample
MAX_OPSET = 20  # the TorchScript exporter's highest in torch 2.x


def export_onnx(model: torch.nn.Module, path: str | Path, *, input_size: int, opset: int = 17) -> Path:
    """Trace ``model`` (eval, fp32, CPU) to a checked, constant-folded ONNX file at ``path``."""
    import onnx
    import torch

    if not MIN_OPSET <= opset <= MAX_OPSET:
        msg = f"ONNX opset {opset} is not supported; use {MIN_OPSET}..{MAX_OPSET} (GridSample needs >= 16; TensorRT 8.6 reads 17)"
        raise ExportError(msg)
    path = Path(path)
    model = model.eval().to("cpu", torch.float32)
    example = torch.zeros(1, 3, input_size, input_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (see module docstring); its
        # deprecation notice and constant-folding notes are not actionable here.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                do_constant_folding=True,
            )
        except Exception as exc:  # noqa: BLE001 - any tracer failure becomes one typed error
            msg = f"torch.onnx.export failed at opset {opset}: {type(exc).__name__}: {exc}"
            raise ExportError(msg) from exc
    proto = fold_constants(onnx.load_from_string(buffer.getvalue()))
    check_onnx(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))
    return path


def write_onnx_artifact(job: ExportJob) -> ExportedModel:
    """``model.onnx`` (fp32, or int8 QDQ from the fp32 graph via onnxruntime's static quantizer)."""
    from fractalad_edge.runtimes.onnxruntime import OnnxRuntimeBackend

    path = job.directory / ONNX_FILENAME
    size = job.input_spec.height
    quantization = None
    float_layers: tuple[str, ...] = ()
    if job.precision is Precision.INT8:
        from fractalad_edge.quantize.onnxruntime import quantize_onnx_model

        fp32_path = export_onnx(job.model, job.scratch / "model-fp32.onnx", input_size=size, opset=job.opset)
        bits = 7 if job.int8_weights == "reduced" else 8
        job.progress(
            f"quantizing to int8 (onnxruntime QDQ, {bits}-bit weights) on {len(job.calibration)} calibration images"
        )
        if bits == 8 and job.device == "cpu" and cpu_int8_saturates():
            job.progress(
                "warning: this CPU has no VNNI; onnxruntime's INT8 convolutions overflow here with 8-bit weights, so the "
                "parity check and accuracy gate below judge this machine, not your target. Check the model on the target "
                "(fractalad-edge bench), or export with the default 7-bit weights"
            )
        float_layers = quantize_onnx_model(
            fp32_path, path, job.calibration, job.input_spec, reduce_range=job.int8_weights == "reduced"
        )
        quantization = ("onnxruntime", f"qdq-static, {bits}-bit weights")
    else:
        export_onnx(job.model, path, input_size=size, opset=job.opset)
    return ExportedModel(
        files=(ONNX_FILENAME,),
        open_backend=lambda: OnnxRuntimeBackend(path, device=job.device),
        checked_with=f"onnxruntime {job.device}",
        checked_precision=job.precision,
        quantization=quantization,
        float_layers=float_layers,
    )


def cpu_int8_saturates(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True on an x86 CPU without VNNI (AVX512-VNNI or AVX-VNNI), as read from ``/proc/cpuinfo``.

    There onnxruntime's u8 x s8 convolutions sum pairs of products in int16 (``vpmaddubsw``),
    which overflows for full-range weights. False where the file is missing or names no x86 flags.
    """
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), None)
    if flags is None or "sse2" not in flags:  # not x86 (ARM lists "Features")
        return False
    return not ({"avx512_vnni", "avx_vnni"} & set(flags))


def fold_constants(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Fold the static shape arithmetic away and fuse the explicit pads into the convolutions.

    Only the onnxscript passes this graph needs (constant folding with shape inference, the
    pad-into-conv rules, dead-node removal): its full default rule set gives the same 285
    nodes but takes ~5x longer, matching ~50 rules on every node.
    """
    import onnx_ir as ir
    import onnx_ir.passes.common as common_passes
    from onnxscript import optimizer, rewriter
    from onnxscript.rewriter.rules import common as rules

    model = ir.serde.deserialize_model(proto)
    pad_rules = rewriter.RewriteRuleSet([rules.normalize_pad_format_conv_rule, rules.fuse_pad_into_conv_rule])
    for _ in range(2):  # the pads become constant only after the first folding round
        # ConstantOfShape is not folded by default (it could make a large tensor); here it only
        # builds the 8-element pad vectors of the "same" convolutions.
        optimizer.fold_constants(
            model, onnx_shape_inference=True, should_fold=lambda node: True if node.op_type == "ConstantOfShape" else None
        )
        rewriter.RewritePass(pad_rules)(model)
        common_passes.RemoveUnusedNodesPass()(model)
    common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
    common_passes.DeduplicateInitializersPass()(model)
    return ir.serde.serialize_model(model)


def check_onnx(proto: onnx.ModelProto) -> None:
    """onnx.checker with full shape inference; the static output shape must be (1, 1, S, S)."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        msg = f"the exported ONNX graph is invalid: {exc}"
        raise ExportError(msg) from None
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        msg = f"exported ONNX has inputs {inputs} and outputs {outputs}; expected [{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]"
        raise ExportError(msg)


__all__ = [
    "INPUT_NAME",
    "MAX_OPSET",
    "MIN_OPSET",
    "OUTPUT_NAME",
    "check_onnx",
    "export_onnx",
    "fold_constants",
    "write_onnx_artifact",
]
