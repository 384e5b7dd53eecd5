"""Backbones by name: the teacher/student CNNs FractalAD distils between.

A registry in the torchvision/timm manner: each backbone registers a
:class:`BackboneSpec` (its stage widths, strides and the input normalisation its
ImageNet weights expect) together with a keyword-only builder. The spec travels with
the built module (``backbone.spec``) so pre-processing and exported metadata always use
the normalisation the weights were trained with.

Only two small modules are registered, both plain torch, so they are imported here
eagerly; a lazy loader would cost more than it saves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

import torch
from torch import nn

from fractalad_edge.errors import CheckpointError, ConfigError, WeightsNotFoundError

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneBuilder",
    "BackboneSpec",
    "build_backbone",
    "get_backbone_spec",
    "load_state_dict_strict",
    "load_weights_file",
    "register_backbone",
]


@dataclass(frozen=True, kw_only=True)
class BackboneSpec:
    """What a backbone produces and what input it expects.

    ``mean`` and ``std`` are per RGB channel in 0..255 pixel units: a pixel ``p`` is fed
    to the network as ``(p - mean) / std``.
    """

    name: str
    stage_channels: tuple[int, ...]
    strides: tuple[int, ...] = (4, 8, 16, 32)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            msg = f"Backbone name must be a non-empty identifier, got {self.name!r}; use e.g. 'resnet18'."
            raise ConfigError(msg)
        if len(self.stage_channels) != len(self.strides):
            msg = (
                f"Backbone {self.name!r}: stage_channels {self.stage_channels} and strides {self.strides} "
                "must have the same length (one width per stage)."
            )
            raise ConfigError(msg)
        if any(c <= 0 for c in self.stage_channels):
            msg = f"Backbone {self.name!r}: stage_channels must be positive, got {self.stage_channels}."
            raise ConfigError(msg)
        if list(self.strides) != sorted(set(self.strides)) or any(s <= 0 for s in self.strides):
            msg = f"Backbone {self.name!r}: strides must be positive and strictly increasing, got {self.strides}."
            raise ConfigError(msg)
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            msg = (
                f"Backbone {self.name!r}: mean and std must have 3 RGB values with std > 0, "
                f"got mean={self.mean}, std={self.std}."
            )
            raise ConfigError(msg)

    @property
    def max_stride(self) -> int:
        """The input side must be a multiple of this so every stage has an integer size."""
        return self.strides[-1]


class Backbone(nn.Module):
    """A CNN that maps a normalised ``(B, 3, H, W)`` tensor to one feature map per stage.

    ``forward`` returns ``len(spec.strides)`` maps, map ``i`` at stride
    ``spec.strides[i]`` with ``spec.stage_channels[i]`` channels. Subclasses must not run
    layers the feature maps do not need (classifier heads), so exported graphs stay lean.
    """

    spec: BackboneSpec

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


class BackboneBuilder(Protocol):
    """Keyword-only constructor every registered backbone provides."""

    def __call__(self, *, pretrained: bool, input_size: int, weights_path: str | Path | None = None) -> Backbone: ...


_SPECS: dict[str, BackboneSpec] = {}
_BUILDERS: dict[str, BackboneBuilder] = {}

#: Read-only view ``name -> BackboneSpec`` of every registered backbone.
BACKBONES: Mapping[str, BackboneSpec] = MappingProxyType(_SPECS)


def register_backbone(spec: BackboneSpec) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator that registers ``builder`` under ``spec.name``; a second use of a name is refused.

    Refusing duplicates keeps a name meaning one set of weights and one normalisation,
    which exported artifacts rely on.
    """

    def decorator(builder: BackboneBuilder) -> BackboneBuilder:
        if spec.name in _SPECS:
            msg = (
                f"Backbone name {spec.name!r} is already registered (by {_BUILDERS[spec.name]!r}); "
                "names must be unique: pick another name."
            )
            raise ConfigError(msg)
        _SPECS[spec.name] = spec
        _BUILDERS[spec.name] = builder
        return builder

    return decorator


def get_backbone_spec(name: str) -> BackboneSpec:
    """The spec registered under ``name``."""
    try:
        return _SPECS[name]
    except (KeyError, TypeError):
        msg = f"Unknown backbone {name!r}; known backbones: {sorted(_SPECS)}."
        raise ConfigError(msg) from None


def build_backbone(
    name: str, *, pretrained: bool, input_size: int, weights_path: str | Path | None = None
) -> Backbone:
    """Build the backbone ``name`` for square inputs of side ``input_size``.

    ``input_size`` is fixed at build time so padding can be computed statically (clean
    ONNX/OpenVINO/TensorRT graphs); it must be a multiple of the largest stride.
    ``pretrained=True`` loads ImageNet weights from a local file (``weights_path`` or the
    backbone's default); nothing is ever downloaded.
    """
    spec = get_backbone_spec(name)
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 2 * spec.max_stride:
        msg = f"input_size must be an int >= {2 * spec.max_stride}, got {input_size!r}."
        raise ConfigError(msg)
    if input_size % spec.max_stride:
        msg = (
            f"input_size must be a multiple of {spec.max_stride} for backbone {name!r}, got {input_size}; "
            f"use e.g. {round(input_size / spec.max_stride) * spec.max_stride or spec.max_stride * 2}."
        )
        raise ConfigError(msg)
    backbone = _BUILDERS[name](pretrained=bool(pretrained), input_size=input_size, weights_path=weights_path)
    return backbone


def load_weights_file(path: str | Path, *, how_to_obtain: str) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pth``/``.pt`` (``torch.load(weights_only=True)``) or ``.safetensors``.

    ``weights_only=True`` refuses pickled code, so a weights file cannot execute anything.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        msg = f"Backbone weights file not found: {str(path)!r}. {how_to_obtain}"
        raise WeightsNotFoundError(msg)
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif suffix in {".pth", ".pt", ".bin"}:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            msg = (
                f"Unsupported weights file suffix {suffix!r} for {str(path)!r}; "
                "allowed: .pth, .pt, .bin (torch state dict) or .safetensors."
            )
            raise ConfigError(msg)
    except ConfigError:
        raise
    except Exception as exc:  # corrupt file, pickled code refused by weights_only, ...
        msg = f"Cannot read backbone weights from {str(path)!r}: {exc}. {how_to_obtain}"
        raise CheckpointError(msg) from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        msg = (
            f"{str(path)!r} does not hold a plain state dict (name -> tensor), got {type(state).__name__}; "
            "save it with torch.save(model.state_dict(), path)."
        )
        raise CheckpointError(msg)
    return dict(state)


def load_state_dict_strict(module: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """``load_state_dict(strict=True)`` with an SDK error that names the offending keys."""
    expected = set(module.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        msg = (
            f"Weights from {source} do not match {type(module).__name__}: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}. "
            "Use the state dict of the matching architecture."
        )
        raise CheckpointError(msg)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # shape mismatches
        msg = f"Weights from {source} do not fit {type(module).__name__}: {exc}"
        raise CheckpointError(msg) from exc


# Registration happens on import of the backbone modules (they import the names above).
from fractalad_edge.models.backbones import efficientnet_lite as _efficientnet_lite  # noqa: E402,F401
from fractalad_edge.models.backbones import resnet as _resnet  # noqa: E402,F401
