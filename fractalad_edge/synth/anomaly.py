"""FractalAD's synthetic anomalies: a fractal-shaped patch of the image pasted elsewhere in it.

Only normal images exist at training time, so the segmentation head learns from anomalies
made here, following the paper's fractal anomaly generation (arXiv 2301.12739):

1. work on the image at its stored resolution, ``side = min(h, w)``;
2. plain placement: cut size ``U[0.1, 0.5] * side``, source and target top-left corners
   uniform so the square lies inside the central ``[0.1, 0.9]`` of each axis;
3. object placement (small objects on a plain background): foreground from a blurred grey
   image thresholded against the background level of the top-left corner, the largest
   contour's minimum-area rectangle gives the object's short side ``d``, cut size
   ``U[0.05, 1.5] * d`` (clipped to the image), square centres drawn from foreground pixels
   (squares shifted inward where they would stick out); no usable foreground falls back to
   plain placement and the reason is recorded in :attr:`AnomalySample.placement`;
4. patch appearance, one of three uniformly: mild jitter (0.2 each), strong brightness and
   contrast jitter (1.0), or two random channels scaled by ``2 * U(0, 1)``; then random
   horizontal and vertical flips and a rotation by ``U(15, 75)`` degrees about the centre
   (the rotated square, clipped to the ``cut x cut`` window, is the rotation alpha);
5. a random 2-map IFS fractal rendered into ``cut x cut`` (:mod:`.fractal`);
6. mask = alpha AND fractal, the patch pasted at the target through it;
7. image, augmented image and mask resized to ``image_size`` with
   :func:`fractalad_edge.preprocess.resize_image` (the resize inference uses: area filter
   when shrinking, bilinear when enlarging); an output pixel is in the mask when its
   interpolation footprint holds a pasted source pixel; then the mask is dilated (3x3,
   3 iterations);
8. with probability 0.5, Gaussian noise (sigma 10 grey levels, one value for all channels)
   inside the mask;
9. the same mild jitter (0.05) on the clean and augmented image: same factors, same order and
   the clean image's grey mean as contrast pivot (:func:`.jitter.apply_jitter`).

Choices where the paper leaves room, made for exactness and speed:

* after step 7 the augmented image is taken from the clean one wherever the mask is 0, so
  ``clean == augmented`` holds exactly outside the mask (also after steps 8 and 9); the label
  never misses a changed pixel and never contains interpolation bleed outside it;
* when shrinking, only the output pixels near the pasted square are recomputed, from
  OpenCV's own area weights, instead of resizing the whole augmented image and a full-size
  mask again; the result is OpenCV's to within one grey level, the mask exactly
  ``cv2.resize(mask, INTER_AREA) > 0``;
* the object analysis of step 3 runs on the training-size image when the input is larger
  (the foreground geometry needs no more), the square centres are mapped back to full
  resolution with sub-pixel jitter;
* non-square inputs are resized to the square output, as the training size is square.

All randomness comes from the ``rng`` argument: the same seed gives the same sample.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from fractalad_edge.errors import ConfigError, InvalidInputError
from fractalad_edge.preprocess import resize_image
from fractalad_edge.synth.fractal import random_fractal_mask
from fractalad_edge.synth.jitter import ColorJitter, apply_jitter

__all__ = [
    "AnomalySample",
    "FractalAnomalyGenerator",
    "ObjectGeometry",
    "SynthConfig",
    "object_geometry",
]

CUT_FRACTION = (0.1, 0.5)
"""Plain placement: cut size as a fraction of ``min(h, w)`` (step 2)."""
PLACEMENT_REGION = (0.1, 0.9)
"""Plain placement: the squares lie inside this fraction of each axis (step 2)."""
OBJECT_CUT_FRACTION = (0.05, 1.5)
"""Object placement: cut size as a fraction of the object's short side ``d`` (step 3)."""
ROTATION_DEGREES = (15.0, 75.0)
"""Patch rotation range (step 4)."""
MIN_CUT = 4
"""Smallest cut side in source pixels; smaller squares cannot hold a visible fractal."""
MIN_INPUT_SIDE = 16

FOREGROUND_THRESHOLD = 25.0
"""Grey levels a blurred pixel must differ from the corner background to be foreground."""
ANALYSIS_SIDE = 256
"""Object analysis runs on a copy whose short side is at most this many pixels."""
MIN_OBJECT_FRACTION = 0.001
MAX_OBJECT_FRACTION = 0.95

