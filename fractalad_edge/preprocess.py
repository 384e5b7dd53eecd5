"""Pre- and post-processing shared by every runtime, in numpy and OpenCV.

Written once from the artifact's metadata so that torch, onnxruntime, OpenVINO and
TensorRT see bit-identical inputs and turn maps into scores the same way. Training
uses :func:`resize_image` too, so the model is trained on what it will be fed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from fractalad_edge.artifact import InputSpec, ScoreCalibration, ScoreReduction, ScoreSpec
from fractalad_edge.data.images import to_uint8_rgb
from fractalad_edge.errors import ConfigError, InvalidInputError


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
    """Map raw scores so the threshold lands on 0.5, clipped to [0, 1] (anomalib's convention)."""
    return np.clip(0.5 + (np.asarray(raw, dtype=np.float32) - threshold) / (high - low), 0.0, 1.0)


def normalize_image_scores(raw: np.ndarray, calibration: ScoreCalibration) -> np.ndarray:
    return normalize_score(raw, calibration.image_threshold, calibration.image_min, calibration.image_max)


def normalize_pixel_map(anomaly_map: np.ndarray, calibration: ScoreCalibration) -> np.ndarray:
    return normalize_score(anomaly_map, calibration.pixel_threshold, calibration.pixel_min, calibration.pixel_max)


#: normalised scores at or above this are anomalous (calibration puts the threshold here)
DECISION_THRESHOLD = 0.5


def calibrated_scores(raw: np.ndarray, calibration: ScoreCalibration | None) -> np.ndarray:
    """Image scores normalised so 0.5 is the threshold; uncalibrated, the sigmoid's own 0.5 is."""
    return np.clip(raw, 0.0, 1.0) if calibration is None else normalize_image_scores(raw, calibration)


def calibrated_maps(maps: np.ndarray, calibration: ScoreCalibration | None) -> np.ndarray:
    """Anomaly maps normalised like :func:`calibrated_scores` (unchanged when uncalibrated)."""
    return maps if calibration is None else normalize_pixel_map(maps, calibration)


def decisions(maps: np.ndarray, spec: ScoreSpec, calibration: ScoreCalibration | None) -> np.ndarray:
    """Anomalous or not per map: the one rule Predictor, parity and the bench apply."""
    return calibrated_scores(image_scores(maps, spec), calibration) >= DECISION_THRESHOLD


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
