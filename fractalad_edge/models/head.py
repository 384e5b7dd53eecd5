"""Semantic-flow FPN segmentation head (SFNet style), as FractalAD uses it.

Plain FPNs upsample coarse maps bilinearly, which smears them over the fine grid; a
learned flow field instead aligns each coarse map to the finer one before adding them,
keeping small anomalies sharp at low cost (one 3x3 conv to 2 channels and one
``grid_sample`` per level).

Export choices:

* Every spatial size is fixed at construction from ``input_size``: interpolation sizes are
  Python ints and the base sampling grids are constant buffers, so exported graphs have no
  shape arithmetic. ``grid_sample`` needs ONNX opset >= 16.
* ``align_corners=False`` everywhere, with the base grid at pixel centres
  (``(2 j + 1) / W - 1``) and ``padding_mode="border"``. With a zero flow the warp then
  equals ``F.interpolate(..., mode="bilinear", align_corners=False)`` exactly, borders
  included (``"zeros"`` padding would darken the border pixels).
* The flow convolutions start at zero, so training starts from plain bilinear
  upsampling (an identity warp) and learns offsets from there instead of from noise.
* The flow is in units of fine-grid pixels.
* The last upsampling (the one-channel logit map, x4 to the input size) is two matrix
  products with constant bilinear weights instead of a Resize op. It computes exactly
  what ``F.interpolate(mode="bilinear", align_corners=False)`` does, but OpenVINO's
  Interpolate kernel vectorises over channels, and with one channel it took 1.3 ms of a
  23.5 ms INT8 pipeline on an AVX2 CPU; the two matrix products take 0.47 ms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fractalad_edge.errors import ConfigError

__all__ = ["BilinearUpsample", "FlowAlign", "SemanticFlowHead", "bilinear_weights", "conv_bn_relu", "pixel_centre_grid"]


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int) -> nn.Sequential:
    """Bias-free conv, BatchNorm, ReLU: the head's basic unit (fuses into one op on export)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


def pixel_centre_grid(height: int, width: int) -> torch.Tensor:
    """``(1, H, W, 2)`` grid of (x, y) pixel centres in ``grid_sample`` coordinates (``align_corners=False``)."""
    ys = (2.0 * torch.arange(height, dtype=torch.float32) + 1.0) / height - 1.0
    xs = (2.0 * torch.arange(width, dtype=torch.float32) + 1.0) / width - 1.0
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).unsqueeze(0)


def bilinear_weights(out_size: int, in_size: int) -> torch.Tensor:
    """``(out_size, in_size)`` matrix of 1-D bilinear weights, ``align_corners=False`` (torch's rule).

    Output sample ``i`` reads source position ``(i + 0.5) * in / out - 0.5``, clamped at 0,
    from its two neighbours (the upper one clamped to the last row); rows sum to 1.
    """
    scale = in_size / out_size
    src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * scale - 0.5).clamp_min(0.0)
    lower = src.floor().long().clamp_max(in_size - 1)
    upper = (lower + 1).clamp_max(in_size - 1)
    frac = src - lower.double()
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    weights.index_put_((rows, lower), 1.0 - frac, accumulate=True)
    weights.index_put_((rows, upper), frac, accumulate=True)
    return weights.float()


class BilinearUpsample(nn.Module):
    """Bilinear resize of ``(B, C, in, in)`` to ``(B, C, out, out)`` as ``rows @ x @ cols``.

    Equal to ``F.interpolate(x, size=(out, out), mode="bilinear", align_corners=False)`` up
    to float rounding; exports as two MatMuls with constant weights (see the module notes).
    """

    def __init__(self, in_size: int, out_size: int) -> None:
        super().__init__()
        self.register_buffer("rows", bilinear_weights(out_size, in_size), persistent=False)
        self.register_buffer("cols", bilinear_weights(out_size, in_size).t().contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.rows, x), self.cols)


class FlowAlign(nn.Module):
    """Warp a coarse map onto a fine ``size x size`` grid with a flow predicted from both."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.size = size
        self.flow = nn.Conv2d(2 * channels, 2, 3, padding=1, bias=False)
        nn.init.zeros_(self.flow.weight)
        self.register_buffer("base_grid", pixel_centre_grid(size, size), persistent=False)
        # Converts a flow in fine pixels to normalised grid units (2 / W per pixel).
        self.register_buffer("flow_scale", torch.full((1, 1, 1, 2), 2.0 / size), persistent=False)

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        upsampled = F.interpolate(coarse, size=(self.size, self.size), mode="bilinear", align_corners=False)
        flow = self.flow(torch.cat([fine, upsampled], dim=1))
        grid = self.base_grid + flow.permute(0, 2, 3, 1) * self.flow_scale
        return F.grid_sample(coarse, grid, mode="bilinear", padding_mode="border", align_corners=False)


class SemanticFlowHead(nn.Module):
    """Four backbone stages in, one anomaly logit map at input resolution out.

    Per stage a 1x1 conv+BN+ReLU to ``channels``; top-down, each coarser level is
    flow-warped onto the finer grid and added, and the sum is smoothed by a 3x3
    conv+BN+ReLU (as in SFNet, the unsmoothed sum continues down the path and the
    smoothed one is kept for fusion); the four levels are upsampled to the finest
    stride, concatenated, fused by 3x3 conv+BN+ReLU, reduced to one logit by a 3x3 conv
    and upsampled to ``input_size``.
    """

    def __init__(
        self, *, in_channels: Sequence[int], strides: Sequence[int], channels: int, input_size: int
    ) -> None:
        super().__init__()
        if len(in_channels) != len(strides) or len(in_channels) < 2:
            msg = f"Need one stride per stage and >= 2 stages, got in_channels={in_channels}, strides={strides}."
            raise ConfigError(msg)
        if any(input_size % s for s in strides):
            msg = f"input_size {input_size} must be divisible by every stride {tuple(strides)}."
            raise ConfigError(msg)
        if channels < 1:
            msg = f"Head channels must be >= 1, got {channels}."
            raise ConfigError(msg)
        self.input_size = input_size
        self.sizes = tuple(input_size // s for s in strides)
        self.lateral = nn.ModuleList(conv_bn_relu(c, channels, 1) for c in in_channels)
        # align[i] / smooth[i] merge level i+1 into level i (i = 0 is the finest).
        self.align = nn.ModuleList(FlowAlign(channels, self.sizes[i]) for i in range(len(strides) - 1))
        self.smooth = nn.ModuleList(conv_bn_relu(channels, channels, 3) for _ in range(len(strides) - 1))
        self.fuse = conv_bn_relu(len(strides) * channels, channels, 3)
        self.classifier = nn.Conv2d(channels, 1, 3, padding=1)
        self.upsample = BilinearUpsample(self.sizes[0], input_size)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.lateral):
            msg = f"SemanticFlowHead expects {len(self.lateral)} feature maps, got {len(features)}."
            raise ConfigError(msg)
        laterals = [lat(f) for lat, f in zip(self.lateral, features)]
        top = laterals[-1]
        levels = [top]
        for i in range(len(laterals) - 2, -1, -1):
            top = laterals[i] + self.align[i](laterals[i], top)
            levels.insert(0, self.smooth[i](top))
        finest = self.sizes[0]
        stacked = [levels[0]] + [
            F.interpolate(lvl, size=(finest, finest), mode="bilinear", align_corners=False) for lvl in levels[1:]
        ]
        logits = self.classifier(self.fuse(torch.cat(stacked, dim=1)))
        return self.upsample(logits)
