"""Image and mask reading with numpy and OpenCV only.

Edge devices run without torch, so everything here is plain numpy + OpenCV. Every reader
returns one predictable layout (uint8 RGB for images, bool for masks) whatever the file
held, because the model only ever sees that layout: grey, 16-bit, alpha and float inputs
are normalised here, once, instead of in every caller.

Files are read with ``np.fromfile`` + ``cv2.imdecode`` so that paths with non-ASCII
characters work on every platform. Before decoding, each file's header is read:

- its size (PNG, JPEG, BMP, TIFF, WebP, PNM) is checked against a pixel limit
  (:data:`DEFAULT_MAX_PIXELS`, or ``FRACTALAD_MAX_IMAGE_PIXELS``, or ``max_pixels``), so
  a small file declaring 40 000 x 40 000 pixels is refused without allocating 4.8 GB;
- PNG, JPEG, BMP and WebP files are checked for truncation, because OpenCV silently
  returns a partly grey image for a file that was cut off while copying or writing;
- JPEG entropy-coded data is decoded strictly (libjpeg-turbo via simplejpeg, at 1/8
  scale, which still runs every Huffman code): libjpeg only *warns* on corrupt data and
  OpenCV then returns an image with grey or smeared blocks.

Decoder failures (``cv2.error``) become :class:`ImageReadError` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from fractalad_edge.errors import ConfigError, ImageReadError, ImageTooLargeError, InvalidInputError, MaskMismatchError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "check_images",
    "decode_image",
    "image_size_from_header",
    "max_image_pixels",
    "read_image",
    "read_image_bgr",
    "read_mask",
    "to_uint8_rgb",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File suffixes (lower case) treated as images when a folder is searched."""

#: Largest image accepted by default, in pixels (width x height). The largest area-scan
#: sensors in machine vision today have about 151 MP (14 192 x 10 640); 200 MP leaves room
#: above them while bounding one decoded frame to 0.6 GB (8-bit RGB; 1.6 GB for 16-bit
#: RGBA), which an edge device with 4-8 GB can hold. Line-scan images stitched to any
#: length need a higher limit: set FRACTALAD_MAX_IMAGE_PIXELS or pass max_pixels.
DEFAULT_MAX_PIXELS = 200_000_000
MAX_PIXELS_ENV = "FRACTALAD_MAX_IMAGE_PIXELS"

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