_MILD_JITTER = ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.2)
_STRONG_JITTER = ColorJitter(brightness=1.0, contrast=1.0)
_DILATION_KERNEL = np.ones((3, 3), dtype=np.uint8)
_MAX_SHAPE_DRAWS = 10
_CUSTOM_RESIZE_AREA = 0.25
"""Up to this fraction of the output, the pasted pixels are resized alone; above, OpenCV's
resize of the whole image is cheaper."""


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class SynthConfig:
    """Settings of the anomaly generator; the defaults are the paper's."""

    image_size: int = 256
    """Output side (square), >= 32."""
    object_placement: bool = False
    """Place both squares on the object (step 3); for small objects on a plain background."""
    noise_probability: float = 0.5
    noise_sigma: float = 10.0
    final_jitter: float = 0.05
    """Brightness, contrast, saturation and hue range of the jitter shared by clean and augmented."""
    dilation_iterations: int = 3
    fractal_points: int = 100_000

    def __post_init__(self) -> None:
        if not _is_int(self.image_size) or self.image_size < 32:
            msg = f"SynthConfig.image_size must be an int >= 32, got {self.image_size!r}; the training size is 256."
            raise ConfigError(msg)
        if not 0.0 <= self.noise_probability <= 1.0:
            msg = f"SynthConfig.noise_probability must be in [0, 1], got {self.noise_probability!r}."
            raise ConfigError(msg)
        if not (np.isfinite(self.noise_sigma) and self.noise_sigma >= 0.0):
            msg = f"SynthConfig.noise_sigma must be a finite number >= 0 (grey levels), got {self.noise_sigma!r}."
            raise ConfigError(msg)
        if not 0.0 <= self.final_jitter <= 0.5:
            msg = f"SynthConfig.final_jitter must be in [0, 0.5] (it is also the hue range), got {self.final_jitter!r}."
            raise ConfigError(msg)
        if not _is_int(self.dilation_iterations) or self.dilation_iterations < 0:
            msg = f"SynthConfig.dilation_iterations must be an int >= 0, got {self.dilation_iterations!r}."
            raise ConfigError(msg)
        if not _is_int(self.fractal_points) or self.fractal_points < 1000:
            msg = f"SynthConfig.fractal_points must be an int >= 1000 (the paper: 100000), got {self.fractal_points!r}."
            raise ConfigError(msg)


@dataclass(frozen=True)
class AnomalySample:
    """One training sample: the clean image, its anomalous copy and the anomaly mask."""

    clean: np.ndarray
    """uint8 (S, S, 3) RGB."""
    augmented: np.ndarray
    """uint8 (S, S, 3) RGB; equal to ``clean`` wherever ``mask`` is 0."""
    mask: np.ndarray
    """float32 (S, S) with values in {0, 1}."""
    placement: str = "plain"
    """How the squares were placed: "plain", "object", "plain (object fallback: <reason>)",
    or "none" for a normal sample."""


@dataclass(frozen=True)
class ObjectGeometry:
    """What object placement needs: the object's short side and its pixels."""

    short_side: float
    """Short side ``d`` of the largest contour's minimum-area rectangle, in source pixels."""
    rows: np.ndarray
    cols: np.ndarray
    """The object's pixels, at analysis resolution."""
    scale: tuple[float, float]
    """(rows, cols) analysis resolution / source resolution, <= 1."""


