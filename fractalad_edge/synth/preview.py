"""A PNG contact sheet of generated samples, to look at what the anomaly generator makes."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import cv2
import numpy as np

from fractalad_edge.errors import InvalidInputError
from fractalad_edge.synth.anomaly import AnomalySample

__all__ = ["preview_grid", "save_preview"]

_GAP = 4  # pixels of grey between tiles, so masks and images do not run together
_GAP_VALUE = 128


def preview_grid(samples: Sequence[AnomalySample]) -> np.ndarray:
    """The RGB grid: one column per sample, rows clean | augmented | mask (white = anomaly)."""
    if not samples:
        msg = "save_preview needs at least one AnomalySample, got an empty list."
        raise InvalidInputError(msg)
    size = samples[0].clean.shape[:2]
    for i, sample in enumerate(samples):
        if sample.clean.shape[:2] != size or sample.augmented.shape[:2] != size or sample.mask.shape != size:
            msg = (
                f"all samples in a preview must share one size; sample 0 is {size}, sample {i} has clean "
                f"{sample.clean.shape}, augmented {sample.augmented.shape}, mask {sample.mask.shape}."
            )
            raise InvalidInputError(msg)
    h, w = size
    n = len(samples)
    grid = np.full((3 * h + 4 * _GAP, n * w + (n + 1) * _GAP, 3), _GAP_VALUE, dtype=np.uint8)
    for j, sample in enumerate(samples):
        mask = np.repeat((np.clip(sample.mask, 0.0, 1.0) * 255).astype(np.uint8)[..., None], 3, axis=2)
        x = _GAP + j * (w + _GAP)
        for i, tile in enumerate((sample.clean, sample.augmented, mask)):
            y = _GAP + i * (h + _GAP)
            grid[y : y + h, x : x + w] = tile
    return grid


def save_preview(samples: list[AnomalySample], path: str | PathLike[str]) -> None:
    """Write :func:`preview_grid` as a PNG (OpenCV, so the RGB tiles are flipped to BGR)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(preview_grid(samples), cv2.COLOR_RGB2BGR)):
        msg = f"OpenCV could not write the preview to {path}; use a .png path in a writable folder."
        raise InvalidInputError(msg)
