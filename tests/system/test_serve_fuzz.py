"""Fuzzing the deployed HTTP API: whatever a caller sends, the answer is 2xx or a 4xx refusal, never a 500.

Hypothesis draws requests for every operation in the app's own ``/openapi.json`` (enrol, verify, identify,
delete, list, results, embed, healthz): path ids of any unicode (slashes, very long), query strings,
``X-Tenant`` / ``Authorization`` / ``Content-Type`` headers of arbitrary bytes, bodies of random bytes,
truncated or whole PNGs, GIFs, multipart junk; and, over a raw socket, bodies shorter or longer than
their ``Content-Length``. Each request goes to the real Ray Serve app of the session (real Milvus and
Redis behind it). The app must answer every one with 2xx, 3xx (FastAPI's trailing-slash redirect) or
4xx (4xx as ``{"reason", "detail"}``), and still be healthy at the end.
"""

from __future__ import annotations

import io
import json
import re
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.support.serving import ADMIN_KEY, BOUND_TENANT, TENANT_KEY, ServedApp, png_bytes

pytestmark = pytest.mark.system

EXAMPLES = 300
#: Every route of the app; the test fails if the app's OpenAPI lists fewer or more.
ROUTES = {
    ("get", "/healthz"),
    ("post", "/v1/embed"),
    ("post", "/v1/subjects/{subject}/images"),
    ("post", "/v1/subjects/{subject}/verify"),
    ("post", "/v1/identify"),
    ("delete", "/v1/subjects/{subject}"),
    ("get", "/v1/subjects"),
    ("get", "/v1/results/{request_id}"),
    ("get", "/v1/tenants/{tenant}/policy"),
    ("put", "/v1/tenants/{tenant}/policy"),
}
#: Bytes h11 lets a client put in a header value (VCHAR, obs-text, space, tab; not at either end).
_HEADER_BYTES = st.binary(min_size=1, max_size=80).map(
    lambda raw: bytes(b if b in (9, 32) or 33 <= b <= 126 or b >= 128 else 65 for b in raw).strip() or b"x"
)


def _digit_png(index: int) -> bytes:
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[index] * (255 / 16)).astype(np.uint8)
    return png_bytes(Image.fromarray(pixels, mode="L"))


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (8, 8), 90).save(buf, format="GIF")
    return buf.getvalue()


PNG = _digit_png(5)
GIF = _gif()
BOUNDARY = "fuzzb0undary"


def _multipart(payload: bytes, name: str = "file", filename: str | None = "x.png") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: image/png\r\n\r\n"
    return head.encode() + payload + f"\r\n--{BOUNDARY}--\r\n".encode()


_IDS = st.one_of(
    st.sampled_from(["alice", "alice", "bob.smith", "x" * 128, "x" * 129, "-lead", "a:b@c+d", "", ".", ".."]),
    st.text(max_size=40),
    st.text(min_size=200, max_size=600),  # quoted: up to ~7 KB, inside the HTTP server's 16 KB head
    st.lists(st.text(max_size=8), min_size=2, max_size=4).map("/".join),
)
_BODIES = st.one_of(
    st.just(b""),
    st.binary(max_size=2048),
    st.sampled_from([PNG, PNG, _multipart(PNG)]),  # whole images, so requests get past decoding too
    st.integers(1, len(PNG) - 1).map(lambda n: PNG[:n]),
    st.just(GIF),
    st.binary(max_size=512).map(_multipart),
    st.just(_multipart(PNG, filename=None)),
    st.binary(max_size=256).map(lambda junk: f"--{BOUNDARY}\r\n".encode() + junk),
    # Policy documents: in range, out of range, wrong types, unknown keys, not JSON at all.
    st.dictionaries(
        st.sampled_from(["verify_far", "identify_fpir", "other"]),
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=8), st.none()
        ),
        max_size=3,
    ).map(lambda doc: json.dumps(doc).encode()),
)


