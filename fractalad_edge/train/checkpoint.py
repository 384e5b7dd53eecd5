"""Resumable training state as safetensors + JSON, never pickle.

``checkpoint.safetensors`` + ``checkpoint.json`` hold the model, the optimizer state and
the step for ``--resume``. The model weights alone (the ``torch`` format) are written by
:mod:`fractalad_edge.models.torch_format`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fractalad_edge.errors import CheckpointError

CHECKPOINT_FILENAME = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"


def save_training_state(
    directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, step: int, extra: dict[str, Any]
) -> None:
    tensors = {f"model.{k}": v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    groups = []
    for group_index, group in enumerate(optimizer.param_groups):
        groups.append({k: v for k, v in group.items() if k != "params"})
        for param_index, param in enumerate(group["params"]):
            for name, value in optimizer.state.get(param, {}).items():
                tensor = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"optim.{group_index}.{param_index}.{name}"] = tensor.detach().to("cpu").contiguous()
    tmp = directory / (CHECKPOINT_FILENAME + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(directory / CHECKPOINT_FILENAME)
    (directory / CHECKPOINT_STATE).write_text(json.dumps({"step": step, "param_groups": groups, **extra}, indent=2))


def load_training_state(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    state_path = directory / CHECKPOINT_STATE
    tensor_path = directory / CHECKPOINT_FILENAME
    if not state_path.is_file() or not tensor_path.is_file():
        msg = f"nothing to resume in {directory}: {CHECKPOINT_FILENAME} and {CHECKPOINT_STATE} are needed"
        raise CheckpointError(msg)
    try:
        tensors = load_file(str(tensor_path))
        state = json.loads(state_path.read_text())
    except (SafetensorError, OSError, json.JSONDecodeError) as exc:
        msg = f"cannot read the checkpoint in {directory} ({exc})"
        raise CheckpointError(msg) from None
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_state, strict=True)
    except RuntimeError as exc:
        msg = f"the checkpoint in {directory} belongs to another model configuration ({str(exc).splitlines()[0]})"
        raise CheckpointError(msg) from None
    for group_index, group in enumerate(optimizer.param_groups):
        group.update(state["param_groups"][group_index])
        for param_index, param in enumerate(group["params"]):
            prefix = f"optim.{group_index}.{param_index}."
            entries = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            if entries:
                optimizer.state[param] = {k: v.to(param.device) if k != "step" else v for k, v in entries.items()}
    return state
