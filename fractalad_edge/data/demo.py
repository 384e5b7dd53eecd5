"""A small generated inspection dataset that ships with the package, for the demo and tests.

Images of a round machined part (radial gradient, concentric tooling marks, sensor noise,
small pose jitter) in the MVTec AD layout; test defects are scratches and pits with exact
pixel masks. It exists so a fresh install can run train -> eval -> export -> predict end
to end without downloading anything; it says nothing about accuracy on real parts.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fractalad_edge.errors import ConfigError


def render_part(rng: np.random.Generator, size: int) -> np.ndarray:
    """One defect-free part, uint8 (size, size, 3) RGB."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cx = size / 2 + rng.uniform(-0.03, 0.03) * size
    cy = size / 2 + rng.uniform(-0.03, 0.03) * size
    r = np.hypot(xx - cx, yy - cy) / (0.42 * size)
    part = r < 1.0
    rings = 0.5 + 0.5 * np.cos(r * 38.0 + rng.uniform(0, 2 * np.pi))
    base = np.where(part, 150 + 50 * (1 - r) + 12 * rings, 45 + 10 * (yy / size))
    hole = r < 0.25
    base = np.where(hole, 30.0, base)
    tint = np.array([1.0, 0.97, 0.9], dtype=np.float32) * rng.uniform(0.95, 1.05)
    image = base[..., None] * tint + rng.normal(0, 3.0, (size, size, 1))
    return np.clip(image, 0, 255).astype(np.uint8)


def add_defect(image: np.ndarray, rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Draw a scratch or a pit on the part; returns (image, mask uint8 {0,255})."""
    size = image.shape[0]
    mask = np.zeros((size, size), np.uint8)
    angle = rng.uniform(0, 2 * np.pi)
    radius = rng.uniform(0.3, 0.35) * size
    cx, cy = size / 2 + radius * np.cos(angle), size / 2 + radius * np.sin(angle)
    if kind == "scratch":
        length = rng.uniform(0.12, 0.25) * size
        direction = rng.uniform(0, np.pi)
        p0 = (int(cx - length / 2 * np.cos(direction)), int(cy - length / 2 * np.sin(direction)))
        p1 = (int(cx + length / 2 * np.cos(direction)), int(cy + length / 2 * np.sin(direction)))
        cv2.line(mask, p0, p1, 255, thickness=max(2, size // 64))
        shade = -70.0
    elif kind == "pit":
        axes = (int(rng.uniform(0.03, 0.06) * size), int(rng.uniform(0.03, 0.06) * size))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        shade = 60.0
    else:
        msg = f"unknown demo defect {kind!r}; use 'scratch' or 'pit'"
        raise ConfigError(msg)
    out = image.astype(np.float32) + shade * (mask[..., None] / 255.0)
    return np.clip(out, 0, 255).astype(np.uint8), mask


def make_demo_dataset(
    root: str | Path, *, size: int = 128, train: int = 40, test_good: int = 8, test_defect: int = 8, seed: int = 0
) -> Path:
    """Write the demo category in MVTec layout under ``root`` and return its folder."""
    root = Path(root)
    rng = np.random.default_rng(seed)

    def save(path: Path, array: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if array.ndim == 3:
            array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(path), array)

    for i in range(train):
        save(root / "train" / "good" / f"{i:03d}.png", render_part(rng, size))
    for i in range(test_good):
        save(root / "test" / "good" / f"{i:03d}.png", render_part(rng, size))
    for kind in ("scratch", "pit"):
        for i in range(test_defect):
            image, mask = add_defect(render_part(rng, size), rng, kind)
            save(root / "test" / kind / f"{i:03d}.png", image)
            save(root / "ground_truth" / kind / f"{i:03d}_mask.png", mask)
    return root
