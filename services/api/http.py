"""HTTP edge helpers: reading an image body, refusals as `ApiError`, and reason → status mapping.

Every refusal is an `ApiError` rendered as ``{"reason": code, "detail": ...}`` with a 4xx status; the
codes are the DLQ's `RejectReason` values plus the HTTP-only `ApiReason` values.
"""

from __future__ import annotations

from enum import StrEnum

from fastapi import Request
from starlette.datastructures import UploadFile

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


async def _read_capped(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, RejectReason.TOO_LARGE, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_image(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """The image of a request: the raw body (``image/*`` or octet-stream) or the first multipart file.

    Raises:
        ApiError: 413 beyond ``max_bytes`` (checked before reading where the length is declared),
            415 for other content types, 422 when a multipart body holds no file.
    """
    content_type = request.headers.get("content-type", "").lower()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD:
        raise ApiError(413, RejectReason.TOO_LARGE, f"{declared} bytes exceeds the limit of {max_bytes}")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8, max_part_size=max_bytes + 1)
        upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
        if upload is None:
            raise ApiError(422, RejectReason.EMPTY_IMAGE, "the multipart body holds no file")
        data = await upload.read(max_bytes + 1)
        file_type = upload.content_type or ""
        await form.close()
    elif not content_type or content_type.startswith(("image/", "application/octet-stream")):
        data, file_type = await _read_capped(request, max_bytes + 1), content_type
    else:
        raise ApiError(
            415, RejectReason.UNSUPPORTED_FORMAT, f"send image/* or multipart, not {content_type!r}"
        )
    if len(data) > max_bytes:
        raise ApiError(413, RejectReason.TOO_LARGE, f"image exceeds the limit of {max_bytes} bytes")
    return data, file_type