def _weighted(*choices: tuple[int, st.SearchStrategy[bytes | None]]) -> st.SearchStrategy[bytes | None]:
    """``st.one_of`` picks its branches about evenly; these headers should mostly be well formed."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


_CONTENT_TYPES = _weighted(
    (1, st.none()),
    (6, st.sampled_from([b"image/png", f"multipart/form-data; boundary={BOUNDARY}".encode()])),
    (
        2,
        st.sampled_from(
            [
                b"image/gif",
                b"image/svg+xml",
                b"application/octet-stream",
                b"application/json",
                b"text/plain",
                b"multipart/form-data",
                b"multipart/form-data; boundary=",
                b"image/",
            ]
        ),
    ),
    (1, _HEADER_BYTES),
)
_AUTH = _weighted(
    (7, st.just(f"Bearer {ADMIN_KEY}".encode())),
    (1, st.sampled_from([f"Bearer {TENANT_KEY}", "Bearer", "Basic abc", ""]).map(str.encode)),
    (1, _HEADER_BYTES.map(lambda v: b"Bearer " + v)),
    (1, st.none()),
)
_TENANTS = _weighted(
    (4, st.none()),
    (4, st.sampled_from([b"fuzz", b"fuzz2", BOUND_TENANT.encode()])),
    (2, _HEADER_BYTES),
)
_QUERY_VALUES = st.one_of(
    st.sampled_from(["0", "1", "-1", "5", "100", "1e3", "", "fuzz", BOUND_TENANT]), st.text(max_size=30)
)
_QUERIES = st.dictionaries(
    st.sampled_from(["top_k", "tenant", "x"]) | st.text(max_size=10), _QUERY_VALUES, max_size=3
)


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, bytes]
    body: bytes
    length_delta: int = 0  # raw socket only: Content-Length minus the real length (0: httpx, exact)


@st.composite
def _requests(draw: st.DrawFn, operations: list[tuple[str, str]]) -> FuzzRequest:
    method, template = draw(st.sampled_from(operations))
    path = template
    for name in ("{subject}", "{request_id}", "{tenant}"):
        if name in path:
            safe = draw(st.sampled_from(["", "", "", "/"]))  # mostly one segment, sometimes real slashes
            raw_id = draw(st.one_of(st.sampled_from(["alice", "bob.smith", "carol"]), _IDS))
            path = path.replace(name, quote(raw_id, safe=safe))
    headers = {
        name: value
        for name, value in (
            ("Authorization", draw(_AUTH)),
            ("X-Tenant", draw(_TENANTS)),
            ("Content-Type", draw(_CONTENT_TYPES)),
        )
        if value is not None
    }
    delta = draw(st.sampled_from([0] * 8 + [-7, 5]))
    body = draw(_BODIES)
    return FuzzRequest(method.upper(), path, draw(_QUERIES), headers, body, delta if body else 0)


@dataclass
class Tally:
    statuses: dict[int, int] = field(default_factory=dict)

    def add(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


def _raw(app: ServedApp, request: FuzzRequest) -> int | None:
    """Send with a Content-Length that lies; the status of the first answer, None when the app hung up."""
    url = urlsplit(app.url)
    target = f"{url.path}{request.path}"
    head = [f"{request.method} {target} HTTP/1.1", f"Host: {url.netloc}", "Connection: close",
            f"Content-Length: {len(request.body) + request.length_delta}"]  # fmt: skip
    data = "\r\n".join(head).encode() + b"".join(
        b"\r\n" + k.encode() + b": " + v for k, v in request.headers.items()
    )
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(data + b"\r\n\r\n" + request.body)
        sock.shutdown(socket.SHUT_WR)  # a body shorter than declared ends here
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    if not reply:
        return None
    answer, _, body = reply.partition(b"\r\n\r\n")
    status = int(answer.split(b" ", 2)[1])
    declared = re.search(rb"(?im)^content-length:\s*(\d+)", answer)
    size = int(declared.group(1)) if declared else -1
    # One of ours is JSON (the HTTP server's own refusals of a broken request are not). Judge the first
    # answer only (bytes past a short Content-Length may draw a second) and only when it arrived whole:
    # a server may hang up mid-answer on a request whose framing lied.
    if status >= 400 and b"application/json" in answer.lower() and 0 <= size <= len(body):
        assert {"reason", "detail"} <= set(json.loads(body[:size])), reply[:300]
    return status


def _sent(http: httpx.Client, request: FuzzRequest) -> int:
    response = http.request(
        request.method,
        request.path,
        params=request.query,
        headers={name.encode(): value for name, value in request.headers.items()},
        content=request.body,
    )
    if response.status_code >= 400 and response.headers.get("content-type") != "application/json":
        # Only the HTTP server itself answers in plain text, refusing a request it cannot parse.
        assert response.status_code in (400, 414, 431), response.text[:300]
    elif response.status_code >= 400:
        assert {"reason", "detail"} <= set(response.json()), response.text[:300]
    return response.status_code


def test_no_request_makes_the_deployed_app_answer_500(served_app: ServedApp) -> None:
    with served_app.client(key="") as http:
        spec = http.get("/openapi.json").json()
    operations = sorted(
        (method, path) for path, item in spec["paths"].items() for method in item if method != "parameters"
    )
    assert set(operations) == ROUTES
    tally = Tally()
    started = time.monotonic()
    client = httpx.Client(base_url=served_app.url, timeout=60)

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )  # fmt: skip
    @given(_requests(operations))
    def one_request(request: FuzzRequest) -> None:
        status = _raw(served_app, request) if request.length_delta else _sent(client, request)
        if status is not None:
            tally.add(status)
            assert status < 500, f"{status} for {request!r:.600}"

    try:
        one_request()
    finally:
        client.close()
    elapsed = time.monotonic() - started
    print(
        f"fuzzed {sum(tally.statuses.values())} requests in {elapsed:.0f} s: {sorted(tally.statuses.items())}"
    )
    assert any(200 <= status < 300 for status in tally.statuses)  # it got past the refusals too
    with served_app.client() as http:
        assert http.get("/healthz").json()["status"] == "ok"
