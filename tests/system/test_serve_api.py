"""The HTTP API and the pipeline handle against real Ray Serve, milvus-lite and Redis."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.support.serving import BOUND_TENANT, TENANT_KEY, ServedApp, png_bytes
from twinstream.contracts import Decision, ImageRequest, Op, RejectReason

pytestmark = pytest.mark.system


def _digit(index: int) -> bytes:
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[index] * (255 / 16)).astype(np.uint8)
    return png_bytes(Image.fromarray(pixels, mode="L"))


def _bomb() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
        + chunk(b"IEND", b"")
    )


PNG = {"Content-Type": "image/png"}


def test_healthz_and_openapi_docs(served_app: ServedApp) -> None:
    with served_app.client() as http:
        health = http.get("/healthz").json()
        version = served_app.manifest.version
        assert health == {"status": "ok", "model_version": version, "loaded_versions": [version]}
        assert http.get("/docs").status_code == 200
        paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/embed", "/v1/identify", "/v1/subjects", "/v1/subjects/{subject}/verify"} <= set(paths)


def test_embed_returns_a_unit_vector_of_the_model_dimension(served_app: ServedApp, unique_name: str) -> None:
    with served_app.client() as http:
        body = http.post("/v1/embed", content=_digit(0), headers={**PNG, "X-Tenant": unique_name}).json()
    assert body["dim"] == served_app.manifest.embedding_dim
    assert np.linalg.norm(body["embedding"]) == pytest.approx(1.0, abs=1e-4)


def test_enroll_verify_identify_list_result_and_delete(served_app: ServedApp, unique_name: str) -> None:
    headers = {**PNG, "X-Tenant": unique_name}
    with served_app.client() as http:
        first = http.post("/v1/subjects/zero/images", content=_digit(0), headers=headers)
        assert first.status_code == 201
        assert first.json()["decision"] == Decision.ENROLLED
        again = http.post("/v1/subjects/zero/images", content=_digit(0), headers=headers)
        assert (again.status_code, again.json()["decision"]) == (200, Decision.DUPLICATE)
        files = {"file": ("one.png", _digit(1), "image/png")}
        multipart = http.post("/v1/subjects/one/images", files=files, headers={"X-Tenant": unique_name})
        assert multipart.status_code == 201

        same = http.post("/v1/subjects/zero/verify", content=_digit(0), headers=headers).json()
        assert same["decision"] == Decision.MATCH
        assert same["distance"] == pytest.approx(0.0, abs=1e-3)
        assert same["threshold"] == pytest.approx(served_app.manifest.threshold)
        assert 0.0 <= same["probability"] <= 1.0

        found = http.post("/v1/identify", params={"top_k": 2}, content=_digit(1), headers=headers)
        body = found.json()
        assert (body["decision"], body["subject"]) == (Decision.MATCH, "one")
        assert [c["subject"] for c in body["candidates"]] == ["one", "zero"]
        stored = http.get(f"/v1/results/{body['request_id']}", headers=headers).json()
        assert stored["request_id"] == body["request_id"]
        assert stored["decision"] == Decision.MATCH

        listed = http.get("/v1/subjects", params={"tenant": unique_name}).json()
        assert listed["subjects"] == [{"subject": "one", "images": 1}, {"subject": "zero", "images": 1}]
        deleted = http.delete("/v1/subjects/zero", headers=headers)
        assert (deleted.status_code, deleted.json()["decision"]) == (200, Decision.DELETED)
        assert http.delete("/v1/subjects/zero", headers=headers).status_code == 404
        gone = http.post("/v1/subjects/zero/verify", content=_digit(0), headers=headers)
        assert (gone.status_code, gone.json()["reason"]) == (404, RejectReason.UNKNOWN_SUBJECT)
        assert http.get("/v1/subjects", headers=headers).json()["subjects"] == [
            {"subject": "one", "images": 1}
        ]


def test_tenant_never_sees_another_tenants_subjects_or_results(
    served_app: ServedApp, unique_name: str
) -> None:
    a, b = f"{unique_name}a", f"{unique_name}b"
    with served_app.client() as http:
        http.post("/v1/subjects/alice/images", content=_digit(5), headers={**PNG, "X-Tenant": a})
        own = http.post("/v1/identify", content=_digit(5), headers={**PNG, "X-Tenant": a})
        assert own.json()["subject"] == "alice"
        other = http.post("/v1/identify", content=_digit(5), headers={**PNG, "X-Tenant": b}).json()
        assert (other["decision"], other["candidates"]) == (Decision.UNKNOWN, [])
        assert http.get("/v1/subjects", headers={"X-Tenant": b}).json()["subjects"] == []
        verify = http.post("/v1/subjects/alice/verify", content=_digit(5), headers={**PNG, "X-Tenant": b})
        assert verify.status_code == 404
        rid = own.json()["request_id"]
        assert http.get(f"/v1/results/{rid}", headers={"X-Tenant": b}).status_code == 404
        assert http.get(f"/v1/results/{rid}", headers={"X-Tenant": a}).status_code == 200
        assert http.delete("/v1/subjects/alice", headers={"X-Tenant": b}).status_code == 404
        assert http.get("/v1/subjects", headers={"X-Tenant": a}).json()["subjects"][0]["subject"] == "alice"


def test_api_keys_refuse_missing_keys_and_other_tenants(served_app: ServedApp) -> None:
    with served_app.client(key="") as anonymous:
        refused = anonymous.get("/v1/subjects")
        assert (refused.status_code, refused.json()["reason"]) == (401, "unauthorized")
        assert anonymous.post("/v1/identify", content=_digit(0), headers=PNG).status_code == 401
    with served_app.client(key="wrong-key") as wrong:
        assert wrong.get("/v1/subjects").status_code == 401
    with served_app.client(key=TENANT_KEY) as bound:
        assert bound.get("/v1/subjects").json()["tenant"] == BOUND_TENANT
        enrolled = bound.post("/v1/subjects/s/images", content=_digit(3), headers=PNG)
        assert enrolled.status_code in (200, 201)
        cross = bound.get("/v1/subjects", headers={"X-Tenant": "someone-else"})
        assert (cross.status_code, cross.json()["reason"]) == (403, "forbidden")
        write = bound.post("/v1/subjects/s/images", content=_digit(3), headers={**PNG, "X-Tenant": "x"})
        assert write.status_code == 403


@pytest.mark.parametrize(
    "case",
    [
        (b"definitely not an image" * 4, "image/png", 422, RejectReason.UNDECODABLE_IMAGE),
        (None, "image/png", 422, RejectReason.UNDECODABLE_IMAGE),  # truncated
        (b"\0" * (11 * 1024 * 1024), "image/png", 413, RejectReason.TOO_LARGE),
        (_bomb(), "image/png", 413, RejectReason.TOO_MANY_PIXELS),
        (b"GIF87a", "text/plain", 415, RejectReason.UNSUPPORTED_FORMAT),
        (b"", "image/png", 422, RejectReason.EMPTY_IMAGE),
    ],
    ids=["corrupt", "truncated", "oversized", "bomb", "not-an-image-type", "empty"],
)
def test_bad_images_are_refused_with_reason_and_service_keeps_answering(
    served_app: ServedApp, case: tuple[bytes | None, str, int, str]
) -> None:
    body, content_type, status, reason = case
    if body is None:
        full = io.BytesIO()
        Image.effect_noise((64, 64), 60).convert("L").save(full, format="PNG")
        body = full.getvalue()[:200]
    with served_app.client() as http:
        refused = http.post("/v1/identify", content=body, headers={"Content-Type": content_type})
        assert (refused.status_code, refused.json()["reason"]) == (status, reason)
        assert http.post("/v1/identify", content=_digit(2), headers=PNG).status_code == 200


def test_bad_query_parameter_is_a_4xx_json_refusal(served_app: ServedApp) -> None:
    with served_app.client() as http:
        refused = http.post("/v1/identify", params={"top_k": "many"}, content=_digit(0), headers=PNG)
    assert (refused.status_code, refused.json()["reason"]) == (422, "bad-request")


def test_handle_processes_a_mixed_batch_in_order(served_app: ServedApp, unique_name: str) -> None:
    requests = [
        ImageRequest("r0", Op.ENROLL, _digit(7), unique_name, "seven"),
        ImageRequest("r1", Op.ENROLL, _digit(7), unique_name, "seven"),  # same image in the batch
        ImageRequest("r2", Op.IDENTIFY, b"garbage", unique_name),
        ImageRequest("r3", Op.VERIFY, _digit(17), unique_name, ""),
        ImageRequest("r4", Op.DELETE, tenant=unique_name, subject="nobody"),
    ]
    results = served_app.handle.process.remote(requests).result()  # type: ignore[attr-defined]
    assert [r.request_id for r in results] == ["r0", "r1", "r2", "r3", "r4"]
    assert [r.decision for r in results] == [
        Decision.ENROLLED, Decision.DUPLICATE, Decision.REJECTED, Decision.REJECTED, Decision.DELETED,
    ]  # fmt: skip
    assert results[2].error_reason == RejectReason.UNDECODABLE_IMAGE
    assert results[3].error_reason == RejectReason.MISSING_SUBJECT
    assert all(r.model_version == served_app.manifest.version for r in (results[0], results[4]))
    follow = [ImageRequest("r5", Op.VERIFY, _digit(7), unique_name, "seven")]
    (verdict,) = served_app.handle.process.remote(follow).result()  # type: ignore[attr-defined]
    assert verdict.decision == Decision.MATCH
    assert verdict.timings.total_s > 0
