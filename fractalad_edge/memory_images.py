"""Which images built a model's memory: content hashes stored in the artifact.

A ``memory`` or ``fused`` model's distances are near zero on the images its memory was
built from, so thresholds fitted on them sit far below real good parts (on magnetic tile,
61 % false alarms instead of 15 %: docs/experiments/memory-method.md). The build writes
the hashes of those images to :data:`MEMORY_IMAGES_FILENAME`, listed (and sha256-checked)
in ``metadata.json`` ``files``; every export carries it, and ``calibrate`` drops normal
images found in it, wherever they sit on disk.

A separate file rather than a metadata field: ``metadata.json`` stays short and readable
with thousands of images, and readers that predate the file still load the artifact (it
is one more listed file to them), so the schema version is unchanged.

A hash is the first :data:`DIGEST_HEX_DIGITS` hex digits of the sha256 of the file's
bytes (64 bits: no accidental collision among millions of images). A re-encoded copy of
an image (another format, stripped metadata) has other bytes and is not recognised.

numpy-free and torch-free, like artifact.py: ``calibrate`` runs on edge devices.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fractalad_edge.artifact import ArtifactMetadata, resolve_inside
from fractalad_edge.errors import ArtifactError

#: the file inside an artifact directory (a ``memory`` or ``fused`` model only)
MEMORY_IMAGES_FILENAME = "memory_images.json"
DIGEST_HEX_DIGITS = 16
#: what the file's "digest" says, so a later change of hash can be told apart
DIGEST_NAME = f"sha256[:{DIGEST_HEX_DIGITS}] of the file bytes"


def image_digest(path: str | Path) -> str:
    """The content hash of one image file (its bytes, not its decoded pixels)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:DIGEST_HEX_DIGITS]


def write_memory_images(directory: str | Path, paths: Sequence[str | Path]) -> str:
    """Write the hashes of ``paths`` (the images whose patches went into the memory); the file's name."""
    from fractalad_edge.outputs import atomic_write_text

    digests = sorted({image_digest(p) for p in paths})
    record = {"digest": DIGEST_NAME, "count": len(digests), "images": digests}
    atomic_write_text(Path(directory) / MEMORY_IMAGES_FILENAME, json.dumps(record, indent=0) + "\n")
    return MEMORY_IMAGES_FILENAME


def listed_memory_images(metadata: ArtifactMetadata) -> str | None:
    """The memory-images file ``metadata`` lists (None: not recorded, e.g. an artifact built before it was)."""
    return next((f.path for f in metadata.files if f.path == MEMORY_IMAGES_FILENAME), None)


def read_memory_images(directory: str | Path, metadata: ArtifactMetadata) -> frozenset[str] | None:
    """The hashes of the images in the memory; None where the artifact does not record them.

    The file's sha256 is checked by :func:`~fractalad_edge.artifact.read_metadata`
    (``verify=True``) like every listed file; here its content is validated.
    """
    listed = listed_memory_images(metadata)
    if listed is None:
        return None
    path = resolve_inside(Path(directory), listed)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        msg = f"{path} cannot be read as the memory's image hashes ({exc}); copy the model directory again or re-export it"
        raise ArtifactError(msg) from None
    images = record.get("images") if isinstance(record, dict) else None
    if (
        not isinstance(record, dict)
        or record.get("digest") != DIGEST_NAME
        or not isinstance(images, list)
        or not all(isinstance(d, str) and re.fullmatch(f"[0-9a-f]{{{DIGEST_HEX_DIGITS}}}", d) for d in images)
        or record.get("count") != len(images)
    ):
        msg = (
            f"{path} is not a memory image list of this version (expected {{'digest': {DIGEST_NAME!r}, 'count': N, "
            "'images': [N hex digests]}); re-export the model, or upgrade fractalad-edge if a newer one wrote it"
        )
        raise ArtifactError(msg)
    return frozenset(images)


def memory_paths_of_run(config: Mapping[str, Any]) -> list[Path] | None:
    """The images a memory build's run config (its config.json) says went into the memory.

    Its ``data`` folder's training images minus ``holdout``: how a run built before
    :data:`MEMORY_IMAGES_FILENAME` existed is still told apart. None when the config is no
    memory build's (no ``holdout``) or its folder is gone.
    """
    from fractalad_edge.data.datasets import find_training_images

    data, holdout = config.get("data"), config.get("holdout")
    if not isinstance(data, str) or not isinstance(holdout, list) or not holdout or not Path(data).is_dir():
        return None
    held_out = {Path(p).resolve() for p in holdout if isinstance(p, str)}
    return [p for p in find_training_images(data) if p.resolve() not in held_out]


def split_memory_images(paths: Iterable[Path], digests: frozenset[str]) -> tuple[list[Path], list[Path]]:
    """``(kept, in_memory)``: the images whose content is not in ``digests``, and those that are."""
    kept: list[Path] = []
    in_memory: list[Path] = []
    for path in paths:
        (in_memory if image_digest(path) in digests else kept).append(path)
    return kept, in_memory


__all__ = [
    "DIGEST_HEX_DIGITS",
    "MEMORY_IMAGES_FILENAME",
    "image_digest",
    "listed_memory_images",
    "memory_paths_of_run",
    "read_memory_images",
    "split_memory_images",
    "write_memory_images",
]
