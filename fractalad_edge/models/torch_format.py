"""The ``torch`` format: the FractalAD state dict as safetensors, plus its metadata.

``model.safetensors`` holds the full state dict (teacher included), so a directory with it
and ``metadata.json`` is a self-contained ``torch`` artifact: a training run directory is
one. Training writes it, the torch runtime and every exporter read it through
:func:`load_model`; nothing needs training code to read a model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fractalad_edge.artifact import (
    MODEL_FILENAME,
    ArtifactMetadata,
    InputSpec,
    ModelFormat,
    Precision,
    ScoreSpec,
    describe_files,
    now_iso,
    package_version,
)
from fractalad_edge.errors import CheckpointError
from fractalad_edge.models.fractalad import FractalAD, ModelConfig, build_model
from fractalad_edge.outputs import atomic_replace, temporary_sibling


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write safetensors to a temporary name, fsync and rename: a kill mid-write leaves the old file whole."""
    tmp = temporary_sibling(path)
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        atomic_replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_model(model: torch.nn.Module, path: Path) -> None:
    save_tensors({k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}, path)


def load_model_weights(model: torch.nn.Module, path: Path) -> None:
    """Load strictly; a checkpoint of another configuration is a clear error, not a shape dump."""
    if not path.is_file():
        msg = f"checkpoint not found: {path}"
        raise CheckpointError(msg)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        msg = f"{path} is not a readable safetensors file ({exc})"
        raise CheckpointError(msg) from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong_shape:
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong_shape:
            k = wrong_shape[0]
            details.append(f"{len(wrong_shape)} of another shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)})")
        msg = (
            f"{path} does not fit this model configuration: {'; '.join(details)}. It was trained with another "
            "backbone, head width or distillation setting; use the config.json saved beside it."
        )
        raise CheckpointError(msg)
    model.load_state_dict(state, strict=True)


def input_spec_for(model: FractalAD) -> InputSpec:
    spec = model.teacher.spec
    size = model.config.input_size
    return InputSpec(height=size, width=size, mean=tuple(spec.mean), std=tuple(spec.std))


def torch_metadata(model: FractalAD, score: ScoreSpec, *, directory: Path, category: str) -> ArtifactMetadata:
    """Metadata of a ``torch`` artifact of ``model``; ``score.space`` is the model's output space."""
    return ArtifactMetadata(
        format=ModelFormat.TORCH,
        precision=Precision.FP32,
        runtime="torch",
        model=model.config.to_dict(),
        input=input_spec_for(model),
        score=dataclasses.replace(score, space=model.output_space),
        files=describe_files(directory, [MODEL_FILENAME]),
        category=category,
        package_version=package_version(),
        created=now_iso(),
    )


def build_model_for(metadata: ArtifactMetadata) -> FractalAD:
    """The architecture an artifact's metadata describes, with untrained weights (nothing is read).

    Its :attr:`~FractalAD.output_space` is the artifact's ``score.space`` (``sigmoid`` for a
    ``fractalad`` artifact written before the field existed).
    """
    model = build_model(ModelConfig.from_dict(dict(metadata.model)), pretrained_teacher=False)
    model.output_space = metadata.score_space
    return model


def load_model(directory: Path, metadata: ArtifactMetadata) -> FractalAD:
    """The FractalAD module of a ``torch`` artifact, weights loaded strictly, in eval mode.

    The weights are the ``.safetensors`` file ``metadata.json`` lists, never a guessed name.
    """
    model = build_model_for(metadata)
    load_model_weights(model, metadata.model_file(directory, ".safetensors"))
    return model.eval()
