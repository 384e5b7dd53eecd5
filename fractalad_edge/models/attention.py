"""Cosine similarity attention (CSAM) and the cosine distillation loss.

Both compare teacher and student per pixel across channels. The cosine is written with
explicit sums, a square root and a clamp instead of ``F.cosine_similarity`` so the same
few elementwise ops export to TorchScript, ONNX, OpenVINO and TensorRT without special
cases.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fractalad_edge.errors import ConfigError

__all__ = ["channel_cosine_similarity", "cosine_distillation_loss", "cosine_similarity_attention"]

#: Norms below this are clamped, so an all-zero feature vector gives cosine 0, not NaN.
COSINE_EPS = 1e-6


def channel_cosine_similarity(a: torch.Tensor, b: torch.Tensor, eps: float = COSINE_EPS) -> torch.Tensor:
    """Cosine between ``a`` and ``b`` over dim 1 (channels), kept as ``(B, 1, H, W)``."""
    dot = (a * b).sum(dim=1, keepdim=True)
    norm_a = torch.sqrt((a * a).sum(dim=1, keepdim=True)).clamp_min(eps)
    norm_b = torch.sqrt((b * b).sum(dim=1, keepdim=True)).clamp_min(eps)
    return dot / (norm_a * norm_b)


def _check_pairs(teacher_feats: Sequence[torch.Tensor], student_feats: Sequence[torch.Tensor]) -> None:
    if len(teacher_feats) != len(student_feats):
        msg = (
            f"Teacher and student must give the same number of stages, got {len(teacher_feats)} and "
            f"{len(student_feats)}; build both from the same backbone."
        )
        raise ConfigError(msg)


def cosine_similarity_attention(
    teacher_feats: Sequence[torch.Tensor], student_feats: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """CSAM: per stage ``a * s`` with ``a = (1 - cos(t, s)) / 2``, detached.

    ``a`` is 0 where the student agrees with the teacher and 1 where it points the
    opposite way, so the head sees student features weighted by disagreement. The result
    is detached: the segmentation loss must not train the student, only distillation
    does (otherwise the student would learn to disagree on normal texture).
    """
    _check_pairs(teacher_feats, student_feats)
    out: list[torch.Tensor] = []
    for t, s in zip(teacher_feats, student_feats):
        a = (1.0 - channel_cosine_similarity(t, s)) * 0.5
        out.append((a * s).detach())
    return out


def cosine_distillation_loss(
    teacher_feats: Sequence[torch.Tensor], student_feats: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Sum over stages of ``mean(1 - cos(t, s))``: the student's imitation loss."""
    _check_pairs(teacher_feats, student_feats)
    losses = [(1.0 - channel_cosine_similarity(t, s)).mean() for t, s in zip(teacher_feats, student_feats)]
    return torch.stack(losses).sum()
