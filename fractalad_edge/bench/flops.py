"""Multiply-accumulates per image, counted from the torch model, to turn latency into GFLOP/s.

Latency alone does not say whether a runtime is slow or the model is big; MACs per image
(counted once, from the reference torch graph, which every exported format computes) and
the achieved ``2 * MACs / latency`` do. Counting uses forward hooks on the layers that carry
nearly all the arithmetic (convolutions, linear layers, and matrix products written as
modules); element-wise work, pooling, resizing and ``grid_sample`` are not counted, as is
usual for CNN MAC figures, so the numbers compare with published ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fractalad_edge.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class MacCount:
    """MACs for one image at ``input_size``, total and per layer type."""

    input_size: int
    total: int
    by_type: dict[str, int] = field(default_factory=dict)
    layers: int = 0

    @property
    def gmacs(self) -> float:
        return self.total / 1e9

    def gflops_per_second(self, seconds_per_image: float) -> float:
        """Achieved arithmetic rate, counting one MAC as two floating-point operations."""
        if not seconds_per_image > 0 or not math.isfinite(seconds_per_image):
            return float("nan")
        return 2.0 * self.total / seconds_per_image / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "total": self.total, "gmacs": self.gmacs, "by_type": dict(self.by_type), "layers": self.layers}


def _conv_macs(module: Any, output: Any) -> int:
    # Every output element is a dot product over (in_channels / groups) * prod(kernel) inputs.
    kernel = math.prod(module.kernel_size)
    return int(output.numel()) * (module.in_channels // module.groups) * kernel


def _conv_transpose_macs(module: Any, inputs: tuple[Any, ...]) -> int:
    # Each input element is scattered to (out_channels / groups) * prod(kernel) outputs.
    kernel = math.prod(module.kernel_size)
    return int(inputs[0].numel()) * (module.out_channels // module.groups) * kernel


def _linear_macs(module: Any, output: Any) -> int:
    return int(output.numel()) * module.in_features


@contextmanager
def _hooks(model: Any, counts: dict[str, int], layers: list[int]) -> Iterator[None]:
    from torch import nn

    from fractalad_edge.models.head import BilinearUpsample

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            macs = _conv_transpose_macs(module, inputs)
        elif isinstance(module, nn.modules.conv._ConvNd):
            macs = _conv_macs(module, output)
        elif isinstance(module, nn.Linear):
            macs = _linear_macs(module, output)
        elif isinstance(module, nn.Bilinear):
            macs = int(output.numel()) * module.in1_features * module.in2_features
        elif isinstance(module, BilinearUpsample):  # rows @ x @ cols
            maps = int(inputs[0].shape[0] * inputs[0].shape[1])
            (out_h, in_h), (in_w, out_w) = module.rows.shape, module.cols.shape
            macs = maps * (out_h * in_h * in_w + out_h * in_w * out_w)
        else:  # pragma: no cover - only registered on the types above
            return
        name = type(module).__name__
        counts[name] = counts.get(name, 0) + macs
        layers[0] += 1

    handles = [
        module.register_forward_hook(hook)
        for module in model.modules()
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear, BilinearUpsample))
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def count_macs(model: Any, input_size: int, *, channels: int = 3) -> MacCount:
    """MACs of one forward pass on a single ``(1, channels, input_size, input_size)`` image.

    Runs the model once on zeros on its own device, without grad; the model is left as it
    was (hooks removed, train/eval mode restored).
    """
    import torch

    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        msg = f"input_size must be a positive int (the model's square input side), got {input_size!r}"
        raise ConfigError(msg)
    counts: dict[str, int] = {}
    layers = [0]
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with _hooks(model, counts, layers), torch.no_grad():
            model(torch.zeros(1, channels, input_size, input_size, device=device))
    finally:
        model.train(was_training)
    return MacCount(input_size=input_size, total=sum(counts.values()), by_type=dict(sorted(counts.items())), layers=layers[0])


def count_artifact_macs(run_dir: Any) -> MacCount:
    """MACs per image of the model stored in a torch artifact (a training run directory)."""
    from pathlib import Path

    from fractalad_edge.artifact import read_metadata
    from fractalad_edge.models.torch_format import build_model_for

    # MACs depend on the architecture only, so the weights are not loaded.
    metadata = read_metadata(Path(run_dir), verify=False)
    model = build_model_for(metadata)
    return count_macs(model, metadata.input.height)
