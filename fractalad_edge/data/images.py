"""Image and mask reading with numpy and OpenCV only.

Edge devices run without torch, so everything here is plain numpy + OpenCV. Every reader
returns one predictable layout (uint8 RGB for images, bool for masks) whatever the file
held, because the model only ever sees that layout: grey, 16-bit, alpha and float inputs
are normalised here, once, instead of in every caller.

Files are read with ``np.fromfile`` + ``cv2.imdecode`` so that paths with non-ASCII
characters work on every platform. PNG, JPEG, BMP and WebP files are checked for
truncation *before* decoding, because OpenCV silently returns a partly grey image for a
file that was cut off while copying or writing.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fractalad_edge.errors import ConfigError, ImageReadError, InvalidInputError, MaskMismatchError

__all__ = [
    "IMAGE_SUFFIXES",
    "decode_image",
    "read_image",
    "read_image_bgr",
    "read_mask",
    "to_uint8_rgb",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File suffixes (lower case) treated as images when a folder is searched."""

_CHANNEL_ORDERS = ("rgb", "bgr")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8\xff"
_JPEG_EOI = b"\xff\xd9"
# Bytes after the JPEG end-of-image marker that are still accepted (padding, short
# vendor trailers). A truncated JPEG has no EOI marker near its end: inside entropy-coded
# data 0xFF is always followed by 0x00 or a restart marker, never by 0xD9.
_JPEG_TAIL_BYTES = 1024


def to_uint8_rgb(array: np.ndarray, *, channel_order: str = "rgb") -> np.ndarray:
    """Normalise any decoded image array to uint8 (H, W, 3) RGB.

    One function so that a predictor fed arrays and a dataset fed files see identical
    pixels. Rules:

    - grey (H, W) or (H, W, 1) is repeated to three channels;
    - four channels: the alpha channel is dropped (not composited), as ``cv2.imread``
      and ``PIL.Image.convert("RGB")`` do, so colours under transparent pixels are kept;
    - uint16 is scaled to 8 bit by dividing by 257 with rounding (full-range 16 bit:
      65535 -> 255);
    - floats must lie in [0, 1] and are scaled by 255 with rounding;
    - bool becomes 0 / 255.

    ``channel_order`` names the order of the *input* colour channels ("rgb" or "bgr",
    OpenCV's order); the output is always RGB. When the input is already a C-contiguous
    uint8 (H, W, 3) RGB array it is returned as is, without a copy.
    """
    if channel_order not in _CHANNEL_ORDERS:
        msg = f"channel_order must be one of {_CHANNEL_ORDERS}, got {channel_order!r}."
        raise ConfigError(msg)
    if not isinstance(array, np.ndarray):
        msg = (
            f"Expected an image as a numpy array, got {type(array).__name__}. "
            "Convert it with np.asarray(...) first."
        )
        raise InvalidInputError(msg)
    if array.ndim not in (2, 3):
        msg = (
            f"An image array must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
            f"got shape {array.shape} (rank {array.ndim}). For a batch, pass one image at a time."
        )
        raise InvalidInputError(msg)
    if array.size == 0:
        msg = f"The image array is empty (shape {array.shape}); height and width must be at least 1."
        raise InvalidInputError(msg)
    if array.ndim == 3 and array.shape[2] not in (1, 3, 4):
        msg = (
            f"An image must have 1, 3 or 4 channels in the last axis, got {array.shape[2]} "
            f"(shape {array.shape}). A channels-first (C, H, W) array must be transposed "
            "to (H, W, C) first."
        )
        raise InvalidInputError(msg)

    pixels = _to_uint8(array)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(pixels, 3, axis=2))
    if channels == 3 and channel_order == "rgb" and pixels.flags.c_contiguous:
        return pixels
    colour = pixels[:, :, :3]
    if channel_order == "bgr":
        colour = colour[:, :, ::-1]
    return np.ascontiguousarray(colour)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale an array of any supported dtype to uint8, leaving the shape alone."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    if array.dtype == np.uint16:
        # Round-half-up of x / 257: exact, and maps 0 -> 0 and 65535 -> 255.
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            msg = "The image array holds NaN or infinite values; every pixel must be a finite number in [0, 1]."
            raise InvalidInputError(msg)
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            msg = (
                f"A float image must hold values in [0, 1], got values in [{low:g}, {high:g}]. "
                "If the values are 0..255, convert with array.astype(np.uint8) or divide by 255."
            )
            raise InvalidInputError(msg)
        return np.rint(array * 255.0).astype(np.uint8)
    msg = (
        f"Unsupported image dtype {array.dtype}; allowed are uint8, uint16, bool and floats in [0, 1]. "
        "Convert the array to uint8 first."
    )
    raise InvalidInputError(msg)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3) RGB, whatever it stores.

    Grey, 16-bit and alpha images are normalised by :func:`to_uint8_rgb`. JPEG EXIF
    orientation is not applied: pixels come in stored order, as the camera wrote them.
    Raises :class:`ImageReadError` naming the file when it is missing, truncated or not
    an image.
    """
    file_path = Path(path)
    decoded = _decode(file_path)
    try:
        return to_uint8_rgb(decoded, channel_order="bgr")
    except InvalidInputError as error:
        msg = f"Cannot use image {str(file_path)!r}: {error}"
        raise ImageReadError(msg) from error


def decode_image(data: bytes, *, source: str = "image bytes") -> np.ndarray:
    """Decode an encoded image held in memory (PNG, JPEG, ...) as uint8 (H, W, 3) RGB.

    The same checks and layout as :func:`read_image`, for images that arrive over a network
    rather than from a file; ``source`` names them in error messages.
    """
    decoded = _decode_bytes(np.frombuffer(data, dtype=np.uint8), source)
    try:
        return to_uint8_rgb(decoded, channel_order="bgr")
    except InvalidInputError as error:
        msg = f"Cannot use {source}: {error}"
        raise ImageReadError(msg) from error


def read_image_bgr(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3) in BGR order, for code that uses OpenCV.

    Same rules and errors as :func:`read_image`; only the channel order differs.
    """
    return np.ascontiguousarray(read_image(path)[:, :, ::-1])


