"""Pre- and post-processing shared by every runtime, in numpy and OpenCV.

Written once from the artifact's metadata so that torch, onnxruntime, OpenVINO and
TensorRT see bit-identical inputs and turn maps into scores the same way. Training
uses :func:`resize_image` too, so the model is trained on what it will be fed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from fractalad_edge.artifact import InputSpec, ScoreCalibration, ScoreNormalization, ScoreReduction, ScoreSpec
from fractalad_edge.data.images import to_uint8_rgb
from fractalad_edge.errors import ConfigError, InvalidInputError
from fractalad_edge.score_space import ScoreSpace


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a uint8 image; area filter when shrinking (no aliasing), bilinear when growing."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    shrinking = height * width < h * w
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def normalize(images_rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB -> float32 (N, 3, H, W), ``(x - mean) / std`` in pixel units."""
    scale = np.asarray([1.0 / s for s in std], dtype=np.float32)
    offset = np.asarray(mean, dtype=np.float32) * scale
    batch = images_rgb.astype(np.float32) * scale - offset
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def frame_list(frames: Iterable[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """A batch as a list of frames: a list/tuple/iterator of arrays, or one (N, H, W[, C]) array.

    A single (H, W, C) array is refused rather than split into H grey rows.
    """
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            msg = (
                f"a batch array must have shape (N, H, W, C), got shape {frames.shape}; "
                "for one frame call predict(frame) or pass [frame]"
            )
            raise InvalidInputError(msg)
        return list(frames)
    if isinstance(frames, (str, bytes, dict)) or not isinstance(frames, Iterable):
        msg = f"frames must be a list (or iterator) of numpy arrays (H, W, 3), got {type(frames).__name__}"
        raise InvalidInputError(msg)
    return list(frames)


def as_frame(frame: object, index: int) -> np.ndarray:
    """One frame as a plain native-byte-order ndarray (np.matrix and other subclasses unwrapped)."""
    if not isinstance(frame, np.ndarray):
        msg = f"frame {index}: expected a numpy array (H, W, 3), got {type(frame).__name__}; convert with np.asarray(...)"
        raise InvalidInputError(msg)
    if isinstance(frame, np.ma.MaskedArray) and np.ma.is_masked(frame):
        msg = f"frame {index}: a masked array with masked pixels has no value there; fill it first (frame.filled(0))"
        raise InvalidInputError(msg)
    array = np.asarray(frame)  # np.matrix cannot hold (H, W, 3) and breaks numpy's indexing rules
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def prepare_batch(
    frames: Iterable[np.ndarray] | np.ndarray, spec: InputSpec, *, channel_order: str = "bgr"
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Frames of any size -> the batch the model graph takes, and each frame's own (H, W).

    The batch is float32 NCHW normalised with the spec's mean/std, or for a ``uint8`` spec
    the resized pixels, uint8 NHWC (the graph normalises). Each frame is resized before its
    channels are reordered: resizing treats channels alike, so the result is the same as in
    the other order, and the reorder copies the small image instead of the frame.
    """
    frames = frame_list(frames)
    if len(frames) == 0:
        msg = "no frames given; pass at least one HxWx3 uint8 image"
        raise InvalidInputError(msg)
    if channel_order not in ("bgr", "rgb"):
        msg = f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}"
        raise ConfigError(msg)
    reorder = channel_order != spec.channel_order
    images: list[np.ndarray] = []
    sizes: list[tuple[int, int]] = []
    for index, frame in enumerate(frames):
        try:
            # channel_order="rgb": 8-bit, three channels, in the order given (no reordering yet)
            image = to_uint8_rgb(as_frame(frame, index), channel_order="rgb")
        except InvalidInputError as error:
            if str(error).startswith("frame "):
                raise
            msg = f"frame {index}: {error}"
            raise InvalidInputError(msg) from None
        sizes.append((image.shape[0], image.shape[1]))
        images.append(resize_image(image, spec.height, spec.width))
    # one copy: the batch never shares memory with a caller's frame
    batch = np.stack([image[..., ::-1] for image in images] if reorder else images)
    if spec.dtype == "uint8":
        return batch, sizes
    return normalize(batch, spec.mean, spec.std), sizes


def image_scores(maps: np.ndarray, spec: ScoreSpec) -> np.ndarray:
    """Reduce (N, H, W) anomaly maps to (N,) image scores, as the metadata says."""
    flat = maps.reshape(maps.shape[0], -1)
    if spec.reduction is ScoreReduction.MEAN:
        return flat.mean(axis=1)
    if spec.reduction is ScoreReduction.MAX:
        return flat.max(axis=1)
    k = max(1, int(round(flat.shape[1] * spec.topk_fraction)))
    top = np.partition(flat, flat.shape[1] - k, axis=1)[:, flat.shape[1] - k :]
    return top.mean(axis=1)


def normalize_score(raw: np.ndarray | float, threshold: float, low: float, high: float) -> np.ndarray:
    """Map raw scores so the threshold lands on 0.5, clipped to [0, 1] (anomalib's convention; ``span``)."""
    return np.clip(0.5 + (np.asarray(raw, dtype=np.float32) - threshold) / (high - low), 0.0, 1.0)


def normalize_two_sided(raw: np.ndarray | float, threshold: float, low: float, high: float) -> np.ndarray:
    """``[low, threshold] -> [0, 0.5]`` and ``[threshold, high] -> [0.5, 1]``, linear on each side, clipped.

    Computed in float64 and returned as float32: a score at the threshold maps to exactly
    0.5, and every score at or above it to >= 0.5, whatever the magnitudes.
    """
    values = np.asarray(raw, dtype=np.float64)
    below = np.clip(0.5 * (values - low) / (threshold - low), 0.0, _BELOW_HALF)
    above = np.clip(0.5 + 0.5 * (values - threshold) / (high - threshold), 0.5, 1.0)
    return np.where(values >= threshold, above, below).astype(np.float32)


#: the largest float32 below 0.5: a score just under the threshold must not round up to it
_BELOW_HALF = float(np.nextafter(np.float32(0.5), np.float32(0.0)))


def _normalize(raw: np.ndarray | float, threshold: float, low: float, high: float, calibration: ScoreCalibration) -> np.ndarray:
    if calibration.normalization is ScoreNormalization.TWO_SIDED:
        return normalize_two_sided(raw, threshold, low, high)
    return normalize_score(raw, threshold, low, high)


def normalize_image_scores(raw: np.ndarray, calibration: ScoreCalibration) -> np.ndarray:
    return _normalize(raw, calibration.image_threshold, calibration.image_min, calibration.image_max, calibration)


def normalize_pixel_map(anomaly_map: np.ndarray, calibration: ScoreCalibration) -> np.ndarray:
    return _normalize(anomaly_map, calibration.pixel_threshold, calibration.pixel_min, calibration.pixel_max, calibration)


#: normalised scores at or above this are anomalous (calibration puts the threshold here)
DECISION_THRESHOLD = 0.5


def sigmoid(values: np.ndarray) -> np.ndarray:
    """The logistic function in float32, as a graph's Sigmoid computes it: no overflow for large
    negative logits, and small probabilities kept (sigmoid(-30) is 9.4e-14, not 0)."""
    x = np.asarray(values, dtype=np.float32)
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32, copy=False)


def uncalibrated(values: np.ndarray, space: ScoreSpace) -> np.ndarray:
    """Scores or maps of an uncalibrated model in [0, 1] with 0.5 as the decision point.

    ``sigmoid``: the probabilities themselves (clipped); ``logit``: their sigmoid, so logit 0 is
    the threshold, the head's own decision point either way. ``distance`` and ``fused`` have
    no decision point of their own (calibrate them): clipped, as before the field existed.
    """
    if space is ScoreSpace.LOGIT:
        values = np.asarray(values, dtype=np.float32)
        # exact at 0: a logit just below 0 must not round up to 0.5 in float32
        return np.where(values >= 0.0, np.maximum(sigmoid(values), 0.5), np.minimum(sigmoid(values), _BELOW_HALF)).astype(np.float32)
    return np.clip(values, 0.0, 1.0)


def calibrated_scores(raw: np.ndarray, spec: ScoreSpec, calibration: ScoreCalibration | None) -> np.ndarray:
    """Image scores normalised so 0.5 is the threshold; uncalibrated, the head's own midpoint is (:func:`uncalibrated`)."""
    if calibration is None:
        return uncalibrated(raw, _space(spec))
    return normalize_image_scores(raw, calibration)


def calibrated_maps(maps: np.ndarray, spec: ScoreSpec, calibration: ScoreCalibration | None) -> np.ndarray:
    """Anomaly maps normalised like :func:`calibrated_scores`: in [0, 1], 0.5 at the pixel threshold.

    Uncalibrated, only ``logit`` maps change (to their sigmoid); the others are returned as
    they are, as before score spaces existed.
    """
    if calibration is None:
        space = _space(spec)
        return uncalibrated(maps, space) if space is ScoreSpace.LOGIT else maps
    return normalize_pixel_map(maps, calibration)


def decisions(maps: np.ndarray, spec: ScoreSpec, calibration: ScoreCalibration | None) -> np.ndarray:
    """Anomalous or not per map: the one rule Predictor, parity and the bench apply."""
    return calibrated_scores(image_scores(maps, spec), spec, calibration) >= DECISION_THRESHOLD


def _space(spec: ScoreSpec) -> ScoreSpace:
    # a ScoreSpec outside an ArtifactMetadata may leave the space unset: the legacy sigmoid
    return ScoreSpace.SIGMOID if spec.space is None else spec.space


def convert_maps(maps: np.ndarray, source: ScoreSpace, target: ScoreSpace) -> np.ndarray:
    """Maps of one space in another, where that is a change of units: ``sigmoid`` <-> ``logit``.

    ``logit(p)`` is computed on ``p`` clipped to ``[tiny, 1 - 2**-24]``: a float32 sigmoid of
    a logit above ~16.6 is exactly 1 and has no inverse, so such values come back as ~16.6,
    and just below it float32 keeps few values (a logit of 15 comes back as 15.03). Small
    probabilities keep their precision. Other pairs of different spaces raise ConfigError.
    """
    if source is target:
        return maps
    if {source, target} != {ScoreSpace.SIGMOID, ScoreSpace.LOGIT}:
        msg = f"maps in the {source.value!r} space cannot be expressed in the {target.value!r} space"
        raise ConfigError(msg)
    if target is ScoreSpace.SIGMOID:
        return sigmoid(maps)
    p = np.clip(np.asarray(maps, dtype=np.float64), np.finfo(np.float32).tiny, 1.0 - 2.0**-24)
    return np.log(p / (1.0 - p)).astype(np.float32)


def display_maps(maps: np.ndarray, spec: ScoreSpec, calibration: ScoreCalibration | None) -> np.ndarray:
    """Raw maps as the report's heat maps colour them, in [0, 1].

    ``sigmoid`` maps as they are (clipped), as reports always showed them; every other
    space through :func:`calibrated_maps`, the Predictor's ``anomaly_map`` (0.5 at the pixel
    threshold): logits, distances and fused values have no [0, 1] range of their own.
    """
    if _space(spec) is ScoreSpace.SIGMOID:
        return np.clip(maps, 0.0, 1.0)
    return np.clip(calibrated_maps(maps, spec, calibration), 0.0, 1.0)


def resize_map(anomaly_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bring a float map back to the frame's own size (bilinear)."""
    if anomaly_map.shape == (height, width):
        return anomaly_map
    return cv2.resize(anomaly_map, (width, height), interpolation=cv2.INTER_LINEAR)


def overlay(image_rgb: np.ndarray, anomaly_map: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """A heat map blended over the image, uint8 RGB; ``anomaly_map`` in [0, 1] at image size."""
    heat = cv2.applyColorMap(np.clip(anomaly_map * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image_rgb, 1.0 - alpha, heat, alpha, 0.0)
