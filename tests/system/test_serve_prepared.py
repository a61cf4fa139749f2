"""The Serve pipeline's prepared entry (images decoded by the worker) against real Serve, Milvus, Redis."""

from __future__ import annotations

import dataclasses

import pytest

from services.ingest.serve_pipeline import ServePipeline
from tests.support.serving import ServedApp
from tests.support.streams import digit_png
from twinstream.contracts import Decision, ImageRequest, Op, SourceRef
from twinstream.images.prepared import StaleInputSpecError, prepare

pytestmark = pytest.mark.system


def test_worker_prepared_images_are_answered_exactly_like_raw_ones(
    served_app: ServedApp, unique_name: str
) -> None:
    pipeline = ServePipeline(served_app.settings)
    spec = pipeline.input_spec()
    assert spec == served_app.manifest.input
    enrol = [ImageRequest(f"e{i}", Op.ENROLL, digit_png(i), unique_name, f"s{i}") for i in range(5)]
    assert {r.decision for r in pipeline.process(enrol)} == {Decision.ENROLLED}
    probes = [ImageRequest(f"p{i}", Op.IDENTIFY, digit_png(i + 10), unique_name, top_k=3) for i in range(6)]
    raw = pipeline.process(probes)
    batch, refused = prepare([dataclasses.replace(p, request_id=f"q{i}") for i, p in enumerate(probes)],
                             spec, served_app.settings.limits)  # fmt: skip
    assert refused == {}
    prepared = pipeline.process_prepared(batch)
    assert [r.request_id for r in prepared] == [f"q{i}" for i in range(6)]
    for a, b in zip(raw, prepared, strict=True):
        assert a.decision == b.decision and a.subject == b.subject
        assert [c.subject for c in a.candidates] == [c.subject for c in b.candidates]
        assert a.distance == pytest.approx(b.distance, abs=1e-5)  # same pixels, same tower input
    # The decoded image's digest names the gallery image: re-enrolling the same bytes prepared is a duplicate.
    again, _ = prepare(enrol[:1], spec, served_app.settings.limits)
    assert pipeline.process_prepared(again)[0].decision == Decision.DUPLICATE


def test_a_batch_prepared_for_a_stale_spec_is_refused_and_the_spec_is_asked_again(
    served_app: ServedApp, unique_name: str
) -> None:
    pipeline = ServePipeline(served_app.settings)
    spec = pipeline.input_spec()
    stale = dataclasses.replace(spec, height=spec.height + 4)
    batch, _ = prepare([ImageRequest("s1", Op.IDENTIFY, digit_png(1), unique_name)], stale,
                       served_app.settings.limits)  # fmt: skip
    with pytest.raises(StaleInputSpecError):  # crosses the Ray boundary as its own type
        pipeline.process_prepared(batch)
    assert pipeline._spec is None  # forgotten with the handle: the retry asks the served model again
    assert pipeline.input_spec() == spec


def test_a_replayed_record_gets_its_stored_answer_and_a_new_record_is_processed(
    served_app: ServedApp, unique_name: str
) -> None:
    pipeline = ServePipeline(served_app.settings)
    spec, limits = pipeline.input_spec(), served_app.settings.limits
    source = SourceRef(f"{unique_name}.images", 0, 41, 1_700_000_000_000)
    enrol = ImageRequest("r-enrol", Op.ENROLL, digit_png(20), unique_name, "ann", source=source)
    probe = ImageRequest("r-probe", Op.IDENTIFY, digit_png(21), unique_name, source=source)
    first = pipeline.process_prepared(prepare([enrol, probe], spec, limits)[0])
    assert first[0].decision == Decision.ENROLLED
    # The worker died after the pipeline answered: the same records come again, prepared or raw.
    assert pipeline.process_prepared(prepare([enrol, probe], spec, limits)[0]) == first
    assert pipeline.process([enrol, probe]) == first  # identical, timings included: nothing re-ran
    # Another record with the same request id (a producer reusing ids) is a new request.
    later = dataclasses.replace(enrol, source=dataclasses.replace(source, offset=42))
    assert pipeline.process([later])[0].decision == Decision.DUPLICATE
