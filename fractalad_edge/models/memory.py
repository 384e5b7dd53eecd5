"""The nearest-neighbour memory branch: teacher patch features scored against a memory of normal patches.

Training-free (PatchCore's idea on this package's own frozen teacher): a test patch scores
its distance to the nearest patch vector kept from the normal training images. Everything
the branch needs at inference is a buffer of this module (the optional channel-reduction
matrix, the memory bank and its squared norms, the fusion statistics), so it lives in the
weights file and is covered by the artifact's sha256.

The search is written as plain ops every exporter maps one to one: squared distances as
``|x|^2 - 2 x M^T + |m|^2`` (one MatMul plus norms), then ReduceMin (or TopK for k > 1),
so the same graph runs in torch, ONNX Runtime, OpenVINO and TensorRT.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fractalad_edge.errors import ConfigError
from fractalad_edge.method import FusionRule, FusionStats, MemoryConfig, Method

__all__ = ["FusionRule", "FusionStats", "MemoryBranch", "MemoryConfig", "Method", "fuse_maps"]

#: tail model of :attr:`FusionRule.NOISY_OR`: a normalised value of 1 (the normals' upper
#: percentile) is a tail probability of 1/1000 of being normal
_TAIL_RATE = math.log(1000.0)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(round(4.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


class MemoryBranch(nn.Module):
    """Teacher features -> per-pixel nearest-neighbour distance map ``(B, 1, S, S)``.

    Buffers: ``projection`` (D, channels) when channels are reduced, ``bank`` (size, C) and
    ``bank_sqnorm`` (size,). A freshly built branch holds zeros; :meth:`set_bank` fills it.
    """

    def __init__(self, config: MemoryConfig, *, stage_channels: Sequence[int], stage_strides: Sequence[int], input_size: int) -> None:
        super().__init__()
        missing = [s for s in config.strides if s not in stage_strides]
        if missing:
            msg = f"memory strides {list(config.strides)} are not all teacher strides {list(stage_strides)}; choose from those"
            raise ConfigError(msg)
        self.config = config
        self.input_size = input_size
        self.stage_indices = tuple(list(stage_strides).index(s) for s in config.strides)
        grid_stride = config.grid_stride or min(config.strides)
        if input_size % grid_stride:
            msg = f"memory grid_stride {grid_stride} must divide the input size {input_size}; e.g. 8 or 16"
            raise ConfigError(msg)
        self.grid = input_size // grid_stride
        self.feature_dim = sum(stage_channels[i] for i in self.stage_indices)
        width = config.channels or self.feature_dim
        if config.channels is not None:
            if config.channels > self.feature_dim:
                msg = f"memory channels {config.channels} exceed the {self.feature_dim} feature channels; use fewer"
                raise ConfigError(msg)
            # filled by the builder with a PCA of the memory images' patches (set_projection)
            self.register_buffer("projection", torch.zeros(self.feature_dim, config.channels))
            self.register_buffer("projection_mean", torch.zeros(self.feature_dim))
        else:
            self.projection = None
            self.projection_mean = None
        self.register_buffer("bank", torch.zeros(config.size, width))
        self.register_buffer("bank_sqnorm", torch.zeros(config.size))
        if config.blur_sigma > 0:
            kernel = _gaussian_kernel(config.blur_sigma)
            self.register_buffer("blur_kernel", kernel, persistent=False)
        else:
            self.blur_kernel = None

    @property
    def width(self) -> int:
        """Width of a memory vector (after channel reduction)."""
        return int(self.bank.shape[1])

    def set_projection(self, mean: torch.Tensor, components: torch.Tensor) -> None:
        """The channel reduction: ``(x - mean) @ components``, components ``(feature_dim, channels)``."""
        if self.projection is None or tuple(components.shape) != tuple(self.projection.shape):
            msg = f"a projection of shape {tuple(components.shape)} does not fit this branch (channels={self.config.channels})"
            raise ConfigError(msg)
        self.projection.copy_(components.float())
        self.projection_mean.copy_(mean.float())

    def patch_features(self, teacher_features: Sequence[torch.Tensor], *, project: bool = True) -> torch.Tensor:
        """Pooled, concatenated (and, with ``project``, reduced) patch vectors ``(B, grid*grid, C)``."""
        pool = self.config.pool
        maps = []
        for index in self.stage_indices:
            feature = teacher_features[index].float()
            if pool > 1:
                feature = F.avg_pool2d(feature, pool, stride=1, padding=pool // 2, count_include_pad=False)
            if feature.shape[-1] != self.grid:
                feature = F.interpolate(feature, size=(self.grid, self.grid), mode="bilinear", align_corners=False)
            maps.append(feature)
        stacked = torch.cat(maps, dim=1)
        vectors = stacked.flatten(2).transpose(1, 2)  # (B, HW, D)
        if project and self.projection is not None:
            vectors = torch.matmul(vectors - self.projection_mean, self.projection)
        return vectors

    def macs(self) -> int:
        """Multiply-accumulates per image: projection, the search MatMul and norms, and the blur."""
        patches = self.grid * self.grid
        total = patches * self.bank.shape[0] * self.width + patches * self.width
        if self.projection is not None:
            total += patches * self.feature_dim * self.width
        if self.blur_kernel is not None:
            total += 2 * self.input_size * self.input_size * self.blur_kernel.numel()
        return int(total)

    def set_bank(self, bank: torch.Tensor) -> None:
        """Fill the memory with ``bank`` (size, C) vectors, as :meth:`patch_features` makes them."""
        if tuple(bank.shape) != tuple(self.bank.shape):
            msg = f"memory bank of shape {tuple(bank.shape)} does not fit this branch's {tuple(self.bank.shape)}"
            raise ConfigError(msg)
        self.bank.copy_(bank.float())
        self.bank_sqnorm.copy_(bank.float().pow(2).sum(dim=1))

    def distances(self, vectors: torch.Tensor) -> torch.Tensor:
        """Distance of each vector ``(B, P, C)`` to its nearest (k-mean) memory rows: ``(B, P)``."""
        sq = vectors.pow(2).sum(dim=2, keepdim=True)  # (B, P, 1)
        d2 = sq - 2.0 * torch.matmul(vectors, self.bank.t()) + self.bank_sqnorm  # one MatMul plus norms
        if self.config.k == 1:
            nearest = d2.min(dim=2).values  # ReduceMin
            return nearest.clamp_min(0.0).sqrt()
        nearest = torch.topk(d2, self.config.k, dim=2, largest=False).values  # TopK
        return nearest.clamp_min(0.0).sqrt().mean(dim=2)

    def forward(self, teacher_features: Sequence[torch.Tensor]) -> torch.Tensor:
        batch = teacher_features[0].shape[0]
        distance = self.distances(self.patch_features(teacher_features))
        grid = distance.reshape(batch, 1, self.grid, self.grid)
        full = F.interpolate(grid, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return self.blur(full)

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian smoothing, replicate-padded (two 1-D convolutions)."""
        if self.blur_kernel is None:
            return x
        radius = self.blur_kernel.numel() // 2
        horizontal = self.blur_kernel.view(1, 1, 1, -1)
        vertical = self.blur_kernel.view(1, 1, -1, 1)
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), horizontal)
        return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), vertical)