def object_geometry(image: np.ndarray, *, analysis: np.ndarray | None = None) -> ObjectGeometry | str:
    """Find the object of an object-category image, or say why there is none.

    The background level is the median of the blurred top-left corner (a twentieth of the
    side); pixels that differ from it by more than :data:`FOREGROUND_THRESHOLD` grey levels
    are foreground, opened with a 3x3 kernel to drop specks. The object is the largest
    external contour, filled. Returns the reason as a string when that region is missing,
    tiny (< 0.1 % of the image) or nearly everything (> 95 %: the corner was not background).

    ``analysis`` is an already shrunk copy of ``image`` to analyse instead (the generator
    passes its training-size image); without it, images over :data:`ANALYSIS_SIDE` pixels are
    shrunk here. The geometry needs no more resolution than that.
    """
    h, w = image.shape[:2]
    if analysis is None:
        factor = min(1.0, ANALYSIS_SIDE / min(h, w))
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        analysis = image if factor == 1.0 else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    scale = (analysis.shape[0] / h, analysis.shape[1] / w)
    grey = cv2.GaussianBlur(cv2.cvtColor(analysis, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    corner = max(4, min(grey.shape) // 20)
    background = float(np.median(grey[:corner, :corner]))
    foreground = (np.abs(grey.astype(np.float32) - background) > FOREGROUND_THRESHOLD).astype(np.uint8)
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, _DILATION_KERNEL)
    contours, _ = cv2.findContours(foreground, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return (
            f"no pixel differs from the corner background (grey {background:.0f}) by more than "
            f"{FOREGROUND_THRESHOLD:.0f} grey levels"
        )
    largest = max(contours, key=cv2.contourArea)
    region = np.zeros_like(foreground)
    cv2.drawContours(region, [largest], -1, 1, thickness=cv2.FILLED)
    fraction = float(region.mean())
    if fraction < MIN_OBJECT_FRACTION:
        return f"the largest foreground region covers only {100 * fraction:.3f} % of the image"
    if fraction > MAX_OBJECT_FRACTION:
        return f"the foreground covers {100 * fraction:.1f} % of the image, so the corner is not background"
    (_, _), (rect_w, rect_h), _ = cv2.minAreaRect(largest)
    rows, cols = np.nonzero(region)
    # Geometric mean of the two axis scales: exact for square inputs (every MVTec image).
    short_side = min(rect_w, rect_h) / float(np.sqrt(scale[0] * scale[1]))
    return ObjectGeometry(short_side=short_side, rows=rows, cols=cols, scale=scale)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"a {image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        msg = (
            f"the anomaly generator expects a uint8 (H, W, 3) RGB numpy array, got {got}; "
            "convert grey images with cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)."
        )
        raise InvalidInputError(msg)
    if min(image.shape[:2]) < MIN_INPUT_SIDE:
        msg = (
            f"the image is {image.shape[1]}x{image.shape[0]} pixels; the anomaly generator needs both sides "
            f">= {MIN_INPUT_SIDE}."
        )
        raise InvalidInputError(msg)
    return np.ascontiguousarray(image)


# --- step 7: onto the training grid ---------------------------------------------------------
#
# The clean image is resized with preprocess.resize_image, the function inference uses, so
# the model trains on what it will be fed. When shrinking (area interpolation) only the few
# output pixels around the pasted square change; resizing the whole augmented image and a
# full-size mask again would dominate the cost for large inputs (an area resize of a 900 px
# image is several ms on one core). Those pixels are computed here from OpenCV's own
# area-interpolation weights (computeResizeAreaTab), and the mask is exactly "the output
# pixel's area footprint touches a pasted source pixel".


@dataclass(frozen=True)
class _AreaTable:
    """OpenCV's INTER_AREA weights for shrinking one axis: output ``d`` reads sources
    ``index[d, k]`` with ``weight[d, k]`` (unused taps weigh 0), all inside ``[first[d], stop[d])``."""

    index: np.ndarray
    weight: np.ndarray
    first: np.ndarray
    stop: np.ndarray

    def rows(self, start: int, stop: int) -> _AreaTable:
        part = slice(start, stop)
        return _AreaTable(self.index[part], self.weight[part], self.first[part], self.stop[part])

    def touching(self, start: int, stop: int) -> tuple[int, int]:
        """Range of outputs whose footprint holds a source sample in ``[start, stop)``."""
        hits = np.flatnonzero((self.first < stop) & (self.stop > start))
        return int(hits[0]), int(hits[-1]) + 1

    def footprint(self) -> tuple[int, int]:
        """Source range these outputs read."""
        return int(self.first.min()), int(self.stop.max())


@functools.lru_cache(maxsize=64)
def _area_table(src: int, dst: int) -> _AreaTable:
    """The weights of ``cv2.resize(..., INTER_AREA)`` from ``src`` to ``dst <= src`` samples
    (computeResizeAreaTab in OpenCV, including its 1e-3 cut-off for slivers)."""
    scale = src / dst
    taps = int(np.ceil(scale)) + 2
    index = np.zeros((dst, taps), dtype=np.intp)
    weight = np.zeros((dst, taps), dtype=np.float32)
    for d in range(dst):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, src - f1)
        s2 = min(int(np.floor(f2)), src - 1)
        s1 = min(int(np.ceil(f1)), s2)
        entries = []
        if s1 - f1 > 1e-3:
            entries.append((s1 - 1, (s1 - f1) / cell))
        entries.extend((s, 1.0 / cell) for s in range(s1, s2))
        if f2 - s2 > 1e-3:
            entries.append((s2, min(min(f2 - s2, 1.0), cell) / cell))
        index[d] = entries[0][0]  # unused taps: weight 0 on an index inside the footprint
        for k, (s, wt) in enumerate(entries):
            index[d, k] = s
            weight[d, k] = wt
    used = weight > 0
    first = np.where(used, index, src).min(axis=1)
    stop = np.where(used, index, -1).max(axis=1) + 1
    for array in (index, weight, first, stop):
        array.flags.writeable = False
    return _AreaTable(index, weight, first, stop)


def _apply_area(window: np.ndarray, origin: tuple[int, int], rows: _AreaTable, cols: _AreaTable) -> np.ndarray:
    """Separable weighted sum over ``window`` (the source part starting at ``origin``), float32."""
    window = window.astype(np.float32)
    expand = (...,) + (None,) * (window.ndim - 1)
    partial = np.zeros((len(rows.index), *window.shape[1:]), dtype=np.float32)
    for k in range(rows.index.shape[1]):
        partial += rows.weight[:, k][expand] * window[rows.index[:, k] - origin[0]]
    expand = (None, ...) + (None,) * (window.ndim - 2)
    out = np.zeros((len(rows.index), len(cols.index), *window.shape[2:]), dtype=np.float32)
    for k in range(cols.index.shape[1]):
        out += cols.weight[:, k][expand] * partial[:, cols.index[:, k] - origin[1]]
    return out


def _pool_any(shape: np.ndarray, origin: tuple[int, int], rows: _AreaTable, cols: _AreaTable) -> np.ndarray:
    """For each output pixel: does its area footprint hold a True of ``shape`` (placed at ``origin``)?"""

    def along(values: np.ndarray, table: _AreaTable, offset: int, axis: int) -> np.ndarray:
        n = values.shape[axis]
        sums = np.cumsum(values, axis=axis, dtype=np.int32)
        sums = np.concatenate([np.zeros_like(np.take(sums, [0], axis=axis)), sums], axis=axis)
        lo = np.clip(table.first - offset, 0, n)
        hi = np.clip(table.stop - offset, 0, n)
        return np.take(sums, hi, axis=axis) - np.take(sums, lo, axis=axis) > 0

    return along(along(shape, rows, origin[0], 0), cols, origin[1], 1)


def _to_training_size(image: np.ndarray, size: int) -> np.ndarray:
    resized = resize_image(image, size, size)
    return resized.copy() if resized is image else resized


class FractalAnomalyGenerator:
    """Makes :class:`AnomalySample` s from normal images (numpy and OpenCV only, no torch).

    Stateless apart from its config: call it from several workers, each with its own
    ``np.random.Generator``.
    """

    def __init__(self, config: SynthConfig = SynthConfig()) -> None:
        if not isinstance(config, SynthConfig):
            msg = f"config must be a SynthConfig, got {type(config).__name__}; build one: SynthConfig(image_size=...)."
            raise ConfigError(msg)
        self.config = config
        fj = config.final_jitter
        self._final_jitter = ColorJitter(brightness=fj, contrast=fj, saturation=fj, hue=fj)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> AnomalySample:
        """An anomalous sample from one normal uint8 (H, W, 3) RGB image at its stored resolution."""
        image = _check_image(image)
        h, w = image.shape[:2]
        size = self.config.image_size
        clean = _to_training_size(image, size)

        placement = "plain"
        squares = None
        if self.config.object_placement:
            shrunk = h >= size and w >= size
            geometry = object_geometry(image, analysis=clean if shrunk else None)
            if isinstance(geometry, ObjectGeometry):
                placement = "object"
                squares = self._object_squares(geometry, h, w, rng)
            else:
                placement = f"plain (object fallback: {geometry})"
        if squares is None:
            squares = self._plain_squares(h, w, rng)
        cut, (sy, sx), (ty, tx) = squares

        patch, shape = self._shaped_patch(image[sy : sy + cut, sx : sx + cut], rng)
        augmented, inside = self._paste_resized(image, clean, patch, shape, (ty, tx))

        if rng.random() < self.config.noise_probability and self.config.noise_sigma > 0:
            noise = rng.normal(0.0, self.config.noise_sigma, size=int(inside.sum()))
            noisy = augmented[inside].astype(np.float64) + noise[:, None]
            augmented[inside] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)

        clean, augmented = self._shared_final_jitter(clean, augmented, inside, rng)
        return AnomalySample(clean=clean, augmented=augmented, mask=inside.astype(np.float32), placement=placement)

    def normal(self, image: np.ndarray, rng: np.random.Generator) -> AnomalySample:
        """A normal sample: the same resizing and final jitter, an empty mask.

        Calibration and validation use it so normal images go through exactly the
        appearance changes anomalous ones do.
        """
        image = _check_image(image)
        size = self.config.image_size
        clean = _to_training_size(image, size)
        if self._final_jitter != ColorJitter():
            clean = apply_jitter([clean], self._final_jitter.sample(rng))[0]
        return AnomalySample(
            clean=clean,
            augmented=clean.copy(),
            mask=np.zeros((size, size), dtype=np.float32),
            placement="none",
        )

    # --- steps 2 and 3: where the squares go --------------------------------------------

    @staticmethod
    def _plain_squares(h: int, w: int, rng: np.random.Generator) -> tuple[int, tuple[int, int], tuple[int, int]]:
        cut = max(MIN_CUT, round(rng.uniform(*CUT_FRACTION) * min(h, w)))
        lo, hi = PLACEMENT_REGION

        def corner(extent: int) -> int:
            first = int(np.ceil(lo * extent))
            last = max(first, int(np.floor(hi * extent)) - cut)  # the square ends inside the region
            return int(rng.integers(first, last + 1))

        return cut, (corner(h), corner(w)), (corner(h), corner(w))

    @staticmethod
    def _object_squares(
        geometry: ObjectGeometry, h: int, w: int, rng: np.random.Generator
    ) -> tuple[int, tuple[int, int], tuple[int, int]]:
        cut = round(rng.uniform(*OBJECT_CUT_FRACTION) * geometry.short_side)
        cut = int(np.clip(cut, MIN_CUT, min(h, w)))

        def corner() -> tuple[int, int]:
            i = int(rng.integers(len(geometry.rows)))
            # A uniform point inside the chosen analysis pixel, mapped to full resolution;
            # a square that would stick out of the image is shifted inward.
            cy = (geometry.rows[i] + rng.random()) / geometry.scale[0]
            cx = (geometry.cols[i] + rng.random()) / geometry.scale[1]
            y = int(np.clip(np.floor(cy - cut / 2), 0, h - cut))
            x = int(np.clip(np.floor(cx - cut / 2), 0, w - cut))
            return y, x

        return cut, corner(), corner()

    # --- steps 4 to 6: the pasted patch and its shape -------------------------------------

    def _shaped_patch(self, patch: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The transformed ``cut x cut`` patch and its bool paste mask (rotation alpha AND fractal)."""
        cut = patch.shape[0]
        appearance = int(rng.integers(3))
        if appearance == 0:
            patch = _MILD_JITTER(patch, rng)
        elif appearance == 1:
            patch = _STRONG_JITTER(patch, rng)
        else:
            channels = rng.choice(3, size=2, replace=False)
            factors = 2.0 * rng.random(2)
            scaled = patch.astype(np.float32)
            scaled[..., channels] *= factors.astype(np.float32)
            patch = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        if rng.random() < 0.5:
            patch = patch[::-1]
        patch = np.ascontiguousarray(patch)

        angle = float(rng.uniform(*ROTATION_DEGREES))
        centre = ((cut - 1) / 2.0, (cut - 1) / 2.0)
        rotation = cv2.getRotationMatrix2D(centre, angle, 1.0)
        # Reflect at the border so interpolation does not darken the patch's rim; the alpha
        # (the rotated square) decides which pixels are pasted at all.
        patch = cv2.warpAffine(patch, rotation, (cut, cut), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        # Nearest-neighbour warp of an all-ones square: exactly the pixels whose centre maps
        # back inside the square.
        square = np.ones((cut, cut), dtype=np.uint8)
        alpha = cv2.warpAffine(square, rotation, (cut, cut), flags=cv2.INTER_NEAREST, borderValue=0).astype(bool)

        for _ in range(_MAX_SHAPE_DRAWS):
            shape = alpha & random_fractal_mask(cut, rng, self.config.fractal_points)
            if shape.any():
                return patch, shape
        # Never observed: ten fractals all outside the rotated square. The square itself
        # keeps the sample anomalous rather than failing a training run.
        return patch, alpha

    # --- step 6 and 7: paste, resize, dilate ---------------------------------------------

    def _paste_resized(
        self,
        image: np.ndarray,
        clean: np.ndarray,
        patch: np.ndarray,
        shape: np.ndarray,
        target: tuple[int, int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """The augmented image at training size and the dilated bool mask.

        Outside the mask the augmented image *is* the clean one, so the label covers every
        changed pixel and nothing else.
        """
        size = self.config.image_size
        h, w = image.shape[:2]
        ty, tx = target
        cut = shape.shape[0]
        area_path = h >= size and w >= size and (h, w) != (size, size)

        if area_path:
            rows, cols = _area_table(h, size), _area_table(w, size)
            r0, r1 = rows.touching(ty, ty + cut)
            c0, c1 = cols.touching(tx, tx + cut)
            mask = np.zeros((size, size), dtype=np.uint8)
            mask[r0:r1, c0:c1] = _pool_any(shape, (ty, tx), rows.rows(r0, r1), cols.rows(c0, c1))
        else:
            source_mask = np.zeros((h, w), dtype=np.float32)
            source_mask[ty : ty + cut, tx : tx + cut] = shape
            mask = (resize_image(source_mask, size, size) > 0).astype(np.uint8)

        if self.config.dilation_iterations:
            mask = cv2.dilate(mask, _DILATION_KERNEL, iterations=self.config.dilation_iterations)
        inside = mask.astype(bool)
        augmented = clean.copy()
        box_rows = np.flatnonzero(inside.any(axis=1))
        box_cols = np.flatnonzero(inside.any(axis=0))
        box = (slice(int(box_rows[0]), int(box_rows[-1]) + 1), slice(int(box_cols[0]), int(box_cols[-1]) + 1))
        small_box = (box[0].stop - box[0].start) * (box[1].stop - box[1].start) <= _CUSTOM_RESIZE_AREA * size * size

        if area_path and small_box:
            row_tab, col_tab = rows.rows(box[0].start, box[0].stop), cols.rows(box[1].start, box[1].stop)
            (y0, y1), (x0, x1) = row_tab.footprint(), col_tab.footprint()
            window = image[y0:y1, x0:x1].copy()
            _paste(window, patch, shape, (ty - y0, tx - x0))
            values = np.rint(_apply_area(window, (y0, x0), row_tab, col_tab))
            values = np.clip(values, 0, 255).astype(np.uint8)
        else:
            pasted = image.copy()
            _paste(pasted, patch, shape, (ty, tx))
            values = resize_image(pasted, size, size)[box]
        cv2.copyTo(values, mask[box], augmented[box])
        return augmented, inside

    # --- step 9 --------------------------------------------------------------------------

    def _shared_final_jitter(
        self, clean: np.ndarray, augmented: np.ndarray, inside: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._final_jitter == ColorJitter():
            return clean, augmented
        params = self._final_jitter.sample(rng)
        rows = np.flatnonzero(inside.any(axis=1))
        cols = np.flatnonzero(inside.any(axis=0))
        if not len(rows):
            jittered = apply_jitter([clean], params)[0]
            return jittered, jittered.copy()
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        # Only the mask's bounding box of the augmented image needs its own jitter; the rest
        # equals the clean image. The clean image is the contrast pivot for both.
        clean_j, box_j = apply_jitter([clean, np.ascontiguousarray(augmented[box])], params)
        augmented_j = clean_j.copy()
        cv2.copyTo(box_j, inside[box].astype(np.uint8), augmented_j[box])
        return clean_j, augmented_j


def _paste(canvas: np.ndarray, patch: np.ndarray, shape: np.ndarray, corner: tuple[int, int]) -> None:
    """Paste ``patch`` through ``shape`` with its top-left at ``corner``, clipped to ``canvas``."""
    y, x = corner
    cut = shape.shape[0]
    top, left = max(0, -y), max(0, -x)
    bottom, right = min(cut, canvas.shape[0] - y), min(cut, canvas.shape[1] - x)
    if bottom <= top or right <= left:
        return
    region = canvas[y + top : y + bottom, x + left : x + right]
    # cv2.copyTo writes into the view in place, far faster than numpy's masked assignment.
    cv2.copyTo(patch[top:bottom, left:right], shape[top:bottom, left:right].astype(np.uint8), region)
