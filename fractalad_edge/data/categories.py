"""Per-category defaults for the MVTec AD categories.

FractalAD switches two things per category (the paper, arXiv 2301.12739): texture categories train
without distillation (the head reads the frozen teacher directly), and small objects on
a plain background use constrained "object placement" when pasting synthetic anomalies.
For the 15 MVTec AD categories those choices are known; any other dataset (for example
magnetic_tile, or a customer's own part) is "unknown" and gets distillation on and free
placement, which users override with explicit flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from fractalad_edge.errors import ConfigError

__all__ = [
    "MVTEC_AD_CATEGORIES",
    "OBJECT_CATEGORIES",
    "OBJECT_PLACEMENT_CATEGORIES",
    "TEXTURE_CATEGORIES",
    "CategoryDefaults",
    "category_defaults",
    "default_distillation",
    "default_method",
    "default_object_placement",
]

OBJECT_CATEGORIES: tuple[str, ...] = (
    "bottle",
    "cable",
    "capsule",
    "hazelnut",
    "metal_nut",
    "pill",
    "screw",
    "toothbrush",
    "transistor",
    "zipper",
)
"""MVTec AD object categories: distillation on."""

TEXTURE_CATEGORIES: tuple[str, ...] = ("carpet", "grid", "leather", "tile", "wood")
"""MVTec AD texture categories: distillation off (the head reads the teacher directly)."""

OBJECT_PLACEMENT_CATEGORIES: tuple[str, ...] = ("capsule", "pill", "screw", "toothbrush", "zipper")
"""Objects small against a plain background: synthetic anomalies are placed on the object."""

MVTEC_AD_CATEGORIES: tuple[str, ...] = tuple(sorted(OBJECT_CATEGORIES + TEXTURE_CATEGORIES))
"""All 15 MVTec AD category names, sorted."""


@dataclass(frozen=True, kw_only=True)
class CategoryDefaults:
    """Training switches for one category, and whether they come from a known category."""

    distillation: bool
    object_placement: bool
    known: bool

    def __post_init__(self) -> None:
        for name in ("distillation", "object_placement", "known"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                msg = f"CategoryDefaults.{name} must be a bool, got {value!r} ({type(value).__name__})."
                raise ConfigError(msg)


def _normalise(category: str) -> str:
    if not isinstance(category, str):
        msg = f"A category name must be a string, got {category!r} ({type(category).__name__})."
        raise ConfigError(msg)
    return category.strip().lower().replace("-", "_")


def default_distillation(category: str) -> bool:
    """False for the MVTec AD textures, True otherwise (unknown names included)."""
    return _normalise(category) not in TEXTURE_CATEGORIES


def default_object_placement(category: str) -> bool:
    """True for capsule, pill, screw, toothbrush and zipper, False otherwise (unknown names included)."""
    return _normalise(category) in OBJECT_PLACEMENT_CATEGORIES


def default_method(category: str) -> str:
    """``fractalad`` for the MVTec AD objects, ``memory`` for textures and unknown names.

    Measured (docs/experiments/memory-method.md): on magnetic tile (a texture, unknown here)
    FractalAD stays at image AUROC 72-76 and the training-free memory reaches 95; on bottle
    both reach 100. Objects keep the paper's method; ``--method fused`` adds the memory.
    """
    return "fractalad" if _normalise(category) in OBJECT_CATEGORIES else "memory"


def category_defaults(name: str) -> CategoryDefaults:
    """Both defaults for a category name (case and '-' vs '_' do not matter)."""
    key = _normalise(name)
    return CategoryDefaults(
        distillation=default_distillation(key),
        object_placement=default_object_placement(key),
        known=key in MVTEC_AD_CATEGORIES,
    )
