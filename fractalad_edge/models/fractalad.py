"""The FractalAD network: frozen teacher, distilled student, CSAM, semantic-flow head.

One forward pass maps a normalised image to a per-pixel anomaly map, in the space
:attr:`FractalAD.output_space` names (the head's logits by default; fractalad_edge/score_space.py);
that forward is what gets exported. Training-only work (distillation loss, the augmented
batch) lives in :meth:`FractalAD.training_step_outputs` so the exported graph holds
nothing but inference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fractalad_edge.errors import ConfigError, InvalidInputError
from fractalad_edge.models.attention import cosine_distillation_loss, cosine_similarity_attention
from fractalad_edge.models.backbones import Backbone, BackboneSpec, build_backbone, get_backbone_spec
from fractalad_edge.models.head import SemanticFlowHead
from fractalad_edge.method import MemoryConfig, Method, parse_method
from fractalad_edge.models.memory import MemoryBranch, fuse_maps
from fractalad_edge.score_space import ScoreSpace, check_space, default_space, parse_space

__all__ = ["FractalAD", "ModelConfig", "build_model"]

_MIN_INPUT_SIZE = 64
_MAX_HEAD_CHANNELS = 1024


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Architecture of a FractalAD model; saved with checkpoints and exported artifacts.

    ``head_channels`` is the head width C. The paper suggests the first stage's width (24 for
    Lite0) or wider. 32 is the default, measured against 64 on MVTec bottle
    (docs/experiments/head-width.md): the same accuracy within the step-to-step spread of a run, and
    1.16x (torch) to 1.38x (OpenVINO) faster inference, because the head's
    stride-4 convolutions scale with C squared.
    ``distillation=False`` is texture mode: the head reads teacher features directly and
    there is no student.
    ``method``: ``fractalad`` (the head; output its logits, or ``sigmoid(logits)``: see
    :attr:`FractalAD.output_space`), ``memory`` (the
    nearest-neighbour branch alone, no student or head; output: distances) or ``fused``
    (both on one teacher pass; output: the fused normalised map). ``memory`` describes the
    branch (needed by ``memory`` and ``fused``).
    """

    backbone: str = "efficientnet_lite0"
    input_size: int = 256
    head_channels: int = 32
    distillation: bool = True
    method: Method = Method.FRACTALAD
    memory: MemoryConfig | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, str):
            msg = f"backbone must be a backbone name (str), got {self.backbone!r}."
            raise ConfigError(msg)
        spec = get_backbone_spec(self.backbone)
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, int):
            msg = f"input_size must be an int, got {self.input_size!r} ({type(self.input_size).__name__})."
            raise ConfigError(msg)
        if self.input_size < _MIN_INPUT_SIZE or self.input_size % spec.max_stride:
            msg = (
                f"input_size must be a multiple of {spec.max_stride} and >= {_MIN_INPUT_SIZE}, got {self.input_size}; "
                f"e.g. 256."
            )
            raise ConfigError(msg)
        if isinstance(self.head_channels, bool) or not isinstance(self.head_channels, int):
            msg = f"head_channels must be an int, got {self.head_channels!r} ({type(self.head_channels).__name__})."
            raise ConfigError(msg)
        if not 1 <= self.head_channels <= _MAX_HEAD_CHANNELS:
            msg = f"head_channels must be in [1, {_MAX_HEAD_CHANNELS}], got {self.head_channels}; e.g. 32."
            raise ConfigError(msg)
        if not isinstance(self.distillation, bool):
            msg = f"distillation must be True or False, got {self.distillation!r}."
            raise ConfigError(msg)
        object.__setattr__(self, "method", parse_method(self.method))
        if isinstance(self.memory, Mapping):
            object.__setattr__(self, "memory", MemoryConfig.from_dict(self.memory))
        if (self.method is Method.FRACTALAD) != (self.memory is None):
            msg = (
                f"method {self.method.value!r} {'takes no' if self.memory is not None else 'needs a'} memory config; "
                "build memory models with 'fractalad-edge train --method memory|fused'."
            )
            raise ConfigError(msg)

    @property
    def has_head(self) -> bool:
        """Whether the FractalAD head (and student) are part of the model."""
        return self.method is not Method.MEMORY

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; a ``fractalad`` config stays what older versions wrote."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("method", "memory")}
        if self.method is not Method.FRACTALAD:
            data["method"] = self.method.value
            data["memory"] = self.memory.to_dict() if self.memory is not None else None
        return data

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused so typos do not pass silently."""
        if not isinstance(d, Mapping):
            msg = f"ModelConfig.from_dict needs a mapping, got {type(d).__name__}."
            raise ConfigError(msg)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            msg = f"Unknown ModelConfig keys {unknown}; allowed keys: {sorted(known)}."
            raise ConfigError(msg)
        return cls(**d)


class FractalAD(nn.Module):
    """Teacher/student/CSAM/head. Input: normalised ``(B, 3, S, S)``; output: anomaly map ``(B, 1, S, S)``.

    The teacher is frozen and always in eval mode (``train()`` cannot change that), so its
    BatchNorm statistics stay the ImageNet ones the features were learnt with.

    :attr:`output_space` is what :meth:`forward` (the exported graph) returns: for a
    ``fractalad`` model the head's ``logit`` map (the default: it keeps its spread, see
    fractalad_edge/score_space.py) or its ``sigmoid``; ``memory`` and ``fused`` models have one
    space each. It is not part of :class:`ModelConfig`: the weights are the same either way,
    and an artifact records it in ``metadata.json`` as ``score.space``.
    """

    teacher: Backbone
    student: Backbone | None

    def __init__(
        self, config: ModelConfig, *, pretrained_teacher: bool = True, weights_path: str | Path | None = None
    ) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            msg = f"config must be a ModelConfig, got {type(config).__name__}; use ModelConfig.from_dict(...)."
            raise ConfigError(msg)
        self.config = config
        self.teacher = build_backbone(
            config.backbone, pretrained=pretrained_teacher, input_size=config.input_size, weights_path=weights_path
        )
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.student = (
            build_backbone(config.backbone, pretrained=False, input_size=config.input_size)
            if config.distillation and config.has_head
            else None
        )
        spec = self.teacher.spec
        self.head = (
            SemanticFlowHead(
                in_channels=spec.stage_channels,
                strides=spec.strides,
                channels=config.head_channels,
                input_size=config.input_size,
            )
            if config.has_head
            else None
        )
        self.memory = (
            MemoryBranch(config.memory, stage_channels=spec.stage_channels, stage_strides=spec.strides, input_size=config.input_size)
            if config.memory is not None
            else None
        )
        self._output_space = default_space(config.method)

    @property
    def output_space(self) -> ScoreSpace:
        """The space of :meth:`forward`'s map (see the class docstring)."""
        return self._output_space

    @output_space.setter
    def output_space(self, space: ScoreSpace | str) -> None:
        self._output_space = check_space(self.config.method, parse_space(space))

    @property
    def spec(self) -> BackboneSpec:
        """The backbone spec: mean/std the input must be normalised with."""
        return self.teacher.spec

    def train(self, mode: bool = True) -> FractalAD:
        """Switch student and head; the teacher stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def _check_input(self, x: torch.Tensor) -> None:
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return  # exporters fix shapes from the example input; a Python check would only add guards
        size = self.config.input_size
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != size or x.shape[3] != size:
            msg = (
                f"FractalAD expects a normalised (B, 3, {size}, {size}) tensor, got shape {tuple(x.shape)}; "
                "resize to the model's input_size and normalise with model.spec.mean/std first."
            )
            raise InvalidInputError(msg)

    def _head_logits(self, x: torch.Tensor, teacher_feats: list[torch.Tensor]) -> torch.Tensor:
        if self.head is None:
            msg = "this model has no FractalAD head (method 'memory'); use forward() or branch_maps()"
            raise ConfigError(msg)
        if self.student is None:
            return self.head(teacher_feats)
        return self.head(cosine_similarity_attention(teacher_feats, self.student(x)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Anomaly logits ``(B, 1, S, S)`` for a normalised ``(B, 3, S, S)`` input."""
        self._check_input(x)
        return self._head_logits(x, self.teacher(x))

    def branch_maps(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(head logits, memory distances)``, each ``(B, 1, S, S)`` or None, from one teacher pass."""
        self._check_input(x)
        teacher_feats = self.teacher(x)
        logits = self._head_logits(x, teacher_feats) if self.head is not None else None
        distances = self.memory(teacher_feats) if self.memory is not None else None
        return logits, distances

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The anomaly map: the exported inference graph.

        ``fractalad``: the logits, or ``sigmoid(logits)`` in [0, 1] (:attr:`output_space`);
        ``memory``: nearest-neighbour distances; ``fused``: the fused normalised map
        (models/memory.py, ``fuse_maps``).
        """
        logits, distances = self.branch_maps(x)
        if distances is None:
            return logits if self._output_space is ScoreSpace.LOGIT else torch.sigmoid(logits)
        if logits is None:
            return distances
        return fuse_maps(logits, distances, self.config.memory)

    def training_step_outputs(self, clean: torch.Tensor, augmented: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits on augmented (B,1,S,S), distillation loss)`` for one training batch.

        The teacher runs once, without grad, on clean and augmented together. The student
        runs with grad on the clean images only (that is all distillation needs) and
        without grad on the augmented ones, whose CSAM output is detached anyway. The
        distillation loss is a zero tensor in texture mode.
        """
        self._check_input(clean)
        self._check_input(augmented)
        if self.head is None:
            msg = "a 'memory' model has no head to train; build it with fractalad_edge.train.memory.build_memory"
            raise ConfigError(msg)
        if clean.shape != augmented.shape:
            msg = f"clean and augmented batches must have the same shape, got {tuple(clean.shape)} and {tuple(augmented.shape)}."
            raise InvalidInputError(msg)
        if self.student is None:
            with torch.no_grad():
                teacher_aug = self.teacher(augmented)
            return self.head(teacher_aug), torch.zeros((), device=clean.device, dtype=clean.dtype)
        batch = clean.shape[0]
        with torch.no_grad():
            teacher_both = self.teacher(torch.cat([clean, augmented], dim=0))
        teacher_clean = [f[:batch] for f in teacher_both]
        teacher_aug = [f[batch:] for f in teacher_both]
        distill = cosine_distillation_loss(teacher_clean, self.student(clean))
        with torch.no_grad():
            student_aug = self.student(augmented)
        logits = self.head(cosine_similarity_attention(teacher_aug, student_aug))
        return logits, distill

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Student and head tensors only (``student.*``, ``head.*``): the part training changes.

        A small file, but restoring it needs the same teacher weights file again. For
        checkpoints and export prefer the full ``state_dict()``: self-contained, and it
        loads into ``FractalAD(config, pretrained_teacher=False)`` with no weights file.
        """
        return {k: v for k, v in self.state_dict().items() if not k.startswith(("teacher.", "memory."))}


def build_model(
    config: ModelConfig, *, pretrained_teacher: bool = True, weights_path: str | Path | None = None
) -> FractalAD:
    """Keyword-only builder (torchvision style) for :class:`FractalAD`."""
    return FractalAD(config, pretrained_teacher=pretrained_teacher, weights_path=weights_path)
