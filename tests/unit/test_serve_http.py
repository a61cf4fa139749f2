"""HTTP edge rules: API keys, tenant binding, body limits and status codes (real Starlette requests)."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from services.api.http import ApiError, read_image, resolve_tenant, status_for
from twinstream.contracts import RejectReason

KEYS = {"k-all": "*", "k-acme": "acme"}


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


def _refusal(headers: dict[str, str], query: str = "", keys: dict[str, str] = KEYS) -> ApiError:
    with pytest.raises(ApiError) as info:
        resolve_tenant(_request(headers, query), keys)
    return info.value


def test_without_keys_configured_tenant_comes_from_header_query_or_default() -> None:
    assert resolve_tenant(_request({"X-Tenant": "a"}), {}) == "a"
    assert resolve_tenant(_request({}, "tenant=b"), {}) == "b"
    assert resolve_tenant(_request({}), {}) == "default"


def test_missing_or_wrong_key_is_401() -> None:
    assert _refusal({}).status == 401
    assert _refusal({"Authorization": "Bearer nope"}).status == 401
    assert _refusal({"Authorization": "Basic k-all"}).reason == "unauthorized"


def test_bound_key_defaults_to_its_tenant_and_is_refused_others() -> None:
    assert resolve_tenant(_request({"Authorization": "Bearer k-acme"}), KEYS) == "acme"
    assert resolve_tenant(_request({"Authorization": "Bearer k-acme", "X-Tenant": "acme"}), KEYS) == "acme"
    refused = _refusal({"Authorization": "Bearer k-acme", "X-Tenant": "other"})
    assert (refused.status, refused.reason) == (403, "forbidden")
    assert _refusal({"Authorization": "Bearer k-acme"}, "tenant=other").status == 403


def test_wildcard_key_may_use_any_tenant() -> None:
    assert resolve_tenant(_request({"Authorization": "Bearer k-all", "X-Tenant": "zz"}), KEYS) == "zz"


def test_malformed_tenant_is_400_bad_header() -> None:
    refused = _refusal({"X-Tenant": 'a" or 1'}, keys={})
    assert (refused.status, refused.reason) == (400, RejectReason.BAD_HEADER)


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
