"""Segmentation losses: BCE-with-logits plus soft Dice, as in the method."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_loss(logits: torch.Tensor, mask: torch.Tensor, *, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice over the whole batch; the smoothing keeps all-normal batches finite."""
    prob = torch.sigmoid(logits.float())
    intersection = (prob * mask).sum()
    return 1.0 - (2.0 * intersection + smooth) / (prob.sum() + mask.sum() + smooth)


def segmentation_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits + Dice between the head's output on the augmented image and the mask."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, mask) + dice_loss(logits, mask)
