"""The committed protobuf code is what the schemas generate, and the messages round-trip."""

from __future__ import annotations

from pathlib import Path

from cli.protogen import OUT_DIR, generate


def test_generated_code_is_current(tmp_path: Path):
    generated = generate(tmp_path / "_proto")
    assert generated, "no .proto files were found"
    for fresh in generated:
        committed = OUT_DIR / fresh.relative_to(tmp_path / "_proto")
        assert committed.exists(), f"{committed} is missing: run `make protos`"
        assert committed.read_bytes() == fresh.read_bytes(), f"{committed} is stale: run `make protos`"


def test_image_event_round_trips_bytes_and_fields():
    from twinstream._proto.twinstream.v1 import events_pb2 as pb

    event = pb.ImageEvent(op=pb.OP_ENROLL, subject="s1", tenant="acme", top_k=3, image=b"\x89PNG\x00")
    back = pb.ImageEvent.FromString(event.SerializeToString())
    assert (back.op, back.subject, back.tenant, back.top_k, back.image) == (
        pb.OP_ENROLL,
        "s1",
        "acme",
        3,
        b"\x89PNG\x00",
    )
