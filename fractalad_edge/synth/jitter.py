"""Colour jitter in numpy/OpenCV with torchvision ``ColorJitter`` semantics.

The synthetic-anomaly pipeline runs at training *and* at export/calibration time, where torch
may be absent, so this re-implements torchvision's jitter without it:

* each of ``brightness``, ``contrast``, ``saturation`` ``b`` draws a factor from
  ``U[max(0, 1 - b), 1 + b]`` (0 switches the operation off), ``hue`` ``h`` draws a shift from
  ``U[-h, h]`` (in turns, ``h <= 0.5``);
* the four operations run in a random order (a random permutation, as torchvision does);
* brightness blends with black, contrast with the mean grey level of the image, saturation
  with the pixel's own grey level (ITU-R 601-2 weights 0.2989, 0.587, 0.114), hue rotates the
  HSV hue; every operation clamps to ``[0, 255]``.

One deliberate difference: torchvision truncates to uint8 after every operation on uint8
tensors; here the chain runs in float32 and rounds once at the end (less quantisation error,
otherwise the same maths).

Sampling (:meth:`ColorJitter.sample`) is separate from application (:func:`apply_jitter`) so
that the *same* jitter can be applied to several images (the clean and the augmented image of
one training sample).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from fractalad_edge.errors import ConfigError, InvalidInputError

__all__ = ["ColorJitter", "JitterParams", "apply_jitter"]

_GREY_WEIGHTS = np.array([0.2989, 0.587, 0.114], dtype=np.float32)

BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3


@dataclass(frozen=True)
class JitterParams:
    """One drawn jitter: the operation order and each factor (``None`` = operation off)."""

    order: tuple[int, ...] = (BRIGHTNESS, CONTRAST, SATURATION, HUE)
    brightness: float | None = None
    contrast: float | None = None
    saturation: float | None = None
    hue: float | None = None


@dataclass(frozen=True, kw_only=True)
class ColorJitter:
    """Ranges of a torchvision-style colour jitter; 0 switches an operation off."""

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                msg = f"ColorJitter.{name} must be a finite number >= 0, got {value!r}; use 0 to switch it off."
                raise ConfigError(msg)
        if not (np.isfinite(self.hue) and 0 <= self.hue <= 0.5):
            msg = f"ColorJitter.hue must be in [0, 0.5] (turns of the hue circle), got {self.hue!r}."
            raise ConfigError(msg)

    def sample(self, rng: np.random.Generator) -> JitterParams:
        """Draw the order and factors, as ``torchvision.transforms.ColorJitter.get_params``."""
        order = tuple(int(i) for i in rng.permutation(4))

        def factor(b: float) -> float | None:
            return float(rng.uniform(max(0.0, 1.0 - b), 1.0 + b)) if b > 0 else None

        brightness = factor(self.brightness)
        contrast = factor(self.contrast)
        saturation = factor(self.saturation)
        hue = float(rng.uniform(-self.hue, self.hue)) if self.hue > 0 else None
        return JitterParams(order=order, brightness=brightness, contrast=contrast, saturation=saturation, hue=hue)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Jitter one uint8 RGB image with freshly drawn parameters."""
        return apply_jitter([image], self.sample(rng))[0]


def _grey(image: np.ndarray) -> np.ndarray:
    return image @ _GREY_WEIGHTS


def _adjust_hue(image: np.ndarray, shift: float) -> None:
    """Rotate the hue in place (float32 RGB in [0, 255])."""
    # cv2's float HSV keeps V in the input's units and H in degrees; HSV2RGB wraps hues of
    # 360 and more (not negative ones), so the shift is taken modulo one turn first.
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hue = hsv[..., 0]
    hue += np.float32((shift % 1.0) * 360.0)
    cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB, dst=image)


def apply_jitter(images: Sequence[np.ndarray], params: JitterParams) -> list[np.ndarray]:
    """Apply one drawn jitter to several uint8 RGB images; returns uint8 images.

    The first image is the reference: its mean grey level (at the point in the chain where
    contrast runs) is the contrast pivot for *all* images. With a shared pivot the jitter is a
    per-pixel function, so pixels equal before the jitter stay equal after it, which keeps a
    clean image and its augmented copy identical outside the anomaly mask.
    """
    if not images:
        return []
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"dtype {image.dtype}, shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            msg = (
                f"apply_jitter expects uint8 (H, W, 3) RGB images, image {i} has {got}; "
                "convert with np.asarray(img, np.uint8) and drop/add channels first."
            )
            raise InvalidInputError(msg)
    # float32 working copies, updated in place (large temporaries are slow to allocate).
    work = [image.astype(np.float32) for image in images]
    for op in params.order:
        if op == BRIGHTNESS and params.brightness is not None:
            for w in work:
                w *= np.float32(params.brightness)
                np.clip(w, 0.0, 255.0, out=w)
        elif op == CONTRAST and params.contrast is not None:
            f = np.float32(params.contrast)
            pivot = np.float32(_grey(work[0]).mean()) if work[0].size else np.float32(0.0)
            offset = (np.float32(1.0) - f) * pivot
            for w in work:
                w *= f
                w += offset
                np.clip(w, 0.0, 255.0, out=w)
        elif op == SATURATION and params.saturation is not None:
            f = np.float32(params.saturation)
            for w in work:
                grey = _grey(w)
                grey *= np.float32(1.0) - f
                w *= f
                w += grey[..., None]
                np.clip(w, 0.0, 255.0, out=w)
        elif op == HUE and params.hue is not None and params.hue != 0.0:
            for w in work:
                if w.size:
                    _adjust_hue(w, params.hue)
                    np.clip(w, 0.0, 255.0, out=w)
    out = []
    for w in work:
        np.rint(w, out=w)
        out.append(w.astype(np.uint8))
    return out