def read_mask(
    path: str | Path,
    *,
    expected_shape: tuple[int, int],
    image_path: str | Path | None = None,
) -> np.ndarray:
    """Read a ground-truth mask as bool (H, W); any non-zero pixel is anomalous.

    Masks are compared pixel by pixel with anomaly maps, so a mask whose size differs
    from its image is an error (:class:`MaskMismatchError`) rather than something to
    resize silently. ``image_path`` only serves the error message. Colour masks count a
    pixel as anomalous when any colour channel is non-zero; an alpha channel is ignored.
    """
    shape = _validate_shape(expected_shape)
    file_path = Path(path)
    decoded = _decode(file_path)
    if decoded.ndim == 3:
        decoded = decoded[:, :, :3] if decoded.shape[2] == 4 else decoded
        mask = np.any(decoded != 0, axis=2)
    else:
        mask = decoded != 0
    if mask.shape != shape:
        against = f" of image {str(image_path)!r}" if image_path is not None else ""
        msg = (
            f"Mask {str(file_path)!r} has size {mask.shape[0]}x{mask.shape[1]} (HxW) but the size"
            f"{against} is {shape[0]}x{shape[1]}. A mask must have exactly the size of its image; "
            "re-export the mask (nearest-neighbour resize) at the image size."
        )
        raise MaskMismatchError(msg)
    return mask


def _validate_shape(expected_shape: tuple[int, int]) -> tuple[int, int]:
    valid = (
        isinstance(expected_shape, tuple | list)
        and len(expected_shape) == 2
        and all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in expected_shape)
    )
    if not valid:
        msg = f"expected_shape must be (height, width) with two positive integers, got {expected_shape!r}."
        raise ConfigError(msg)
    return int(expected_shape[0]), int(expected_shape[1])


def _decode(file_path: Path) -> np.ndarray:
    """Read and decode a file, refusing missing, empty, truncated and non-image files."""
    if not file_path.exists():
        msg = f"Image file {str(file_path)!r} does not exist. Check the path and the current directory."
        raise ImageReadError(msg)
    if not file_path.is_file():
        msg = f"{str(file_path)!r} is not a file (it is a folder or a special file); pass the path of an image file."
        raise ImageReadError(msg)
    try:
        data = np.fromfile(file_path, dtype=np.uint8)
    except OSError as error:
        msg = f"Cannot read image file {str(file_path)!r}: {error}."
        raise ImageReadError(msg) from error
    return _decode_bytes(data, f"Image file {str(file_path)!r}")


def _decode_bytes(data: np.ndarray, source: str) -> np.ndarray:
    """Decode an encoded image, refusing empty, truncated and non-image byte streams."""
    if data.size == 0:
        msg = f"{source} is empty (0 bytes); it was probably not written completely."
        raise ImageReadError(msg)
    problem = _truncation_problem(data)
    if problem is not None:
        msg = f"{source} is truncated or damaged: {problem}. Copy or export it again."
        raise ImageReadError(msg)
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        msg = (
            f"{source} ({data.size} bytes) cannot be decoded as an image. "
            f"Supported formats are those OpenCV reads, usually {', '.join(IMAGE_SUFFIXES)}."
        )
        raise ImageReadError(msg)
    return decoded


def _truncation_problem(data: np.ndarray) -> str | None:
    """Say why a PNG/JPEG/BMP/WebP byte stream is incomplete, or None if it looks whole.

    Other formats (TIFF, ...) are left to the decoder.
    """
    head = bytes(data[:16])
    size = len(data)
    if head.startswith(_PNG_SIGNATURE):
        return _png_problem(data)
    if head.startswith(_JPEG_SOI):
        tail = bytes(data[-_JPEG_TAIL_BYTES:])
        if _JPEG_EOI not in tail:
            return "the JPEG end-of-image marker (FF D9) is missing at the end of the file"
        return None
    if head.startswith(b"BM") and size >= 6:
        declared = int.from_bytes(head[2:6], "little")
        if size < declared:
            return f"the BMP header declares {declared} bytes but the file has {size}"
        return None
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        declared = int.from_bytes(head[4:8], "little") + 8
        if size < declared:
            return f"the WebP header declares {declared} bytes but the file has {size}"
    return None


def _png_problem(data: np.ndarray) -> str | None:
    """Walk the PNG chunk list; a complete file reaches an IEND chunk inside the file."""
    size = len(data)
    position = len(_PNG_SIGNATURE)
    while position + 12 <= size:
        length = int.from_bytes(bytes(data[position : position + 4]), "big")
        chunk_type = bytes(data[position + 4 : position + 8])
        end = position + 12 + length
        if end > size:
            return f"chunk {chunk_type!r} needs {end} bytes but the file has only {size}"
        if chunk_type == b"IEND":
            return None
        position = end
    return "the PNG file ends before its IEND chunk"
