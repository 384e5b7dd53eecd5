"""FractalAD networks: backbones by name, CSAM, the semantic-flow head and the full model.

Training code and exporters import from here; runtimes never do (no torch there).
"""

from __future__ import annotations

from fractalad_edge.models.attention import (
    channel_cosine_similarity,
    cosine_distillation_loss,
    cosine_similarity_attention,
)
from fractalad_edge.models.backbones import (
    BACKBONES,
    Backbone,
    BackboneSpec,
    build_backbone,
    get_backbone_spec,
    register_backbone,
)
from fractalad_edge.models.fractalad import FractalAD, ModelConfig, build_model
from fractalad_edge.models.head import SemanticFlowHead

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneSpec",
    "FractalAD",
    "ModelConfig",
    "SemanticFlowHead",
    "build_backbone",
    "build_model",
    "channel_cosine_similarity",
    "cosine_distillation_loss",
    "cosine_similarity_attention",
    "get_backbone_spec",
    "register_backbone",
]
