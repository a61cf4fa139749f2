"""Property tests of the Kafka record decoder: any record gives a request or a rejection, never an exception,
and the tenants and subjects it lets through are exactly those `twinstream.names` accepts (one rule)."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinstream._proto.twinstream.v1 import events_pb2 as pb
from twinstream.codec import KafkaRecord, RecordRejection, decode_record
from twinstream.config import LimitsSettings
from twinstream.contracts import ImageRequest, Op, RejectReason
from twinstream.names import is_valid

LIMITS = LimitsSettings(max_image_bytes=4096)
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KNOWN = ("op", "subject", "tenant", "request-id", "top-k", "content-type")
ID_CHARS = string.ascii_letters + string.digits + "_.:@+-"

# Names: the known ones in any case with stray spaces, the dead-letter ones, anything else.
header_names = st.one_of(
    st.sampled_from(KNOWN).flatmap(
        lambda n: st.tuples(st.sampled_from(["", " ", "\t"]), st.booleans(), st.sampled_from(["", " "])).map(
            lambda t: t[0] + (n.upper() if t[1] else n) + t[2]
        )
    ),
    st.sampled_from(["error-reason", "dead-letter", "faces", ""]),
    st.text(max_size=20),
)
#: Id-like text: near-misses of the id alphabet (quotes, spaces, newlines, unicode) as well as valid ids.
id_text = st.one_of(
    st.text(alphabet=ID_CHARS, min_size=1, max_size=130),
    st.text(alphabet=ID_CHARS + " \n\t\"'\\`$é\x00\x7f", max_size=70),
    st.text(max_size=300),
)
header_values = st.one_of(
    st.none(),
    st.binary(max_size=40),  # bytes that are often not UTF-8
    st.sampled_from([o.value for o in Op] + ["ENROLL", "dance", "", "3", "0", "101", "-1", "1e3"]).map(
        str.encode
    ),
    id_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
)
headers = st.lists(st.tuples(header_names, header_values), max_size=8).flatmap(
    # Duplicates: repeat some of the drawn headers, with the same value or another.
    lambda hs: st.lists(st.sampled_from(hs), max_size=3).map(lambda dup: (*hs, *dup)) if hs else st.just(())
)
envelopes = st.builds(
    pb.ImageEvent,
    op=st.integers(min_value=0, max_value=7),
    subject=id_text,
    tenant=id_text,
    request_id=id_text,
    top_k=st.integers(min_value=0, max_value=2**31 - 1),
    content_type=st.text(max_size=20),
    image=st.binary(max_size=64),
    produced_at_ms=st.integers(min_value=-(2**63), max_value=2**63 - 1),
).map(lambda e: e.SerializeToString())
bodies = st.one_of(st.none(), st.binary(max_size=5000), envelopes)


def kafka_record(value: bytes | None, hdrs: tuple[tuple[str, bytes | None], ...]) -> KafkaRecord:
    return KafkaRecord("images", 3, 41, value, hdrs, key=None, timestamp_ms=1)


@FUZZ
@given(value=bodies, hdrs=headers, envelope=st.booleans())
def test_any_record_decodes_to_a_request_or_a_rejection(value, hdrs, envelope):
    if envelope:
        hdrs = (*hdrs, ("content-type", b"application/x-protobuf"))
    out = decode_record(kafka_record(value, hdrs), LIMITS)
    assert isinstance(out, ImageRequest | RecordRejection)
    # A rejection's result is stored and published under its tenant too: never an unchecked one.
    assert is_valid("tenant", out.tenant)
    assert out.subject == "" or is_valid("subject", out.subject)


def _tenant_accepted(out: ImageRequest | RecordRejection) -> bool:
    return isinstance(out, ImageRequest) or "tenant" not in out.rejection.detail


@FUZZ
@given(tenant=id_text)
def test_a_tenant_header_is_accepted_exactly_when_twinstream_names_accepts_it(tenant):
    hdrs = (("op", b"identify"), ("tenant", tenant.encode("utf-8", "surrogatepass")))
    out = decode_record(kafka_record(b"image bytes", hdrs), LIMITS)
    assert _tenant_accepted(out) == (tenant == "" or is_valid("tenant", tenant)), out
    if isinstance(out, ImageRequest) and tenant:
        assert out.tenant == tenant


@FUZZ
@given(subject=id_text)
def test_a_subject_header_is_accepted_exactly_when_twinstream_names_accepts_it(subject):
    hdrs = (("op", b"verify"), ("subject", subject.encode("utf-8", "surrogatepass")))
    out = decode_record(kafka_record(b"image bytes", hdrs), LIMITS)
    assert isinstance(out, ImageRequest) == is_valid("subject", subject), out
    if isinstance(out, ImageRequest):
        assert out.subject == subject
    elif subject == "":
        assert out.rejection.reason == RejectReason.MISSING_SUBJECT
    else:
        assert out.rejection.reason == RejectReason.BAD_HEADER


@FUZZ
@given(tenant=id_text, subject=id_text)
def test_envelope_ids_follow_the_same_rule_as_headers(tenant, subject):
    event = pb.ImageEvent(op=pb.OP_VERIFY, tenant=tenant, subject=subject, image=b"image bytes")
    hdrs = (("content-type", b"application/x-protobuf"),)
    out = decode_record(kafka_record(event.SerializeToString(), hdrs), LIMITS)
    ok = (tenant == "" or is_valid("tenant", tenant)) and is_valid("subject", subject)
    assert isinstance(out, ImageRequest) == ok, out