def normalise(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``(v - low) / (high - low)``: 0 at the normals' median, 1 at their upper tail."""
    return (values - low) / (high - low)


def head_map(head_logits: torch.Tensor, config: MemoryConfig) -> torch.Tensor:
    """The head's map in the space it is fused in (``config.head_space``)."""
    return torch.sigmoid(head_logits) if config.head_space == "sigmoid" else head_logits


def fuse_maps(head_logits: torch.Tensor, memory_distances: torch.Tensor, config: MemoryConfig) -> torch.Tensor:
    """One map from both branches, in a space that keeps its spread (no sigmoid).

    Each branch is normalised on held-out normals (:class:`FusionStats`), then:
    ``mean``: their average; ``max``: the larger; ``weighted``: the weighted sum;
    ``noisy-or``: with each branch's tail modelled as exponential (normalised value 1 =
    probability 1/1000 of a normal pixel reaching it), the noisy-OR of the two anomaly
    probabilities, reported as ``-log(P(both normal)) / log(1000)`` so it never saturates.
    """
    stats = config.stats
    head = normalise(head_map(head_logits, config), stats.head_low, stats.head_high)
    memory = normalise(memory_distances, stats.memory_low, stats.memory_high)
    rule = config.fusion
    if rule is FusionRule.MEAN:
        return 0.5 * (head + memory)
    if rule is FusionRule.MAX:
        return torch.maximum(head, memory)
    if rule is FusionRule.WEIGHTED:
        total = stats.head_weight + stats.memory_weight
        return (stats.head_weight * head + stats.memory_weight * memory) / total
    # noisy-OR: -log survival of a branch = relu(rate * z + log 2) (median -> survival 1/2)
    log_two = math.log(2.0)
    return (F.relu(_TAIL_RATE * head + log_two) + F.relu(_TAIL_RATE * memory + log_two)) / _TAIL_RATE
