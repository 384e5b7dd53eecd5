"""What the nearest-neighbour memory branch costs: its bank's size as stored, read from the artifact.

A ``memory`` or ``fused`` model carries a bank of ``rows x channels`` patch vectors
(models/memory.py) in its weights file. Its size is read from that file's safetensors
header (shape, dtype and byte span of ``memory.bank``), so the report shows what is stored,
not what a float32 guess would make it. Torch-free: the header is JSON behind an 8-byte length.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fractalad_edge.artifact import ArtifactMetadata, ModelFormat
from fractalad_edge.errors import ArtifactError
from fractalad_edge.method import Method

#: the bank's name in the state dict (``FractalAD.memory`` -> ``MemoryBranch.bank``)
BANK_TENSOR = "memory.bank"

#: the safetensors header is JSON; a header larger than this is not one this SDK wrote
_MAX_HEADER_BYTES = 100 * 2**20


@dataclass(frozen=True, kw_only=True)
class MemoryBankSize:
    """The memory bank as stored: ``rows x channels`` of ``dtype`` (safetensors' name, e.g. ``"F32"``) in ``bytes``."""

    rows: int
    channels: int
    dtype: str
    bytes: int

    @property
    def mb(self) -> float:
        """Megabytes (1e6 bytes, like the report's model size)."""
        return self.bytes / 1e6

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "channels": self.channels, "dtype": self.dtype, "bytes": self.bytes, "mb": self.mb}


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: per tensor its ``dtype``, ``shape`` and ``data_offsets``."""
    with Path(path).open("rb") as file:
        prefix = file.read(8)
        length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
        if not 0 < length <= _MAX_HEADER_BYTES:
            msg = f"{path} is not a safetensors file (its 8-byte header length is missing or {length}); re-export or retrain the run"
            raise ArtifactError(msg)
        raw = file.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict):
        msg = f"{path} has an unreadable safetensors header; re-export or retrain the run"
        raise ArtifactError(msg)
    return header


def memory_bank_size(directory: Path, metadata: ArtifactMetadata) -> MemoryBankSize | None:
    """The bank of a ``memory``/``fused`` torch artifact as its weights file stores it; None for ``fractalad``."""
    if metadata.method is Method.FRACTALAD:
        return None
    if metadata.format is not ModelFormat.TORCH:
        msg = f"the memory bank's size is read from a torch artifact (a training run directory), got a {metadata.format.value} one"
        raise ArtifactError(msg)
    path = metadata.model_file(Path(directory), ".safetensors")
    entry = safetensors_header(path).get(BANK_TENSOR)
    shape = entry.get("shape") if isinstance(entry, dict) else None
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if (
        not isinstance(shape, list) or len(shape) != 2 or not all(isinstance(v, int) for v in shape)
        or not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(v, int) for v in offsets)
        or not isinstance(entry.get("dtype"), str)
    ):
        msg = f"{path} holds no {BANK_TENSOR!r} matrix, though the metadata says {metadata.method.value!r}; rebuild the memory"
        raise ArtifactError(msg)
    memory = metadata.memory
    rows, channels = shape
    if memory is not None and rows != memory.size:
        msg = f"{path} stores a memory of {rows} rows but metadata.json says {memory.size}; rebuild the memory"
        raise ArtifactError(msg)
    stored = offsets[1] - offsets[0]
    if stored <= 0 or stored % max(1, math.prod(shape)):
        msg = f"{path}: {BANK_TENSOR!r} spans {stored} bytes, not a whole number per element of {shape}; rebuild the memory"
        raise ArtifactError(msg)
    return MemoryBankSize(rows=rows, channels=channels, dtype=entry["dtype"], bytes=stored)


__all__ = ["BANK_TENSOR", "MemoryBankSize", "memory_bank_size", "safetensors_header"]
