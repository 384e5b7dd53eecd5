"""Datasets and image reading (numpy + OpenCV only, usable on devices without torch)."""

from __future__ import annotations

from fractalad_edge.data.categories import (
    MVTEC_AD_CATEGORIES,
    OBJECT_CATEGORIES,
    OBJECT_PLACEMENT_CATEGORIES,
    TEXTURE_CATEGORIES,
    CategoryDefaults,
    category_defaults,
    default_distillation,
    default_object_placement,
)
from fractalad_edge.data.datasets import GOOD, TestSample, category_name, find_test_samples, find_training_images
from fractalad_edge.data.images import IMAGE_SUFFIXES, read_image, read_image_bgr, read_mask, to_uint8_rgb

__all__ = [
    "GOOD",
    "IMAGE_SUFFIXES",
    "MVTEC_AD_CATEGORIES",
    "OBJECT_CATEGORIES",
    "OBJECT_PLACEMENT_CATEGORIES",
    "TEXTURE_CATEGORIES",
    "CategoryDefaults",
    "TestSample",
    "category_defaults",
    "category_name",
    "default_distillation",
    "default_object_placement",
    "find_test_samples",
    "find_training_images",
    "read_image",
    "read_image_bgr",
    "read_mask",
    "to_uint8_rgb",
]
