"""Hardening of the deployed HTTP API (issue #16), against real Ray Serve, milvus-lite and Redis.

Input limits hold while a body streams, GIF is outside the format contract, a bug answers 500 with an
error id and a Redis that refuses writes answers 503 with Retry-After. Faults come from the real
services: a corrupt document in the result store, and the session's Redis set to refuse writes for
one request (its settings are restored right after).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import redis
from PIL import Image

from services.api.http import MULTIPART_OVERHEAD
from services.results.store import result_key
from tests.support.serving import ServedApp, png_bytes
from twinstream.contracts import DEFAULT_TENANT, Decision, RejectReason

pytestmark = pytest.mark.system
BOUNDARY = "hardening7f3"


def _digit(index: int) -> bytes:
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[index] * (255 / 16)).astype(np.uint8)
    return png_bytes(Image.fromarray(pixels, mode="L"))


def test_a_chunked_multipart_upload_beyond_the_limit_is_refused_413(served_app: ServedApp) -> None:
    limit = served_app.settings.limits.max_image_bytes
    chunk = b"\xff" * (64 * 1024)
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:  # a generator: httpx sends it chunked, without Content-Length
        yield head
        for _ in range((limit + MULTIPART_OVERHEAD) // len(chunk) + 4):
            yield chunk

    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    with served_app.client() as http:
        refused = http.post("/v1/identify", content=body(), headers=headers)
        assert (refused.status_code, refused.json()["reason"]) == (413, RejectReason.TOO_LARGE)
        assert http.post("/v1/identify", content=_digit(3), headers={"Content-Type": "image/png"}).is_success


def test_a_gif_is_refused_as_an_unsupported_format(served_app: ServedApp) -> None:
    gif = io.BytesIO()
    Image.new("L", (8, 8), 128).save(gif, format="GIF")
    with served_app.client() as http:
        refused = http.post("/v1/identify", content=gif.getvalue(), headers={"Content-Type": "image/gif"})
    assert (refused.status_code, refused.json()["reason"]) == (415, RejectReason.UNSUPPORTED_FORMAT)


def test_a_bug_answers_500_with_an_error_id(served_app: ServedApp, redis_url: str, unique_name: str) -> None:
    request_id = f"corrupt-{unique_name}"
    rds = redis.Redis.from_url(redis_url)
    rds.set(result_key(DEFAULT_TENANT, request_id), b'{"request_id": "corrupt", "op": ', ex=300)  # truncated
    with served_app.client() as http:
        failed = http.get(f"/v1/results/{request_id}")
    assert failed.status_code == 500
    body = failed.json()
    assert body["reason"] == "internal" and len(body["error_id"]) == 16
    assert body["error_id"] in body["detail"] and "Error" not in body["detail"]
    assert "Retry-After" not in failed.headers


@contextmanager
def _redis_refusing_writes(redis_url: str) -> Iterator[None]:
    """The session's Redis at its memory bound with nothing it may evict: every write is refused (OOM)."""
    rds = redis.Redis.from_url(redis_url)
    saved = {k: str(v) for k, v in rds.config_get("maxmemory*").items()}
    rds.config_set("maxmemory-policy", "noeviction")
    rds.config_set("maxmemory", 1)
    try:
        yield
    finally:
        rds.config_set("maxmemory", saved["maxmemory"])
        rds.config_set("maxmemory-policy", saved["maxmemory-policy"])


def test_a_redis_that_refuses_writes_answers_503_with_retry_after_and_the_retry_succeeds(
    served_app: ServedApp, redis_url: str, unique_name: str
) -> None:
    headers = {"Content-Type": "image/png", "X-Tenant": unique_name}
    with served_app.client() as http:
        with _redis_refusing_writes(redis_url):
            refused = http.post("/v1/subjects/seven/images", content=_digit(7), headers=headers)
            assert refused.status_code == 503
            assert refused.headers["Retry-After"].isdigit()
            assert refused.json()["reason"] == "unavailable"
            assert http.get("/v1/subjects", headers=headers).json()["subjects"] == []  # nothing written
        enrolled = http.post("/v1/subjects/seven/images", content=_digit(7), headers=headers)
        assert (enrolled.status_code, enrolled.json()["decision"]) == (201, Decision.ENROLLED)
        match = http.post("/v1/subjects/seven/verify", content=_digit(7), headers=headers).json()
        assert match["decision"] == Decision.MATCH
