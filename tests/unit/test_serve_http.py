"""HTTP edge rules: body limits and status codes (real Starlette requests)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from starlette.requests import Request

from services.api.http import MULTIPART_OVERHEAD, ApiError, read_image, status_for
from twinstream.contracts import RejectReason

BOUNDARY = "x7Bq9"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _request(headers: dict[str, str], query: str = "", body: bytes = b"") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": raw, "query_string": query.encode()}
    return Request(scope, receive)


def test_oversized_declared_body_is_refused_before_reading() -> None:
    req = _request({"Content-Type": "image/png", "Content-Length": str(10**9)})
    with pytest.raises(ApiError) as info:
        asyncio.run(read_image(req, max_bytes=1024))
    assert (info.value.status, info.value.reason) == (413, RejectReason.TOO_LARGE)


def test_oversized_streamed_body_is_refused() -> None:
    req = _request({"Content-Type": "image/png"}, body=b"x" * 5000)
    with pytest.raises(ApiError) as info:
        asyncio.run(read_image(req, max_bytes=1024))
    assert info.value.status == 413


def test_non_image_content_type_is_415() -> None:
    req = _request({"Content-Type": "application/json"}, body=b"{}")
    with pytest.raises(ApiError) as info:
        asyncio.run(read_image(req, max_bytes=1024))
    assert (info.value.status, info.value.reason) == (415, RejectReason.UNSUPPORTED_FORMAT)


def test_raw_image_body_is_returned_with_its_type() -> None:
    data, ctype = asyncio.run(read_image(_request({"Content-Type": "image/png"}, body=b"abc"), 1024))
    assert (data, ctype) == (b"abc", "image/png")


def test_reason_codes_map_to_4xx_statuses() -> None:
    assert status_for(RejectReason.UNDECODABLE_IMAGE) == 422
    assert status_for(RejectReason.TOO_MANY_PIXELS) == 413
    assert status_for(RejectReason.UNKNOWN_SUBJECT) == 404
    assert all(400 <= status_for(r) < 500 for r in RejectReason)


class _ChunkedBody:
    """An ASGI ``receive`` streaming chunks without a Content-Length, counting what was pulled."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.pulled = 0

    async def __call__(self) -> dict[str, object]:
        chunk = next(self._chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        self.pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}


def _multipart_head(filename: str = "face.png", content_type: str = "image/png") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


def _multipart(payload: bytes) -> bytes:
    return _multipart_head() + payload + f"\r\n--{BOUNDARY}--\r\n".encode()


def _streamed(headers: dict[str, str], body: _ChunkedBody) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": raw, "query_string": b""}
    return Request(scope, body)


def test_a_chunked_multipart_upload_beyond_the_limit_is_refused_while_streaming() -> None:
    mib = b"\xff" * (1 << 20)
    body = _ChunkedBody(iter([_multipart_head(), *([mib] * 64)]))  # 64 MiB, no Content-Length
    with pytest.raises(ApiError) as info:
        asyncio.run(read_image(_streamed(MULTIPART, body), max_bytes=1 << 20))
    assert (info.value.status, info.value.reason) == (413, RejectReason.TOO_LARGE)
    # It stopped reading one chunk past the limit instead of spooling all 64 MiB to a temporary file.
    assert body.pulled <= (1 << 20) + MULTIPART_OVERHEAD + len(mib) + 1024


def test_a_multipart_file_within_the_limit_is_returned_with_its_part_type() -> None:
    body = _ChunkedBody(iter([_multipart(b"\x89PNG image bytes")]))
    data, ctype = asyncio.run(read_image(_streamed(MULTIPART, body), max_bytes=1024))
    assert (data, ctype) == (b"\x89PNG image bytes", "image/png")


@pytest.mark.parametrize(
    ("headers", "payload", "status", "reason"),
    [
        (
            MULTIPART,
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n--{BOUNDARY}--\r\n',
            422,
            RejectReason.EMPTY_IMAGE,
        ),
        (MULTIPART, "\x00junk without any boundary", 400, "bad-request"),
        ({"Content-Type": "multipart/form-data"}, "no boundary parameter", 400, "bad-request"),
        (
            MULTIPART,
            f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{BOUNDARY}--\r\n",
            400,
            "bad-request",
        ),
    ],
    ids=["no-file", "junk", "no-boundary", "part-without-name"],
)
def test_malformed_multipart_bodies_are_4xx_refusals(
    headers: dict[str, str], payload: str, status: int, reason: str
) -> None:
    body = _ChunkedBody(iter([payload.encode()]))
    with pytest.raises(ApiError) as info:
        asyncio.run(read_image(_streamed(headers, body), max_bytes=1024))
    assert (info.value.status, info.value.reason) == (status, reason)
