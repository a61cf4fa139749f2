"""HTTP edge helpers: reading an image body, refusals as `ApiError`, and reason → status mapping.

Every refusal is an `ApiError` rendered as ``{"reason": code, "detail": ...}`` with a 4xx status; the
codes are the DLQ's `RejectReason` values plus the HTTP-only `ApiReason` values.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from enum import StrEnum

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from twinstream.contracts import InputError, RejectReason

#: Extra bytes a multipart body may carry around the image (boundaries, part headers).
MULTIPART_OVERHEAD = 64 * 1024

_STATUS = {
    RejectReason.TOO_LARGE: 413,
    RejectReason.TOO_MANY_PIXELS: 413,
    RejectReason.UNSUPPORTED_FORMAT: 415,
    RejectReason.UNKNOWN_SUBJECT: 404,
    RejectReason.MISSING_SUBJECT: 400,
    RejectReason.BAD_HEADER: 400,
    RejectReason.UNKNOWN_OP: 400,
    RejectReason.BAD_ENVELOPE: 400,
}


class ApiReason(StrEnum):
    """Reason codes that only the HTTP API uses."""

    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not-found"
    BAD_REQUEST = "bad-request"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class ApiError(Exception):
    """A refusal to answer with ``status`` and a JSON body ``{"reason": ..., "detail": ...}``."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = str(reason)
        self.detail = detail

    @classmethod
    def from_input(cls, exc: InputError) -> ApiError:
        return cls(status_for(exc.reason), exc.reason, exc.detail)


def status_for(reason: RejectReason | None) -> int:
    """The HTTP status of a refused input (422 unless the reason has a more specific one)."""
    return _STATUS.get(reason, 422) if reason is not None else 422


def _too_large(limit: int) -> ApiError:
    return ApiError(413, RejectReason.TOO_LARGE, f"body exceeds the limit of {limit} bytes")


async def _capped_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The body's chunks; 413 as soon as more than ``limit`` bytes arrived (declared length or not)."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        yield chunk


async def _read_capped(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in _capped_stream(request, limit)])


async def _multipart_file(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """The first file of a multipart body, parsed from a stream capped at the image limit plus overhead.

    Why not ``request.form()``: its parser bounds field parts but spools file parts to disk without
    limit, so a chunked upload (no Content-Length) could fill the disk before any check ran. Here the
    whole body is capped while it streams, and file parts stay in memory (they are at most that size).
    """
    limit = max_bytes + MULTIPART_OVERHEAD
    stream = _capped_stream(request, limit)
    parser = MultiPartParser(request.headers, stream, max_files=1, max_fields=8, max_part_size=max_bytes + 1)
    parser.spool_max_size = limit  # never roll over to a temporary file on disk
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, ApiReason.BAD_REQUEST, f"malformed multipart body: {exc.message}") from None
    finally:
        await stream.aclose()
    try:
        upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
        if upload is None:
            raise ApiError(422, RejectReason.EMPTY_IMAGE, "the multipart body holds no file")
        return await upload.read(max_bytes + 1), upload.content_type or ""
    finally:
        await form.close()


async def read_image(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """The image of a request: the raw body (``image/*`` or octet-stream) or the first multipart file.

    Raises:
        ApiError: 413 beyond ``max_bytes`` (checked before reading where the length is declared, and
            while reading where it is not), 415 for other content types, 422 when a multipart body holds
            no file, 400 for a malformed multipart body.
    """
    content_type = request.headers.get("content-type", "").lower()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD:
        raise ApiError(413, RejectReason.TOO_LARGE, f"{declared} bytes exceeds the limit of {max_bytes}")
    if content_type.startswith("multipart/form-data"):
        data, file_type = await _multipart_file(request, max_bytes)
    elif not content_type or content_type.startswith(("image/", "application/octet-stream")):
        data, file_type = await _read_capped(request, max_bytes + 1), content_type
    else:
        raise ApiError(
            415, RejectReason.UNSUPPORTED_FORMAT, f"send image/* or multipart, not {content_type!r}"
        )
    if len(data) > max_bytes:
        raise ApiError(413, RejectReason.TOO_LARGE, f"image exceeds the limit of {max_bytes} bytes")
    return data, file_type
