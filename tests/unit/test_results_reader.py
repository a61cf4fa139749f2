"""What the results reader skips: on garbage `decode_result` raises only `UNDECODABLE_RESULT_ERRORS`."""

from __future__ import annotations

import contextlib

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.results_reader import UNDECODABLE_RESULT_ERRORS
from twinstream.codec import decode_result, result_to_json, result_to_protobuf
from twinstream.contracts import Decision, MatchResult, Op

json_documents = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.integers(-(2**60), 2**60),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
# Result-shaped documents with wrong types or values in the fields the decoder reads.
result_like = st.fixed_dictionaries(
    {"request_id": json_documents, "decision": st.sampled_from(["MATCH", "NOPE", 3, None])},
    optional={
        name: json_documents
        for name in ("op", "source", "candidates", "timings", "distance", "error_reason", "tenant")
    },
)
garbage = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=100).map(lambda b: b"{" + b),
    json_documents.map(orjson.dumps),
    result_like.map(orjson.dumps),
)


@settings(max_examples=150, deadline=None)
@given(
    value=garbage,
    content_type=st.sampled_from([None, b"application/json", b"application/x-protobuf", b"\xff"]),
)
def test_garbage_on_the_results_topic_raises_only_what_the_reader_skips(value, content_type):
    headers = () if content_type is None else (("content-type", content_type),)
    with contextlib.suppress(UNDECODABLE_RESULT_ERRORS):  # anything else fails the test
        decode_result(value, headers)


def test_real_results_still_decode_in_both_formats():
    result = MatchResult("[/red]", Op.IDENTIFY, Decision.UNKNOWN, tenant="t")
    assert decode_result(result_to_json(result)) == result
    assert decode_result(result_to_protobuf(result), (("content-type", b"application/x-protobuf"),)) == result
