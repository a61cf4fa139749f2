"""Worker-side decoding (`twinstream.images.prepared`) and the batch path that uses it."""

from __future__ import annotations

import io
import pickle
import platform
from collections.abc import Sequence

import numpy as np
import pytest
import ray.cloudpickle
from PIL import Image

from services.ingest.batch import run_batch
from twinstream.codec import KafkaRecord
from twinstream.config import LimitsSettings
from twinstream.contracts import Decision, ImageRequest, MatchResult, Op, RejectReason, SourceRef
from twinstream.images.prepared import PreparedBatch, StaleInputSpecError, prepare
from twinstream.images.preprocess import InputSpec, normalize, preprocess, to_pixels
from twinstream.memory import reuse_freed_memory
from twinstream.ports import PreparingPipeline

LIMITS = LimitsSettings()
SPEC = InputSpec(height=16, width=12, channels=1, invert=True, mean=0.2, std=0.3)


def png(seed: int, size: tuple[int, int] = (20, 30), mode: str = "L") -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_a_batch_normalised_at_once_equals_each_image_pre_processed_alone() -> None:
    imgs = [Image.open(io.BytesIO(png(i, mode="RGB" if i % 2 else "L"))) for i in range(6)]
    for spec in (SPEC, InputSpec(10, 14, 3, False, 0.5, 0.25)):
        batch = normalize(np.stack([to_pixels(img, spec) for img in imgs]), spec)
        alone = np.stack([preprocess(img, spec).numpy() for img in imgs])
        assert batch.shape == (6, spec.channels, spec.height, spec.width)
        assert batch.dtype == np.float32 and batch.flags.c_contiguous
        assert np.array_equal(batch, alone)  # bit-identical: the served path equals training's


def test_prepare_keeps_decodable_images_in_order_and_refuses_the_rest_by_position() -> None:
    requests = [
        ImageRequest("a", Op.ENROLL, png(1), subject="s"),
        ImageRequest("b", Op.IDENTIFY, b"\x89PNG\r\n\x1a\n not really"),
        ImageRequest("c", Op.DELETE, subject="s"),
        ImageRequest("d", Op.VERIFY, png(2, size=(9, 9)), subject="s"),
        ImageRequest("e", Op.IDENTIFY, b"GIF89a" + b"\0" * 20),
    ]
    batch, refused = prepare(requests, SPEC, LIMITS)
    assert [r.request_id for r in batch.requests] == ["a", "c", "d"]
    # Only enrolments keep their bytes (for the enrolment log); the others leave them in the worker.
    assert [bool(r.image) for r in batch.requests] == [True, False, False]
    assert batch.digests[1] == "" and len(batch.digests[0]) == 64 and batch.digests[0] != batch.digests[2]
    assert batch.pixels.shape == (2, 16, 12, 1) and batch.pixels.dtype == np.uint8
    img = Image.open(io.BytesIO(png(2, size=(9, 9))))
    assert np.array_equal(batch.pixels[1], to_pixels(img, SPEC))
    assert sorted(refused) == [1, 4]
    assert refused[1].reason == RejectReason.UNDECODABLE_IMAGE
    assert refused[4].reason in {RejectReason.UNDECODABLE_IMAGE, RejectReason.UNSUPPORTED_FORMAT}
    assert batch.decode_s[1] == 0.0 and batch.decode_s[0] > 0.0


def test_prepare_refuses_a_decompression_bomb_from_its_header() -> None:
    buf = io.BytesIO()
    Image.new("L", (8000, 8000)).save(buf, format="PNG")  # 64 M pixels in ~64 KB
    bomb = buf.getvalue()
    limits = LimitsSettings(max_pixels=1_000_000)
    batch, refused = prepare([ImageRequest("x", Op.IDENTIFY, bomb)], SPEC, limits)
    assert batch.requests == () and batch.pixels.shape == (0, 16, 12, 1)
    assert refused[0].reason == RejectReason.TOO_MANY_PIXELS


def test_a_prepared_batch_checks_its_shapes() -> None:
    with pytest.raises(ValueError, match="pixels must be uint8"):
        PreparedBatch((ImageRequest("a", Op.IDENTIFY),), ("d" * 64,), np.zeros((1, 16, 12, 1)), SPEC, (0.0,))
    with pytest.raises(ValueError, match="one entry per request"):
        PreparedBatch((ImageRequest("a", Op.IDENTIFY),), (), np.zeros((0, 16, 12, 1), np.uint8), SPEC, ())


@pytest.mark.parametrize("dumps", [pickle.dumps, ray.cloudpickle.dumps], ids=["pickle", "ray-cloudpickle"])
def test_a_prepared_batch_crosses_a_pickle_and_comes_back_equal(dumps) -> None:  # type: ignore[no-untyped-def]
    source = SourceRef("images", 2, 41, 1_700_000_000_000)
    requests = [
        ImageRequest("a", Op.ENROLL, png(1), "t1", "s", 5, "image/png", 17, source),
        ImageRequest("c", Op.DELETE, subject="s"),
        ImageRequest("d", Op.IDENTIFY, png(2), top_k=3),
    ]
    batch, _ = prepare(requests, SPEC, LIMITS)
    data = dumps(batch)
    back = pickle.loads(data)
    assert back.requests == batch.requests and back.requests[0].source == source
    assert all(type(r.op) is Op for r in back.requests)
    assert back.digests == batch.digests and back.decode_s == batch.decode_s and back.spec == SPEC
    assert np.array_equal(back.pixels, batch.pixels) and back.pixels.dtype == np.uint8


