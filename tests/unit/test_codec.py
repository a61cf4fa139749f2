"""Kafka record ⇄ contract translation: headers, envelopes, results and dead-letter metadata."""

from __future__ import annotations

import orjson
import pytest

from twinstream.codec import (
    DeadLetterInfo,
    KafkaRecord,
    RecordRejection,
    dead_letter_headers,
    decode_record,
    decode_result,
    encode_image_event,
    encode_result,
    encode_results,
    read_dead_letter,
    request_headers,
    result_from_dict,
    result_from_json,
    result_from_protobuf,
    result_to_json,
    result_to_protobuf,
)
from twinstream.config import LimitsSettings
from twinstream.contracts import (
    Candidate,
    Decision,
    FaceAnswer,
    FaceBox,
    ImageRequest,
    MatchResult,
    Op,
    OperatingPoint,
    PolicyKind,
    RejectReason,
    SourceRef,
    Timings,
)

LIMITS = LimitsSettings(max_image_bytes=2048)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


def record(value: bytes | None = PNG, offset: int = 7, **headers: str | bytes) -> KafkaRecord:
    encoded = tuple(
        (k.replace("_", "-"), v if isinstance(v, bytes) else v.encode()) for k, v in headers.items()
    )
    return KafkaRecord("images", 2, offset, value, encoded, timestamp_ms=1234)


def rejection_of(rec: KafkaRecord) -> RecordRejection:
    out = decode_record(rec, LIMITS)
    assert isinstance(out, RecordRejection), out
    return out


def test_raw_bytes_with_headers_become_a_request_with_defaults() -> None:
    out = decode_record(record(op="enroll", subject="alice"), LIMITS)
    assert isinstance(out, ImageRequest)
    assert (out.op, out.subject, out.tenant, out.top_k) == (Op.ENROLL, "alice", "default", 5)
    assert out.request_id == "images-2-7"
    assert out.image == PNG
    assert out.source == SourceRef("images", 2, 7, 1234)
    assert out.produced_at_ms == 1234


def test_missing_op_defaults_to_identify_and_headers_are_case_insensitive() -> None:
    headers = (("Tenant", b"acme"), ("TOP-K", b"3"), ("x-trace", b"\xff"))
    out = decode_record(KafkaRecord("images", 2, 7, PNG, headers), LIMITS)
    assert isinstance(out, ImageRequest)
    assert (out.op, out.tenant, out.top_k) == (Op.IDENTIFY, "acme", 3)


def test_explicit_request_id_is_kept() -> None:
    out = decode_record(record(op="identify", request_id="r-42"), LIMITS)
    assert isinstance(out, ImageRequest) and out.request_id == "r-42"


@pytest.mark.parametrize(
    ("rec", "reason"),
    [
        (record(op="explode", subject="a"), RejectReason.UNKNOWN_OP),
        (record(op="verify"), RejectReason.MISSING_SUBJECT),
        (record(op="enroll", subject=b"\xff\xfe"), RejectReason.BAD_HEADER),
        (record(top_k="many"), RejectReason.BAD_HEADER),
        (record(top_k="0"), RejectReason.BAD_HEADER),
        (record(tenant='x" or 1==1'), RejectReason.BAD_HEADER),
        (record(op="enroll", subject='bob" or subject != "'), RejectReason.BAD_HEADER),
        (record(value=b"x" * 4096, op="identify"), RejectReason.TOO_LARGE),
        (record(value=None, op="identify"), RejectReason.EMPTY_IMAGE),
        (record(value=b"\x0a\xff\xff\xff", content_type="application/x-protobuf"), RejectReason.BAD_ENVELOPE),
    ],
)
def test_bad_records_are_refused_with_a_stable_reason(rec: KafkaRecord, reason: RejectReason) -> None:
    out = rejection_of(rec)
    assert out.rejection.reason == reason
    assert out.request_id == "images-2-7"
    result = out.to_result()
    assert result.decision == Decision.REJECTED and result.error_reason == reason


def test_conflicting_duplicate_headers_are_refused() -> None:
    rec = KafkaRecord("images", 0, 1, PNG, (("op", b"enroll"), ("op", b"verify"), ("subject", b"a")))
    assert rejection_of(rec).rejection.reason == RejectReason.BAD_HEADER


def test_delete_needs_no_image() -> None:
    out = decode_record(record(value=None, op="delete", subject="alice"), LIMITS)
    assert isinstance(out, ImageRequest) and out.op == Op.DELETE and out.image == b""


def test_envelope_round_trips_and_overrides_headers() -> None:
    req = ImageRequest("rid-1", Op.VERIFY, PNG, "acme", "bob", 9, "image/png", 99, None)
    value, headers = encode_image_event(req)
    out = decode_record(KafkaRecord("images", 1, 3, value, (*headers, ("tenant", b"other"))), LIMITS)
    assert isinstance(out, ImageRequest)
    assert (out.request_id, out.op, out.tenant, out.subject, out.top_k) == (
        "rid-1",
        Op.VERIFY,
        "acme",
        "bob",
        9,
    )
    assert (out.image, out.content_type, out.produced_at_ms) == (PNG, "image/png", 99)


def test_envelope_without_image_is_a_bad_envelope() -> None:
    value, headers = encode_image_event(ImageRequest("r", Op.IDENTIFY, b""))
    assert rejection_of(KafkaRecord("images", 0, 0, value, tuple(headers))).rejection.reason == (
        RejectReason.BAD_ENVELOPE
    )


