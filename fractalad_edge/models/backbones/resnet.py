"""ResNet18, the backbone of the FractalAD reference implementation.

Parameter names follow torchvision (``conv1``, ``bn1``, ``layer1`` .. ``layer4``, ``fc``)
so torchvision's ImageNet state dict loads strictly. torchvision itself is not a
dependency and nothing is downloaded: the user supplies the weights file.
"""

from __future__ import annotations

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

__all__ = ["RESNET18_SPEC", "BasicBlock", "ResNet18", "load_resnet18_weights", "resnet18"]

RESNET18_SPEC = BackboneSpec(
    name="resnet18",
    stage_channels=(64, 128, 256, 512),
    strides=(4, 8, 16, 32),
    mean=(0.485 * 255, 0.456 * 255, 0.406 * 255),
    std=(0.229 * 255, 0.224 * 255, 0.225 * 255),
    weights="ImageNet-1k torchvision ResNet18 (IMAGENET1K_V1, resnet18-f37072fd.pth), supplied by the user",
)

_HOW_TO_OBTAIN = (
    "ResNet18 ImageNet weights are not bundled. Get torchvision's resnet18-f37072fd.pth "
    "(https://download.pytorch.org/models/resnet18-f37072fd.pth, or on a machine with torchvision: "
    "torch.save(torchvision.models.resnet18(weights='IMAGENET1K_V1').state_dict(), 'resnet18.pth')), "
    "put it anywhere, e.g. ~/.cache/fractalad_edge/resnet18-f37072fd.pth, and pass --backbone-weights PATH "
    "(weights_path=PATH in Python). .pth and .safetensors are accepted."
)
_CLASSIFIER_PREFIX = "fc."


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 strided) shortcut, as torchvision's."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + identity)


class ResNet18(Backbone):
    """ResNet18 returning ``layer1`` .. ``layer4`` (64/128/256/512 channels, strides 4/8/16/32).

    The ``fc`` classifier exists only with ``include_classifier=True`` (used by
    :meth:`classify`); the feature extractor neither holds nor runs it.
    """

    def __init__(self, *, include_classifier: bool = False) -> None:
        super().__init__()
        self.spec = RESNET18_SPEC
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64, stride=1), BasicBlock(64, 64, stride=1))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, stride=2), BasicBlock(128, 128, stride=1))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, stride=2), BasicBlock(256, 256, stride=1))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, stride=2), BasicBlock(512, 512, stride=1))
        self.include_classifier = include_classifier
        if include_classifier:
            self.fc = nn.Linear(512, 1000)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f1, f2, f3, f4]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(B, 1000)``; needs ``include_classifier=True``."""
        if not self.include_classifier:
            msg = "This ResNet18 was built without its classifier; build it with include_classifier=True."
            raise RuntimeError(msg)
        f4 = self.forward(x)[-1]
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(f4, 1), 1))


def load_resnet18_weights(model: ResNet18, weights_path: str | Path | None) -> None:
    """Load a torchvision ResNet18 state dict strictly (``fc.*`` dropped when the model has no classifier)."""
    if weights_path is None:
        msg = f"pretrained=True needs a weights file for resnet18. {_HOW_TO_OBTAIN}"
        raise WeightsNotFoundError(msg)
    state = load_weights_file(weights_path, how_to_obtain=_HOW_TO_OBTAIN)
    if not model.include_classifier:
        state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIX)}
    load_state_dict_strict(model, state, source=str(weights_path))


@register_backbone(RESNET18_SPEC)
def resnet18(*, pretrained: bool, input_size: int, weights_path: str | Path | None = None) -> ResNet18:
    """ResNet18 feature extractor; ``pretrained`` needs ``weights_path`` (torchvision's state dict)."""
    del input_size  # symmetric padding everywhere: any multiple of 32 works without rebuilding
    model = ResNet18()
    if pretrained:
        load_resnet18_weights(model, weights_path)
    return model
