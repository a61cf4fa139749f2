"""dlib's primitive serialization (``dlib/serialize.h``, ``dlib/cuda/tensor.h``) read from bytes.

Everything a serialized dlib network is built from: variable-length integers, floats as
mantissa/exponent pairs, strings, ASCII bools, ``resizable_tensor`` and ``alias_tensor``. Any read past
the end, or a value no dlib writer produces, raises `DlibFormatError` naming the byte offset, so a
truncated or foreign file fails loudly instead of yielding garbage weights.

dlib writes tensor data as raw little-endian IEEE floats (not mantissa/exponent pairs), so a tensor of
any size is decoded by one ``numpy.frombuffer`` call; only the few scalar floats take the slow path.
"""

from __future__ import annotations

import math

import numpy as np

#: float_details' special exponents (dlib/float_details.h).
_FLOAT_SPECIALS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
_TENSOR_VERSION = 2
_ALIAS_TENSOR_VERSION = 1


class DlibFormatError(ValueError):
    """Bytes that are not (or no longer) what dlib's serializer writes for the expected object."""


class DlibReader:
    """A cursor over a dlib serialization stream; every read checks bounds and encoding.

    Args:
        data: The whole serialized stream.
        source: Name used in error messages (usually the file path).
    """

    def __init__(self, data: bytes, source: str = "<bytes>") -> None:
        self._data = memoryview(data)
        self._pos = 0
        self.source = source

    @property
    def position(self) -> int:
        """Offset of the next unread byte."""
        return self._pos

    @property
    def remaining(self) -> int:
        """Number of unread bytes."""
        return len(self._data) - self._pos

    def error(self, message: str) -> DlibFormatError:
        """A `DlibFormatError` that says where in which stream ``message`` happened."""
        return DlibFormatError(f"{self.source}: at byte {self._pos} of {len(self._data)}: {message}")

    def _take(self, count: int, what: str) -> memoryview:
        if count > self.remaining:
            raise self.error(f"truncated: {what} needs {count} bytes but only {self.remaining} remain")
        chunk = self._data[self._pos : self._pos + count]
        self._pos += count
        return chunk

    def int_(self, what: str) -> int:
        """A signed or unsigned integer in dlib's variable-length form (``ser_helper::unpack_int``).

        One control byte (bit 0x80: negative, low nibble: byte count 1..8) then the magnitude's bytes,
        least significant first. The three bits 0x70 are reserved and never set by dlib: a byte with
        them set is refused, which catches most foreign data early.
        """
        control = self._take(1, what)[0]
        size = control & 0x0F
        if control & 0x70 or not 1 <= size <= 8:
            self._pos -= 1
            raise self.error(f"{what}: 0x{control:02x} is not an integer control byte")
        magnitude = int.from_bytes(self._take(size, what), "little")
        return -magnitude if control & 0x80 else magnitude

    def uint(self, what: str) -> int:
        """An unsigned integer (the same encoding, the sign bit must be clear)."""
        value = self.int_(what)
        if value < 0:
            raise self.error(f"{what}: expected an unsigned integer, found {value}")
        return value

    def float_(self, what: str) -> float:
        """A float or double written through ``float_details``: integers mantissa and exponent.

        dlib before 2013 wrote floats as ASCII text; such streams are refused (their first byte has
        one of the reserved bits 0x70 set, which is how dlib itself tells the two forms apart).
        """
        if self.remaining and self._data[self._pos] & 0x70:
            raise self.error(f"{what}: ASCII (pre-2013) float encoding is not supported")
        mantissa = self.int_(f"{what} (mantissa)")
        exponent = self.int_(f"{what} (exponent)")
        if exponent in _FLOAT_SPECIALS:
            return _FLOAT_SPECIALS[exponent]
        return math.ldexp(mantissa, exponent)

    def bool_(self, what: str) -> bool:
        """A bool, which dlib writes as the ASCII character ``'1'`` or ``'0'``."""
        char = self._take(1, what)[0]
        if char not in (0x30, 0x31):
            self._pos -= 1
            raise self.error(f"{what}: 0x{char:02x} is not a serialized bool ('0' or '1')")
        return char == 0x31

    def string(self, what: str) -> str:
        """A ``std::string``: its length as an unsigned integer, then the bytes (ASCII here)."""
        length = self.uint(f"{what} (length)")
        raw = self._take(length, what)
        try:
            return bytes(raw).decode("ascii")
        except UnicodeDecodeError as exc:
            raise self.error(f"{what}: not an ASCII string") from exc

    def _dims(self, what: str) -> tuple[int, int, int, int]:
        n, k, nr, nc = (self.int_(f"{what} (dimension)") for _ in range(4))
        if min(n, k, nr, nc) < 0:
            raise self.error(f"{what}: negative dimension in {(n, k, nr, nc)}")
        return n, k, nr, nc

    def tensor(self, what: str) -> np.ndarray:
        """A ``resizable_tensor``: version 2, dimensions (n, k, nr, nc), raw little-endian float32s.

        Returns:
            A writable float32 array of shape (n, k, nr, nc), in native byte order.
        """
        version = self.int_(f"{what} (tensor version)")
        if version != _TENSOR_VERSION:
            raise self.error(f"{what}: tensor version {version}, expected {_TENSOR_VERSION}")
        dims = self._dims(what)
        count = math.prod(dims)
        raw = self._take(4 * count, f"{what} ({count} floats)")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def alias_tensor(self, what: str) -> tuple[int, int, int, int]:
        """An ``alias_tensor`` (a view's shape only): version 1, then (n, k, nr, nc)."""
        version = self.int_(f"{what} (alias_tensor version)")
        if version != _ALIAS_TENSOR_VERSION:
            raise self.error(f"{what}: alias_tensor version {version}, expected {_ALIAS_TENSOR_VERSION}")
        return self._dims(what)
