"""One poll's worth of records → results and dead letters: decode, one batched pipeline call, merge.

Pure of Kafka clients: it takes decoded `KafkaRecord`s and a `MatchPipeline` and returns what must be
published. Exceptions from the pipeline propagate (the worker tells an outage from a poison record);
refusals, whether found here or returned by the pipeline as ``REJECTED`` results, become dead letters,
and so does a record the pipeline cannot process at all (`failed_outcome`).

With a `PreparingPipeline` (the Serve app) the images are decoded and resized here, for the spec the
pipeline names, and only the compact pixels cross to Serve (`twinstream.images.prepared`): an image that does
not decode is refused here, like a bad header. Other pipelines get the raw requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from twinstream.codec import (
    DeadLetter,
    DeadLetterInfo,
    KafkaRecord,
    RecordRejection,
    decode_record,
)
from twinstream.config import LimitsSettings
from twinstream.contracts import Decision, ImageRequest, InputError, MatchResult, Rejection, RejectReason
from twinstream.images.face_finder import FaceFinders
from twinstream.images.prepared import prepare
from twinstream.ports import MatchPipeline, PreparingPipeline
from twinstream.tenant_topics import TopicTenancy

#: REJECTED results that are answers, not poison: the request was well-formed, there is just nothing to
#: compare it with (e.g. verify against a subject never enrolled). They are published but not dead-lettered.
#: An enrolment of an erased subject is not poison either, and its image must not be kept in the DLQ.
NOT_DEAD_LETTER_REASONS = frozenset({RejectReason.UNKNOWN_SUBJECT, RejectReason.ERASED_SUBJECT})


class PipelineContractError(RuntimeError):
    """The pipeline answered with a different number of results than requests."""


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """Everything a batch produces: one result per record (in record order) and the dead letters.

    ``refused_here`` are the results made without the pipeline (records refused while decoding).
    """

    results: tuple[MatchResult, ...]
    dead_letters: tuple[DeadLetter, ...]
    refused_here: tuple[MatchResult, ...] = ()


def run_batch(
    records: Sequence[KafkaRecord],
    pipeline: MatchPipeline,
    limits: LimitsSettings,
    *,
    worker: str,
    now_ms: int,
    tenancy: TopicTenancy | None = None,
    faces: FaceFinders | None = None,
) -> BatchOutcome:
    """Decode ``records``, send the valid ones to ``pipeline`` in one call, and merge the answers.

    Args:
        records: The polled records, in the order they should be answered.
        pipeline: The batched match pipeline (one ``process`` call per batch; none if nothing is valid).
        limits: Input limits for the cheap checks.
        worker: Name recorded in the dead-letter metadata.
        now_ms: Failure time recorded in the dead-letter metadata.
        tenancy: The topic binding when tenants are bound to topics (a record's tenant is its topic's).

    Raises:
        Exception: Whatever the pipeline raises (the caller classifies it: outage or poison record).
        PipelineContractError: If the pipeline returns the wrong number of results.
    """
    decoded = [decode_record(record, limits, tenancy) for record in records]
    requests = [item for item in decoded if isinstance(item, ImageRequest)]
    if isinstance(pipeline, PreparingPipeline) and requests:
        decoded, answered = _prepared(pipeline, decoded, limits, faces or FaceFinders())
    else:
        answered = _process(pipeline, requests)
    answers = iter(answered)
    results: list[MatchResult] = []
    dead: list[DeadLetter] = []
    refused: list[MatchResult] = []
    for record, item in zip(records, decoded, strict=True):
        if isinstance(item, RecordRejection):
            result = item.to_result()
            refused.append(result)
        else:
            result = next(answers)
        results.append(result)
        if _is_dead_letter(result):
            assert result.error_reason is not None
            info = DeadLetterInfo(
                result.request_id, result.error_reason, result.error_detail, record.source, now_ms, worker
            )
            dead.append(DeadLetter(record, info))
    return BatchOutcome(tuple(results), tuple(dead), tuple(refused))


def _prepared(
    pipeline: PreparingPipeline,
    decoded: list[ImageRequest | RecordRejection],
    limits: LimitsSettings,
    faces: FaceFinders,
) -> tuple[list[ImageRequest | RecordRejection], Sequence[MatchResult]]:
    """Decode the images here, refuse the undecodable ones, send the rest in one prepared call."""
    slots = [(i, item) for i, item in enumerate(decoded) if isinstance(item, ImageRequest)]
    spec = pipeline.input_spec()
    batch, refused = prepare([request for _, request in slots], spec, limits, faces.for_spec(spec))
    decoded = list(decoded)
    for position, error in refused.items():
        slot, request = slots[position]
        decoded[slot] = _refusal(request, error)
    answers = pipeline.process_prepared(batch) if batch.requests else ()
    _check_count(answers, batch.requests)
    return decoded, answers


def _refusal(request: ImageRequest, error: InputError) -> RecordRejection:
    assert request.source is not None  # requests decoded from records carry their source
    return RecordRejection(
        error.as_rejection(), request.request_id, request.source, request.op, request.tenant, request.subject
    )


def _check_count(answers: Sequence[MatchResult], requests: Sequence[ImageRequest]) -> None:
    if len(answers) != len(requests):
        raise PipelineContractError(f"pipeline returned {len(answers)} results for {len(requests)} requests")


def _process(pipeline: MatchPipeline, requests: list[ImageRequest]) -> Sequence[MatchResult]:
    if not requests:
        return ()
    answers = pipeline.process(requests)
    _check_count(answers, requests)
    return answers


def _is_dead_letter(result: MatchResult) -> bool:
    return (
        result.decision == Decision.REJECTED
        and result.error_reason is not None
        and result.error_reason not in NOT_DEAD_LETTER_REASONS
    )


def merge_outcomes(parts: Sequence[BatchOutcome]) -> BatchOutcome:
    """The outcome of consecutive sub-batches, in their order (a batch split to isolate a poison record)."""
    return BatchOutcome(
        tuple(r for part in parts for r in part.results),
        tuple(d for part in parts for d in part.dead_letters),
        tuple(r for part in parts for r in part.refused_here),
    )


def failed_outcome(
    record: KafkaRecord, detail: str, limits: LimitsSettings, *, worker: str, now_ms: int
) -> BatchOutcome:
    """A record the pipeline could not process although its dependencies answered: ``processing-failed``.

    It is answered with a REJECTED result (made here, so the worker stores it) and dead-lettered, and its
    partition moves on. The request's context (id, op, tenant, subject) comes from decoding the record.
    """
    decoded = decode_record(record, limits)
    rejection = Rejection(RejectReason.PROCESSING_FAILED, detail)
    result = MatchResult.rejected(
        decoded.request_id,
        rejection,
        op=decoded.op,
        tenant=decoded.tenant,
        subject=decoded.subject,
        source=record.source,
    )
    info = DeadLetterInfo(decoded.request_id, rejection.reason, detail, record.source, now_ms, worker)
    return BatchOutcome((result,), (DeadLetter(record, info),), (result,))