def test_request_headers_decode_back_to_the_same_request() -> None:
    req = ImageRequest("rid", Op.ENROLL, PNG, "t1", "carol", 7, "image/png")
    out = decode_record(KafkaRecord("images", 0, 5, PNG, tuple(request_headers(req)), timestamp_ms=5), LIMITS)
    assert isinstance(out, ImageRequest)
    assert (out.request_id, out.op, out.tenant, out.subject, out.top_k) == (
        "rid",
        Op.ENROLL,
        "t1",
        "carol",
        7,
    )


FULL = MatchResult(
    request_id="r1",
    op=Op.IDENTIFY,
    decision=Decision.MATCH,
    tenant="acme",
    subject="alice",
    distance=0.125,
    probability=0.875,
    threshold=0.5,
    candidates=(Candidate("alice", 0.125, 0.875), Candidate("bob", 0.75, 0.1)),
    model_version="v3",
    source=SourceRef("images", 1, 99, 1700000000000),
    timings=Timings(0.001, 0.002, 0.003, 0.01),
)
REJECTED = MatchResult(
    request_id="r2",
    op=None,
    decision=Decision.REJECTED,
    error_reason=RejectReason.TOO_LARGE,
    error_detail="big",
)


GROUP = MatchResult(
    request_id="r4",
    op=Op.IDENTIFY,
    decision=Decision.MATCH,
    subject="bob",
    distance=0.3,
    probability=0.97,
    policy=OperatingPoint(PolicyKind.FPIR, 0.01, 0.45, 0.9, gallery_size=120),
    face=FaceBox(10, 20, 60, 80),
    faces_found=2,
    faces=(
        FaceAnswer(FaceBox(10, 20, 60, 80), Decision.MATCH, "bob", 0.3, 0.97, (Candidate("bob", 0.3, 0.97),)),
        FaceAnswer(FaceBox(100, 20, 140, 70), Decision.UNKNOWN),
    ),
)


@pytest.mark.parametrize(
    "result", [FULL, REJECTED, GROUP, MatchResult("r3", Op.ENROLL, Decision.ENROLLED, distance=0.0)]
)
def test_results_round_trip_through_json_and_protobuf(result: MatchResult) -> None:
    assert result_from_json(result_to_json(result)) == result
    assert result_from_protobuf(result_to_protobuf(result)) == result
    for fmt in ("json", "protobuf"):
        value, content_type = encode_result(result, fmt)
        assert decode_result(value, [("content-type", content_type.encode())]) == result
        assert decode_result(value) == result


def test_result_json_uses_proto_field_names_and_plain_enum_values() -> None:
    text = result_to_json(FULL).decode()
    for fragment in ('"request_id":"r1"', '"decision":"MATCH"', '"op":"identify"', '"model_version":"v3"'):
        assert fragment in text


def test_dead_letter_headers_keep_the_original_and_add_reason_detail_and_metadata() -> None:
    info = DeadLetterInfo("r9", RejectReason.UNKNOWN_OP, "op 'x'", SourceRef("images", 3, 11, 5), 77, "w-1")
    original = [("op", b"x"), ("error-reason", b"stale"), ("x-custom", b"\x00\x01")]
    headers = dead_letter_headers(original, info)
    names = [name for name, _ in headers]
    assert names.count("error-reason") == 1
    assert ("op", b"x") in headers and ("x-custom", b"\x00\x01") in headers
    assert dict(headers)["error-reason"] == b"unknown-op"
    assert dict(headers)["error-detail"] == b"op 'x'"
    assert read_dead_letter(headers) == info


def test_reading_a_record_without_dead_letter_metadata_fails_clearly() -> None:
    with pytest.raises(ValueError, match="dead-letter"):
        read_dead_letter([("op", b"enroll")])


BATCH = [FULL, REJECTED, MatchResult("r3", Op.ENROLL, Decision.ENROLLED, distance=0.0)]


def test_encode_results_gives_each_result_its_one_json_document_or_its_protobuf() -> None:
    values, content_type = encode_results(BATCH, "json")
    assert content_type == "application/json" and values == [result_to_json(r) for r in BATCH]
    assert [result_from_json(v) for v in values] == BATCH
    values, content_type = encode_results(BATCH, "protobuf")
    assert [result_from_protobuf(v) for v in values] == BATCH
    assert content_type == encode_result(FULL, "protobuf")[1]


def test_result_json_reads_null_enums_and_refuses_unknown_enum_values() -> None:
    # A producer writing null for an absent enum (as JSON encoders do for None) is read too.
    doc = orjson.loads(result_to_json(REJECTED))
    doc.update(op=None, source=None)
    assert result_from_dict(doc) == REJECTED
    with pytest.raises(ValueError, match="'maybe'"):
        result_from_dict({**doc, "decision": "maybe"})
    with pytest.raises(ValueError):
        result_from_dict({**doc, "op": ["identify"]})
    with pytest.raises(KeyError):
        result_from_dict({"decision": "MATCH"})


def test_the_faces_header_asks_for_every_face_and_anything_else_is_refused() -> None:
    headers = [("op", b"identify"), ("faces", b"all")]
    request = decode_record(KafkaRecord("images", 0, 1, b"img", headers), LimitsSettings())
    assert isinstance(request, ImageRequest) and request.all_faces
    assert request_headers(request)[-1] == ("faces", b"all")
    plain = decode_record(KafkaRecord("images", 0, 2, b"img", [("op", b"identify")]), LimitsSettings())
    assert isinstance(plain, ImageRequest) and not plain.all_faces
    refused = decode_record(KafkaRecord("images", 0, 3, b"img", [("faces", b"some")]), LimitsSettings())
    assert isinstance(refused, RecordRejection) and refused.rejection.reason == RejectReason.BAD_HEADER
    value, envelope_headers = encode_image_event(request)
    again = decode_record(KafkaRecord("images", 0, 4, value, envelope_headers), LimitsSettings())
    assert isinstance(again, ImageRequest) and again.all_faces
