"""Input safety: every hostile or broken image is refused with its reason code; good ones come out upright."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from twinstream.config import LimitsSettings
from twinstream.contracts import InputError, RejectReason
from twinstream.images.decode import decode_image, image_digest

LIMITS = LimitsSettings()


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _reason(data: bytes, limits: LimitsSettings = LIMITS, content_type: str = "") -> RejectReason:
    with pytest.raises(InputError) as info:
        decode_image(data, limits, content_type)
    return info.value.reason


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height 8-bit gray pixels (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 1024, 9)  # a sliver of the claimed data; enough to look valid
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "WEBP", "PPM"])
def test_allowed_formats_decode_to_standard_modes(fmt: str) -> None:
    img = Image.new("RGB", (20, 12), (10, 200, 30))
    out = decode_image(_encode(img, fmt), LIMITS)
    assert out.size == (20, 12)
    assert out.mode in ("L", "RGB")


def test_grayscale_pgm_stays_grayscale() -> None:
    out = decode_image(_encode(Image.new("L", (9, 9), 77), "PPM"), LIMITS)
    assert out.mode == "L"
    assert out.getpixel((4, 4)) == 77


def test_rgba_is_composited_on_white() -> None:
    out = decode_image(_encode(Image.new("RGBA", (4, 4), (0, 0, 0, 0)), "PNG"), LIMITS)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_gray_is_scaled_not_clipped() -> None:
    img = Image.new("I;16", (2, 1))
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 60000)
    out = decode_image(_encode(img, "PNG"), LIMITS)
    assert out.mode == "L"
    assert out.getpixel((0, 0)) == 0
    assert out.getpixel((1, 0)) == 255


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (30, 10), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    out = decode_image(_encode(img, "JPEG", exif=exif.tobytes()), LIMITS)
    assert out.size == (10, 30)


def test_empty_bytes_are_refused_as_empty_image() -> None:
    assert _reason(b"") == RejectReason.EMPTY_IMAGE


def test_oversized_bytes_are_refused_before_decoding() -> None:
    limits = LimitsSettings(max_image_bytes=2048)
    assert _reason(b"\x89PNG" + b"\x00" * 4096, limits) == RejectReason.TOO_LARGE


def test_garbage_is_undecodable() -> None:
    assert _reason(b"hello, this is not an image at all" * 10) == RejectReason.UNDECODABLE_IMAGE


def test_truncated_png_is_undecodable() -> None:
    data = _encode(Image.effect_noise((64, 64), 50).convert("L"), "PNG")
    assert _reason(data[: len(data) // 2]) == RejectReason.UNDECODABLE_IMAGE


def test_truncated_jpeg_is_undecodable() -> None:
    data = _encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    assert _reason(data[: len(data) // 3]) == RejectReason.UNDECODABLE_IMAGE


def test_corrupt_png_body_is_undecodable() -> None:
    data = bytearray(_encode(Image.effect_noise((32, 32), 50).convert("L"), "PNG"))
    data[60:120] = b"\xff" * 60
    assert _reason(bytes(data)) == RejectReason.UNDECODABLE_IMAGE


def test_known_but_disallowed_format_is_unsupported() -> None:
    data = _encode(Image.new("RGB", (8, 8)), "ICO")
    assert _reason(data) == RejectReason.UNSUPPORTED_FORMAT


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_gif_and_tiff_are_not_in_the_default_contract(fmt: str) -> None:
    # The documented formats are JPEG, PNG, WebP, BMP and PGM/PPM; GIF and TIFF only widened the attack
    # surface (animation frames, TIFF's many codecs) without a use case.
    assert set(LIMITS.allowed_formats) == {"JPEG", "PNG", "WEBP", "BMP", "PPM"}
    assert _reason(_encode(Image.new("RGB", (8, 8)), fmt)) == RejectReason.UNSUPPORTED_FORMAT


def test_format_removed_from_allow_list_is_unsupported() -> None:
    limits = LimitsSettings(allowed_formats=("PNG",))
    assert _reason(_encode(Image.new("RGB", (8, 8)), "JPEG"), limits) == RejectReason.UNSUPPORTED_FORMAT


def test_declared_disallowed_type_explains_unrecognised_bytes() -> None:
    assert _reason(b"<svg xmlns='x'></svg>" * 4, content_type="image/svg+xml") == (
        RejectReason.UNSUPPORTED_FORMAT
    )


def test_decompression_bomb_is_refused_from_the_header() -> None:
    bomb = _png_bomb(100_000, 100_000)  # 10 G pixels claimed, a few hundred bytes sent
    assert len(bomb) < 2048
    assert _reason(bomb) == RejectReason.TOO_MANY_PIXELS


def test_pixel_limit_below_pillows_own_is_enforced() -> None:
    limits = LimitsSettings(max_pixels=100)
    assert _reason(_encode(Image.new("L", (11, 10)), "PNG"), limits) == RejectReason.TOO_MANY_PIXELS


def test_digest_is_stable_and_content_sensitive() -> None:
    assert image_digest(b"a") == image_digest(b"a")
    assert image_digest(b"a") != image_digest(b"b")


def test_png_orientation_from_an_exif_chunk_is_applied() -> None:
    img = Image.new("L", (30, 10), 200)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90° counter-clockwise on display
    out = decode_image(_encode(img, "PNG", exif=exif.tobytes()), LIMITS)
    assert out.size == (10, 30)


def test_a_plain_png_comes_back_loaded_and_usable() -> None:
    img = Image.new("L", (4, 3), 7)
    img.putpixel((3, 2), 250)
    out = decode_image(_encode(img, "PNG"), LIMITS)
    assert out.mode == "L" and out.size == (4, 3)
    assert out.getpixel((3, 2)) == 250
    assert np.asarray(out).sum() == 7 * 11 + 250
