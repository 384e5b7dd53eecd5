"""A labelled test set (MVTec layout) read into memory once: images, labels and masks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fractalad_edge.data.datasets import TestSample, find_test_samples
from fractalad_edge.data.images import read_image, read_mask
from fractalad_edge.errors import DatasetError


@dataclass(frozen=True)
class TestSet:
    samples: list[TestSample]
    images: list[np.ndarray]  # RGB at stored size
    masks: np.ndarray  # bool (N, S, S) at model size


def load_test_set(root: str | Path, size: int) -> TestSet:
    """Read every test image and mask once; masks are resized to the model's map size."""
    samples = find_test_samples(root)
    images, masks = [], []
    for sample in samples:
        image = read_image(sample.image_path)
        images.append(image)
        if sample.mask_path is None:
            masks.append(np.zeros((size, size), dtype=bool))
        else:
            mask = read_mask(sample.mask_path, expected_shape=image.shape[:2]).astype(np.uint8)
            masks.append(cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST) > 0)
    return TestSet(samples=samples, images=images, masks=np.stack(masks))


def spread_subset(test_set: TestSet, limit: int | None) -> TestSet:
    """An evenly spread subset (good first, then each defect type), keeping both classes."""
    total = len(test_set.samples)
    if limit is None or limit >= total:
        return test_set
    indices = sorted(set(np.linspace(0, total - 1, limit).round().astype(int).tolist()))
    labels = [test_set.samples[i].label for i in indices]
    if 0 not in labels or 1 not in labels:  # pragma: no cover - linspace over good-then-defects keeps both ends
        msg = f"max_test_images={limit} leaves only one class; raise it"
        raise DatasetError(msg)
    return TestSet(
        samples=[test_set.samples[i] for i in indices],
        images=[test_set.images[i] for i in indices],
        masks=test_set.masks[indices],
    )