class PreparedPipeline:
    """Test double of the Serve pipeline's prepared entry: ENROLLED per request, records every batch."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self.batches: list[PreparedBatch] = []
        self.unprepared_calls = 0

    def input_spec(self) -> InputSpec:
        return self.spec

    def process(self, requests: Sequence[ImageRequest]) -> list[MatchResult]:
        self.unprepared_calls += 1
        return [MatchResult(r.request_id, r.op, Decision.ENROLLED) for r in requests]

    def process_prepared(self, batch: PreparedBatch) -> list[MatchResult]:
        if batch.spec != self.spec:
            raise StaleInputSpecError("stale")
        self.batches.append(batch)
        return [MatchResult(r.request_id, r.op, Decision.ENROLLED) for r in batch.requests]


def rec(offset: int, value: bytes, **headers: str) -> KafkaRecord:
    return KafkaRecord("img", 0, offset, value, tuple((k, v.encode()) for k, v in headers.items()))


def test_the_worker_decodes_for_a_preparing_pipeline_and_dead_letters_what_does_not_decode() -> None:
    pipeline = PreparedPipeline(SPEC)
    assert isinstance(pipeline, PreparingPipeline)
    records = [
        rec(0, png(5), op="enroll", subject="a"),
        rec(1, b"garbage bytes", op="identify"),
        rec(2, png(6), op="identify"),
        rec(3, b"", op="nonsense"),
    ]
    out = run_batch(records, pipeline, LIMITS, worker="w", now_ms=1)
    assert pipeline.unprepared_calls == 0
    (batch,) = pipeline.batches
    assert [r.request_id for r in batch.requests] == ["img-0-0", "img-0-2"]
    assert batch.pixels.shape == (2, 16, 12, 1)
    assert [r.decision for r in out.results] == [
        Decision.ENROLLED,
        Decision.REJECTED,
        Decision.ENROLLED,
        Decision.REJECTED,
    ]
    assert [(d.record.offset, d.info.reason) for d in out.dead_letters] == [
        (1, RejectReason.UNDECODABLE_IMAGE),
        (3, RejectReason.UNKNOWN_OP),
    ]
    assert [r.request_id for r in out.refused_here] == ["img-0-1", "img-0-3"]


def test_a_poll_of_only_undecodable_images_makes_no_pipeline_call() -> None:
    pipeline = PreparedPipeline(SPEC)
    out = run_batch([rec(0, b"nope", op="identify")], pipeline, LIMITS, worker="w", now_ms=1)
    assert pipeline.batches == [] and [d.info.reason for d in out.dead_letters] == ["undecodable-image"]


def test_a_stale_spec_propagates_as_a_dependency_failure_so_the_worker_retries() -> None:
    class Redeployed(PreparedPipeline):
        def input_spec(self) -> InputSpec:  # the worker's cached spec, older than the served model
            return InputSpec(8, 8, 1, False, 0.0, 1.0)

    with pytest.raises(StaleInputSpecError):
        run_batch([rec(0, png(7), op="identify")], Redeployed(SPEC), LIMITS, worker="w", now_ms=1)


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc",
    reason=f"mallopt thresholds are glibc's; this C library is {platform.libc_ver()[0] or 'unknown'}",
)
def test_freed_buffers_are_kept_for_reuse_on_glibc() -> None:
    assert reuse_freed_memory() is True


def test_batches_of_consecutive_slices_merge_into_the_batch_of_the_whole() -> None:
    from twinstream.images.prepared import merge

    requests = [
        ImageRequest("a", Op.ENROLL, png(1), subject="s"),
        ImageRequest("b", Op.IDENTIFY, b"not an image at all"),
        ImageRequest("c", Op.DELETE, subject="s"),
        ImageRequest("d", Op.VERIFY, png(2, size=(9, 9)), subject="s"),
        ImageRequest("e", Op.IDENTIFY, b"GIF89a" + b"\0" * 20),
        ImageRequest("f", Op.IDENTIFY, png(3, mode="RGB")),
    ]
    whole, refused = prepare(requests, SPEC, LIMITS)
    for cut in (1, 2, 5):
        parts = [prepare(requests[:cut], SPEC, LIMITS), prepare(requests[cut:], SPEC, LIMITS)]
        merged, merged_refused = merge(parts, [cut, len(requests) - cut])
        assert merged.requests == whole.requests and merged.digests == whole.digests
        assert np.array_equal(merged.pixels, whole.pixels) and merged.rows == whole.rows
        assert {i: e.reason for i, e in merged_refused.items()} == {i: e.reason for i, e in refused.items()}
    assert sorted(refused) == [1, 4]


def test_an_input_error_crosses_a_pickle_with_its_reason_and_detail() -> None:
    from twinstream.contracts import InputError

    error = pickle.loads(pickle.dumps(InputError(RejectReason.NO_FACE, "no face of 40px or more")))
    assert error.reason is RejectReason.NO_FACE and error.detail == "no face of 40px or more"
