"""Resumable training state as safetensors + JSON, never pickle.

``checkpoint.safetensors`` adds the model, the optimizer state and, in its header, the
step and the run's identity for ``--resume``: one file, written to a temporary name,
fsynced and renamed, so a kill mid-write leaves the previous checkpoint whole.
``checkpoint.json`` is a readable copy of that header. The model weights alone (the
``torch`` format) are written by :mod:`fractalad_edge.models.torch_format`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from fractalad_edge.artifact import CHECKPOINT_FILENAME, CHECKPOINT_STATE
from fractalad_edge.errors import CheckpointError
from fractalad_edge.models.torch_format import save_tensors
from fractalad_edge.outputs import atomic_write_text

_STATE_KEY = "fractalad_training_state"  # the checkpoint header entry holding the JSON state


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
    state = json.dumps({"step": step, "param_groups": groups, **extra}, indent=2)
    save_tensors(tensors, directory / CHECKPOINT_FILENAME, metadata={_STATE_KEY: state})
    atomic_write_text(directory / CHECKPOINT_STATE, state + "\n")


def read_training_state(directory: Path) -> dict[str, Any]:
    """The step, optimizer groups and run identity stored in a checkpoint's header (no tensors read)."""
    tensor_path = directory / CHECKPOINT_FILENAME
    if not tensor_path.is_file():
        msg = f"nothing to resume in {directory}: {CHECKPOINT_FILENAME} is missing"
        raise CheckpointError(msg)
    try:
        with safe_open(str(tensor_path), framework="pt") as handle:
            header = handle.metadata() or {}
        if _STATE_KEY in header:
            return json.loads(header[_STATE_KEY])
        # Written before the state moved into the header: only the separate JSON file has it.
        return json.loads((directory / CHECKPOINT_STATE).read_text())
    except (SafetensorError, OSError, json.JSONDecodeError) as exc:
        msg = f"cannot read the checkpoint in {directory} ({exc})"
        raise CheckpointError(msg) from None


def load_training_state(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    state = read_training_state(directory)
    try:
        tensors = load_file(str(directory / CHECKPOINT_FILENAME))
    except (SafetensorError, OSError) as exc:
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
