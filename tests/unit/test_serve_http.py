"""HTTP edge rules: body limits and status codes (real Starlette requests)."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from services.api.http import ApiError, read_image, status_for
from twinstream.contracts import RejectReason


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