def max_image_pixels(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` if given, else FRACTALAD_MAX_IMAGE_PIXELS, else the default."""
    if max_pixels is None:
        raw = os.environ.get(MAX_PIXELS_ENV)
        if raw is None:
            return DEFAULT_MAX_PIXELS
        try:
            max_pixels = int(raw)
        except ValueError:
            msg = f"{MAX_PIXELS_ENV}={raw!r} is not a whole number; set it to a pixel count such as 400000000"
            raise ConfigError(msg) from None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int | np.integer) or max_pixels < 1:
        msg = f"the image pixel limit must be a whole number >= 1, got {max_pixels!r}"
        raise ConfigError(msg)
    return int(max_pixels)


def check_images(paths: Sequence[Path], *, max_pixels: int | None = None) -> None:
    """Read every image once; one :class:`ImageReadError` listing every file that cannot be used."""
    problems: list[str] = []
    for path in paths:
        try:
            read_image(path, max_pixels=max_pixels)
        except ImageReadError as exc:
            problems.append(str(exc))
    if problems:
        shown = " | ".join(problems[:3]) + (f" | and {len(problems) - 3} more" if len(problems) > 3 else "")
        msg = f"{len(problems)} of {len(paths)} images cannot be used (remove or replace them): {shown}"
        raise ImageReadError(msg)


def read_image(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3) RGB, whatever it stores.

    Grey, 16-bit and alpha images are normalised by :func:`to_uint8_rgb`. JPEG EXIF
    orientation is not applied: pixels come in stored order, as the camera wrote them.
    Raises :class:`ImageReadError` naming the file when it is missing, truncated, corrupt
    or not an image, and :class:`ImageTooLargeError` (before decoding) when it declares
    more than ``max_pixels`` pixels (see :func:`max_image_pixels`).
    """
    file_path = Path(path)
    decoded = _decode(file_path, max_image_pixels(max_pixels))
    try:
        return to_uint8_rgb(decoded, channel_order="bgr")
    except InvalidInputError as error:
        msg = f"Cannot use image {str(file_path)!r}: {error}"
        raise ImageReadError(msg) from error


def read_image_bgr(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3) in BGR order, for code that uses OpenCV.

    Same rules and errors as :func:`read_image`; only the channel order differs.
    """
    return np.ascontiguousarray(read_image(path, max_pixels=max_pixels)[:, :, ::-1])


def decode_image(data: bytes, *, source: str = "the image bytes", max_pixels: int | None = None) -> np.ndarray:
    """Decode an encoded image held in memory (PNG, JPEG, ...) as uint8 (H, W, 3) RGB.

    The same checks, limits and layout as :func:`read_image`, for images that arrive over a
    network (fractalad_edge/distributed/serve.py) rather than from a file; ``source`` names
    them in error messages.
    """
    decoded = _decode_bytes(np.frombuffer(data, dtype=np.uint8), source, max_image_pixels(max_pixels))
    try:
        return to_uint8_rgb(decoded, channel_order="bgr")
    except InvalidInputError as error:
        msg = f"Cannot use {source}: {error}"
        raise ImageReadError(msg) from error


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
    decoded = _decode(file_path, max_image_pixels())
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


def _decode(file_path: Path, max_pixels: int) -> np.ndarray:
    """Read and decode a file, refusing missing, empty, truncated, corrupt, oversized and non-image files."""
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
    return _decode_bytes(data, f"Image file {str(file_path)!r}", max_pixels)


def _decode_bytes(data: np.ndarray, source: str, max_pixels: int) -> np.ndarray:
    """Decode encoded image bytes, refusing empty, truncated, corrupt, oversized and non-image data.

    ``source`` names the data in messages: ``Image file '...'`` or ``the request body``.
    """
    if data.size == 0:
        msg = f"{source} is empty (0 bytes); it was probably not written completely."
        raise ImageReadError(msg)
    whole = data.tobytes() if bytes(data[:3]) == _JPEG_SOI else None  # a JPEG's frame header may follow EXIF
    size = image_size_from_header(whole if whole is not None else bytes(data[:_HEADER_BYTES]))
    if size is not None:
        _check_pixels(source, size, max_pixels, "declares")
    problem = _truncation_problem(data)
    if problem is not None:
        msg = f"{source} is truncated or damaged: {problem}. Copy or export it again."
        raise ImageReadError(msg)
    problem = _jpeg_corruption(whole) if whole is not None else None
    if problem is not None:
        msg = f"{source} holds corrupt JPEG data ({problem}). Copy or export it again."
        raise ImageReadError(msg)
    try:
        decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        msg = f"{source} ({data.size} bytes) cannot be decoded: {reason}"
        raise ImageReadError(msg) from None
    if decoded is None or decoded.size == 0:
        msg = (
            f"{source} ({data.size} bytes) cannot be decoded as an image. "
            f"Supported formats are those OpenCV reads, usually {', '.join(IMAGE_SUFFIXES)}."
        )
        raise ImageReadError(msg)
    if size is None:  # a format whose header is not parsed here: checked once decoded
        _check_pixels(source, (decoded.shape[1], decoded.shape[0]), max_pixels, "has")
    return decoded


def _check_pixels(source: str, size: tuple[int, int], max_pixels: int, verb: str) -> None:
    width, height = size
    if width < 1 or height < 1:
        msg = f"{source} {verb} a size of {width}x{height} pixels; it is damaged or not an image."
        raise ImageReadError(msg)
    if width * height > max_pixels:
        msg = (
            f"{source} {verb} {width}x{height} = {width * height / 1e6:.0f} MP, over the limit of "
            f"{max_pixels / 1e6:g} MP; refused before decoding. If it is a real frame, raise the limit "
            f"({MAX_PIXELS_ENV} or --max-pixels)."
        )
        raise ImageTooLargeError(msg)


_HEADER_BYTES = 64 * 1024  # enough for every header parsed below except JPEG (EXIF can precede its frame header)


def image_size_from_header(head: bytes) -> tuple[int, int] | None:
    """(width, height) read from an image header without decoding, or None for a format not parsed here.

    PNG (IHDR), JPEG (the SOFn frame header), BMP (BITMAPINFOHEADER / CORE), TIFF (first
    IFD), WebP (VP8, VP8L, VP8X) and binary/ASCII PNM. ``head`` must hold the whole header
    (for JPEG: every segment before the frame header).
    """
    if head.startswith(_PNG_SIGNATURE) and len(head) >= 24 and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    if head.startswith(b"BM") and len(head) >= 26:
        header_size = int.from_bytes(head[14:18], "little")
        if header_size == 12:  # BITMAPCOREHEADER
            return int.from_bytes(head[18:20], "little"), int.from_bytes(head[20:22], "little")
        width = int.from_bytes(head[18:22], "little", signed=True)
        height = int.from_bytes(head[22:26], "little", signed=True)
        return abs(width), abs(height)  # negative height: rows stored top-down
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(head)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP" and len(head) >= 30:
        chunk = head[12:16]
        if chunk == b"VP8 ":
            return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
        if chunk == b"VP8L":
            bits = int.from_bytes(head[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
        return None
    if len(head) >= 2 and head[0:1] == b"P" and head[1:2] in b"123456":
        fields = head[2:256].split(b"#")[0].split()  # comments before the size are rare; not handled
        if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
            return int(fields[0]), int(fields[1])
    return None


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None  # not at a marker: a damaged header, left to the decoder
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in _JPEG_SOF and position + 9 <= len(data):
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            return width, height
        if marker in (0xDA, 0xD9):  # scan data or the end before any frame header
            return None
        position += 2 + length
    return None


def _tiff_size(head: bytes) -> tuple[int, int] | None:
    order = "little" if head[:2] == b"II" else "big"
    offset = int.from_bytes(head[4:8], order)
    if offset + 2 > len(head):
        return None
    count = int.from_bytes(head[offset : offset + 2], order)
    found: dict[int, int] = {}
    for index in range(count):
        entry = offset + 2 + 12 * index
        if entry + 12 > len(head):
            break
        tag = int.from_bytes(head[entry : entry + 2], order)
        kind = int.from_bytes(head[entry + 2 : entry + 4], order)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            value = head[entry + 8 : entry + 10] if kind == 3 else head[entry + 8 : entry + 12]
            found[tag] = int.from_bytes(value, order)
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


# libjpeg messages that mean the entropy-coded data is damaged (jerror.h JWRN_* / JERR_*).
_JPEG_CORRUPTION = ("Corrupt JPEG data", "Premature end of JPEG file", "Invalid SOS parameters", "Bogus", "Huffman")


def _jpeg_corruption(data: bytes) -> str | None:
    """Decode a JPEG strictly at 1/8 scale; the libjpeg warning if its data is corrupt, else None.

    Skipped (None) when simplejpeg is not installed or cannot convert this JPEG's colour
    space (CMYK, ...): OpenCV then decodes it as before.
    """
    try:
        import simplejpeg
    except ImportError:
        return None
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", min_height=1, min_width=1, min_factor=8, strict=True)
    except ValueError as error:
        message = str(error)
        if any(phrase in message for phrase in _JPEG_CORRUPTION):
            return message
    return None


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
