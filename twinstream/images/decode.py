"""Untrusted image bytes → a safe, upright PIL image in mode ``L`` or ``RGB``, or an `InputError`.

Every refusal carries a stable `RejectReason` (the DLQ's ``error-reason`` and the HTTP API's 4xx body).
The order of checks is what makes it safe: the byte limit before anything is parsed, the format
allow-list when the header is parsed (other Pillow plugins never see the bytes), the pixel limit from
the header before ``load()`` (so a decompression bomb never allocates its pixels), then the decode.
Turning the result into a tensor is `twinstream.images.preprocess`'s job.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from twinstream.config import LimitsSettings
from twinstream.contracts import InputError, RejectReason

#: Pillow's plugins raise a zoo of exception types on hostile input (ValueError, SyntaxError, struct.error,
#: zlib.error, IndexError...). This is the decode boundary, so all of them become `undecodable-image`.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
    AttributeError,
    ZeroDivisionError,
    RuntimeError,
    MemoryError,
)

#: Content-type subtypes → Pillow format names (for the refusal detail of a non-allowed declared type).
_SUBTYPE_FORMATS = {
    "jpeg": "JPEG",
    "jpg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "bmp": "BMP",
    "x-portable-graymap": "PPM",
    "x-portable-pixmap": "PPM",
    "x-portable-anymap": "PPM",
    "gif": "GIF",
    "tiff": "TIFF",
}

_GRAY_MODES = frozenset({"1", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def image_digest(data: bytes) -> str:
    """The SHA-256 hex digest of image bytes (embedding-cache key and part of the gallery image id)."""
    return hashlib.sha256(data).hexdigest()


def _sniff_format(header: bytes) -> str | None:
    """Name the Pillow format whose signature matches ``header``, without opening anything."""
    Image.init()
    for name, (_factory, accept) in Image.OPEN.items():
        if accept is None:
            continue
        try:
            if accept(header):
                return str(name)
        except _DECODE_ERRORS:
            continue
    return None


def _declared_format(content_type: str) -> str:
    """The format a ``Content-Type`` names ('' when it names none or is not an image type)."""
    kind, _, subtype = content_type.partition(";")[0].strip().lower().partition("/")
    if kind != "image" or not subtype:
        return ""
    return _SUBTYPE_FORMATS.get(subtype, subtype.upper())


def _open(data: bytes, limits: LimitsSettings, content_type: str) -> Image.Image:
    """Parse the header with allowed plugins only; classify a failure as unsupported or undecodable."""
    allowed = [fmt.upper() for fmt in limits.allowed_formats]
    try:
        return Image.open(io.BytesIO(data), formats=allowed)  # bomb warnings: ignored by the caller
    except Image.DecompressionBombError as exc:
        raise InputError(RejectReason.TOO_MANY_PIXELS, str(exc)) from None
    except UnidentifiedImageError:
        sniffed = _sniff_format(data[:64])
        if sniffed and sniffed not in allowed:
            raise InputError(
                RejectReason.UNSUPPORTED_FORMAT, f"{sniffed} is not allowed: {allowed}"
            ) from None
        declared = _declared_format(content_type)
        if not sniffed and declared and declared not in allowed:
            raise InputError(
                RejectReason.UNSUPPORTED_FORMAT, f"{declared} is not allowed: {allowed}"
            ) from None
        raise InputError(RejectReason.UNDECODABLE_IMAGE, "not a recognisable image") from None
    except _DECODE_ERRORS as exc:
        raise InputError(RejectReason.UNDECODABLE_IMAGE, f"bad header: {exc}") from None


#: Formats whose files carry no orientation at all; PNG only in an ``eXIf``/text chunk or XMP packet,
#: which Pillow puts in ``info`` by the end of ``load()``.
_NO_ORIENTATION_FORMATS = frozenset({"PPM", "BMP"})
_PNG_ORIENTATION_KEYS = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF/XMP orientation, skipping the metadata parse where the file can hold none
    (a third of a small PNG's decode time)."""
    if img.format in _NO_ORIENTATION_FORMATS:
        return img
    if img.format == "PNG" and not any(key in img.info for key in _PNG_ORIENTATION_KEYS):
        return img
    return ImageOps.exif_transpose(img) or img


def _check_size(img: Image.Image, limits: LimitsSettings) -> None:
    """Refuse empty or oversized images from the header's dimensions (nothing is allocated yet)."""
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InputError(RejectReason.EMPTY_IMAGE, f"image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise InputError(
            RejectReason.TOO_MANY_PIXELS, f"{width}x{height} exceeds the limit of {limits.max_pixels} pixels"
        )


def _to_standard_mode(img: Image.Image) -> Image.Image:
    """Convert to ``L`` (grayscale sources) or ``RGB`` (everything else; alpha composited on white)."""
    if img.mode in {"L", "RGB"}:
        return img
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        # Pillow's convert("L") clips high-bit-depth values; scale the full range to 0..255 instead.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.astype(np.uint8), mode="L")
    if img.mode in _GRAY_MODES:
        return img.convert("L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(data: bytes, limits: LimitsSettings, content_type: str = "") -> Image.Image:
    """Decode untrusted bytes into an upright image in mode ``L`` or ``RGB``.

    Args:
        data: The raw image bytes as received (Kafka value, HTTP body).
        limits: Byte limit, pixel limit and the allow-list of Pillow format names.
        content_type: The declared type, if any (only used to explain a refusal).

    Returns:
        A fully loaded image (EXIF orientation applied; first frame of animations).

    Raises:
        InputError: With reason ``empty-image``, ``too-large``, ``unsupported-format``, ``too-many-pixels``
            or ``undecodable-image``.
    """
    if not data:
        raise InputError(RejectReason.EMPTY_IMAGE, "no image bytes")
    if len(data) > limits.max_image_bytes:
        raise InputError(
            RejectReason.TOO_LARGE, f"{len(data)} bytes exceeds the limit of {limits.max_image_bytes}"
        )
    with warnings.catch_warnings():
        # Pillow warns of big images on open and load; the pixel limit is ours (`_check_size`).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return _decode(data, limits, content_type)


def _decode(data: bytes, limits: LimitsSettings, content_type: str) -> Image.Image:
    img = _open(data, limits, content_type)
    result = None
    try:
        _check_size(img, limits)
        fmt = img.format or "?"
        try:
            img.load()
            result = _to_standard_mode(_upright(img))
        except InputError:
            raise
        except Image.DecompressionBombError as exc:
            raise InputError(RejectReason.TOO_MANY_PIXELS, str(exc)) from None
        except _DECODE_ERRORS as exc:
            raise InputError(RejectReason.UNDECODABLE_IMAGE, f"cannot decode {fmt}: {exc}") from None
    finally:
        if result is not img:  # a converted or rotated copy: the parsed file can go
            img.close()
    if result.width <= 0 or result.height <= 0:
        raise InputError(RejectReason.EMPTY_IMAGE, "image has no pixels after orientation")
    return result
